//! Opening a log directory: scan every segment, rebuild the index, and deal with damage.
//!
//! Damage is classified by where it is:
//! - **torn tail** — in the last segment, a record that runs past the end of the file, a
//!   partial frame header, a checksum mismatch on the last record of the file, or only zero
//!   bytes from some point on. This is what a crash during a write leaves. `TolerateTail`
//!   cuts the file there (and reports it); `Strict` fails.
//! - **corruption** — anything else: damage followed by more bytes, a damaged segment
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
    FRAME_HEADER_LEN, HEADER_LEN, Payload, decode_frame_header, decode_header, decode_payload,
    record_crc,
};
use crate::file::index::{Index, Segment};
use crate::file::segment_path;

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
    pub(crate) report: RecoveryReport,
}

/// Scans `dir` (created if missing).
pub(crate) fn recover(dir: &Path, config: &FileLogStoreConfig) -> Result<Recovered, WalError> {
    std::fs::create_dir_all(dir).context(IoSnafu {
        operation: "create WAL directory",
        path: dir,
    })?;
    let seqs = list_segments(dir)?;
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
        report,
    })
}

/// Segment sequence numbers in `dir`, ascending. Leftover temporary files from an
/// interrupted rotation are removed.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let io = |operation| IoSnafu {
        operation,
        path: dir,
    };
    let mut seqs = Vec::new();
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
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        } else {
            tracing::warn!(file = name, "ignoring unexpected file in the WAL directory");
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Why a record at some offset is not valid.
enum Damage {
    /// The bytes end inside a frame: only a crash mid-write does that.
    Incomplete(&'static str),
    /// The frame is complete but wrong (bad length or checksum).
    Invalid(&'static str),
}

/// Reads one segment into `index`; returns the offset where valid data ends.
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
    loop {
        if offset == file_len {
            return Ok(offset);
        }
        let remaining = file_len - offset;
        match next_record(&mut reader, remaining, seq, max_record).context(io("read segment"))? {
            Ok((len, payload)) => {
                let decoded = decode_payload(&payload).map_err(|reason| {
                    corruption(offset, format!("record verifies but {reason}"))
                })?;
                apply(index, &segment, offset, len, decoded, report)
                    .map_err(|reason| corruption(offset, reason))?;
                offset += FRAME_HEADER_LEN as u64 + u64::from(len);
            }
            Err(damage) => {
                return handle_damage(path, offset, file_len, is_last, config, damage, report);
            }
        }
    }
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
        return Ok(Err(Damage::Incomplete("partial record header")));
    }
    let (len, crc) = decode_frame_header(&frame);
    if len == 0 || u64::from(len) > max_record {
        return Ok(Err(Damage::Invalid(
            "record length is zero or above max_record_size",
        )));
    }
    if u64::from(len) > remaining - FRAME_HEADER_LEN as u64 {
        return Ok(Err(Damage::Incomplete(
            "record runs past the end of the file",
        )));
    }
    // Bounded by max_record_size and by the bytes left in the file.
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    if record_crc(seq, &payload) != crc {
        return Ok(Err(Damage::Invalid("record checksum mismatch")));
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
    }
    Ok(())
}

/// Decides whether damage at `offset` is a torn tail (cut it off if tolerated, recording it
/// in `report`) or corruption; returns the new end of the segment.
fn handle_damage(
    path: &Path,
    offset: u64,
    file_len: u64,
    is_last: bool,
    config: &FileLogStoreConfig,
    damage: Damage,
    report: &mut RecoveryReport,
) -> Result<u64, WalError> {
    let (reason, torn) = match damage {
        Damage::Incomplete(reason) => (reason, true),
        Damage::Invalid(reason) => {
            // A bad last record, or zeros to the end, is what a torn write leaves.
            let rest_is_zero = rest_is_zero(path, offset)?;
            let ends_at_eof = record_ends_at_eof(path, offset, file_len)?;
            (reason, rest_is_zero || ends_at_eof)
        }
    };
    let dropped_bytes = file_len - offset;
    if !(is_last && torn) {
        return Err(WalError::Corruption {
            path: path.to_path_buf(),
            offset,
            reason: format!("{reason} ({dropped_bytes} bytes from here on are not a valid log)"),
        });
    }
    if config.recovery == RecoveryMode::Strict {
        return Err(WalError::Corruption {
            path: path.to_path_buf(),
            offset,
            reason: format!(
                "torn tail: {reason}; {dropped_bytes} bytes (strict recovery refuses to cut them off; open with recovery = tolerate_tail to do so)"
            ),
        });
    }
    let file = OpenOptions::new().write(true).open(path).context(IoSnafu {
        operation: "open segment to truncate torn tail",
        path,
    })?;
    file.set_len(offset)
        .and_then(|()| file.sync_all())
        .context(IoSnafu {
            operation: "truncate torn tail",
            path,
        })?;
    tracing::warn!(
        path = %path.display(),
        offset,
        dropped_bytes,
        reason,
        "WAL recovery cut off a torn tail"
    );
    report.truncated = Some(TruncatedTail {
        path: path.to_path_buf(),
        offset,
        dropped_bytes,
        reason: reason.to_string(),
    });
    Ok(offset)
}

fn rest_is_zero(path: &Path, offset: u64) -> Result<bool, WalError> {
    let io = IoSnafu {
        operation: "read segment",
        path,
    };
    let mut file = File::open(path).context(io)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).context(IoSnafu {
        operation: "read segment",
        path,
    })?;
    let mut reader = BufReader::new(file);
    let mut buf = [0u8; 8192];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e).context(IoSnafu {
                    operation: "read segment",
                    path,
                });
            }
        };
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

fn record_ends_at_eof(path: &Path, offset: u64, file_len: u64) -> Result<bool, WalError> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).context(IoSnafu {
        operation: "read segment",
        path,
    })?;
    let mut frame = [0u8; FRAME_HEADER_LEN];
    file.read_exact_at(&mut frame, offset).context(IoSnafu {
        operation: "read segment",
        path,
    })?;
    let (len, _) = decode_frame_header(&frame);
    Ok(offset + FRAME_HEADER_LEN as u64 + u64::from(len) == file_len)
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
