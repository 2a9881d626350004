//! Set a region writable or read-only.

use strata_request::SetWritableRequest;

use crate::changes::Change;
use crate::region::RegionState;
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// Switches between writable and read-only. Read-only regions refuse writes, flushes
    /// and flush commits (a flush running at the switch fails and keeps its memtables).
    /// Only a region made read-only this way becomes writable this way; a follower (by
    /// open, by `set_role` or fenced out by another engine) is refused and must `upgrade`.
    pub(crate) fn handle_set_writable(&mut self, request: SetWritableRequest, sender: ReplyTx) {
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
        // Under the manifest lock, which a running flush commit may hold for a while. Only
        // a region made read-only here comes back here: a follower leads by `upgrade`.
        self.start_change(region_id, "set writable", sender, async move {
            if request.writable {
                region.committer.resume().await?;
            } else {
                region.committer.pause().await?;
            }
            Ok(Change::StateSet {
                target,
                not_leader: false,
            })
        });
    }
}
