//! Column-level schema: semantic types, the data types each one allows, default values.

use std::fmt;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, UInt64Array,
    new_null_array,
};
use arrow_schema::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

/// The role a column plays in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SemanticType {
    /// A string label; tags in declared order form the series' primary key.
    Tag,
    /// A measured value.
    Field,
    /// The row's time; exactly one per region.
    Timestamp,
}

impl fmt::Display for SemanticType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SemanticType::Tag => "tag",
            SemanticType::Field => "field",
            SemanticType::Timestamp => "timestamp",
        })
    }
}

/// The data types a region column may have. Each maps to exactly one Arrow [`DataType`].
///
/// | semantic type | allowed                                              |
/// |---------------|------------------------------------------------------|
/// | tag           | `String`                                             |
/// | field         | `Float64`, `Int64`, `UInt64`, `Boolean`, `String`, `Binary` |
/// | timestamp     | `TimestampMillisecond`, `TimestampMicrosecond`, `TimestampNanosecond` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ColumnDataType {
    /// 64-bit float (`Float64`).
    Float64,
    /// Signed 64-bit integer (`Int64`).
    Int64,
    /// Unsigned 64-bit integer (`UInt64`).
    UInt64,
    /// Boolean (`Boolean`).
    Boolean,
    /// UTF-8 string (`Utf8`).
    String,
    /// Bytes (`Binary`).
    Binary,
    /// Milliseconds since the Unix epoch (`Timestamp(Millisecond, None)`).
    TimestampMillisecond,
    /// Microseconds since the Unix epoch (`Timestamp(Microsecond, None)`).
    TimestampMicrosecond,
    /// Nanoseconds since the Unix epoch (`Timestamp(Nanosecond, None)`).
    TimestampNanosecond,
}

impl ColumnDataType {
    /// The Arrow type of this column type.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnDataType::Float64 => DataType::Float64,
            ColumnDataType::Int64 => DataType::Int64,
            ColumnDataType::UInt64 => DataType::UInt64,
            ColumnDataType::Boolean => DataType::Boolean,
            ColumnDataType::String => DataType::Utf8,
            ColumnDataType::Binary => DataType::Binary,
            ColumnDataType::TimestampMillisecond => {
                DataType::Timestamp(TimeUnit::Millisecond, None)
            }
            ColumnDataType::TimestampMicrosecond => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            ColumnDataType::TimestampNanosecond => DataType::Timestamp(TimeUnit::Nanosecond, None),
        }
    }

    /// The column type for an Arrow type, or `None` if Strata does not store that type.
    pub fn from_arrow(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Float64 => ColumnDataType::Float64,
            DataType::Int64 => ColumnDataType::Int64,
            DataType::UInt64 => ColumnDataType::UInt64,
            DataType::Boolean => ColumnDataType::Boolean,
            DataType::Utf8 => ColumnDataType::String,
            DataType::Binary => ColumnDataType::Binary,
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                ColumnDataType::TimestampMillisecond
            }
            DataType::Timestamp(TimeUnit::Microsecond, None) => {
                ColumnDataType::TimestampMicrosecond
            }
            DataType::Timestamp(TimeUnit::Nanosecond, None) => ColumnDataType::TimestampNanosecond,
            _ => return None,
        })
    }

    /// For a timestamp type, the instant `millis` (milliseconds since the epoch) in its
    /// unit, saturating at the ends of `i64`; `None` for other types.
    pub fn timestamp_from_millis(self, millis: i64) -> Option<i64> {
        match self {
            ColumnDataType::TimestampMillisecond => Some(millis),
            ColumnDataType::TimestampMicrosecond => Some(millis.saturating_mul(1_000)),
            ColumnDataType::TimestampNanosecond => Some(millis.saturating_mul(1_000_000)),
            _ => None,
        }
    }

    /// Whether this is one of the timestamp types.
    pub fn is_timestamp(self) -> bool {
        matches!(
            self,
            ColumnDataType::TimestampMillisecond
                | ColumnDataType::TimestampMicrosecond
                | ColumnDataType::TimestampNanosecond
        )
    }

    /// Whether a column of `semantic_type` may have this type (see the table above).
    pub fn is_allowed_for(self, semantic_type: SemanticType) -> bool {
        match semantic_type {
            SemanticType::Tag => self == ColumnDataType::String,
            SemanticType::Field => !self.is_timestamp(),
            SemanticType::Timestamp => self.is_timestamp(),
        }
    }

    /// The "zero" of this type: used to pad a non-null field that a delete leaves out.
    pub fn zero_value(self) -> Value {
        match self {
            ColumnDataType::Float64 => Value::Float64(0.0),
            ColumnDataType::Int64 => Value::Int64(0),
            ColumnDataType::UInt64 => Value::UInt64(0),
            ColumnDataType::Boolean => Value::Boolean(false),
            ColumnDataType::String => Value::String(String::new()),
            ColumnDataType::Binary => Value::Binary(Vec::new()),
            ColumnDataType::TimestampMillisecond
            | ColumnDataType::TimestampMicrosecond
            | ColumnDataType::TimestampNanosecond => Value::Timestamp(0),
        }
    }
}

impl fmt::Display for ColumnDataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.arrow_type())
    }
}

/// A single non-null value, used for column defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Value {
    /// A `Float64` value.
    Float64(f64),
    /// An `Int64` value.
    Int64(i64),
    /// A `UInt64` value.
    UInt64(u64),
    /// A `Boolean` value.
    Boolean(bool),
    /// A `String` value.
    String(String),
    /// A `Binary` value.
    Binary(Vec<u8>),
    /// A timestamp in the column's own unit.
    Timestamp(i64),
}

impl Value {
    /// Whether this value can be stored in a column of `data_type`.
    pub fn fits(&self, data_type: ColumnDataType) -> bool {
        matches!(
            (self, data_type),
            (Value::Float64(_), ColumnDataType::Float64)
                | (Value::Int64(_), ColumnDataType::Int64)
                | (Value::UInt64(_), ColumnDataType::UInt64)
                | (Value::Boolean(_), ColumnDataType::Boolean)
                | (Value::String(_), ColumnDataType::String)
                | (Value::Binary(_), ColumnDataType::Binary)
        ) || (matches!(self, Value::Timestamp(_)) && data_type.is_timestamp())
    }

    /// An array of `len` copies of this value typed as `data_type`, or `None` if the value
    /// does not [fit](Self::fits) the type.
    pub fn to_array(&self, data_type: ColumnDataType, len: usize) -> Option<ArrayRef> {
        if !self.fits(data_type) {
            return None;
        }
        Some(match (self, data_type) {
            (Value::Float64(v), _) => Arc::new(Float64Array::from_value(*v, len)),
            (Value::Int64(v), _) => Arc::new(Int64Array::from_value(*v, len)),
            (Value::UInt64(v), _) => Arc::new(UInt64Array::from_value(*v, len)),
            (Value::Boolean(v), _) => Arc::new(BooleanArray::from(vec![*v; len])),
            (Value::String(v), _) => {
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, len)))
            }
            (Value::Binary(v), _) => {
                Arc::new(BinaryArray::from_iter_values(std::iter::repeat_n(v, len)))
            }
            (Value::Timestamp(v), ColumnDataType::TimestampMillisecond) => {
                Arc::new(TimestampMillisecondArray::from_value(*v, len))
            }
            (Value::Timestamp(v), ColumnDataType::TimestampMicrosecond) => {
                Arc::new(TimestampMicrosecondArray::from_value(*v, len))
            }
            (Value::Timestamp(v), _) => Arc::new(TimestampNanosecondArray::from_value(*v, len)),
        })
    }
}

/// One column of a region schema.
///
/// Build it with [`ColumnSchema::tag`], [`ColumnSchema::field`] or
/// [`ColumnSchema::timestamp`]; whether the combination is valid is checked when the region
/// schema is built ([`crate::RegionMetadataBuilder::build`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ColumnSchema {
    /// Column name, unique within the region.
    pub name: String,
    /// Stored data type.
    pub data_type: ColumnDataType,
    /// Role of the column.
    pub semantic_type: SemanticType,
    /// Whether the column may hold nulls.
    pub nullable: bool,
    /// Value used when a put leaves the column out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Stable id, assigned by the region schema builder and by alters; never reused.
    #[serde(default)]
    pub column_id: u32,
}

impl ColumnSchema {
    /// A column with every attribute given explicitly (nullable, no default).
    pub fn new(
        name: impl Into<String>,
        data_type: ColumnDataType,
        semantic_type: SemanticType,
    ) -> Self {
        Self {
            name: name.into(),
            data_type,
            semantic_type,
            nullable: semantic_type != SemanticType::Timestamp,
            default: None,
            column_id: 0,
        }
    }

    /// A nullable string tag.
    pub fn tag(name: impl Into<String>) -> Self {
        Self::new(name, ColumnDataType::String, SemanticType::Tag)
    }

    /// A nullable field of `data_type`.
    pub fn field(name: impl Into<String>, data_type: ColumnDataType) -> Self {
        Self::new(name, data_type, SemanticType::Field)
    }

    /// The non-null time index; `data_type` must be one of the timestamp types.
    pub fn timestamp(name: impl Into<String>, data_type: ColumnDataType) -> Self {
        Self::new(name, data_type, SemanticType::Timestamp)
    }

    /// Sets whether the column may hold nulls.
    pub fn with_nullable(mut self, nullable: bool) -> Self {
        self.nullable = nullable;
        self
    }

    /// Sets the value a put that leaves the column out gets.
    pub fn with_default(mut self, default: Value) -> Self {
        self.default = Some(default);
        self
    }

    /// Whether the column is a tag.
    pub fn is_tag(&self) -> bool {
        self.semantic_type == SemanticType::Tag
    }

    /// Whether the column is a field.
    pub fn is_field(&self) -> bool {
        self.semantic_type == SemanticType::Field
    }

    /// Whether the column is the time index.
    pub fn is_timestamp(&self) -> bool {
        self.semantic_type == SemanticType::Timestamp
    }

    /// The Arrow field for this column.
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.data_type.arrow_type(), self.nullable)
    }

    /// An array of `len` values for a write that leaves this column out, or `None` if the
    /// column is non-null and has no default.
    ///
    /// Order: the default if one is set, else nulls if nullable, else (only when
    /// `zero_if_required`) the type's zero value.
    pub fn fill_array(&self, len: usize, zero_if_required: bool) -> Option<ArrayRef> {
        if let Some(default) = &self.default {
            return default.to_array(self.data_type, len);
        }
        if self.nullable {
            return Some(new_null_array(&self.data_type.arrow_type(), len));
        }
        if zero_if_required {
            return self.data_type.zero_value().to_array(self.data_type, len);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn a_millisecond_instant_converts_to_each_timestamp_unit_and_saturates() {
        use ColumnDataType as T;
        assert_eq!(
            T::TimestampMillisecond.timestamp_from_millis(1_500),
            Some(1_500)
        );
        assert_eq!(
            T::TimestampMicrosecond.timestamp_from_millis(1_500),
            Some(1_500_000)
        );
        assert_eq!(
            T::TimestampNanosecond.timestamp_from_millis(1_500),
            Some(1_500_000_000)
        );
        assert_eq!(
            T::TimestampNanosecond.timestamp_from_millis(i64::MIN / 2),
            Some(i64::MIN)
        );
        assert_eq!(T::Float64.timestamp_from_millis(1), None);
    }

    const ALL_TYPES: [ColumnDataType; 9] = [
        ColumnDataType::Float64,
        ColumnDataType::Int64,
        ColumnDataType::UInt64,
        ColumnDataType::Boolean,
        ColumnDataType::String,
        ColumnDataType::Binary,
        ColumnDataType::TimestampMillisecond,
        ColumnDataType::TimestampMicrosecond,
        ColumnDataType::TimestampNanosecond,
    ];

    #[test]
    fn every_column_type_round_trips_through_arrow() {
        for t in ALL_TYPES {
            assert_eq!(ColumnDataType::from_arrow(&t.arrow_type()), Some(t));
        }
    }

    #[test]
    fn unsupported_arrow_types_have_no_column_type() {
        for t in [
            DataType::Int32,
            DataType::Float32,
            DataType::LargeUtf8,
            DataType::Timestamp(TimeUnit::Second, None),
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        ] {
            assert_eq!(ColumnDataType::from_arrow(&t), None, "{t}");
        }
    }

    #[test]
    fn tags_are_strings_and_timestamps_are_timestamps() {
        for t in ALL_TYPES {
            assert_eq!(
                t.is_allowed_for(SemanticType::Tag),
                t == ColumnDataType::String
            );
            assert_eq!(t.is_allowed_for(SemanticType::Timestamp), t.is_timestamp());
            assert_eq!(t.is_allowed_for(SemanticType::Field), !t.is_timestamp());
        }
    }

    #[test]
    fn zero_value_fits_and_builds_an_array_of_the_type() {
        for t in ALL_TYPES {
            let array = t.zero_value().to_array(t, 3).unwrap();
            assert_eq!(array.data_type(), &t.arrow_type());
            assert_eq!(array.len(), 3);
            assert_eq!(array.null_count(), 0);
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_builds_no_array() {
        assert!(
            Value::Int64(1)
                .to_array(ColumnDataType::Float64, 1)
                .is_none()
        );
        assert!(
            Value::Timestamp(1)
                .to_array(ColumnDataType::Int64, 1)
                .is_none()
        );
    }

    #[test]
    fn fill_prefers_default_then_null_then_zero() {
        let with_default = ColumnSchema::field("f", ColumnDataType::Int64)
            .with_nullable(false)
            .with_default(Value::Int64(7));
        let a = with_default.fill_array(2, false).unwrap();
        let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(a.values().as_ref(), &[7, 7]);

        let nullable = ColumnSchema::field("f", ColumnDataType::Int64);
        assert_eq!(nullable.fill_array(2, false).unwrap().null_count(), 2);

        let required = ColumnSchema::field("f", ColumnDataType::Int64).with_nullable(false);
        assert!(required.fill_array(2, false).is_none());
        assert_eq!(required.fill_array(2, true).unwrap().null_count(), 0);
    }
}
