//! [`WorkerConfig`]: the settings the workers run with (the engine builds it from its TOML
//! configuration, already validated).

use std::time::Duration;

use strata_compaction::PickerOptions;
use strata_storage::{ManifestConfig, SstWriteOptions};

/// Settings of a [`WorkerGroup`](crate::WorkerGroup).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Number of region workers.
    pub num_workers: usize,
    /// Requests queued per worker before `submit` waits (back-pressure).
    pub worker_channel_size: usize,
    /// Most requests one worker handles per loop iteration.
    pub worker_request_batch_size: usize,
    /// Memtable bytes at which writes stall (and flushes start at half of it).
    pub global_write_buffer_size: usize,
    /// Memtable plus stalled bytes at which writes are rejected.
    pub global_write_buffer_reject_size: usize,
    /// Per-region write-buffer limit for regions without their own (0: none).
    pub default_region_write_buffer_size: usize,
    /// Memtable memory (bytes) from which incoming writes are paced engine-wide at the
    /// rate flushes release memory, before they stall at `global_write_buffer_size`; at or
    /// above that size, no slowdown.
    pub write_slowdown_threshold: usize,
    /// The pace (bytes per second) of slowed-down writes until a flush was measured.
    pub delayed_write_rate: u64,
    /// Flush jobs running at once across the engine.
    pub max_background_flushes: usize,
    /// Background file deletions (dropped regions) running at once.
    pub max_background_purges: usize,
    /// Region opens and creates (manifest, WAL replay) running at once across the engine,
    /// off the workers.
    pub max_background_opens: usize,
    /// Flush a region that has not flushed for this long.
    pub auto_flush_interval: Duration,
    /// How often each worker checks for regions due a periodic flush.
    pub periodic_check_interval: Duration,
    /// Each worker's first periodic check is delayed by a random part of this, so workers
    /// do not all flush at once.
    pub max_initial_check_delay: Duration,
    /// Replay WAL entries at or below a region's flushed entry id instead of failing.
    pub allow_stale_entries: bool,
    /// Manifest checkpoints.
    pub manifest: ManifestConfig,
    /// How flushes write SST files.
    pub sst: SstWriteOptions,
    /// Compress WAL entries (zstd): about 5× fewer bytes to write and sync for TSBS rows,
    /// for some CPU on the worker.
    pub compress_wal: bool,
    /// Flush a region's memtables before closing it. Set when the WAL does not keep rows
    /// (the no-op log store), or closing would lose them.
    pub flush_on_close: bool,
    /// Compact automatically: after each flush and on the periodic check. Manual
    /// compactions run either way.
    pub compaction_enabled: bool,
    /// What compactions pick.
    pub compaction_picker: PickerOptions,
    /// Compaction jobs running at once across the engine.
    pub max_background_compactions: usize,
    /// A region that has not flushed for this long is consolidated once (every window
    /// merged into one run) by the periodic check.
    pub compaction_idle_after: Duration,
    /// How long a removed SST file (compaction input, truncated file) is kept after the
    /// last reader in this engine let go, for readers in other processes that read an
    /// older manifest.
    pub removed_file_lingering: Duration,
    /// Seed of the random initial check delays.
    pub seed: u64,
    /// Never change anything: writes and every DDL but open and close are refused with
    /// [`WorkerError::ReadOnly`](crate::WorkerError::ReadOnly); opened regions are
    /// [`ReadOnly`](crate::RegionState::ReadOnly) (no flush ever starts); opening replays
    /// the WAL without obsoleting anything, leaves a dropped region's files alone, and
    /// reads again when the log's writer in another process moved on under it. The log
    /// store given must not write either (a read-only `FileLogStore`).
    pub read_only: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            num_workers: 1,
            worker_channel_size: 128,
            worker_request_batch_size: 64,
            global_write_buffer_size: 256 << 20,
            global_write_buffer_reject_size: 512 << 20,
            default_region_write_buffer_size: 0,
            write_slowdown_threshold: 192 << 20,
            delayed_write_rate: 16 << 20,
            max_background_flushes: 1,
            max_background_purges: 1,
            max_background_opens: 4,
            auto_flush_interval: Duration::from_secs(30 * 60),
            periodic_check_interval: Duration::from_secs(60),
            max_initial_check_delay: Duration::from_secs(180),
            allow_stale_entries: false,
            manifest: ManifestConfig::default(),
            sst: SstWriteOptions::default(),
            compress_wal: true,
            flush_on_close: false,
            compaction_enabled: true,
            compaction_picker: PickerOptions::default(),
            max_background_compactions: 1,
            compaction_idle_after: Duration::from_secs(10 * 60),
            removed_file_lingering: Duration::ZERO,
            seed: 0,
            read_only: false,
        }
    }
}
