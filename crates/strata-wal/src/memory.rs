//! [`MemoryLogStore`]: the protocol in a `BTreeMap`, for tests of the layers above.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::error::WalError;
use crate::store::{AppendResponse, Entry, EntryStream, LogStore, check_order, stream_of};

/// An in-memory log store. Not durable: its contents vanish with it.
#[derive(Debug, Default)]
pub struct MemoryLogStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    regions: HashMap<u64, RegionLog>,
    stopped: bool,
}

#[derive(Debug, Default)]
struct RegionLog {
    last_entry_id: Option<u64>,
    entries: BTreeMap<u64, Bytes>,
}

impl MemoryLogStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, WalError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.stopped {
            return Err(WalError::Stopped);
        }
        Ok(state)
    }
}

#[async_trait::async_trait]
impl LogStore for MemoryLogStore {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        let mut state = self.lock()?;
        let ids = entries.iter().map(|e| (e.region_id, e.entry_id));
        let last_entry_ids = check_order(ids, |region| {
            state.regions.get(&region).and_then(|r| r.last_entry_id)
        })?;
        for entry in entries {
            let log = state.regions.entry(entry.region_id).or_default();
            log.last_entry_id = Some(entry.entry_id);
            log.entries.insert(entry.entry_id, entry.data);
        }
        Ok(AppendResponse { last_entry_ids })
    }

    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        let state = self.lock()?;
        let entries: Vec<Entry> = state
            .regions
            .get(&region_id)
            .map(|log| {
                log.entries
                    .range(start_entry_id..)
                    .map(|(&entry_id, data)| Entry {
                        region_id,
                        entry_id,
                        data: data.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let chunks = if entries.is_empty() {
            vec![]
        } else {
            vec![entries]
        };
        Ok(stream_of(chunks))
    }

    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError> {
        let mut state = self.lock()?;
        if let Some(log) = state.regions.get_mut(&region_id) {
            log.entries = log.entries.split_off(&entry_id.saturating_add(1));
            if entry_id == u64::MAX {
                log.entries.clear();
            }
        }
        Ok(())
    }

    async fn drop_region(&self, region_id: u64) -> Result<(), WalError> {
        self.lock()?.regions.remove(&region_id);
        Ok(())
    }

    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .regions
            .get(&region_id)
            .and_then(|r| r.last_entry_id)
    }

    async fn stop(&self) -> Result<(), WalError> {
        self.lock()?.stopped = true;
        Ok(())
    }
}
