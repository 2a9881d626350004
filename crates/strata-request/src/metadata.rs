//! [`RegionMetadata`]: a region's validated schema, its builder, and schema evolution.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use snafu::{Snafu, ensure};

use crate::region_id::RegionId;
use crate::schema::{ColumnSchema, SemanticType};

/// Prefix reserved for Strata's internal columns (`__sequence`, `__op_type`, ...).
pub const RESERVED_COLUMN_PREFIX: &str = "__";

/// Longest column name accepted, in bytes (names end up in Parquet schemas, CSV headers and
/// tools that choke on megabyte identifiers).
pub const MAX_COLUMN_NAME_LEN: usize = 255;

/// Why a region schema (or a change to one) is invalid.
#[derive(Debug, Snafu, Clone, PartialEq)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum MetadataError {
    /// The schema has no columns at all.
    #[snafu(display("region {region_id}: a region needs at least a timestamp column"))]
    NoColumns {
        /// Region whose schema was rejected.
        region_id: RegionId,
    },
    /// A column name is empty, longer than [`MAX_COLUMN_NAME_LEN`] bytes, contains a
    /// control character, or uses the reserved `__` prefix.
    #[snafu(display(
        "region {region_id}: column name {name:?} is invalid (empty, over {MAX_COLUMN_NAME_LEN} bytes, with control characters, or starting with the reserved prefix `__`)"
    ))]
    InvalidColumnName {
        /// Region whose schema was rejected.
        region_id: RegionId,
        /// The rejected name.
        name: String,
    },
    /// Two columns share a name.
    #[snafu(display("region {region_id}: column {name:?} is declared twice"))]
    DuplicateColumn {
        /// Region whose schema was rejected.
        region_id: RegionId,
        /// The repeated name.
        name: String,
    },
    /// Two columns share a column id (only possible in hand-edited serialized metadata).
    #[snafu(display("region {region_id}: column {name:?} reuses column id {column_id}"))]
    DuplicateColumnId {
        /// Region whose schema was rejected.
        region_id: RegionId,
        /// The second column with that id.
        name: String,
        /// The repeated id.
        column_id: u32,
    },
    /// No column is the time index.
    #[snafu(display("region {region_id}: no timestamp column (exactly one is required)"))]
    MissingTimestamp {
        /// Region whose schema was rejected.
        region_id: RegionId,
    },
    /// More than one column is the time index.
    #[snafu(display(
        "region {region_id}: two timestamp columns {first:?} and {second:?} (exactly one is allowed)"
    ))]
    TwoTimestamps {
        /// Region whose schema was rejected.
        region_id: RegionId,
        /// The first timestamp column.
        first: String,
        /// The second timestamp column.
        second: String,
    },
    /// A column's type is not allowed for its semantic type.
    #[snafu(display(
        "region {region_id}: column {name:?} is a {semantic_type} of type {data_type}, which a {semantic_type} cannot be (tags are Utf8, timestamps are Timestamp(ms|us|ns), fields are Float64, Int64, UInt64, Boolean, Utf8 or Binary)"
    ))]
    TypeNotAllowed {
        /// Region whose schema was rejected.
        region_id: RegionId,
        /// The column.
        name: String,
        /// Its semantic type.
        semantic_type: SemanticType,
        /// Its data type, as text.
        data_type: String,
    },
    /// The time index is nullable.
    #[snafu(display("region {region_id}: timestamp column {name:?} must not be nullable"))]
    NullableTimestamp {
        /// Region whose schema was rejected.
        region_id: RegionId,
        /// The column.
        name: String,
    },
    /// A column's default does not fit its type, or the column cannot have one.
    #[snafu(display("region {region_id}: column {name:?}: {reason}"))]
    InvalidDefault {
        /// Region whose schema was rejected.
        region_id: RegionId,
        /// The column.
        name: String,
        /// What is wrong with the default.
        reason: String,
    },
    /// An alter names a schema version other than the region's current one.
    #[snafu(display(
        "region {region_id}: alter expects schema version {expected} but the region is at {actual}"
    ))]
    SchemaVersionMismatch {
        /// The region.
        region_id: RegionId,
        /// Version the alter was prepared against.
        expected: u64,
        /// The region's current version.
        actual: u64,
    },
    /// An alter tries to add something other than a field.
    #[snafu(display(
        "region {region_id}: cannot add {semantic_type} column {name:?}: only field columns can be added"
    ))]
    AddNonField {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
        /// Its semantic type.
        semantic_type: SemanticType,
    },
    /// An added column is non-null without a default, so existing rows would have no value.
    #[snafu(display(
        "region {region_id}: added column {name:?} must be nullable or have a default (existing rows need a value)"
    ))]
    AddRequiredWithoutDefault {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
    },
    /// An alter drops a column that does not exist.
    #[snafu(display("region {region_id}: cannot drop column {name:?}: no such column"))]
    DropUnknownColumn {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
    },
    /// An alter drops a tag or the timestamp.
    #[snafu(display(
        "region {region_id}: cannot drop {semantic_type} column {name:?}: only field columns can be dropped"
    ))]
    DropNonField {
        /// The region.
        region_id: RegionId,
        /// The column.
        name: String,
        /// Its semantic type.
        semantic_type: SemanticType,
    },
}

/// A region's schema: columns in declared order, exactly one timestamp, tags as the primary
/// key, and a version that increases with every schema change.
///
/// A `RegionMetadata` is always valid: the only ways to get one are
/// [`RegionMetadataBuilder::build`], [`RegionMetadata::add_columns`] /
/// [`RegionMetadata::drop_columns`], and deserialization, and all of them validate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRegionMetadata", into = "RawRegionMetadata")]
pub struct RegionMetadata {
    region_id: RegionId,
    columns: Vec<ColumnSchema>,
    schema_version: u64,
    /// Index of the timestamp column in `columns`.
    time_index: usize,
    /// Indexes of tag columns in `columns`, in declared order.
    primary_key: Vec<usize>,
    /// Arrow schema of a stored batch: every column, in order.
    arrow_schema: SchemaRef,
}

/// The serialized form of [`RegionMetadata`]; derived parts are rebuilt on load.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegionMetadata {
    region_id: RegionId,
    schema_version: u64,
    columns: Vec<ColumnSchema>,
}

impl TryFrom<RawRegionMetadata> for RegionMetadata {
    type Error = MetadataError;

    fn try_from(raw: RawRegionMetadata) -> Result<Self, Self::Error> {
        RegionMetadata::validate(raw.region_id, raw.columns, raw.schema_version)
    }
}

impl From<RegionMetadata> for RawRegionMetadata {
    fn from(m: RegionMetadata) -> Self {
        RawRegionMetadata {
            region_id: m.region_id,
            schema_version: m.schema_version,
            columns: m.columns,
        }
    }
}

impl RegionMetadata {
    /// The region this schema belongs to.
    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// Version of the schema; 0 at creation, +1 on every column change.
    pub fn schema_version(&self) -> u64 {
        self.schema_version
    }

    /// All columns in declared order.
    pub fn columns(&self) -> &[ColumnSchema] {
        &self.columns
    }

    /// The column called `name`, with its index.
    pub fn column_by_name(&self, name: &str) -> Option<(usize, &ColumnSchema)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The time index column.
    pub fn time_index_column(&self) -> &ColumnSchema {
        &self.columns[self.time_index]
    }

    /// Index of the time index column in [`columns`](Self::columns).
    pub fn time_index(&self) -> usize {
        self.time_index
    }

    /// Indexes of the tag columns (the primary key) in declared order.
    pub fn primary_key(&self) -> &[usize] {
        &self.primary_key
    }

    /// The tag columns in primary-key order.
    pub fn tag_columns(&self) -> impl Iterator<Item = &ColumnSchema> {
        self.primary_key.iter().map(|&i| &self.columns[i])
    }

    /// The field columns in declared order.
    pub fn field_columns(&self) -> impl Iterator<Item = &ColumnSchema> {
        self.columns.iter().filter(|c| c.is_field())
    }

    /// The Arrow schema of a stored batch: every column in declared order.
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// A new schema with `columns` appended as fields, at `schema_version + 1`.
    ///
    /// Added columns must be fields that are nullable or have a default, with new names.
    /// `expected_version` must equal the current version, so a retried alter that already
    /// applied fails instead of adding the columns twice.
    pub fn add_columns(
        &self,
        expected_version: u64,
        columns: &[ColumnSchema],
    ) -> Result<RegionMetadata, MetadataError> {
        self.check_version(expected_version)?;
        let region_id = self.region_id;
        let mut new_columns = self.columns.clone();
        for (column_id, column) in (self.next_column_id()..).zip(columns) {
            ensure!(
                column.is_field(),
                AddNonFieldSnafu {
                    region_id,
                    name: &column.name,
                    semantic_type: column.semantic_type,
                }
            );
            ensure!(
                column.nullable || column.default.is_some(),
                AddRequiredWithoutDefaultSnafu {
                    region_id,
                    name: &column.name,
                }
            );
            new_columns.push(ColumnSchema {
                column_id,
                ..column.clone()
            });
        }
        Self::validate(region_id, new_columns, self.schema_version + 1)
    }

    /// A new schema without the field columns called `names`, at `schema_version + 1`.
    pub fn drop_columns(
        &self,
        expected_version: u64,
        names: &[String],
    ) -> Result<RegionMetadata, MetadataError> {
        self.check_version(expected_version)?;
        let region_id = self.region_id;
        for name in names {
            let Some((_, column)) = self.column_by_name(name) else {
                return DropUnknownColumnSnafu { region_id, name }.fail();
            };
            ensure!(
                column.is_field(),
                DropNonFieldSnafu {
                    region_id,
                    name,
                    semantic_type: column.semantic_type,
                }
            );
        }
        let kept = self
            .columns
            .iter()
            .filter(|c| !names.contains(&c.name))
            .cloned()
            .collect();
        Self::validate(region_id, kept, self.schema_version + 1)
    }

    fn check_version(&self, expected: u64) -> Result<(), MetadataError> {
        ensure!(
            expected == self.schema_version,
            SchemaVersionMismatchSnafu {
                region_id: self.region_id,
                expected,
                actual: self.schema_version,
            }
        );
        Ok(())
    }

    fn next_column_id(&self) -> u32 {
        self.columns
            .iter()
            .map(|c| c.column_id + 1)
            .max()
            .unwrap_or(0)
    }

    /// Checks every schema rule and derives the lookup parts.
    fn validate(
        region_id: RegionId,
        columns: Vec<ColumnSchema>,
        schema_version: u64,
    ) -> Result<RegionMetadata, MetadataError> {
        ensure!(!columns.is_empty(), NoColumnsSnafu { region_id });
        let mut names = HashSet::with_capacity(columns.len());
        let mut ids = HashSet::with_capacity(columns.len());
        let mut time_index: Option<usize> = None;
        let mut primary_key = Vec::new();
        for (i, column) in columns.iter().enumerate() {
            let name = &column.name;
            ensure!(
                !name.is_empty()
                    && name.len() <= MAX_COLUMN_NAME_LEN
                    && !name.chars().any(char::is_control)
                    && !name.starts_with(RESERVED_COLUMN_PREFIX),
                InvalidColumnNameSnafu { region_id, name }
            );
            ensure!(
                names.insert(name.as_str()),
                DuplicateColumnSnafu { region_id, name }
            );
            ensure!(
                ids.insert(column.column_id),
                DuplicateColumnIdSnafu {
                    region_id,
                    name,
                    column_id: column.column_id,
                }
            );
            ensure!(
                column.data_type.is_allowed_for(column.semantic_type),
                TypeNotAllowedSnafu {
                    region_id,
                    name,
                    semantic_type: column.semantic_type,
                    data_type: column.data_type.to_string(),
                }
            );
            match column.semantic_type {
                SemanticType::Timestamp => {
                    if let Some(first) = time_index {
                        return TwoTimestampsSnafu {
                            region_id,
                            first: &columns[first].name,
                            second: name,
                        }
                        .fail();
                    }
                    ensure!(!column.nullable, NullableTimestampSnafu { region_id, name });
                    ensure!(
                        column.default.is_none(),
                        InvalidDefaultSnafu {
                            region_id,
                            name,
                            reason: "the timestamp column cannot have a default",
                        }
                    );
                    time_index = Some(i);
                }
                SemanticType::Tag => primary_key.push(i),
                SemanticType::Field => {}
            }
            if let Some(default) = &column.default {
                ensure!(
                    default.fits(column.data_type),
                    InvalidDefaultSnafu {
                        region_id,
                        name,
                        reason: format!(
                            "default {default:?} does not fit type {}",
                            column.data_type
                        ),
                    }
                );
            }
        }
        let Some(time_index) = time_index else {
            return MissingTimestampSnafu { region_id }.fail();
        };
        let arrow_schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(ColumnSchema::arrow_field)
                .collect::<Vec<_>>(),
        ));
        Ok(RegionMetadata {
            region_id,
            columns,
            schema_version,
            time_index,
            primary_key,
            arrow_schema,
        })
    }
}

/// Builds a [`RegionMetadata`] column by column; [`build`](Self::build) checks every rule.
///
/// ```
/// use strata_request::{ColumnDataType, ColumnSchema, RegionId, RegionMetadataBuilder};
///
/// let metadata = RegionMetadataBuilder::new(RegionId::new(1024, 0))
///     .column(ColumnSchema::tag("hostname"))
///     .column(ColumnSchema::field("usage_user", ColumnDataType::Int64))
///     .column(ColumnSchema::timestamp("ts", ColumnDataType::TimestampMillisecond))
///     .build()
///     .unwrap();
/// assert_eq!(metadata.primary_key(), &[0]);
/// assert_eq!(metadata.time_index_column().name, "ts");
/// ```
#[derive(Debug, Clone)]
pub struct RegionMetadataBuilder {
    region_id: RegionId,
    columns: Vec<ColumnSchema>,
}

impl RegionMetadataBuilder {
    /// Starts an empty schema for `region_id`.
    pub fn new(region_id: RegionId) -> Self {
        Self {
            region_id,
            columns: Vec::new(),
        }
    }

    /// Appends a column. Column ids are assigned in declaration order.
    pub fn column(mut self, column: ColumnSchema) -> Self {
        self.columns.push(column);
        self
    }

    /// Appends several columns.
    pub fn columns(mut self, columns: impl IntoIterator<Item = ColumnSchema>) -> Self {
        self.columns.extend(columns);
        self
    }

    /// Validates the schema (version 0).
    ///
    /// Rejected: no columns; an empty or `__`-prefixed name; a duplicate name; no or two
    /// timestamp columns; a nullable timestamp; a type not allowed for the column's semantic
    /// type (non-string tags, unsupported Arrow types); a default that does not fit.
    pub fn build(self) -> Result<RegionMetadata, MetadataError> {
        let columns = self
            .columns
            .into_iter()
            .zip(0u32..)
            .map(|(mut column, id)| {
                column.column_id = id;
                column
            })
            .collect();
        RegionMetadata::validate(self.region_id, columns, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnDataType, Value};

    fn rid() -> RegionId {
        RegionId::new(1, 0)
    }

    fn ts() -> ColumnSchema {
        ColumnSchema::timestamp("ts", ColumnDataType::TimestampMillisecond)
    }

    fn cpu() -> RegionMetadata {
        RegionMetadataBuilder::new(rid())
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::field("usage", ColumnDataType::Float64))
            .column(ts())
            .column(ColumnSchema::tag("dc"))
            .build()
            .unwrap()
    }

    fn build_err(columns: Vec<ColumnSchema>) -> String {
        RegionMetadataBuilder::new(rid())
            .columns(columns)
            .build()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn derives_primary_key_time_index_and_arrow_schema() {
        let m = cpu();
        assert_eq!(m.primary_key(), &[0, 3]);
        assert_eq!(m.time_index(), 2);
        assert_eq!(m.schema_version(), 0);
        let names: Vec<_> = m.arrow_schema().fields().iter().map(|f| f.name()).collect();
        assert_eq!(names, ["host", "usage", "ts", "dc"]);
        assert!(!m.arrow_schema().field(2).is_nullable());
        let ids: Vec<_> = m.columns().iter().map(|c| c.column_id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
    }

    #[test]
    fn rejects_every_invalid_schema_with_a_message_naming_the_problem() {
        let cases: Vec<(Vec<ColumnSchema>, &str)> = vec![
            (vec![], "at least a timestamp"),
            (vec![ColumnSchema::tag("h")], "no timestamp column"),
            (
                vec![
                    ts(),
                    ColumnSchema::timestamp("t2", ColumnDataType::TimestampNanosecond),
                ],
                "two timestamp columns \"ts\" and \"t2\"",
            ),
            (
                vec![ts(), ColumnSchema::tag("ts")],
                "\"ts\" is declared twice",
            ),
            (vec![ts(), ColumnSchema::tag("")], "is invalid"),
            (
                vec![ts(), ColumnSchema::tag("__sequence")],
                "reserved prefix",
            ),
            (
                vec![
                    ts(),
                    ColumnSchema::new("h", ColumnDataType::Int64, SemanticType::Tag),
                ],
                "is a tag of type Int64",
            ),
            (
                vec![ColumnSchema::timestamp("ts", ColumnDataType::Int64)],
                "is a timestamp of type Int64",
            ),
            (
                vec![
                    ts(),
                    ColumnSchema::field("f", ColumnDataType::TimestampMillisecond),
                ],
                "is a field of type Timestamp",
            ),
            (vec![ts().with_nullable(true)], "must not be nullable"),
            (
                vec![ts().with_default(Value::Timestamp(0))],
                "cannot have a default",
            ),
            (
                vec![
                    ts(),
                    ColumnSchema::field("f", ColumnDataType::Int64)
                        .with_default(Value::Float64(1.0)),
                ],
                "does not fit type Int64",
            ),
        ];
        for (columns, expected) in cases {
            let msg = build_err(columns.clone());
            assert!(msg.contains(expected), "{columns:?}: {msg}");
            assert!(msg.contains("region 1.0"), "{msg}");
        }
    }

    #[test]
    fn add_columns_appends_fields_with_fresh_ids_and_bumps_the_version() {
        let m = cpu();
        let added = m
            .add_columns(0, &[ColumnSchema::field("load", ColumnDataType::Int64)])
            .unwrap();
        assert_eq!(added.schema_version(), 1);
        let (i, c) = added.column_by_name("load").unwrap();
        assert_eq!(i, 4);
        assert_eq!(c.column_id, 4);
        assert_eq!(added.primary_key(), m.primary_key());
    }

    #[test]
    fn add_columns_rejects_tags_required_columns_duplicates_and_stale_versions() {
        let m = cpu();
        let err = |cols: &[ColumnSchema], v| m.add_columns(v, cols).unwrap_err().to_string();
        assert!(err(&[ColumnSchema::tag("x")], 0).contains("only field columns can be added"));
        assert!(
            err(
                &[ColumnSchema::field("x", ColumnDataType::Int64).with_nullable(false)],
                0
            )
            .contains("must be nullable or have a default")
        );
        assert!(err(&[ColumnSchema::field("usage", ColumnDataType::Int64)], 0).contains("twice"));
        assert!(
            err(&[ColumnSchema::field("x", ColumnDataType::Int64)], 3)
                .contains("expects schema version 3 but the region is at 0")
        );
        let ok = m.add_columns(
            0,
            &[ColumnSchema::field("x", ColumnDataType::Int64)
                .with_nullable(false)
                .with_default(Value::Int64(0))],
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn drop_columns_removes_fields_only_and_never_reuses_ids() {
        let m = cpu();
        let dropped = m.drop_columns(0, &["usage".to_string()]).unwrap();
        assert!(dropped.column_by_name("usage").is_none());
        assert_eq!(dropped.schema_version(), 1);
        assert_eq!(dropped.primary_key(), &[0, 2]);
        assert_eq!(dropped.time_index(), 1);
        let readded = dropped
            .add_columns(1, &[ColumnSchema::field("usage", ColumnDataType::Float64)])
            .unwrap();
        assert_eq!(readded.column_by_name("usage").unwrap().1.column_id, 4);

        let err = |n: &str| m.drop_columns(0, &[n.to_string()]).unwrap_err().to_string();
        assert!(err("host").contains("only field columns can be dropped"));
        assert!(err("ts").contains("only field columns can be dropped"));
        assert!(err("nope").contains("no such column"));
    }

    #[test]
    fn serde_round_trips_and_revalidates_on_load() {
        let m = cpu();
        let json = serde_json::to_string(&m).unwrap();
        let back: RegionMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);

        let tampered = json.replace("\"timestamp\"", "\"field\"");
        let err = serde_json::from_str::<RegionMetadata>(&tampered).unwrap_err();
        assert!(
            err.to_string().contains("is a field of type Timestamp"),
            "{err}"
        );
    }
}
