//! Segment files: creating a new one, reusing a reclaimed one, and keeping reclaimed files
//! for reuse.
//!
//! A segment's name always matches its header: a new segment is written under a temporary
//! name, synced, then renamed; a reused one is renamed to a temporary name (made durable
//! before anything else), gets its new header (synced), and only then takes its new name.
//! Opening the log deletes temporary files, so a crash — a power loss included — anywhere
//! in between leaves no segment whose name and header disagree.
//!
//! A reused file keeps the bytes of the segment it was: they come after this segment's last
//! group and never verify as its records (every checksum includes the segment's sequence
//! number, and sequence numbers only grow — also over kept files, see
//! [`FreeSegments::max_seq`]). A cleanly closed log cuts them off, so reopening finds no
//! tail; after a crash recovery cuts them off with the unfinished group.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use snafu::ResultExt;

use crate::error::{IoSnafu, WalError};
use crate::file::format::{self, HEADER_LEN};
use crate::file::index::Segment;
use crate::file::segment_path;

/// Suffix of a reclaimed segment kept for reuse.
pub(crate) const FREE_SUFFIX: &str = ".wal.free";

/// Path of the kept file of reclaimed segment `seq`.
pub(crate) fn free_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{FREE_SUFFIX}"))
}

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    pub(crate) segment: Arc<Segment>,
    /// A write handle, positioned at `len`.
    pub(crate) file: File,
    /// Where the log's valid bytes end (the next group is written here).
    pub(crate) len: u64,
    /// The file's size: more than `len` while a reused file still holds older bytes.
    pub(crate) file_len: u64,
}

impl ActiveSegment {
    /// Cuts off whatever the file holds past `len` (bytes of the segment a reused file
    /// was) and syncs, so the segment ends at its last group — what recovery expects of
    /// every segment but the last, and of a cleanly closed log.
    pub(crate) fn trim(&mut self) -> Result<(), WalError> {
        if self.file_len <= self.len {
            return Ok(());
        }
        self.file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data())
            .context(IoSnafu {
                operation: "cut a reused segment at its end",
                path: self.segment.path.clone(),
            })?;
        self.file_len = self.len;
        Ok(())
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
    publish(dir, &tmp, path, seq)
}

/// Makes the kept file `free` segment `seq`: renamed to a temporary name and the directory
/// synced, new header written and synced, renamed to the segment's name, directory synced.
///
/// The first directory sync matters under power loss: without it the file's old name
/// (its old segment, or the kept file's) may still be the durable one when its new header
/// already is, and recovery would find a segment whose header names another.
fn reuse_segment(dir: &Path, free: &Path, seq: u64) -> Result<ActiveSegment, WalError> {
    let path = segment_path(dir, seq);
    let tmp = path.with_extension("wal.tmp");
    let io = |operation, path: &Path| IoSnafu {
        operation,
        path: path.to_path_buf(),
    };
    std::fs::rename(free, &tmp).context(io("rename kept segment", &tmp))?;
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .write(true)
        .open(&tmp)
        .context(io("open kept segment", &tmp))?;
    file.write_all_at(&format::encode_header(seq), 0)
        .and_then(|()| file.sync_data())
        .context(io("write segment header", &tmp))?;
    drop(file);
    publish(dir, &tmp, path, seq)
}

/// Renames the prepared file `tmp` (its header synced) to segment `seq`'s `path`, syncs
/// the directory, and opens the segment for writing after its header.
fn publish(dir: &Path, tmp: &Path, path: PathBuf, seq: u64) -> Result<ActiveSegment, WalError> {
    std::fs::rename(tmp, &path).context(IoSnafu {
        operation: "rename segment",
        path: path.clone(),
    })?;
    sync_dir(dir)?;
    open_active(segment(seq, path)?, HEADER_LEN as u64)
}

fn segment(seq: u64, path: PathBuf) -> Result<Arc<Segment>, WalError> {
    let file = File::open(&path).context(IoSnafu {
        operation: "open segment",
        path: path.clone(),
    })?;
    Ok(Arc::new(Segment { seq, path, file }))
}

/// Opens `segment` for writing at `len` (its valid end).
pub(crate) fn open_active(segment: Arc<Segment>, len: u64) -> Result<ActiveSegment, WalError> {
    let io = |operation| IoSnafu {
        operation,
        path: segment.path.clone(),
    };
    let mut file = OpenOptions::new()
        .write(true)
        .open(&segment.path)
        .context(io("open segment for writing"))?;
    let file_len = file.metadata().context(io("stat segment"))?.len();
    file.seek(SeekFrom::Start(len))
        .context(io("seek to the end of the log"))?;
    Ok(ActiveSegment {
        segment,
        file,
        len,
        file_len,
    })
}

/// Syncs every ancestor directory of `dir`, up to `/`, so the names leading to it are
/// durable.
pub(crate) fn sync_ancestors(dir: &Path) -> Result<(), WalError> {
    let absolute = dir.canonicalize().context(IoSnafu {
        operation: "resolve WAL directory",
        path: dir,
    })?;
    for ancestor in absolute.ancestors().skip(1) {
        sync_dir(ancestor)?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).context(IoSnafu {
        operation: "sync WAL directory",
        path: dir,
    })
}

/// Reclaimed segment files kept for reuse, oldest first.
#[derive(Debug)]
pub(crate) struct FreeSegments {
    dir: PathBuf,
    keep: usize,
    files: VecDeque<(u64, PathBuf)>,
    max_seq: u64,
}

impl FreeSegments {
    /// Takes over the `found` files (`(seq, path)`, ascending) and keeps up to `keep` for
    /// reuse. With `prune`, the rest are deleted; without (a strict open changes nothing it
    /// need not), they are left on disk, and with `keep = 0` none is reused.
    pub(crate) fn new(
        dir: &Path,
        keep: usize,
        found: Vec<(u64, PathBuf)>,
        prune: bool,
    ) -> Result<Self, WalError> {
        let max_seq = found.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
        let mut files: VecDeque<_> = found.into();
        while prune && files.len() > keep {
            if let Some((_, path)) = files.pop_front() {
                std::fs::remove_file(&path).context(IoSnafu {
                    operation: "delete kept segment",
                    path,
                })?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            keep,
            files,
            max_seq,
        })
    }

    /// The highest sequence number a kept file ever had: a new log must start above it,
    /// so no older bytes in a kept file can verify as a record of a new segment.
    pub(crate) fn max_seq(&self) -> u64 {
        self.max_seq
    }

    /// Number of files kept.
    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// Disposes of a reclaimed segment: kept for reuse when there is room and nobody is
    /// reading it (a reader holds the `Arc`; a kept file is overwritten, a deleted one
    /// stays readable through open handles), deleted otherwise.
    pub(crate) fn reclaim(&mut self, segment: Arc<Segment>) -> Result<(), WalError> {
        let seq = segment.seq;
        let path = segment.path.clone();
        let unread = Arc::strong_count(&segment) == 1;
        drop(segment);
        if unread && self.files.len() < self.keep {
            let free = free_path(&self.dir, seq);
            std::fs::rename(&path, &free).context(IoSnafu {
                operation: "keep reclaimed segment",
                path,
            })?;
            self.max_seq = self.max_seq.max(seq);
            self.files.push_back((seq, free));
            return Ok(());
        }
        std::fs::remove_file(&path).context(IoSnafu {
            operation: "delete reclaimed segment",
            path,
        })
    }

    /// Starts segment `seq` in a kept file if there is one (falling back to a new file if
    /// reusing it fails), else in a new file.
    pub(crate) fn next_segment(&mut self, seq: u64) -> Result<ActiveSegment, WalError> {
        if self.keep > 0
            && let Some((_, free)) = self.files.pop_front()
        {
            match reuse_segment(&self.dir, &free, seq) {
                Ok(active) => return Ok(active),
                Err(error) => {
                    tracing::warn!(%error, "cannot reuse a kept WAL segment; creating a new one");
                }
            }
        }
        create_segment(&self.dir, seq)
    }
}
