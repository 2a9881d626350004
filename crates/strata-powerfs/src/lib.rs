//! A power-off test file system: a FUSE mount that keeps written data and namespace
//! changes volatile until they are synced — the way a page cache does — and can "lose
//! power", keeping only what was durable. Jepsen's LazyFS does this for databases; the
//! engine's power-loss suites use this one.
//!
//! - [`Model`]: the file system as nodes with a current and a durable state. A file's data
//!   and size become durable when the file is `fsync`ed or `fdatasync`ed; a directory's
//!   entries (creates, renames, unlinks) when the directory is (POSIX-strict: syncing a
//!   file does not make its name durable). [`Model::power_off`] drops everything volatile,
//!   optionally keeping a torn prefix of each file's unsynced writes.
//! - [`PowerFs`]: the model mounted through FUSE; [`PowerFs::power_off`] unmounts, drops
//!   what was volatile and mounts the durable state again.
//!
//! A dev/test crate: it depends on no Strata crate and no Strata crate depends on it
//! outside tests.

mod fuse;
mod model;
mod mount;

pub use model::{Attr, Errno, Kind, Model, PowerOffReport, ROOT};
pub use mount::PowerFs;
