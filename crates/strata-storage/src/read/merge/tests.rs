use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use proptest::prelude::*;
use strata_request::{
    ColumnDataType, ColumnSchema, RegionId, RegionMetadata, RegionMetadataBuilder,
};

use super::*;
use crate::memtable::TimeSeriesMemtable;
use crate::request::ScanRequest;
use crate::time_range::TimeRange;

fn codec() -> Arc<KeyCodec> {
    let metadata: RegionMetadata = RegionMetadataBuilder::new(RegionId::new(2, 0))
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("v", ColumnDataType::Int64))
        .build()
        .unwrap();
    Arc::new(KeyCodec::new(Arc::new(metadata)).unwrap())
}

fn batch(codec: &KeyCodec, rows: &[(String, i64, i64)]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.as_str()),
        )),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|r| r.1),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
    ];
    RecordBatch::try_new(codec.metadata().arrow_schema().clone(), columns).unwrap()
}

fn stream(m: &TimeSeriesMemtable, options: ScanRequest) -> BatchStream {
    Box::pin(futures::stream::iter(m.iter(options).unwrap()))
}

/// `(host, ts, v, seq, op)` of the merged rows.
fn run(
    codec: &Arc<KeyCodec>,
    sources: Vec<BatchStream>,
    options: MergeOptions,
) -> Vec<(String, i64, i64, u64, OpType)> {
    run_remembering(codec, sources, options, KeyIds::MAX)
}

/// [`run`] with a merge that remembers at most `keys` keys at once.
fn run_remembering(
    codec: &Arc<KeyCodec>,
    sources: Vec<BatchStream>,
    options: MergeOptions,
    keys: usize,
) -> Vec<(String, i64, i64, u64, OpType)> {
    futures::executor::block_on(async {
        let mut merged = merge_remembering(codec.clone(), sources, options, keys);
        let mut out = Vec::new();
        while let Some(b) = merged.next().await {
            let b = b.unwrap();
            assert!(b.num_rows() <= options.batch_rows);
            let host = b.columns()[0].as_string::<i32>();
            let v = b.columns()[2].as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                out.push((
                    host.value(i).to_string(),
                    b.timestamp(i),
                    v.value(i),
                    b.sequence(i),
                    b.op_type(i),
                ));
            }
        }
        out
    })
}

fn h(s: &str) -> String {
    s.to_string()
}

#[test]
fn the_newest_row_wins_and_deletes_hide_older_rows() {
    let codec = codec();
    let old = TimeSeriesMemtable::new(1, codec.clone(), None);
    let new = TimeSeriesMemtable::new(2, codec.clone(), None);
    old.write(
        &batch(&codec, &[(h("a"), 1, 10), (h("a"), 2, 20), (h("b"), 1, 30)]),
        OpType::Put,
        1,
    )
    .unwrap();
    new.write(&batch(&codec, &[(h("a"), 1, 11)]), OpType::Put, 4)
        .unwrap();
    new.write(&batch(&codec, &[(h("b"), 1, 0)]), OpType::Delete, 5)
        .unwrap();

    let sources = || {
        vec![
            stream(&old, ScanRequest::default()),
            stream(&new, ScanRequest::default()),
        ]
    };
    let scan = run(&codec, sources(), MergeOptions::scan());
    assert_eq!(
        scan,
        [
            (h("a"), 1, 11, 4, OpType::Put),
            (h("a"), 2, 20, 2, OpType::Put)
        ]
    );

    let flush = run(&codec, sources(), MergeOptions::flush());
    assert_eq!(
        flush,
        [
            (h("a"), 1, 11, 4, OpType::Put),
            (h("a"), 2, 20, 2, OpType::Put),
            (h("b"), 1, 0, 5, OpType::Delete),
        ],
        "a flush keeps the tombstone so it still hides older files"
    );

    let all = run(
        &codec,
        sources(),
        MergeOptions {
            dedup: false,
            filter_deleted: false,
            batch_rows: 2,
        },
    );
    assert_eq!(all.len(), 5, "without dedup every row comes through");
}

#[test]
fn no_sources_and_empty_sources_yield_nothing() {
    let codec = codec();
    assert!(run(&codec, vec![], MergeOptions::scan()).is_empty());
    let empty = TimeSeriesMemtable::new(1, codec.clone(), None);
    assert!(
        run(
            &codec,
            vec![stream(&empty, ScanRequest::default())],
            MergeOptions::scan()
        )
        .is_empty()
    );
}

#[test]
fn a_source_error_ends_the_stream_with_that_error() {
    let codec = codec();
    let failing: BatchStream = Box::pin(futures::stream::iter(vec![Err(
        StorageError::BadProjection {
            region_id: RegionId::new(2, 0),
            index: 9,
            columns: 3,
        },
    )]));
    futures::executor::block_on(async {
        let mut merged = merge(codec.clone(), vec![failing], MergeOptions::scan());
        assert!(matches!(
            merged.next().await,
            Some(Err(StorageError::BadProjection { .. }))
        ));
        assert!(merged.next().await.is_none());
    });
}

#[test]
fn long_runs_of_one_source_come_out_whole_and_in_order() {
    // Source i holds keys h{i}x with 40 timestamps each: the merge takes long runs from
    // each source in turn (copied as slices), then interleaves two sources sharing keys.
    let codec = codec();
    let memtables: Vec<TimeSeriesMemtable> = (0..3u32)
        .map(|i| TimeSeriesMemtable::new(i, codec.clone(), None))
        .collect();
    let mut expected = Vec::new();
    let mut sequence = 1;
    for (i, m) in memtables.iter().enumerate() {
        for key in 0..3 {
            // Sources 0 and 1 share key "s0k2": their rows of it interleave by timestamp.
            let host = if key == 2 && i < 2 {
                "s0k2".to_string()
            } else {
                format!("s{i}k{key}")
            };
            let rows: Vec<(String, i64, i64)> = (0..40)
                .filter(|ts| key != 2 || i >= 2 || ts % 2 == i as i64)
                .map(|ts| (host.clone(), ts, ts * 10 + i as i64))
                .collect();
            m.write(&batch(&codec, &rows), OpType::Put, sequence)
                .unwrap();
            sequence += rows.len() as u64;
            expected.extend(rows);
        }
    }
    expected.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for batch_rows in [64, 1000] {
        let options = ScanRequest {
            batch_rows: 1000,
            ..Default::default()
        };
        let sources = memtables
            .iter()
            .map(|m| stream(m, options.clone()))
            .collect();
        let got: Vec<(String, i64, i64)> = run(
            &codec,
            sources,
            MergeOptions {
                batch_rows,
                ..MergeOptions::scan()
            },
        )
        .into_iter()
        .map(|r| (r.0, r.1, r.2))
        .collect();
        assert_eq!(got, expected, "batch_rows {batch_rows}");
    }
}

proptest! {
    /// Puts and deletes with colliding keys, spread over several memtables and read back
    /// through the merge with random batch sizes and time ranges, equal a BTreeMap model.
    #[test]
    fn scans_equal_the_last_write_wins_model(
        ops in proptest::collection::vec(
            (0usize..4, proptest::collection::vec((0u8..4, 0i64..6, any::<i64>()), 1..6), any::<bool>()),
            1..16,
        ),
        batch_rows in 1usize..9,
        range in proptest::option::of((0i64..6, 0i64..6)),
        memtable_count in 1usize..5,
    ) {
        let codec = codec();
        // One memtable exercises the single-source path (no merge, dedup within and across
        // its batches); more exercise the k-way merge.
        let memtables: Vec<TimeSeriesMemtable> = (0..memtable_count as u32)
            .map(|i| TimeSeriesMemtable::new(i, codec.clone(), None))
            .collect();
        let mut model: BTreeMap<(String, i64), (i64, bool)> = BTreeMap::new();
        let mut sequence = 1;
        for (target, rows, delete) in &ops {
            let rows: Vec<(String, i64, i64)> = rows.iter().map(|r| (format!("h{}", r.0), r.1, r.2)).collect();
            let op = if *delete { OpType::Delete } else { OpType::Put };
            memtables[*target % memtable_count].write(&batch(&codec, &rows), op, sequence).unwrap();
            sequence += rows.len() as u64;
            for (host, ts, v) in rows {
                model.insert((host, ts), (v, *delete));
            }
        }
        let time_range = range.map(|(a, b)| TimeRange { start: a.min(b), end: a.max(b) });
        let options = ScanRequest { time_range, batch_rows, ..Default::default() };
        let sources = memtables.iter().map(|m| stream(m, options.clone())).collect();
        let scan = run(&codec, sources, MergeOptions { batch_rows, ..MergeOptions::scan() });
        let got: Vec<(String, i64, i64)> = scan.into_iter().map(|r| (r.0, r.1, r.2)).collect();
        let expected: Vec<(String, i64, i64)> = model
            .into_iter()
            .filter(|((_, ts), (_, deleted))| !deleted && time_range.is_none_or(|r| r.contains(*ts)))
            .map(|((host, ts), (v, _))| (host, ts, v))
            .collect();
        prop_assert_eq!(got, expected);
    }

    /// The run-taking merge equals the simplest reference: every row of every source,
    /// sorted by (key, timestamp, sequence descending) — and, deduplicated with deletes
    /// kept (what flushes and compactions write), the first row of each (key, timestamp).
    /// Long runs per source (many timestamps per key) and colliding keys across sources;
    /// with a merge that remembers every key, or forgets them after one or two (equal keys
    /// with different ids must still compare equal).
    #[test]
    fn the_merge_equals_a_sort_of_every_row(
        sources in proptest::collection::vec(
            proptest::collection::vec((0u8..5, 0i64..40, any::<i64>(), any::<bool>()), 0..60),
            1..6,
        ),
        batch_rows in 1usize..50,
        keys in prop_oneof![Just(KeyIds::MAX), 1usize..3],
    ) {
        let codec = codec();
        let mut sequence = 1;
        let mut all: Vec<(String, i64, i64, u64, OpType)> = Vec::new();
        let memtables: Vec<TimeSeriesMemtable> = sources
            .iter()
            .enumerate()
            .map(|(i, rows)| {
                let m = TimeSeriesMemtable::new(i as u32, codec.clone(), None);
                for (host, ts, v, delete) in rows {
                    let op = if *delete { OpType::Delete } else { OpType::Put };
                    m.write(&batch(&codec, &[(format!("h{host}"), *ts, *v)]), op, sequence).unwrap();
                    all.push((format!("h{host}"), *ts, if *delete { 0 } else { *v }, sequence, op));
                    sequence += 1;
                }
                m
            })
            .collect();
        let options = ScanRequest { batch_rows, ..Default::default() };
        all.sort_by(|a, b| (&a.0, a.1, std::cmp::Reverse(a.3)).cmp(&(&b.0, b.1, std::cmp::Reverse(b.3))));
        let every = MergeOptions { dedup: false, filter_deleted: false, batch_rows };
        let got = run_remembering(&codec, memtables.iter().map(|m| stream(m, options.clone())).collect(), every, keys);
        let got: Vec<_> = got.into_iter().map(|r| (r.0, r.1, if r.4 == OpType::Delete { 0 } else { r.2 }, r.3, r.4)).collect();
        prop_assert_eq!(&got, &all);

        let mut deduped = all.clone();
        deduped.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1);
        let flush = MergeOptions { batch_rows, ..MergeOptions::flush() };
        let got = run_remembering(&codec, memtables.iter().map(|m| stream(m, options.clone())).collect(), flush, keys);
        let got: Vec<_> = got.into_iter().map(|r| (r.0, r.1, if r.4 == OpType::Delete { 0 } else { r.2 }, r.3, r.4)).collect();
        prop_assert_eq!(got, deduped);
    }
}
