//! [`CpuWorkload`]: the TSBS `cpu-only` data set, epoch-major, split across regions.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use snafu::{Snafu, ensure};
use strata_request::{
    ColumnDataType, ColumnSchema, RegionId, RegionMetadata, RegionMetadataBuilder,
};

use crate::tags::{HostTags, TAG_NAMES, draw_host_tags};

/// Field column names in TSBS order.
pub const FIELD_NAMES: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// Name of the timestamp column.
pub const TIMESTAMP_NAME: &str = "ts";

/// TSBS's default start: 2016-01-01T00:00:00Z, in milliseconds.
pub const DEFAULT_START_MILLIS: i64 = 1_451_606_400_000;

/// Mixed into the seed for the random-walk stream, so it is independent of the tag stream.
const WALK_STREAM: u64 = 0x9E37_79B9_7F4A_7C15;

/// An invalid workload description.
#[derive(Debug, Snafu, Clone, PartialEq, Eq)]
#[snafu(display("invalid workload: {reason}"))]
pub struct WorkloadError {
    reason: String,
}

/// A description of a TSBS `cpu-only` data set.
///
/// Table `cpu`: ten string tags chosen once per host (`hostname` = `host_<i>`, `region`,
/// `datacenter`, `rack`, `os`, `arch`, `team`, `service`, `service_version`,
/// `service_environment`), a millisecond timestamp `ts`, and ten `usage_*` fields. Each field
/// is a random walk clamped to `[0, 100]` (start uniform in `[0, 100)`, step `N(0, 1)`),
/// emitted as `Int64` (truncated, like TSBS) or as `Float64` with
/// [`with_float_fields`](Self::with_float_fields).
///
/// Rows come epoch-major: every host at `t`, then every host at `t + interval`. Host `i`
/// belongs to region `i % regions`. The same description always yields the same batches.
///
/// ```
/// use strata_workload::CpuWorkload;
///
/// let workload = CpuWorkload::new(100, 3).with_regions(2).with_batch_rows(64);
/// let rows: usize = workload.batches().unwrap().map(|b| b.batch.num_rows()).sum();
/// assert_eq!(rows as u64, workload.total_rows());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuWorkload {
    hosts: usize,
    epochs: u64,
    start_epoch: u64,
    interval: Duration,
    start_millis: i64,
    seed: u64,
    float_fields: bool,
    batch_rows: usize,
    regions: usize,
}

/// One generated batch and the region (`0..regions`) it belongs to.
#[derive(Debug, Clone)]
pub struct WorkloadBatch {
    /// Index of the region, in `0..regions`.
    pub region: usize,
    /// Rows in the region's schema ([`CpuWorkload::region_metadata`]).
    pub batch: RecordBatch,
}

impl CpuWorkload {
    /// `hosts` hosts over `epochs` epochs; 10 s interval, seed 123, one region, batches of
    /// 3,000 rows, integer fields, starting at epoch 0 ([`DEFAULT_START_MILLIS`]).
    pub fn new(hosts: usize, epochs: u64) -> Self {
        Self {
            hosts,
            epochs,
            start_epoch: 0,
            interval: Duration::from_secs(10),
            start_millis: DEFAULT_START_MILLIS,
            seed: 123,
            float_fields: false,
            batch_rows: 3_000,
            regions: 1,
        }
    }

    /// Sets the random seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the time between epochs.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the timestamp of epoch 0.
    pub fn with_start_millis(mut self, start_millis: i64) -> Self {
        self.start_millis = start_millis;
        self
    }

    /// Starts at epoch `start_epoch` instead of 0, continuing the same series (the random
    /// walks are advanced to that epoch), so a data set can be extended run after run.
    pub fn with_start_epoch(mut self, start_epoch: u64) -> Self {
        self.start_epoch = start_epoch;
        self
    }

    /// Emits fields as `Float64` (not truncated) instead of `Int64`.
    pub fn with_float_fields(mut self, float_fields: bool) -> Self {
        self.float_fields = float_fields;
        self
    }

    /// Sets the maximum rows per batch.
    pub fn with_batch_rows(mut self, batch_rows: usize) -> Self {
        self.batch_rows = batch_rows;
        self
    }

    /// Splits hosts across `regions` regions.
    pub fn with_regions(mut self, regions: usize) -> Self {
        self.regions = regions;
        self
    }

    /// Number of hosts (series).
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// Number of regions.
    pub fn regions(&self) -> usize {
        self.regions
    }

    /// First epoch generated.
    pub fn start_epoch(&self) -> u64 {
        self.start_epoch
    }

    /// Number of epochs generated.
    pub fn epochs(&self) -> u64 {
        self.epochs
    }

    /// Rows the workload yields in all.
    pub fn total_rows(&self) -> u64 {
        self.hosts as u64 * self.epochs
    }

    /// The region host `host` belongs to.
    pub fn region_of_host(&self, host: usize) -> usize {
        host % self.regions.max(1)
    }

    /// Timestamp (ms) of `epoch`.
    pub fn timestamp_of_epoch(&self, epoch: u64) -> i64 {
        let step = i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX);
        let epoch = i64::try_from(epoch).unwrap_or(i64::MAX);
        self.start_millis.saturating_add(epoch.saturating_mul(step))
    }

    /// The schema of every region of this workload, for region `region_id`.
    pub fn region_metadata(&self, region_id: RegionId) -> RegionMetadata {
        let field_type = self.field_type();
        let columns = TAG_NAMES
            .iter()
            .map(|name| ColumnSchema::tag(*name))
            .chain(std::iter::once(ColumnSchema::timestamp(
                TIMESTAMP_NAME,
                ColumnDataType::TimestampMillisecond,
            )))
            .chain(
                FIELD_NAMES
                    .iter()
                    .map(|name| ColumnSchema::field(*name, field_type)),
            );
        // The column set is fixed and valid by construction; a failure here is a bug in
        // this crate, caught by its tests.
        #[allow(clippy::expect_used)]
        RegionMetadataBuilder::new(region_id)
            .columns(columns)
            .build()
            .expect("the TSBS cpu schema is valid")
    }

    /// Checks the description: at least one host, region and row per batch.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        ensure!(
            self.hosts > 0,
            WorkloadSnafu {
                reason: "hosts must be at least 1"
            }
        );
        ensure!(
            self.regions > 0,
            WorkloadSnafu {
                reason: "regions must be at least 1"
            }
        );
        ensure!(
            self.batch_rows > 0,
            WorkloadSnafu {
                reason: "batch rows must be at least 1"
            }
        );
        ensure!(
            !self.interval.is_zero(),
            WorkloadSnafu {
                reason: "interval must be positive"
            }
        );
        Ok(())
    }

    /// The batches, in generation order.
    pub fn batches(&self) -> Result<CpuBatches, WorkloadError> {
        self.validate()?;
        CpuBatches::new(self.clone())
    }

    fn field_type(&self) -> ColumnDataType {
        if self.float_fields {
            ColumnDataType::Float64
        } else {
            ColumnDataType::Int64
        }
    }
}

/// Iterator over a [`CpuWorkload`]'s batches.
pub struct CpuBatches {
    workload: CpuWorkload,
    metadata: Vec<RegionMetadata>,
    tags: Vec<HostTags>,
    /// Random-walk state per host: 10 fields each.
    states: Vec<[f64; 10]>,
    walk_rng: Pcg64Mcg,
    /// Next epoch to emit (absolute).
    epoch: u64,
    /// Next host to emit within `epoch`.
    host: usize,
    pending: Vec<RegionBuffer>,
    /// Batches ready to hand out.
    ready: std::collections::VecDeque<WorkloadBatch>,
}

impl std::fmt::Debug for CpuBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBatches")
            .field("workload", &self.workload)
            .field("epoch", &self.epoch)
            .field("host", &self.host)
            .finish()
    }
}

impl CpuBatches {
    fn new(workload: CpuWorkload) -> Result<Self, WorkloadError> {
        let mut tag_rng = Pcg64Mcg::seed_from_u64(workload.seed);
        let mut tags = Vec::with_capacity(workload.hosts);
        let mut states = Vec::with_capacity(workload.hosts);
        for host in 0..workload.hosts {
            let mut state = [0.0; 10];
            for value in &mut state {
                *value = tag_rng.random::<f64>() * 100.0;
            }
            states.push(state);
            tags.push(draw_host_tags(host, &mut tag_rng));
        }
        let metadata = (0..workload.regions)
            .map(|r| {
                let number = u32::try_from(r).map_err(|_| WorkloadError {
                    reason: format!("too many regions: {}", workload.regions),
                })?;
                Ok(workload.region_metadata(RegionId::new(0, number)))
            })
            .collect::<Result<Vec<_>, WorkloadError>>()?;
        let mut batches = Self {
            pending: (0..workload.regions)
                .map(|_| RegionBuffer::new(workload.batch_rows, workload.float_fields))
                .collect(),
            walk_rng: Pcg64Mcg::seed_from_u64(workload.seed ^ WALK_STREAM),
            epoch: 0,
            host: 0,
            metadata,
            tags,
            states,
            ready: Default::default(),
            workload,
        };
        // Epoch 0 is the initial state; each later epoch is one more step of every walk.
        for _ in 0..batches.workload.start_epoch {
            batches.step_walks();
        }
        batches.epoch = batches.workload.start_epoch;
        Ok(batches)
    }

    fn end_epoch(&self) -> u64 {
        self.workload
            .start_epoch
            .saturating_add(self.workload.epochs)
    }

    fn step_walks(&mut self) {
        for state in &mut self.states {
            for value in state.iter_mut() {
                let step: f64 = self.walk_rng.sample(StandardNormal);
                *value = (*value + step).clamp(0.0, 100.0);
            }
        }
    }

    /// Appends rows until some region's buffer is full or the data set ends.
    fn fill(&mut self) {
        while self.ready.is_empty() && self.epoch < self.end_epoch() {
            let ts = self.workload.timestamp_of_epoch(self.epoch);
            let host = self.host;
            let region = self.workload.region_of_host(host);
            self.pending[region].push(&self.tags[host], ts, &self.states[host]);
            if self.pending[region].is_full() {
                self.emit(region);
            }
            self.host += 1;
            if self.host == self.workload.hosts {
                self.host = 0;
                self.epoch += 1;
                if self.epoch < self.end_epoch() {
                    self.step_walks();
                }
            }
        }
        if self.ready.is_empty() {
            for region in 0..self.pending.len() {
                if !self.pending[region].is_empty() {
                    self.emit(region);
                }
            }
        }
    }

    fn emit(&mut self, region: usize) {
        let batch = self.pending[region].finish(&self.metadata[region]);
        self.ready.push_back(WorkloadBatch { region, batch });
    }
}

impl Iterator for CpuBatches {
    type Item = WorkloadBatch;

    fn next(&mut self) -> Option<WorkloadBatch> {
        if self.ready.is_empty() {
            self.fill();
        }
        self.ready.pop_front()
    }
}

/// Column builders for one region's next batch.
struct RegionBuffer {
    capacity: usize,
    rows: usize,
    tags: Vec<StringBuilder>,
    ts: Vec<i64>,
    fields: FieldBuilders,
}

enum FieldBuilders {
    Int(Vec<Int64Builder>),
    Float(Vec<Float64Builder>),
}

impl RegionBuffer {
    fn new(capacity: usize, float_fields: bool) -> Self {
        let fields = if float_fields {
            FieldBuilders::Float(
                (0..10)
                    .map(|_| Float64Builder::with_capacity(capacity))
                    .collect(),
            )
        } else {
            FieldBuilders::Int(
                (0..10)
                    .map(|_| Int64Builder::with_capacity(capacity))
                    .collect(),
            )
        };
        Self {
            capacity,
            rows: 0,
            tags: (0..10)
                .map(|_| StringBuilder::with_capacity(capacity, capacity * 12))
                .collect(),
            ts: Vec::with_capacity(capacity),
            fields,
        }
    }

    fn push(&mut self, tags: &HostTags, ts: i64, state: &[f64; 10]) {
        for (builder, value) in self.tags.iter_mut().zip(tags) {
            builder.append_value(value);
        }
        self.ts.push(ts);
        match &mut self.fields {
            // TSBS emits the walks truncated to integers.
            FieldBuilders::Int(builders) => {
                for (builder, value) in builders.iter_mut().zip(state) {
                    builder.append_value(value.trunc() as i64);
                }
            }
            FieldBuilders::Float(builders) => {
                for (builder, value) in builders.iter_mut().zip(state) {
                    builder.append_value(*value);
                }
            }
        }
        self.rows += 1;
    }

    fn is_full(&self) -> bool {
        self.rows >= self.capacity
    }

    fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn finish(&mut self, metadata: &RegionMetadata) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(21);
        columns.extend(
            self.tags
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        let ts = std::mem::replace(&mut self.ts, Vec::with_capacity(self.capacity));
        columns.push(Arc::new(TimestampMillisecondArray::from(ts)));
        match &mut self.fields {
            FieldBuilders::Int(b) => {
                columns.extend(b.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
            }
            FieldBuilders::Float(b) => {
                columns.extend(b.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
            }
        }
        self.rows = 0;
        // Column order and types follow `region_metadata` exactly; a mismatch is a bug in
        // this file, caught by its tests.
        #[allow(clippy::expect_used)]
        RecordBatch::try_new(metadata.arrow_schema().clone(), columns)
            .expect("generated columns match the cpu schema")
    }
}

#[cfg(test)]
mod tests;
