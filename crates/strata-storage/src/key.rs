//! [`KeyCodec`]: encodes a region's tag columns into comparable primary keys.
//!
//! Keys use Arrow's row format (`arrow-row`): byte strings whose `memcmp` order is the order
//! of the tag tuples (declared order, nulls first). The encoding is only stable within one
//! Arrow version, so keys live **in memory only**; files store the tag columns and keys are
//! re-derived when files are read.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_row::{RowConverter, RowParser, Rows, SortField};
use snafu::ResultExt;
use strata_request::RegionMetadata;

use crate::error::{ArrowSnafu, StorageError};

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
    pub fn encode(&self, tags: &[ArrayRef]) -> Result<Rows, StorageError> {
        self.converter.convert_columns(tags).context(ArrowSnafu {
            region_id: self.metadata.region_id(),
            operation: "encode primary keys",
        })
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

    #[test]
    fn keys_sort_like_tag_tuples_and_decode_back() {
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
        let codec = KeyCodec::new(metadata).unwrap();
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
}
