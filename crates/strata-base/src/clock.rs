//! [`Clock`]: where the engine gets time from, so tests can drive it — wall time, a
//! monotonic instant for measuring and deadlines, and sleeps.
//!
//! Production code uses [`SystemClock`]; tests use [`ManualClock`], whose
//! [`advance`](ManualClock::advance) wakes every sleeper whose deadline has passed, so
//! periodic work (auto flush, periodic checks) is tested without waiting on wall time.
//! This module is the one place that reads the OS clocks (clippy's `disallowed-methods`
//! keeps `SystemTime::now`, `Instant::now` and sleeps out of everything else).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A boxed future that completes after a clock's sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Source of time for the engine.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Current wall time in milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;

    /// A monotonic instant: for measuring durations and computing deadlines.
    fn now(&self) -> Instant;

    /// Time passed since `earlier` (from [`now`](Self::now)); zero if none.
    fn elapsed(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }

    /// A future that completes once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> Sleep;

    /// A future that completes once [`now`](Self::now) reaches `deadline` (at once if it
    /// has). Prefer it to `sleep(deadline - now)` for deadlines: time that passes between
    /// reading `now` and starting the sleep does not make the sleep end later.
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.sleep(deadline.saturating_duration_since(self.now()))
    }

    /// Time passed since `earlier_millis` (from [`now_millis`](Self::now_millis)); zero if
    /// the clock went backwards.
    fn elapsed_since(&self, earlier_millis: i64) -> Duration {
        let delta = self.now_millis().saturating_sub(earlier_millis);
        Duration::from_millis(u64::try_from(delta).unwrap_or(0))
    }
}

/// Shared handle to a clock.
pub type ClockRef = Arc<dyn Clock>;

/// The real clock: wall time from the OS, the monotonic instant and sleeps from tokio's
/// timer (so tokio's paused time, `#[tokio::test(start_paused = true)]`, drives both).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the OS clock
    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    /// Tokio's instant (the OS's monotonic clock, unless a test paused tokio's time), so
    /// `now` and `sleep` always agree on how much time has passed.
    #[allow(clippy::disallowed_methods)] // the one place that reads the monotonic clock
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[allow(clippy::disallowed_methods)] // the one place that sleeps on tokio's timer
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }

    #[allow(clippy::disallowed_methods)] // the one place that sleeps on tokio's timer
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// A clock that only moves when the test says so.
///
/// Sleeps complete when [`advance`](Self::advance) or [`set`](Self::set) moves the time to
/// or past their deadline. [`wait_for_sleepers`](Self::wait_for_sleepers) lets a test wait
/// until the engine is actually sleeping before it advances time, which removes the race
/// between "advance" and "start sleeping".
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: watch::Sender<ManualTime>,
    sleepers: watch::Sender<usize>,
    /// The monotonic instant that stands for the clock's creation.
    origin: Instant,
}

/// What a manual clock shows: wall time, which [`ManualClock::set`] may move back, and
/// the monotonic time passed since creation, which only ever moves forward.
#[derive(Debug, Clone, Copy)]
struct ManualTime {
    wall_millis: i64,
    monotonic_millis: u64,
}

impl ManualClock {
    /// A clock showing `start_millis`.
    pub fn new(start_millis: i64) -> Self {
        #[allow(clippy::disallowed_methods)] // an anchor for the manual monotonic clock
        let origin = Instant::now();
        let start = ManualTime {
            wall_millis: start_millis,
            monotonic_millis: 0,
        };
        Self {
            inner: Arc::new(ManualInner {
                now: watch::channel(start).0,
                sleepers: watch::channel(0).0,
                origin,
            }),
        }
    }

    /// Moves time forward by `duration`, waking every sleeper whose deadline has passed.
    pub fn advance(&self, duration: Duration) {
        let step = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.inner.now.send_modify(|now| {
            now.wall_millis = now
                .wall_millis
                .saturating_add(i64::try_from(step).unwrap_or(i64::MAX));
            now.monotonic_millis = now.monotonic_millis.saturating_add(step);
        });
    }

    /// Sets the wall time. Forward, it is an [`advance`](Self::advance); backward (a
    /// wall clock stepped back), only [`now_millis`](Clock::now_millis) goes back: the
    /// monotonic [`now`](Clock::now) stays where it is and sleepers keep waiting.
    pub fn set(&self, millis: i64) {
        self.inner.now.send_modify(|now| {
            let forward = u64::try_from(millis.saturating_sub(now.wall_millis)).unwrap_or(0);
            now.monotonic_millis = now.monotonic_millis.saturating_add(forward);
            now.wall_millis = millis;
        });
    }

    /// How many sleeps are pending right now.
    pub fn sleepers(&self) -> usize {
        *self.inner.sleepers.borrow()
    }

    /// Waits until at least `count` sleeps are pending.
    pub async fn wait_for_sleepers(&self, count: usize) {
        let mut rx = self.inner.sleepers.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we hold `self`.
        let _ = rx.wait_for(|n| *n >= count).await;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(0)
    }
}

/// Counts a pending sleep for as long as it exists.
struct SleeperGuard(Arc<ManualInner>);

impl SleeperGuard {
    fn new(inner: Arc<ManualInner>) -> Self {
        inner.sleepers.send_modify(|n| *n += 1);
        Self(inner)
    }
}

impl Drop for SleeperGuard {
    fn drop(&mut self) {
        self.0.sleepers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        let passed = self.inner.now.borrow().monotonic_millis;
        self.inner.origin + Duration::from_millis(passed)
    }

    fn now_millis(&self) -> i64 {
        self.inner.now.borrow().wall_millis
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let step = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let deadline = self
            .inner
            .now
            .borrow()
            .monotonic_millis
            .saturating_add(step);
        self.sleep_until_millis(deadline)
    }

    /// The clock counts whole milliseconds: a deadline between two of them is due at
    /// the later one.
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let since_origin = deadline.saturating_duration_since(self.inner.origin);
        let millis = u64::try_from(since_origin.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        self.sleep_until_millis(millis)
    }
}

impl ManualClock {
    /// Completes once the monotonic time reaches `deadline` milliseconds.
    fn sleep_until_millis(&self, deadline: u64) -> Sleep {
        // Counted from creation, so `wait_for_sleepers` sees a sleep as soon as it exists.
        let guard = SleeperGuard::new(self.inner.clone());
        let mut now = self.inner.now.subscribe();
        Box::pin(async move {
            let _guard = guard;
            // `guard` keeps the sender alive, so `wait_for` only returns once time is due.
            let _ = now.wait_for(|now| now.monotonic_millis >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_until_a_deadline_ends_there_however_late_it_started() {
        let clock = ManualClock::new(0);
        let deadline = clock.now() + Duration::from_micros(6_300);
        // The clock moves on before the sleep starts: the deadline still holds.
        clock.advance(Duration::from_millis(5));
        let mut sleep = clock.sleep_until(deadline);
        assert!(futures_poll_once(&mut sleep).is_pending());
        clock.advance(Duration::from_millis(1));
        assert!(futures_poll_once(&mut sleep).is_pending(), "6 ms < 6.3 ms");
        clock.advance(Duration::from_millis(1));
        assert!(
            futures_poll_once(&mut sleep).is_ready(),
            "due at the next whole ms"
        );
        // A deadline already passed is due at once.
        let mut late = clock.sleep_until(deadline);
        assert!(futures_poll_once(&mut late).is_ready());
    }

    fn futures_poll_once(sleep: &mut Sleep) -> std::task::Poll<()> {
        let waker = std::task::Waker::noop();
        sleep
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
    }

    #[tokio::test]
    async fn manual_sleep_completes_only_when_time_reaches_the_deadline() {
        let clock = ManualClock::new(1_000);
        let done = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (clock, done) = (clock.clone(), done.clone());
            async move {
                clock.sleep(Duration::from_secs(60)).await;
                done.store(true, Ordering::SeqCst);
            }
        });
        clock.wait_for_sleepers(1).await;
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!done.load(Ordering::SeqCst));
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_secs(1));
        task.await.unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(clock.sleepers(), 0);
        assert_eq!(clock.now_millis(), 61_000);
    }

    #[tokio::test]
    async fn one_advance_wakes_every_due_sleeper_and_no_other() {
        let clock = ManualClock::new(0);
        let short = tokio::spawn(clock.sleep(Duration::from_millis(10)));
        let also_short = tokio::spawn(clock.sleep(Duration::from_millis(20)));
        let long = clock.sleep(Duration::from_millis(1_000));
        clock.wait_for_sleepers(3).await;
        clock.advance(Duration::from_millis(20));
        short.await.unwrap();
        also_short.await.unwrap();
        assert_eq!(clock.sleepers(), 1);
        drop(long);
        assert_eq!(clock.sleepers(), 0, "a dropped sleep is no longer counted");
    }

    #[tokio::test]
    async fn a_zero_sleep_completes_at_once() {
        let clock = ManualClock::new(5);
        clock.sleep(Duration::ZERO).await;
    }

    #[test]
    fn elapsed_since_saturates_when_the_clock_goes_backwards() {
        let clock = ManualClock::new(100);
        assert_eq!(clock.elapsed_since(40), Duration::from_millis(60));
        clock.set(10);
        assert_eq!(clock.elapsed_since(40), Duration::ZERO);
    }

    #[tokio::test]
    async fn setting_the_wall_time_back_leaves_the_monotonic_clock_and_sleepers_alone() {
        let clock = ManualClock::new(1_000);
        let start = clock.now();
        let sleep = tokio::spawn(clock.sleep(Duration::from_millis(50)));
        clock.wait_for_sleepers(1).await;
        clock.set(10);
        assert_eq!(clock.now_millis(), 10);
        assert_eq!(clock.now(), start, "monotonic time did not go back");
        assert_eq!(clock.sleepers(), 1);
        clock.set(40);
        assert_eq!(clock.elapsed(start), Duration::from_millis(30));
        clock.set(60);
        sleep.await.unwrap();
        assert_eq!(clock.elapsed(start), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn system_clock_sleeps_on_tokio_time() {
        let start = SystemClock.now();
        SystemClock.sleep(Duration::from_secs(3600)).await;
        assert!(SystemClock.elapsed(start) >= Duration::from_secs(3600));
        assert!(SystemClock.now_millis() > 1_600_000_000_000);
    }
}
