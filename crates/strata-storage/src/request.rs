//! [`ScanRequest`]: what to read of a region — projection, time range, sequence bound,
//! batch size, order — and [`ScanOrder`]. Ground floor: scans, counts and memtable
//! iterators all take it.

use strata_request::RegionMetadata;

use crate::error::StorageError;
use crate::time_range::TimeRange;

/// What to scan.
///
/// Built with the builder methods:
/// `ScanRequest::new().columns(["host", "usage"]).between(t0, t1)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanRequest {
    /// Region column indices to return, ascending; `None` returns every column.
    pub projection: Option<Vec<usize>>,
    /// Region columns to return by name, instead of [`projection`](Self::projection)'s
    /// indices (setting both is an error): resolved against the region's schema when the
    /// scan starts — an unknown name is an error naming it — and returned in the region's
    /// column order, whatever the order given here.
    pub columns: Option<Vec<String>>,
    /// Only rows whose timestamp lies in this range.
    pub time_range: Option<TimeRange>,
    /// Only rows with a sequence at or below this; `None` = the snapshot's committed
    /// sequence, so rows written after the snapshot are never seen.
    pub max_sequence: Option<u64>,
    /// Most rows per batch.
    pub batch_rows: usize,
    /// Read each SST whole and check its size and crc32c against the manifest before
    /// scanning it ([`verify_sst`](crate::verify_sst)): a damaged file that still decodes
    /// is then an error naming it instead of possibly wrong rows. Costs a second read of
    /// every file; off by default.
    pub verify_checksums: bool,
    /// Decode each SST on its own task, this many batches ahead of the merge (0: decode
    /// on the scanning task). Parquet decoding of the files then runs on the runtime's
    /// other threads while the merge consumes; [`count`](crate::count) also counts
    /// independent groups of sources in parallel when this is above 0. Needs a
    /// multi-thread tokio runtime (on a current-thread runtime or none, files are decoded
    /// on the scanning task).
    pub prefetch_batches: usize,
    /// The order rows come out in; [`ScanOrder::Key`] by default.
    pub order: ScanOrder,
}

/// The order of a scan's rows.
///
/// Every order returns the same rows (each key and timestamp once, newest row, deletes
/// dropped); only their order differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScanOrder {
    /// The whole region in (primary key, timestamp) order: every memtable and file is
    /// merged with every other.
    #[default]
    Key,
    /// Time group by time group, oldest first, and (primary key, timestamp) order within
    /// each group. A group is a set of memtables and files whose time ranges overlap
    /// (directly or through other members); groups never share a (key, timestamp), so
    /// each is merged on its own, a group of one file passes through without any merge,
    /// and a group's files are opened only when the scan reaches it (or a few groups
    /// ahead, with `prefetch_batches` > 0). This is mito2's `SeqScan` order (partition
    /// ranges); it is much faster than [`ScanOrder::Key`] over many files that do not
    /// overlap in time (hundreds of small flushes before compaction, say). A region whose
    /// memtables and files all overlap is one group, in key order. The time slices of a
    /// file alone are groups of their own, and a group of several files all in time slices
    /// is merged one range of its widest slices at a time (see
    /// [`slice_width`](crate::slice_width)).
    TimeGroups,
}

impl ScanRequest {
    /// Every column of every row, in key order ([`ScanRequest::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these columns, by name (see [`columns`](Self::columns)).
    pub fn columns<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.columns = Some(names.into_iter().map(Into::into).collect());
        self.projection = None;
        self
    }

    /// Only these columns, by index in the region's schema (see
    /// [`projection`](Self::projection)).
    pub fn column_indices(mut self, indices: impl IntoIterator<Item = usize>) -> Self {
        self.projection = Some(indices.into_iter().collect());
        self.columns = None;
        self
    }

    /// Only rows with a timestamp from `start` to `end`, both inclusive (in the region's
    /// timestamp unit).
    pub fn between(mut self, start: i64, end: i64) -> Self {
        self.time_range = Some(TimeRange { start, end });
        self
    }

    /// Only rows whose timestamp lies in `range` (see [`between`](Self::between)).
    pub fn time_range(mut self, range: TimeRange) -> Self {
        self.time_range = Some(range);
        self
    }

    /// Only rows with a sequence at or below `sequence` (see
    /// [`max_sequence`](Self::max_sequence)).
    pub fn max_sequence(mut self, sequence: u64) -> Self {
        self.max_sequence = Some(sequence);
        self
    }

    /// At most `rows` rows per batch.
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows;
        self
    }

    /// Whether to check each SST's checksum first (see
    /// [`verify_checksums`](Self::verify_checksums)).
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }

    /// Decode files this many batches ahead (see
    /// [`prefetch_batches`](Self::prefetch_batches)).
    pub fn prefetch_batches(mut self, batches: usize) -> Self {
        self.prefetch_batches = batches;
        self
    }

    /// Rows in `order` ([`ScanOrder::Key`] by default).
    pub fn order(mut self, order: ScanOrder) -> Self {
        self.order = order;
        self
    }

    /// This request with [`columns`](Self::columns) turned into
    /// [`projection`](Self::projection) for `metadata`'s schema.
    pub(crate) fn resolve_columns(
        mut self,
        metadata: &RegionMetadata,
    ) -> Result<Self, StorageError> {
        let Some(names) = self.columns.take() else {
            return Ok(self);
        };
        let region_id = metadata.region_id();
        if self.projection.is_some() {
            return Err(StorageError::BadColumns {
                region_id,
                reason: "set either projection (indices) or columns (names), not both".into(),
            });
        }
        let mut indices = names
            .iter()
            .map(|name| {
                metadata
                    .column_by_name(name)
                    .map(|(index, _)| index)
                    .ok_or_else(|| {
                        let known: Vec<&str> =
                            metadata.columns().iter().map(|c| c.name.as_str()).collect();
                        StorageError::BadColumns {
                            region_id,
                            reason: format!(
                                "no column named {name:?} (columns: {})",
                                known.join(", ")
                            ),
                        }
                    })
            })
            .collect::<Result<Vec<usize>, StorageError>>()?;
        indices.sort_unstable();
        indices.dedup();
        self.projection = Some(indices);
        Ok(self)
    }

    /// This request, narrowed to rows at or after `first_alive` (a TTL cutoff from
    /// [`Version::ttl_cutoff`](crate::Version::ttl_cutoff)); unchanged for `None`.
    pub fn alive_from(mut self, first_alive: Option<i64>) -> Self {
        if let Some(cutoff) = first_alive {
            let wanted = self.time_range.unwrap_or(TimeRange {
                start: i64::MIN,
                end: i64::MAX,
            });
            // An empty range (start > end) overlaps nothing: every row has expired.
            self.time_range = Some(TimeRange {
                start: wanted.start.max(cutoff),
                end: wanted.end,
            });
        }
        self
    }
}

impl Default for ScanRequest {
    fn default() -> Self {
        Self {
            projection: None,
            columns: None,
            time_range: None,
            max_sequence: None,
            batch_rows: 4096,
            verify_checksums: false,
            prefetch_batches: 2,
            order: ScanOrder::Key,
        }
    }
}
