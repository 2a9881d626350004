//! The [`Clock`] conformance suite: the rules the engine relies on, run against every
//! implementation — [`SystemClock`] driven by tokio's paused time, [`ManualClock`] driven
//! by `advance`. One test per rule and clock.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_base::{ClockRef, ManualClock, SystemClock};

/// A clock under test and the way to make its time pass.
trait Driver {
    fn clock(&self) -> ClockRef;
    /// Lets `duration` pass on the clock (and wakes what is due).
    fn pass(&self, duration: Duration) -> impl Future<Output = ()>;
}

/// The system clock under tokio's paused time: time passes only when the test says so.
struct PausedSystem;

impl Driver for PausedSystem {
    fn clock(&self) -> ClockRef {
        Arc::new(SystemClock)
    }
    async fn pass(&self, duration: Duration) {
        tokio::time::advance(duration).await;
    }
}

struct Manual(ManualClock);

impl Driver for Manual {
    fn clock(&self) -> ClockRef {
        Arc::new(self.0.clone())
    }
    async fn pass(&self, duration: Duration) {
        self.0.advance(duration);
    }
}

/// Gives spawned tasks a chance to run (both runtimes here are single-threaded).
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// `now` never goes back, and `elapsed` measures exactly the time that passed.
async fn now_is_monotonic_and_elapsed_measures_what_passed(d: impl Driver) {
    let clock = d.clock();
    let start = clock.now();
    let mut last = start;
    for step in [1, 7, 0, 250] {
        d.pass(Duration::from_millis(step)).await;
        let now = clock.now();
        assert!(now >= last, "now went back");
        last = now;
    }
    assert_eq!(clock.elapsed(start), Duration::from_millis(258));
    assert_eq!(clock.elapsed(last), Duration::ZERO);
}

/// A sleep completes once its duration has passed, and not before.
async fn a_sleep_completes_once_its_duration_has_passed_and_not_before(d: impl Driver) {
    let clock = d.clock();
    let start = clock.now();
    let sleep = tokio::spawn(clock.sleep(Duration::from_millis(100)));
    settle().await;
    d.pass(Duration::from_millis(99)).await;
    settle().await;
    assert!(!sleep.is_finished(), "woke after 99 of 100 ms");
    d.pass(Duration::from_millis(1)).await;
    sleep.await.unwrap();
    assert!(clock.elapsed(start) >= Duration::from_millis(100));
}

/// A zero sleep completes without any time passing.
async fn a_zero_sleep_completes_at_once(d: impl Driver) {
    let clock = d.clock();
    let start = clock.now();
    clock.sleep(Duration::ZERO).await;
    assert_eq!(clock.elapsed(start), Duration::ZERO);
}

/// Sleeps wake in deadline order, each once its own deadline has passed.
async fn sleeps_wake_in_deadline_order(d: impl Driver) {
    let clock = d.clock();
    let woke = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = [30_u64, 10, 20]
        .into_iter()
        .map(|ms| {
            let (sleep, woke) = (clock.sleep(Duration::from_millis(ms)), woke.clone());
            tokio::spawn(async move {
                sleep.await;
                woke.lock().unwrap().push(ms);
            })
        })
        .collect();
    settle().await;
    for expected in [vec![10], vec![10, 20], vec![10, 20, 30]] {
        d.pass(Duration::from_millis(10)).await;
        settle().await;
        assert_eq!(*woke.lock().unwrap(), expected);
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// A sleep until a deadline ends there, even when time passed before it started, and
/// at once for a deadline already passed.
async fn a_sleep_until_a_deadline_ends_there_however_late_it_started(d: impl Driver) {
    let clock = d.clock();
    let deadline = clock.now() + Duration::from_millis(100);
    d.pass(Duration::from_millis(60)).await;
    let sleep = tokio::spawn(clock.sleep_until(deadline));
    settle().await;
    d.pass(Duration::from_millis(39)).await;
    settle().await;
    assert!(!sleep.is_finished(), "woke 1 ms before the deadline");
    d.pass(Duration::from_millis(1)).await;
    sleep.await.unwrap();
    assert!(clock.now() >= deadline);
    clock.sleep_until(deadline).await;
}

/// `elapsed_since` a wall time in the future is zero, never a panic or a huge value.
async fn elapsed_since_a_future_wall_time_is_zero(d: impl Driver) {
    let clock = d.clock();
    let ahead = clock.now_millis() + 3_600_000;
    assert_eq!(clock.elapsed_since(ahead), Duration::ZERO);
    assert_eq!(
        clock.elapsed(clock.now() + Duration::from_secs(1)),
        Duration::ZERO
    );
}

macro_rules! conformance {
    ($module:ident, $driver:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(start_paused = true)]
            async fn now_is_monotonic_and_elapsed_measures_what_passed() {
                super::now_is_monotonic_and_elapsed_measures_what_passed($driver).await;
            }
            #[tokio::test(start_paused = true)]
            async fn a_sleep_completes_once_its_duration_has_passed_and_not_before() {
                super::a_sleep_completes_once_its_duration_has_passed_and_not_before($driver).await;
            }
            #[tokio::test(start_paused = true)]
            async fn a_zero_sleep_completes_at_once() {
                super::a_zero_sleep_completes_at_once($driver).await;
            }
            #[tokio::test(start_paused = true)]
            async fn sleeps_wake_in_deadline_order() {
                super::sleeps_wake_in_deadline_order($driver).await;
            }
            #[tokio::test(start_paused = true)]
            async fn a_sleep_until_a_deadline_ends_there_however_late_it_started() {
                super::a_sleep_until_a_deadline_ends_there_however_late_it_started($driver).await;
            }
            #[tokio::test(start_paused = true)]
            async fn elapsed_since_a_future_wall_time_is_zero() {
                super::elapsed_since_a_future_wall_time_is_zero($driver).await;
            }
        }
    };
}

conformance!(system_clock, PausedSystem);
conformance!(manual_clock, Manual(ManualClock::new(1_700_000_000_000)));
