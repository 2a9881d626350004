//! Model test: random puts and deletes (with duplicate keys) spread across several memtables
//! and SST files by random freezes and flushes, then scans with random projections and
//! time ranges, must equal a `BTreeMap` model after every step, and so must counts.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use futures::TryStreamExt;
use opendal::Operator;
use proptest::prelude::*;
use strata_request::{
    ColumnDataType, ColumnSchema, RegionId, RegionMetadata, RegionMetadataBuilder, RegionOptions,
    WriteRequest,
};
use strata_storage::{
    ManifestConfig, ManifestManager, MergeOptions, RegionEdit, RegionMetaAction,
    RegionMetaActionList, ScanOrder, ScanRequest, SstWriteOptions, TimeRange, Version,
    VersionControl, count, flush_memtable, scan,
};

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<(u8, i64, i64)>),
    Delete(Vec<(u8, i64)>),
    Freeze,
    Flush,
    Scan {
        columns: Vec<bool>,
        range: Option<(i64, i64)>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => proptest::collection::vec((0u8..4, 0i64..8, -100i64..100), 1..8).prop_map(Op::Put),
        2 => proptest::collection::vec((0u8..4, 0i64..8), 1..4).prop_map(Op::Delete),
        1 => Just(Op::Freeze),
        1 => Just(Op::Flush),
        2 => (proptest::collection::vec(any::<bool>(), 3), proptest::option::of((0i64..8, 0i64..8)))
            .prop_map(|(columns, range)| Op::Scan { columns, range }),
    ]
}

fn metadata() -> RegionMetadata {
    RegionMetadataBuilder::new(RegionId::new(5, 0))
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("v", ColumnDataType::Int64))
        .build()
        .unwrap()
}

struct Region {
    store: Operator,
    manifest: ManifestManager,
    vc: VersionControl,
    sequence: u64,
    entry: u64,
}

impl Region {
    async fn new() -> Self {
        let store = Operator::new(opendal::services::Memory::default()).unwrap();
        let manifest = ManifestManager::create(
            store.clone(),
            metadata(),
            RegionOptions::default(),
            ManifestConfig::default(),
        )
        .await
        .unwrap();
        let vc = VersionControl::new(Version::from_manifest(manifest.manifest(), None).unwrap());
        Self {
            store,
            manifest,
            vc,
            sequence: 0,
            entry: 0,
        }
    }

    /// Validates like the write path, then inserts into the mutable memtable.
    fn write(&mut self, request: WriteRequest) {
        let version = self.vc.current().version().clone();
        let batch = request.validate(version.metadata()).unwrap();
        let first = self.sequence + 1;
        version
            .memtables()
            .mutable()
            .write(&batch, request.op_type, first)
            .unwrap();
        self.sequence += batch.num_rows() as u64;
        self.entry += 1;
        self.vc.set_sequence_and_entry_id(self.sequence, self.entry);
    }

    /// Flushes every frozen memtable to SSTs and records the edit, like the flush job.
    async fn flush(&mut self) {
        let snapshot = self.vc.current();
        let mut files = Vec::new();
        let mut flushed = Vec::new();
        for memtable in snapshot.version().memtables().immutables() {
            if let Some(file) = flush_memtable(
                &self.store,
                memtable,
                &{
                    let mut cfg = SstWriteOptions::default();
                    cfg.row_group_size = 4;
                    cfg
                },
                MergeOptions::flush(),
            )
            .await
            .unwrap()
            {
                files.push(file);
            }
            flushed.push(memtable.id());
        }
        let mut edit = RegionEdit::default();
        edit.files_to_add = files;
        edit.flushed_entry_id = Some(snapshot.last_entry_id());
        edit.flushed_sequence = Some(snapshot.committed_sequence());
        self.manifest
            .update(RegionMetaActionList::one(RegionMetaAction::Edit(
                edit.clone(),
            )))
            .await
            .unwrap();
        self.vc.apply_edit(&edit, &flushed);
    }
}

fn rows_batch(rows: &[(String, i64, Option<i64>)]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.as_str()),
        )),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|r| r.1),
        )),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
    ];
    RecordBatch::try_new(metadata().arrow_schema().clone(), columns).unwrap()
}

/// Scans in key order and renders each row's projected values as strings.
async fn scan_rows(
    region: &Region,
    projection: &[usize],
    range: Option<TimeRange>,
) -> Vec<Vec<String>> {
    scan_rows_in(region, projection, range, ScanOrder::Key).await
}

/// Scans in time-group order and renders the rows as strings, sorted (time-group order
/// differs from key order wherever groups — memtables, files and the time slices of files
/// — interleave by key).
async fn scan_rows_sorted_from_time_groups(
    region: &Region,
    projection: &[usize],
    range: Option<TimeRange>,
) -> Vec<Vec<String>> {
    let mut rows = scan_rows_in(region, projection, range, ScanOrder::TimeGroups).await;
    rows.sort();
    rows
}

/// Scans in `order` and renders each row's projected values as strings.
async fn scan_rows_in(
    region: &Region,
    projection: &[usize],
    range: Option<TimeRange>,
    order: ScanOrder,
) -> Vec<Vec<String>> {
    let mut request = ScanRequest::new()
        .column_indices(projection.iter().copied())
        .batch_rows(3)
        .order(order);
    request.time_range = range;
    let batches: Vec<RecordBatch> = scan(&region.store, &region.vc.current(), request)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    arrow_schema::DataType::Utf8 => c.as_string::<i32>().value(i).to_string(),
                    arrow_schema::DataType::Int64 if c.is_null(i) => "null".into(),
                    arrow_schema::DataType::Int64 => {
                        c.as_primitive::<Int64Type>().value(i).to_string()
                    }
                    _ => c
                        .as_primitive::<TimestampMillisecondType>()
                        .value(i)
                        .to_string(),
                })
                .collect();
            out.push(row);
        }
    }
    out
}

/// [`count`] of the region: what a scan with `range` returns, counted.
async fn count_rows(region: &Region, range: Option<TimeRange>) -> u64 {
    let mut request = ScanRequest::new().batch_rows(3);
    request.time_range = range;
    count(&region.store, &region.vc.current(), request)
        .await
        .unwrap()
        .rows
}

fn expected(
    model: &BTreeMap<(String, i64), i64>,
    projection: &[usize],
    range: Option<TimeRange>,
) -> Vec<Vec<String>> {
    model
        .iter()
        .filter(|((_, ts), _)| range.is_none_or(|r| r.contains(*ts)))
        .map(|((host, ts), v)| {
            let all = [host.clone(), ts.to_string(), v.to_string()];
            projection.iter().map(|&i| all[i].clone()).collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128 * std::env::var("STRATA_STRESS").ok().and_then(|s| s.parse().ok()).unwrap_or(1u32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn scans_always_equal_the_model(ops in proptest::collection::vec(op(), 1..40), threads in 1usize..3) {
        // One thread: files decoded on the scanning task; two: each decoded ahead on its
        // own task (`ScanRequest::prefetch_batches`).
        let runtime = if threads == 1 {
            tokio::runtime::Builder::new_current_thread().build().unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).build().unwrap()
        };
        runtime.block_on(async {
            let mut region = Region::new().await;
            let mut model: BTreeMap<(String, i64), i64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(rows) => {
                        let rows: Vec<_> = rows.into_iter().map(|(h, ts, v)| (format!("h{h}"), ts, Some(v))).collect();
                        for (h, ts, v) in &rows {
                            model.insert((h.clone(), *ts), v.unwrap_or_default());
                        }
                        region.write(WriteRequest::put(RegionId::new(5, 0), rows_batch(&rows)));
                    }
                    Op::Delete(keys) => {
                        let rows: Vec<_> = keys.into_iter().map(|(h, ts)| (format!("h{h}"), ts, None)).collect();
                        for (h, ts, _) in &rows {
                            model.remove(&(h.clone(), *ts));
                        }
                        region.write(WriteRequest::delete(RegionId::new(5, 0), rows_batch(&rows)));
                    }
                    Op::Freeze => region.vc.freeze_mutable(),
                    Op::Flush => {
                        region.vc.freeze_mutable();
                        region.flush().await;
                    }
                    Op::Scan { columns, range } => {
                        let projection: Vec<usize> = (0..3).filter(|&i| columns[i]).collect();
                        let range = range.map(|(a, b)| TimeRange { start: a.min(b), end: a.max(b) });
                        let want = expected(&model, &projection, range);
                        assert_eq!(scan_rows(&region, &projection, range).await, want);
                        let mut want_sorted = want;
                        want_sorted.sort();
                        assert_eq!(scan_rows_sorted_from_time_groups(&region, &projection, range).await, want_sorted);
                        assert_eq!(count_rows(&region, range).await, expected(&model, &[], range).len() as u64);
                    }
                }
                // Always check the full scan and the count too.
                let want = expected(&model, &[0, 1, 2], None);
                assert_eq!(scan_rows(&region, &[0, 1, 2], None).await, want);
                let mut want_sorted = want;
                want_sorted.sort();
                assert_eq!(scan_rows_sorted_from_time_groups(&region, &[0, 1, 2], None).await, want_sorted);
                assert_eq!(count_rows(&region, None).await, model.len() as u64);
            }
        });
    }
}

/// A scan polled by another executor's `block_on` inside a current-thread tokio runtime
/// (as the storage flush bench does) finishes: it decodes on the polling thread instead of
/// waiting for a task that runtime would never run.
#[test]
fn a_scan_polled_by_another_executor_inside_a_current_thread_runtime_finishes() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut region = Region::new().await;
        for round in 0..3 {
            let rows: Vec<_> = (0..5).map(|h| (format!("h{h}"), round, Some(h))).collect();
            region.write(WriteRequest::put(RegionId::new(5, 0), rows_batch(&rows)));
            region.vc.freeze_mutable();
            region.flush().await;
        }
        let rows = futures::executor::block_on(scan_rows(&region, &[0, 1, 2], None));
        assert_eq!(rows.len(), 15);
    });
}
