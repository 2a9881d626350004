//! [`DurableFsLayer`]: makes every write and delete on a local-directory store durable —
//! names included — before it returns.
//!
//! OpenDAL's fs service writes an object to a temporary file, syncs it, and renames it into
//! place; it never syncs a directory. After a power loss (not a process crash: the page
//! cache survives those) the rename, a new directory, or a deletion may then be gone
//! although the call returned — a manifest delta the engine went on to rely on by
//! obsoleting the WAL entries it replaced, say. This layer closes that gap for the `fs`
//! store only (object stores are durable per object):
//! - after a write completes, the object's directory is synced (its new name), and every
//!   ancestor directory up to `/` not yet known durable has its parent synced (a new region
//!   directory's name, the store root's own);
//! - after deletes complete, the directories that held the deleted objects are synced;
//!   a deleted directory is forgotten as known durable, so a new one of the same name is
//!   synced again.
//!
//! It also makes a conditional create (`write_with(..).if_not_exists(true)`, what fenced
//! manifest commits use) atomic: OpenDAL's fs service checks for the target and then
//! renames over it — two writers can both pass the check. Here the bytes go to a synced
//! temporary file that is then renamed to the target name with `RENAME_NOREPLACE` (a hard
//! link where the file system lacks that flag): either fails if the name exists,
//! atomically, so exactly one of two racing creates wins (the loser gets
//! [`ErrorKind::ConditionNotMatch`], like S3's `If-None-Match: *` answering 412). Such
//! writes are buffered in memory until closed (manifest files are small).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use opendal::raw::*;
use opendal::*;

/// The layer; see the module docs. Built for the store's root directory.
#[derive(Clone)]
pub struct DurableFsLayer {
    dirs: Arc<DurableDirs>,
}

impl DurableFsLayer {
    /// A layer for an fs store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            dirs: Arc::new(DurableDirs {
                root: root.into(),
                known: Mutex::new(HashSet::new()),
            }),
        }
    }
}

impl fmt::Debug for DurableFsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableFsLayer")
            .field("root", &self.dirs.root)
            .finish()
    }
}

/// The store's root and the directories whose own name is known durable.
#[derive(Debug)]
struct DurableDirs {
    root: PathBuf,
    known: Mutex<HashSet<PathBuf>>,
}

/// Syncs `dir` (its entries become durable).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn io_error(operation: &'static str, path: &Path, error: &std::io::Error) -> Error {
    Error::new(ErrorKind::Unexpected, "cannot make a change durable")
        .with_operation(operation)
        .with_context("path", path.display().to_string())
        .with_context("error", error.to_string())
}

impl DurableDirs {
    fn local(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Makes the name of the object at `path` durable: syncs its directory, and makes
    /// that directory's own name durable (and so on up) unless known.
    fn make_name_durable(&self, path: &Path) -> std::io::Result<()> {
        let Some(dir) = path.parent() else {
            return Ok(());
        };
        sync_dir(dir)?;
        let mut current = dir;
        while let Some(parent) = current.parent() {
            let known = self
                .known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(current);
            if known {
                break;
            }
            sync_dir(parent)?;
            self.known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(current.to_path_buf());
            current = parent;
        }
        Ok(())
    }

    /// Makes deletions in the directories of `paths` durable; forgets deleted directories.
    fn make_deletions_durable(&self, paths: &[PathBuf]) -> std::io::Result<()> {
        {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            for path in paths {
                known.retain(|dir| !dir.starts_with(path));
            }
        }
        let dirs: HashSet<&Path> = paths.iter().filter_map(|p| p.parent()).collect();
        for dir in dirs {
            match sync_dir(dir) {
                Ok(()) => {}
                // The directory went too (a recursive delete): its parent holds the change.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(parent) = dir.parent() {
                        sync_dir(parent)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Layer for DurableFsLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(DurableService {
            inner,
            dirs: self.dirs.clone(),
        })
    }
}

struct DurableService {
    inner: Servicer,
    dirs: Arc<DurableDirs>,
}

impl fmt::Debug for DurableService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableService")
            .field("root", &self.dirs.root)
            .finish_non_exhaustive()
    }
}

impl Service for DurableService {
    type Reader = oio::Reader;
    type Writer = oio::Writer;
    type Lister = oio::Lister;
    type Deleter = oio::Deleter;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        let created = self.inner.create_dir(ctx, path, args).await?;
        let local = self.dirs.local(path.trim_end_matches('/'));
        let dirs = self.dirs.clone();
        let local_for_sync = local.clone();
        tokio::task::spawn_blocking(move || dirs.make_name_durable(&local_for_sync))
            .await
            .map_err(|e| io_error("create_dir", &local, &std::io::Error::other(e)))?
            .map_err(|e| io_error("create_dir", &local, &e))?;
        Ok(created)
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        self.inner.read(ctx, path, args)
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        if args.if_not_exists() {
            return Ok(Box::new(CreateNewWriter {
                bytes: Vec::new(),
                path: self.dirs.local(path),
                dirs: self.dirs.clone(),
            }));
        }
        let inner = self.inner.write(ctx, path, args)?;
        Ok(Box::new(DurableWriter {
            inner,
            path: self.dirs.local(path),
            dirs: self.dirs.clone(),
        }))
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        let inner = self.inner.delete(ctx)?;
        Ok(Box::new(DurableDeleter {
            inner,
            deleted: Vec::new(),
            dirs: self.dirs.clone(),
        }))
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        self.inner.list(ctx, path, args)
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(&self, ctx: &OperationContext, to: &str, args: OpCompose) -> Result<Self::Composer> {
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        let renamed = self.inner.rename(ctx, from, to, args).await?;
        let paths = [self.dirs.local(from), self.dirs.local(to)];
        let dirs = self.dirs.clone();
        let target = paths[1].clone();
        tokio::task::spawn_blocking(move || {
            dirs.make_deletions_durable(&paths[..1])?;
            dirs.make_name_durable(&paths[1])
        })
        .await
        .map_err(|e| io_error("rename", &target, &std::io::Error::other(e)))?
        .map_err(|e| io_error("rename", &target, &e))?;
        Ok(renamed)
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

/// A writer whose close returns once the object's name is durable.
struct DurableWriter {
    inner: oio::Writer,
    path: PathBuf,
    dirs: Arc<DurableDirs>,
}

impl oio::Write for DurableWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.inner.write(bs).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        let metadata = self.inner.close().await?;
        let (dirs, path) = (self.dirs.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || dirs.make_name_durable(&path))
            .await
            .map_err(|e| io_error("write", &self.path, &std::io::Error::other(e)))?
            .map_err(|e| io_error("write", &self.path, &e))?;
        Ok(metadata)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

/// A conditional create: buffered, then made visible with `link` (see the module docs).
struct CreateNewWriter {
    bytes: Vec<u8>,
    path: PathBuf,
    dirs: Arc<DurableDirs>,
}

impl DurableDirs {
    /// Writes `bytes` to a synced temporary file beside the store's other temporaries and
    /// links it to `target` unless `target` exists; the new name is made durable.
    fn create_new(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let io = |operation, error: std::io::Error| io_error(operation, target, &error);
        let parent = target.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(|e| io("create parent directory", e))?;
        let staging_dir = self.root.join(".tmp");
        std::fs::create_dir_all(&staging_dir).map_err(|e| io("create staging directory", e))?;
        let staging = staging_dir.join(format!("create-{}", uuid::Uuid::new_v4()));
        let written = std::fs::File::create_new(&staging).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        let placed = written.and_then(|()| place_new(&staging, target));
        // Gone after a rename; a leftover (failure, or the link fallback) is only garbage
        // under `.tmp`.
        let _ = std::fs::remove_file(&staging);
        match placed {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::new(
                    ErrorKind::ConditionNotMatch,
                    "the object already exists (if_not_exists)",
                )
                .with_operation("write")
                .with_context("path", target.display().to_string()));
            }
            Err(error) => return Err(io("write", error)),
        }
        self.make_name_durable(target)
            .map_err(|e| io("make the new object durable", e))
    }
}

/// Moves `from` to `to` unless `to` exists (`AlreadyExists` then), atomically: Linux's
/// `renameat2(RENAME_NOREPLACE)`, or a hard link where the file system does not support
/// that flag (and on other systems).
fn place_new(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::ENOTSUP) => {}
            Err(errno) => return Err(std::io::Error::from(errno)),
        }
    }
    std::fs::hard_link(from, to)
}

impl oio::Write for CreateNewWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        for chunk in bs {
            self.bytes.extend_from_slice(&chunk);
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<Metadata> {
        let (dirs, path) = (self.dirs.clone(), self.path.clone());
        let bytes = std::mem::take(&mut self.bytes);
        let len = bytes.len() as u64;
        tokio::task::spawn_blocking(move || dirs.create_new(&path, &bytes))
            .await
            .map_err(|e| io_error("write", &self.path, &std::io::Error::other(e)))??;
        Ok(MetadataBuilder::file(len).build())
    }

    async fn abort(&mut self) -> Result<()> {
        self.bytes.clear();
        Ok(())
    }
}

/// A deleter whose close returns once the deletions are durable.
struct DurableDeleter {
    inner: oio::Deleter,
    deleted: Vec<PathBuf>,
    dirs: Arc<DurableDirs>,
}

impl oio::Delete for DurableDeleter {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        self.inner.delete(path, args).await?;
        self.deleted
            .push(self.dirs.local(path.trim_end_matches('/')));
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close().await?;
        let (dirs, deleted) = (self.dirs.clone(), std::mem::take(&mut self.deleted));
        let first = deleted.first().cloned().unwrap_or_default();
        tokio::task::spawn_blocking(move || dirs.make_deletions_durable(&deleted))
            .await
            .map_err(|e| io_error("delete", &first, &std::io::Error::other(e)))?
            .map_err(|e| io_error("delete", &first, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(root: &Path) -> Operator {
        let builder = opendal::services::Fs::default()
            .root(&root.to_string_lossy())
            .atomic_write_dir(&root.join(".tmp").to_string_lossy());
        Operator::new(builder)
            .expect("fs operator")
            .layer(DurableFsLayer::new(root))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_conditional_creates_have_exactly_one_winner_whose_bytes_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        for round in 0..20 {
            let path = format!("a/b/{round}.json");
            let tasks: Vec<_> = (0..4u8)
                .map(|writer| {
                    let (store, path) = (store.clone(), path.clone());
                    tokio::spawn(async move {
                        let result = store
                            .write_with(&path, vec![writer; 64])
                            .if_not_exists(true)
                            .await;
                        (writer, result)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                let (writer, result) = task.await.expect("task");
                match result {
                    Ok(_) => winners.push(writer),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::ConditionNotMatch, "{e}"),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            let bytes = store.read(&path).await.expect("read").to_vec();
            assert_eq!(bytes, vec![winners[0]; 64], "round {round}");
        }
        // No staging file is left behind.
        let staging = std::fs::read_dir(dir.path().join(".tmp")).expect("staging dir");
        assert_eq!(staging.count(), 0);
    }

    #[tokio::test]
    async fn a_conditional_create_over_an_existing_object_fails_and_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        store.write("x", vec![1u8; 3]).await.expect("plain write");
        let error = store
            .write_with("x", vec![2u8; 3])
            .if_not_exists(true)
            .await
            .expect_err("the object exists");
        assert_eq!(error.kind(), ErrorKind::ConditionNotMatch);
        assert_eq!(store.read("x").await.expect("read").to_vec(), vec![1u8; 3]);
    }
}
