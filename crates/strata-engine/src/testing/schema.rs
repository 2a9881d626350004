//! [`TableSchema`]: the schema every region of a [`TestEngine`](super::TestEngine) is
//! created with, and the conversions between [`Row`]s and Arrow batches.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, UInt64Array,
};
use strata_request::{
    ColumnDataType, ColumnSchema, RegionId, RegionMetadata, RegionMetadataBuilder, Value,
};

use super::{Key, KitError, KitResult, Row};

/// One field column of a [`TableSchema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Its name.
    pub name: String,
    /// Its type: `Float64`, `Int64`, `UInt64`, `Boolean`, `String` or `Binary`.
    pub data_type: ColumnDataType,
    /// Whether it may hold nulls (a non-null field needs a value in every put).
    pub nullable: bool,
}

/// A region schema in the kit's terms: string tags (the primary key, in order), one time
/// index, and fields. [`strategies::region_schema`](super::strategies::region_schema)
/// generates them; [`TableSchema::host_ts_v`] is a small fixed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The tag columns' names, in primary-key order.
    pub tags: Vec<String>,
    /// The time index's name.
    pub time_index: String,
    /// The time index's type: `TimestampMillisecond`, `TimestampMicrosecond` or
    /// `TimestampNanosecond`.
    pub time_unit: ColumnDataType,
    /// The fields.
    pub fields: Vec<FieldSpec>,
}

impl Default for TableSchema {
    fn default() -> Self {
        Self::host_ts_v()
    }
}

impl TableSchema {
    /// A tag `host`, a millisecond time index `ts` and a nullable `Int64` field `v`.
    pub fn host_ts_v() -> Self {
        Self {
            tags: vec!["host".into()],
            time_index: "ts".into(),
            time_unit: ColumnDataType::TimestampMillisecond,
            fields: vec![FieldSpec {
                name: "v".into(),
                data_type: ColumnDataType::Int64,
                nullable: true,
            }],
        }
    }

    /// The region schema of `region_id` (version 0), or [`KitError::Invalid`] naming
    /// what the region schema builder refused.
    pub fn metadata(&self, region_id: RegionId) -> KitResult<RegionMetadata> {
        let mut builder = RegionMetadataBuilder::new(region_id);
        for tag in &self.tags {
            builder = builder.column(ColumnSchema::tag(tag.clone()));
        }
        builder = builder.column(ColumnSchema::timestamp(
            self.time_index.clone(),
            self.time_unit,
        ));
        for field in &self.fields {
            builder = builder.column(
                ColumnSchema::field(field.name.clone(), field.data_type)
                    .with_nullable(field.nullable),
            );
        }
        builder.build().map_err(|e| KitError::Invalid {
            detail: format!("schema {self:?}: {e}"),
        })
    }

    /// How many of the time index's units make a millisecond.
    pub fn units_per_milli(&self) -> i64 {
        self.time_unit.timestamp_from_millis(1).unwrap_or(1)
    }

    /// A put batch of `rows` (each with this schema's tags and fields).
    pub fn put_batch(&self, rows: &[Row]) -> KitResult<RecordBatch> {
        let mut columns = self.key_columns(rows.iter().map(|r| &r.key))?;
        for (i, field) in self.fields.iter().enumerate() {
            let values = rows
                .iter()
                .map(|row| {
                    row.fields.get(i).ok_or_else(|| KitError::Invalid {
                        detail: format!("row {row} has no value for field {:?}", field.name),
                    })
                })
                .collect::<KitResult<Vec<_>>>()?;
            let values: Vec<Option<&Value>> = values.into_iter().map(Option::as_ref).collect();
            columns.push((field.name.clone(), field_array(field, &values)?));
        }
        if let Some(row) = rows.iter().find(|r| r.fields.len() != self.fields.len()) {
            return Err(KitError::Invalid {
                detail: format!("row {row} has not the {} fields", self.fields.len()),
            });
        }
        batch(columns)
    }

    /// A delete batch of `keys`: the tags and the time index only.
    pub fn delete_batch(&self, keys: &[Key]) -> KitResult<RecordBatch> {
        batch(self.key_columns(keys.iter())?)
    }

    fn key_columns<'a>(
        &self,
        keys: impl Iterator<Item = &'a Key> + Clone,
    ) -> KitResult<Vec<(String, ArrayRef)>> {
        let mut columns: Vec<(String, ArrayRef)> = Vec::new();
        for (i, tag) in self.tags.iter().enumerate() {
            let values = keys
                .clone()
                .map(|key| match key.tags.get(i) {
                    Some(value) if key.tags.len() == self.tags.len() => Ok(value.as_deref()),
                    _ => Err(KitError::Invalid {
                        detail: format!("key {key} has not the {} tags", self.tags.len()),
                    }),
                })
                .collect::<KitResult<Vec<Option<&str>>>>()?;
            columns.push((tag.clone(), Arc::new(StringArray::from(values))));
        }
        let ts: Vec<i64> = keys.map(|key| key.ts).collect();
        let ts: ArrayRef = match self.time_unit {
            ColumnDataType::TimestampMicrosecond => Arc::new(TimestampMicrosecondArray::from(ts)),
            ColumnDataType::TimestampNanosecond => Arc::new(TimestampNanosecondArray::from(ts)),
            _ => Arc::new(TimestampMillisecondArray::from(ts)),
        };
        columns.push((self.time_index.clone(), ts));
        Ok(columns)
    }
}

fn batch(columns: Vec<(String, ArrayRef)>) -> KitResult<RecordBatch> {
    RecordBatch::try_from_iter(columns).map_err(|e| KitError::Invalid {
        detail: format!("cannot build a batch: {e}"),
    })
}

/// An array of `field`'s type holding `values`, or [`KitError::Invalid`] for a value of
/// another type.
fn field_array(field: &FieldSpec, values: &[Option<&Value>]) -> KitResult<ArrayRef> {
    let wrong = |value: &Value| KitError::Invalid {
        detail: format!(
            "{value:?} does not fit field {:?} of type {}",
            field.name, field.data_type
        ),
    };
    macro_rules! collect {
        ($variant:ident, $array:ty, |$v:ident| $map:expr) => {{
            let values = values
                .iter()
                .map(|value| match value {
                    None => Ok(None),
                    Some(Value::$variant($v)) => Ok(Some($map)),
                    Some(other) => Err(wrong(other)),
                })
                .collect::<KitResult<Vec<_>>>()?;
            Arc::new(<$array>::from(values)) as ArrayRef
        }};
    }
    Ok(match field.data_type {
        ColumnDataType::Float64 => collect!(Float64, Float64Array, |v| *v),
        ColumnDataType::Int64 => collect!(Int64, Int64Array, |v| *v),
        ColumnDataType::UInt64 => collect!(UInt64, UInt64Array, |v| *v),
        ColumnDataType::Boolean => collect!(Boolean, BooleanArray, |v| *v),
        ColumnDataType::String => collect!(String, StringArray, |v| v.as_str()),
        ColumnDataType::Binary => collect!(Binary, BinaryArray, |v| v.as_slice()),
        other => {
            return Err(KitError::Invalid {
                detail: format!("field {:?} has the type {other}", field.name),
            });
        }
    })
}

/// The rows of `batch`, a scan of a region with schema `metadata` (every column).
pub(super) fn decode(metadata: &RegionMetadata, batch: &RecordBatch) -> KitResult<Vec<Row>> {
    let column = |schema: &ColumnSchema| {
        batch
            .column_by_name(&schema.name)
            .ok_or_else(|| KitError::Invalid {
                detail: format!("the scan has no column {:?}", schema.name),
            })
    };
    let tags = metadata
        .tag_columns()
        .map(|c| {
            let array = column(c)?;
            array.as_string_opt::<i32>().ok_or_else(|| mistyped(c))
        })
        .collect::<KitResult<Vec<_>>>()?;
    let time_index = metadata.time_index_column();
    let ts = timestamps(column(time_index)?).ok_or_else(|| mistyped(time_index))?;
    let fields = metadata
        .field_columns()
        .map(|c| Ok((c, column(c)?)))
        .collect::<KitResult<Vec<_>>>()?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for (i, ts) in ts.into_iter().enumerate() {
        let tags = tags
            .iter()
            .map(|a| a.is_valid(i).then(|| a.value(i).to_string()))
            .collect();
        let fields = fields
            .iter()
            .map(|(c, a)| value(a, c.data_type, i).ok_or_else(|| mistyped(c)))
            .collect::<KitResult<Vec<_>>>()?;
        rows.push(Row {
            key: Key { tags, ts },
            fields,
        });
    }
    Ok(rows)
}

fn mistyped(column: &ColumnSchema) -> KitError {
    KitError::Invalid {
        detail: format!(
            "the scan's column {:?} is not of type {}",
            column.name, column.data_type
        ),
    }
}

/// The values of a timestamp array of any unit.
fn timestamps(array: &ArrayRef) -> Option<Vec<i64>> {
    let values = if let Some(a) = array.as_primitive_opt::<TimestampMillisecondType>() {
        a.values().to_vec()
    } else if let Some(a) = array.as_primitive_opt::<TimestampMicrosecondType>() {
        a.values().to_vec()
    } else {
        array
            .as_primitive_opt::<TimestampNanosecondType>()?
            .values()
            .to_vec()
    };
    Some(values)
}

/// Row `i` of `array` as a value of `data_type` (`Some(None)`: null), or `None` if the
/// array is not of that type.
fn value(array: &ArrayRef, data_type: ColumnDataType, i: usize) -> Option<Option<Value>> {
    if array.is_null(i) {
        return Some(None);
    }
    Some(Some(match data_type {
        ColumnDataType::Float64 => {
            Value::Float64(array.as_primitive_opt::<Float64Type>()?.value(i))
        }
        ColumnDataType::Int64 => Value::Int64(array.as_primitive_opt::<Int64Type>()?.value(i)),
        ColumnDataType::UInt64 => Value::UInt64(array.as_primitive_opt::<UInt64Type>()?.value(i)),
        ColumnDataType::Boolean => Value::Boolean(array.as_boolean_opt()?.value(i)),
        ColumnDataType::String => Value::String(array.as_string_opt::<i32>()?.value(i).into()),
        ColumnDataType::Binary => Value::Binary(array.as_binary_opt::<i32>()?.value(i).to_vec()),
        _ => return None,
    }))
}
