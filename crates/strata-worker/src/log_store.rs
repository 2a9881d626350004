//! [`DynLogStore`]: an object-safe view of any [`LogStore`], so the workers and the engine
//! are not generic over the WAL implementation.

use std::fmt;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use strata_wal::{AppendResponse, Entry, EntryStream, LogStore, WalError};

/// [`LogStore`] with boxed futures; implemented for every `LogStore`.
pub trait DynLogStore: Send + Sync + fmt::Debug + 'static {
    /// See [`LogStore::append_batch`].
    fn append_batch(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<AppendResponse, WalError>>;
    /// See [`LogStore::read`].
    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError>;
    /// See [`LogStore::obsolete`].
    fn obsolete(&self, region_id: u64, entry_id: u64) -> BoxFuture<'_, Result<(), WalError>>;
    /// See [`LogStore::drop_region`].
    fn drop_region(&self, region_id: u64) -> BoxFuture<'_, Result<(), WalError>>;
    /// See [`LogStore::last_entry_id`].
    fn last_entry_id(&self, region_id: u64) -> Option<u64>;
    /// See [`LogStore::stop`].
    fn stop(&self) -> BoxFuture<'_, Result<(), WalError>>;
}

impl<S: LogStore> DynLogStore for S {
    fn append_batch(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<AppendResponse, WalError>> {
        LogStore::append_batch(self, entries).boxed()
    }

    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        LogStore::read(self, region_id, start_entry_id)
    }

    fn obsolete(&self, region_id: u64, entry_id: u64) -> BoxFuture<'_, Result<(), WalError>> {
        LogStore::obsolete(self, region_id, entry_id).boxed()
    }

    fn drop_region(&self, region_id: u64) -> BoxFuture<'_, Result<(), WalError>> {
        LogStore::drop_region(self, region_id).boxed()
    }

    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        LogStore::last_entry_id(self, region_id)
    }

    fn stop(&self) -> BoxFuture<'_, Result<(), WalError>> {
        LogStore::stop(self).boxed()
    }
}

/// Shared handle to a log store.
pub type LogStoreRef = Arc<dyn DynLogStore>;
