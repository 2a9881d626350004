//! The write path: reject → stall → fence → state and schema checks → one WAL append for
//! the batch → memtables → publish sequence and entry id → reply.

use std::collections::HashMap;
use std::sync::Arc;

use strata_request::{OpType, RegionId};
use strata_storage::Version;
use strata_wal::Entry;

use crate::error::WorkerError;
use crate::region::{Region, RegionState};
use crate::request::{ReplyTx, SenderWriteRequest};
use crate::wal_entry::{self, Mutation};
use crate::worker::RegionWorkerLoop;

/// One region's share of a write batch: its mutations (one WAL entry) and their callers.
struct RegionWriteCtx {
    region: Arc<Region>,
    /// The version at batch start: its mutable memtable takes the rows.
    version: Arc<Version>,
    next_sequence: u64,
    next_entry_id: u64,
    mutations: Vec<Mutation>,
    /// One per mutation: the caller and the rows it wrote (or the error it gets).
    notifiers: Vec<(ReplyTx, Result<usize, WorkerError>)>,
}

impl RegionWriteCtx {
    fn new(region: Arc<Region>) -> Self {
        let data = region.version_control.current();
        Self {
            region,
            version: data.version().clone(),
            next_sequence: data.committed_sequence() + 1,
            next_entry_id: data.last_entry_id() + 1,
            mutations: Vec::new(),
            notifiers: Vec::new(),
        }
    }

    /// Validates the request against the region schema and queues its rows.
    fn push(&mut self, write: SenderWriteRequest) {
        let SenderWriteRequest {
            request, sender, ..
        } = write;
        if request.op_type == OpType::Delete && self.version.options().append_mode {
            sender.send(Err(WorkerError::InvalidRequest {
                region_id: request.region_id,
                reason: "deletes are not allowed in an append-mode region".into(),
            }));
            return;
        }
        let batch = match request.validate(self.version.metadata()) {
            Ok(batch) => batch,
            Err(source) => {
                sender.send(Err(WorkerError::InvalidWrite { source }));
                return;
            }
        };
        let rows = batch.num_rows();
        self.mutations.push(Mutation {
            op_type: request.op_type,
            first_sequence: self.next_sequence,
            batch,
        });
        self.next_sequence += rows as u64;
        self.notifiers.push((sender, Ok(rows)));
    }

    fn fail(&mut self, error: &WorkerError) {
        for (_, result) in &mut self.notifiers {
            *result = Err(error.clone());
        }
        self.mutations.clear();
    }

    /// Inserts the rows, publishes the region's progress, answers the callers; returns the
    /// rows written by op type.
    fn apply(mut self) -> (usize, usize) {
        let (mut puts, mut deletes) = (0, 0);
        if self.mutations.is_empty() {
            self.reply();
            return (0, 0);
        }
        let memtable = &self.version.memtables().mutable();
        for (mutation, (_, result)) in self.mutations.iter().zip(&mut self.notifiers) {
            match memtable.write(&mutation.batch, mutation.op_type, mutation.first_sequence) {
                Ok(()) => match mutation.op_type {
                    OpType::Put => puts += mutation.batch.num_rows(),
                    OpType::Delete => deletes += mutation.batch.num_rows(),
                },
                // The entry is already in the WAL: a reopen replays it. This mutation's
                // caller learns it is not visible now.
                Err(source) => {
                    *result = Err(WorkerError::Storage {
                        region_id: self.region.region_id(),
                        source: Arc::new(source),
                    });
                }
            }
        }
        // Published only after every row is in the memtable, so a reader's snapshot never
        // names a sequence whose rows it cannot see.
        self.region
            .version_control
            .set_sequence_and_entry_id(self.next_sequence - 1, self.next_entry_id - 1);
        self.reply();
        (puts, deletes)
    }

    fn reply(self) {
        for (sender, result) in self.notifiers {
            sender.send(result);
        }
    }
}

/// A region against its own write-buffer limit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RegionPressure {
    /// Under the limit, or no limit.
    Fine,
    /// At or over the limit: new writes wait.
    Stall,
    /// Memtables plus stalled writes at twice the limit: writes fail.
    Reject {
        usage: usize,
        stalled: usize,
        limit: usize,
    },
}

/// Where a write comes from, which decides whether it may be paced or stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOrigin {
    /// Just taken off the channel (or released by a DDL): may be paced by the slowdown
    /// and may wait in the stalled queue.
    Incoming,
    /// Released by the slowdown when its time came: may stall, is not paced again.
    Delayed,
    /// Retried from the stalled queue or released after a flush: goes on or fails, never
    /// stalls again.
    Retried,
}

impl WriteOrigin {
    fn may_stall(self) -> bool {
        self != WriteOrigin::Retried
    }
}

impl RegionWorkerLoop {
    /// Handles a batch of writes: admit (memory budget, slowdown, region limits, gates,
    /// state and schema), log (one WAL append for the batch), apply (memtables, then the
    /// sequence is published and the callers answered). [`WriteOrigin::Incoming`] writes
    /// over the memory budget wait in the stalled queue; [`WriteOrigin::Retried`] ones are
    /// never stalled again.
    pub(crate) async fn handle_write_requests(
        &mut self,
        writes: Vec<SenderWriteRequest>,
        origin: WriteOrigin,
    ) {
        let started = self.shared.clock.now();
        let mut ctxs = self.admit(writes, origin);
        if ctxs.is_empty() {
            return;
        }
        self.shared
            .metrics
            .stage("prepare", self.shared.clock.elapsed(started));
        let started = self.shared.clock.now();
        if !self.log(&mut ctxs).await {
            return;
        }
        self.shared
            .metrics
            .stage("wal", self.shared.clock.elapsed(started));
        let started = self.shared.clock.now();
        self.apply(ctxs);
        self.shared
            .metrics
            .stage("memtable", self.shared.clock.elapsed(started));
    }

    /// The writes that go now, grouped by region: the rest are rejected (over the reject
    /// limit), stalled (over the budget), paced (the slowdown), held by their region's own
    /// limit, waiting at their region's gate, or failed (state, lease, schema).
    fn admit(
        &mut self,
        writes: Vec<SenderWriteRequest>,
        origin: WriteOrigin,
    ) -> Vec<RegionWriteCtx> {
        if writes.is_empty() {
            return Vec::new();
        }
        self.maybe_flush_worker();
        let write_buffer = self.shared.write_buffer.clone();
        let waiting = self.stalled.estimated_size() + self.delayed.estimated_size();
        if write_buffer.should_reject(waiting) {
            self.reject(writes);
            return Vec::new();
        }
        if origin.may_stall() && write_buffer.should_stall() {
            self.shared.metrics.stalled(writes.len());
            for write in writes {
                self.stalled.push(write);
            }
            self.update_gauges();
            self.shared.listener.on_write_stall();
            return Vec::new();
        }
        let writes = if origin == WriteOrigin::Incoming {
            self.pace(writes)
        } else {
            writes
        };
        if writes.is_empty() {
            return Vec::new();
        }
        let writes = self.apply_region_limits(writes, origin);
        if writes.is_empty() {
            return Vec::new();
        }
        self.prepare(writes)
    }

    /// Appends one WAL entry per region of the batch, in one append; whether anything
    /// goes on to the memtables (on a WAL failure every caller has its error).
    async fn log(&mut self, ctxs: &mut Vec<RegionWriteCtx>) -> bool {
        let mut entries = Vec::new();
        for ctx in ctxs.iter_mut().filter(|c| !c.mutations.is_empty()) {
            let region_id = ctx.region.region_id();
            match wal_entry::encode(region_id, &ctx.mutations, self.shared.config.compress_wal) {
                Ok(data) => entries.push(Entry {
                    region_id: region_id.as_u64(),
                    entry_id: ctx.next_entry_id,
                    data,
                }),
                Err(error) => ctx.fail(&error),
            }
        }
        if entries.is_empty() {
            return true;
        }
        match self.shared.log_store.append_batch(entries).await {
            Ok(response) => {
                for ctx in ctxs.iter_mut() {
                    let id = ctx.region.region_id().as_u64();
                    if let Some(&last) = response.last_entry_ids.get(&id) {
                        ctx.next_entry_id = last + 1;
                    }
                }
                true
            }
            // Too large for one record: each request on its own, so only a request too
            // large by itself fails.
            Err(strata_wal::WalError::RecordTooLarge { .. }) => {
                self.append_one_by_one(ctxs).await;
                true
            }
            Err(source) => {
                // Nothing of the batch reaches the memtables.
                let error = WorkerError::Wal {
                    source: Arc::new(source),
                };
                for mut ctx in ctxs.drain(..) {
                    ctx.fail(&error);
                    ctx.reply();
                }
                false
            }
        }
    }

    /// Inserts every logged mutation into its region's memtable, publishes the region's
    /// sequence and entry id, and answers the callers.
    fn apply(&self, ctxs: Vec<RegionWriteCtx>) {
        let (mut puts, mut deletes) = (0, 0);
        for ctx in ctxs {
            let (p, d) = ctx.apply();
            puts += p;
            deletes += d;
        }
        self.shared.metrics.add_rows("put", puts);
        self.shared.metrics.add_rows("delete", deletes);
    }

    /// The slowdown: between the slowdown threshold and the budget, each write gets a
    /// time (engine-wide pace at [`WriteDelay::rate`](crate::delay::WriteDelay::rate))
    /// and waits in the delayed queue until then, without holding up the worker. Writes
    /// arriving while others of this worker wait queue behind them, so a region's writes
    /// keep their order. Returns the writes that go now.
    fn pace(&mut self, writes: Vec<SenderWriteRequest>) -> Vec<SenderWriteRequest> {
        let budget = self.shared.config.global_write_buffer_size;
        let soft = self.shared.config.write_slowdown_threshold;
        let usage = self.shared.write_buffer.memory_usage();
        let rate = self.shared.delay.rate(usage, soft, budget);
        if rate.is_none() && self.delayed.is_empty() {
            return writes;
        }
        let now = self.shared.clock.now();
        let mut go = Vec::with_capacity(writes.len());
        for write in writes {
            let release = match rate {
                Some(rate) => self.shared.delay.release_at(write.size, rate, now),
                None => now,
            };
            if release <= now && self.delayed.is_empty() {
                go.push(write);
            } else {
                let delay = release.saturating_duration_since(now);
                self.shared.metrics.delayed(delay);
                self.shared.listener.on_write_delay(delay);
                self.delayed.push(release, write);
            }
        }
        if !self.delayed.is_empty() {
            self.update_gauges();
        }
        go
    }

    /// Appends every queued mutation as an entry of its own, one append each, after the
    /// batch's single record was too large. A mutation too large by itself fails its
    /// caller with `InvalidRequest`; after any other WAL error the mutations not yet
    /// appended fail with it. Mutations that were appended stay queued for the memtables.
    async fn append_one_by_one(&self, ctxs: &mut [RegionWriteCtx]) {
        let mut broken: Option<WorkerError> = None;
        for ctx in ctxs.iter_mut() {
            let region_id = ctx.region.region_id();
            let mutations = std::mem::take(&mut ctx.mutations);
            let notifiers = std::mem::take(&mut ctx.notifiers);
            for (mutation, (sender, result)) in mutations.into_iter().zip(notifiers) {
                if let Some(error) = &broken {
                    sender.send(Err(error.clone()));
                    continue;
                }
                let appended = match wal_entry::encode(
                    region_id,
                    std::slice::from_ref(&mutation),
                    self.shared.config.compress_wal,
                ) {
                    Ok(data) => {
                        let entry = Entry {
                            region_id: region_id.as_u64(),
                            entry_id: ctx.next_entry_id,
                            data,
                        };
                        self.shared.log_store.append_batch(vec![entry]).await
                    }
                    Err(error) => {
                        sender.send(Err(error));
                        continue;
                    }
                };
                match appended {
                    Ok(response) => {
                        if let Some(&last) = response.last_entry_ids.get(&region_id.as_u64()) {
                            ctx.next_entry_id = last + 1;
                        }
                        ctx.mutations.push(mutation);
                        ctx.notifiers.push((sender, result));
                    }
                    Err(strata_wal::WalError::RecordTooLarge { size, max }) => {
                        sender.send(Err(WorkerError::InvalidRequest {
                            region_id,
                            reason: format!(
                                "a write of {} rows takes {size} bytes in the WAL, above its \
                                 max_record_size of {max} bytes; write it in smaller batches",
                                mutation.batch.num_rows()
                            ),
                        }));
                    }
                    Err(source) => {
                        let error = WorkerError::Wal {
                            source: Arc::new(source),
                        };
                        sender.send(Err(error.clone()));
                        broken = Some(error);
                    }
                }
            }
        }
    }

    /// Per-region write buffers: a region over half its own limit (mutable) or over the
    /// limit (total) is flushed; its writes stall at the limit and are rejected (with its
    /// stalled writes) at twice the limit. Other regions are not affected. Returns the
    /// writes that go on.
    fn apply_region_limits(
        &mut self,
        writes: Vec<SenderWriteRequest>,
        origin: WriteOrigin,
    ) -> Vec<SenderWriteRequest> {
        let mut pressure: HashMap<RegionId, RegionPressure> = HashMap::new();
        let mut proceed = Vec::with_capacity(writes.len());
        let mut stalled = 0;
        let mut rejected: Vec<(SenderWriteRequest, WorkerError)> = Vec::new();
        for write in writes {
            let region_id = write.request.region_id;
            let state = match pressure.get(&region_id) {
                Some(state) => *state,
                None => {
                    self.flush_if_region_full(region_id);
                    let state = self.region_pressure(region_id);
                    if let RegionPressure::Reject {
                        usage,
                        stalled: bytes,
                        limit,
                    } = state
                    {
                        for old in self.stalled.take_region(region_id) {
                            let error = WorkerError::RejectWrite {
                                region_id,
                                usage,
                                stalled: bytes,
                                limit,
                            };
                            rejected.push((old, error));
                        }
                    }
                    pressure.insert(region_id, state);
                    state
                }
            };
            match state {
                RegionPressure::Reject {
                    usage,
                    stalled,
                    limit,
                } => {
                    let error = WorkerError::RejectWrite {
                        region_id,
                        usage,
                        stalled,
                        limit,
                    };
                    rejected.push((write, error));
                }
                RegionPressure::Stall if origin.may_stall() => {
                    self.stalled.push(write);
                    stalled += 1;
                }
                RegionPressure::Stall | RegionPressure::Fine => proceed.push(write),
            }
        }
        if stalled > 0 || !rejected.is_empty() {
            // Gauges first, so a caller that sees its reply also sees them.
            self.update_gauges();
        }
        if !rejected.is_empty() {
            self.shared.metrics.rejected(rejected.len());
        }
        for (write, error) in rejected {
            write.fail(error);
        }
        if stalled > 0 {
            self.shared.metrics.stalled(stalled);
            self.shared.listener.on_write_stall();
        }
        proceed
    }

    /// The region's own write-buffer limit (`None`: the region is gone or has no limit).
    fn region_limit(&self, region_id: RegionId) -> Option<(Arc<Region>, usize)> {
        let region = self.regions.get(&region_id)?;
        let limit = match region
            .version_control
            .current()
            .version()
            .options()
            .write_buffer_size
        {
            Some(size) => usize::try_from(size).unwrap_or(usize::MAX),
            None => self.shared.config.default_region_write_buffer_size,
        };
        (limit > 0).then(|| (region.clone(), limit))
    }

    /// Schedules a `RegionFull` flush of a writable region past half its own limit
    /// (mutable memtable) or at it (all memtables), unless one is already requested.
    fn flush_if_region_full(&mut self, region_id: RegionId) {
        let Some((region, limit)) = self.region_limit(region_id) else {
            return;
        };
        let memtables = region
            .version_control
            .current()
            .version()
            .memtables()
            .clone();
        if (memtables.mutable_usage() >= (limit / 2).max(1) || memtables.total_usage() >= limit)
            && region.state() == RegionState::Writable
            && !self.flush.scheduler.is_flush_requested(region_id)
        {
            self.schedule_flush(&region, strata_flush::FlushReason::RegionFull, None);
        }
    }

    /// Where `region_id` stands against its own write-buffer limit (a query: changes
    /// nothing).
    pub(crate) fn region_pressure(&self, region_id: RegionId) -> RegionPressure {
        let Some((region, limit)) = self.region_limit(region_id) else {
            return RegionPressure::Fine;
        };
        let usage = region
            .version_control
            .current()
            .version()
            .memtables()
            .total_usage();
        let stalled = self.stalled.region_size(region_id);
        if usage + stalled >= limit.saturating_mul(2) {
            RegionPressure::Reject {
                usage,
                stalled,
                limit: limit.saturating_mul(2),
            }
        } else if usage >= limit {
            RegionPressure::Stall
        } else {
            RegionPressure::Fine
        }
    }

    /// Memory is over the reject limit: this batch and every stalled write fail.
    fn reject(&mut self, writes: Vec<SenderWriteRequest>) {
        let usage = self.shared.write_buffer.memory_usage();
        let stalled = self.stalled.estimated_size();
        let limit = self.shared.config.global_write_buffer_reject_size;
        let mut rejected = 0;
        let stalled_writes = self.stalled.take_all();
        self.update_gauges();
        for write in writes.into_iter().chain(stalled_writes) {
            let region_id = write.request.region_id;
            write.fail(WorkerError::RejectWrite {
                region_id,
                usage,
                stalled,
                limit,
            });
            rejected += 1;
        }
        self.shared.metrics.rejected(rejected);
    }

    /// Groups the writes by region after the fence, state and schema checks.
    fn prepare(&mut self, writes: Vec<SenderWriteRequest>) -> Vec<RegionWriteCtx> {
        let mut ctxs: Vec<RegionWriteCtx> = Vec::new();
        let mut index: HashMap<RegionId, usize> = HashMap::new();
        for write in writes {
            let region_id = write.request.region_id;
            // A DDL waits for this region's flush: the write waits behind it.
            if self.gates.has_ddls_behind_flush(region_id) {
                self.gates.of(region_id).behind_flush.writes.push(write);
                continue;
            }
            // A change of the region is in flight: the write lands after it.
            if self.changing.contains(region_id) {
                self.gates.of(region_id).background.writes.push(write);
                continue;
            }
            let slot = match index.get(&region_id) {
                Some(&slot) => slot,
                None => {
                    let Some(region) = self.regions.get(&region_id) else {
                        if self.opening.contains(region_id) {
                            // Handled once the region is open (or failed with the open).
                            self.gates.of(region_id).background.writes.push(write);
                        } else {
                            write.fail(WorkerError::RegionNotFound { region_id });
                        }
                        continue;
                    };
                    match region.state() {
                        RegionState::Writable => {}
                        state @ (RegionState::ReadOnly | RegionState::Downgrading) => {
                            write.fail(WorkerError::NotLeader {
                                region_id,
                                why: format!("the region is {state} here"),
                            });
                            continue;
                        }
                        state => {
                            write.fail(WorkerError::RegionState {
                                region_id,
                                state,
                                operation: "write",
                            });
                            continue;
                        }
                    }
                    if let Some(until) = region.lease_until_millis()
                        && self.shared.clock.now_millis() >= until
                    {
                        write.fail(WorkerError::NotLeader {
                            region_id,
                            why: format!("its leader lease lapsed at {until} ms"),
                        });
                        continue;
                    }
                    ctxs.push(RegionWriteCtx::new(region.clone()));
                    index.insert(region_id, ctxs.len() - 1);
                    ctxs.len() - 1
                }
            };
            ctxs[slot].push(write);
        }
        ctxs
    }
}
