//! Background work the worker runs for one region at a time — an open, a change (the
//! requests that wait for it are in the region's [`Gate`](crate::gate::Gate)).

use std::collections::HashMap;

use strata_request::RegionId;
use tokio::sync::mpsc;

/// The regions with background work of one kind in flight (entries `E`, one per region),
/// and the channel their tasks report `R` on.
pub(crate) struct InFlight<E, R> {
    map: HashMap<RegionId, E>,
    pub(crate) tx: mpsc::UnboundedSender<R>,
    pub(crate) results: mpsc::UnboundedReceiver<R>,
}

impl<E, R> Default for InFlight<E, R> {
    fn default() -> Self {
        let (tx, results) = mpsc::unbounded_channel();
        Self {
            map: HashMap::new(),
            tx,
            results,
        }
    }
}

impl<E, R> InFlight<E, R> {
    /// Whether the region has work in flight.
    pub(crate) fn contains(&self, region_id: RegionId) -> bool {
        self.map.contains_key(&region_id)
    }

    /// The region's entry, if its work is in flight.
    pub(crate) fn get_mut(&mut self, region_id: RegionId) -> Option<&mut E> {
        self.map.get_mut(&region_id)
    }

    pub(crate) fn insert(&mut self, region_id: RegionId, entry: E) {
        self.map.insert(region_id, entry);
    }

    pub(crate) fn remove(&mut self, region_id: RegionId) -> Option<E> {
        self.map.remove(&region_id)
    }

    /// Every entry, leaving none.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = E> + '_ {
        self.map.drain().map(|(_, entry)| entry)
    }
}
