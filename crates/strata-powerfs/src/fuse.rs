//! The FUSE server: every kernel request becomes an operation on the shared [`Model`].
//! `fsync` and `fdatasync` of a file make its data durable, `fsync` of a directory its
//! entries; nothing else does.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Attr, Errno, Kind, Model};

/// How long the kernel may cache names and attributes. Every change goes through the
/// kernel, and a power-off remounts (dropping every cache), so caching is safe.
const TTL: Duration = Duration::from_secs(1);

/// Counts the operations that change the file system (writes, size changes, syncs,
/// creates, renames, unlinks), so a test can cut the power after a given number of them —
/// or freeze the file system right there: past the limit an operation waits, and fails
/// without effect once the power goes.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    state: Mutex<ActivityState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ActivityState {
    ops: u64,
    /// Operations past this many wait until the power goes.
    limit: Option<u64>,
    /// Set while the power goes: waiting operations fail.
    powering_off: bool,
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one changing operation; false if it must fail without effect (the file
    /// system froze at its limit and the power went).
    fn admit(&self) -> bool {
        let mut state = self.lock();
        state.ops += 1;
        let ops = state.ops;
        self.changed.notify_all();
        let state = self
            .changed
            .wait_while(state, |s| {
                s.limit.is_some_and(|limit| ops > limit) && !s.powering_off
            })
            .unwrap_or_else(PoisonError::into_inner);
        !state.powering_off || state.limit.is_none_or(|limit| ops <= limit)
    }

    /// Operations so far.
    pub(crate) fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Freezes the file system after `limit` operations in all
    /// (`None`: never).
    pub(crate) fn set_limit(&self, limit: Option<u64>) {
        self.lock().limit = limit;
        self.changed.notify_all();
    }

    /// The power goes (`true`) or is back (`false`): while it goes, frozen operations fail.
    pub(crate) fn set_powering_off(&self, powering_off: bool) {
        let mut state = self.lock();
        state.powering_off = powering_off;
        if !powering_off {
            state.limit = None;
        }
        self.changed.notify_all();
    }

    /// Waits until at least `target` operations happened, or `timeout` passed; returns
    /// whether the target was reached.
    pub(crate) fn wait_for(&self, target: u64, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.ops < target)
            .unwrap_or_else(PoisonError::into_inner);
        state.ops >= target
    }
}

/// Serves one mount of a model.
pub(crate) struct Server {
    model: Arc<Mutex<Model>>,
    activity: Arc<Activity>,
    handles: Mutex<HashMap<u64, u64>>,
    next_handle: AtomicU64,
    uid: u32,
    gid: u32,
}

impl Server {
    pub(crate) fn new(
        model: Arc<Mutex<Model>>,
        activity: Arc<Activity>,
        uid: u32,
        gid: u32,
    ) -> Self {
        Self {
            model,
            activity,
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            uid,
            gid,
        }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The model, for an operation that changes it (counted); `None` if the operation
    /// must fail (frozen, then the power went).
    fn change(&self) -> Option<MutexGuard<'_, Model>> {
        self.activity.admit().then(|| self.model())
    }

    fn attr(&self, attr: &Attr) -> FileAttr {
        // Modification times count changes: enough for anything that compares them.
        let time = UNIX_EPOCH + Duration::from_micros(attr.version);
        FileAttr {
            ino: INodeNo(attr.ino),
            size: attr.size,
            blocks: attr.size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: match attr.kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            },
            perm: attr.mode,
            nlink: attr.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Opens a handle to `ino`.
    fn open_handle(&self, model: &mut Model, ino: u64) -> Result<u64, Errno> {
        model.open(ino)?;
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(handle, ino);
        Ok(handle)
    }

    /// Runs a changing operation on the model; `EIO` if it must fail.
    fn apply<T>(&self, op: impl FnOnce(&mut Model) -> Result<T, Errno>) -> Result<T, Errno> {
        match self.change() {
            Some(mut model) => op(&mut model),
            None => Err(Errno::EIO),
        }
    }

    fn entry(&self, result: Result<u64, Errno>, model: &Model, reply: ReplyEntry) {
        match result.and_then(|ino| model.getattr(ino)) {
            Ok(attr) => reply.entry(&TTL, &self.attr(&attr), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl Filesystem for Server {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let model = self.model();
        self.entry(model.lookup(parent.0, name), &model, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &self.attr(&attr)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let Some(mut model) = self.change() else {
            reply.error(errno(Errno::EIO));
            return;
        };
        let result = (|| {
            if let Some(size) = size {
                model.set_len(ino.0, size)?;
            }
            if let Some(mode) = mode {
                model.chmod(ino.0, u16::try_from(mode & 0o7777).unwrap_or(0o644))?;
            }
            model.getattr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &self.attr(&attr)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let Some(mut model) = self.change() else {
            reply.error(errno(Errno::EIO));
            return;
        };
        let mode = u16::try_from(mode & !umask & 0o7777).unwrap_or(0o755);
        let result = model.mkdir(parent.0, name, mode);
        self.entry(result, &model, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.apply(|model| model.unlink(parent.0, name)), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.apply(|model| model.rmdir(parent.0, name)), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            reply.error(errno(Errno::EINVAL));
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        empty(
            self.apply(|model| model.rename(parent.0, name, newparent.0, newname, no_replace)),
            reply,
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.model();
        match self.open_handle(&mut model, ino.0) {
            Ok(handle) => reply.opened(FileHandle(handle), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(mut model) = self.change() else {
            reply.error(errno(Errno::EIO));
            return;
        };
        let mode = u16::try_from(mode & !umask & 0o7777).unwrap_or(0o644);
        let created = match model.create(parent.0, name, mode) {
            // The kernel asks to create after a lookup found nothing; should the name exist
            // by now, open it as `open(2)` without `O_EXCL` would.
            Err(Errno::EEXIST) if flags & libc::O_EXCL == 0 => {
                model.lookup(parent.0, name).and_then(|ino| {
                    if flags & libc::O_TRUNC != 0 {
                        model.set_len(ino, 0)?;
                    }
                    Ok(ino)
                })
            }
            other => other,
        };
        let result = created.and_then(|ino| {
            let handle = self.open_handle(&mut model, ino)?;
            Ok((model.getattr(ino)?, handle))
        });
        match result {
            Ok((attr, handle)) => reply.created(
                &TTL,
                &self.attr(&attr),
                Generation(0),
                FileHandle(handle),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let model = self.model();
        match model.read(ino.0, offset, size as usize) {
            Ok(bytes) => reply.data(bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.apply(|model| model.write(ino.0, offset, data)) {
            Ok(written) => reply.written(u32::try_from(written).unwrap_or(u32::MAX)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let known = self
            .handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&fh.0)
            .is_some();
        if known {
            self.model().release(ino.0);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.apply(|model| model.fsync(ino.0)), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().getattr(ino.0) {
            Ok(attr) if attr.kind == Kind::Dir => {
                reply.opened(FileHandle(0), FopenFlags::empty());
            }
            Ok(_) => reply.error(errno(Errno::ENOTDIR)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.model().readdir(ino.0) {
            Ok(entries) => entries,
            Err(e) => {
                reply.error(errno(e));
                return;
            }
        };
        let dots = [
            (OsStr::new(".").to_os_string(), ino.0, Kind::Dir),
            (OsStr::new("..").to_os_string(), ino.0, Kind::Dir),
        ];
        let all = dots.into_iter().chain(entries);
        for (index, (name, child, kind)) in all.enumerate().skip(offset as usize) {
            let kind = match kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            if reply.add(INodeNo(child), index as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.apply(|model| model.fsync(ino.0)), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
