//! Opening a log directory: scan every segment, rebuild the index, and deal with damage.
//!
//! A segment is read group by group: records count only once the commit record that ends
//! their group is read. Whatever follows the last commit record is classified:
//! - **torn tail** — in the last segment, bytes after the last committed group that are
//!   not followed by any valid commit record of this segment: an unfinished group (a crash
//!   during a write, or a live writer in another process still writing it), or the older
//!   bytes a reused segment file still holds past its end. A read-write open cuts the file
//!   there under `TolerateTail` and `Salvage` (and reports it); `Strict` fails; a read-only
//!   open reports it and leaves it.
//! - **corruption** — anything else: damage followed by a later valid commit record (a
//!   committed group lies beyond it), a tail in any segment but the last, a damaged segment
//!   header, a record that verifies but does not decode, ids that go backwards. A typed
//!   error naming the file and offset — except under `Salvage`, which skips the damaged
//!   range to the next record or commit record that verifies, keeps every record that
//!   verifies, and reports the range ([`LostRange`](crate::LostRange)).
//!
//! A **read-only** open changes nothing on disk (no cut, no leftover deleted, no directory
//! created) and may run while the log's writer works in another process: when reading
//! fails and the set of segment files changed meanwhile (the writer rotated, reclaimed or
//! reused one), or the failure may be a write caught half-way, it reads again.
//!
//! Nothing is allocated from a length read off disk before that length is checked against
//! the maximum record size and the bytes remaining in the file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use snafu::ResultExt;

use crate::config::{FileLogStoreConfig, RecoveryMode};
use crate::error::{IoSnafu, WalError};
use crate::file::format::{
    COMMIT_MAGIC, COMMIT_MAGIC_AT, COMMIT_RECORD_LEN, FRAME_HEADER_LEN, HEADER_LEN, Payload,
    decode_frame_header, decode_header, decode_payload, is_commit_record, record_crc,
};
use crate::file::index::{Index, Segment};
use crate::file::report::{RecoveryReport, TruncatedTail};
use crate::file::salvage::Losses;
use crate::file::segment_path;
use crate::file::segments::FREE_SUFFIX;

/// Who opens the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The log's one writer: cuts a torn tail, deletes leftovers of interrupted rotations.
    ReadWrite,
    /// A reader that changes nothing, possibly beside a live writer in another process.
    ReadOnly,
}

/// The recovered state: the index, the segments in order, and the report.
pub(crate) struct Recovered {
    pub(crate) index: Index,
    /// `(segment, end offset)` of the last segment, if any.
    pub(crate) last: Option<(Arc<Segment>, u64)>,
    /// Reclaimed segment files kept for reuse: `(seq, path)`, ascending.
    pub(crate) free: KeptFiles,
    pub(crate) report: RecoveryReport,
}

/// Scans `dir`: created if missing (read-write); an empty log if missing (read-only).
pub(crate) fn recover(
    dir: &Path,
    config: &FileLogStoreConfig,
    access: Access,
) -> Result<Recovered, WalError> {
    match access {
        Access::ReadWrite => {
            std::fs::create_dir_all(dir).context(IoSnafu {
                operation: "create WAL directory",
                path: dir,
            })?;
            // The directory's own name (and its parents', if this open created them) must
            // survive a power loss, or every segment in it goes with it.
            crate::file::segments::sync_ancestors(dir)?;
            scan(dir, config, access)
        }
        Access::ReadOnly => recover_read_only(dir, config),
    }
}

/// Most reads of a log whose writer keeps changing its segment files under the reader.
const READ_ONLY_ATTEMPTS: usize = 50;
/// Most reads that fail while the segment files stay the same.
const READ_ONLY_SAME_FILES_ATTEMPTS: usize = 3;
/// How often a read-only open reads the bytes at one offset again when they look damaged
/// but a committed group follows them: a reader that reaches the end of what a live writer
/// has written reads the older bytes of a reused file there, and by the time it looks
/// further the writer has committed groups past them (in a reused file without changing
/// its size). Reading again at the same offset finds the writer's group; the count starts
/// over at every group read, so a reader can follow a writer to the end of the segment.
const READ_ONLY_REREADS: usize = 5;

fn recover_read_only(dir: &Path, config: &FileLogStoreConfig) -> Result<Recovered, WalError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Recovered {
                index: Index::default(),
                last: None,
                free: Vec::new(),
                report: RecoveryReport::default(),
            });
        }
        other => {
            other.context(IoSnafu {
                operation: "stat WAL directory",
                path: dir,
            })?;
        }
    }
    let mut same_files_failures = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = segment_files(dir)?;
        let error = match scan(dir, config, Access::ReadOnly) {
            Ok(recovered) => return Ok(recovered),
            Err(error) => error,
        };
        let changed = segment_files(dir)? != before;
        same_files_failures += usize::from(!changed);
        if attempt >= READ_ONLY_ATTEMPTS || same_files_failures >= READ_ONLY_SAME_FILES_ATTEMPTS {
            return Err(error);
        }
        tracing::debug!(%error, changed, attempt, "read-only WAL open raced the writer; reading again");
    }
}

/// The segment files of `dir` with their inodes and sizes: an append, a rotation (which
/// first cuts the finished segment at its end), a reclamation or a reuse changes this.
fn segment_files(dir: &Path) -> Result<Vec<(String, u64, u64)>, WalError> {
    let io = IoSnafu {
        operation: "list WAL directory",
        path: dir,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).context(io)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".wal") {
            continue;
        }
        // A file gone between listing and stat is itself a change.
        let (ino, len) = entry.metadata().map_or((0, 0), |m| (m.ino(), m.len()));
        files.push((name, ino, len));
    }
    files.sort();
    Ok(files)
}

/// Reads every segment of `dir` once.
fn scan(dir: &Path, config: &FileLogStoreConfig, access: Access) -> Result<Recovered, WalError> {
    let (seqs, free) = list_segments(dir, access)?;
    let mut index = Index::default();
    let mut report = RecoveryReport::default();
    let mut losses = Losses::default();
    let mut last = None;
    for (i, &seq) in seqs.iter().enumerate() {
        let path = segment_path(dir, seq);
        let ctx = SegmentCtx {
            path: &path,
            seq,
            is_last: i + 1 == seqs.len(),
            config,
            access,
        };
        last = Some(recover_segment(&ctx, &mut index, &mut report, &mut losses)?);
        report.segments += 1;
    }
    report.lost = losses.finish();
    report.regions = index.summaries();
    Ok(Recovered {
        index,
        last,
        free,
        report,
    })
}

/// Kept reclaimed segment files: `(seq, path)`.
type KeptFiles = Vec<(u64, PathBuf)>;

/// Segment sequence numbers in `dir`, ascending, and the kept reclaimed files. A
/// read-write open removes leftover temporary files of an interrupted rotation; a
/// read-only one leaves them (a live writer may be preparing one right now).
fn list_segments(dir: &Path, access: Access) -> Result<(Vec<u64>, KeptFiles), WalError> {
    let io = |operation| IoSnafu {
        operation,
        path: dir,
    };
    let mut seqs = Vec::new();
    let mut free = Vec::new();
    for entry in std::fs::read_dir(dir).context(io("list WAL directory"))? {
        let entry = entry.context(io("list WAL directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".wal.tmp") {
            if access == Access::ReadWrite {
                let path = entry.path();
                std::fs::remove_file(&path).context(IoSnafu {
                    operation: "remove temporary segment",
                    path: &path,
                })?;
            }
            continue;
        }
        if let Some(seq) = name
            .strip_suffix(FREE_SUFFIX)
            .and_then(|s| s.parse::<u64>().ok())
        {
            free.push((seq, entry.path()));
            continue;
        }
        if let Some(seq) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        } else if name != crate::file::LOCK_FILE {
            tracing::warn!(file = name, "ignoring unexpected file in the WAL directory");
        }
    }
    seqs.sort_unstable();
    free.sort_unstable();
    Ok((seqs, free))
}

/// One segment being read, and how.
struct SegmentCtx<'a> {
    path: &'a Path,
    seq: u64,
    is_last: bool,
    config: &'a FileLogStoreConfig,
    access: Access,
}

impl SegmentCtx<'_> {
    fn salvage(&self) -> bool {
        self.config.recovery == RecoveryMode::Salvage
    }

    fn corruption(&self, offset: u64, reason: impl Into<String>) -> WalError {
        WalError::Corruption {
            path: self.path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    fn io(&self, operation: &'static str) -> IoSnafu<&'static str, PathBuf> {
        IoSnafu {
            operation,
            path: self.path.to_path_buf(),
        }
    }
}

/// Why the bytes at some offset are not a valid record.
struct Damage {
    reason: String,
    /// A record that verifies but is wrong: corruption even at the end of the log.
    fatal: bool,
    /// The whole frame's length, when its length field is believable: the next record
    /// may start right after it.
    frame_len: Option<u64>,
}

impl Damage {
    fn new(reason: &str, frame_len: Option<u64>) -> Self {
        Self {
            reason: reason.to_string(),
            fatal: false,
            frame_len,
        }
    }

    fn fatal(reason: String, frame_len: u64) -> Self {
        Self {
            reason,
            fatal: true,
            frame_len: Some(frame_len),
        }
    }
}

/// A verified record waiting for its group's commit record.
struct Pending {
    offset: u64,
    len: u32,
    payload: Payload,
}

/// Reads one segment into `index`, group by group; returns it and the offset where its
/// valid bytes end.
fn recover_segment(
    ctx: &SegmentCtx<'_>,
    index: &mut Index,
    report: &mut RecoveryReport,
    losses: &mut Losses,
) -> Result<(Arc<Segment>, u64), WalError> {
    let path = ctx.path;
    let file = File::open(path).context(ctx.io("open segment"))?;
    let file_len = file.metadata().context(ctx.io("stat segment"))?.len();
    let segment = Arc::new(Segment {
        seq: ctx.seq,
        path: path.to_path_buf(),
        file: file.try_clone().context(ctx.io("open segment"))?,
    });
    index.add_segment(segment.clone());
    let mut reader = BufReader::with_capacity(1 << 20, file);

    let mut header = [0u8; HEADER_LEN];
    let header_read = read_up_to(&mut reader, &mut header).context(ctx.io("read segment"))?;
    let header_ok = decode_header(&header[..header_read])
        .map_err(str::to_string)
        .and_then(|seq| match seq == ctx.seq {
            true => Ok(()),
            false => Err(format!(
                "header says segment {seq}, file name says {}",
                ctx.seq
            )),
        });
    if let Err(reason) = header_ok {
        if ctx.salvage() {
            let reason = format!("{reason}; the whole segment is skipped");
            losses.lose(path, 0, file_len, reason, index.last_ids());
            return Ok((segment, file_len));
        }
        return Err(ctx.corruption(0, reason));
    }

    let max_record = ctx.config.max_record_size;
    let mut offset = HEADER_LEN as u64;
    // Where the last committed group ends, and the records read since.
    let mut committed = offset;
    let mut pending: Vec<Pending> = Vec::new();
    let mut rereads = 0;
    let damage = loop {
        if offset == file_len {
            break None;
        }
        let read = next_record(&mut reader, file_len - offset, ctx.seq, max_record)
            .context(ctx.io("read segment"))?;
        let damage = match read {
            Ok((len, payload)) => {
                let frame_len = FRAME_HEADER_LEN as u64 + u64::from(len);
                match decode_payload(&payload) {
                    Ok(Payload::Commit { offset: at }) if at == offset => {
                        for record in pending.drain(..) {
                            apply_pending(ctx, &segment, record, index, report, losses)?;
                        }
                        offset += frame_len;
                        committed = offset;
                        rereads = 0;
                        continue;
                    }
                    Ok(Payload::Commit { offset: at }) => Damage::fatal(
                        format!("commit record says it was written at {at}"),
                        frame_len,
                    ),
                    Ok(payload) => {
                        pending.push(Pending {
                            offset,
                            len,
                            payload,
                        });
                        offset += frame_len;
                        continue;
                    }
                    Err(reason) => {
                        Damage::fatal(format!("record verifies but {reason}"), frame_len)
                    }
                }
            }
            Err(damage) => damage,
        };
        if !ctx.salvage() {
            if damage.fatal {
                return Err(ctx.corruption(offset, damage.reason));
            }
            // Looked for once: a live writer may commit a group past the damage at any
            // moment, and the decision must rest on one look.
            let later_commit = find_commit(ctx, &segment.file, offset, file_len)?;
            if later_commit.is_some()
                && ctx.access == Access::ReadOnly
                && rereads < READ_ONLY_REREADS
            {
                rereads += 1;
                reader
                    .seek(SeekFrom::Start(offset))
                    .context(ctx.io("read segment"))?;
                continue;
            }
            break Some(TailDamage {
                at: offset,
                reason: damage.reason,
                later_commit,
            });
        }
        // Salvage: skip to the next record or commit record that verifies; keep what
        // verified before the damage.
        match resume_point(ctx, &segment.file, offset, &damage, file_len)? {
            Some(resume) => {
                for record in pending.drain(..) {
                    apply_pending(ctx, &segment, record, index, report, losses)?;
                }
                losses.lose(path, offset, resume, damage.reason, index.last_ids());
                reader
                    .seek(SeekFrom::Start(resume))
                    .context(ctx.io("read segment"))?;
                offset = resume;
            }
            None => {
                break Some(TailDamage {
                    at: offset,
                    reason: damage.reason,
                    later_commit: None,
                });
            }
        }
    };
    if committed == file_len {
        return Ok((segment, committed));
    }
    if ctx.salvage() && !ctx.is_last {
        // A finished segment (the log went on in later ones): what verified was written
        // before later groups were synced, so it is kept; the rest is reported lost.
        for record in pending.drain(..) {
            apply_pending(ctx, &segment, record, index, report, losses)?;
        }
        let (start, reason) = damage.map_or_else(
            || (offset, "the last group has no commit record".to_string()),
            |d| (d.at, d.reason),
        );
        losses.lose(path, start, file_len, reason, index.last_ids());
        return Ok((segment, file_len));
    }
    let tail = Tail {
        committed,
        file_len,
        damage,
    };
    handle_tail(ctx, tail, report).map(|end| (segment, end))
}

/// Applies a verified record; under salvage, a record that does not fit (ids going
/// backwards) is reported lost instead of failing the open.
fn apply_pending(
    ctx: &SegmentCtx<'_>,
    segment: &Arc<Segment>,
    record: Pending,
    index: &mut Index,
    report: &mut RecoveryReport,
    losses: &mut Losses,
) -> Result<(), WalError> {
    let Pending {
        offset,
        len,
        payload,
    } = record;
    match apply(index, segment, offset, len, payload, report, losses) {
        Ok(()) => Ok(()),
        Err(reason) if ctx.salvage() => {
            let end = offset + FRAME_HEADER_LEN as u64 + u64::from(len);
            losses.lose(ctx.path, offset, end, reason, index.last_ids());
            Ok(())
        }
        Err(reason) => Err(ctx.corruption(offset, reason)),
    }
}

/// Most bytes between damage and the next commit record that salvage searches, byte by
/// byte, for the first record that verifies.
const SALVAGE_SCAN_MAX: u64 = 64 << 20;

/// Where salvage resumes after damage at `at`: right after the damaged frame if a record
/// verifies there; else at the first offset before the next valid commit record where a
/// record verifies (the damaged group's intact records, or the next group's); else at that
/// commit record. `None` if no commit record follows.
fn resume_point(
    ctx: &SegmentCtx<'_>,
    file: &File,
    at: u64,
    damage: &Damage,
    file_len: u64,
) -> Result<Option<u64>, WalError> {
    if let Some(frame_len) = damage.frame_len {
        let next = at + frame_len;
        if next < file_len && verifies_at(ctx, file, next, file_len)? {
            return Ok(Some(next));
        }
    }
    let Some(commit) = find_commit(ctx, file, at, file_len)?.filter(|&commit| commit > at) else {
        return Ok(None);
    };
    if commit - at > SALVAGE_SCAN_MAX {
        return Ok(Some(commit));
    }
    // Read the span once; a record that verifies must end at or before the commit record.
    let mut span = vec![0u8; usize::try_from(commit - at).unwrap_or(0)];
    file.read_exact_at(&mut span, at)
        .context(ctx.io("read segment"))?;
    for start in 1..span.len() {
        let Some(frame) = span.get(start..start + FRAME_HEADER_LEN) else {
            break;
        };
        let mut header = [0u8; FRAME_HEADER_LEN];
        header.copy_from_slice(frame);
        let (len, crc) = decode_frame_header(&header);
        let payload_start = start + FRAME_HEADER_LEN;
        let Some(payload) = span.get(payload_start..payload_start + len as usize) else {
            continue;
        };
        if len > 0 && record_crc(ctx.seq, payload) == crc {
            return Ok(Some(at + start as u64));
        }
    }
    Ok(Some(commit))
}

/// Whether a record of this segment verifies at `offset`.
fn verifies_at(
    ctx: &SegmentCtx<'_>,
    file: &File,
    offset: u64,
    file_len: u64,
) -> Result<bool, WalError> {
    let mut frame = [0u8; FRAME_HEADER_LEN];
    if offset + FRAME_HEADER_LEN as u64 > file_len {
        return Ok(false);
    }
    file.read_exact_at(&mut frame, offset)
        .context(ctx.io("read segment"))?;
    let (len, crc) = decode_frame_header(&frame);
    let start = offset + FRAME_HEADER_LEN as u64;
    if len == 0 || u64::from(len) > ctx.config.max_record_size || start + u64::from(len) > file_len
    {
        return Ok(false);
    }
    // Bounded by max_record_size and by the bytes left in the file.
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, start)
        .context(ctx.io("read segment"))?;
    Ok(record_crc(ctx.seq, &payload) == crc)
}

/// Reads the next record from `reader`, which has `remaining` bytes left; the inner error
/// says why the bytes there are not a valid record.
fn next_record(
    reader: &mut impl Read,
    remaining: u64,
    seq: u64,
    max_record: u64,
) -> std::io::Result<Result<(u32, Bytes), Damage>> {
    let mut frame = [0u8; FRAME_HEADER_LEN];
    if read_up_to(reader, &mut frame)? < FRAME_HEADER_LEN {
        return Ok(Err(Damage::new("partial record header", None)));
    }
    let (len, crc) = decode_frame_header(&frame);
    if len == 0 || u64::from(len) > max_record {
        return Ok(Err(Damage::new(
            "record length is zero or above max_record_size",
            None,
        )));
    }
    if u64::from(len) > remaining - FRAME_HEADER_LEN as u64 {
        return Ok(Err(Damage::new(
            "record runs past the end of the file",
            None,
        )));
    }
    // Bounded by max_record_size and by the bytes left in the file.
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    if record_crc(seq, &payload) != crc {
        let frame_len = FRAME_HEADER_LEN as u64 + u64::from(len);
        return Ok(Err(Damage::new(
            "record checksum mismatch",
            Some(frame_len),
        )));
    }
    Ok(Ok((len, Bytes::from(payload))))
}

/// Applies a verified record to the index.
fn apply(
    index: &mut Index,
    segment: &Arc<Segment>,
    offset: u64,
    len: u32,
    payload: Payload,
    report: &mut RecoveryReport,
    losses: &mut Losses,
) -> Result<(), String> {
    match payload {
        Payload::Entries(entries) => {
            let mut ids = Vec::with_capacity(entries.len());
            let mut pending: HashMap<u64, u64> = HashMap::new();
            for e in &entries {
                let last = pending
                    .get(&e.region_id)
                    .copied()
                    .or_else(|| index.last_id(e.region_id));
                if last.is_some_and(|l| e.entry_id <= l) {
                    return Err(format!(
                        "region {} entry {} is not above the previous id {:?}",
                        e.region_id, e.entry_id, last
                    ));
                }
                pending.insert(e.region_id, e.entry_id);
                ids.push((e.region_id, e.entry_id));
            }
            if !losses.is_empty() {
                for &(region, id) in &ids {
                    losses.saw(region, id);
                }
            }
            report.entries += entries.len() as u64;
            index.apply_entries(segment, offset, len, &ids);
        }
        Payload::Obsolete {
            region_id,
            entry_id,
        } => index.apply_obsolete(region_id, entry_id),
        Payload::Drop { region_id } => index.apply_drop(region_id),
        Payload::Commit { .. } => {}
    }
    report.records += 1;
    Ok(())
}

/// Where reading a segment stopped on bytes that are not a record.
struct TailDamage {
    at: u64,
    reason: String,
    /// The first valid commit record after `at`, if any: a committed group follows the
    /// damage.
    later_commit: Option<u64>,
}

/// The bytes of a segment after its last committed group.
struct Tail {
    /// Where the last committed group ends (the tail starts).
    committed: u64,
    file_len: u64,
    /// `None` when the records after `committed` all verified but no commit record
    /// followed them.
    damage: Option<TailDamage>,
}

/// Decides whether `tail` is a torn tail (cut off by a tolerant read-write open, reported
/// either way) or corruption; returns where the segment's valid bytes end.
fn handle_tail(
    ctx: &SegmentCtx<'_>,
    tail: Tail,
    report: &mut RecoveryReport,
) -> Result<u64, WalError> {
    let path = ctx.path;
    let Tail {
        committed,
        file_len,
        damage,
    } = tail;
    let (at, reason, later_commit) = match damage {
        Some(d) => (d.at, d.reason, d.later_commit),
        None => (
            committed,
            "the last group has no commit record".to_string(),
            None,
        ),
    };
    let dropped_bytes = file_len - committed;
    // A valid commit record of this segment past the damage means a committed group (maybe
    // acknowledged appends) lies beyond it: that is never a torn write.
    if let Some(commit) = later_commit {
        return Err(ctx.corruption(
            at,
            format!("{reason}, yet a committed group follows (commit record at {commit})"),
        ));
    }
    if !ctx.is_last {
        return Err(ctx.corruption(
            at,
            format!(
                "{reason}; {dropped_bytes} bytes after the last committed group of a segment that is not the last"
            ),
        ));
    }
    if ctx.config.recovery == RecoveryMode::Strict {
        return Err(ctx.corruption(
            at,
            format!(
                "torn tail: {reason}; {dropped_bytes} bytes after the last committed group (strict recovery refuses to cut them off; open with recovery = tolerate_tail to do so)"
            ),
        ));
    }
    let cut = ctx.access == Access::ReadWrite;
    if cut {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .context(ctx.io("open segment to truncate torn tail"))?;
        file.set_len(committed)
            .and_then(|()| file.sync_all())
            .context(ctx.io("truncate torn tail"))?;
        tracing::warn!(
            path = %path.display(),
            offset = committed,
            dropped_bytes,
            reason,
            "WAL recovery cut off a torn tail"
        );
    }
    report.truncated = Some(TruncatedTail {
        path: path.to_path_buf(),
        offset: committed,
        dropped_bytes,
        reason,
        cut,
    });
    Ok(committed)
}

/// The offset of the first valid commit record of the segment at or after `from`.
/// Candidates are found by the commit magic, then verified whole (checksum with the
/// segment's seq, and the offset the record names must be where it is).
fn find_commit(
    ctx: &SegmentCtx<'_>,
    file: &File,
    from: u64,
    file_len: u64,
) -> Result<Option<u64>, WalError> {
    let finder = memchr::memmem::Finder::new(COMMIT_MAGIC);
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK + COMMIT_RECORD_LEN];
    // The magic sits COMMIT_MAGIC_AT bytes into a record: search from there.
    let mut start = from + COMMIT_MAGIC_AT as u64;
    while start + COMMIT_MAGIC.len() as u64 <= file_len {
        let want = usize::try_from(file_len - start).map_or(buf.len(), |n| n.min(buf.len()));
        file.read_exact_at(&mut buf[..want], start)
            .context(ctx.io("read segment"))?;
        for hit in finder.find_iter(&buf[..want]) {
            let record_at = start + hit as u64 - COMMIT_MAGIC_AT as u64;
            if record_at + COMMIT_RECORD_LEN as u64 > file_len {
                continue;
            }
            let mut record = [0u8; COMMIT_RECORD_LEN];
            file.read_exact_at(&mut record, record_at)
                .context(ctx.io("read segment"))?;
            if is_commit_record(&record, ctx.seq, record_at) {
                return Ok(Some(record_at));
            }
        }
        // Overlap by the magic's length less one, so a magic across chunks is found.
        start += (want.saturating_sub(COMMIT_MAGIC.len() - 1)).max(1) as u64;
    }
    Ok(None)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
