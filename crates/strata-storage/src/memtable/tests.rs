use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use proptest::prelude::*;
use strata_buffer::{ReleaseNotifier, WriteBufferManager, WriteBufferManagerImpl};
use strata_request::{ColumnDataType, ColumnSchema, RegionId, RegionMetadataBuilder};

use super::*;

/// host (tag), ts, v (i64 field), dc (tag).
fn metadata() -> Arc<RegionMetadata> {
    Arc::new(
        RegionMetadataBuilder::new(RegionId::new(1, 0))
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .column(ColumnSchema::field("v", ColumnDataType::Int64))
            .column(ColumnSchema::tag("dc"))
            .build()
            .unwrap(),
    )
}

fn memtable(write_buffer: Option<WriteBufferManagerRef>) -> TimeSeriesMemtable {
    TimeSeriesMemtable::new(
        7,
        Arc::new(KeyCodec::new(metadata()).unwrap()),
        write_buffer,
    )
}

/// Rows `(host, ts, v)` with dc = "d".
fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|r| r.1),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "d"))),
    ];
    RecordBatch::try_new(metadata().arrow_schema().clone(), columns).unwrap()
}

/// `(host, ts, v, sequence, op)` of every row the iterator yields, in order.
fn read(m: &TimeSeriesMemtable, options: ScanRequest) -> Vec<(String, i64, i64, u64, OpType)> {
    rows_of(m.iter(options).unwrap())
}

/// `(host, ts, v, sequence, op)` of every row `iter` yields, in order.
fn rows_of(iter: MemtableIter) -> Vec<(String, i64, i64, u64, OpType)> {
    let mut out = Vec::new();
    for b in iter {
        let b = b.unwrap();
        let host = b.columns()[0].as_string::<i32>();
        let ts = b.columns()[1].as_primitive::<TimestampMillisecondType>();
        let v = b.columns()[2].as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert_eq!(ts.value(i), b.timestamp(i));
            out.push((
                host.value(i).to_string(),
                ts.value(i),
                v.value(i),
                b.sequence(i),
                b.op_type(i),
            ));
        }
    }
    out
}

#[test]
fn rows_come_out_sorted_by_key_then_time_then_newest_first() {
    let m = memtable(None);
    m.write(
        &batch(&[("b", 2, 20), ("a", 5, 50), ("b", 1, 10)]),
        OpType::Put,
        1,
    )
    .unwrap();
    m.write(&batch(&[("a", 5, 51), ("b", 1, 11)]), OpType::Delete, 4)
        .unwrap();
    let rows = read(&m, ScanRequest::default());
    let expected = [
        ("a", 5, 51, 4, OpType::Delete),
        ("a", 5, 50, 2, OpType::Put),
        ("b", 1, 11, 5, OpType::Delete),
        ("b", 1, 10, 3, OpType::Put),
        ("b", 2, 20, 1, OpType::Put),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|e| (e.0.to_string(), e.1, e.2, e.3, e.4))
        .collect();
    assert_eq!(rows, expected);
}

#[test]
fn stats_track_rows_series_time_range_and_sequences() {
    let m = memtable(None);
    assert!(m.is_empty());
    assert_eq!(m.stats(), MemtableStats::default());
    m.write(
        &batch(&[("a", 9, 0), ("b", -3, 0), ("a", 4, 0)]),
        OpType::Put,
        10,
    )
    .unwrap();
    let s = m.stats();
    assert_eq!(s.num_rows, 3);
    assert_eq!(s.series_count, 2);
    assert_eq!(s.max_sequence, 12);
    assert_eq!(s.time_range, Some(TimeRange { start: -3, end: 9 }));
    assert!(s.estimated_bytes > 0);
    assert!(!m.is_empty());
}

#[test]
fn projection_time_range_and_max_sequence_filter_rows() {
    let m = memtable(None);
    m.write(
        &batch(&[("a", 1, 1), ("a", 2, 2), ("a", 3, 3), ("b", 2, 4)]),
        OpType::Put,
        1,
    )
    .unwrap();
    let rows = read(
        &m,
        ScanRequest {
            time_range: Some(TimeRange { start: 2, end: 3 }),
            max_sequence: Some(3),
            ..Default::default()
        },
    );
    let got: Vec<_> = rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    assert_eq!(got, [("a", 2), ("a", 3)]);

    let mut it = m
        .iter(ScanRequest {
            projection: Some(vec![2, 3]),
            ..Default::default()
        })
        .unwrap();
    let b = it.next().unwrap().unwrap();
    assert_eq!(b.columns().len(), 2);
    assert_eq!(
        b.columns()[0].as_primitive::<Int64Type>().values().as_ref(),
        &[1, 2, 3, 4]
    );
    assert_eq!(b.columns()[1].as_string::<i32>().value(3), "d");
    assert_eq!(
        b.timestamp(3),
        2,
        "timestamps are there even when not projected"
    );

    let err = m
        .iter(ScanRequest {
            projection: Some(vec![4]),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("projection index 4"), "{err}");
}

#[test]
fn batches_respect_the_row_limit_and_keep_the_order() {
    let m = memtable(None);
    let rows: Vec<(String, i64, i64)> = (0..50).map(|i| (format!("h{}", i % 7), i, i)).collect();
    let rows_ref: Vec<(&str, i64, i64)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
    m.write(&batch(&rows_ref), OpType::Put, 1).unwrap();
    let whole = read(&m, ScanRequest::default());
    let sizes: Vec<usize> = m
        .iter(ScanRequest {
            batch_rows: 8,
            ..Default::default()
        })
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .collect();
    assert!(sizes.iter().all(|&n| n <= 8));
    assert_eq!(sizes.iter().sum::<usize>(), 50);
    assert_eq!(
        read(
            &m,
            ScanRequest {
                batch_rows: 8,
                ..Default::default()
            }
        ),
        whole
    );
}

#[test]
fn memory_is_charged_frozen_and_released_through_the_write_buffer() {
    let manager =
        Arc::new(WriteBufferManagerImpl::new(1 << 30, 2 << 30, ReleaseNotifier::new()).unwrap());
    let m = memtable(Some(manager.clone()));
    m.write(&batch(&[("a", 1, 1), ("b", 2, 2)]), OpType::Put, 1)
        .unwrap();
    let bytes = m.stats().estimated_bytes;
    assert_eq!(manager.memory_usage(), bytes);
    assert_eq!(manager.mutable_usage(), bytes);

    let next = m.fork(8, Arc::new(KeyCodec::new(metadata()).unwrap()));
    assert_eq!(next.id(), 8);
    assert!(next.is_empty());
    m.freeze();
    assert!(m.is_frozen());
    assert_eq!(manager.mutable_usage(), 0);
    let err = m.write(&batch(&[("a", 3, 3)]), OpType::Put, 3).unwrap_err();
    assert!(
        matches!(err, StorageError::Frozen { memtable_id: 7, .. }),
        "{err}"
    );

    next.write(&batch(&[("c", 1, 1)]), OpType::Put, 3).unwrap();
    assert_eq!(
        manager.mutable_usage(),
        next.stats().estimated_bytes,
        "the fork charges the same buffer"
    );
    drop(m);
    assert_eq!(manager.memory_usage(), next.stats().estimated_bytes);
    assert_eq!(manager.notifier().notifications(), 1);
}

#[test]
fn a_batch_of_another_schema_is_refused() {
    let m = memtable(None);
    let other = RegionMetadataBuilder::new(RegionId::new(1, 0))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .build()
        .unwrap();
    let b = RecordBatch::try_new(
        other.arrow_schema().clone(),
        vec![Arc::new(TimestampMillisecondArray::from(vec![1]))],
    )
    .unwrap();
    assert!(matches!(
        m.write(&b, OpType::Put, 1),
        Err(StorageError::SchemaMismatch { .. })
    ));
}

proptest! {
    /// Each iterator of `iter_ranges` gives exactly what `iter` with its range gives, for
    /// ranges that split the rows anywhere (several rows of a series at one timestamp
    /// included) and rows outside every range.
    #[test]
    fn ranged_iterators_equal_one_time_ranged_iteration_each(
        rows in proptest::collection::vec((0u8..4, -8i64..8, any::<i64>()), 1..60),
        mut cuts in proptest::collection::vec(-10i64..10, 1..6),
        batch_rows in 1usize..9,
    ) {
        let m = memtable(None);
        let hosts = ["a", "b", "c", "d"];
        let written: Vec<(&str, i64, i64)> =
            rows.iter().map(|&(h, ts, v)| (hosts[h as usize], ts, v)).collect();
        m.write(&batch(&written), OpType::Put, 1).unwrap();
        cuts.sort_unstable();
        cuts.dedup();
        // Disjoint ascending ranges between the cuts (the first and last rows may fall
        // outside them all).
        let ranges: Vec<TimeRange> = cuts
            .windows(2)
            .map(|w| TimeRange { start: w[0], end: w[1] - 1 })
            .collect();
        let options = ScanRequest { batch_rows, ..Default::default() };
        let split = m.iter_ranges(options.clone(), &ranges).unwrap();
        prop_assert_eq!(split.len(), ranges.len());
        for (iter, range) in split.into_iter().zip(&ranges) {
            let want = read(&m, ScanRequest { time_range: Some(*range), ..options.clone() });
            prop_assert_eq!(rows_of(iter), want);
        }
    }

    /// Whatever is written (few keys, colliding timestamps, puts and deletes, several
    /// batches), the iterator yields exactly the rows written, in (key, ts, seq desc) order.
    #[test]
    fn iteration_equals_the_sorted_model(
        writes in proptest::collection::vec(
            (proptest::collection::vec((0u8..5, -5i64..5, any::<i64>()), 1..20), any::<bool>()),
            1..8,
        ),
        batch_rows in 1usize..40,
    ) {
        let m = memtable(None);
        let mut model = Vec::new();
        let mut sequence = 1;
        for (rows, delete) in &writes {
            let hosts: Vec<String> = rows.iter().map(|r| format!("h{}", r.0)).collect();
            let b: Vec<(&str, i64, i64)> = rows.iter().zip(&hosts).map(|(r, h)| (h.as_str(), r.1, r.2)).collect();
            let op = if *delete { OpType::Delete } else { OpType::Put };
            m.write(&batch(&b), op, sequence).unwrap();
            for (i, (h, ts, v)) in b.iter().enumerate() {
                model.push((h.to_string(), *ts, *v, sequence + i as u64, op));
            }
            sequence += b.len() as u64;
        }
        model.sort_by(|a, b| (&a.0, a.1, std::cmp::Reverse(a.3)).cmp(&(&b.0, b.1, std::cmp::Reverse(b.3))));
        prop_assert_eq!(read(&m, ScanRequest { batch_rows, ..Default::default() }), model);
    }
}
