//! Write slowdown before the stall: [`WriteDelay`] paces incoming writes engine-wide when
//! memtable memory is between the soft threshold and the budget, at the rate flushes drain
//! memory (RocksDB's delayed writes, `delayed_write_rate` as the rate before any flush was
//! measured); [`DelayedRequests`] holds a worker's paced writes until their time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::request::SenderWriteRequest;

/// The slowest pace writes are ever given, bytes per second: a region never starves.
const MIN_RATE: f64 = 1024.0 * 1024.0;

/// Shortest window over which the drain rate is sampled.
const SAMPLE_WINDOW: Duration = Duration::from_millis(500);

/// Engine-wide pacing of writes under memory pressure (shared by every worker).
#[derive(Debug)]
pub(crate) struct WriteDelay {
    /// Rate (bytes/s) assumed until flushes were measured.
    initial_rate: f64,
    state: Mutex<DelayState>,
}

#[derive(Debug)]
struct DelayState {
    /// Measured rate at which flushes release memtable memory (bytes/s), smoothed.
    drain_rate: Option<f64>,
    /// Bytes released since `window_start`.
    window_bytes: u64,
    window_start: Option<Instant>,
    /// When the pacing has room for the next write: each delayed write moves it on by
    /// its bytes at the current rate.
    next_free: Option<Instant>,
}

impl WriteDelay {
    /// Pacing at `initial_rate` bytes per second until flushes have been measured.
    pub(crate) fn new(initial_rate: u64) -> Self {
        Self {
            initial_rate: (initial_rate as f64).max(MIN_RATE),
            state: Mutex::new(DelayState {
                drain_rate: None,
                window_bytes: 0,
                window_start: None,
                next_free: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DelayState> {
        // Plain numbers: a panic elsewhere cannot leave them inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A flush released `bytes` of memtable memory at `now`: feeds the drain rate.
    pub(crate) fn on_flushed(&self, bytes: u64, now: Instant) {
        let mut state = self.state();
        let Some(start) = state.window_start else {
            state.window_start = Some(now);
            state.window_bytes = 0;
            return;
        };
        state.window_bytes += bytes;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= SAMPLE_WINDOW {
            let sample = state.window_bytes as f64 / elapsed.as_secs_f64();
            state.drain_rate = Some(match state.drain_rate {
                Some(rate) => 0.5 * rate + 0.5 * sample,
                None => sample,
            });
            state.window_start = Some(now);
            state.window_bytes = 0;
        }
    }

    /// The pace for writes at memtable memory `usage`: none below `soft`; between `soft`
    /// and `budget` the drain rate, falling linearly to half of it at the budget (so memory
    /// comes down while writes go on); at or above `budget` none either (writes stall).
    pub(crate) fn rate(&self, usage: usize, soft: usize, budget: usize) -> Option<f64> {
        if usage < soft || usage >= budget || budget <= soft {
            return None;
        }
        let over = (usage - soft) as f64 / (budget - soft) as f64;
        let drain = self.state().drain_rate.unwrap_or(self.initial_rate);
        Some((drain * (1.0 - 0.5 * over)).max(MIN_RATE))
    }

    /// When a write of `bytes` may go at `now`, paced at `rate` bytes per second after the
    /// writes paced before it (engine-wide); `now` itself if the pacing has room.
    pub(crate) fn release_at(&self, bytes: usize, rate: f64, now: Instant) -> Instant {
        let mut state = self.state();
        let start = state.next_free.map_or(now, |free| free.max(now));
        let release = start + Duration::from_secs_f64(bytes as f64 / rate);
        state.next_free = Some(release);
        start
    }
}

/// A worker's writes waiting for their paced time, in release order.
#[derive(Debug, Default)]
pub(crate) struct DelayedRequests {
    queue: VecDeque<(Instant, SenderWriteRequest)>,
    estimated_size: usize,
}

impl DelayedRequests {
    /// Queues `request` until `release` (never before anything queued earlier).
    pub(crate) fn push(&mut self, release: Instant, request: SenderWriteRequest) {
        let release = self
            .queue
            .back()
            .map_or(release, |(last, _)| release.max(*last));
        self.estimated_size += request.size;
        self.queue.push_back((release, request));
    }

    /// Takes the requests due at `now`, oldest first.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<SenderWriteRequest> {
        let mut due = Vec::new();
        while let Some((release, _)) = self.queue.front() {
            if *release > now {
                break;
            }
            if let Some((_, request)) = self.queue.pop_front() {
                self.estimated_size -= request.size;
                due.push(request);
            }
        }
        due
    }

    /// Takes every queued request, oldest first.
    pub(crate) fn take_all(&mut self) -> Vec<SenderWriteRequest> {
        self.estimated_size = 0;
        self.queue.drain(..).map(|(_, request)| request).collect()
    }

    /// When the first queued request is due.
    pub(crate) fn next_release(&self) -> Option<Instant> {
        self.queue.front().map(|(release, _)| *release)
    }

    /// Estimated bytes queued (counted against the reject limit like stalled writes).
    pub(crate) fn estimated_size(&self) -> usize {
        self.estimated_size
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests;
