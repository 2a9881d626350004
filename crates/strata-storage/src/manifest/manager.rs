//! [`ManifestManager`]: the manifest's files on the object store.
//!
//! Layout under `regions/{table}/{table}_{region:010}/manifest/`:
//!
//! ```text
//! {version:020}.json        one RegionMetaActionList per version (version 0 = creation),
//!                           as {"format":2,"crc32c":N,"actions":[...]}
//! {version:020}.checkpoint  the whole RegionManifest as of that version
//! _last_checkpoint          {version, size, checksum}: which checkpoint to start from
//! ```
//!
//! Writing a checkpoint: the checkpoint file, then `_last_checkpoint` (so it never points at
//! a missing or partial checkpoint), then delete the deltas it covers and older checkpoints
//! (failures there are only logged). Opening: the checkpoint named by `_last_checkpoint`
//! (size and crc32c checked), then every later delta in order; a gap in the versions, an
//! unreadable delta or a bad checkpoint is [`ManifestError::Corrupted`] naming the file.
//! Objects are written whole or not at all (object stores are atomic per object; the `fs`
//! store writes through a temporary file and renames).
//!
//! **Fencing.** Deltas (and checkpoint files) are created only if their name is free —
//! OpenDAL's `if_not_exists`: `If-None-Match: *` on S3, an atomic `link` on the local
//! file system ([`DurableFsLayer`](crate::DurableFsLayer)) — so two engines that both
//! believe they lead a region can never both commit version n+1: the loser gets
//! [`ManifestError::Fenced`] and must stop writing. A create answered "exists" is read
//! back first: when the object holds exactly our bytes, it was our own earlier attempt
//! (a retried request whose first try landed), not a rival's. Before a checkpoint moves
//! `_last_checkpoint`, the directory is listed: a newer delta or checkpoint means another
//! writer is ahead, and the pointer is left alone (it only ever moves forward, short of
//! a writer that stalls between that listing and its write — the window SlateDB's RFC
//! names too; leases bound it). A checkpoint deletes the deltas it covers, which frees
//! their names: a stalled writer's create of such a version would succeed. So after each
//! create, `_last_checkpoint` is read: naming this version or a later one, it means the
//! delta is covered — invisible — and the commit is fenced too (its delta deleted).

use opendal::{ErrorKind, Operator};
use serde::{Deserialize, Serialize};
use snafu::{ResultExt, Snafu, ensure};
use strata_request::{RegionId, RegionMetadata, RegionOptions};

use super::{RegionManifest, RegionMetaAction, RegionMetaActionList, codec};
use crate::object_store::region_manifest_dir;

const LAST_CHECKPOINT: &str = "_last_checkpoint";

/// Most listings an open reads when files it listed keep vanishing (a writer checkpointing
/// in another process deletes the deltas a checkpoint covers).
const OPEN_ATTEMPTS: usize = 10;

/// The end of a gap's `Corrupted` reason. A directory listing is no snapshot: beside a
/// writer's first checkpoint it can miss the `_last_checkpoint` just renamed into place
/// and the covered deltas just deleted, and so show a gap that is not there. An open
/// lists again on a gap; one still there after [`OPEN_ATTEMPTS`] listings is real.
const GAP: &str = "is missing before it";

/// Manifest settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ManifestConfig {
    /// Write a checkpoint every this many versions; 0 disables checkpoints.
    pub checkpoint_distance: u64,
}

impl ManifestConfig {
    /// A checkpoint every `checkpoint_distance` versions (0: after every version).
    pub fn new(checkpoint_distance: u64) -> Self {
        Self {
            checkpoint_distance,
        }
    }
}

impl Default for ManifestConfig {
    fn default() -> Self {
        Self {
            checkpoint_distance: 10,
        }
    }
}

/// Errors of the manifest.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum ManifestError {
    /// The object store failed.
    #[snafu(display("manifest: {operation} {path}: {source}"))]
    ObjectStore {
        /// What was being done.
        operation: &'static str,
        /// The object.
        path: String,
        /// OpenDAL's error.
        #[snafu(source(from(opendal::Error, Box::new)))]
        source: Box<opendal::Error>,
    },
    /// A manifest file is damaged or inconsistent.
    #[snafu(display("manifest file {path} is corrupted: {reason}"))]
    Corrupted {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Another writer committed this version first: the region has a new leader.
    #[snafu(display(
        "region {region_id}: manifest version {version} was committed by another engine; this one is fenced out"
    ))]
    Fenced {
        /// The region.
        region_id: RegionId,
        /// The version this engine tried to commit.
        version: u64,
    },
    /// The version this engine tried to commit was taken, and a newer checkpoint already
    /// covers it: another engine committed past it, so this one is fenced out — and, as
    /// the version's delta is gone, whether it held this engine's edit (an earlier attempt
    /// of its own that landed) cannot be told: it may have persisted.
    #[snafu(display(
        "region {region_id}: manifest version {version} was taken and a newer checkpoint of another engine covers it; this one is fenced out (its edit may or may not be in that version)"
    ))]
    Superseded {
        /// The region.
        region_id: RegionId,
        /// The version this engine tried to commit.
        version: u64,
    },
    /// A manifest file is in a format newer than this build reads
    /// ([`DELTA_FORMAT`](crate::DELTA_FORMAT), [`CHECKPOINT_FORMAT`](crate::CHECKPOINT_FORMAT)).
    #[snafu(display(
        "manifest {what} {path} is in format {found}, newer than this build reads (format {newest} at most): open the region with a newer Strata build — or, if no newer build wrote it, the file is damaged (the format number is outside its checksum)"
    ))]
    NewerFormat {
        /// The file.
        path: String,
        /// Which kind of manifest file: `delta` or `checkpoint`.
        what: &'static str,
        /// Its format.
        found: u32,
        /// The newest format this build reads.
        newest: u32,
    },
    /// `create` found a manifest already there.
    #[snafu(display("region {region_id} already has a manifest"))]
    AlreadyExists {
        /// The region.
        region_id: RegionId,
    },
}

impl ManifestError {
    /// The coarse class of the error.
    pub fn kind(&self) -> strata_base::ErrorKind {
        use strata_base::ErrorKind;
        match self {
            ManifestError::ObjectStore { source, .. } => {
                crate::StorageError::object_store_kind(source)
            }
            ManifestError::Corrupted { .. } => ErrorKind::Corruption,
            ManifestError::NewerFormat { .. } => ErrorKind::NewerFormat,
            ManifestError::AlreadyExists { .. } => ErrorKind::InvalidRequest,
            ManifestError::Fenced { .. } | ManifestError::Superseded { .. } => ErrorKind::Fenced,
        }
    }

    /// Whether the update that failed with this error may be in the manifest anyway: an
    /// object-store write that reported an error may still have landed. Anything else (an
    /// edit that cannot be encoded, a version that already exists) certainly did not.
    pub fn may_have_persisted(&self) -> bool {
        matches!(
            self,
            ManifestError::ObjectStore { .. } | ManifestError::Superseded { .. }
        )
    }

    /// Whether another engine committed past this one: it must not write again.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            ManifestError::Fenced { .. } | ManifestError::Superseded { .. }
        )
    }

    /// One value of every variant — one [`ObjectStore`](Self::ObjectStore) per OpenDAL
    /// error kind ([`StorageError::object_store_samples`](crate::StorageError::object_store_samples))
    /// — for tests that walk every error (strata-engine's checks that its public error
    /// keeps each one's kind and retryability). Adding a variant fails to compile here
    /// until it is numbered, and then this panics until it has a sample.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn every_variant() -> Vec<Self> {
        let region_id = RegionId::new(1, 2);
        let mut samples: Vec<Self> = crate::StorageError::object_store_samples()
            .into_iter()
            .map(|source| ManifestError::ObjectStore {
                operation: "write delta",
                path: "manifest/00000000000000000001.json".into(),
                source: Box::new(source),
            })
            .collect();
        samples.extend([
            ManifestError::Corrupted {
                path: "manifest/00000000000000000001.json".into(),
                reason: "bad crc".into(),
            },
            ManifestError::Fenced {
                region_id,
                version: 1,
            },
            ManifestError::Superseded {
                region_id,
                version: 1,
            },
            ManifestError::NewerFormat {
                path: "manifest/00000000000000000001.json".into(),
                what: "delta",
                found: 9,
                newest: 3,
            },
            ManifestError::AlreadyExists { region_id },
        ]);
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &ManifestError| match error {
            ManifestError::ObjectStore { .. } => 0,
            ManifestError::Corrupted { .. } => 1,
            ManifestError::Fenced { .. } => 2,
            ManifestError::Superseded { .. } => 3,
            ManifestError::NewerFormat { .. } => 4,
            ManifestError::AlreadyExists { .. } => 5,
        };
        let mut sampled = [false; 6];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
    }
}

/// Checkpoint pointer, written last.
#[derive(Debug, Serialize, Deserialize)]
struct LastCheckpoint {
    version: u64,
    size: u64,
    checksum: u32,
}

/// Reads and writes one region's manifest.
#[derive(Debug)]
pub struct ManifestManager {
    store: Operator,
    dir: String,
    config: ManifestConfig,
    manifest: RegionManifest,
    last_checkpoint: Option<u64>,
    /// A delta whose create failed with a store error — it may have landed anyway:
    /// `(version, bytes, actions)`. The next update settles it first.
    uncertain: Option<(u64, Vec<u8>, RegionMetaActionList)>,
    /// The deletion of the files the last checkpoint covers, running in the background:
    /// a commit does not wait for it (on an object store each delete is a round trip).
    cleanup: Option<tokio::task::JoinHandle<()>>,
}

impl ManifestManager {
    /// Writes version 0 of a new region's manifest.
    pub async fn create(
        store: Operator,
        metadata: RegionMetadata,
        options: RegionOptions,
        config: ManifestConfig,
    ) -> Result<Self, ManifestError> {
        let region_id = metadata.region_id();
        let dir = region_manifest_dir(region_id);
        let listing = list(&store, &dir).await?;
        ensure!(
            listing.deltas.is_empty() && !listing.has_pointer,
            AlreadyExistsSnafu { region_id }
        );
        let actions = RegionMetaActionList::one(RegionMetaAction::Change {
            metadata: metadata.clone(),
            options: options.clone(),
        });
        if create_delta(&store, &delta_path(&dir, 0), &actions).await? != Created::Ours {
            return AlreadyExistsSnafu { region_id }.fail();
        }
        let mut manifest = RegionManifest::new(metadata, options, 0);
        manifest.apply(0, &actions);
        Ok(Self {
            store,
            dir,
            config,
            manifest,
            last_checkpoint: None,
            uncertain: None,
            cleanup: None,
        })
    }

    /// Opens region `region_id`'s manifest; `None` if the region has none.
    ///
    /// Never writes. Safe beside the manifest's writer in another process: when a file
    /// the listing named is gone by the time it is read (a checkpoint covered and deleted
    /// it), the directory is listed and read again.
    pub async fn open(
        store: Operator,
        region_id: RegionId,
        config: ManifestConfig,
    ) -> Result<Option<Self>, ManifestError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::open_once(store.clone(), region_id, config.clone()).await {
                Err(ManifestError::ObjectStore { source, path, .. })
                    if source.kind() == ErrorKind::NotFound && attempt < OPEN_ATTEMPTS =>
                {
                    tracing::debug!(
                        path,
                        attempt,
                        "a manifest file vanished while opening; listing again"
                    );
                }
                Err(ManifestError::Corrupted { path, reason })
                    if reason.ends_with(GAP) && attempt < OPEN_ATTEMPTS =>
                {
                    tracing::debug!(
                        path,
                        attempt,
                        "a gap in the manifest listing (a checkpoint beside it?); listing again"
                    );
                }
                result => return result,
            }
        }
    }

    async fn open_once(
        store: Operator,
        region_id: RegionId,
        config: ManifestConfig,
    ) -> Result<Option<Self>, ManifestError> {
        let dir = region_manifest_dir(region_id);
        let listing = list(&store, &dir).await?;
        let (mut state, last_checkpoint) = if listing.has_pointer {
            let (manifest, version) = read_checkpoint(&store, &dir).await?;
            (Some(manifest), Some(version))
        } else {
            (None, None)
        };
        let first = last_checkpoint.map_or(0, |v| v + 1);
        let mut expected = first;
        for &version in listing.deltas.iter().filter(|&&v| v >= first) {
            let path = delta_path(&dir, version);
            ensure!(
                version == expected,
                CorruptedSnafu {
                    path: &path,
                    reason: format!("version {expected} {GAP}"),
                }
            );
            let actions = read_delta(&store, &path).await?;
            let manifest = match state.as_mut() {
                Some(manifest) => manifest,
                None => {
                    let Some(RegionMetaAction::Change { metadata, options }) =
                        actions.actions.first()
                    else {
                        return CorruptedSnafu {
                            path,
                            reason: "the first version does not define the region schema",
                        }
                        .fail();
                    };
                    state.insert(RegionManifest::new(
                        metadata.clone(),
                        options.clone(),
                        version,
                    ))
                }
            };
            ensure!(
                manifest.metadata.region_id() == region_id,
                CorruptedSnafu {
                    path: &path,
                    reason: format!("belongs to region {}", manifest.metadata.region_id()),
                }
            );
            manifest.apply(version, &actions);
            expected = version + 1;
        }
        Ok(state.map(|manifest| Self {
            store,
            dir,
            config,
            manifest,
            last_checkpoint,
            uncertain: None,
            cleanup: None,
        }))
    }

    /// The current state.
    pub fn manifest(&self) -> &RegionManifest {
        &self.manifest
    }

    /// Reads versions committed since this state by another engine (a follower's sync);
    /// returns whether the state moved on. One listing when nothing is new.
    pub async fn sync(&mut self) -> Result<bool, ManifestError> {
        let listing = list(&self.store, &self.dir).await?;
        let newest = listing
            .deltas
            .iter()
            .chain(&listing.checkpoints)
            .copied()
            .max()
            .unwrap_or(0);
        if newest <= self.manifest.manifest_version {
            return Ok(false);
        }
        let region_id = self.manifest.metadata.region_id();
        let Some(fresh) = Self::open(self.store.clone(), region_id, self.config.clone()).await?
        else {
            return CorruptedSnafu {
                path: self.dir.clone(),
                reason: "the manifest vanished (the region was dropped?)",
            }
            .fail();
        };
        if fresh.manifest.manifest_version <= self.manifest.manifest_version {
            return Ok(false);
        }
        self.manifest = fresh.manifest;
        self.last_checkpoint = fresh.last_checkpoint;
        Ok(true)
    }

    /// Persists `actions` as the next version and applies them; returns the version.
    /// A checkpoint is written when due; a failed checkpoint is logged, not returned (the
    /// update itself is durable). [`ManifestError::Fenced`] when another engine committed
    /// that version first: nothing was written, and this manager must not be used to
    /// write again (its state is behind the store's).
    pub async fn update(&mut self, actions: RegionMetaActionList) -> Result<u64, ManifestError> {
        self.settle_uncertain().await?;
        let version = self.manifest.manifest_version + 1;
        let path = delta_path(&self.dir, version);
        let fenced = FencedSnafu {
            region_id: self.manifest.metadata.region_id(),
            version,
        };
        let bytes = actions.encode(&path)?;
        match create_bytes(&self.store, &path, bytes.clone()).await {
            Ok(Created::Ours) => {}
            Ok(Created::Theirs) => return fenced.fail(),
            Ok(Created::Vanished) => {
                return SupersededSnafu {
                    region_id: self.manifest.metadata.region_id(),
                    version,
                }
                .fail();
            }
            Err(error) => {
                if error.may_have_persisted() {
                    self.uncertain = Some((version, bytes, actions));
                }
                return Err(error);
            }
        }
        // The name was free — but a rival's checkpoint may have covered this version and
        // deleted its delta: then ours is invisible (opens start after the checkpoint).
        let covered = match self.checkpointed_at_or_after(version).await {
            Ok(covered) => covered,
            Err(error) => {
                // The delta is there; whether it counts is settled by the next update.
                self.uncertain = Some((version, bytes, actions));
                return Err(error);
            }
        };
        if covered {
            if let Err(error) = self.store.delete(&path).await {
                tracing::warn!(path, %error, "cannot delete a delta a newer checkpoint covers");
            }
            return fenced.fail();
        }
        self.manifest.apply(version, &actions);
        let due = self.config.checkpoint_distance > 0
            && version - self.last_checkpoint.unwrap_or(0) >= self.config.checkpoint_distance;
        if due {
            match self.checkpoint(version).await {
                Ok(()) => self.last_checkpoint = Some(version),
                Err(error) => {
                    tracing::warn!(dir = self.dir, version, %error, "manifest checkpoint failed; will retry");
                }
            }
        }
        Ok(version)
    }

    /// Settles a delta whose create reported a store error (or whose coverage check
    /// failed): if it landed (the object holds exactly its bytes) it is deleted — its
    /// caller was told the update failed — and the next version takes its place, as an
    /// overwrite did before commits were conditional; if another engine's delta holds the
    /// name, this engine is fenced; if nothing is there, it never happened.
    async fn settle_uncertain(&mut self) -> Result<(), ManifestError> {
        let Some((version, bytes, actions)) = self.uncertain.take() else {
            return Ok(());
        };
        if version != self.manifest.manifest_version + 1 {
            return Ok(());
        }
        let path = delta_path(&self.dir, version);
        match self.store.read(&path).await {
            Ok(found) if found.to_vec() == bytes => {
                // It landed, but its caller was told it failed (and acted so: a flush kept
                // its memtables, a compaction its inputs). Take it back, so the manifest
                // says what the engine believes; the next version goes in its place.
                if let Err(source) = self.store.delete(&path).await {
                    self.uncertain = Some((version, bytes, actions));
                    return Err(ManifestError::ObjectStore {
                        operation: "delete a delta whose write was reported failed",
                        path,
                        source: Box::new(source),
                    });
                }
                tracing::info!(
                    path,
                    "a manifest delta reported as failed had landed; taken back"
                );
                Ok(())
            }
            Ok(_) => FencedSnafu {
                region_id: self.manifest.metadata.region_id(),
                version,
            }
            .fail(),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => {
                self.uncertain = Some((version, bytes, actions));
                Err(ManifestError::ObjectStore {
                    operation: "read back a delta whose write failed",
                    path,
                    source: Box::new(source),
                })
            }
        }
    }

    /// Whether `_last_checkpoint` names `version` or a later one. The pointer is written
    /// before the deltas a checkpoint covers are deleted, so a delta created after such a
    /// deletion always finds it here.
    async fn checkpointed_at_or_after(&self, version: u64) -> Result<bool, ManifestError> {
        let path = format!("{}/{LAST_CHECKPOINT}", self.dir);
        match self.store.read(&path).await {
            Ok(bytes) => {
                let pointer: LastCheckpoint =
                    serde_json::from_slice(&bytes.to_vec()).map_err(|e| {
                        ManifestError::Corrupted {
                            path: path.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                Ok(pointer.version >= version)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ManifestError::ObjectStore {
                operation: "read",
                path,
                source: Box::new(source),
            }),
        }
    }

    async fn checkpoint(&mut self, version: u64) -> Result<(), ManifestError> {
        let path = checkpoint_path(&self.dir, version);
        let bytes = codec::encode_checkpoint(&path, version, &self.manifest)?;
        let pointer = LastCheckpoint {
            version,
            size: bytes.len() as u64,
            checksum: crc32c::crc32c(&bytes),
        };
        if create_bytes(&self.store, &path, bytes).await? != Created::Ours {
            tracing::warn!(
                path,
                "another engine wrote this checkpoint; leaving the pointer alone"
            );
            return Ok(());
        }
        let listing = list(&self.store, &self.dir).await?;
        let ahead = listing
            .deltas
            .iter()
            .chain(&listing.checkpoints)
            .any(|&v| v > version);
        if ahead {
            tracing::warn!(
                dir = self.dir,
                version,
                "another engine committed past this checkpoint; leaving the pointer alone"
            );
            return Ok(());
        }
        write_json(
            &self.store,
            &format!("{}/{LAST_CHECKPOINT}", self.dir),
            &pointer,
        )
        .await?;
        // Everything the checkpoint covers can go, in the background; failures (or a stop
        // before it is done) only leave garbage behind, which the next checkpoint deletes.
        let stale: Vec<String> = listing
            .deltas
            .iter()
            .filter(|&&v| v <= version)
            .map(|&v| delta_path(&self.dir, v))
            .chain(
                listing
                    .checkpoints
                    .iter()
                    .filter(|&&v| v < version)
                    .map(|&v| checkpoint_path(&self.dir, v)),
            )
            .collect();
        self.wait_for_cleanup().await;
        let store = self.store.clone();
        let delete = async move {
            for path in stale {
                if let Err(error) = store.delete(&path).await {
                    tracing::warn!(path, %error, "cannot delete a manifest file covered by a checkpoint");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => self.cleanup = Some(runtime.spawn(delete)),
            Err(_) => delete.await,
        }
        Ok(())
    }

    /// Waits until the files the last checkpoint covers are deleted. Commits do not wait
    /// for that (it runs in the background); tests and tools that look at the manifest
    /// directory can.
    pub async fn wait_for_cleanup(&mut self) {
        if let Some(cleanup) = self.cleanup.take()
            && let Err(error) = cleanup.await
        {
            tracing::warn!(dir = self.dir, %error, "the deletion of checkpointed manifest files stopped");
        }
    }
}

fn delta_path(dir: &str, version: u64) -> String {
    format!("{dir}/{version:020}.json")
}

fn checkpoint_path(dir: &str, version: u64) -> String {
    format!("{dir}/{version:020}.checkpoint")
}

/// What the manifest directory holds.
#[derive(Debug, Default)]
struct Listing {
    deltas: Vec<u64>,
    checkpoints: Vec<u64>,
    has_pointer: bool,
}

async fn list(store: &Operator, dir: &str) -> Result<Listing, ManifestError> {
    let entries = match store.list(&format!("{dir}/")).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Listing::default()),
        Err(source) => {
            return Err(ManifestError::ObjectStore {
                operation: "list manifest",
                path: dir.to_string(),
                source: Box::new(source),
            });
        }
    };
    let mut listing = Listing::default();
    for entry in entries {
        let name = entry.name();
        if name == LAST_CHECKPOINT {
            listing.has_pointer = true;
        } else if let Some(v) = name.strip_suffix(".json").and_then(|v| v.parse().ok()) {
            listing.deltas.push(v);
        } else if let Some(v) = name
            .strip_suffix(".checkpoint")
            .and_then(|v| v.parse().ok())
        {
            listing.checkpoints.push(v);
        }
    }
    listing.deltas.sort_unstable();
    listing.checkpoints.sort_unstable();
    Ok(listing)
}

/// Reads the checkpoint `_last_checkpoint` points to; returns it and its version.
async fn read_checkpoint(
    store: &Operator,
    dir: &str,
) -> Result<(RegionManifest, u64), ManifestError> {
    let pointer: LastCheckpoint = read_json(store, &format!("{dir}/{LAST_CHECKPOINT}")).await?;
    let path = checkpoint_path(dir, pointer.version);
    let bytes = store
        .read(&path)
        .await
        .context(ObjectStoreSnafu {
            operation: "read checkpoint",
            path: &path,
        })?
        .to_vec();
    ensure!(
        bytes.len() as u64 == pointer.size && crc32c::crc32c(&bytes) == pointer.checksum,
        CorruptedSnafu {
            path: &path,
            reason: "size or checksum differs from _last_checkpoint",
        }
    );
    let (last_version, manifest) = codec::decode_checkpoint(&path, &bytes)?;
    ensure!(
        last_version == pointer.version,
        CorruptedSnafu {
            path,
            reason: "version differs from _last_checkpoint",
        }
    );
    Ok((manifest, pointer.version))
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    store: &Operator,
    path: &str,
) -> Result<T, ManifestError> {
    let bytes = store
        .read(path)
        .await
        .context(ObjectStoreSnafu {
            operation: "read",
            path,
        })?
        .to_vec();
    serde_json::from_slice(&bytes).map_err(|e| ManifestError::Corrupted {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// Creates a delta in its checksummed format unless its version exists; `false` when
/// another writer's delta holds the name.
async fn create_delta(
    store: &Operator,
    path: &str,
    actions: &RegionMetaActionList,
) -> Result<Created, ManifestError> {
    let bytes = actions.encode(path)?;
    create_bytes(store, path, bytes).await
}

/// What a conditional create found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Created {
    /// The object holds our bytes: written now, or by our own earlier attempt.
    Ours,
    /// Another writer's bytes hold the name.
    Theirs,
    /// The name was taken, and the object was gone when read back: a newer checkpoint's
    /// clean-up deleted it. Whose it was cannot be told (our own earlier attempt, answered
    /// "exists" on a retry, may have landed and been committed past).
    Vanished,
}

/// Creates the object unless it exists, and says whose the object under the name is.
async fn create_bytes(
    store: &Operator,
    path: &str,
    bytes: Vec<u8>,
) -> Result<Created, ManifestError> {
    match store
        .write_with(path, bytes.clone())
        .if_not_exists(true)
        .await
    {
        Ok(_) => Ok(Created::Ours),
        Err(error) if error.kind() == ErrorKind::ConditionNotMatch => {
            match store.read(path).await {
                Ok(existing) if existing.to_vec() == bytes => Ok(Created::Ours),
                Ok(_) => Ok(Created::Theirs),
                Err(error) if error.kind() == ErrorKind::NotFound => Ok(Created::Vanished),
                Err(source) => Err(ManifestError::ObjectStore {
                    operation: "read back after a conditional create",
                    path: path.to_string(),
                    source: Box::new(source),
                }),
            }
        }
        Err(source) => Err(ManifestError::ObjectStore {
            operation: "create",
            path: path.to_string(),
            source: Box::new(source),
        }),
    }
}

/// Reads a delta and checks its checksum.
async fn read_delta(store: &Operator, path: &str) -> Result<RegionMetaActionList, ManifestError> {
    let bytes = store
        .read(path)
        .await
        .context(ObjectStoreSnafu {
            operation: "read",
            path,
        })?
        .to_vec();
    RegionMetaActionList::decode(path, &bytes)
}

async fn write_json<T: Serialize>(
    store: &Operator,
    path: &str,
    value: &T,
) -> Result<(), ManifestError> {
    write_bytes(
        store,
        path,
        serde_json::to_vec(value).map_err(|e| e.to_string()),
    )
    .await
}

/// Writes serialized bytes, or reports what could not be serialized.
async fn write_bytes(
    store: &Operator,
    path: &str,
    bytes: Result<Vec<u8>, String>,
) -> Result<(), ManifestError> {
    let bytes = bytes.map_err(|reason| ManifestError::Corrupted {
        path: path.to_string(),
        reason: format!("cannot serialize: {reason}"),
    })?;
    store.write(path, bytes).await.context(ObjectStoreSnafu {
        operation: "write",
        path,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
