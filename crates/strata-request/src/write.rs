//! [`WriteRequest`]: rows for one region, and their validation against the region schema.

use std::collections::HashSet;
use std::fmt;

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use serde::{Deserialize, Serialize};
use snafu::{Snafu, ensure};

use crate::metadata::RegionMetadata;
use crate::region_id::RegionId;
use crate::schema::ColumnDataType;

/// What a write does to the rows' keys.
///
/// Deliberately not `#[non_exhaustive]`: it is stored in every SST row (`__op_type`) and
/// every merge and count matches it; a new one is an on-disk format change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum OpType {
    /// Insert or overwrite rows (the newest sequence wins).
    Put = 1,
    /// Write tombstones for the rows' keys (primary key + timestamp).
    Delete = 0,
}

impl OpType {
    /// Stable one-byte encoding, as stored in `__op_type`.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Decodes [`as_u8`](Self::as_u8); `None` for an unknown byte.
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(OpType::Put),
            0 => Some(OpType::Delete),
            _ => None,
        }
    }

    /// Lower-case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Put => "put",
            OpType::Delete => "delete",
        }
    }
}

impl fmt::Display for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a write request was rejected before anything was written.
#[derive(Debug, Snafu, Clone, PartialEq)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum WriteError {
    /// The request is addressed to another region than the schema it was checked against.
    #[snafu(display("write for region {request} validated against the schema of region {schema}"))]
    RegionMismatch {
        /// Region named by the request.
        request: RegionId,
        /// Region of the schema.
        schema: RegionId,
    },
    /// The batch has no rows.
    #[snafu(display("region {region_id}: {op_type} request has no rows"))]
    EmptyBatch {
        /// The region.
        region_id: RegionId,
        /// Put or delete.
        op_type: OpType,
    },
    /// The batch has two columns with the same name.
    #[snafu(display("region {region_id}: column {name:?} appears twice in the request"))]
    DuplicateColumn {
        /// The region.
        region_id: RegionId,
        /// The repeated name.
        name: String,
    },
    /// The batch has a column the region does not have.
    #[snafu(display(
        "region {region_id}: unknown column {name:?} (schema version {schema_version})"
    ))]
    UnknownColumn {
        /// The region.
        region_id: RegionId,
        /// The unknown name.
        name: String,
        /// Schema version checked against.
        schema_version: u64,
    },
    /// A column's Arrow type differs from the region's.
    #[snafu(display("region {region_id}: column {name:?} has type {actual}, expected {expected}"))]
    TypeMismatch {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
        /// The region's type.
        expected: ColumnDataType,
        /// The request's Arrow type, as text.
        actual: String,
    },
    /// A non-null column holds nulls.
    #[snafu(display(
        "region {region_id}: column {name:?} is NOT NULL but has {null_count} null value(s)"
    ))]
    NullInNonNullColumn {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
        /// How many nulls.
        null_count: usize,
    },
    /// A put leaves out a non-null column that has no default.
    #[snafu(display(
        "region {region_id}: missing column {name:?}, which is NOT NULL and has no default"
    ))]
    MissingColumn {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
    },
    /// A delete leaves out a tag or the timestamp, so the rows' keys are unknown.
    #[snafu(display(
        "region {region_id}: delete is missing key column {name:?} (deletes need every tag and the timestamp)"
    ))]
    MissingKeyColumn {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
    },
    /// A timestamp lies outside what nanoseconds can represent (1677-09-21 to 2262-04-11),
    /// the range every unit and every reader (pandas, DuckDB, Spark) shares.
    #[snafu(display(
        "region {region_id}: timestamp {value} in column {name:?} is out of range (allowed: {min}..={max} in the column's unit, 1677-09-21 to 2262-04-11)"
    ))]
    TimestampOutOfRange {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
        /// The first offending value.
        value: i64,
        /// Smallest allowed value in the column's unit.
        min: i64,
        /// Largest allowed value in the column's unit.
        max: i64,
    },
    /// Arrow refused to assemble the validated batch (a bug if it ever happens).
    #[snafu(display("region {region_id}: cannot assemble the validated batch: {reason}"))]
    Assemble {
        /// The region.
        region_id: RegionId,
        /// Arrow's complaint, as text (Arrow's error is neither `Clone` nor `PartialEq`).
        reason: String,
    },
}

/// Rows to put into, or delete from, one region.
///
/// The batch may list the region's columns in any order and may leave out columns that
/// have a default or are nullable (for deletes: any field). [`validate`](Self::validate)
/// turns it into the batch that is stored.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriteRequest {
    /// Target region.
    pub region_id: RegionId,
    /// Put or delete.
    pub op_type: OpType,
    /// The rows.
    pub batch: RecordBatch,
}

impl WriteRequest {
    /// A write of `op_type` of `batch` into `region_id`.
    pub fn new(region_id: RegionId, op_type: OpType, batch: RecordBatch) -> Self {
        Self {
            region_id,
            op_type,
            batch,
        }
    }

    /// A put of `batch` into `region_id`.
    pub fn put(region_id: RegionId, batch: RecordBatch) -> Self {
        Self {
            region_id,
            op_type: OpType::Put,
            batch,
        }
    }

    /// A delete of the keys in `batch` from `region_id`.
    pub fn delete(region_id: RegionId, batch: RecordBatch) -> Self {
        Self {
            region_id,
            op_type: OpType::Delete,
            batch,
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Bytes of Arrow data the rows occupy (the visible slice, not whole shared buffers).
    ///
    /// Used to account stalled requests against the reject limit, so it must be cheap and
    /// must not overcount batches sliced out of a larger one.
    pub fn estimated_size(&self) -> usize {
        self.batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum()
    }

    /// Checks the rows against `metadata` and returns the batch to store: every region
    /// column in declared order with the region's Arrow schema, left-out columns filled with
    /// the default, null, or (deleted fields only) the type's zero value.
    ///
    /// Errors, with nothing written: wrong region, no rows, a duplicate or unknown column, a
    /// type mismatch, nulls in a NOT NULL column, a missing NOT NULL column without default,
    /// a delete without every tag and the timestamp.
    pub fn validate(&self, metadata: &RegionMetadata) -> Result<RecordBatch, WriteError> {
        let region_id = self.region_id;
        ensure!(
            region_id == metadata.region_id(),
            RegionMismatchSnafu {
                request: region_id,
                schema: metadata.region_id(),
            }
        );
        let num_rows = self.batch.num_rows();
        ensure!(
            num_rows > 0,
            EmptyBatchSnafu {
                region_id,
                op_type: self.op_type,
            }
        );

        let mut slots: Vec<Option<ArrayRef>> = vec![None; metadata.columns().len()];
        let mut seen = HashSet::with_capacity(self.batch.num_columns());
        let schema = self.batch.schema();
        for (field, array) in schema.fields().iter().zip(self.batch.columns()) {
            let name = field.name();
            ensure!(
                seen.insert(name.as_str()),
                DuplicateColumnSnafu { region_id, name }
            );
            let Some((index, column)) = metadata.column_by_name(name) else {
                return UnknownColumnSnafu {
                    region_id,
                    name,
                    schema_version: metadata.schema_version(),
                }
                .fail();
            };
            ensure!(
                array.data_type() == &column.data_type.arrow_type(),
                TypeMismatchSnafu {
                    region_id,
                    name,
                    expected: column.data_type,
                    actual: array.data_type().to_string(),
                }
            );
            ensure!(
                column.nullable || array.null_count() == 0,
                NullInNonNullColumnSnafu {
                    region_id,
                    name,
                    null_count: array.null_count(),
                }
            );
            if let Some((min, max)) = timestamp_range(column.data_type) {
                let values = array.to_data();
                let values: &[i64] = values.buffer::<i64>(0);
                let bad = values
                    .iter()
                    .enumerate()
                    .find(|&(i, &v)| array.is_valid(i) && (v < min || v > max));
                if let Some((_, &value)) = bad {
                    return TimestampOutOfRangeSnafu {
                        region_id,
                        name,
                        value,
                        min,
                        max,
                    }
                    .fail();
                }
            }
            slots[index] = Some(array.clone());
        }

        let is_delete = self.op_type == OpType::Delete;
        let mut arrays = Vec::with_capacity(slots.len());
        for (slot, column) in slots.into_iter().zip(metadata.columns()) {
            if let Some(array) = slot {
                arrays.push(array);
                continue;
            }
            ensure!(
                !is_delete || column.is_field(),
                MissingKeyColumnSnafu {
                    region_id,
                    name: &column.name,
                }
            );
            match column.fill_array(num_rows, is_delete) {
                Some(filled) => arrays.push(filled),
                None => {
                    return MissingColumnSnafu {
                        region_id,
                        name: &column.name,
                    }
                    .fail();
                }
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(num_rows));
        RecordBatch::try_new_with_options(metadata.arrow_schema().clone(), arrays, &options)
            .map_err(|e| WriteError::Assemble {
                region_id,
                reason: e.to_string(),
            })
    }
}

/// The allowed range of a timestamp column in its own unit: what fits in nanoseconds.
fn timestamp_range(data_type: ColumnDataType) -> Option<(i64, i64)> {
    let per_unit: i64 = match data_type {
        ColumnDataType::TimestampMillisecond => 1_000_000,
        ColumnDataType::TimestampMicrosecond => 1_000,
        ColumnDataType::TimestampNanosecond => 1,
        _ => return None,
    };
    Some((i64::MIN / per_unit, i64::MAX / per_unit))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        Float64Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
    };
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::metadata::RegionMetadataBuilder;
    use crate::schema::{ColumnSchema, Value};

    fn rid() -> RegionId {
        RegionId::new(7, 1)
    }

    /// host (tag), dc (tag), ts, usage (nullable f64), load (NOT NULL i64 default 5),
    /// count (NOT NULL i64, no default).
    fn metadata() -> RegionMetadata {
        RegionMetadataBuilder::new(rid())
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::tag("dc"))
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .column(ColumnSchema::field("usage", ColumnDataType::Float64))
            .column(
                ColumnSchema::field("load", ColumnDataType::Int64)
                    .with_nullable(false)
                    .with_default(Value::Int64(5)),
            )
            .column(ColumnSchema::field("count", ColumnDataType::Int64).with_nullable(false))
            .build()
            .unwrap()
    }

    fn host() -> (Field, ArrayRef) {
        (
            Field::new("host", DataType::Utf8, true),
            Arc::new(StringArray::from(vec!["a", "b"])),
        )
    }
    fn dc() -> (Field, ArrayRef) {
        (
            Field::new("dc", DataType::Utf8, true),
            Arc::new(StringArray::from(vec!["x", "y"])),
        )
    }
    fn ts() -> (Field, ArrayRef) {
        (
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Arc::new(TimestampMillisecondArray::from(vec![1, 2])),
        )
    }
    fn count() -> (Field, ArrayRef) {
        (
            Field::new("count", DataType::Int64, false),
            Arc::new(Int64Array::from(vec![10, 20])),
        )
    }

    fn batch(columns: Vec<(Field, ArrayRef)>) -> RecordBatch {
        let (fields, arrays): (Vec<_>, Vec<_>) = columns.into_iter().unzip();
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(2)),
        )
        .unwrap()
    }

    fn put_err(columns: Vec<(Field, ArrayRef)>) -> WriteError {
        WriteRequest::put(rid(), batch(columns))
            .validate(&metadata())
            .unwrap_err()
    }

    #[test]
    fn put_reorders_columns_and_fills_nulls_and_defaults() {
        let stored = WriteRequest::put(rid(), batch(vec![count(), ts(), dc(), host()]))
            .validate(&metadata())
            .unwrap();
        assert_eq!(stored.schema(), *metadata().arrow_schema());
        assert_eq!(stored.num_rows(), 2);
        assert_eq!(stored.column(3).null_count(), 2, "nullable usage is null");
        let load = stored
            .column(4)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(load.values().as_ref(), &[5, 5], "load gets its default");
        let count = stored
            .column(5)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(count.values().as_ref(), &[10, 20]);
    }

    #[test]
    fn put_accepts_missing_nullable_tags() {
        let stored = WriteRequest::put(rid(), batch(vec![host(), ts(), count()]))
            .validate(&metadata())
            .unwrap();
        assert_eq!(stored.column(1).null_count(), 2);
    }

    #[test]
    fn delete_needs_keys_and_pads_fields_with_default_null_or_zero() {
        let stored = WriteRequest::delete(rid(), batch(vec![host(), dc(), ts()]))
            .validate(&metadata())
            .unwrap();
        assert_eq!(stored.column(3).null_count(), 2);
        let load = stored
            .column(4)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(load.values().as_ref(), &[5, 5]);
        let count = stored
            .column(5)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(count.values().as_ref(), &[0, 0]);

        for missing in ["host", "dc", "ts"] {
            let columns: Vec<_> = [host(), dc(), ts()]
                .into_iter()
                .filter(|(f, _)| f.name() != missing)
                .collect();
            let err = WriteRequest::delete(rid(), batch(columns))
                .validate(&metadata())
                .unwrap_err();
            assert!(
                matches!(&err, WriteError::MissingKeyColumn { name, .. } if name == missing),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_every_invalid_write_with_a_typed_error() {
        let e = put_err(vec![host(), dc(), ts()]);
        assert!(
            matches!(&e, WriteError::MissingColumn { name, .. } if name == "count"),
            "{e}"
        );

        let e = put_err(vec![host(), host(), ts(), count()]);
        assert!(
            matches!(&e, WriteError::DuplicateColumn { name, .. } if name == "host"),
            "{e}"
        );

        let extra = (
            Field::new("cpu", DataType::Int64, true),
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        );
        let e = put_err(vec![host(), ts(), count(), extra]);
        assert!(
            matches!(&e, WriteError::UnknownColumn { name, .. } if name == "cpu"),
            "{e}"
        );

        let wrong = (
            Field::new("count", DataType::Int32, false),
            Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
        );
        let e = put_err(vec![host(), ts(), wrong]);
        assert!(
            matches!(&e, WriteError::TypeMismatch { name, .. } if name == "count"),
            "{e}"
        );
        assert!(
            e.to_string().contains("has type Int32, expected Int64"),
            "{e}"
        );

        let nulls = (
            Field::new("count", DataType::Int64, true),
            Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
        );
        let e = put_err(vec![host(), ts(), nulls]);
        assert!(
            matches!(e, WriteError::NullInNonNullColumn { null_count: 1, .. }),
            "{e}"
        );

        let null_ts = (
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Arc::new(TimestampMillisecondArray::from(vec![Some(1), None])) as ArrayRef,
        );
        let e = put_err(vec![host(), null_ts, count()]);
        assert!(
            matches!(&e, WriteError::NullInNonNullColumn { name, .. } if name == "ts"),
            "{e}"
        );

        let empty = RecordBatch::new_empty(metadata().arrow_schema().clone());
        let e = WriteRequest::put(rid(), empty)
            .validate(&metadata())
            .unwrap_err();
        assert!(matches!(e, WriteError::EmptyBatch { .. }), "{e}");

        let e = WriteRequest::put(RegionId::new(7, 2), batch(vec![host(), ts(), count()]))
            .validate(&metadata())
            .unwrap_err();
        assert!(matches!(e, WriteError::RegionMismatch { .. }), "{e}");
    }

    #[test]
    fn float_values_pass_through_unchanged() {
        let usage = (
            Field::new("usage", DataType::Float64, true),
            Arc::new(Float64Array::from(vec![Some(1.5), None])) as ArrayRef,
        );
        let stored = WriteRequest::put(rid(), batch(vec![host(), ts(), count(), usage]))
            .validate(&metadata())
            .unwrap();
        let usage = stored
            .column(3)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(usage.value(0), 1.5);
        assert!(usage.is_null(1));
    }

    #[test]
    fn estimated_size_counts_only_the_visible_slice() {
        let whole = WriteRequest::put(rid(), batch(vec![host(), ts(), count()]));
        let sliced = WriteRequest::put(rid(), whole.batch.slice(0, 1));
        assert!(whole.estimated_size() > 0);
        assert!(sliced.estimated_size() < whole.estimated_size());
    }

    #[test]
    fn op_type_byte_encoding_round_trips() {
        for op in [OpType::Put, OpType::Delete] {
            assert_eq!(OpType::from_u8(op.as_u8()), Some(op));
        }
        assert_eq!(OpType::from_u8(9), None);
    }

    #[test]
    fn timestamps_beyond_what_nanoseconds_can_hold_are_refused() {
        let metadata = metadata();
        let limit = i64::MAX / 1_000_000;
        let batch = |ts: i64| {
            RecordBatch::try_from_iter([
                ("host", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
                ("dc", Arc::new(StringArray::from(vec!["x"]))),
                ("ts", Arc::new(TimestampMillisecondArray::from(vec![ts]))),
                ("count", Arc::new(Int64Array::from(vec![1]))),
            ])
            .unwrap()
        };
        assert!(
            WriteRequest::put(rid(), batch(limit))
                .validate(&metadata)
                .is_ok()
        );
        for ts in [limit + 1, -limit - 1, i64::MAX, i64::MIN] {
            let error = WriteRequest::put(rid(), batch(ts))
                .validate(&metadata)
                .unwrap_err();
            assert!(
                matches!(error, WriteError::TimestampOutOfRange { value, .. } if value == ts),
                "{error}"
            );
        }
    }
}
