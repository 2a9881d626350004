//! Reply channels that guarantee every waiter exactly one answer.
//!
//! [`reply_channel`] gives an [`OutputTx`] (kept with the request inside the engine) and a
//! [`Reply`] (awaited by the caller). Sending consumes the `OutputTx`, so no request can be
//! answered twice; dropping it unanswered — a stopped worker, a dropped job, a panic that
//! unwinds past it — makes the `Reply` resolve to the caller's error type built from
//! [`Unanswered`]. A waiter therefore never hangs on a request the engine has forgotten.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use snafu::Snafu;
use tokio::sync::oneshot;

/// Rows affected by a write, or 0 for DDLs.
pub type AffectedRows = usize;

/// The request was dropped inside the engine before it was answered.
#[derive(Debug, Snafu, Clone, Copy, PartialEq, Eq)]
#[snafu(display(
    "the request was dropped before it was answered (the engine stopped or the work was cancelled)"
))]
pub struct Unanswered;

/// Creates a connected sender/receiver pair for one reply.
pub fn reply_channel<T, E>() -> (OutputTx<T, E>, Reply<T, E>) {
    let (tx, rx) = oneshot::channel();
    (OutputTx { tx }, Reply { rx })
}

/// The engine's end of a reply channel: answers one waiter once.
#[derive(Debug)]
#[must_use = "dropping an OutputTx answers the waiter with `Unanswered`; send a reply instead"]
pub struct OutputTx<T = AffectedRows, E = Unanswered> {
    tx: oneshot::Sender<Result<T, E>>,
}

impl<T, E> OutputTx<T, E> {
    /// Answers the waiter. A waiter that stopped listening is not an error.
    pub fn send(self, result: Result<T, E>) {
        // The receiver may be gone (caller timed out or was cancelled): nothing to do.
        let _ = self.tx.send(result);
    }

    /// Whether the waiter has stopped listening, so the work may be skipped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The caller's end of a reply channel: resolves to the answer, or to
/// `E::from(Unanswered)` if the engine dropped the request.
#[derive(Debug)]
#[must_use = "a Reply does nothing unless awaited"]
pub struct Reply<T = AffectedRows, E = Unanswered> {
    rx: oneshot::Receiver<Result<T, E>>,
}

impl<T, E: From<Unanswered>> Future for Reply<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|received| received.unwrap_or_else(|_| Err(E::from(Unanswered))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum TestError {
        Dropped,
        Failed(&'static str),
    }

    impl From<Unanswered> for TestError {
        fn from(_: Unanswered) -> Self {
            TestError::Dropped
        }
    }

    #[tokio::test]
    async fn the_waiter_receives_the_sent_answer() {
        let (tx, rx) = reply_channel::<usize, TestError>();
        tx.send(Ok(3));
        assert_eq!(rx.await, Ok(3));

        let (tx, rx) = reply_channel::<usize, TestError>();
        tx.send(Err(TestError::Failed("wal")));
        assert_eq!(rx.await, Err(TestError::Failed("wal")));
    }

    #[tokio::test]
    async fn dropping_the_sender_answers_the_waiter_with_unanswered() {
        let (tx, rx) = reply_channel::<usize, TestError>();
        drop(tx);
        assert_eq!(rx.await, Err(TestError::Dropped));
    }

    #[tokio::test]
    async fn a_sender_dropped_inside_a_task_answers_its_waiter() {
        let (tx, rx) = reply_channel::<usize, Unanswered>();
        let job = async move {
            let _held = tx;
        };
        drop(job); // never polled: the future (and the sender) are dropped
        assert_eq!(rx.await, Err(Unanswered));
    }

    #[test]
    fn sending_to_a_gone_waiter_is_silent_and_observable() {
        let (tx, rx) = reply_channel::<usize, TestError>();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        tx.send(Ok(1));
    }
}
