//! Bad input: a table of invalid writes, DDLs, schemas and configurations. Each gets its
//! expected typed error kind; none of them grows the WAL; a restart afterwards replays
//! cleanly and the valid rows are all there.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    TimestampSecondArray,
};
use strata_engine::{
    AlterKind, AlterRequest, ColumnDataType, ColumnSchema, CreateRequest, DdlRequest, Engine,
    EngineBuilder, EngineConfig, ErrorKind, RegionId, RegionMetadata, RegionMetadataBuilder,
    RegionOptions, ScanRequest, Value, WriteRequest,
};

const MAIN: RegionId = RegionId::new(7, 0);
const APPEND: RegionId = RegionId::new(7, 1);
const READ_ONLY: RegionId = RegionId::new(7, 2);
const DROPPED: RegionId = RegionId::new(7, 3);
const UNKNOWN: RegionId = RegionId::new(99, 9);

/// `host` tag, `ts` timestamp, `cpu` nullable f64, `req` NOT NULL i64 without default.
fn metadata(region: RegionId) -> RegionMetadata {
    RegionMetadataBuilder::new(region)
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("cpu", ColumnDataType::Float64))
        .column(ColumnSchema::field("req", ColumnDataType::Int64).with_nullable(false))
        .build()
        .unwrap()
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter_with_nullable(
        columns.into_iter().map(|(name, array)| (name, array, true)),
    )
    .unwrap()
}

fn host(n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("h{i}")),
    ))
}
fn ts(n: usize) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(
        (0..n).map(|i| i as i64),
    ))
}
fn cpu(n: usize) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64)))
}
fn req(n: usize) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values((0..n).map(|i| i as i64)))
}

fn good(n: usize) -> RecordBatch {
    batch(vec![
        ("host", host(n)),
        ("ts", ts(n)),
        ("cpu", cpu(n)),
        ("req", req(n)),
    ])
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

fn config(dir: &Path) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.data_home = dir.to_path_buf();
    config.num_workers = 2;
    config.wal.max_record_size = bytesize::ByteSize::kib(256);
    config
}

async fn setup(engine: &Engine) {
    for (region, options) in [
        (MAIN, RegionOptions::default()),
        (APPEND, RegionOptions::default().append_mode(true)),
        (READ_ONLY, RegionOptions::default()),
        (DROPPED, RegionOptions::default()),
    ] {
        engine
            .create(CreateRequest::new(metadata(region)).options(options))
            .await
            .unwrap();
    }
    engine
        .write(WriteRequest::put(MAIN, good(5)))
        .await
        .unwrap();
    engine
        .write(WriteRequest::put(APPEND, good(3)))
        .await
        .unwrap();
    engine.set_writable(READ_ONLY, false).await.unwrap();
    engine.drop_region(DROPPED).await.unwrap();
}

/// Every invalid write, with the error kind it must get.
fn bad_writes() -> Vec<(&'static str, WriteRequest, ErrorKind)> {
    use ErrorKind::*;
    let put = |b: RecordBatch| WriteRequest::put(MAIN, b);
    let delete = |b: RecordBatch| WriteRequest::delete(MAIN, b);
    let n = 3;
    let secs: ArrayRef = Arc::new(TimestampSecondArray::from_iter_values(0..3));
    let int_host: ArrayRef = Arc::new(Int64Array::from_iter_values(0..3));
    let float_req: ArrayRef = Arc::new(Float64Array::from_iter_values([1.0, 2.0, 3.0]));
    let null_req: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
    let null_ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
        Some(1),
        None,
        Some(3),
    ]));
    // Random text: compression cannot bring it under the 256 KiB WAL record limit.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let big_host: ArrayRef = Arc::new(StringArray::from_iter_values((0..20_000).map(|_| {
        (0..4)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                format!("{state:016x}")
            })
            .collect::<String>()
    })));
    let big_ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(0..20_000));
    let big_req: ArrayRef = Arc::new(Int64Array::from_iter_values(0..20_000));
    vec![
        (
            "unknown column",
            put(batch(vec![
                ("host", host(n)),
                ("ts", ts(n)),
                ("req", req(n)),
                ("nope", cpu(n)),
            ])),
            InvalidRequest,
        ),
        (
            "float where an int is expected",
            put(batch(vec![
                ("host", host(n)),
                ("ts", ts(n)),
                ("req", float_req.clone()),
            ])),
            InvalidRequest,
        ),
        (
            "int tag",
            put(batch(vec![
                ("host", int_host.clone()),
                ("ts", ts(n)),
                ("req", req(n)),
            ])),
            InvalidRequest,
        ),
        (
            "timestamp in seconds",
            put(batch(vec![
                ("host", host(n)),
                ("ts", secs.clone()),
                ("req", req(n)),
            ])),
            InvalidRequest,
        ),
        (
            "null in a NOT NULL field",
            put(batch(vec![
                ("host", host(n)),
                ("ts", ts(n)),
                ("req", null_req.clone()),
            ])),
            InvalidRequest,
        ),
        (
            "null timestamp",
            put(batch(vec![
                ("host", host(n)),
                ("ts", null_ts.clone()),
                ("req", req(n)),
            ])),
            InvalidRequest,
        ),
        (
            "missing NOT NULL field",
            put(batch(vec![
                ("host", host(n)),
                ("ts", ts(n)),
                ("cpu", cpu(n)),
            ])),
            InvalidRequest,
        ),
        (
            "missing timestamp",
            put(batch(vec![("host", host(n)), ("req", req(n))])),
            InvalidRequest,
        ),
        (
            "duplicate column",
            put(RecordBatch::try_new(
                Arc::new(arrow_schema_of(
                    &[
                        ("host", false),
                        ("host", false),
                        ("ts", false),
                        ("req", false),
                    ],
                    &good(n),
                )),
                vec![host(n), host(n), ts(n), req(n)],
            )
            .unwrap()),
            InvalidRequest,
        ),
        ("empty batch", put(good(0)), InvalidRequest),
        (
            "timestamp past year 2262",
            put(batch(vec![
                ("host", host(1)),
                (
                    "ts",
                    Arc::new(TimestampMillisecondArray::from(vec![i64::MAX / 1_000])),
                ),
                ("req", req(1)),
            ])),
            InvalidRequest,
        ),
        (
            "timestamp before year 1677",
            put(batch(vec![
                ("host", host(1)),
                (
                    "ts",
                    Arc::new(TimestampMillisecondArray::from(vec![i64::MIN / 1_000])),
                ),
                ("req", req(1)),
            ])),
            InvalidRequest,
        ),
        (
            "no columns at all",
            put(RecordBatch::new_empty(Arc::new(
                arrow_schema::Schema::empty(),
            ))),
            InvalidRequest,
        ),
        (
            "delete without the tag",
            delete(batch(vec![("ts", ts(n))])),
            InvalidRequest,
        ),
        (
            "delete without the timestamp",
            delete(batch(vec![("host", host(n))])),
            InvalidRequest,
        ),
        (
            "empty delete",
            delete(batch(vec![("host", host(0)), ("ts", ts(0))])),
            InvalidRequest,
        ),
        (
            "delete with a wrong-typed tag",
            delete(batch(vec![("host", int_host), ("ts", ts(n))])),
            InvalidRequest,
        ),
        (
            "delete with timestamps in seconds",
            delete(batch(vec![("host", host(n)), ("ts", secs)])),
            InvalidRequest,
        ),
        (
            "delete with an unknown column",
            delete(batch(vec![
                ("host", host(n)),
                ("ts", ts(n)),
                ("nope", cpu(n)),
            ])),
            InvalidRequest,
        ),
        (
            "delete in an append-mode region",
            WriteRequest::delete(APPEND, batch(vec![("host", host(n)), ("ts", ts(n))])),
            InvalidRequest,
        ),
        (
            "write to an unknown region",
            WriteRequest::put(UNKNOWN, good(n)),
            RegionNotFound,
        ),
        (
            "write to a dropped region",
            WriteRequest::put(DROPPED, good(n)),
            RegionNotFound,
        ),
        (
            "write to a read-only region (a follower: NotLeader, retry on the leader)",
            WriteRequest::put(READ_ONLY, good(n)),
            NotLeader,
        ),
        (
            "request larger than the WAL record limit",
            put(batch(vec![
                ("host", big_host),
                ("ts", big_ts),
                ("req", big_req),
            ])),
            InvalidRequest,
        ),
        (
            "float in the NOT NULL int field of a full batch",
            put(batch(vec![
                ("host", host(n)),
                ("ts", ts(n)),
                ("cpu", cpu(n)),
                ("req", float_req),
            ])),
            InvalidRequest,
        ),
        (
            "null timestamp in a full batch",
            put(batch(vec![
                ("host", host(n)),
                ("ts", null_ts),
                ("cpu", cpu(n)),
                ("req", req(n)),
            ])),
            InvalidRequest,
        ),
        (
            "null NOT NULL field in a full batch",
            put(batch(vec![
                ("host", host(n)),
                ("ts", ts(n)),
                ("cpu", cpu(n)),
                ("req", null_req),
            ])),
            InvalidRequest,
        ),
    ]
}

/// A schema with these (name, nullable) fields, types taken from `like` by name.
fn arrow_schema_of(fields: &[(&str, bool)], like: &RecordBatch) -> arrow_schema::Schema {
    arrow_schema::Schema::new(
        fields
            .iter()
            .map(|(name, nullable)| {
                let data_type = like
                    .schema()
                    .field_with_name(name)
                    .unwrap()
                    .data_type()
                    .clone();
                arrow_schema::Field::new(*name, data_type, *nullable)
            })
            .collect::<Vec<_>>(),
    )
}

/// Every invalid DDL, with the error kind it must get.
fn bad_ddls() -> Vec<(&'static str, DdlRequest, ErrorKind)> {
    use ErrorKind::*;
    let alter = |region: RegionId, schema_version: u64, kind: AlterKind| {
        DdlRequest::Alter(AlterRequest::new(region, schema_version, kind))
    };
    let add = |column: ColumnSchema| AlterKind::AddColumns {
        columns: vec![column],
    };
    let drop = |name: &str| AlterKind::DropColumns {
        names: vec![name.to_string()],
    };
    let other_schema = RegionMetadataBuilder::new(MAIN)
        .column(ColumnSchema::tag("dc"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .build()
        .unwrap();
    vec![
        (
            "create an existing region with another schema",
            DdlRequest::Create(CreateRequest::new(other_schema)),
            InvalidRequest,
        ),
        (
            "alter an unknown region",
            alter(
                UNKNOWN,
                0,
                add(ColumnSchema::field("x", ColumnDataType::Int64)),
            ),
            RegionNotFound,
        ),
        (
            "alter against a stale schema version",
            alter(
                MAIN,
                5,
                add(ColumnSchema::field("x", ColumnDataType::Int64)),
            ),
            InvalidRequest,
        ),
        (
            "alter adding a tag",
            alter(MAIN, 0, add(ColumnSchema::tag("dc"))),
            InvalidRequest,
        ),
        (
            "alter adding a NOT NULL column without default",
            alter(
                MAIN,
                0,
                add(ColumnSchema::field("x", ColumnDataType::Int64).with_nullable(false)),
            ),
            InvalidRequest,
        ),
        (
            "alter adding an existing column",
            alter(
                MAIN,
                0,
                add(ColumnSchema::field("cpu", ColumnDataType::Int64)),
            ),
            InvalidRequest,
        ),
        (
            "alter adding a column whose default has the wrong type",
            alter(
                MAIN,
                0,
                add(ColumnSchema::field("x", ColumnDataType::Int64)
                    .with_default(Value::Float64(1.5))),
            ),
            InvalidRequest,
        ),
        (
            "alter dropping an unknown column",
            alter(MAIN, 0, drop("nope")),
            InvalidRequest,
        ),
        (
            "alter dropping a tag",
            alter(MAIN, 0, drop("host")),
            InvalidRequest,
        ),
        (
            "alter dropping the timestamp",
            alter(MAIN, 0, drop("ts")),
            InvalidRequest,
        ),
        (
            "alter a read-only region",
            alter(
                READ_ONLY,
                0,
                add(ColumnSchema::field("x", ColumnDataType::Int64)),
            ),
            RegionState,
        ),
        (
            "alter a dropped region",
            alter(
                DROPPED,
                0,
                add(ColumnSchema::field("x", ColumnDataType::Int64)),
            ),
            RegionNotFound,
        ),
        (
            "flush an unknown region",
            DdlRequest::Flush(strata_engine::FlushRequest::new(UNKNOWN)),
            RegionNotFound,
        ),
        (
            "flush a read-only region",
            DdlRequest::Flush(strata_engine::FlushRequest::new(READ_ONLY)),
            RegionState,
        ),
        (
            "truncate an unknown region",
            DdlRequest::Truncate(strata_engine::TruncateRequest::new(UNKNOWN)),
            RegionNotFound,
        ),
        (
            "truncate a read-only region",
            DdlRequest::Truncate(strata_engine::TruncateRequest::new(READ_ONLY)),
            RegionState,
        ),
        (
            "drop an unknown region",
            DdlRequest::Drop(strata_engine::DropRequest::new(UNKNOWN)),
            RegionNotFound,
        ),
        (
            "drop a dropped region",
            DdlRequest::Drop(strata_engine::DropRequest::new(DROPPED)),
            RegionNotFound,
        ),
        (
            "open a region that was never created",
            DdlRequest::Open(strata_engine::OpenRequest::new(
                UNKNOWN,
                strata_engine::RegionRole::Leader,
            )),
            RegionNotFound,
        ),
        (
            "open a dropped region",
            DdlRequest::Open(strata_engine::OpenRequest::new(
                DROPPED,
                strata_engine::RegionRole::Leader,
            )),
            RegionNotFound,
        ),
        (
            "compact an unknown region",
            DdlRequest::Compact(strata_engine::CompactRequest::new(UNKNOWN)),
            RegionNotFound,
        ),
        (
            "make an unknown region writable",
            DdlRequest::SetWritable(strata_engine::SetWritableRequest::new(UNKNOWN, true)),
            RegionNotFound,
        ),
        (
            "change the role of an unknown region",
            DdlRequest::SetRole(strata_engine::SetRoleRequest::new(
                UNKNOWN,
                strata_engine::RegionRole::Leader,
                None,
            )),
            RegionNotFound,
        ),
        (
            "downgrade a follower",
            DdlRequest::SetRole(strata_engine::SetRoleRequest::new(
                READ_ONLY,
                strata_engine::RegionRole::Downgrading,
                None,
            )),
            RegionState,
        ),
        (
            "sync an unknown region",
            DdlRequest::Sync(strata_engine::SyncRequest::new(UNKNOWN, 0)),
            RegionNotFound,
        ),
        (
            "sync a region to a manifest version nobody committed",
            DdlRequest::Sync(strata_engine::SyncRequest::new(READ_ONLY, 1_000)),
            RegionState,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_typed_error_leaves_the_wal_alone_and_restart_replays() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let engine = EngineBuilder::new(config(dir.path()))
        .build()
        .await
        .unwrap();
    setup(&engine).await;
    let wal_before = dir_bytes(&wal_dir);
    let mut cases = 0;
    for (what, request, expected) in bad_writes() {
        let error = engine.write(request).await.expect_err(what);
        assert_eq!(error.kind(), expected, "{what}: {error}");
        assert!(!error.to_string().is_empty());
        cases += 1;
    }
    for (what, request, expected) in bad_ddls() {
        let error = engine.ddl(request).await.expect_err(what);
        assert_eq!(error.kind(), expected, "{what}: {error}");
        cases += 1;
    }
    assert_eq!(
        dir_bytes(&wal_dir),
        wal_before,
        "no invalid request reached the WAL"
    );
    let stats = engine.region_stats(MAIN).unwrap();
    assert_eq!(
        (
            stats.committed_sequence,
            stats.last_entry_id,
            stats.schema_version
        ),
        (5, 1, 0)
    );
    engine.stop().await.unwrap();

    let engine = EngineBuilder::new(config(dir.path()))
        .build()
        .await
        .unwrap();
    for region in [MAIN, APPEND, READ_ONLY] {
        engine.open(region).await.unwrap();
    }
    let rows = |batches: Vec<RecordBatch>| batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    assert_eq!(
        rows(
            engine
                .scan_to_vec(MAIN, ScanRequest::default())
                .await
                .unwrap()
        ),
        5
    );
    assert_eq!(
        rows(
            engine
                .scan_to_vec(APPEND, ScanRequest::default())
                .await
                .unwrap()
        ),
        3
    );
    engine.stop().await.unwrap();
    eprintln!("bad input: {cases} invalid requests checked");
    assert!(cases >= 40, "only {cases} cases");
}

#[test]
fn invalid_schemas_and_configurations_are_refused_with_the_reason() {
    let region = RegionId::new(1, 0);
    let schemas: Vec<(&str, RegionMetadataBuilder)> = vec![
        (
            "no timestamp",
            RegionMetadataBuilder::new(region).column(ColumnSchema::tag("h")),
        ),
        (
            "two timestamps",
            RegionMetadataBuilder::new(region)
                .column(ColumnSchema::timestamp(
                    "a",
                    ColumnDataType::TimestampMillisecond,
                ))
                .column(ColumnSchema::timestamp(
                    "b",
                    ColumnDataType::TimestampMillisecond,
                )),
        ),
        (
            "a float tag",
            RegionMetadataBuilder::new(region)
                .column(ColumnSchema::new(
                    "h",
                    ColumnDataType::Float64,
                    strata_engine::SemanticType::Tag,
                ))
                .column(ColumnSchema::timestamp(
                    "ts",
                    ColumnDataType::TimestampMillisecond,
                )),
        ),
        (
            "duplicate names",
            RegionMetadataBuilder::new(region)
                .column(ColumnSchema::tag("x"))
                .column(ColumnSchema::field("x", ColumnDataType::Int64))
                .column(ColumnSchema::timestamp(
                    "ts",
                    ColumnDataType::TimestampMillisecond,
                )),
        ),
        (
            "reserved column name",
            RegionMetadataBuilder::new(region)
                .column(ColumnSchema::field("__sequence", ColumnDataType::Int64))
                .column(ColumnSchema::timestamp(
                    "ts",
                    ColumnDataType::TimestampMillisecond,
                )),
        ),
    ];
    for (what, builder) in schemas {
        assert!(builder.build().is_err(), "{what} was accepted");
    }
    let configs = [
        ("num_workers = 0", "num_workers"),
        ("worker_request_batch_size = 0", "worker_request_batch_size"),
        (
            "global_write_buffer_size = \"64MiB\"\nglobal_write_buffer_reject_size = \"64MiB\"",
            "global_write_buffer_reject_size",
        ),
        (
            "global_write_buffer_size = \"a lot\"",
            "global_write_buffer_size",
        ),
        ("auto_flush_interval = \"0s\"", "auto_flush_interval"),
        ("[sst]\nrow_group_size = 0", "row_group_size"),
        ("[wal]\nsync = \"sometimes\"", "sync"),
        ("[wal]\nsegment_size = \"0B\"", "segment_size"),
        ("[wal]\nprovider = \"kafka\"", "provider"),
        ("typo_key = true", "typo_key"),
    ];
    for (text, key) in configs {
        let error = EngineConfig::from_toml(text).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert!(error.to_string().contains(key), "{text:?}: {error}");
    }
}
