use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use futures::TryStreamExt;
use opendal::Operator;
use strata_request::{
    ColumnDataType, ColumnSchema, OpType, RegionId, RegionMetadata, RegionMetadataBuilder,
};

use super::*;
use crate::batch::BatchStream;
use crate::batch::SortedBatch;
use crate::error::StorageError;
use crate::key::KeyCodec;
use crate::memtable::TimeSeriesMemtable;
use crate::read::{MergeOptions, merge};
use crate::request::ScanRequest;
use crate::time_range::TimeRange;

fn metadata() -> Arc<RegionMetadata> {
    Arc::new(
        RegionMetadataBuilder::new(RegionId::new(3, 1))
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .column(ColumnSchema::field("usage", ColumnDataType::Float64))
            .build()
            .unwrap(),
    )
}

fn memory_store() -> Operator {
    Operator::new(opendal::services::Memory::default()).unwrap()
}

/// A memtable with `hosts` hosts × `points` timestamps, plus one delete of (h0, ts 0).
fn memtable(codec: &Arc<KeyCodec>, hosts: usize, points: i64) -> TimeSeriesMemtable {
    let m = TimeSeriesMemtable::new(1, codec.clone(), None);
    let mut host = Vec::new();
    let mut ts = Vec::new();
    let mut usage = Vec::new();
    for t in 0..points {
        for h in 0..hosts {
            host.push(format!("h{h}"));
            ts.push(t * 1000);
            usage.push(h as f64 + t as f64 / 10.0);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(host)),
        Arc::new(TimestampMillisecondArray::from(ts)),
        Arc::new(Float64Array::from(usage)),
    ];
    let batch = RecordBatch::try_new(codec.metadata().arrow_schema().clone(), columns).unwrap();
    m.write(&batch, OpType::Put, 1).unwrap();
    let delete = RecordBatch::try_new(
        codec.metadata().arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from(vec!["h0"])),
            Arc::new(TimestampMillisecondArray::from(vec![0])),
            Arc::new(Float64Array::from(vec![0.0])),
        ],
    )
    .unwrap();
    m.write(&delete, OpType::Delete, 1_000_000).unwrap();
    m
}

fn flush_source(codec: &Arc<KeyCodec>, m: &TimeSeriesMemtable) -> BatchStream {
    let rows: BatchStream = Box::pin(futures::stream::iter(
        m.iter(ScanRequest::default()).unwrap(),
    ));
    merge(codec.clone(), vec![rows], MergeOptions::flush())
}

/// `(host, ts, usage, seq, op)` of everything a stream yields (full projection).
async fn rows(stream: BatchStream) -> Vec<(String, i64, f64, u64, OpType)> {
    let batches: Vec<_> = stream.try_collect().await.unwrap();
    let mut out = Vec::new();
    for b in batches {
        let host = b.columns()[0].as_string::<i32>();
        let ts = b.columns()[1].as_primitive::<TimestampMillisecondType>();
        let usage = b.columns()[2].as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((
                host.value(i).to_string(),
                ts.value(i),
                usage.value(i),
                b.sequence(i),
                b.op_type(i),
            ));
        }
    }
    out
}

async fn write(
    store: &Operator,
    codec: &Arc<KeyCodec>,
    m: &TimeSeriesMemtable,
    row_group_size: usize,
) -> FileMeta {
    let options = SstWriteOptions {
        row_group_size,
        ..Default::default()
    };
    write_sst(
        store,
        "region/data",
        codec.metadata(),
        flush_source(codec, m),
        &options,
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn an_sst_reads_back_exactly_what_the_flush_merge_wrote() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let m = memtable(&codec, 5, 40);
    let store = memory_store();
    let meta = write(&store, &codec, &m, 64).await;
    assert_eq!(
        meta.num_rows, 200,
        "the delete replaced (h0, 0): 200 distinct keys"
    );
    assert_eq!(meta.num_row_groups, 4);
    assert_eq!(meta.time_range, (0, 39_000));
    assert_eq!(meta.max_sequence, 1_000_000);
    assert_eq!(meta.level, 0);
    assert_eq!(meta.region_id, RegionId::new(3, 1));
    verify_sst(&store, &meta.path("region/data"), &meta)
        .await
        .unwrap();

    let expected = rows(flush_source(&codec, &m)).await;
    let read = read_sst(
        &store,
        &meta.path("region/data"),
        codec.clone(),
        SstReadOptions::default(),
    )
    .await
    .unwrap();
    let got = rows(read).await;
    assert_eq!(got, expected);
    assert_eq!(
        got[0],
        ("h0".into(), 0, 0.0, 1_000_000, OpType::Delete),
        "the tombstone is kept"
    );
}

#[tokio::test]
async fn row_group_slices_read_in_order_give_the_whole_file_once() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let m = memtable(&codec, 3, 100);
    let store = memory_store();
    // 300 rows in 30-row groups: 10 row groups.
    let meta = write(&store, &codec, &m, 30).await;
    assert_eq!(meta.num_row_groups, 10);
    let path = meta.path("region/data");
    let whole = rows(
        read_sst(&store, &path, codec.clone(), SstReadOptions::default())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(whole.len(), 300);
    for n in [1, 3, 4, 10, 16] {
        let mut pieces = Vec::new();
        let mut empty = 0;
        for i in 0..n {
            let options = SstReadOptions {
                row_group_slice: Some((i, n)),
                ..Default::default()
            };
            let piece = rows(
                read_sst(&store, &path, codec.clone(), options)
                    .await
                    .unwrap(),
            )
            .await;
            if piece.is_empty() {
                empty += 1;
            }
            pieces.extend(piece);
        }
        assert_eq!(pieces, whole, "{n} slices");
        assert_eq!(
            empty,
            n.saturating_sub(10),
            "{n} slices: empty ones only past 10"
        );
    }
}

#[tokio::test]
async fn time_ranges_prune_row_groups_and_filter_rows_and_projection_narrows_columns() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let m = memtable(&codec, 3, 100);
    let store = memory_store();
    let meta = write(&store, &codec, &m, 30).await;
    let range = TimeRange {
        start: 10_000,
        end: 12_000,
    };
    let options = SstReadOptions {
        time_range: Some(range),
        projection: Some(vec![2]),
        ..Default::default()
    };
    let batches: Vec<_> = read_sst(&store, &meta.path("region/data"), codec.clone(), options)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut seen = Vec::new();
    for b in &batches {
        assert_eq!(b.columns().len(), 1);
        for i in 0..b.num_rows() {
            seen.push((
                b.timestamp(i),
                b.columns()[0].as_primitive::<Float64Type>().value(i),
            ));
        }
    }
    assert_eq!(seen.len(), 9, "3 hosts × 3 timestamps");
    assert!(seen.iter().all(|(ts, _)| range.contains(*ts)));
    // Rows are sorted by host first, so the range hits every host's row groups; with 30-row
    // groups sorted by (host, ts) most groups lie outside the range and are skipped.
    let parquet_meta = parquet_metadata(&store, &meta.path("region/data")).await;
    let overlapping = super::reader::select_row_groups_for_test(&parquet_meta, 1, Some(range));
    assert!(
        overlapping.len() < meta.num_row_groups as usize,
        "{overlapping:?}"
    );
}

#[tokio::test]
async fn a_time_range_skips_the_pages_whose_timestamps_miss_it_and_returns_exactly_its_rows() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    // One host: its 60,000 timestamps fill one row group of several pages in time order.
    let m = memtable(&codec, 1, 60_000);
    let store = memory_store();
    let meta = write(&store, &codec, &m, 102_400).await;
    assert_eq!(meta.num_row_groups, 1);
    let range = TimeRange {
        start: 30_000_000,
        end: 30_010_000,
    };
    let bytes = store
        .read(&meta.path("region/data"))
        .await
        .unwrap()
        .to_bytes();
    let with_index = parquet::file::metadata::ParquetMetaDataReader::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
        .parse_and_finish(&bytes)
        .unwrap();
    let selection = super::reader::page_selection(&with_index, &[0], 1, range)
        .expect("the writer writes a page index");
    let selected = selection.row_count();
    assert!(
        (11..60_000 / 2).contains(&selected),
        "{selected} rows selected"
    );
    let options = SstReadOptions {
        time_range: Some(range),
        ..Default::default()
    };
    let read = read_sst(&store, &meta.path("region/data"), codec.clone(), options)
        .await
        .unwrap();
    let got: Vec<i64> = rows(read).await.into_iter().map(|r| r.1).collect();
    assert_eq!(got, (30_000..=30_010).map(|s| s * 1000).collect::<Vec<_>>());
}

async fn parquet_metadata(
    store: &Operator,
    path: &str,
) -> parquet::file::metadata::ParquetMetaData {
    let bytes = store.read(path).await.unwrap().to_bytes();
    parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .unwrap()
}

#[tokio::test]
async fn the_file_is_plain_parquet_with_named_columns_and_the_schema_in_its_metadata() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    let meta = write(&store, &codec, &memtable(&codec, 2, 3), 1024).await;
    let bytes = store
        .read(&meta.path("region/data"))
        .await
        .unwrap()
        .to_bytes();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["host", "ts", "usage", "__sequence", "__op_type"]);
    // Sorted, dictionary-encoded tags and op types are left uncompressed (already runs);
    // the timestamps, fields and sequences are zstd.
    let codecs: Vec<parquet::basic::Compression> = reader
        .metadata()
        .row_group(0)
        .columns()
        .iter()
        .map(|c| c.compression())
        .collect();
    let zstd = parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::default());
    let none = parquet::basic::Compression::UNCOMPRESSED;
    assert_eq!(codecs, [none, zstd, zstd, zstd, none]);
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    let json = kv
        .iter()
        .find(|kv| kv.key == REGION_METADATA_KEY)
        .unwrap()
        .value
        .clone()
        .unwrap();
    let stored: RegionMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(&stored, codec.metadata().as_ref());
    let total: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(total as u64, meta.num_rows);
}

#[tokio::test]
async fn an_empty_source_writes_no_file() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    let empty: BatchStream = Box::pin(futures::stream::empty());
    let written = write_sst(
        &store,
        "region/data",
        codec.metadata(),
        empty,
        &SstWriteOptions::default(),
    )
    .await
    .unwrap();
    assert!(written.is_none());
    assert!(
        store
            .list("region/")
            .await
            .unwrap()
            .iter()
            .all(|e| !e.path().ends_with(".parquet"))
    );
}

#[tokio::test]
async fn a_missing_file_is_a_typed_error_naming_it() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let err = match read_sst(
        &memory_store(),
        "region/data/nope.parquet",
        codec,
        SstReadOptions::default(),
    )
    .await
    {
        Err(e) => e,
        Ok(_) => panic!("a missing file opened"),
    };
    assert!(matches!(err, StorageError::ObjectStore { .. }), "{err}");
    assert!(
        err.to_string().contains("region/data/nope.parquet"),
        "{err}"
    );
}

/// Reads everything from a damaged copy; returns the error, if any.
async fn read_all(
    store: &Operator,
    path: &str,
    codec: &Arc<KeyCodec>,
) -> Result<usize, StorageError> {
    let stream = read_sst(store, path, codec.clone(), SstReadOptions::default()).await?;
    let batches: Vec<_> = stream.try_collect().await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

#[tokio::test]
async fn truncated_and_bit_flipped_files_give_typed_errors_never_panics() {
    use rand::{RngExt, SeedableRng};
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    eprintln!("sst corruption: SEED={seed}");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    let meta = write(&store, &codec, &memtable(&codec, 4, 50), 64).await;
    let path = meta.path("region/data");
    let pristine = store.read(&path).await.unwrap().to_vec();
    let damaged_path = "region/data/damaged.parquet";

    // Truncation: every length from 0 to the full size, in steps.
    for len in (0..pristine.len()).step_by(7) {
        store
            .write(damaged_path, pristine[..len].to_vec())
            .await
            .unwrap();
        let result = read_all(&store, damaged_path, &codec).await;
        let err = result.expect_err(&format!("truncated to {len} bytes still read"));
        assert!(err.to_string().contains(damaged_path), "{err}");
        // Damage, which no retry mends: a retry loop must not spin on it.
        assert!(
            !err.kind().is_retryable(),
            "truncated to {len}: {err:?} is retryable"
        );
    }
    // Bit flips: reading may or may not notice (Parquet pages have no checksums), but never
    // panics, and verification against the manifest's checksum always notices.
    let flips = 300;
    let mut noticed_by_read = 0;
    for _ in 0..flips {
        let mut damaged = pristine.clone();
        let at = rng.random_range(0..damaged.len());
        damaged[at] ^= 1 << rng.random_range(0..8);
        store.write(damaged_path, damaged).await.unwrap();
        if let Err(err) = read_all(&store, damaged_path, &codec).await {
            assert!(err.to_string().contains(damaged_path), "{err}");
            assert!(!err.kind().is_retryable(), "{err:?} is retryable");
            noticed_by_read += 1;
        }
        let err = verify_sst(&store, damaged_path, &meta)
            .await
            .expect_err("verification missed a flip");
        assert!(matches!(err, StorageError::CorruptSst { .. }), "{err}");
    }
    eprintln!("{noticed_by_read} of {flips} flips were noticed by reading alone (SEED={seed})");
}

#[tokio::test]
async fn split_writes_cap_rows_per_file_and_keep_the_sort_order_across_files() {
    let store = memory_store();
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let m = memtable(&codec, 7, 30);
    let expected = rows(flush_source(&codec, &m)).await;
    for cap in [1u64, 50, 64, 211, 10_000] {
        let files = write_ssts(
            &store,
            "region/split",
            codec.metadata(),
            flush_source(&codec, &m),
            &SstWriteOptions::default(),
            cap,
        )
        .await
        .unwrap();
        let want_files = (expected.len() as u64).div_ceil(cap) as usize;
        assert_eq!(files.len(), want_files, "cap {cap}");
        assert!(files.iter().all(|f| f.num_rows <= cap));
        let mut read = Vec::new();
        for file in &files {
            let stream = read_sst(
                &store,
                &file.path("region/split"),
                codec.clone(),
                SstReadOptions::default(),
            )
            .await
            .unwrap();
            read.extend(rows(stream).await);
            store.delete(&file.path("region/split")).await.unwrap();
        }
        assert_eq!(
            read, expected,
            "cap {cap}: the files concatenate to the source"
        );
    }
}

#[tokio::test]
async fn a_rows_only_read_gives_the_same_rows_without_keys_sequences_or_op_types() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    let meta = write(&store, &codec, &memtable(&codec, 5, 40), 64).await;
    let path = meta.path("region/data");
    for projection in [None, Some(vec![2]), Some(vec![])] {
        let read = |rows_only| {
            let options = SstReadOptions {
                projection: projection.clone(),
                time_range: Some(TimeRange {
                    start: 5_000,
                    end: 30_000,
                }),
                batch_rows: 37,
                rows_only,
                ..Default::default()
            };
            read_sst(&store, &path, codec.clone(), options)
        };
        let sorted: Vec<SortedBatch> = read(false).await.unwrap().try_collect().await.unwrap();
        let rows: Vec<SortedBatch> = read(true).await.unwrap().try_collect().await.unwrap();
        assert_eq!(sorted.len(), rows.len(), "{projection:?}");
        assert_eq!(
            rows.iter().map(SortedBatch::num_rows).sum::<usize>(),
            26 * 5,
            "{projection:?}"
        );
        for (sorted, rows) in sorted.iter().zip(&rows) {
            assert_eq!(sorted.timestamps, rows.timestamps);
            assert_eq!(sorted.columns.len(), rows.columns.len());
            for (a, b) in sorted.columns.iter().zip(&rows.columns) {
                assert_eq!(a.as_ref(), b.as_ref(), "{projection:?}");
            }
            assert_eq!(sorted.sequences.len(), sorted.num_rows());
            assert!(rows.sequences.is_empty() && rows.op_types.is_empty());
            assert_eq!((rows.keys.num_rows(), &rows.key_index), (0, &None));
        }
    }
}

/// Flushes `m` with `row_group_size` rows a row group (in time slices when it holds more
/// than two row groups' worth).
async fn flush(store: &Operator, m: TimeSeriesMemtable, row_group_size: usize) -> FileMeta {
    crate::flush::flush_memtable(
        store,
        &Arc::new(m),
        &SstWriteOptions {
            row_group_size,
            ..Default::default()
        },
        MergeOptions::flush(),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn a_flush_in_time_slices_starts_a_row_group_at_each_slice_and_reads_back_slice_by_slice() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    let expected = rows(flush_source(&codec, &memtable(&codec, 5, 40))).await;
    // 201 rows over 0..=39,000 ms, 8 a slice: the nearest power of two is 2,048 ms.
    let meta = flush(&store, memtable(&codec, 5, 40), 8).await;
    assert_eq!(meta.time_slice, Some(2_048));
    let path = meta.path(&crate::object_store::region_data_dir(meta.region_id));
    let file = parquet_metadata(&store, &path).await;
    let width = file
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == TIME_SLICE_KEY))
        .and_then(|kv| kv.value.clone());
    assert_eq!(width.as_deref(), Some("2048"));
    // Every row group lies in one slice, the slices in time order, one row group each.
    let slice_of_group: Vec<i64> = file
        .row_groups()
        .iter()
        .map(|group| match group.column(1).statistics() {
            Some(parquet::file::statistics::Statistics::Int64(s)) => {
                let (min, max) = (*s.min_opt().unwrap(), *s.max_opt().unwrap());
                assert_eq!(min.div_euclid(2_048), max.div_euclid(2_048));
                min.div_euclid(2_048)
            }
            other => panic!("no timestamp statistics: {other:?}"),
        })
        .collect();
    assert_eq!(slice_of_group, (0..=19).collect::<Vec<i64>>());

    // Each slice is its own stream, sorted by key; together they are the flush's rows.
    let slices = read_sst_slices(&store, &path, codec.clone(), SstReadOptions::default())
        .await
        .unwrap();
    assert_eq!(slices.len(), 20);
    let mut all = Vec::new();
    for (k, slice) in slices.into_iter().enumerate() {
        let rows = rows(slice).await;
        assert!(rows.iter().all(|r| r.1.div_euclid(2_048) == k as i64));
        assert!(
            rows.windows(2)
                .all(|w| (&w[0].0, w[0].1) < (&w[1].0, w[1].1)),
            "slice {k} is not sorted by key"
        );
        all.extend(rows);
    }
    // The plain read is the same rows in file order: slice by slice.
    let file_order = rows(
        read_sst(&store, &path, codec.clone(), SstReadOptions::default())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(file_order, all);
    all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(all, expected);

    // A range within one slice reads that slice's row group alone.
    let range = TimeRange {
        start: 4_096,
        end: 6_143,
    };
    let options = SstReadOptions {
        time_range: Some(range),
        ..SstReadOptions::default()
    };
    let slices = read_sst_slices(&store, &path, codec.clone(), options)
        .await
        .unwrap();
    assert_eq!(slices.len(), 1);
    let within = rows(slices.into_iter().next().unwrap()).await;
    let wanted: Vec<_> = expected
        .iter()
        .filter(|r| range.contains(r.1))
        .cloned()
        .collect();
    assert_eq!(within, wanted);
}

#[tokio::test]
async fn a_small_flush_is_one_slice_sorted_by_key() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    // 201 rows, 128 a slice: fewer than two slices' worth.
    let meta = flush(&store, memtable(&codec, 5, 40), 128).await;
    assert_eq!(meta.time_slice, None);
    let path = meta.path(&crate::object_store::region_data_dir(meta.region_id));
    let file = parquet_metadata(&store, &path).await;
    assert!(
        file.file_metadata()
            .key_value_metadata()
            .is_none_or(|kv| kv.iter().all(|kv| kv.key != TIME_SLICE_KEY))
    );
    let read = read_sst_slices(&store, &path, codec.clone(), SstReadOptions::default())
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
}

#[tokio::test]
async fn a_writer_in_time_slices_refuses_rows_of_an_earlier_slice_after_a_later_one() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    let m = memtable(&codec, 5, 40);
    // Key order: h0's rows at 39,000 come before h1's at 0.
    let options = SstWriteOptions {
        time_slice: Some(2_048),
        ..Default::default()
    };
    let result = write_sst(
        &store,
        "region/data",
        codec.metadata(),
        flush_source(&codec, &m),
        &options,
    )
    .await;
    match result {
        Err(StorageError::CorruptSst { reason, .. }) => {
            assert!(reason.contains("time slice"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // And the partial file is gone.
    let left = store.list("region/data/").await.unwrap();
    assert!(
        left.iter().all(|e| !e.path().ends_with(".parquet")),
        "{left:?}"
    );
}

#[tokio::test]
async fn manifest_entries_name_the_slice_width_only_when_there_is_one() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    // An entry of one slice looks exactly as entries did before slices existed.
    let one = flush(&store, memtable(&codec, 5, 40), 128).await;
    let json = serde_json::to_string(&one).unwrap();
    assert!(!json.contains("time_slice"), "{json}");
    assert_eq!(serde_json::from_str::<FileMeta>(&json).unwrap(), one);
    let sliced = flush(&store, memtable(&codec, 5, 40), 8).await;
    let json = serde_json::to_string(&sliced).unwrap();
    assert!(json.contains("\"time_slice\":2048"), "{json}");
    assert_eq!(serde_json::from_str::<FileMeta>(&json).unwrap(), sliced);
}

/// The SST at `path` with the value of its footer's format key replaced by `format` (one
/// digit, so the footer keeps its length): what a newer build would have written.
async fn set_footer_format(store: &Operator, path: &str, format: u8) {
    let mut bytes = store.read(path).await.unwrap().to_vec();
    let key = crate::SST_FORMAT_KEY.as_bytes();
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the footer names its format");
    // Thrift compact: the value's field header and length (1) follow the key.
    let value = at + key.len() + 2;
    assert!(
        bytes[value - 1] == 1 && bytes[value].is_ascii_digit(),
        "the value is one digit"
    );
    bytes[value] = b'0' + format;
    store.write(path, bytes).await.unwrap();
}

#[tokio::test]
async fn an_sst_of_a_newer_format_is_refused_naming_the_file_and_both_versions() {
    let codec = Arc::new(KeyCodec::new(metadata()).unwrap());
    let store = memory_store();
    let meta = flush(&store, memtable(&codec, 3, 10), 1024).await;
    let path = meta.path(&crate::object_store::region_data_dir(meta.region_id));
    let file = parquet_metadata(&store, &path).await;
    let format = file
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == crate::SST_FORMAT_KEY))
        .and_then(|kv| kv.value.clone());
    assert_eq!(
        format,
        Some(crate::SST_FORMAT.to_string()),
        "written with its format"
    );
    // Its own format and an older one read; a newer one is refused before any row.
    for older in [1, 2] {
        set_footer_format(&store, &path, older).await;
        let read = read_sst(&store, &path, codec.clone(), SstReadOptions::default());
        assert_eq!(rows(read.await.unwrap()).await.len(), 30, "format {older}");
        set_footer_format(&store, &path, 2).await;
    }
    set_footer_format(&store, &path, 3).await;
    let Err(error) = read_sst(&store, &path, codec.clone(), SstReadOptions::default()).await else {
        panic!("a file of format 3 was read");
    };
    assert!(
        matches!(&error, StorageError::NewerFormat { path: p, found: 3, newest: 2 } if *p == path),
        "{error:?}"
    );
    assert_eq!(error.kind(), strata_base::ErrorKind::NewerFormat);
    let message = error.to_string();
    assert!(
        message.contains(&path) && message.contains("format 3"),
        "{message}"
    );
}
