//! [`KeyCodec`]: encodes a region's tag columns into comparable primary keys.
//!
//! Keys use Arrow's row format (`arrow-row`): byte strings whose `memcmp` order is the order
//! of the tag tuples (declared order, nulls first). The encoding is only stable within one
//! Arrow version, so keys live **in memory only**; files store the tag columns and keys are
//! re-derived when files are read.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_row::{RowConverter, RowParser, Rows, SortField};
use snafu::ResultExt;
use strata_request::RegionMetadata;

use crate::error::{ArrowSnafu, StorageError};

/// The ranges of consecutive rows with equal `tags` (all columns of one length). A
/// dictionary column is compared by its keys: equal keys are equal values, and a
/// dictionary holding a value twice only splits a run — an extra distinct key, never rows
/// of different keys merged.
fn key_runs(tags: &[ArrayRef]) -> Result<Vec<std::ops::Range<usize>>, arrow_schema::ArrowError> {
    let rows = tags.first().map_or(0, |c| c.len());
    let mut changed: Option<arrow_buffer::BooleanBuffer> = None;
    if rows > 1 {
        for column in tags {
            let column: ArrayRef = match column.as_any_dictionary_opt() {
                Some(dictionary) => arrow_array::make_array(dictionary.keys().to_data()),
                None => column.clone(),
            };
            let differs =
                arrow_ord::cmp::distinct(&column.slice(0, rows - 1), &column.slice(1, rows - 1))?;
            let differs = differs.values().clone();
            changed = Some(match changed {
                Some(so_far) => &so_far | &differs,
                None => differs,
            });
        }
    }
    let mut runs = Vec::new();
    let mut start = 0;
    if let Some(changed) = changed {
        for boundary in changed.set_indices() {
            runs.push(start..boundary + 1);
            start = boundary + 1;
        }
    }
    runs.push(start..rows);
    Ok(runs)
}

/// Distinct keys and, when rows share keys, each row's position among them.
pub(crate) type SortedKeys = (Rows, Option<Arc<[u32]>>);

/// Encodes and decodes the primary key of one region schema.
#[derive(Debug)]
pub struct KeyCodec {
    metadata: Arc<RegionMetadata>,
    converter: RowConverter,
    parser: RowParser,
}

impl KeyCodec {
    /// A codec for `metadata`'s tag columns.
    pub fn new(metadata: Arc<RegionMetadata>) -> Result<Self, StorageError> {
        let fields = metadata
            .tag_columns()
            .map(|c| SortField::new(c.data_type.arrow_type()))
            .collect();
        let converter = RowConverter::new(fields).context(ArrowSnafu {
            region_id: metadata.region_id(),
            operation: "build key codec",
        })?;
        let parser = converter.parser();
        Ok(Self {
            metadata,
            converter,
            parser,
        })
    }

    /// Keys of every row of `tags` (the tag columns, in primary-key order).
    /// Dictionary-encoded columns are encoded as their values.
    pub fn encode(&self, tags: &[ArrayRef]) -> Result<Rows, StorageError> {
        let context = ArrowSnafu {
            region_id: self.metadata.region_id(),
            operation: "encode primary keys",
        };
        if tags
            .iter()
            .any(|c| matches!(c.data_type(), arrow_schema::DataType::Dictionary(..)))
        {
            let plain = tags
                .iter()
                .map(crate::plain::plain)
                .collect::<Result<Vec<_>, _>>()
                .context(context)?;
            return self.converter.convert_columns(&plain).context(context);
        }
        self.converter.convert_columns(tags).context(context)
    }

    /// Keys of `tags` whose rows are sorted by key (the tag columns of an SST, in
    /// primary-key order): each run of equal tags is encoded once. Returns the distinct
    /// keys and, when rows share keys, each row's position among them (as in
    /// [`SortedBatch`](crate::SortedBatch)); rows of mostly distinct keys are encoded one
    /// by one without an index.
    pub(crate) fn encode_sorted(&self, tags: &[ArrayRef]) -> Result<SortedKeys, StorageError> {
        let rows = tags.first().map_or(0, |c| c.len());
        if rows < 2 {
            return Ok((self.encode(tags)?, None));
        }
        let context = ArrowSnafu {
            region_id: self.metadata.region_id(),
            operation: "find runs of primary keys",
        };
        let runs = key_runs(tags).context(context)?;
        if runs.len() * 2 > rows {
            return Ok((self.encode(tags)?, None));
        }
        let firsts =
            arrow_array::UInt32Array::from_iter_values(runs.iter().map(|r| r.start as u32));
        let distinct = tags
            .iter()
            .map(|column| arrow_select::take::take(column.as_ref(), &firsts, None))
            .collect::<Result<Vec<_>, _>>()
            .context(context)?;
        let index: Arc<[u32]> = runs
            .iter()
            .enumerate()
            .flat_map(|(key, run)| std::iter::repeat_n(key as u32, run.len()))
            .collect();
        Ok((self.encode(&distinct)?, Some(index)))
    }

    /// The tag columns of `keys` (each produced by this codec), one row per key.
    pub fn decode<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>, StorageError> {
        let rows = keys.into_iter().map(|k| self.parser.parse(k));
        self.converter.convert_rows(rows).context(ArrowSnafu {
            region_id: self.metadata.region_id(),
            operation: "decode primary keys",
        })
    }

    /// An empty key buffer with room for `rows` keys of about `bytes` bytes in all.
    pub fn empty_rows(&self, rows: usize, bytes: usize) -> Rows {
        self.converter.empty_rows(rows, bytes)
    }

    /// A `Row` view of key bytes this codec produced.
    pub fn parse<'a>(&'a self, key: &'a [u8]) -> arrow_row::Row<'a> {
        self.parser.parse(key)
    }

    /// The schema the codec is for.
    pub fn metadata(&self) -> &Arc<RegionMetadata> {
        &self.metadata
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, StringArray};
    use strata_request::{ColumnDataType, ColumnSchema, RegionId, RegionMetadataBuilder};

    use super::*;

    /// A codec for tags `a` and `b`.
    fn codec() -> KeyCodec {
        let metadata = Arc::new(
            RegionMetadataBuilder::new(RegionId::new(1, 1))
                .column(ColumnSchema::tag("a"))
                .column(ColumnSchema::tag("b"))
                .column(ColumnSchema::timestamp(
                    "ts",
                    ColumnDataType::TimestampMillisecond,
                ))
                .build()
                .unwrap(),
        );
        KeyCodec::new(metadata).unwrap()
    }

    #[test]
    fn keys_sort_like_tag_tuples_and_decode_back() {
        let codec = codec();
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("x"),
            Some("x"),
            None,
            Some("w"),
            Some("x\0"),
        ]));
        let b: ArrayRef = Arc::new(StringArray::from(vec![
            Some("2"),
            Some("10"),
            Some("1"),
            None,
            Some(""),
        ]));
        let keys = codec.encode(&[a.clone(), b.clone()]).unwrap();
        let mut order: Vec<usize> = (0..5).collect();
        order.sort_by(|&i, &j| keys.row(i).cmp(&keys.row(j)));
        // null < "w" < "x" < "x\0"; within "x": "10" < "2" (string order).
        assert_eq!(order, [2, 3, 1, 0, 4]);
        let decoded = codec.decode((0..5).map(|i| keys.row(i).data())).unwrap();
        assert_eq!(decoded[0].as_ref(), a.as_ref());
        assert_eq!(decoded[1].as_ref(), b.as_ref());
        assert!(decoded[0].is_null(2));
    }

    #[test]
    fn sorted_runs_and_dictionary_tags_encode_to_the_same_keys_as_plain_rows() {
        let codec = codec();
        let a = vec![None, Some("w"), Some("w"), Some("w"), Some("x"), Some("x")];
        let b = vec![Some("1"), None, None, None, Some("2"), Some("2")];
        let plain_a: ArrayRef = Arc::new(StringArray::from(a.clone()));
        let plain_b: ArrayRef = Arc::new(StringArray::from(b.clone()));
        let dict_a: ArrayRef = Arc::new(
            a.iter()
                .copied()
                .collect::<arrow_array::DictionaryArray<arrow_array::types::Int32Type>>(),
        );
        let expected = codec.encode(&[plain_a.clone(), plain_b.clone()]).unwrap();
        for tags in [[plain_a.clone(), plain_b.clone()], [dict_a, plain_b]] {
            let (keys, index) = codec.encode_sorted(&tags).unwrap();
            // Three runs in six rows: each key once, with an index.
            let index = index.expect("rows share keys");
            assert_eq!(keys.num_rows(), 3);
            assert_eq!(index.as_ref(), [0, 1, 1, 1, 2, 2]);
            for row in 0..6 {
                assert_eq!(
                    keys.row(index[row] as usize),
                    expected.row(row),
                    "row {row}"
                );
            }
        }
        // Mostly distinct keys: one per row, no index.
        let distinct_b: ArrayRef = Arc::new(StringArray::from(vec!["1", "2"]));
        let (keys, index) = codec
            .encode_sorted(&[plain_a.slice(0, 2), distinct_b])
            .unwrap();
        assert_eq!((keys.num_rows(), index), (2, None));
    }
}
