//! [`ManifestCompactionCommitter`]: the usual [`CompactionCommitter`] — the region's
//! manifest, a state check, and the check that every input is still live, all under the
//! manifest lock.

use std::sync::Arc;

use async_trait::async_trait;
use strata_request::RegionId;
use strata_storage::{ManifestManager, RegionEdit, RegionMetaAction, RegionMetaActionList};

use crate::error::CompactionError;
use crate::job::{CommitError, CompactionCommitter};

/// The state check: `Ok` if a compaction may still commit, else why not.
pub type StateCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Commits compaction edits to a region's manifest when the region may change and every
/// file the edit removes is still live. Both checks run under the manifest lock, which
/// truncate, drop and flush commits also take, so nothing interleaves.
pub struct ManifestCompactionCommitter {
    manifest: Arc<tokio::sync::Mutex<ManifestManager>>,
    check: StateCheck,
    on_fenced: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for ManifestCompactionCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestCompactionCommitter")
            .finish_non_exhaustive()
    }
}

impl ManifestCompactionCommitter {
    /// Commits to `manifest` when `check` allows.
    pub fn new(
        manifest: Arc<tokio::sync::Mutex<ManifestManager>>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            manifest,
            check: Box::new(check),
            on_fenced: None,
        }
    }

    /// Runs `hook` when a commit is fenced out (another engine took the version), still
    /// under the manifest lock and before anyone hears of the failure.
    pub fn with_on_fenced(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_fenced = Some(Box::new(hook));
        self
    }

    /// Commits to `manifest` whenever the inputs are live (tools and tests without region
    /// state).
    pub fn unchecked(manifest: Arc<tokio::sync::Mutex<ManifestManager>>) -> Self {
        Self::new(manifest, || Ok(()))
    }
}

#[async_trait]
impl CompactionCommitter for ManifestCompactionCommitter {
    async fn commit(&self, region_id: RegionId, edit: &RegionEdit) -> Result<(), CommitError> {
        let mut manifest = self.manifest.lock().await;
        let stale = |reason: String| CommitError {
            error: CompactionError::Stale { region_id, reason },
            maybe_persisted: false,
        };
        (self.check)().map_err(stale)?;
        let live = manifest.manifest().files();
        if let Some(gone) = edit
            .files_to_remove
            .iter()
            .find(|id| !live.contains_key(id))
        {
            return Err(stale(format!(
                "input {gone} is no longer live (a truncate or another edit removed it)"
            )));
        }
        manifest
            .update(RegionMetaActionList::one(RegionMetaAction::Edit(
                edit.clone(),
            )))
            .await
            .map(|_| ())
            .map_err(|e| CommitError {
                maybe_persisted: e.may_have_persisted(),
                error: match e {
                    strata_storage::ManifestError::Fenced { .. } => {
                        if let Some(hook) = &self.on_fenced {
                            hook();
                        }
                        CompactionError::Fenced {
                            region_id,
                            reason: e.to_string(),
                        }
                    }
                    _ => CompactionError::Commit {
                        region_id,
                        reason: e.to_string(),
                    },
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use opendal::Operator;
    use strata_request::{ColumnDataType, ColumnSchema, RegionMetadataBuilder, RegionOptions};
    use strata_storage::{FileId, FileMeta, ManifestConfig};

    use super::*;

    fn file(region_id: RegionId) -> FileMeta {
        FileMeta {
            region_id,
            file_id: FileId::random(),
            level: 0,
            time_range: (0, 1),
            num_rows: 1,
            num_row_groups: 1,
            file_size: 1,
            max_sequence: 1,
            checksum: 0,
            num_deletes: None,
            time_slice: None,
        }
    }

    #[tokio::test]
    async fn an_edit_whose_inputs_are_no_longer_live_is_refused_and_nothing_is_persisted() {
        let region_id = RegionId::new(2, 2);
        let metadata = RegionMetadataBuilder::new(region_id)
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .build()
            .unwrap();
        let store = Operator::new(opendal::services::Memory::default()).unwrap();
        let mut manifest = ManifestManager::create(
            store,
            metadata,
            RegionOptions::default(),
            ManifestConfig::default(),
        )
        .await
        .unwrap();
        let live = file(region_id);
        manifest
            .update(RegionMetaActionList::one(RegionMetaAction::Edit(
                RegionEdit {
                    files_to_add: vec![live.clone()],
                    ..RegionEdit::default()
                },
            )))
            .await
            .unwrap();
        let committer =
            ManifestCompactionCommitter::unchecked(Arc::new(tokio::sync::Mutex::new(manifest)));
        let gone = file(region_id);
        let edit = |removed: &FileMeta| RegionEdit {
            files_to_add: vec![file(region_id)],
            files_to_remove: vec![removed.file_id],
            compaction_window_secs: Some(3_600),
            ..RegionEdit::default()
        };
        let refused = committer.commit(region_id, &edit(&gone)).await.unwrap_err();
        assert!(!refused.maybe_persisted);
        assert!(
            matches!(refused.error, CompactionError::Stale { .. }),
            "{:?}",
            refused.error
        );
        let version = committer
            .manifest
            .lock()
            .await
            .manifest()
            .manifest_version();
        assert_eq!(version, 1, "nothing persisted");

        committer.commit(region_id, &edit(&live)).await.unwrap();
        let guard = committer.manifest.lock().await;
        let state = guard.manifest();
        assert!(!state.files().contains_key(&live.file_id));
        assert_eq!(state.files().len(), 1);
        assert_eq!(state.compaction_window_secs(), Some(3_600));
    }
}
