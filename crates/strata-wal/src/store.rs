//! The [`LogStore`] protocol and its value types.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::error::WalError;

/// One region's log record: opaque bytes under a per-region, increasing entry id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The region (a packed `RegionId`; the WAL does not interpret it).
    pub region_id: u64,
    /// Position in the region's log; strictly increasing per region.
    pub entry_id: u64,
    /// Encoded mutations; encoding is the caller's business.
    pub data: Bytes,
}

/// Result of a successful [`LogStore::append_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendResponse {
    /// For every region in the batch, the last entry id now in the log.
    pub last_entry_ids: HashMap<u64, u64>,
}

/// A region's entries in id order, one chunk at a time.
pub type EntryStream = Pin<Box<dyn Stream<Item = Result<Vec<Entry>, WalError>> + Send>>;

/// A write-ahead log shared by every region of an engine.
///
/// # Protocol
///
/// 1. **Atomic batches.** `append_batch` takes entries for any number of regions and either
///    fails as a whole (nothing of it is ever read back) or succeeds and reports the last
///    entry id of every region in the batch. Success means durable as far as the store's
///    sync policy promises.
/// 2. **Increasing ids.** Within a region, every appended id is greater than every id
///    appended before (also within one batch); gaps are allowed. A batch that breaks this
///    fails whole with [`WalError::OutOfOrder`].
/// 3. **Reads.** `read(region, start)` streams the region's entries with id ≥ `start` in id
///    order, up to what had been acknowledged when the read began; later appends are not
///    included.
/// 4. **Obsolete.** After `obsolete(region, id)`, reads never return that region's entries
///    with ids ≤ `id`; their space may be reclaimed later. Obsoleting is monotonic: a lower
///    id than before changes nothing.
/// 5. **Drop.** `drop_region(region)` removes the region's namespace: its entries are gone
///    (also after a restart), and the region starts afresh with any id.
/// 6. **Last id.** `last_entry_id(region)` is the highest id appended and not dropped,
///    or `None`; after a restart a durable store knows at least every retained id and every
///    obsolete mark.
/// 7. **Stop.** After `stop`, every call fails with [`WalError::Stopped`]; appends that were
///    acknowledged before stay durable.
#[async_trait]
pub trait LogStore: Send + Sync + fmt::Debug + 'static {
    /// Appends `entries` atomically (protocol 1 and 2).
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError>;

    /// Streams `region_id`'s entries with id ≥ `start_entry_id` (protocol 3).
    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError>;

    /// Marks `region_id`'s entries ≤ `entry_id` obsolete (protocol 4).
    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError>;

    /// Removes `region_id`'s namespace (protocol 5).
    async fn drop_region(&self, region_id: u64) -> Result<(), WalError>;

    /// The region's last entry id (protocol 6).
    fn last_entry_id(&self, region_id: u64) -> Option<u64>;

    /// Stops the store (protocol 7).
    async fn stop(&self) -> Result<(), WalError>;
}

/// Shared handle to any log store (the trait is object-safe: `async-trait` boxes its
/// futures).
pub type LogStoreRef = std::sync::Arc<dyn LogStore>;

/// Checks protocol 2 for `(region, entry id)` pairs against `last_id` and returns each
/// region's new last id.
pub(crate) fn check_order(
    ids: impl IntoIterator<Item = (u64, u64)>,
    last_id: impl Fn(u64) -> Option<u64>,
) -> Result<HashMap<u64, u64>, WalError> {
    let mut last: HashMap<u64, u64> = HashMap::new();
    for (region_id, entry_id) in ids {
        let previous = last.get(&region_id).copied().or_else(|| last_id(region_id));
        if let Some(last_entry_id) = previous.filter(|&p| entry_id <= p) {
            return Err(WalError::OutOfOrder {
                region_id,
                last_entry_id,
                entry_id,
            });
        }
        last.insert(region_id, entry_id);
    }
    Ok(last)
}

/// A stream over already materialised chunks.
pub(crate) fn stream_of(chunks: Vec<Vec<Entry>>) -> EntryStream {
    Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))
}
