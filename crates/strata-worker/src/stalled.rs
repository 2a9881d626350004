//! [`StalledRequests`]: writes held back while memory is over budget.

use std::collections::HashMap;

use strata_request::RegionId;

use crate::error::WorkerError;
use crate::request::SenderWriteRequest;

/// Stalled writes by region, with their total estimated size (counted against the reject
/// limit).
#[derive(Debug, Default)]
pub(crate) struct StalledRequests {
    requests: HashMap<RegionId, Vec<SenderWriteRequest>>,
    estimated_size: usize,
    count: usize,
}

impl StalledRequests {
    pub(crate) fn push(&mut self, request: SenderWriteRequest) {
        self.estimated_size += request.size;
        self.count += 1;
        self.requests
            .entry(request.request.region_id)
            .or_default()
            .push(request);
    }

    /// Takes every stalled request, oldest first per region.
    pub(crate) fn take_all(&mut self) -> Vec<SenderWriteRequest> {
        self.estimated_size = 0;
        self.count = 0;
        self.requests.drain().flat_map(|(_, v)| v).collect()
    }

    /// Takes one region's stalled requests.
    pub(crate) fn take_region(&mut self, region_id: RegionId) -> Vec<SenderWriteRequest> {
        let taken = self.requests.remove(&region_id).unwrap_or_default();
        self.estimated_size -= taken.iter().map(|r| r.size).sum::<usize>();
        self.count -= taken.len();
        taken
    }

    /// Fails one region's stalled requests with `error`.
    pub(crate) fn fail_region(&mut self, region_id: RegionId, error: &WorkerError) {
        for request in self.take_region(region_id) {
            request.fail(error.clone());
        }
    }

    /// Estimated bytes of one region's stalled requests.
    pub(crate) fn region_size(&self, region_id: RegionId) -> usize {
        self.requests
            .get(&region_id)
            .map_or(0, |v| v.iter().map(|r| r.size).sum())
    }

    pub(crate) fn estimated_size(&self) -> usize {
        self.estimated_size
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use strata_request::{WriteRequest, reply_channel};

    use super::*;

    fn request(region: RegionId) -> SenderWriteRequest {
        let batch =
            arrow_array::RecordBatch::new_empty(std::sync::Arc::new(arrow_schema::Schema::empty()));
        let (tx, _rx) = reply_channel();
        SenderWriteRequest {
            request: WriteRequest::put(region, batch),
            sender: tx,
            size: 10,
        }
    }

    #[test]
    fn size_and_count_follow_pushes_and_takes() {
        let mut stalled = StalledRequests::default();
        let (a, b) = (RegionId::new(1, 0), RegionId::new(1, 1));
        stalled.push(request(a));
        stalled.push(request(a));
        stalled.push(request(b));
        assert_eq!((stalled.len(), stalled.estimated_size()), (3, 30));
        assert_eq!(stalled.take_region(a).len(), 2);
        assert_eq!((stalled.len(), stalled.estimated_size()), (1, 10));
        assert_eq!(stalled.take_all().len(), 1);
        assert!(stalled.is_empty());
        assert_eq!(stalled.estimated_size(), 0);
    }
}
