//! SST file lifetime: [`FileHandle`]s are shared by every version (and every scan) that
//! holds a file; a file removed from the region (truncate, a later compaction) is deleted
//! only when its last handle is dropped, so a reader never finds a file gone under it.
//! [`FileTracker`] counts a region's live handles, so dropping the whole region waits
//! until no reader holds any of its files.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use super::FileMeta;

/// Deletes SST files that were removed from their region once nothing reads them.
pub trait FilePurger: Send + Sync + fmt::Debug {
    /// `file` was removed and its last handle is gone: delete it (asynchronously; errors
    /// are the purger's to report — the file is garbage either way).
    fn purge(&self, file: &FileMeta);
}

/// Shared handle to a purger.
pub type FilePurgerRef = Arc<dyn FilePurger>;

/// One region's SST handles: how many are alive, and who deletes removed files.
#[derive(Debug)]
pub struct FileTracker {
    live: watch::Sender<usize>,
    purger: OnceLock<FilePurgerRef>,
}

impl FileTracker {
    /// A tracker with no handles and no purger (removed files are then left in place).
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            live: watch::channel(0).0,
            purger: OnceLock::new(),
        })
    }

    /// Sets who deletes removed files (once; later calls are ignored).
    pub fn set_purger(&self, purger: FilePurgerRef) {
        let _ = self.purger.set(purger);
    }

    /// Handles alive right now.
    pub fn live(&self) -> usize {
        *self.live.borrow()
    }

    /// Completes once no handle of this region is alive (at once if none is).
    pub async fn released(&self) {
        let mut live = self.live.subscribe();
        // The sender lives in `self`, so `wait_for` ends only when the count reaches 0.
        let _ = live.wait_for(|n| *n == 0).await;
    }
}

/// A shared reference to one SST file of a region.
#[derive(Clone)]
pub struct FileHandle(Arc<Inner>);

struct Inner {
    meta: FileMeta,
    tracker: Arc<FileTracker>,
    removed: AtomicBool,
}

impl fmt::Debug for FileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileHandle")
            .field("file_id", &self.0.meta.file_id)
            .field("removed", &self.0.removed.load(Ordering::Relaxed))
            .finish()
    }
}

impl FileHandle {
    /// A handle to `meta`, counted by `tracker`.
    pub fn new(meta: FileMeta, tracker: &Arc<FileTracker>) -> Self {
        tracker.live.send_modify(|n| *n += 1);
        Self(Arc::new(Inner {
            meta,
            tracker: tracker.clone(),
            removed: AtomicBool::new(false),
        }))
    }

    /// What the manifest records about the file.
    pub fn meta(&self) -> &FileMeta {
        &self.0.meta
    }

    /// The file left the region: delete it once the last handle is dropped.
    pub fn mark_removed(&self) {
        self.0.removed.store(true, Ordering::Release);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.removed.load(Ordering::Acquire) {
            match self.tracker.purger.get() {
                Some(purger) => purger.purge(&self.meta),
                None => {
                    tracing::debug!(file = %self.meta.file_id, "removed SST left in place: no purger")
                }
            }
        }
        self.tracker.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use strata_request::RegionId;

    use super::*;
    use crate::sst::FileId;

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<FileId>>);

    impl FilePurger for Recorder {
        fn purge(&self, file: &FileMeta) {
            self.0.lock().unwrap().push(file.file_id);
        }
    }

    fn meta() -> FileMeta {
        FileMeta {
            region_id: RegionId::new(1, 1),
            file_id: FileId::random(),
            level: 0,
            time_range: (0, 1),
            num_rows: 1,
            num_row_groups: 1,
            file_size: 10,
            max_sequence: 1,
            checksum: 0,
            num_deletes: None,
            time_slice: None,
        }
    }

    #[test]
    fn a_removed_file_is_purged_once_when_its_last_handle_drops_and_a_kept_one_never() {
        let tracker = FileTracker::new();
        let purged = Arc::new(Recorder::default());
        tracker.set_purger(purged.clone());
        let (removed, kept) = (meta(), meta());
        let a = FileHandle::new(removed.clone(), &tracker);
        let reader = a.clone();
        let b = FileHandle::new(kept, &tracker);
        assert_eq!(tracker.live(), 2);
        a.mark_removed();
        drop(a);
        assert!(
            purged.0.lock().unwrap().is_empty(),
            "a reader still holds it"
        );
        drop(reader);
        assert_eq!(*purged.0.lock().unwrap(), vec![removed.file_id]);
        drop(b);
        assert_eq!(
            purged.0.lock().unwrap().len(),
            1,
            "a kept file is never purged"
        );
        assert_eq!(tracker.live(), 0);
    }

    #[tokio::test]
    async fn released_waits_for_the_last_handle() {
        let tracker = FileTracker::new();
        tracker.released().await; // none alive: at once
        let handle = FileHandle::new(meta(), &tracker);
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.released().await }
        });
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        drop(handle);
        waiter.await.unwrap();
    }
}
