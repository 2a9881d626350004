//! The bytes of manifest files: deltas and checkpoints in every format this build reads
//! ([`DELTA_FORMAT`], [`CHECKPOINT_FORMAT`]), and the only shapes it writes.
//!
//! A file's `format` field is read first, on its own: a version newer than this build's is
//! [`ManifestError::NewerFormat`] (naming the file and both versions) before anything else
//! is parsed, so a newer build's fields are never mistaken for damage, nor dropped. Known
//! formats are then parsed strictly — every struct of an entry refuses fields it does not
//! know.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::manager::ManifestError;
use super::{RegionManifest, RegionMetaAction, RegionMetaActionList};
use crate::format::{CHECKPOINT_FORMAT, DELTA_FORMAT};

/// The oldest delta format with a checksum (format 1 is the bare action list).
const FIRST_CHECKSUMMED_DELTA: u32 = 2;

/// A file's `format` field alone (absent in the first format of each file).
#[derive(Deserialize)]
struct Probe {
    format: Option<u32>,
}

/// A checksummed delta as written and read: format 3 names its action list `changes`,
/// format 2 `actions` (renamed so that builds from before the format gate, some of which
/// read any `actions` list whatever its format, refuse format 3 instead of dropping what
/// they do not know).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeltaFile<'a> {
    format: u32,
    crc32c: u32,
    #[serde(borrow, alias = "actions")]
    changes: &'a RawValue,
}

/// A delta of format 1, written before deltas had a checksum.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyDelta {
    actions: Vec<RegionMetaAction>,
}

/// A checkpoint of format 2 and later.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile<S> {
    format: u32,
    last_version: u64,
    state: S,
}

/// A checkpoint of format 1.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyCheckpoint {
    last_version: u64,
    manifest: RegionManifest,
}

/// A delta file's bytes: `{"format":3,"crc32c":N,"changes":[...]}`, `N` the crc32c of the
/// action list's JSON exactly as written — plain JSON that any tool reads, and a flipped
/// byte anywhere in the actions is noticed.
pub(super) fn encode_delta(
    path: &str,
    list: &RegionMetaActionList,
) -> Result<Vec<u8>, ManifestError> {
    let encode = || -> Result<Vec<u8>, serde_json::Error> {
        let actions = RawValue::from_string(serde_json::to_string(&list.actions)?)?;
        serde_json::to_vec(&DeltaFile {
            format: DELTA_FORMAT,
            crc32c: crc32c::crc32c(actions.get().as_bytes()),
            changes: &actions,
        })
    };
    encode().map_err(|e| cannot_serialize(path, &e))
}

/// Reads a delta file of any format up to [`DELTA_FORMAT`] (format 1 only in exactly its
/// own shape, so a damaged checksummed file never passes for one).
pub(super) fn decode_delta(
    path: &str,
    bytes: &[u8],
) -> Result<RegionMetaActionList, ManifestError> {
    let actions = match probe(path, bytes, "delta", DELTA_FORMAT)? {
        None => parse::<LegacyDelta>(path, bytes)?.actions,
        Some(format) if format >= FIRST_CHECKSUMMED_DELTA => {
            let file = parse::<DeltaFile<'_>>(path, bytes)?;
            if crc32c::crc32c(file.changes.get().as_bytes()) != file.crc32c {
                return Err(corrupted(path, "checksum mismatch".into()));
            }
            parse(path, file.changes.get().as_bytes())?
        }
        Some(format) => return Err(corrupted(path, format!("unknown delta format {format}"))),
    };
    Ok(RegionMetaActionList { actions })
}

/// A checkpoint file's bytes (format [`CHECKPOINT_FORMAT`]) of `state` at `last_version`.
pub(super) fn encode_checkpoint(
    path: &str,
    last_version: u64,
    state: &RegionManifest,
) -> Result<Vec<u8>, ManifestError> {
    serde_json::to_vec(&CheckpointFile {
        format: CHECKPOINT_FORMAT,
        last_version,
        state,
    })
    .map_err(|e| cannot_serialize(path, &e))
}

/// Reads a checkpoint file of any format up to [`CHECKPOINT_FORMAT`]: its last version
/// and the state.
pub(super) fn decode_checkpoint(
    path: &str,
    bytes: &[u8],
) -> Result<(u64, RegionManifest), ManifestError> {
    match probe(path, bytes, "checkpoint", CHECKPOINT_FORMAT)? {
        None => {
            let file = parse::<LegacyCheckpoint>(path, bytes)?;
            Ok((file.last_version, file.manifest))
        }
        Some(CHECKPOINT_FORMAT) => {
            let file = parse::<CheckpointFile<RegionManifest>>(path, bytes)?;
            Ok((file.last_version, file.state))
        }
        Some(format) => Err(corrupted(
            path,
            format!("unknown checkpoint format {format}"),
        )),
    }
}

/// The file's format; a [`ManifestError::NewerFormat`] beyond `newest`.
fn probe(
    path: &str,
    bytes: &[u8],
    what: &'static str,
    newest: u32,
) -> Result<Option<u32>, ManifestError> {
    let format = parse::<Probe>(path, bytes)?.format;
    match format {
        Some(found) if found > newest => Err(ManifestError::NewerFormat {
            path: path.to_string(),
            what,
            found,
            newest,
        }),
        _ => Ok(format),
    }
}

fn parse<'a, T: Deserialize<'a>>(path: &str, bytes: &'a [u8]) -> Result<T, ManifestError> {
    serde_json::from_slice(bytes).map_err(|e| corrupted(path, e.to_string()))
}

fn corrupted(path: &str, reason: String) -> ManifestError {
    ManifestError::Corrupted {
        path: path.to_string(),
        reason,
    }
}

fn cannot_serialize(path: &str, error: &serde_json::Error) -> ManifestError {
    corrupted(path, format!("cannot serialize: {error}"))
}
