use std::time::Duration;

use strata_base::Clock;

use strata_request::{RegionId, WriteRequest, reply_channel};

use super::*;

const MIB: f64 = 1024.0 * 1024.0;

fn request(size: usize) -> SenderWriteRequest {
    let batch =
        arrow_array::RecordBatch::new_empty(std::sync::Arc::new(arrow_schema::Schema::empty()));
    let (tx, _rx) = reply_channel();
    SenderWriteRequest {
        request: WriteRequest::put(RegionId::new(1, 0), batch),
        sender: tx,
        size,
    }
}

#[test]
fn there_is_a_pace_only_between_the_threshold_and_the_budget_falling_to_half_at_the_budget() {
    let delay = WriteDelay::new(8 << 20);
    assert_eq!(delay.rate(499, 500, 1_000), None, "below the threshold");
    assert_eq!(
        delay.rate(1_000, 500, 1_000),
        None,
        "at the budget writes stall"
    );
    assert_eq!(
        delay.rate(700, 1_000, 1_000),
        None,
        "no slowdown configured"
    );
    assert_eq!(delay.rate(500, 500, 1_000), Some(8.0 * MIB));
    assert_eq!(delay.rate(750, 500, 1_000), Some(6.0 * MIB));
    let near_budget = delay.rate(999, 500, 1_000).unwrap();
    assert!(
        (4.0 * MIB..4.1 * MIB).contains(&near_budget),
        "{near_budget}"
    );
    // Never slower than 1 MiB/s.
    let slow = WriteDelay::new(1);
    assert_eq!(slow.rate(999, 500, 1_000), Some(MIB));
}

#[test]
fn the_drain_rate_is_measured_from_flushes_over_half_second_windows_and_smoothed() {
    let delay = WriteDelay::new(8 << 20);
    let start = strata_base::ManualClock::default().now();
    delay.on_flushed(1 << 30, start); // opens the window, counts nothing
    delay.on_flushed(4 << 20, start + Duration::from_millis(100));
    assert_eq!(
        delay.rate(500, 500, 1_000),
        Some(8.0 * MIB),
        "window not over yet"
    );
    delay.on_flushed(6 << 20, start + Duration::from_millis(500));
    assert_eq!(delay.rate(500, 500, 1_000), Some(20.0 * MIB));
    delay.on_flushed(2 << 20, start + Duration::from_millis(1_500));
    // Half the old rate plus half of 2 MiB/s.
    assert_eq!(delay.rate(500, 500, 1_000), Some(11.0 * MIB));
}

#[test]
fn paced_writes_follow_each_other_by_their_bytes_at_the_rate() {
    let delay = WriteDelay::new(8 << 20);
    let now = strata_base::ManualClock::default().now();
    let rate = 4.0 * MIB;
    assert_eq!(
        delay.release_at(1 << 20, rate, now),
        now,
        "the first goes at once"
    );
    assert_eq!(
        delay.release_at(1 << 20, rate, now),
        now + Duration::from_millis(250)
    );
    assert_eq!(
        delay.release_at(2 << 20, rate, now + Duration::from_millis(100)),
        now + Duration::from_millis(500)
    );
    // Long after the pace ran out, a write goes at once again.
    let later = now + Duration::from_secs(10);
    assert_eq!(delay.release_at(1 << 20, rate, later), later);
}

#[test]
fn delayed_requests_leave_in_order_when_due_and_count_their_bytes() {
    let mut delayed = DelayedRequests::default();
    let now = strata_base::ManualClock::default().now();
    delayed.push(now + Duration::from_millis(20), request(10));
    // Never released before a request queued earlier.
    delayed.push(now + Duration::from_millis(5), request(20));
    delayed.push(now + Duration::from_millis(30), request(30));
    assert_eq!(delayed.estimated_size(), 60);
    assert_eq!(
        delayed.next_release(),
        Some(now + Duration::from_millis(20))
    );
    assert!(delayed.take_due(now + Duration::from_millis(19)).is_empty());
    let due = delayed.take_due(now + Duration::from_millis(20));
    assert_eq!(due.iter().map(|r| r.size).collect::<Vec<_>>(), [10, 20]);
    assert_eq!(delayed.estimated_size(), 30);
    assert_eq!(delayed.take_all().len(), 1);
    assert!(delayed.is_empty());
    assert_eq!(delayed.estimated_size(), 0);
}
