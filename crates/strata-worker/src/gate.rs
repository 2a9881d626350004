//! [`Gates`]: every request of a worker that waits on one of its regions, in one record
//! per region ([`Gate`]) that says why it waits.
//!
//! A region's requests wait
//! - for its **background work** — an open or create, or a change (alter, truncate, drop,
//!   roles, …): every write and DDL of the region, in order;
//! - behind its **flush**: DDLs that need its memtables empty or no flush beside them
//!   (a schema alter, truncate, drop, close), and the writes that arrive after the first
//!   of them;
//! - for its **compaction's end**: close, drop and truncate cancel a running compaction
//!   and wait until it reports;
//! - and callers of a flush or a compaction wait for it (or for the one follow-up queued
//!   behind it) to be applied.
//!
//! The flush and compaction schedulers only know what runs; the worker keeps everything
//! that waits here, answers it, and hands it back to the loop when its gate opens.

use std::collections::HashMap;

use strata_flush::FlushError;
use strata_request::RegionId;

use crate::error::WorkerError;
use strata_compaction::CompactionStats;

use crate::request::{ReplyTx, SenderDdlRequest, SenderWriteRequest, StatsTx};

/// Requests of one region that wait, in arrival order.
#[derive(Default)]
pub(crate) struct Waiting {
    pub(crate) writes: Vec<SenderWriteRequest>,
    pub(crate) ddls: Vec<SenderDdlRequest>,
}

impl Waiting {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.ddls.is_empty()
    }

    /// Answers every waiting request with `error`.
    pub(crate) fn fail_all(self, error: &WorkerError) {
        for write in self.writes {
            write.fail(error.clone());
        }
        for ddl in self.ddls {
            ddl.sender.send(Err(error.clone()));
        }
    }
}

/// Answers every caller with `answer`.
pub(crate) fn answer_all(callers: Vec<ReplyTx>, answer: &Result<usize, WorkerError>) {
    for caller in callers {
        caller.send(answer.clone());
    }
}

/// The caller of a compaction: its reply, and where the stats of the compaction it waited
/// for go, if it asked.
pub(crate) struct CompactCaller {
    pub(crate) reply: ReplyTx,
    pub(crate) stats: Option<StatsTx>,
}

impl CompactCaller {
    /// Answers the caller: the reply (no rows affected) and, on success, the stats.
    pub(crate) fn answer(self, result: &Result<CompactionStats, WorkerError>) {
        if let (Ok(stats), Some(tx)) = (result, self.stats) {
            let _ = tx.send(stats.clone());
        }
        self.reply
            .send(result.as_ref().map(|_| 0).map_err(Clone::clone));
    }
}

/// Answers every compaction caller with `result`.
pub(crate) fn answer_compactions(
    callers: Vec<CompactCaller>,
    result: &Result<CompactionStats, WorkerError>,
) {
    for caller in callers {
        caller.answer(result);
    }
}

/// What waits on one region, and why.
#[derive(Default)]
pub(crate) struct Gate {
    /// Requests that arrived while the region opens or changes.
    pub(crate) background: Waiting,
    /// DDLs behind the region's flush, and the writes that came after the first of them.
    pub(crate) behind_flush: Waiting,
    /// Callers of the running flush.
    pub(crate) flush_callers: Vec<ReplyTx>,
    /// Callers of the follow-up flush queued behind it.
    pub(crate) follow_up_flush_callers: Vec<ReplyTx>,
    /// Close, drop and truncate, behind the compaction they cancelled.
    pub(crate) behind_compaction: Vec<SenderDdlRequest>,
    /// Callers of the running compaction.
    pub(crate) compaction_callers: Vec<CompactCaller>,
    /// Callers of the follow-up compaction queued behind it.
    pub(crate) follow_up_compaction_callers: Vec<CompactCaller>,
}

impl Gate {
    /// Answers everything the worker leaves waiting when it stops: the work behind a flush
    /// and the follow-up's callers as when the region closes (`RegionClosed`), the rest
    /// `WorkerStopped`.
    pub(crate) fn stop(self, region_id: RegionId) {
        let closed = WorkerError::from(FlushError::RegionClosed { region_id });
        let stopped = WorkerError::WorkerStopped;
        self.behind_flush.fail_all(&closed);
        answer_all(self.follow_up_flush_callers, &Err(closed));
        self.background.fail_all(&stopped);
        for ddl in self.behind_compaction {
            ddl.sender.send(Err(stopped.clone()));
        }
        answer_all(self.flush_callers, &Err(stopped.clone()));
        let stopped = Err(stopped);
        answer_compactions(self.compaction_callers, &stopped);
        answer_compactions(self.follow_up_compaction_callers, &stopped);
    }

    fn is_empty(&self) -> bool {
        self.background.is_empty()
            && self.behind_flush.is_empty()
            && self.flush_callers.is_empty()
            && self.follow_up_flush_callers.is_empty()
            && self.behind_compaction.is_empty()
            && self.compaction_callers.is_empty()
            && self.follow_up_compaction_callers.is_empty()
    }
}

/// The gates of one worker's regions; a region without waiting requests has none.
#[derive(Default)]
pub(crate) struct Gates {
    regions: HashMap<RegionId, Gate>,
}

impl Gates {
    /// The region's gate, made if it has none.
    pub(crate) fn of(&mut self, region_id: RegionId) -> &mut Gate {
        self.regions.entry(region_id).or_default()
    }

    /// Whether DDLs wait behind the region's flush (then its new writes wait too).
    pub(crate) fn has_ddls_behind_flush(&self, region_id: RegionId) -> bool {
        self.regions
            .get(&region_id)
            .is_some_and(|gate| !gate.behind_flush.ddls.is_empty())
    }

    /// Takes something out of the region's gate (`take` on it), dropping the gate once
    /// nothing waits on it any more.
    pub(crate) fn take<T: Default>(
        &mut self,
        region_id: RegionId,
        take: impl FnOnce(&mut Gate) -> T,
    ) -> T {
        let Some(gate) = self.regions.get_mut(&region_id) else {
            return T::default();
        };
        let taken = take(gate);
        if gate.is_empty() {
            self.regions.remove(&region_id);
        }
        taken
    }

    /// Every gate, leaving none (the worker stops).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (RegionId, Gate)> + '_ {
        self.regions.drain()
    }

    /// Number of regions with something waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.regions.len()
    }
}

#[cfg(test)]
mod tests {
    use strata_request::reply_channel;

    use super::*;

    #[test]
    fn a_gate_goes_once_nothing_waits_on_it() {
        let mut gates = Gates::default();
        let region = RegionId::new(1, 1);
        assert!(!gates.has_ddls_behind_flush(region));
        let (tx, _rx) = reply_channel();
        gates.of(region).flush_callers.push(tx);
        assert_eq!(gates.len(), 1);
        let callers = gates.take(region, |gate| std::mem::take(&mut gate.flush_callers));
        assert_eq!(callers.len(), 1);
        assert_eq!(gates.len(), 0, "an empty gate is dropped");
        let none: Vec<ReplyTx> = gates.take(region, |gate| std::mem::take(&mut gate.flush_callers));
        assert!(none.is_empty());
    }
}
