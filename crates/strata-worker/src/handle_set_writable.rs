//! Set a region writable or read-only.

use strata_request::SetWritableRequest;

use crate::error::WorkerError;
use crate::region::RegionState;
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// Switches between writable and read-only. Read-only regions refuse writes, flushes
    /// and flush commits (a flush running at the switch fails and keeps its memtables).
    pub(crate) async fn handle_set_writable(
        &mut self,
        request: SetWritableRequest,
        sender: ReplyTx,
    ) {
        let region_id = request.region_id;
        let Some((region, sender)) = self.region_in_state(
            region_id,
            &[RegionState::Writable, RegionState::ReadOnly],
            "change writability",
            sender,
        ) else {
            return;
        };
        let target = if request.writable {
            RegionState::Writable
        } else {
            RegionState::ReadOnly
        };
        region.set_state_locked(target).await;
        if target == RegionState::ReadOnly {
            self.stalled.fail_region(
                region_id,
                &WorkerError::RegionState {
                    region_id,
                    state: target,
                    operation: "write",
                },
            );
            self.update_gauges();
        }
        sender.send(Ok(0));
    }
}
