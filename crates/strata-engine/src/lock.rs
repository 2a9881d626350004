//! [`DirLock`]: one read-write engine per data directory.
//!
//! An exclusive OS file lock (`flock`) on `<dir>/LOCK`, the way RocksDB's and LevelDB's
//! `LOCK` files work: taken before anything in the directory is read or written, held as
//! long as the engine runs, and released by the OS when the process ends however it ends
//! (a crash or a SIGKILL leaves no stale lock behind). The holder writes its pid into the
//! file, so a second engine's error can name it. The lock is per open file description,
//! so it also keeps a second engine of the same process out. Read-only engines take no
//! lock and never touch the file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use snafu::{ResultExt, Snafu};
use strata_wal::{AppendResponse, Entry, EntryStream, LogStore, LogStoreRef, WalError};

use crate::config::{EngineConfig, WalProvider};

/// The lock file's name inside a locked directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Why a directory could not be locked.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum LockError {
    /// Another read-write engine holds the directory.
    #[snafu(display(
        "{} is in use by another read-write engine ({}); stop it first, or open read-only (strata scan / strata inspect do)",
        dir.display(),
        holder.map_or_else(|| "its pid is unknown".to_string(), |pid| format!("pid {pid}"))
    ))]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it into the lock file.
        holder: Option<u32>,
    },
    /// The lock file could not be created, locked or written.
    #[snafu(display("cannot lock {}: {operation}: {source}", path.display()))]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LockError {
    /// The coarse class of the error. An OS error only changed permissions (or another
    /// file system, one with locks) clear is not retryable; anything else may pass.
    pub fn kind(&self) -> strata_base::ErrorKind {
        use strata_base::ErrorKind;
        match self {
            LockError::InUse { .. } => ErrorKind::Locked,
            LockError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::InvalidRequest,
                std::io::ErrorKind::Unsupported => ErrorKind::Unsupported,
                _ => ErrorKind::Storage,
            },
        }
    }

    /// One value of every variant — [`Io`](Self::Io) with each class of OS error — for
    /// the walk that checks the engine's public error keeps each one's kind and
    /// retryability. Adding a variant fails to compile here until it is numbered, and
    /// then this panics until it has a sample.
    #[cfg(test)]
    pub(crate) fn every_variant() -> Vec<Self> {
        let io = |kind: std::io::ErrorKind| LockError::Io {
            operation: "open the lock file",
            path: PathBuf::from("/data/LOCK"),
            source: std::io::Error::from(kind),
        };
        let samples = vec![
            LockError::InUse {
                dir: PathBuf::from("/data"),
                holder: Some(7),
            },
            io(std::io::ErrorKind::Other),
            io(std::io::ErrorKind::PermissionDenied),
            io(std::io::ErrorKind::Unsupported),
        ];
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &LockError| match error {
            LockError::InUse { .. } => 0,
            LockError::Io { .. } => 1,
        };
        let mut sampled = [false; 2];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
    }
}

/// An exclusive lock on a directory, released when dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    path: PathBuf,
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, or fails at once with
    /// [`LockError::InUse`] naming the holder.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |operation| IoSnafu {
            operation,
            path: path.clone(),
        };
        std::fs::create_dir_all(dir).context(io("create the directory"))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .context(io("open the lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return InUseSnafu {
                    dir,
                    holder: read_holder(&mut file),
                }
                .fail();
            }
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    operation: "lock the lock file",
                    path,
                    source,
                });
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_data())
            .context(io("write the holder's pid"))?;
        tracing::debug!(path = %path.display(), "data directory locked");
        Ok(Self { path, _file: file })
    }

    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The locks a read-write engine holds: `<data_home>/LOCK`, and `<wal dir>/LOCK` when the
/// file WAL lives outside `data_home`.
///
/// [`EngineBuilder::build`](crate::EngineBuilder::build) takes them itself. A tool that
/// must work on the directory before the engine runs (say, open the WAL to salvage it)
/// takes them first with [`acquire`](Self::acquire) and hands them to
/// [`EngineBuilder::lock`](crate::EngineBuilder::lock), so nothing else can open the
/// directory in between. Dropping it releases them.
#[derive(Debug)]
pub struct DataDirLock {
    data_home: PathBuf,
    pub(crate) locks: Vec<DirLock>,
}

impl DataDirLock {
    /// Locks `config`'s data directory (created if missing), and its WAL directory when
    /// that lies outside; fails at once with an error of kind
    /// [`Locked`](crate::ErrorKind::Locked) naming the holder's pid.
    pub fn acquire(config: &EngineConfig) -> crate::Result<Self> {
        let home = DirLock::acquire(&config.data_home).context(crate::error::LockSnafu)?;
        let mut locks = vec![home];
        if config.wal.provider == WalProvider::File {
            let wal = config.wal_dir();
            let inside = std::fs::create_dir_all(&wal)
                .and_then(|()| {
                    Ok(wal
                        .canonicalize()?
                        .starts_with(config.data_home.canonicalize()?))
                })
                .context(IoSnafu {
                    operation: "create the WAL directory",
                    path: wal.clone(),
                })
                .context(crate::error::LockSnafu)?;
            if !inside {
                locks.push(DirLock::acquire(&wal).context(crate::error::LockSnafu)?);
            }
        }
        Ok(Self {
            data_home: config.data_home.clone(),
            locks,
        })
    }

    /// The data directory it locks.
    pub fn data_home(&self) -> &Path {
        &self.data_home
    }
}

/// The engine's log store, holding the directory locks: they are released only once the
/// log has stopped — by [`stop`](LogStore::stop), or when the last handle is dropped
/// (the log store first, then the locks) — so no second engine can open the directory
/// while this one's WAL writer may still write.
#[derive(Debug)]
pub(crate) struct LockedLogStore {
    inner: LogStoreRef,
    locks: Mutex<Vec<DirLock>>,
}

impl LockedLogStore {
    pub(crate) fn new(inner: LogStoreRef, locks: Vec<DirLock>) -> Self {
        Self {
            inner,
            locks: Mutex::new(locks),
        }
    }
}

#[async_trait]
impl LogStore for LockedLogStore {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        self.inner.append_batch(entries).await
    }

    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        self.inner.read(region_id, start_entry_id)
    }

    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError> {
        self.inner.obsolete(region_id, entry_id).await
    }

    async fn drop_region(&self, region_id: u64) -> Result<(), WalError> {
        self.inner.drop_region(region_id).await
    }

    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        self.inner.last_entry_id(region_id)
    }

    async fn stop(&self) -> Result<(), WalError> {
        let stopped = self.inner.stop().await;
        let released: Vec<DirLock> = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for lock in released {
            tracing::debug!(path = %lock.path().display(), "data directory unlocked");
        }
        stopped
    }
}

/// The pid the holder wrote, if it is readable.
fn read_holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_naming_the_holder_and_dropping_the_first_frees_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        match DirLock::acquire(dir.path()) {
            Err(LockError::InUse { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }

    /// The wrapper the engine puts around its WAL: a file log plus the directory lock,
    /// reopened over the same directory after each stop.
    struct LockedHarness {
        dir: tempfile::TempDir,
    }

    impl strata_wal::conformance::Harness for LockedHarness {
        type Store = LockedLogStore;
        fn open(&mut self) -> LockedLogStore {
            // The previous store released the lock at stop (or drop): taking it again
            // proves it did.
            let lock = DirLock::acquire(self.dir.path()).unwrap();
            let store = strata_wal::FileLogStore::open(
                self.dir.path(),
                strata_wal::FileLogStoreConfig::default(),
                None,
            )
            .unwrap();
            LockedLogStore::new(std::sync::Arc::new(store), vec![lock])
        }
        fn durable(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn the_locked_log_store_passes_the_log_store_conformance_suite() {
        strata_wal::conformance::check(|| LockedHarness {
            dir: tempfile::tempdir().unwrap(),
        })
        .await;
    }

    #[test]
    fn a_missing_directory_is_created_before_it_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let lock = DirLock::acquire(&nested).unwrap();
        assert!(lock.path().exists());
    }
}
