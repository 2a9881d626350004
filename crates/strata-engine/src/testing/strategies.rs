//! Proptest strategies: region schemas, keys and rows, write batches, operations and
//! whole sequences of them, weighted by a [`Mix`].
//!
//! Keys are drawn from a small space ([`Mix::tag_values`] values per tag, null included,
//! times `0..`[`Mix::times`] milliseconds in the region's unit), so batches repeat keys
//! within themselves and across batches, deletes hit rows that exist, and TTLs around a
//! second ([`CLOCK_START_MILLIS`] ± 10 ms) expire some of them.

use std::ops::RangeInclusive;
use std::time::Duration;

use proptest::collection::{SizeRange, vec};
use proptest::prelude::*;
use proptest::strategy::Union;
use strata_request::{ColumnDataType, Value};

use super::{CLOCK_START_MILLIS, FieldSpec, Key, Op, Row, TableSchema};

/// The field types a region may have.
const FIELD_TYPES: [ColumnDataType; 6] = [
    ColumnDataType::Float64,
    ColumnDataType::Int64,
    ColumnDataType::UInt64,
    ColumnDataType::Boolean,
    ColumnDataType::String,
    ColumnDataType::Binary,
];

/// The time index types.
const TIME_UNITS: [ColumnDataType; 3] = [
    ColumnDataType::TimestampMillisecond,
    ColumnDataType::TimestampMicrosecond,
    ColumnDataType::TimestampNanosecond,
];

/// The names [`Op::AddField`] picks from: two, so a region sometimes gets a name twice
/// (which the engine must refuse).
const ADDED_FIELD_NAMES: [&str; 2] = ["x0", "x1"];

/// How often each kind of operation is drawn (relative weights; 0 never draws it), and
/// the key space writes draw from. The default is the project's model test's mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// [`Op::Put`] weight.
    pub put: u32,
    /// [`Op::Delete`] weight.
    pub delete: u32,
    /// [`Op::Flush`] weight.
    pub flush: u32,
    /// [`Op::Compact`] weight.
    pub compact: u32,
    /// [`Op::Truncate`] weight.
    pub truncate: u32,
    /// [`Op::AddField`] weight.
    pub add_field: u32,
    /// [`Op::SetTtl`] weight.
    pub set_ttl: u32,
    /// [`Op::AdvanceClock`] weight.
    pub advance_clock: u32,
    /// [`Op::Reopen`] weight.
    pub reopen: u32,
    /// [`Op::Restart`] weight.
    pub restart: u32,
    /// [`Op::Drop`] weight.
    pub drop: u32,
    /// [`Op::Create`] weight (creates of a region that exists are skipped; see also
    /// [`revive`](Self::revive)).
    pub create: u32,
    /// In [`ops`]: the percentage of operations on a region dropped earlier in the
    /// sequence that become its [`Op::Create`] instead (the rest stay, and the engine
    /// must refuse them).
    pub revive: u8,
    /// Distinct values per tag (each tag may also be null).
    pub tag_values: u32,
    /// Distinct timestamps: `0..times` milliseconds, in the region's unit.
    pub times: u32,
    /// Rows per put.
    pub put_rows: RangeInclusive<usize>,
    /// Keys per delete.
    pub delete_keys: RangeInclusive<usize>,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            put: 42,
            delete: 15,
            flush: 12,
            compact: 3,
            truncate: 4,
            add_field: 4,
            set_ttl: 2,
            advance_clock: 2,
            reopen: 7,
            restart: 5,
            drop: 4,
            create: 0,
            revive: 90,
            tag_values: 3,
            times: 6,
            put_rows: 1..=6,
            delete_keys: 1..=3,
        }
    }
}

impl Mix {
    /// Only puts, deletes, flushes and compactions: the write path and the read path, no
    /// DDL, no clock.
    pub fn writes_only() -> Self {
        Self {
            truncate: 0,
            add_field: 0,
            set_ttl: 0,
            advance_clock: 0,
            reopen: 0,
            restart: 0,
            drop: 0,
            create: 0,
            ..Self::default()
        }
    }
}

/// Region schemas: 1–3 string tags, a millisecond, microsecond or nanosecond time index,
/// and 0–3 fields of any field type, most of them nullable.
///
/// Never without tags: the engine refuses to create a region without a tag column
/// (`InvalidRequest`; tags form the primary key rows are indexed by).
pub fn region_schema() -> BoxedStrategy<TableSchema> {
    let field = (
        proptest::sample::select(FIELD_TYPES.to_vec()),
        proptest::bool::weighted(0.8),
    );
    (
        1usize..=3,
        proptest::sample::select(TIME_UNITS.to_vec()),
        vec(field, 0..=3),
    )
        .prop_map(|(tags, time_unit, fields)| TableSchema {
            tags: (0..tags).map(|i| format!("t{i}")).collect(),
            time_index: "ts".into(),
            time_unit,
            fields: fields
                .into_iter()
                .enumerate()
                .map(|(i, (data_type, nullable))| FieldSpec {
                    name: format!("f{i}"),
                    data_type,
                    nullable,
                })
                .collect(),
        })
        .boxed()
}

/// Keys of `schema` from `mix`'s key space.
pub fn key(schema: &TableSchema, mix: &Mix) -> BoxedStrategy<Key> {
    let values = mix.tag_values.max(1);
    let tag = proptest::option::weighted(0.9, (0..values).prop_map(|v| format!("v{v}")));
    let unit = schema.units_per_milli();
    (vec(tag, schema.tags.len()), 0..i64::from(mix.times.max(1)))
        .prop_map(move |(tags, t)| Key {
            tags,
            ts: t.saturating_mul(unit),
        })
        .boxed()
}

/// Values of a field (null a fifth of the time when it is nullable).
pub fn field_value(field: &FieldSpec) -> BoxedStrategy<Option<Value>> {
    let value = match field.data_type {
        ColumnDataType::Float64 => (-1000i32..1000)
            .prop_map(|v| Value::Float64(f64::from(v) / 4.0))
            .boxed(),
        ColumnDataType::UInt64 => any::<u64>().prop_map(Value::UInt64).boxed(),
        ColumnDataType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        ColumnDataType::String => vec(proptest::sample::select(vec!['a', 'b', 'é', ' ']), 0..4)
            .prop_map(|chars| Value::String(chars.into_iter().collect()))
            .boxed(),
        ColumnDataType::Binary => vec(any::<u8>(), 0..4).prop_map(Value::Binary).boxed(),
        _ => prop_oneof![-1000i64..1000, any::<i64>()]
            .prop_map(Value::Int64)
            .boxed(),
    };
    if field.nullable {
        proptest::option::weighted(0.8, value).boxed()
    } else {
        value.prop_map(Some).boxed()
    }
}

/// Rows of `schema`: a key from `mix`'s key space and a value for every field.
pub fn row(schema: &TableSchema, mix: &Mix) -> BoxedStrategy<Row> {
    let fields: Vec<_> = schema.fields.iter().map(field_value).collect();
    (key(schema, mix), fields)
        .prop_map(|(key, fields)| Row { key, fields })
        .boxed()
}

/// Write batches to one of `regions` regions: puts (three in four) of
/// [`Mix::put_rows`] rows and deletes of [`Mix::delete_keys`] keys, keys repeating.
pub fn write_batch(schema: &TableSchema, regions: usize, mix: &Mix) -> BoxedStrategy<Op> {
    prop_oneof![
        3 => put(schema, regions, mix),
        1 => delete(schema, regions, mix),
    ]
    .boxed()
}

fn region(regions: usize) -> BoxedStrategy<usize> {
    (0..regions.max(1)).boxed()
}

fn put(schema: &TableSchema, regions: usize, mix: &Mix) -> BoxedStrategy<Op> {
    (region(regions), vec(row(schema, mix), size(&mix.put_rows)))
        .prop_map(|(region, rows)| Op::Put { region, rows })
        .boxed()
}

fn delete(schema: &TableSchema, regions: usize, mix: &Mix) -> BoxedStrategy<Op> {
    (
        region(regions),
        vec(key(schema, mix), size(&mix.delete_keys)),
    )
        .prop_map(|(region, keys)| Op::Delete { region, keys })
        .boxed()
}

fn size(range: &RangeInclusive<usize>) -> SizeRange {
    SizeRange::from(*range.start()..=(*range.end()).max(*range.start()))
}

/// One operation on one of `regions` regions, drawn by `mix`'s weights (a mix whose
/// weights are all 0 draws clock steps of zero).
pub fn op(schema: &TableSchema, regions: usize, mix: &Mix) -> BoxedStrategy<Op> {
    let r = || region(regions);
    let ttl = proptest::option::weighted(
        2.0 / 3.0,
        (CLOCK_START_MILLIS - 10..CLOCK_START_MILLIS + 10)
            .prop_map(|ms| Duration::from_millis(ms.unsigned_abs())),
    );
    let add_field = (
        r(),
        proptest::sample::select(ADDED_FIELD_NAMES.to_vec()),
        proptest::sample::select(FIELD_TYPES.to_vec()),
    )
        .prop_map(|(region, name, data_type)| Op::AddField {
            region,
            name: name.into(),
            data_type,
        });
    let arms: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (mix.put, put(schema, regions, mix)),
        (mix.delete, delete(schema, regions, mix)),
        (
            mix.flush,
            r().prop_map(|region| Op::Flush { region }).boxed(),
        ),
        (
            mix.compact,
            r().prop_map(|region| Op::Compact { region }).boxed(),
        ),
        (
            mix.truncate,
            r().prop_map(|region| Op::Truncate { region }).boxed(),
        ),
        (mix.add_field, add_field.boxed()),
        (
            mix.set_ttl,
            (r(), ttl)
                .prop_map(|(region, ttl)| Op::SetTtl { region, ttl })
                .boxed(),
        ),
        (
            mix.advance_clock,
            (0u64..4)
                .prop_map(|ms| Op::AdvanceClock {
                    by: Duration::from_millis(ms),
                })
                .boxed(),
        ),
        (
            mix.reopen,
            r().prop_map(|region| Op::Reopen { region }).boxed(),
        ),
        (mix.restart, Just(Op::Restart).boxed()),
        (mix.drop, r().prop_map(|region| Op::Drop { region }).boxed()),
        (
            mix.create,
            r().prop_map(|region| Op::Create { region }).boxed(),
        ),
    ];
    let arms: Vec<_> = arms.into_iter().filter(|(weight, _)| *weight > 0).collect();
    if arms.is_empty() {
        return Just(Op::AdvanceClock { by: Duration::ZERO }).boxed();
    }
    Union::new_weighted(arms).boxed()
}

/// Sequences of `len` operations on `regions` regions of `schema`, drawn by `mix`; an
/// operation on a region dropped earlier in the sequence becomes its [`Op::Create`]
/// [`Mix::revive`] percent of the time, so regions come back after drops.
pub fn ops(
    schema: &TableSchema,
    regions: usize,
    mix: &Mix,
    len: impl Into<SizeRange>,
) -> BoxedStrategy<Vec<Op>> {
    let revive = mix.revive;
    vec((op(schema, regions, mix), 0u8..100), len)
        .prop_map(move |ops| {
            let mut dropped = vec![false; regions];
            ops.into_iter()
                .map(|(op, roll)| {
                    let Some(region) = op.region() else {
                        return op;
                    };
                    let was_dropped = dropped.get(region).copied().unwrap_or(false);
                    let op = match op {
                        Op::Create { .. } => op,
                        _ if was_dropped && roll < revive => Op::Create { region },
                        _ => op,
                    };
                    if let Some(slot) = dropped.get_mut(region) {
                        *slot = match op {
                            Op::Drop { .. } => true,
                            Op::Create { .. } => false,
                            _ => *slot,
                        };
                    }
                    op
                })
                .collect()
        })
        .boxed()
}

/// A region schema ([`region_schema`]) and a sequence of `len` operations on `regions`
/// regions of it ([`ops`]).
pub fn scenario(
    regions: usize,
    mix: Mix,
    len: impl Into<SizeRange>,
) -> BoxedStrategy<(TableSchema, Vec<Op>)> {
    let len = len.into();
    region_schema()
        .prop_flat_map(move |schema| {
            let ops = ops(&schema, regions, &mix, len.clone());
            (Just(schema), ops)
        })
        .boxed()
}
