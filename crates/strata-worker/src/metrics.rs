//! `strata_write_*`, `strata_region_count` and `strata_request_wait_seconds` on the
//! embedder's registry.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The workers' metrics. Without a registry from the embedder they are registered on a
/// private one, so the code paths are the same either way.
#[derive(Debug, Clone)]
pub(crate) struct WorkerMetrics {
    rows: IntCounterVec,
    stall_total: IntCounter,
    stalling: IntGaugeVec,
    reject_total: IntCounter,
    delay_total: IntCounter,
    delay_seconds: prometheus::Counter,
    stage: HistogramVec,
    wait: Histogram,
    regions: IntGaugeVec,
}

impl WorkerMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let rows = IntCounterVec::new(
            Opts::new("strata_write_rows_total", "Rows written, by op type."),
            &["type"],
        )?;
        let stall_total = IntCounter::new(
            "strata_write_stall_total",
            "Write requests ever stalled because memory was over budget.",
        )?;
        let stalling = IntGaugeVec::new(
            Opts::new(
                "strata_write_stalling",
                "Write requests stalled now, by worker.",
            ),
            &["worker"],
        )?;
        let reject_total = IntCounter::new(
            "strata_write_reject_total",
            "Write requests rejected because memory was over the reject limit.",
        )?;
        let delay_total = IntCounter::new(
            "strata_write_delay_total",
            "Write requests paced (delayed) because memory was over the slowdown threshold.",
        )?;
        let delay_seconds = prometheus::Counter::new(
            "strata_write_delay_seconds_total",
            "Seconds write requests were delayed by the slowdown, summed.",
        )?;
        let stage = HistogramVec::new(
            HistogramOpts::new(
                "strata_write_stage_seconds",
                "Time per write batch, by stage (prepare, wal, memtable).",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 18)?),
            &["stage"],
        )?;
        let wait = Histogram::with_opts(
            HistogramOpts::new(
                "strata_request_wait_seconds",
                "Time requests wait in a worker's channel.",
            )
            .buckets(prometheus::exponential_buckets(0.000_01, 2.0, 20)?),
        )?;
        let regions = IntGaugeVec::new(
            Opts::new("strata_region_count", "Open regions, by worker."),
            &["worker"],
        )?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(stall_total.clone()))?;
        registry.register(Box::new(stalling.clone()))?;
        registry.register(Box::new(reject_total.clone()))?;
        registry.register(Box::new(delay_total.clone()))?;
        registry.register(Box::new(delay_seconds.clone()))?;
        registry.register(Box::new(stage.clone()))?;
        registry.register(Box::new(wait.clone()))?;
        registry.register(Box::new(regions.clone()))?;
        Ok(Self {
            rows,
            stall_total,
            stalling,
            reject_total,
            delay_total,
            delay_seconds,
            stage,
            wait,
            regions,
        })
    }

    pub(crate) fn add_rows(&self, op: &str, rows: usize) {
        self.rows.with_label_values(&[op]).inc_by(rows as u64);
    }

    pub(crate) fn stalled(&self, requests: usize) {
        self.stall_total.inc_by(requests as u64);
    }

    pub(crate) fn set_stalling(&self, worker: &str, requests: usize) {
        self.stalling
            .with_label_values(&[worker])
            .set(i64::try_from(requests).unwrap_or(i64::MAX));
    }

    pub(crate) fn rejected(&self, requests: usize) {
        self.reject_total.inc_by(requests as u64);
    }

    pub(crate) fn delayed(&self, delay: Duration) {
        self.delay_total.inc();
        self.delay_seconds.inc_by(delay.as_secs_f64());
    }

    pub(crate) fn stage(&self, stage: &str, elapsed: Duration) {
        self.stage
            .with_label_values(&[stage])
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn waited(&self, elapsed: Duration) {
        self.wait.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn set_regions(&self, worker: &str, regions: usize) {
        self.regions
            .with_label_values(&[worker])
            .set(i64::try_from(regions).unwrap_or(i64::MAX));
    }
}
