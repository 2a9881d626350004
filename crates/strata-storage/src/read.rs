//! The read path: merging sorted sources and deduplicating them.

mod merge;

pub use merge::{BatchStream, MergeOptions, merge};
