//! [`FileLogStoreConfig`], [`SyncPolicy`] and [`RecoveryMode`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::WalError;

/// When appended bytes are made durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Acknowledge an append only after its bytes are synced (default). Concurrent appends
    /// share one sync (group commit).
    #[default]
    Always,
    /// Acknowledge after the write; sync at most this long after the oldest unsynced
    /// write. A crash of the machine (not only the process) may lose that window.
    Interval(Duration),
    /// Never sync appends (segments are still synced when rotated). Benchmarks and
    /// disposable data only.
    Never,
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Always => f.write_str("always"),
            SyncPolicy::Never => f.write_str("never"),
            SyncPolicy::Interval(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl FromStr for SyncPolicy {
    type Err = WalError;

    /// `always`, `never`, or an interval such as `100ms`.
    fn from_str(s: &str) -> Result<Self, WalError> {
        match s {
            "always" => Ok(SyncPolicy::Always),
            "never" => Ok(SyncPolicy::Never),
            other => match humantime::parse_duration(other) {
                Ok(d) if !d.is_zero() => Ok(SyncPolicy::Interval(d)),
                _ => Err(WalError::Config {
                    reason: format!(
                        "sync = {other:?}: expected \"always\", \"never\" or a positive interval such as \"100ms\""
                    ),
                }),
            },
        }
    }
}

impl TryFrom<String> for SyncPolicy {
    type Error = WalError;
    fn try_from(s: String) -> Result<Self, WalError> {
        s.parse()
    }
}

impl From<SyncPolicy> for String {
    fn from(p: SyncPolicy) -> String {
        p.to_string()
    }
}

/// What opening a log does with damaged bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecoveryMode {
    /// A torn or partial record at the very end of the last segment (what a crash during a
    /// write leaves) is cut off and reported; damage anywhere else is an error. Default.
    #[default]
    TolerateTail,
    /// Any damaged byte is an error; nothing is ever cut off.
    Strict,
    /// Disaster recovery (RocksDB's `kSkipAnyCorruptedRecords`): damaged ranges anywhere
    /// are skipped and every record that still verifies is kept — every committed group
    /// after the damage included. Each skipped range is reported in
    /// [`RecoveryReport::lost`](crate::RecoveryReport::lost) with the regions and entry ids
    /// it may have held; a torn tail at the end of the last segment is cut as under
    /// `TolerateTail`. A read-write open that skipped anything starts a new segment, so
    /// nothing is ever appended after damaged bytes; once every region has flushed, the
    /// damaged segments are reclaimed and the log opens cleanly again (what
    /// `strata repair` does). Never the default: it trades a clear error for the rest of
    /// the data.
    Salvage,
}

/// Settings of a [`FileLogStore`](crate::FileLogStore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FileLogStoreConfig {
    /// Start a new segment once the current one reaches this many bytes.
    pub segment_size: u64,
    /// Largest record (one append's encoded batch) accepted, and believed when reading.
    pub max_record_size: u64,
    /// Most bytes written by one group commit.
    pub max_group_bytes: u64,
    /// When appends are synced.
    pub sync: SyncPolicy,
    /// Under `sync = always`, how long a group may wait for more appends when fewer are
    /// queued than in the previous group (so concurrent appenders share one sync instead of
    /// alternating between a small and a large group). A lone appender never waits. `0s`
    /// disables the wait.
    #[serde(with = "humantime_serde")]
    pub group_commit_wait: Duration,
    /// How damaged bytes are handled on open.
    pub recovery: RecoveryMode,
    /// How many reclaimed segment files are kept (as `*.wal.free`) and reused for later
    /// segments instead of being deleted. Writing over a reused file's blocks lets an
    /// fdatasync skip the file-system journal commit that growing a file needs, which
    /// roughly doubles group-commit throughput once the log has reclaimed segments; the
    /// cost is up to this many segments of disk kept. Ignored (no file is reused) under
    /// `recovery = strict`: after a crash, the bytes a reused file holds past the last
    /// group cannot be told from a torn write, and strict refuses to guess.
    pub recycle_segments: usize,
}

impl Default for FileLogStoreConfig {
    fn default() -> Self {
        Self {
            segment_size: 128 << 20,
            max_record_size: 64 << 20,
            max_group_bytes: 16 << 20,
            sync: SyncPolicy::Always,
            group_commit_wait: Duration::from_micros(200),
            recovery: RecoveryMode::TolerateTail,
            recycle_segments: 2,
        }
    }
}

impl FileLogStoreConfig {
    /// How many reclaimed segment files are reused: `recycle_segments`, or 0 under
    /// `recovery = strict`.
    pub fn effective_recycle_segments(&self) -> usize {
        match self.recovery {
            RecoveryMode::TolerateTail | RecoveryMode::Salvage => self.recycle_segments,
            RecoveryMode::Strict => 0,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), WalError> {
        let fail = |reason: &str| {
            Err(WalError::Config {
                reason: reason.to_string(),
            })
        };
        if self.max_record_size == 0 || self.max_record_size > u64::from(u32::MAX) {
            return fail("max_record_size must be between 1 byte and 4 GiB - 1");
        }
        if self.segment_size == 0 {
            return fail("segment_size must be positive");
        }
        if self.max_group_bytes == 0 {
            return fail("max_group_bytes must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policy_parses_words_and_intervals() {
        assert_eq!("always".parse::<SyncPolicy>().unwrap(), SyncPolicy::Always);
        assert_eq!("never".parse::<SyncPolicy>().unwrap(), SyncPolicy::Never);
        assert_eq!(
            "100ms".parse::<SyncPolicy>().unwrap(),
            SyncPolicy::Interval(Duration::from_millis(100))
        );
        assert!("0s".parse::<SyncPolicy>().is_err());
        let err = "sometimes".parse::<SyncPolicy>().unwrap_err().to_string();
        assert!(err.contains("\"always\", \"never\""), "{err}");
        for p in [
            SyncPolicy::Always,
            SyncPolicy::Never,
            SyncPolicy::Interval(Duration::from_millis(5)),
        ] {
            assert_eq!(p.to_string().parse::<SyncPolicy>().unwrap(), p);
        }
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
        let c: FileLogStoreConfig =
            serde_json::from_str(r#"{"sync": "50ms", "recovery": "strict"}"#).unwrap();
        assert_eq!(c.sync, SyncPolicy::Interval(Duration::from_millis(50)));
        assert_eq!(c.recovery, RecoveryMode::Strict);
        let c: FileLogStoreConfig = serde_json::from_str(r#"{"recovery": "salvage"}"#).unwrap();
        assert_eq!(c.recovery, RecoveryMode::Salvage);
        assert_eq!(c.segment_size, FileLogStoreConfig::default().segment_size);
        assert!(serde_json::from_str::<FileLogStoreConfig>(r#"{"synk": "always"}"#).is_err());
        let bad = FileLogStoreConfig {
            max_record_size: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
