//! The region manifest: the versioned record of a region's schema and files.
//!
//! Every change is a [`RegionMetaActionList`] persisted as one JSON delta per version;
//! [`RegionManifest`] is the state those deltas build. See [`ManifestManager`] for the
//! layout on the object store.

mod codec;
mod manager;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use strata_request::{RegionMetadata, RegionOptions};

use crate::sst::{FileId, FileMeta};
pub use manager::{ManifestConfig, ManifestError, ManifestManager};

/// One change to a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum RegionMetaAction {
    /// A new schema (and options): at creation and on alter.
    Change {
        /// The schema.
        metadata: RegionMetadata,
        /// The options.
        options: RegionOptions,
    },
    /// Files added or removed (flush, compaction) and the progress they represent.
    Edit(RegionEdit),
    /// Everything up to these ids is gone; all files are removed.
    Truncate {
        /// WAL entries up to this are obsolete.
        truncated_entry_id: u64,
        /// Rows up to this sequence are gone.
        truncated_sequence: u64,
    },
    /// The region is being dropped (recorded for the log; ignored when replaying).
    Remove,
    /// A new leader took the region over (`Engine::set_role(.., Leader)`), committed before
    /// its first write. Its commit of this version is what fences the previous leader out:
    /// that one's next commit finds the version taken.
    Leader {
        /// The new leader's epoch: one more than the manifest's.
        epoch: u64,
        /// WAL entries up to this id — of any engine — are flushed or void; the new
        /// leader's own entries come after it, so no engine ever replays another's.
        last_entry_id: u64,
    },
}

/// One line for tools (`strata inspect manifest`).
impl fmt::Display for RegionMetaAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Change { metadata, .. } => write!(
                f,
                "change (schema version {}, {} columns)",
                metadata.schema_version(),
                metadata.columns().len()
            ),
            Self::Edit(edit) => {
                write!(
                    f,
                    "edit (+{} files, -{} files, flushed entry id {:?}, flushed sequence {:?}",
                    edit.files_to_add.len(),
                    edit.files_to_remove.len(),
                    edit.flushed_entry_id,
                    edit.flushed_sequence
                )?;
                if let Some(window) = edit.compaction_window_secs {
                    write!(f, ", compaction window {window} s")?;
                }
                f.write_str(")")
            }
            Self::Truncate {
                truncated_entry_id,
                truncated_sequence,
            } => write!(
                f,
                "truncate (entry id {truncated_entry_id}, sequence {truncated_sequence})"
            ),
            Self::Remove => f.write_str("remove"),
            Self::Leader {
                epoch,
                last_entry_id,
            } => write!(f, "leader (epoch {epoch}, entries after {last_entry_id})"),
        }
    }
}

/// Files added and removed, with the WAL and sequence progress they make durable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RegionEdit {
    /// New SST files.
    #[serde(default)]
    pub files_to_add: Vec<FileMeta>,
    /// Files no longer part of the region.
    #[serde(default)]
    pub files_to_remove: Vec<FileId>,
    /// Every WAL entry up to this is in SST files.
    #[serde(default)]
    pub flushed_entry_id: Option<u64>,
    /// Every row up to this sequence is in SST files.
    #[serde(default)]
    pub flushed_sequence: Option<u64>,
    /// The last sequence known to be committed.
    #[serde(default)]
    pub committed_sequence: Option<u64>,
    /// The region's compaction time window in seconds, recorded by the first flush or
    /// compaction that chose it; once recorded it never changes (later values are
    /// ignored), so a restart never re-infers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction_window_secs: Option<u64>,
}

/// The actions of one manifest version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionMetaActionList {
    /// Applied in order.
    pub actions: Vec<RegionMetaAction>,
}

impl RegionMetaActionList {
    /// A list of one action.
    pub fn one(action: RegionMetaAction) -> Self {
        Self {
            actions: vec![action],
        }
    }

    /// The bytes of the delta file at `path` holding these actions, in the format this
    /// build writes ([`DELTA_FORMAT`](crate::DELTA_FORMAT)): `{"format":3,"crc32c":N,
    /// "changes":[...]}`, `N` the crc32c of the action list's JSON exactly as written.
    pub fn encode(&self, path: &str) -> Result<Vec<u8>, ManifestError> {
        codec::encode_delta(path, self)
    }

    /// Reads the delta file at `path`: any format up to
    /// [`DELTA_FORMAT`](crate::DELTA_FORMAT); a newer one is
    /// [`ManifestError::NewerFormat`], damage or an unknown field
    /// [`ManifestError::Corrupted`].
    pub fn decode(path: &str, bytes: &[u8]) -> Result<Self, ManifestError> {
        codec::decode_delta(path, bytes)
    }
}

/// A region's state as recorded by its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionManifest {
    /// Current schema.
    pub(crate) metadata: RegionMetadata,
    /// Current options.
    pub(crate) options: RegionOptions,
    /// Live SST files.
    pub(crate) files: BTreeMap<FileId, FileMeta>,
    /// Files removed by edits or truncation, awaiting deletion.
    pub(crate) removed_files: Vec<FileMeta>,
    /// Every WAL entry up to this is in SST files.
    pub(crate) flushed_entry_id: u64,
    /// Every row up to this sequence is in SST files.
    pub(crate) flushed_sequence: u64,
    /// Last committed sequence known to the manifest.
    pub(crate) committed_sequence: u64,
    /// Set by truncation: WAL entries up to this must not be replayed.
    pub(crate) truncated_entry_id: Option<u64>,
    /// The compaction time window in seconds, once chosen (never changed afterwards).
    #[serde(default)]
    pub(crate) compaction_window_secs: Option<u64>,
    /// The version that produced this state.
    pub(crate) manifest_version: u64,
    /// The epoch of the region's current leader: 0 until a leader took it over by a
    /// `Leader` action.
    #[serde(default)]
    pub(crate) leader_epoch: u64,
}

/// Read access; only this crate changes a `RegionManifest`.
impl RegionManifest {
    /// Current schema.
    pub fn metadata(&self) -> &RegionMetadata {
        &self.metadata
    }

    /// Current options.
    pub fn options(&self) -> &RegionOptions {
        &self.options
    }

    /// Live SST files.
    pub fn files(&self) -> &BTreeMap<FileId, FileMeta> {
        &self.files
    }

    /// Files removed by edits or truncation, awaiting deletion.
    pub fn removed_files(&self) -> &Vec<FileMeta> {
        &self.removed_files
    }

    /// Every WAL entry up to this is in SST files.
    pub fn flushed_entry_id(&self) -> u64 {
        self.flushed_entry_id
    }

    /// Every row up to this sequence is in SST files.
    pub fn flushed_sequence(&self) -> u64 {
        self.flushed_sequence
    }

    /// Last committed sequence known to the manifest.
    pub fn committed_sequence(&self) -> u64 {
        self.committed_sequence
    }

    /// Set by truncation: WAL entries up to this must not be replayed.
    pub fn truncated_entry_id(&self) -> Option<u64> {
        self.truncated_entry_id
    }

    /// The compaction time window in seconds, once chosen (never changed afterwards).
    pub fn compaction_window_secs(&self) -> Option<u64> {
        self.compaction_window_secs
    }

    /// The version that produced this state.
    pub fn manifest_version(&self) -> u64 {
        self.manifest_version
    }

    /// The epoch of the region's current leader (0: never taken over).
    pub fn leader_epoch(&self) -> u64 {
        self.leader_epoch
    }
}

impl RegionManifest {
    /// The state after the first `Change`.
    fn new(metadata: RegionMetadata, options: RegionOptions, version: u64) -> Self {
        Self {
            metadata,
            options,
            files: BTreeMap::new(),
            removed_files: Vec::new(),
            flushed_entry_id: 0,
            flushed_sequence: 0,
            committed_sequence: 0,
            truncated_entry_id: None,
            compaction_window_secs: None,
            manifest_version: version,
            leader_epoch: 0,
        }
    }

    /// Applies `actions` as version `version`. Progress ids only ever grow (`max`), except
    /// that truncation sets them exactly.
    pub(crate) fn apply(&mut self, version: u64, actions: &RegionMetaActionList) {
        for action in &actions.actions {
            match action {
                RegionMetaAction::Change { metadata, options } => {
                    self.metadata = metadata.clone();
                    self.options = options.clone();
                }
                RegionMetaAction::Edit(edit) => {
                    for file in &edit.files_to_add {
                        self.files.insert(file.file_id, file.clone());
                    }
                    for id in &edit.files_to_remove {
                        if let Some(file) = self.files.remove(id) {
                            self.removed_files.push(file);
                        }
                    }
                    let max = |current: &mut u64, new: Option<u64>| {
                        if let Some(new) = new {
                            *current = (*current).max(new);
                        }
                    };
                    max(&mut self.flushed_entry_id, edit.flushed_entry_id);
                    max(&mut self.flushed_sequence, edit.flushed_sequence);
                    max(&mut self.committed_sequence, edit.committed_sequence);
                    if self.compaction_window_secs.is_none() {
                        self.compaction_window_secs = edit.compaction_window_secs;
                    }
                }
                RegionMetaAction::Truncate {
                    truncated_entry_id,
                    truncated_sequence,
                } => {
                    self.flushed_entry_id = *truncated_entry_id;
                    self.flushed_sequence = *truncated_sequence;
                    self.committed_sequence = self.committed_sequence.max(*truncated_sequence);
                    self.truncated_entry_id = Some(*truncated_entry_id);
                    let files = std::mem::take(&mut self.files);
                    self.removed_files.extend(files.into_values());
                }
                RegionMetaAction::Remove => {}
                RegionMetaAction::Leader {
                    epoch,
                    last_entry_id,
                } => {
                    self.leader_epoch = self.leader_epoch.max(*epoch);
                    self.flushed_entry_id = self.flushed_entry_id.max(*last_entry_id);
                }
            }
        }
        self.manifest_version = version;
    }
}
