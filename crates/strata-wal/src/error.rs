//! [`WalError`]: everything a log store can report.

use std::path::PathBuf;
use std::sync::Arc;

use snafu::Snafu;
use strata_base::ErrorKind;

/// Errors from a [`LogStore`](crate::LogStore).
///
/// Cloneable, so one failed group commit can answer every request in the group.
#[derive(Debug, Snafu, Clone)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum WalError {
    /// An I/O operation failed.
    #[snafu(display("WAL I/O error: {operation} {}: {source}", path.display()))]
    Io {
        /// What was being done, e.g. `write segment`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[snafu(source(from(std::io::Error, Arc::new)))]
        source: Arc<std::io::Error>,
    },
    /// The log's bytes are not what was written.
    #[snafu(display("WAL corruption in {} at offset {offset}: {reason}", path.display()))]
    Corruption {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damaged record (or header).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An append gave a region an entry id not above its last one.
    #[snafu(display(
        "WAL entry ids must increase: region {region_id} got entry {entry_id} after {last_entry_id}"
    ))]
    OutOfOrder {
        /// The region (packed id).
        region_id: u64,
        /// The region's last entry id.
        last_entry_id: u64,
        /// The rejected id.
        entry_id: u64,
    },
    /// An append's encoded size exceeds the maximum record size.
    #[snafu(display("WAL record of {size} bytes exceeds max_record_size = {max} bytes"))]
    RecordTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The store was stopped.
    #[snafu(display("WAL is stopped"))]
    Stopped,
    /// A sync failed earlier; the log refuses writes because it cannot know what is durable.
    #[snafu(display(
        "WAL refuses writes after an earlier sync failure ({reason}); reopen it to recover"
    ))]
    Poisoned {
        /// The original failure.
        reason: String,
    },
    /// The log was opened read-only ([`FileLogStore::open_read_only`](crate::FileLogStore::open_read_only)):
    /// it never writes.
    #[snafu(display("the WAL is open read-only: cannot {operation}"))]
    ReadOnly {
        /// What was asked (`append`, `obsolete`, `drop a region`).
        operation: &'static str,
    },
    /// A read-only reader found a segment it had indexed reclaimed (deleted or reused) by
    /// the log's writer in another process: every entry in it is obsolete, so whatever
    /// needed them has moved on (a flush committed them to SST files). Reading the
    /// current state again (the region's manifest, then the log) succeeds.
    #[snafu(display(
        "WAL segment {} was reclaimed by the log's writer while a read-only reader read it; read again",
        path.display()
    ))]
    Reclaimed {
        /// The segment file.
        path: PathBuf,
    },
    /// Invalid configuration.
    #[snafu(display("invalid WAL configuration: {reason}"))]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A metric could not be registered.
    #[snafu(display("cannot register WAL metric {name}: {source}"))]
    RegisterMetric {
        /// Metric name.
        name: &'static str,
        /// Prometheus' complaint.
        #[snafu(source(from(prometheus::Error, Arc::new)))]
        source: Arc<prometheus::Error>,
    },
}

impl WalError {
    /// The coarse class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WalError::Io { source, .. } => io_kind(source),
            WalError::Reclaimed { .. } => ErrorKind::Wal,
            WalError::Poisoned { .. } => ErrorKind::NeedsReopen,
            WalError::Corruption { .. } => ErrorKind::Corruption,
            // The same request will never fit.
            WalError::RecordTooLarge { .. } | WalError::Config { .. } => ErrorKind::InvalidRequest,
            WalError::Stopped => ErrorKind::Stopped,
            WalError::ReadOnly { .. } => ErrorKind::ReadOnly,
            // A caller that breaks the id rule, or a metric registered twice, is a bug.
            WalError::OutOfOrder { .. } | WalError::RegisterMetric { .. } => ErrorKind::Internal,
        }
    }

    /// Whether retrying the same call later can succeed (I/O trouble, a segment reclaimed
    /// under a reader) as opposed to a caller bug, corruption, a file the log may not
    /// touch, or a stopped or poisoned log (which needs a reopen, not a retry): what
    /// [`kind`](Self::kind) says.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// One value of every variant — two more of [`Io`](Self::Io), whose class depends on
    /// the OS error — for tests that walk every error (strata-engine's checks that its
    /// public error keeps each one's kind and retryability). Adding a variant fails to
    /// compile here until it is numbered, and then this panics until it has a sample.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn every_variant() -> Vec<Self> {
        let io = |kind: std::io::ErrorKind| WalError::Io {
            operation: "write segment",
            path: PathBuf::from("x.wal"),
            source: Arc::new(std::io::Error::from(kind)),
        };
        let samples = vec![
            io(std::io::ErrorKind::Other),
            io(std::io::ErrorKind::PermissionDenied),
            io(std::io::ErrorKind::Unsupported),
            WalError::Corruption {
                path: PathBuf::from("x.wal"),
                offset: 1,
                reason: "bad crc".into(),
            },
            WalError::OutOfOrder {
                region_id: 1,
                last_entry_id: 2,
                entry_id: 2,
            },
            WalError::RecordTooLarge { size: 2, max: 1 },
            WalError::Stopped,
            WalError::Poisoned {
                reason: "sync failed".into(),
            },
            WalError::ReadOnly {
                operation: "append",
            },
            WalError::Reclaimed {
                path: PathBuf::from("x.wal"),
            },
            WalError::Config {
                reason: "bad".into(),
            },
            WalError::RegisterMetric {
                name: "m",
                source: Arc::new(prometheus::Error::Msg("twice".into())),
            },
        ];
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &WalError| match error {
            WalError::Io { .. } => 0,
            WalError::Corruption { .. } => 1,
            WalError::OutOfOrder { .. } => 2,
            WalError::RecordTooLarge { .. } => 3,
            WalError::Stopped => 4,
            WalError::Poisoned { .. } => 5,
            WalError::ReadOnly { .. } => 6,
            WalError::Reclaimed { .. } => 7,
            WalError::Config { .. } => 8,
            WalError::RegisterMetric { .. } => 9,
        };
        let mut sampled = [false; 10];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
    }
}

/// The class of an OS error: one only changed permissions (or another file system) clear
/// is not retryable; anything else — a full disk, an interrupted call — may pass.
fn io_kind(error: &std::io::Error) -> ErrorKind {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => ErrorKind::InvalidRequest,
        std::io::ErrorKind::Unsupported => ErrorKind::Unsupported,
        _ => ErrorKind::Wal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_sample() {
        // Panics naming the unsampled variant's number.
        assert!(WalError::every_variant().len() >= 10);
    }

    #[test]
    fn an_io_error_is_retryable_only_when_a_retry_can_help() {
        let io = |kind: std::io::ErrorKind| WalError::Io {
            operation: "create segment",
            path: PathBuf::from("x.wal"),
            source: Arc::new(std::io::Error::from(kind)),
        };
        // Only changed permissions (or configuration) help these.
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied).kind(),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            io(std::io::ErrorKind::Unsupported).kind(),
            ErrorKind::Unsupported
        );
        for error in [
            io(std::io::ErrorKind::PermissionDenied),
            io(std::io::ErrorKind::Unsupported),
        ] {
            assert!(!error.is_retryable(), "{error}");
        }
        // A full disk, an interrupted call, anything else: a later retry may succeed.
        for kind in [
            std::io::ErrorKind::StorageFull,
            std::io::ErrorKind::Interrupted,
            std::io::ErrorKind::Other,
        ] {
            assert_eq!(io(kind).kind(), ErrorKind::Wal);
            assert!(io(kind).is_retryable());
        }
    }

    #[test]
    fn a_poisoned_log_needs_a_reopen_not_a_retry() {
        let poisoned = WalError::Poisoned {
            reason: "sync failed".into(),
        };
        assert_eq!(poisoned.kind(), ErrorKind::NeedsReopen);
        assert!(!poisoned.kind().is_retryable());
    }
}
