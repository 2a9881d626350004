//! The kit against the engine: fixed sequences that exercise every operation, a model
//! that is told something the engine was not (the check must fail), faults and events.

use std::time::Duration;

use strata_request::{ColumnDataType, Value};

use super::{Event, FieldSpec, Key, KitError, Op, Row, TableSchema, TestEngine};

/// The key of `host` at `ts` (one tag).
pub(super) fn key(host: &str, ts: i64) -> Key {
    Key {
        tags: vec![Some(host.into())],
        ts,
    }
}

/// A put of `(host, ts, value)` rows into `region` (one Int64 field).
pub(super) fn put(region: usize, rows: &[(&str, i64, i64)]) -> Op {
    Op::Put {
        region,
        rows: rows
            .iter()
            .map(|&(h, ts, v)| Row {
                key: key(h, ts),
                fields: vec![Some(Value::Int64(v))],
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_matches_the_model_step_by_step() {
    let mut engine = TestEngine::builder().regions(2).build().await.unwrap();
    let mut model = engine.model();
    let ops = vec![
        // Duplicate keys within a batch: the later row wins.
        put(0, &[("a", 1, 10), ("a", 1, 11), ("b", 2, 20)]),
        Op::Flush { region: 0 },
        put(0, &[("b", 2, 21), ("c", 0, 30)]),
        Op::Delete {
            region: 0,
            keys: vec![key("a", 1), key("a", 1), key("z", 5)],
        },
        Op::AddField {
            region: 0,
            name: "x0".into(),
            data_type: ColumnDataType::Boolean,
        },
        // A name the region has: refused, nothing changes.
        Op::AddField {
            region: 0,
            name: "x0".into(),
            data_type: ColumnDataType::Int64,
        },
        put(0, &[("d", 3, 40)]),
        Op::Compact { region: 0 },
        Op::SetTtl {
            region: 0,
            ttl: Some(Duration::from_millis(999)),
        },
        Op::AdvanceClock {
            by: Duration::from_millis(2),
        },
        Op::SetTtl {
            region: 0,
            ttl: None,
        },
        Op::Reopen { region: 0 },
        put(1, &[("e", 4, 50)]),
        Op::Restart,
        Op::Truncate { region: 1 },
        Op::Drop { region: 1 },
        // Refused by the engine, ignored by the model.
        put(1, &[("f", 5, 60)]),
        Op::Flush { region: 1 },
        Op::SetTtl {
            region: 1,
            ttl: None,
        },
        Op::Reopen { region: 1 },
        Op::Restart,
        Op::Create { region: 1 },
        Op::Create { region: 0 },
        put(1, &[("g", 0, 70)]),
    ];
    engine.run(&mut model, &ops).await.unwrap();
    assert_eq!(model.field_names(0), vec!["v", "x0"]);
    assert_eq!(
        model.rows(1),
        vec![Row {
            key: key("g", 0),
            fields: vec![Some(Value::Int64(70))]
        }]
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_differs_from_the_engine_fails_the_check() {
    let mut engine = TestEngine::builder().regions(1).build().await.unwrap();
    let mut model = engine.model();
    let op = put(0, &[("a", 1, 10)]);
    engine.apply(&op).await.unwrap();
    engine.check(&model).await.unwrap_err();
    model.apply(&op);
    engine.check(&model).await.unwrap();
    // A delete the engine never saw.
    model.apply(&Op::Delete {
        region: 0,
        keys: vec![key("a", 1)],
    });
    let error = engine.check(&model).await.unwrap_err();
    assert!(
        matches!(error, KitError::Mismatch { region: 0, .. }),
        "{error}"
    );
    // A drop the engine never saw.
    model.apply(&Op::Drop { region: 0 });
    engine.check(&model).await.unwrap_err();
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schema_shape_round_trips_rows() {
    let field = |name: &str, data_type, nullable| FieldSpec {
        name: name.into(),
        data_type,
        nullable,
    };
    let schema = TableSchema {
        tags: vec!["t0".into(), "t1".into()],
        time_index: "ts".into(),
        time_unit: ColumnDataType::TimestampNanosecond,
        fields: vec![
            field("f", ColumnDataType::Float64, true),
            field("u", ColumnDataType::UInt64, false),
            field("b", ColumnDataType::Boolean, true),
            field("s", ColumnDataType::String, true),
            field("y", ColumnDataType::Binary, true),
        ],
    };
    let mut engine = TestEngine::builder()
        .schema(schema)
        .regions(1)
        .build()
        .await
        .unwrap();
    let mut model = engine.model();
    let row = |tags: [Option<&str>; 2], ts, u| Row {
        key: Key {
            tags: tags.iter().map(|t| t.map(String::from)).collect(),
            ts,
        },
        fields: vec![
            Some(Value::Float64(-0.25)),
            Some(Value::UInt64(u)),
            None,
            Some(Value::String("é".into())),
            Some(Value::Binary(vec![0, 255])),
        ],
    };
    let ops = vec![
        Op::Put {
            region: 0,
            rows: vec![
                row([None, Some("a")], 2_000_000, u64::MAX),
                row([Some("a"), None], 1, 0),
                row([None, None], 0, 7),
            ],
        },
        Op::Flush { region: 0 },
        Op::Delete {
            region: 0,
            keys: vec![Key {
                tags: vec![None, None],
                ts: 0,
            }],
        },
    ];
    engine.run(&mut model, &ops).await.unwrap();
    assert_eq!(engine.rows(0).await.unwrap().len(), 2);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_loses_nothing_and_the_listener_records_it() {
    let mut engine = TestEngine::builder().regions(1).build().await.unwrap();
    let mut model = engine.model();
    let op = put(0, &[("a", 1, 10)]);
    engine.apply(&op).await.unwrap();
    model.apply(&op);
    engine.faults().fail_writes_containing("/data/");
    engine.apply(&Op::Flush { region: 0 }).await.unwrap_err();
    assert!(engine.faults().injected() > 0);
    engine
        .events()
        .wait_for(|events| events.iter().any(|e| matches!(e, Event::FlushFailed(_))))
        .await;
    engine.check(&model).await.unwrap();
    engine.faults().clear();
    engine.apply(&Op::Flush { region: 0 }).await.unwrap();
    // The worker reports the success once it has applied the flush, maybe after the
    // caller heard of it.
    engine
        .events()
        .wait_for(|events| events.iter().any(|e| matches!(e, Event::FlushSuccess(_))))
        .await;
    assert_eq!(
        engine
            .engine()
            .region_stats(engine.region_id(0).unwrap())
            .unwrap()
            .num_files,
        1
    );
    engine.check(&model).await.unwrap();
    engine.stop().await.unwrap();
}
