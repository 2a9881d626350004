//! `strata_flush_*` metrics on the embedder's registry.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::reason::FlushReason;

/// The flush pipeline's metrics.
#[derive(Debug, Clone)]
pub struct FlushMetrics {
    requests: IntCounterVec,
    failures: IntCounter,
    elapsed: HistogramVec,
    bytes: IntCounter,
    inflight: IntGauge,
}

impl FlushMetrics {
    /// Registers `strata_flush_requests_total{reason}`, `strata_flush_failures_total`,
    /// `strata_flush_elapsed_seconds{stage}`, `strata_flush_bytes_total` and
    /// `strata_flush_inflight` on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "strata_flush_requests_total",
                "Flushes scheduled, by reason.",
            ),
            &["reason"],
        )?;
        let failures = IntCounter::new("strata_flush_failures_total", "Flushes that failed.")?;
        let elapsed = HistogramVec::new(
            HistogramOpts::new(
                "strata_flush_elapsed_seconds",
                "Flush time, by stage (write_sst, commit, total).",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
            &["stage"],
        )?;
        let bytes = IntCounter::new("strata_flush_bytes_total", "SST bytes written by flushes.")?;
        let inflight = IntGauge::new("strata_flush_inflight", "Flush jobs running now.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(elapsed.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        for reason in FlushReason::ALL {
            requests.with_label_values(&[reason.as_str()]);
        }
        Ok(Self {
            requests,
            failures,
            elapsed,
            bytes,
            inflight,
        })
    }

    /// Counts a flush requested for `reason` (the scheduler counts its own; a flush run
    /// outside it, as during a WAL replay, is counted by its caller).
    pub fn request(&self, reason: FlushReason) {
        self.requests.with_label_values(&[reason.as_str()]).inc();
    }

    pub(crate) fn failure(&self) {
        self.failures.inc();
    }

    pub(crate) fn observe_stage(&self, stage: &str, elapsed: Duration) {
        self.elapsed
            .with_label_values(&[stage])
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.bytes.inc_by(bytes);
    }

    pub(crate) fn inflight_guard(&self) -> InflightGuard {
        self.inflight.inc();
        InflightGuard(self.inflight.clone())
    }
}

/// Counts a running job until dropped.
pub(crate) struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
