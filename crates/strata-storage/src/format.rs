//! On-disk format versions: the one place that says which version of each file this build
//! writes and the newest it reads.
//!
//! Every file Strata persists outside the WAL carries its format: an SST in its Parquet
//! footer ([`SST_FORMAT_KEY`]), a manifest delta and a checkpoint in their `format` field.
//! A reader meets a version newer than it knows with [`NewerFormat`]-kind errors naming
//! the file and both versions ([`StorageError::NewerFormat`](crate::StorageError),
//! [`ManifestError::NewerFormat`](crate::ManifestError)) — never by guessing — and refuses
//! manifest entries with fields it does not know instead of dropping them. A change to any
//! format bumps its constant here, adds a golden fixture (`cargo xtask golden`) and a row
//! to the compatibility table in `docs/architecture.md`.
//!
//! [`NewerFormat`]: strata_base::ErrorKind::NewerFormat

/// The SST format this build writes, and the newest it reads.
///
/// - 1: one run sorted by (primary key, timestamp, sequence descending). Files without
///   [`SST_FORMAT_KEY`] and without a time-slice width are format 1.
/// - 2: time slices — rows slice by slice, each slice sorted by key (the width under
///   [`TIME_SLICE_KEY`](crate::TIME_SLICE_KEY)). Builds between time slices and this gate
///   wrote such files without [`SST_FORMAT_KEY`]; a width alone marks them.
pub const SST_FORMAT: u32 = 2;

/// Key-value metadata key of an SST's footer holding its format (decimal).
pub const SST_FORMAT_KEY: &str = "strata.format";

/// The manifest delta format this build writes, and the newest it reads.
///
/// - 1: `{"actions":[...]}`, no checksum.
/// - 2: `{"format":2,"crc32c":N,"actions":[...]}`; files may carry time-slice widths
///   (a build from before time slices drops them and must not read these).
/// - 3: `{"format":3,"crc32c":N,"changes":[...]}`, from builds that refuse unknown fields
///   and newer formats; the list renamed so that every older build refuses it (builds
///   before format 2 read an `actions` list whatever the format says).
pub const DELTA_FORMAT: u32 = 3;

/// The manifest checkpoint format this build writes, and the newest it reads.
///
/// - 1: `{"last_version":N,"manifest":{...}}`.
/// - 2: `{"format":2,"last_version":N,"state":{...}}` — the state renamed so that builds
///   from before this gate, which ignore a `format` field, refuse it rather than drop
///   what they do not know.
pub const CHECKPOINT_FORMAT: u32 = 2;
