//! [`EngineConfig`]: the engine's settings as serde data (TOML), with defaults that scale
//! with the machine and validation that names the bad key.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use strata_storage::{ManifestConfig, ObjectStoreConfig, SstWriteOptions};
use strata_wal::{FileLogStoreConfig, RecoveryMode, SyncPolicy};
use strata_worker::WorkerConfig;

use crate::error::{ConfigSnafu, Result};

/// The commented example configuration (every key at its documented default).
pub const EXAMPLE_CONFIG: &str = include_str!("../strata.example.toml");

/// Engine settings. Every key is optional; see `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Directory for local data: the WAL (`{data_home}/wal`) and, unless `object_store`
    /// says otherwise, the SST files and manifests.
    pub data_home: PathBuf,
    /// Region workers. Default: half the CPU cores, rounded up.
    pub num_workers: usize,
    /// Requests queued per worker before writers wait.
    pub worker_channel_size: usize,
    /// Most requests a worker handles per loop iteration.
    pub worker_request_batch_size: usize,
    /// Memtable memory at which writes stall; flushes start at half of it.
    /// Default: min(RAM / 8, 1 GiB).
    pub global_write_buffer_size: ByteSize,
    /// Memtable plus stalled-write memory at which writes are rejected. Default: twice
    /// `global_write_buffer_size`.
    pub global_write_buffer_reject_size: Option<ByteSize>,
    /// Memtable memory, in percent of `global_write_buffer_size`, from which writes are
    /// slowed down — paced engine-wide at the rate flushes release memory, falling to half
    /// that rate at the budget — before they stall at the budget: throughput then slopes
    /// instead of stopping. Between 50 (where flushes start) and 100 (no slowdown).
    pub write_slowdown_percent: u8,
    /// The pace of slowed-down writes (bytes per second) until flushes have been measured
    /// (RocksDB's `delayed_write_rate`).
    pub delayed_write_rate: ByteSize,
    /// Each region's own write-buffer limit, unless the region sets `write_buffer_size`:
    /// its writes stall at the limit and are rejected at twice it, a flush starts at half.
    /// `0B` (default): no per-region limit.
    pub default_region_write_buffer_size: ByteSize,
    /// Flush jobs at once. Default: half the CPU cores, rounded up.
    pub max_background_flushes: usize,
    /// Background file deletions at once.
    pub max_background_purges: usize,
    /// Region opens and creates (manifest read, WAL replay) at once, each off its worker
    /// so the worker's other regions keep being served; at engine start, call
    /// `Engine::open` for several regions concurrently (one task each) to use them.
    pub max_background_opens: usize,
    /// Flush a region that has not flushed for this long.
    #[serde(with = "humantime_serde")]
    pub auto_flush_interval: Duration,
    /// Replay WAL entries at or below a region's flushed entry id instead of failing.
    pub allow_stale_entries: bool,
    /// Write a manifest checkpoint every this many versions (0: never).
    pub manifest_checkpoint_distance: u64,
    /// SST files.
    pub sst: SstConfig,
    /// The write-ahead log.
    pub wal: WalConfig,
    /// Compaction.
    pub compaction: CompactionConfig,
    /// How long an SST file that compaction or a truncate removed (or a dropped region's
    /// files; a create or open of the same id cuts that short) stays on storage after
    /// this engine's last reader let go of it: a reader in another process (`strata scan`
    /// beside an ingest) that read the manifest before the removal needs it that long.
    /// A scan that takes longer than this can still find a file gone.
    #[serde(with = "humantime_serde")]
    pub removed_file_lingering: Duration,
    /// How often regions this engine follows (opened as followers, or fenced out) install
    /// the manifest versions their leader committed: one listing per region when nothing
    /// is new. `0s`: only on [`Engine::sync`](crate::Engine::sync). Keep it at most half of
    /// the leader's `removed_file_lingering` (the defaults: 1 s and 5 min), so a
    /// follower's scan never finds a file deleted that its manifest version still names.
    #[serde(with = "humantime_serde")]
    pub follower_sync_interval: Duration,
    /// Where SST files and manifests live; default: the `data_home` directory.
    pub object_store: Option<ObjectStoreConfig>,
}

/// How flushes write SST files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SstConfig {
    /// Rows per Parquet row group.
    pub row_group_size: usize,
    /// Bytes buffered per write to the object store (a multipart part on S3).
    pub write_buffer_size: ByteSize,
}

impl Default for SstConfig {
    fn default() -> Self {
        Self {
            row_group_size: 102_400,
            write_buffer_size: ByteSize::mib(8),
        }
    }
}

/// How regions are compacted (see `docs/architecture.md`, strata-compaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CompactionConfig {
    /// Compact automatically after flushes and on the periodic check. `false` leaves
    /// files alone until `Engine::compact` (or `strata compact`) asks.
    pub enabled: bool,
    /// Level-0 files in one time window that trigger its merge (at least 2).
    pub trigger_file_num: usize,
    /// Outputs are split at about this size.
    pub max_output_file_size: ByteSize,
    /// Most input files of one merge (at least 2).
    pub max_inputs: usize,
    /// Compaction jobs at once. Default: half the CPU cores, at least one.
    pub max_background_compactions: usize,
    /// A region that has not flushed for this long is consolidated once: every window
    /// merged into one run.
    #[serde(with = "humantime_serde")]
    pub idle_after: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        let picker = strata_compaction::PickerOptions::default();
        Self {
            enabled: true,
            trigger_file_num: picker.trigger_file_num,
            max_output_file_size: ByteSize(picker.max_output_file_size),
            max_inputs: picker.max_inputs,
            max_background_compactions: (std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                / 2)
            .max(1),
            idle_after: Duration::from_secs(10 * 60),
        }
    }
}

/// Which WAL, and how it syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WalProvider {
    /// Segment files under `{data_home}/wal` (default).
    #[default]
    File,
    /// No WAL: rows not yet flushed are lost on a crash or close. For bulk loads that can
    /// be repeated.
    Noop,
}

/// How WAL entries are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WalCompression {
    /// zstd (default): about 5× fewer bytes to write and sync for TSBS rows, for some CPU
    /// on the region workers.
    #[default]
    Zstd,
    /// Plain Arrow IPC: less CPU, more bytes.
    None,
}

/// WAL settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WalConfig {
    /// `file` or `noop`.
    pub provider: WalProvider,
    /// Directory of the file WAL; default `{data_home}/wal`.
    pub dir: Option<PathBuf>,
    /// `always` (acknowledge after fdatasync), `never`, or an interval such as `100ms`.
    pub sync: SyncPolicy,
    /// Start a new segment at this size.
    pub segment_size: ByteSize,
    /// Largest WAL record (one worker's write batch) accepted. A batch above it is
    /// appended one request at a time; a single write above it fails with
    /// `InvalidRequest` while the rest of its batch goes on.
    pub max_record_size: ByteSize,
    /// How long a group commit may wait for more appends under `sync = "always"`.
    #[serde(with = "humantime_serde")]
    pub group_commit_wait: Duration,
    /// `tolerate_tail` (cut a torn last record and report it) or `strict`.
    pub recovery: RecoveryMode,
    /// How many reclaimed segment files are kept and reused as later segments (ignored
    /// under `strict` recovery); see [`FileLogStoreConfig::recycle_segments`].
    pub recycle_segments: usize,
    /// `zstd` or `none`.
    pub compression: WalCompression,
}

impl Default for WalConfig {
    fn default() -> Self {
        let file = FileLogStoreConfig::default();
        Self {
            provider: WalProvider::File,
            dir: None,
            sync: file.sync,
            segment_size: ByteSize(file.segment_size),
            max_record_size: ByteSize(file.max_record_size),
            group_commit_wait: file.group_commit_wait,
            recovery: file.recovery,
            recycle_segments: file.recycle_segments,
            compression: WalCompression::Zstd,
        }
    }
}

impl WalConfig {
    /// The file log store's settings.
    pub fn file_config(&self) -> FileLogStoreConfig {
        let mut file = FileLogStoreConfig::default();
        file.segment_size = self.segment_size.as_u64();
        file.max_record_size = self.max_record_size.as_u64();
        file.sync = self.sync;
        file.group_commit_wait = self.group_commit_wait;
        file.recovery = self.recovery;
        file.recycle_segments = self.recycle_segments;
        file
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let budget = default_write_buffer_size(total_memory());
        Self {
            data_home: PathBuf::from("./strata-data"),
            num_workers: cpus.div_ceil(2),
            worker_channel_size: 128,
            worker_request_batch_size: 64,
            global_write_buffer_size: ByteSize(budget),
            global_write_buffer_reject_size: None,
            write_slowdown_percent: 75,
            delayed_write_rate: ByteSize::mib(16),
            default_region_write_buffer_size: ByteSize(0),
            max_background_flushes: cpus.div_ceil(2),
            max_background_purges: cpus,
            max_background_opens: 4,
            auto_flush_interval: Duration::from_secs(30 * 60),
            allow_stale_entries: false,
            manifest_checkpoint_distance: 10,
            sst: SstConfig::default(),
            wal: WalConfig::default(),
            compaction: CompactionConfig::default(),
            removed_file_lingering: Duration::from_secs(5 * 60),
            follower_sync_interval: Duration::from_secs(1),
            object_store: None,
        }
    }
}

/// min(RAM / 8, 1 GiB); 1 GiB when the memory size is unknown.
fn default_write_buffer_size(total_memory: Option<u64>) -> u64 {
    const GIB: u64 = 1 << 30;
    total_memory.map_or(GIB, |ram| (ram / 8).clamp(1 << 20, GIB))
}

/// Total memory from `/proc/meminfo` (Linux); `None` elsewhere.
fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl EngineConfig {
    /// Parses TOML; unknown keys and bad values are errors naming the key.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: EngineConfig = toml::from_str(text).map_err(|e| {
            ConfigSnafu {
                reason: e.to_string(),
            }
            .build()
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigSnafu {
                reason: format!("cannot read {}: {e}", path.display()),
            }
            .build()
        })?;
        Self::from_toml(&text).map_err(|e| {
            ConfigSnafu {
                reason: format!("{}: {e}", path.display()),
            }
            .build()
            .into()
        })
    }

    /// The reject limit in effect.
    pub fn reject_size(&self) -> ByteSize {
        self.global_write_buffer_reject_size.unwrap_or(ByteSize(
            self.global_write_buffer_size.as_u64().saturating_mul(2),
        ))
    }

    /// Checks every value; the error names the key and the accepted range.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| -> Result<()> {
            ConfigSnafu {
                reason: format!("{key}: {reason}"),
            }
            .fail()
            .map_err(Into::into)
        };
        if !(1..=1024).contains(&self.num_workers) {
            return bad(
                "num_workers",
                format!("{} is not between 1 and 1024", self.num_workers),
            );
        }
        if self.worker_channel_size == 0 {
            return bad("worker_channel_size", "must be at least 1".into());
        }
        if self.worker_request_batch_size == 0 {
            return bad("worker_request_batch_size", "must be at least 1".into());
        }
        if self.global_write_buffer_size.as_u64() < (1 << 20) {
            return bad(
                "global_write_buffer_size",
                format!(
                    "{} is below the minimum of 1 MiB",
                    self.global_write_buffer_size
                ),
            );
        }
        if self.reject_size() <= self.global_write_buffer_size {
            return bad(
                "global_write_buffer_reject_size",
                format!(
                    "{} must be larger than global_write_buffer_size ({})",
                    self.reject_size(),
                    self.global_write_buffer_size
                ),
            );
        }
        if !(50..=100).contains(&self.write_slowdown_percent) {
            return bad(
                "write_slowdown_percent",
                format!("{} is not between 50 and 100", self.write_slowdown_percent),
            );
        }
        if self.delayed_write_rate.as_u64() < (1 << 20) {
            return bad(
                "delayed_write_rate",
                format!(
                    "{} is below the minimum of 1 MiB (per second)",
                    self.delayed_write_rate
                ),
            );
        }
        if self.max_background_flushes == 0 {
            return bad("max_background_flushes", "must be at least 1".into());
        }
        if self.max_background_purges == 0 {
            return bad("max_background_purges", "must be at least 1".into());
        }
        if self.max_background_opens == 0 {
            return bad("max_background_opens", "must be at least 1".into());
        }
        if self.auto_flush_interval < Duration::from_secs(1) {
            return bad("auto_flush_interval", "must be at least 1s".into());
        }
        if self.sst.row_group_size == 0 {
            return bad("sst.row_group_size", "must be at least 1".into());
        }
        if self.sst.write_buffer_size.as_u64() < 1024 {
            return bad("sst.write_buffer_size", "must be at least 1 KiB".into());
        }
        if self.compaction.trigger_file_num < 2 {
            return bad("compaction.trigger_file_num", "must be at least 2".into());
        }
        if self.compaction.max_inputs < 2 {
            return bad("compaction.max_inputs", "must be at least 2".into());
        }
        if self.compaction.max_output_file_size.as_u64() < (1 << 20) {
            return bad(
                "compaction.max_output_file_size",
                "must be at least 1 MiB".into(),
            );
        }
        if self.compaction.max_background_compactions == 0 {
            return bad(
                "compaction.max_background_compactions",
                "must be at least 1".into(),
            );
        }
        if let Err(e) = self.wal.file_config().validate() {
            return bad("wal", e.to_string());
        }
        Ok(())
    }

    /// Where the file WAL lives.
    pub fn wal_dir(&self) -> PathBuf {
        self.wal
            .dir
            .clone()
            .unwrap_or_else(|| self.data_home.join("wal"))
    }

    /// The object store in effect.
    pub fn object_store_config(&self) -> ObjectStoreConfig {
        self.object_store
            .clone()
            .unwrap_or_else(|| ObjectStoreConfig::Fs {
                root: self.data_home.clone(),
            })
    }

    /// The workers' settings.
    pub fn worker_config(&self) -> WorkerConfig {
        let to_usize = |b: ByteSize| usize::try_from(b.as_u64()).unwrap_or(usize::MAX);
        let mut worker = WorkerConfig::default();
        worker.num_workers = self.num_workers;
        worker.worker_channel_size = self.worker_channel_size;
        worker.worker_request_batch_size = self.worker_request_batch_size;
        worker.global_write_buffer_size = to_usize(self.global_write_buffer_size);
        worker.global_write_buffer_reject_size = to_usize(self.reject_size());
        worker.default_region_write_buffer_size = to_usize(self.default_region_write_buffer_size);
        worker.write_slowdown_threshold = to_usize(self.global_write_buffer_size) / 100
            * usize::from(self.write_slowdown_percent);
        worker.delayed_write_rate = self.delayed_write_rate.as_u64();
        worker.max_background_flushes = self.max_background_flushes;
        worker.max_background_purges = self.max_background_purges;
        worker.max_background_opens = self.max_background_opens;
        worker.auto_flush_interval = self.auto_flush_interval;
        worker.allow_stale_entries = self.allow_stale_entries;
        worker.manifest = ManifestConfig::new(self.manifest_checkpoint_distance);
        let mut sst = SstWriteOptions::default();
        sst.row_group_size = self.sst.row_group_size;
        sst.write_buffer_size = to_usize(self.sst.write_buffer_size);
        worker.sst = sst;
        worker.compress_wal = self.wal.compression == WalCompression::Zstd;
        worker.compaction_enabled = self.compaction.enabled;
        worker.compaction_picker = strata_compaction::PickerOptions {
            trigger_file_num: self.compaction.trigger_file_num,
            max_output_file_size: self.compaction.max_output_file_size.as_u64(),
            max_inputs: self.compaction.max_inputs,
        };
        worker.max_background_compactions = self.compaction.max_background_compactions;
        worker.compaction_idle_after = self.compaction.idle_after;
        worker.removed_file_lingering = self.removed_file_lingering;
        worker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_validates() {
        let config = EngineConfig::from_toml(EXAMPLE_CONFIG).unwrap();
        assert_eq!(config.worker_request_batch_size, 64);
        assert_eq!(config.auto_flush_interval, Duration::from_secs(1800));
        assert_eq!(config.wal.sync, SyncPolicy::Always);
        assert_eq!(config.write_slowdown_percent, 75);
        assert_eq!(config.delayed_write_rate, ByteSize::mib(16));
        // The slowdown starts at that share of the budget.
        let worker = config.worker_config();
        assert_eq!(
            worker.write_slowdown_threshold,
            worker.global_write_buffer_size / 100 * 75
        );
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(
            EngineConfig::from_toml("").unwrap(),
            EngineConfig::default()
        );
    }

    #[test]
    fn human_sizes_and_durations_parse() {
        let config = EngineConfig::from_toml(
            "global_write_buffer_size = \"64MiB\"\nauto_flush_interval = \"5m\"\n[wal]\nsync = \"100ms\"\n",
        )
        .unwrap();
        assert_eq!(config.global_write_buffer_size, ByteSize::mib(64));
        assert_eq!(config.reject_size(), ByteSize::mib(128));
        assert_eq!(config.auto_flush_interval, Duration::from_secs(300));
        assert_eq!(
            config.wal.sync,
            SyncPolicy::Interval(Duration::from_millis(100))
        );
    }

    #[test]
    fn bad_values_are_errors_that_name_the_key() {
        let cases = [
            ("num_workers = 0", "num_workers"),
            ("worker_channel_size = 0", "worker_channel_size"),
            (
                "global_write_buffer_size = \"1KiB\"",
                "global_write_buffer_size",
            ),
            (
                "global_write_buffer_size = \"64MiB\"\nglobal_write_buffer_reject_size = \"32MiB\"",
                "global_write_buffer_reject_size",
            ),
            ("auto_flush_interval = \"0s\"", "auto_flush_interval"),
            ("write_slowdown_percent = 40", "write_slowdown_percent"),
            ("write_slowdown_percent = 101", "write_slowdown_percent"),
            ("delayed_write_rate = \"1KiB\"", "delayed_write_rate"),
            ("[sst]\nrow_group_size = 0", "sst.row_group_size"),
            (
                "[compaction]\ntrigger_file_num = 1",
                "compaction.trigger_file_num",
            ),
            ("[wal]\nsync = \"sometimes\"", "sync"),
            ("no_such_key = 1", "no_such_key"),
            (
                "global_write_buffer_size = \"lots\"",
                "global_write_buffer_size",
            ),
        ];
        for (text, key) in cases {
            let error = EngineConfig::from_toml(text).unwrap_err().to_string();
            assert!(
                error.contains(key),
                "{text:?} gave {error:?}, which does not name {key}"
            );
        }
    }

    #[test]
    fn the_default_budget_is_an_eighth_of_memory_capped_at_one_gib() {
        assert_eq!(default_write_buffer_size(Some(4 << 30)), 512 << 20);
        assert_eq!(default_write_buffer_size(Some(64 << 30)), 1 << 30);
        assert_eq!(default_write_buffer_size(None), 1 << 30);
    }
}
