//! The single writer thread: group commit, sync policy, rotation and reclamation.
//!
//! Every append, obsolete and drop goes through one channel to one OS thread. The thread
//! takes the first waiting command and then every other one already queued (up to
//! `max_group_bytes`), writes their records as it frames them (small records staged and
//! written together, large ones straight from their payload with a vectored write), issues
//! **at most one sync** for the whole group, updates the index, and only then answers each
//! command. Throughput under `sync = always` therefore grows with the number of concurrent
//! appenders instead of being capped at one fdatasync per append; and because records are
//! written while the group still waits for late appenders, the write overlaps that wait.
//!
//! Each group ends with a commit record, written with its last bytes and before its sync:
//! recovery keeps a group only whole. Segments rotate into kept reclaimed files when there
//! are some (`segments.rs`); reclaimed segments are kept for that or deleted.
//!
//! Failure rules: a failed write cuts the whole group back off the file and fails it; a
//! failed sync poisons the log (every later write fails with `Poisoned`), because after a
//! failed fdatasync nobody can say which bytes are durable and retrying it could
//! acknowledge lost data.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, IoSlice, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Instant;

use snafu::ResultExt;
use strata_base::ClockRef;
use tokio::sync::oneshot;

use crate::config::{FileLogStoreConfig, SyncPolicy};
use crate::error::{IoSnafu, WalError};
use crate::file::Shared;
use crate::file::format::{self, COMMIT_RECORD_LEN};
use crate::file::index::Index;
use crate::file::segments::{ActiveSegment, FreeSegments};
use crate::store::{AppendResponse, check_order};

/// A reply channel to the submitting task.
pub(crate) type ReplyTx<T> = oneshot::Sender<Result<T, WalError>>;

/// Work for the writer thread.
pub(crate) enum Command {
    Append {
        ids: Vec<(u64, u64)>,
        payload: Vec<u8>,
        submitted: Instant,
        reply: ReplyTx<AppendResponse>,
    },
    Obsolete {
        region_id: u64,
        entry_id: u64,
        reply: ReplyTx<()>,
    },
    Drop {
        region_id: u64,
        reply: ReplyTx<()>,
    },
    Stop {
        reply: ReplyTx<()>,
    },
}

/// How often a waiting group re-reads the in-flight count.
const GATHER_SLICE: std::time::Duration = std::time::Duration::from_micros(50);

/// Records with a payload at least this large are written straight from the payload (one
/// vectored write with whatever is staged before it) instead of being copied first.
const DIRECT_WRITE_MIN: usize = 16 << 10;

/// Staged bytes are written out once they reach this size.
const STAGED_MAX: usize = 1 << 20;

impl Command {
    fn is_append(&self) -> bool {
        matches!(self, Command::Append { .. })
    }

    fn payload_len(&self) -> usize {
        match self {
            Command::Append { payload, .. } => payload.len(),
            _ => 32,
        }
    }
}

/// A framed command waiting for its group's sync.
enum Framed {
    Append {
        ids: Vec<(u64, u64)>,
        offset: u64,
        len: u32,
        response: AppendResponse,
        submitted: Instant,
        reply: ReplyTx<AppendResponse>,
    },
    Obsolete {
        region_id: u64,
        entry_id: u64,
        reply: ReplyTx<()>,
    },
    Drop {
        region_id: u64,
        reply: ReplyTx<()>,
    },
}

impl Framed {
    fn fail(self, error: WalError) {
        match self {
            Framed::Append { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Framed::Obsolete { reply, .. } | Framed::Drop { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// The group being committed. Its records are written to the file as they are framed (small
/// ones staged and written together), so the write of early arrivals overlaps the wait for
/// later ones; the group ends with one sync and then every answer.
struct Group {
    /// Where the group starts in the active segment; a failed write cuts the file back here.
    start: u64,
    framed: Vec<Framed>,
    /// Framed bytes not yet written.
    staged: Vec<u8>,
    /// Last ids as changed by earlier commands of this group; `None` = dropped.
    pending_last: HashMap<u64, Option<u64>>,
    /// Payload bytes gathered (bounded by `max_group_bytes`).
    bytes: usize,
    /// Framed bytes (for the metric).
    framed_bytes: usize,
    appends: usize,
    commands: usize,
    must_sync: bool,
    stop: Option<ReplyTx<()>>,
    /// The first failed write: the whole group fails with it.
    failed: Option<WalError>,
}

impl Group {
    fn new(start: u64, staged: Vec<u8>) -> Self {
        Self {
            start,
            framed: Vec::new(),
            staged,
            pending_last: HashMap::new(),
            bytes: 0,
            framed_bytes: 0,
            appends: 0,
            commands: 0,
            must_sync: false,
            stop: None,
            failed: None,
        }
    }
}

pub(crate) struct Writer {
    pub(crate) config: FileLogStoreConfig,
    /// Where the writer reads time (group-commit waits, sync intervals, latencies).
    pub(crate) clock: ClockRef,
    pub(crate) shared: Arc<Shared>,
    pub(crate) active: ActiveSegment,
    pub(crate) unsynced_since: Option<Instant>,
    pub(crate) poisoned: Option<String>,
    /// The staging buffer, kept between groups.
    pub(crate) buf: Vec<u8>,
    /// Reclaimed segment files kept for reuse.
    pub(crate) free: FreeSegments,
}

impl Writer {
    /// Serves commands until `Stop` or until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        loop {
            let first = match self.sync_deadline() {
                Some(deadline) => {
                    match rx.recv_timeout(deadline.saturating_duration_since(self.clock.now())) {
                        Ok(command) => command,
                        Err(RecvTimeoutError::Timeout) => {
                            self.sync_if_dirty();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match rx.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            if !self.commit_group(first, &rx) {
                return;
            }
        }
        self.close();
    }

    /// Syncs what is unsynced and cuts a reused segment's older bytes off, so a cleanly
    /// closed log reopens without a tail.
    fn close(&mut self) {
        self.sync_if_dirty();
        if self.poisoned.is_none()
            && let Err(error) = self.active.trim()
        {
            tracing::warn!(%error, "cannot cut the WAL segment at its end on close");
        }
    }

    /// Commits one group, starting with `first`; returns false once stopped.
    fn commit_group(&mut self, first: Command, rx: &Receiver<Command>) -> bool {
        // Reuse one staging buffer for every group: a fresh buffer per group would be
        // page-faulted in (and unmapped) every time.
        let mut staged = std::mem::take(&mut self.buf);
        staged.clear();
        let mut group = Group::new(self.active.len, staged);
        self.add(&mut group, first);
        self.gather(&mut group, rx);
        if !group.framed.is_empty() && group.failed.is_none() {
            self.put_commit(&mut group);
        }
        self.flush_staged(&mut group);
        self.finish(group)
    }

    /// Adds to `group` every command already queued (up to `max_group_bytes`). Under
    /// `sync = always`, while fewer appends are in the group than are in flight
    /// (submitted and not yet answered), waits up to `group_commit_wait` for the rest:
    /// answered appenders come back a few microseconds later, and waiting for them lets
    /// them share the next sync instead of alternating small and large groups. What is
    /// framed is written before each wait, so writing and waiting overlap. A lone
    /// appender never waits.
    fn gather(&mut self, group: &mut Group, rx: &Receiver<Command>) {
        let max_bytes = self.config.max_group_bytes as usize;
        let drain = |this: &mut Self, group: &mut Group| {
            while group.bytes < max_bytes && group.stop.is_none() {
                match rx.try_recv() {
                    Ok(command) => this.add(group, command),
                    Err(_) => break,
                }
            }
        };
        drain(self, group);
        let wait = self.config.group_commit_wait;
        if self.config.sync != SyncPolicy::Always || wait.is_zero() {
            return;
        }
        let deadline = self.clock.now() + wait;
        // Re-read the in-flight count in short slices: an appender that gives up (its
        // future dropped) lowers it, and the wait must end then.
        while group.bytes < max_bytes
            && group.stop.is_none()
            && group.appends < self.shared.in_flight.load(Ordering::Acquire)
        {
            let left = deadline.saturating_duration_since(self.clock.now());
            if left.is_zero() {
                break;
            }
            self.flush_staged(group);
            match rx.recv_timeout(left.min(GATHER_SLICE)) {
                Ok(command) => {
                    self.add(group, command);
                    drain(self, group);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// When the interval policy next requires a sync, if anything is unsynced.
    fn sync_deadline(&self) -> Option<Instant> {
        match self.config.sync {
            SyncPolicy::Interval(interval) => self.unsynced_since.map(|t| t + interval),
            SyncPolicy::Always | SyncPolicy::Never => None,
        }
    }

    fn lock_index(&self) -> MutexGuard<'_, Index> {
        self.shared
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Frames `command` into `group` and writes (or stages) its record. Commands after a
    /// `Stop`, on a poisoned log or in a group whose write failed are answered at once.
    fn add(&mut self, group: &mut Group, command: Command) {
        group.bytes += command.payload_len();
        group.appends += usize::from(command.is_append());
        group.commands += 1;
        if group.stop.is_some() {
            reply_stopped(command);
            return;
        }
        if let Command::Stop { reply } = command {
            group.stop = Some(reply);
            return;
        }
        if let Some(reason) = &self.poisoned {
            let error = WalError::Poisoned {
                reason: reason.clone(),
            };
            fail_command(command, error);
            return;
        }
        if let Some(error) = &group.failed {
            fail_command(command, error.clone());
            return;
        }
        let offset = self.active.len + group.staged.len() as u64;
        match command {
            Command::Append {
                ids,
                payload,
                submitted,
                reply,
            } => {
                let checked = {
                    let index = self.lock_index();
                    check_order(ids.iter().copied(), |region| {
                        group
                            .pending_last
                            .get(&region)
                            .copied()
                            .unwrap_or_else(|| index.last_id(region))
                    })
                };
                let last_entry_ids = match checked {
                    Ok(last) => last,
                    Err(error) => {
                        let _ = reply.send(Err(error));
                        return;
                    }
                };
                for (&region, &last) in &last_entry_ids {
                    group.pending_last.insert(region, Some(last));
                }
                group.must_sync |= self.config.sync == SyncPolicy::Always;
                group.framed.push(Framed::Append {
                    ids,
                    offset,
                    len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                    response: AppendResponse { last_entry_ids },
                    submitted,
                    reply,
                });
                self.put(group, &payload);
            }
            Command::Obsolete {
                region_id,
                entry_id,
                reply,
            } => {
                group.framed.push(Framed::Obsolete {
                    region_id,
                    entry_id,
                    reply,
                });
                self.put(group, &format::encode_obsolete(region_id, entry_id));
            }
            Command::Drop { region_id, reply } => {
                // A forgotten drop would resurrect the old entries under a new region
                // with the same id: always make it durable.
                group.must_sync = true;
                group.pending_last.insert(region_id, None);
                group.framed.push(Framed::Drop { region_id, reply });
                self.put(group, &format::encode_drop(region_id));
            }
            Command::Stop { .. } => {}
        }
    }

    /// Stages the record of `payload` or, for a large one, writes it (after whatever is
    /// staged) straight from the payload.
    fn put(&mut self, group: &mut Group, payload: &[u8]) {
        let header = format::frame_header(self.active.segment.seq, payload);
        group.framed_bytes += header.len() + payload.len();
        if payload.len() < DIRECT_WRITE_MIN {
            group.staged.extend_from_slice(&header);
            group.staged.extend_from_slice(payload);
            if group.staged.len() >= STAGED_MAX {
                self.flush_staged(group);
            }
            return;
        }
        let mut parts = [
            IoSlice::new(&group.staged),
            IoSlice::new(&header),
            IoSlice::new(payload),
        ];
        let result = self.write(group.start, &mut parts);
        group.staged.clear();
        if let Err(error) = result {
            group.failed = Some(error);
        }
    }

    /// Stages the commit record that ends `group`: recovery keeps a group only if its
    /// commit record is intact.
    fn put_commit(&mut self, group: &mut Group) {
        let offset = self.active.len + group.staged.len() as u64;
        let payload = format::encode_commit(offset);
        let header = format::frame_header(self.active.segment.seq, &payload);
        group.staged.extend_from_slice(&header);
        group.staged.extend_from_slice(&payload);
        group.framed_bytes += COMMIT_RECORD_LEN;
    }

    /// Writes what `group` has staged.
    fn flush_staged(&mut self, group: &mut Group) {
        if group.staged.is_empty() || group.failed.is_some() {
            group.staged.clear();
            return;
        }
        let result = self.write(group.start, &mut [IoSlice::new(&group.staged)]);
        group.staged.clear();
        if let Err(error) = result {
            group.failed = Some(error);
        }
    }

    /// Syncs as required, applies the group to the index and answers it; returns false
    /// once stopped.
    fn finish(&mut self, group: Group) -> bool {
        let Group {
            framed,
            staged,
            framed_bytes,
            commands,
            must_sync,
            stop,
            failed,
            ..
        } = group;
        self.buf = staged;
        if !framed.is_empty() {
            match failed {
                Some(error) => framed.into_iter().for_each(|f| f.fail(error.clone())),
                None => self.complete(framed, must_sync, commands, framed_bytes),
            }
        }
        if let Some(reply) = stop {
            self.close();
            let _ = reply.send(match &self.poisoned {
                None => Ok(()),
                Some(reason) => Err(WalError::Poisoned {
                    reason: reason.clone(),
                }),
            });
            return false;
        }
        true
    }

    /// Syncs a written group as required, applies `framed` to the index and answers it.
    fn complete(&mut self, framed: Vec<Framed>, must_sync: bool, group_size: usize, bytes: usize) {
        if self.unsynced_since.is_none() {
            self.unsynced_since = Some(self.clock.now());
        }
        let interval_due = self
            .sync_deadline()
            .is_some_and(|deadline| self.clock.now() >= deadline);
        if (must_sync || interval_due)
            && let Err(error) = self.sync()
        {
            framed.into_iter().for_each(|f| f.fail(error.clone()));
            return;
        }
        let mut reclaim = false;
        let mut answers = Vec::with_capacity(framed.len());
        {
            let segment = self.active.segment.clone();
            let mut index = self.lock_index();
            for f in framed {
                match f {
                    Framed::Append {
                        ids,
                        offset,
                        len,
                        response,
                        submitted,
                        reply,
                    } => {
                        index.apply_entries(&segment, offset, len, &ids);
                        if let Some(m) = &self.shared.metrics {
                            m.entries.inc_by(ids.len() as u64);
                        }
                        answers.push(Answer::Append(reply, response, submitted));
                    }
                    Framed::Obsolete {
                        region_id,
                        entry_id,
                        reply,
                    } => {
                        index.apply_obsolete(region_id, entry_id);
                        reclaim = true;
                        answers.push(Answer::Unit(reply));
                    }
                    Framed::Drop { region_id, reply } => {
                        index.apply_drop(region_id);
                        reclaim = true;
                        answers.push(Answer::Unit(reply));
                    }
                }
            }
        }
        if let Some(m) = &self.shared.metrics {
            m.bytes.inc_by(bytes as u64);
            m.group_size.observe(group_size as f64);
        }
        // Reclaim before answering, so a caller that saw its obsolete succeed also sees
        // the space released.
        if reclaim {
            self.reclaim();
        }
        for answer in answers {
            match answer {
                Answer::Append(reply, response, submitted) => {
                    if let Some(m) = &self.shared.metrics {
                        m.append_seconds
                            .observe(self.clock.elapsed(submitted).as_secs_f64());
                    }
                    let _ = reply.send(Ok(response));
                }
                Answer::Unit(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        if self.active.len >= self.config.segment_size {
            self.rotate();
        }
    }

    /// Writes `parts` at the end of the active segment. On failure the file is cut back to
    /// `group_start` (and the write position moved there), so the group's partial bytes
    /// are gone before anything else is written; if even that fails, the log is poisoned.
    fn write(&mut self, group_start: u64, parts: &mut [IoSlice<'_>]) -> Result<(), WalError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        match write_all_vectored(&mut self.active.file, parts) {
            Ok(()) => {
                self.active.len += total as u64;
                self.active.file_len = self.active.file_len.max(self.active.len);
                Ok(())
            }
            Err(error) => {
                let path = &self.active.segment.path;
                let cut = self.active.file.set_len(group_start).and_then(|()| {
                    self.active
                        .file
                        .seek(SeekFrom::Start(group_start))
                        .map(drop)
                });
                self.active.file_len = self.active.file_len.min(group_start);
                if let Err(cut) = cut {
                    self.poisoned = Some(format!(
                        "cannot cut a failed write off {}: {cut}",
                        path.display()
                    ));
                }
                self.active.len = group_start;
                Err(error).context(IoSnafu {
                    operation: "write segment",
                    path: path.clone(),
                })
            }
        }
    }

    fn sync(&mut self) -> Result<(), WalError> {
        let path = self.active.segment.path.clone();
        if let Some(m) = &self.shared.metrics {
            m.syncs.inc();
        }
        match self.active.file.sync_data() {
            Ok(()) => {
                self.unsynced_since = None;
                Ok(())
            }
            Err(error) => {
                self.poisoned = Some(format!("fdatasync of {} failed: {error}", path.display()));
                Err(error).context(IoSnafu {
                    operation: "sync segment",
                    path,
                })
            }
        }
    }

    fn sync_if_dirty(&mut self) {
        if self.unsynced_since.is_some()
            && self.poisoned.is_none()
            && let Err(error) = self.sync()
        {
            tracing::error!(%error, "WAL background sync failed; the log is now read-only");
        }
    }

    /// Starts the next segment, in a kept reclaimed file when there is one. The finished
    /// segment is first cut at its end (a reused file may hold older bytes past it) and
    /// synced. On failure the current segment simply keeps growing.
    fn rotate(&mut self) {
        if self.unsynced_since.is_some() && self.sync().is_err() {
            return;
        }
        if let Err(error) = self.active.trim() {
            tracing::warn!(%error, "WAL segment rotation failed; will retry after the next write");
            return;
        }
        let seq = self.active.segment.seq + 1;
        match self.free.next_segment(seq) {
            Ok(active) => {
                self.lock_index().add_segment(active.segment.clone());
                self.active = active;
            }
            Err(error) => {
                tracing::warn!(%error, "WAL segment rotation failed; will retry after the next write");
            }
        }
    }

    /// Keeps (for reuse) or deletes segments whose every entry is obsolete.
    fn reclaim(&mut self) {
        let active_seq = self.active.segment.seq;
        let reclaimed = self.lock_index().take_reclaimable(active_seq);
        for segment in reclaimed {
            if let Err(error) = self.free.reclaim(segment) {
                tracing::warn!(%error, "cannot reclaim a WAL segment");
            }
        }
    }
}

enum Answer {
    Append(ReplyTx<AppendResponse>, AppendResponse, Instant),
    Unit(ReplyTx<()>),
}

fn reply_stopped(command: Command) {
    fail_command(command, WalError::Stopped);
}

fn fail_command(command: Command, error: WalError) {
    match command {
        Command::Append { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::Obsolete { reply, .. } | Command::Drop { reply, .. } | Command::Stop { reply } => {
            let _ = reply.send(Err(error));
        }
    }
}

/// Writes every byte of `parts` (`Write::write_all_vectored` is not stable yet).
fn write_all_vectored(file: &mut File, mut parts: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        match file.write_vectored(parts) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    ErrorKind::WriteZero,
                    "the file accepted no more bytes",
                ));
            }
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
