//! `strata_compaction_*` metrics on the embedder's registry.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::picker::PickMode;

/// Compaction's metrics.
#[derive(Debug, Clone)]
pub struct CompactionMetrics {
    started: IntCounterVec,
    failed: IntCounter,
    rows: IntCounterVec,
    bytes: IntCounterVec,
    expired_files: IntCounter,
    files: IntGaugeVec,
    elapsed: Histogram,
    inflight: IntGauge,
}

impl CompactionMetrics {
    /// Registers `strata_compaction_started_total{mode}`, `strata_compaction_failed_total`,
    /// `strata_compaction_rows_total{direction}` and `strata_compaction_bytes_total{direction}`
    /// (`read`, `written`), `strata_compaction_expired_files_total`,
    /// `strata_compaction_files{worker,level}` (files per level of each worker's open
    /// regions), `strata_compaction_elapsed_seconds` and
    /// `strata_compaction_inflight` on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let started = IntCounterVec::new(
            Opts::new(
                "strata_compaction_started_total",
                "Compaction jobs started, by mode.",
            ),
            &["mode"],
        )?;
        let failed = IntCounter::new(
            "strata_compaction_failed_total",
            "Compaction jobs that failed or were discarded.",
        )?;
        let rows = IntCounterVec::new(
            Opts::new(
                "strata_compaction_rows_total",
                "Rows read and written by compactions.",
            ),
            &["direction"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "strata_compaction_bytes_total",
                "SST bytes read and written by compactions.",
            ),
            &["direction"],
        )?;
        let expired_files = IntCounter::new(
            "strata_compaction_expired_files_total",
            "Files removed whole because every row was past the region's TTL.",
        )?;
        let files = IntGaugeVec::new(
            Opts::new(
                "strata_compaction_files",
                "SST files of each worker's open regions, by level.",
            ),
            &["worker", "level"],
        )?;
        let elapsed = Histogram::with_opts(
            HistogramOpts::new(
                "strata_compaction_elapsed_seconds",
                "Time from a compaction job's start to its commit.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 20)?),
        )?;
        let inflight = IntGauge::new("strata_compaction_inflight", "Compaction jobs running now.")?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(expired_files.clone()))?;
        registry.register(Box::new(files.clone()))?;
        registry.register(Box::new(elapsed.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        for mode in PickMode::ALL {
            started.with_label_values(&[mode.as_str()]);
        }
        for direction in ["read", "written"] {
            rows.with_label_values(&[direction]);
            bytes.with_label_values(&[direction]);
        }
        Ok(Self {
            started,
            failed,
            rows,
            bytes,
            expired_files,
            files,
            elapsed,
            inflight,
        })
    }

    pub(crate) fn start(&self, mode: PickMode) -> InflightGuard {
        self.started.with_label_values(&[mode.as_str()]).inc();
        self.inflight.inc();
        InflightGuard(self.inflight.clone())
    }

    pub(crate) fn failure(&self) {
        self.failed.inc();
    }

    pub(crate) fn finished(&self, stats: &crate::CompactionStats, elapsed: Duration) {
        self.rows
            .with_label_values(&["read"])
            .inc_by(stats.rows_read);
        self.rows
            .with_label_values(&["written"])
            .inc_by(stats.rows_written);
        self.bytes
            .with_label_values(&["read"])
            .inc_by(stats.bytes_read);
        self.bytes
            .with_label_values(&["written"])
            .inc_by(stats.bytes_written);
        self.expired_files.inc_by(stats.expired_files);
        self.elapsed.observe(elapsed.as_secs_f64());
    }

    /// Sets the number of files at `level` in `worker`'s open regions (the workers keep
    /// it as regions open, close, flush and compact).
    pub fn set_files(&self, worker: &str, level: u8, count: usize) {
        self.files
            .with_label_values(&[worker, level.to_string().as_str()])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// Counts a running job until dropped.
pub(crate) struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
