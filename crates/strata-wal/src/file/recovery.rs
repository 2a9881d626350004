//! Opening a log directory: scan every segment, rebuild the index, and deal with damage.
//!
//! A segment is read group by group: records count only once the commit record that ends
//! their group is read. Whatever follows the last commit record is classified:
//! - **torn tail** — in the last segment, bytes after the last committed group that are
//!   not followed by any valid commit record of this segment: an unfinished group (a crash
//!   during a write), or the older bytes a reused segment file still holds past its end.
//!   `TolerateTail` cuts the file there (and reports it); `Strict` fails.
//! - **corruption** — anything else: damage followed by a later valid commit record (a
//!   committed group lies beyond it), a tail in any segment but the last, a damaged segment
//!   header, a record that verifies but does not decode, ids that go backwards. Always a
//!   typed error naming the file and offset.
//!
//! Nothing is allocated from a length read off disk before that length is checked against
//! the maximum record size and the bytes remaining in the file.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read};
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
use crate::file::segment_path;
use crate::file::segments::FREE_SUFFIX;

/// What opening the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Valid records read.
    pub records: u64,
    /// Entries in those records.
    pub entries: u64,
    /// Segment files deleted because every entry in them was obsolete.
    pub reclaimed_segments: usize,
    /// The torn tail that was cut off, if any.
    pub truncated: Option<TruncatedTail>,
}

/// A torn tail cut off during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where the file now ends.
    pub offset: u64,
    /// How many bytes were dropped.
    pub dropped_bytes: u64,
    /// Why the bytes did not form a valid record.
    pub reason: String,
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

/// Scans `dir` (created if missing).
pub(crate) fn recover(dir: &Path, config: &FileLogStoreConfig) -> Result<Recovered, WalError> {
    std::fs::create_dir_all(dir).context(IoSnafu {
        operation: "create WAL directory",
        path: dir,
    })?;
    let (seqs, free) = list_segments(dir)?;
    let mut index = Index::default();
    let mut report = RecoveryReport::default();
    let mut last = None;
    for (i, &seq) in seqs.iter().enumerate() {
        let path = segment_path(dir, seq);
        let is_last = i + 1 == seqs.len();
        let end = recover_segment(&path, seq, is_last, config, &mut index, &mut report)?;
        report.segments += 1;
        let file = File::open(&path).context(IoSnafu {
            operation: "open segment",
            path: &path,
        })?;
        last = Some((Arc::new(Segment { seq, path, file }), end));
    }
    Ok(Recovered {
        index,
        last,
        free,
        report,
    })
}

/// Kept reclaimed segment files: `(seq, path)`.
type KeptFiles = Vec<(u64, PathBuf)>;

/// Segment sequence numbers in `dir`, ascending, and the kept reclaimed files. Leftover
/// temporary files from an interrupted rotation are removed.
fn list_segments(dir: &Path) -> Result<(Vec<u64>, KeptFiles), WalError> {
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
            let path = entry.path();
            std::fs::remove_file(&path).context(IoSnafu {
                operation: "remove temporary segment",
                path: &path,
            })?;
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
        } else {
            tracing::warn!(file = name, "ignoring unexpected file in the WAL directory");
        }
    }
    seqs.sort_unstable();
    free.sort_unstable();
    Ok((seqs, free))
}

/// Why the bytes at some offset are not a valid record.
type Damage = &'static str;

/// Reads one segment into `index`, group by group; returns the offset where the last
/// committed group ends.
fn recover_segment(
    path: &Path,
    seq: u64,
    is_last: bool,
    config: &FileLogStoreConfig,
    index: &mut Index,
    report: &mut RecoveryReport,
) -> Result<u64, WalError> {
    let corruption = |offset: u64, reason: String| WalError::Corruption {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let io = |operation| IoSnafu {
        operation,
        path: path.to_path_buf(),
    };
    let file = File::open(path).context(io("open segment"))?;
    let file_len = file.metadata().context(io("stat segment"))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);

    let mut header = [0u8; HEADER_LEN];
    let header_read = read_up_to(&mut reader, &mut header).context(io("read segment"))?;
    let header_seq = decode_header(&header[..header_read])
        .map_err(|reason| corruption(0, reason.to_string()))?;
    if header_seq != seq {
        return Err(corruption(
            0,
            format!("header says segment {header_seq}, file name says {seq}"),
        ));
    }
    let segment = Arc::new(Segment {
        seq,
        path: path.to_path_buf(),
        file: File::open(path).context(io("open segment"))?,
    });
    index.add_segment(segment.clone());

    let max_record = config.max_record_size;
    let mut offset = HEADER_LEN as u64;
    // Where the last committed group ends, and the records read since.
    let mut committed = offset;
    let mut pending = Vec::new();
    let damage = loop {
        if offset == file_len {
            break None;
        }
        let remaining = file_len - offset;
        match next_record(&mut reader, remaining, seq, max_record).context(io("read segment"))? {
            Ok((len, payload)) => {
                let decoded = decode_payload(&payload).map_err(|reason| {
                    corruption(offset, format!("record verifies but {reason}"))
                })?;
                let next = offset + FRAME_HEADER_LEN as u64 + u64::from(len);
                match decoded {
                    Payload::Commit { offset: at } if at != offset => {
                        return Err(corruption(
                            offset,
                            format!("commit record says it was written at {at}"),
                        ));
                    }
                    Payload::Commit { .. } => {
                        for (at, len, payload) in pending.drain(..) {
                            apply(index, &segment, at, len, payload, report)
                                .map_err(|reason| corruption(at, reason))?;
                        }
                        committed = next;
                    }
                    other => pending.push((offset, len, other)),
                }
                offset = next;
            }
            Err(damage) => break Some((offset, damage)),
        }
    };
    if committed == file_len {
        return Ok(committed);
    }
    let tail = Tail {
        path,
        seq,
        committed,
        file_len,
        damage,
    };
    handle_tail(&tail, is_last, config, report)
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
        return Ok(Err("partial record header"));
    }
    let (len, crc) = decode_frame_header(&frame);
    if len == 0 || u64::from(len) > max_record {
        return Ok(Err("record length is zero or above max_record_size"));
    }
    if u64::from(len) > remaining - FRAME_HEADER_LEN as u64 {
        return Ok(Err("record runs past the end of the file"));
    }
    // Bounded by max_record_size and by the bytes left in the file.
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    if record_crc(seq, &payload) != crc {
        return Ok(Err("record checksum mismatch"));
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
) -> Result<(), String> {
    report.records += 1;
    match payload {
        Payload::Entries(entries) => {
            let mut ids = Vec::with_capacity(entries.len());
            let mut pending: std::collections::HashMap<u64, u64> = Default::default();
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
    Ok(())
}

/// The bytes of a segment after its last committed group.
struct Tail<'a> {
    path: &'a Path,
    seq: u64,
    /// Where the last committed group ends (the tail starts).
    committed: u64,
    file_len: u64,
    /// Where reading stopped on bytes that are not a record, and why; `None` when the
    /// records after `committed` all verified but no commit record followed them.
    damage: Option<(u64, Damage)>,
}

/// Decides whether `tail` is a torn tail (cut it off if tolerated, recording it in
/// `report`) or corruption; returns the new end of the segment.
fn handle_tail(
    tail: &Tail<'_>,
    is_last: bool,
    config: &FileLogStoreConfig,
    report: &mut RecoveryReport,
) -> Result<u64, WalError> {
    let path = tail.path;
    let (at, reason) = tail
        .damage
        .unwrap_or((tail.committed, "the last group has no commit record"));
    let dropped_bytes = tail.file_len - tail.committed;
    // A valid commit record of this segment past the damage means a committed group (maybe
    // acknowledged appends) lies beyond it: that is never a torn write.
    let later_commit = match tail.damage {
        Some((at, _)) => find_commit(path, tail.seq, at, tail.file_len)?,
        None => None,
    };
    if let Some(commit) = later_commit {
        return Err(WalError::Corruption {
            path: path.to_path_buf(),
            offset: at,
            reason: format!("{reason}, yet a committed group follows (commit record at {commit})"),
        });
    }
    if !is_last {
        return Err(WalError::Corruption {
            path: path.to_path_buf(),
            offset: at,
            reason: format!(
                "{reason}; {dropped_bytes} bytes after the last committed group of a segment that is not the last"
            ),
        });
    }
    if config.recovery == RecoveryMode::Strict {
        return Err(WalError::Corruption {
            path: path.to_path_buf(),
            offset: at,
            reason: format!(
                "torn tail: {reason}; {dropped_bytes} bytes after the last committed group (strict recovery refuses to cut them off; open with recovery = tolerate_tail to do so)"
            ),
        });
    }
    let file = OpenOptions::new().write(true).open(path).context(IoSnafu {
        operation: "open segment to truncate torn tail",
        path,
    })?;
    file.set_len(tail.committed)
        .and_then(|()| file.sync_all())
        .context(IoSnafu {
            operation: "truncate torn tail",
            path,
        })?;
    tracing::warn!(
        path = %path.display(),
        offset = tail.committed,
        dropped_bytes,
        reason,
        "WAL recovery cut off a torn tail"
    );
    report.truncated = Some(TruncatedTail {
        path: path.to_path_buf(),
        offset: tail.committed,
        dropped_bytes,
        reason: reason.to_string(),
    });
    Ok(tail.committed)
}

/// The offset of the first valid commit record of segment `seq` at or after `from`.
/// Candidates are found by the commit magic, then verified whole (checksum with `seq`,
/// and the offset the record names must be where it is).
fn find_commit(path: &Path, seq: u64, from: u64, file_len: u64) -> Result<Option<u64>, WalError> {
    use std::os::unix::fs::FileExt;
    let io = || IoSnafu {
        operation: "read segment",
        path,
    };
    let file = File::open(path).context(io())?;
    let finder = memchr::memmem::Finder::new(COMMIT_MAGIC);
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK + COMMIT_RECORD_LEN];
    // The magic sits COMMIT_MAGIC_AT bytes into a record: search from there.
    let mut start = from + COMMIT_MAGIC_AT as u64;
    while start + COMMIT_MAGIC.len() as u64 <= file_len {
        let want = usize::try_from(file_len - start).map_or(buf.len(), |n| n.min(buf.len()));
        file.read_exact_at(&mut buf[..want], start).context(io())?;
        for hit in finder.find_iter(&buf[..want]) {
            let record_at = start + hit as u64 - COMMIT_MAGIC_AT as u64;
            if record_at + COMMIT_RECORD_LEN as u64 > file_len {
                continue;
            }
            let mut record = [0u8; COMMIT_RECORD_LEN];
            file.read_exact_at(&mut record, record_at).context(io())?;
            if is_commit_record(&record, seq, record_at) {
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
