//! Strata's write-ahead log.
//!
//! - [`LogStore`]: the protocol every WAL implementation keeps (atomic multi-region
//!   batches, increasing per-region entry ids, reads from an id, obsolete, drop, stop) —
//!   the numbered rules are on the trait.
//! - [`FileLogStore`]: segment files of checksummed records in a local directory, one
//!   writer thread that group-commits concurrent appends (at most one sync per group),
//!   a commit record ending each group (recovery keeps whole groups only), a
//!   [`SyncPolicy`], a [`RecoveryMode`] for damage (cut a torn tail, refuse, or salvage
//!   around damage and report each [`LostRange`]), an in-memory per-region index,
//!   reclamation of fully obsolete segments (their files kept and reused as later
//!   segments, which makes syncs cheaper), and `strata_wal_*` metrics. One writer per
//!   directory; any number of read-only opens beside it
//!   ([`FileLogStore::open_read_only`]) change nothing and see the log up to its last
//!   committed group. What an open found is its [`RecoveryReport`].
//! - [`MemoryLogStore`] for tests and [`NoopLogStore`] for regions without a WAL.
//!
//! Entries are opaque bytes: encoding mutations is the worker's job.
//!
//! # Layering
//!
//! Depends on `strata-base` only (error kinds, the clock). Region ids are plain `u64`s
//! here (a packed `RegionId`).
//!
//! # Features
//!
//! - `testing`: `conformance`, the protocol's conformance suite, for checking any
//!   `LogStore` implementation (Strata's own run it; so can an embedder's).

mod config;
#[cfg(feature = "testing")]
pub mod conformance;
mod error;
mod file;
mod memory;
mod metrics;
mod noop;
mod store;

pub use config::{FileLogStoreConfig, RecoveryMode, SyncPolicy};
pub use error::WalError;
pub use file::{FileLogStore, LostEntries, LostRange, RecoveryReport, RegionLog, TruncatedTail};
pub use memory::MemoryLogStore;
pub use noop::NoopLogStore;
pub use store::{AppendResponse, Entry, EntryStream, LogStore, LogStoreRef};
