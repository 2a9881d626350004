//! The read path: merging sorted sources, deduplicating them, and scanning snapshots.

mod count;
mod gather;
mod merge;
mod scan;

pub use count::{RowCount, count};
pub use merge::{MergeOptions, merge};
pub use scan::{RecordBatchStream, scan};
