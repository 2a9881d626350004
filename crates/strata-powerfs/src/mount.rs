//! [`PowerFs`]: a mounted [`Model`] that can lose power.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::fuse::{Activity, Server};
use crate::model::{Model, PowerOffReport};

/// A power-off test file system mounted at a directory.
///
/// Everything written through the mount lives in memory as a page cache would hold it
/// (see [`Model`]): data is durable once its file is synced, names once their directory
/// is. [`power_off`](Self::power_off) unmounts, throws away everything volatile, and
/// mounts the durable state again. Dropping it unmounts.
///
/// Every process using the mount must have exited before a power-off: unmounting waits
/// for their open files. Needs FUSE (`/dev/fuse`) and the right to mount (root, or the
/// `fusermount3` helper from the `fuse3` package).
pub struct PowerFs {
    model: Arc<Mutex<Model>>,
    activity: Arc<Activity>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    power_offs: u64,
}

impl std::fmt::Debug for PowerFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerFs")
            .field("mountpoint", &self.mountpoint)
            .field("mounted", &self.session.is_some())
            .field("power_offs", &self.power_offs)
            .finish()
    }
}

impl PowerFs {
    /// Mounts an empty file system at `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: impl AsRef<Path>) -> io::Result<Self> {
        let mut fs = Self {
            model: Arc::new(Mutex::new(Model::new())),
            activity: Arc::new(Activity::default()),
            mountpoint: mountpoint.as_ref().to_path_buf(),
            session: None,
            power_offs: 0,
        };
        fs.spawn()?;
        Ok(fs)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let (uid, gid) = ids();
        let server = Server::new(self.model.clone(), self.activity.clone(), uid, gid);
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("strata-powerfs".into()),
            MountOption::Subtype("strata-powerfs".into()),
        ];
        config.acl = SessionACL::Owner;
        config.n_threads = Some(2);
        self.session = Some(fuser::spawn_mount(server, &self.mountpoint, &config)?);
        Ok(())
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Operations that changed the file system so far (writes, size changes, syncs,
    /// creates, renames, unlinks), across power-offs.
    pub fn ops(&self) -> u64 {
        self.activity.ops()
    }

    /// Waits until [`ops`](Self::ops) reaches `target` or `timeout` passes; returns whether
    /// it was reached. Lets a test cut the power at a chosen point of a writer's work
    /// without sleeping.
    pub fn wait_for_ops(&self, target: u64, timeout: std::time::Duration) -> bool {
        self.activity.wait_for(target, timeout)
    }

    /// Freezes the file system after `limit` operations in all (counted as by
    /// [`ops`](Self::ops); `None`: never): the next changing operation waits, without
    /// effect, and fails with `EIO` when the power goes. With [`wait_for_ops`] reaching
    /// `limit + 1`, a test knows the writer is stopped exactly after operation `limit` —
    /// so it can cut the power at every step of a workload, one run each. A process killed
    /// while frozen dies only once its call is answered: kill it, call
    /// [`fail_frozen`](Self::fail_frozen), wait for it, then [`power_off`](Self::power_off).
    ///
    /// [`wait_for_ops`]: Self::wait_for_ops
    pub fn freeze_after(&self, limit: Option<u64>) {
        self.activity.set_limit(limit);
    }

    /// The power is going: operations frozen at the [`freeze_after`](Self::freeze_after)
    /// limit fail with `EIO` now, without effect, and so do later ones past it, until the
    /// next [`power_off`](Self::power_off).
    pub fn fail_frozen(&self) {
        self.activity.set_powering_off(true);
    }

    /// Power-offs so far.
    pub fn power_offs(&self) -> u64 {
        self.power_offs
    }

    /// Whether anything written is not durable yet.
    pub fn has_unsynced(&self) -> bool {
        self.lock().has_unsynced()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The power fails: unmounts, keeps only what was durable (with `tear`, a random
    /// prefix of each file's unsynced writes, the last cut at a random byte), and mounts
    /// that again. Every process that used the mount must have exited.
    pub fn power_off(&mut self, tear: Option<&mut impl rand::Rng>) -> io::Result<PowerOffReport> {
        // Operations frozen at the limit fail; none after them take effect.
        self.activity.set_powering_off(true);
        let unmounted = self.unmount_session();
        let report = self.lock().power_off(tear);
        self.activity.set_powering_off(false);
        unmounted?;
        self.power_offs += 1;
        self.spawn()?;
        Ok(report)
    }

    /// Detaches the mount at once (a lazy unmount: a descriptor some process still holds —
    /// a child forked by another test an instant before its `exec`, say — cannot make it
    /// fail with `EBUSY`), then waits for the connection to end.
    fn unmount_session(&mut self) -> io::Result<()> {
        match self.detach()?.map(BackgroundSession::join) {
            // The kernel may end the detached connection as aborted rather than
            // disconnected (its read fails `ECONNABORTED`, not `ENODEV`, which the session
            // loop takes as the end): either way the connection is over, which is all
            // this waits for. Seen once in CI under load.
            Some(Err(error))
                if error.raw_os_error() == Some(nix::errno::Errno::ECONNABORTED as i32) =>
            {
                Ok(())
            }
            Some(result) => result,
            None => Ok(()),
        }
    }

    fn detach(&mut self) -> io::Result<Option<BackgroundSession>> {
        let Some(session) = self.session.take() else {
            return Ok(None);
        };
        match nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // Not root: the setuid helper may detach it.
            Err(nix::errno::Errno::EPERM) => {
                let status = std::process::Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(&self.mountpoint)
                    .status()?;
                if !status.success() {
                    return Err(io::Error::other(format!(
                        "fusermount3 -u -z {} failed: {status}",
                        self.mountpoint.display()
                    )));
                }
            }
            Err(errno) => return Err(io::Error::from(errno)),
        }
        Ok(Some(session))
    }

    /// Unmounts (what was written stays in memory until this value is dropped).
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_session()
    }
}

impl Drop for PowerFs {
    /// Detaches the mount without waiting for its connection to end: a test that panics
    /// with a process still using the mount must not hang here.
    fn drop(&mut self) {
        if let Err(error) = self.detach() {
            tracing::warn!(%error, mountpoint = %self.mountpoint.display(), "cannot unmount the power-off file system");
        }
    }
}

/// This process's user and group ids, read from `/proc` (no `unsafe`).
fn ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or((0, 0), |m| (m.uid(), m.gid()))
}
