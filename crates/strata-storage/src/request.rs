//! [`ScanRequest`]: what to read of a region — projection, time range, sequence bound,
//! batch size, order — and [`ScanOrder`]. Ground floor: scans, counts and memtable
//! iterators all take it.

use crate::time_range::TimeRange;

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// Region column indices to return, ascending; `None` returns every column.
    pub projection: Option<Vec<usize>>,
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
            time_range: None,
            max_sequence: None,
            batch_rows: 4096,
            verify_checksums: false,
            prefetch_batches: 2,
            order: ScanOrder::Key,
        }
    }
}
