//! [`NoopLogStore`]: the WAL turned off.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::WalError;
use crate::store::{AppendResponse, Entry, EntryStream, LogStore, stream_of};

/// A log store that keeps nothing: appends succeed (reporting the ids they were given) and
/// reads are empty. Regions on it lose unflushed rows on a crash; the engine flushes them
/// on close instead.
#[derive(Debug, Default)]
pub struct NoopLogStore {
    stopped: AtomicBool,
}

impl NoopLogStore {
    /// A new no-op store.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_running(&self) -> Result<(), WalError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(WalError::Stopped);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl LogStore for NoopLogStore {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        self.check_running()?;
        let mut response = AppendResponse::default();
        for entry in entries {
            let last = response.last_entry_ids.entry(entry.region_id).or_insert(0);
            *last = (*last).max(entry.entry_id);
        }
        Ok(response)
    }

    fn read(&self, _region_id: u64, _start_entry_id: u64) -> Result<EntryStream, WalError> {
        self.check_running()?;
        Ok(stream_of(Vec::new()))
    }

    async fn obsolete(&self, _region_id: u64, _entry_id: u64) -> Result<(), WalError> {
        self.check_running()
    }

    async fn drop_region(&self, _region_id: u64) -> Result<(), WalError> {
        self.check_running()
    }

    fn last_entry_id(&self, _region_id: u64) -> Option<u64> {
        None
    }

    async fn stop(&self) -> Result<(), WalError> {
        self.check_running()?;
        self.stopped.store(true, Ordering::Release);
        Ok(())
    }
}
