//! The single writer thread: group commit, sync policy, rotation and reclamation.
//!
//! Every append, obsolete and drop goes through one channel to one OS thread. The thread
//! takes the first waiting command and then every other one already queued (up to
//! `max_group_bytes`), frames them into one buffer, issues **one write and at most one
//! sync**, updates the index, and only then answers each command. Throughput under
//! `sync = always` therefore grows with the number of concurrent appenders instead of being
//! capped at one fdatasync per append.
//!
//! Failure rules: a failed write is cut back off the file and fails only its group; a
//! failed sync poisons the log (every later write fails with `Poisoned`), because after a
//! failed fdatasync nobody can say which bytes are durable and retrying it could
//! acknowledge lost data.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Instant;

use snafu::ResultExt;
use tokio::sync::oneshot;

use crate::config::{FileLogStoreConfig, SyncPolicy};
use crate::error::{IoSnafu, WalError};
use crate::file::format::{self, HEADER_LEN};
use crate::file::index::{Index, Segment};
use crate::file::{Shared, segment_path};
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

/// Commands gathered for one commit.
#[derive(Default)]
struct Group {
    commands: Vec<Command>,
    bytes: usize,
    appends: usize,
}

impl Group {
    fn push(&mut self, command: Command) {
        self.bytes += command.payload_len();
        self.appends += usize::from(command.is_append());
        self.commands.push(command);
    }
}

/// How often a waiting group re-reads the in-flight count.
const GATHER_SLICE: std::time::Duration = std::time::Duration::from_micros(50);

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

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    pub(crate) segment: Arc<Segment>,
    pub(crate) file: File,
    pub(crate) len: u64,
}

/// A framed command waiting for its group's write and sync.
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

pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) config: FileLogStoreConfig,
    pub(crate) shared: Arc<Shared>,
    pub(crate) active: ActiveSegment,
    pub(crate) unsynced_since: Option<Instant>,
    pub(crate) poisoned: Option<String>,
    /// The group buffer, kept between groups.
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    /// Serves commands until `Stop` or until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        loop {
            let first = match self.sync_deadline() {
                Some(deadline) => {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
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
            let group = self.gather(first, &rx);
            if !self.process(group) {
                return;
            }
        }
        self.sync_if_dirty();
    }

    /// Builds a group from `first` and every command already queued (up to
    /// `max_group_bytes`). Under `sync = always`, while fewer appends are in the group than
    /// are in flight (submitted and not yet answered), waits up to `group_commit_wait` for
    /// the rest: answered appenders come back a few microseconds later, and waiting for
    /// them lets them share the next sync instead of alternating small and large groups.
    /// A lone appender never waits.
    fn gather(&self, first: Command, rx: &Receiver<Command>) -> Vec<Command> {
        let max_bytes = self.config.max_group_bytes as usize;
        let mut group = Group::default();
        group.push(first);
        while group.bytes < max_bytes {
            match rx.try_recv() {
                Ok(command) => group.push(command),
                Err(_) => break,
            }
        }
        let wait = self.config.group_commit_wait;
        if self.config.sync != SyncPolicy::Always || wait.is_zero() {
            return group.commands;
        }
        let deadline = Instant::now() + wait;
        // Re-read the in-flight count in short slices: an appender that gives up (its
        // future dropped) lowers it, and the wait must end then.
        while group.bytes < max_bytes
            && group.appends < self.shared.in_flight.load(Ordering::Acquire)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left.min(GATHER_SLICE)) {
                Ok(command) => group.push(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        group.commands
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

    /// Commits one group; returns false once stopped.
    fn process(&mut self, group: Vec<Command>) -> bool {
        let group_size = group.len();
        let seq = self.active.segment.seq;
        // Reuse one buffer for every group: a fresh multi-megabyte buffer per group would
        // be page-faulted in (and unmapped) every time.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut framed = Vec::with_capacity(group.len());
        let mut stop: Option<ReplyTx<()>> = None;
        let mut must_sync = false;
        // Last ids as changed by earlier commands of this group; `None` = dropped.
        let mut pending_last: HashMap<u64, Option<u64>> = HashMap::new();
        for command in group {
            if stop.is_some() {
                reply_stopped(command);
                continue;
            }
            if let Command::Stop { reply } = command {
                stop = Some(reply);
                continue;
            }
            if let Some(reason) = &self.poisoned {
                let error = WalError::Poisoned {
                    reason: reason.clone(),
                };
                fail_command(command, error);
                continue;
            }
            let offset = self.active.len + buf.len() as u64;
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
                            pending_last
                                .get(&region)
                                .copied()
                                .unwrap_or_else(|| index.last_id(region))
                        })
                    };
                    let last_entry_ids = match checked {
                        Ok(last) => last,
                        Err(error) => {
                            let _ = reply.send(Err(error));
                            continue;
                        }
                    };
                    for (&region, &last) in &last_entry_ids {
                        pending_last.insert(region, Some(last));
                    }
                    format::frame_into(&mut buf, seq, &payload);
                    must_sync |= self.config.sync == SyncPolicy::Always;
                    framed.push(Framed::Append {
                        ids,
                        offset,
                        len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                        response: AppendResponse { last_entry_ids },
                        submitted,
                        reply,
                    });
                }
                Command::Obsolete {
                    region_id,
                    entry_id,
                    reply,
                } => {
                    format::frame_into(
                        &mut buf,
                        seq,
                        &format::encode_obsolete(region_id, entry_id),
                    );
                    framed.push(Framed::Obsolete {
                        region_id,
                        entry_id,
                        reply,
                    });
                }
                Command::Drop { region_id, reply } => {
                    format::frame_into(&mut buf, seq, &format::encode_drop(region_id));
                    // A forgotten drop would resurrect the old entries under a new region
                    // with the same id: always make it durable.
                    must_sync = true;
                    pending_last.insert(region_id, None);
                    framed.push(Framed::Drop { region_id, reply });
                }
                Command::Stop { .. } => {}
            }
        }
        if !buf.is_empty() {
            self.commit(&buf, framed, must_sync, group_size);
        }
        self.buf = buf;
        if let Some(reply) = stop {
            self.sync_if_dirty();
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

    /// Writes `buf`, syncs as required, applies `framed` to the index and answers it.
    fn commit(&mut self, buf: &[u8], framed: Vec<Framed>, must_sync: bool, group_size: usize) {
        if let Err(error) = self.write(buf) {
            framed.into_iter().for_each(|f| f.fail(error.clone()));
            return;
        }
        if self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
        let interval_due = self
            .sync_deadline()
            .is_some_and(|deadline| Instant::now() >= deadline);
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
            m.bytes.inc_by(buf.len() as u64);
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
                        m.append_seconds.observe(submitted.elapsed().as_secs_f64());
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

    fn write(&mut self, buf: &[u8]) -> Result<(), WalError> {
        let path = &self.active.segment.path;
        match self.active.file.write_all(buf) {
            Ok(()) => {
                self.active.len += buf.len() as u64;
                Ok(())
            }
            Err(error) => {
                // Cut off whatever part of the group reached the file, so the next group
                // does not land behind garbage (which recovery would call corruption).
                if let Err(cut) = self.active.file.set_len(self.active.len) {
                    self.poisoned = Some(format!(
                        "cannot cut a failed write off {}: {cut}",
                        path.display()
                    ));
                }
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

    /// Starts the next segment. On failure the current segment simply keeps growing.
    fn rotate(&mut self) {
        if self.unsynced_since.is_some() && self.sync().is_err() {
            return;
        }
        let seq = self.active.segment.seq + 1;
        match create_segment(&self.dir, seq) {
            Ok(active) => {
                self.lock_index().add_segment(active.segment.clone());
                self.active = active;
            }
            Err(error) => {
                tracing::warn!(%error, "WAL segment rotation failed; will retry after the next write");
            }
        }
    }

    /// Deletes segments whose every entry is obsolete.
    fn reclaim(&mut self) {
        let active_seq = self.active.segment.seq;
        let reclaimed = self.lock_index().take_reclaimable(active_seq);
        for segment in reclaimed {
            if let Err(error) = std::fs::remove_file(&segment.path) {
                tracing::warn!(path = %segment.path.display(), %error, "cannot delete reclaimed WAL segment");
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

/// Creates segment `seq` atomically: header into a temporary file, sync, rename, sync the
/// directory. A crash leaves either no segment or a complete header.
pub(crate) fn create_segment(dir: &Path, seq: u64) -> Result<ActiveSegment, WalError> {
    let path = segment_path(dir, seq);
    let tmp = path.with_extension("wal.tmp");
    let io = |operation, path: &Path| IoSnafu {
        operation,
        path: path.to_path_buf(),
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .context(io("create segment", &tmp))?;
    file.write_all(&format::encode_header(seq))
        .and_then(|()| file.sync_all())
        .context(io("write segment header", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).context(io("rename segment", &path))?;
    sync_dir(dir)?;
    let read = File::open(&path).context(io("open segment", &path))?;
    let segment = Arc::new(Segment {
        seq,
        path,
        file: read,
    });
    open_active(segment, HEADER_LEN as u64)
}

/// Opens `segment` for appending at `len` (its valid end).
pub(crate) fn open_active(segment: Arc<Segment>, len: u64) -> Result<ActiveSegment, WalError> {
    let file = OpenOptions::new()
        .append(true)
        .open(&segment.path)
        .context(IoSnafu {
            operation: "open segment for append",
            path: segment.path.clone(),
        })?;
    Ok(ActiveSegment { segment, file, len })
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).context(IoSnafu {
        operation: "sync WAL directory",
        path: dir,
    })
}
