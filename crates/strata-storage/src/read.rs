//! The read path: merging sorted sources, deduplicating them, and scanning snapshots.

mod count;
mod merge;
mod scan;

pub use count::{RowCount, count};
pub use merge::{BatchStream, MergeOptions, merge};
pub use scan::{RecordBatchStream, ScanRequest, flush_memtable, flush_memtable_windowed, scan};
