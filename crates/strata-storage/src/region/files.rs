//! [`RegionFiles`]: a region's objects in the store (mito2's access layer) — where they
//! live, and every way they are deleted: outputs a commit did not take, files a version
//! removed, files no manifest names, and the whole region after a drop.

use std::collections::BTreeMap;

use opendal::{ErrorKind as OpendalErrorKind, Operator};
use snafu::ResultExt;
use strata_request::RegionId;

use super::CommitError;
use crate::error::{ObjectStoreSnafu, StorageError};
use crate::object_store::{region_data_dir, region_dir};
use crate::sst::{FileId, FileMeta, delete_ssts};

/// One region's objects in `store`.
#[derive(Debug, Clone)]
pub struct RegionFiles {
    store: Operator,
    region_id: RegionId,
}

impl RegionFiles {
    /// The objects of `region_id` in `store`.
    pub fn new(store: Operator, region_id: RegionId) -> Self {
        Self { store, region_id }
    }

    /// The region.
    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// The store.
    pub fn store(&self) -> &Operator {
        &self.store
    }

    /// Where the region's SSTs live.
    pub fn data_dir(&self) -> String {
        region_data_dir(self.region_id)
    }

    /// The drop marker: while it exists, the region is being dropped (an open or create
    /// finishes the purge).
    pub fn drop_marker(&self) -> String {
        format!("{}/.dropping", region_dir(self.region_id))
    }

    /// Deletes SSTs written for an edit that certainly did not reach the manifest (a
    /// failed or cancelled flush or compaction). Best effort: leftovers are garbage,
    /// swept by the next read-write open.
    pub async fn delete_uncommitted(&self, files: &[FileMeta]) {
        delete_ssts(&self.store, &self.data_dir(), files, "an uncommitted SST").await;
    }

    /// The outputs of a flush or compaction whose commit failed with `error`: deleted
    /// when the edit certainly did not persist; kept otherwise — an object-store write
    /// that reported an error may still have landed, and the manifest may name them (the
    /// next read-write open sweeps them if it does not).
    pub async fn discard_after_failed_commit(&self, outputs: &[FileMeta], error: &CommitError) {
        if error.maybe_persisted() {
            tracing::warn!(region_id = %self.region_id, files = outputs.len(), %error, "a commit failed but may have been persisted; keeping its files");
        } else {
            self.delete_uncommitted(outputs).await;
        }
    }

    /// Deletes an SST the region's version removed, once its last reader let go.
    pub async fn delete_removed(&self, file: &FileMeta) {
        delete_ssts(
            &self.store,
            &self.data_dir(),
            std::slice::from_ref(file),
            "a removed SST (it is garbage now)",
        )
        .await;
    }

    /// Deletes the region's SSTs that `live` (the manifest's files) does not name:
    /// outputs of a flush or compaction that crashed before its commit, and removed
    /// files whose deletion a restart cut short. Only for a read-write open, before
    /// anything else runs for the region. Returns how many went; failures are logged.
    pub async fn sweep_unreferenced(&self, live: &BTreeMap<FileId, FileMeta>) -> usize {
        let region_id = self.region_id;
        let dir = format!("{}/", self.data_dir());
        let entries = match self.store.list(&dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == OpendalErrorKind::NotFound => return 0,
            Err(error) => {
                tracing::warn!(%region_id, %error, "cannot list the region's files to sweep unreferenced ones");
                return 0;
            }
        };
        let mut swept = 0usize;
        for entry in entries {
            let Some(id) = entry
                .name()
                .strip_suffix(".parquet")
                .and_then(|stem| stem.parse::<FileId>().ok())
            else {
                continue;
            };
            if live.contains_key(&id) {
                continue;
            }
            match self.store.delete(entry.path()).await {
                Ok(()) => swept += 1,
                Err(error) => {
                    tracing::warn!(%region_id, path = entry.path(), %error, "cannot delete an unreferenced SST");
                }
            }
        }
        if swept > 0 {
            tracing::info!(%region_id, swept, "deleted SST files the manifest does not name");
        }
        swept
    }

    /// Whether a drop of the region started (its marker exists).
    pub async fn is_dropping(&self) -> Result<bool, StorageError> {
        let marker = self.drop_marker();
        self.store.exists(&marker).await.context(ObjectStoreSnafu {
            operation: "check drop marker",
            path: marker,
        })
    }

    /// Writes the drop marker: from here on the drop is final, also across a crash.
    pub async fn mark_dropping(&self) -> Result<(), StorageError> {
        let marker = self.drop_marker();
        self.store
            .write(&marker, Vec::<u8>::new())
            .await
            .map(|_| ())
            .context(ObjectStoreSnafu {
                operation: "write drop marker",
                path: marker,
            })
    }

    /// Deletes every object of the region, the drop marker last (a crash midway leaves
    /// the marker, and the next open or create finishes the job).
    pub async fn purge(&self) -> Result<(), StorageError> {
        let dir = format!("{}/", region_dir(self.region_id));
        let marker = self.drop_marker();
        let entries =
            self.store
                .list_with(&dir)
                .recursive(true)
                .await
                .context(ObjectStoreSnafu {
                    operation: "list region files",
                    path: &dir,
                })?;
        for entry in entries {
            let path = entry.path();
            if path == marker || path.ends_with('/') {
                continue;
            }
            self.store.delete(path).await.context(ObjectStoreSnafu {
                operation: "delete region file",
                path,
            })?;
        }
        self.store.delete(&marker).await.context(ObjectStoreSnafu {
            operation: "delete drop marker",
            path: &marker,
        })?;
        // Directories (on file systems) go last; an object store has none.
        self.store
            .delete_with(&dir)
            .recursive(true)
            .await
            .context(ObjectStoreSnafu {
                operation: "remove region directory",
                path: &dir,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: RegionId = RegionId::new(9, 2);

    fn meta() -> FileMeta {
        crate::testing::file_meta(REGION)
    }

    async fn put(files: &RegionFiles, file: &FileMeta) {
        files
            .store()
            .write(&file.path(&files.data_dir()), vec![1u8])
            .await
            .unwrap();
    }

    async fn exists(files: &RegionFiles, file: &FileMeta) -> bool {
        files
            .store()
            .exists(&file.path(&files.data_dir()))
            .await
            .unwrap()
    }

    fn files() -> RegionFiles {
        let store = Operator::new(opendal::services::Memory::default()).unwrap();
        RegionFiles::new(store, REGION)
    }

    #[tokio::test]
    async fn the_sweep_deletes_exactly_the_ssts_the_manifest_does_not_name() {
        let files = files();
        let (live, orphan) = (meta(), meta());
        put(&files, &live).await;
        put(&files, &orphan).await;
        let other = format!("{}/notes.txt", files.data_dir());
        files.store().write(&other, vec![1u8]).await.unwrap();
        let named = BTreeMap::from([(live.file_id, live.clone())]);
        assert_eq!(files.sweep_unreferenced(&named).await, 1);
        assert!(exists(&files, &live).await);
        assert!(!exists(&files, &orphan).await);
        assert!(
            files.store().exists(&other).await.unwrap(),
            "not an SST: kept"
        );
        assert_eq!(files.sweep_unreferenced(&named).await, 0);
    }

    #[tokio::test]
    async fn uncommitted_and_removed_files_are_deleted_and_missing_ones_are_no_error() {
        let files = files();
        let (a, b, c) = (meta(), meta(), meta());
        put(&files, &a).await;
        put(&files, &b).await;
        put(&files, &c).await;
        files.delete_uncommitted(&[a.clone(), b.clone()]).await;
        files.delete_removed(&c).await;
        for file in [&a, &b, &c] {
            assert!(!exists(&files, file).await);
        }
        files.delete_uncommitted(&[a]).await;
    }

    #[tokio::test]
    async fn a_purge_removes_every_object_of_the_region_and_its_marker_last() {
        let files = files();
        let file = meta();
        put(&files, &file).await;
        let manifest = format!("{}/manifest/00000000000000000000.json", region_dir(REGION));
        files.store().write(&manifest, vec![1u8]).await.unwrap();
        let neighbour = RegionFiles::new(files.store().clone(), RegionId::new(9, 3));
        put(&neighbour, &meta()).await;
        assert!(!files.is_dropping().await.unwrap());
        files.mark_dropping().await.unwrap();
        assert!(files.is_dropping().await.unwrap());
        files.purge().await.unwrap();
        assert!(!files.is_dropping().await.unwrap());
        assert!(!exists(&files, &file).await);
        assert!(!files.store().exists(&manifest).await.unwrap());
        let left = neighbour
            .store()
            .list_with("regions/")
            .recursive(true)
            .await
            .unwrap();
        assert!(
            left.iter().any(|e| e.path().ends_with(".parquet")),
            "another region's files stay"
        );
    }
}
