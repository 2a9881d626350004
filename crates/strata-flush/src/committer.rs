//! [`ManifestCommitter`]: the usual [`FlushCommitter`] — a region's manifest plus a state
//! check.

use std::sync::Arc;

use async_trait::async_trait;
use strata_request::RegionId;
use strata_storage::{ManifestManager, RegionMetaActionList};

use crate::error::FlushError;
use crate::job::{CommitError, FlushCommitter};
use crate::reason::FlushReason;

/// The state check: `Ok` if a flush with this reason may still commit, else why not.
pub type CommitCheck = Box<dyn Fn(FlushReason) -> Result<(), String> + Send + Sync>;

/// Commits flush edits to a region's manifest after `check` allows it. The check runs under
/// the manifest lock, so anything that changes the region's state while holding the same lock
/// (drop, truncate, a role change) cannot interleave with a commit.
pub struct ManifestCommitter {
    manifest: Arc<tokio::sync::Mutex<ManifestManager>>,
    check: CommitCheck,
    on_fenced: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for ManifestCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestCommitter").finish_non_exhaustive()
    }
}

impl ManifestCommitter {
    /// Commits to `manifest` when `check` allows.
    pub fn new(
        manifest: Arc<tokio::sync::Mutex<ManifestManager>>,
        check: impl Fn(FlushReason) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            manifest,
            check: Box::new(check),
            on_fenced: None,
        }
    }

    /// Runs `hook` when a commit is fenced out (another engine took the version), still
    /// under the manifest lock and before the flush's waiters hear of it — the region's
    /// owner turns it follower there, so nobody sees it lead after the error.
    pub fn with_on_fenced(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_fenced = Some(Box::new(hook));
        self
    }

    /// Commits to `manifest` unconditionally (for tools and benchmarks without region state).
    pub fn unchecked(manifest: Arc<tokio::sync::Mutex<ManifestManager>>) -> Self {
        Self::new(manifest, |_| Ok(()))
    }

    /// The manifest.
    pub fn manifest(&self) -> &Arc<tokio::sync::Mutex<ManifestManager>> {
        &self.manifest
    }
}

#[async_trait]
impl FlushCommitter for ManifestCommitter {
    async fn commit(
        &self,
        region_id: RegionId,
        reason: FlushReason,
        actions: RegionMetaActionList,
    ) -> Result<(), CommitError> {
        let mut manifest = self.manifest.lock().await;
        (self.check)(reason).map_err(|reason| CommitError {
            error: FlushError::RegionState { region_id, reason },
            maybe_persisted: false,
        })?;
        manifest
            .update(actions)
            .await
            .map(|_| ())
            .map_err(|e| CommitError {
                maybe_persisted: e.may_have_persisted(),
                error: match e {
                    strata_storage::ManifestError::Fenced { .. } => {
                        if let Some(hook) = &self.on_fenced {
                            hook();
                        }
                        FlushError::Fenced {
                            region_id,
                            reason: e.to_string(),
                        }
                    }
                    _ => FlushError::Commit {
                        region_id,
                        reason: e.to_string(),
                    },
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use opendal::Operator;
    use strata_request::{ColumnDataType, ColumnSchema, RegionMetadataBuilder, RegionOptions};
    use strata_storage::{ManifestConfig, RegionEdit, RegionMetaAction};

    use super::*;

    #[tokio::test]
    async fn commits_only_while_the_check_allows_and_says_nothing_was_persisted_otherwise() {
        let region_id = RegionId::new(3, 3);
        let metadata = RegionMetadataBuilder::new(region_id)
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .build()
            .unwrap();
        let store = Operator::new(opendal::services::Memory::default()).unwrap();
        let manifest = ManifestManager::create(
            store,
            metadata,
            RegionOptions::default(),
            ManifestConfig::default(),
        )
        .await
        .unwrap();
        let writable = Arc::new(AtomicBool::new(true));
        let committer = ManifestCommitter::new(Arc::new(tokio::sync::Mutex::new(manifest)), {
            let writable = writable.clone();
            move |reason| {
                if writable.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err(format!("region is not writable (flush reason {reason})"))
                }
            }
        });
        let edit = || {
            RegionMetaActionList::one(RegionMetaAction::Edit(RegionEdit {
                flushed_entry_id: Some(1),
                ..Default::default()
            }))
        };
        committer
            .commit(region_id, FlushReason::Manual, edit())
            .await
            .unwrap();
        assert_eq!(
            committer
                .manifest()
                .lock()
                .await
                .manifest()
                .manifest_version(),
            1
        );

        writable.store(false, Ordering::SeqCst);
        let err = committer
            .commit(region_id, FlushReason::Manual, edit())
            .await
            .unwrap_err();
        assert!(!err.maybe_persisted);
        assert!(
            matches!(err.error, FlushError::RegionState { .. }),
            "{:?}",
            err.error
        );
        assert_eq!(
            committer
                .manifest()
                .lock()
                .await
                .manifest()
                .manifest_version(),
            1
        );
    }
}
