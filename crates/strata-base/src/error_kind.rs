//! [`ErrorKind`]: the coarse class of every Strata error — what a caller can do about it.
//! Each crate's error type says which kind it is ([`kind`](ErrorKind) methods beside each
//! error), once, where it is defined; the engine's public error carries it.

/// The coarse class of an error: what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request itself is wrong (schema mismatch, bad DDL, bad config); fix it.
    InvalidRequest,
    /// The region is not open on this engine.
    RegionNotFound,
    /// The region is open but not in a state that allows the request (read-only, being
    /// altered, dropped or truncated, or a flush it waited for failed).
    RegionState,
    /// Memory is over the reject limit; retry once flushes catch up.
    WriteRejected,
    /// Storage I/O failed: the object store (SST or manifest I/O) or local files.
    Storage,
    /// The write-ahead log failed (an I/O error); retry.
    Wal,
    /// A component failed in a way only a reopen clears: the write-ahead log refuses every
    /// write after a failed sync (what reached the disk is unknown). Retrying the same
    /// request fails the same way; stop the engine and open it again (replay recovers what
    /// was durable).
    NeedsReopen,
    /// Data read back from disk or object store is damaged.
    Corruption,
    /// A file is in an on-disk format newer than this build reads (the error names the
    /// file and both versions): a newer Strata build wrote it. Retrying cannot help; read
    /// it with a build at least that new.
    NewerFormat,
    /// The engine is stopping or stopped.
    Stopped,
    /// The feature is not supported by this engine.
    Unsupported,
    /// The engine was opened read-only; open a read-write engine (the directory's one
    /// writer) to change data.
    ReadOnly,
    /// The data directory is held by another read-write engine (the error names its pid);
    /// stop that one first, or open read-only.
    Locked,
    /// This engine does not lead the region (it is a follower, is handing it over, or its
    /// lease lapsed); retry on the region's leader (or here once the lease is renewed).
    NotLeader,
    /// Another engine took the region over: this engine's manifest commit lost the race
    /// for its version and the region turned follower here. Retry on the new leader.
    Fenced,
    /// A bug: an invariant did not hold.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same request later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RegionState
                | ErrorKind::WriteRejected
                | ErrorKind::Storage
                | ErrorKind::Wal
                | ErrorKind::NotLeader
                | ErrorKind::Fenced
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_kinds_are_retryable_and_caller_or_data_problems_are_not() {
        for kind in [
            ErrorKind::RegionState,
            ErrorKind::WriteRejected,
            ErrorKind::Storage,
            ErrorKind::Wal,
            ErrorKind::NotLeader,
            ErrorKind::Fenced,
        ] {
            assert!(kind.is_retryable(), "{kind:?}");
        }
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::RegionNotFound,
            ErrorKind::Corruption,
            ErrorKind::NewerFormat,
            ErrorKind::Stopped,
            ErrorKind::Unsupported,
            ErrorKind::ReadOnly,
            ErrorKind::Locked,
            ErrorKind::NeedsReopen,
            ErrorKind::Internal,
        ] {
            assert!(!kind.is_retryable(), "{kind:?}");
        }
    }
}
