//! Strata's region workers: the tasks that own regions and run the write path.
//!
//! - [`WorkerGroup`]: starts N workers and the background pools from [`WorkerGroupParts`]
//!   (config, object store, log store, clock, metrics registry, listener); routes each
//!   request to the worker that owns its region (fixed for the region's life); stops
//!   everything in order with every waiter answered.
//! - The worker loop (private): batches requests; handles background results, then all
//!   writes, then DDLs; reacts to the shared "memory released" signal (engine-full
//!   flushes, stalled writes) and to a periodic timer from the injected clock.
//! - The write path, admit → log → apply: reject over the reject limit, stall over the
//!   budget (and, per region, over its own `write_buffer_size`), wait at the region's gate
//!   (behind DDLs waiting for a flush, or its open or change), check state and schema;
//!   **one WAL append per batch**; insert into memtables, publish sequence and entry id,
//!   reply. WAL entries carry op type, first
//!   sequence and an Arrow IPC batch per mutation.
//! - DDLs: create, open (WAL replay), close, drop (marker first, files later), alter
//!   (flush first), flush, truncate, set writable / read-only, compact, role changes and
//!   follower syncs. Opens, creates and every change of an open region do their manifest
//!   and object-store I/O on tasks of their own; the worker applies the outcome, and the
//!   region's requests wait for it in order — no other region of the worker waits.
//! - Every request that waits on a region waits in that region's gate (`gate.rs`), which
//!   says why; the flush and compaction schedulers only track what runs.
//! - Read-only groups ([`WorkerConfig::read_only`]): open and close only, regions
//!   read-only, nothing written; an open that finds the WAL moved on under it (a writer in
//!   another process) starts over from the manifest.
//! - [`Region`] / [`RegionMap`]: open regions, readable without a worker round trip.
//! - [`WorkerError`] with a coarse [`ErrorKind`] that says whether a retry helps.
//! - [`EventListener`]: test hooks with no-op defaults ([`NoopListener`]).
//! - The log store is any [`strata_wal::LogStore`] behind a [`LogStoreRef`] (the trait is
//!   object-safe).
//!
//! # Layering
//!
//! Depends on every library crate below it (base, request, buffer, scheduler, wal,
//! storage, flush, compaction); only `strata-engine` and the tools above depend on it.

mod changes;
mod config;
mod delay;
mod error;
mod flush_policy;
mod gate;
mod group;
mod handle_alter;
mod handle_close;
mod handle_compaction;
mod handle_create;
mod handle_drop;
mod handle_flush;
mod handle_open;
mod handle_role;
mod handle_set_writable;
mod handle_truncate;
mod handle_write;
mod in_flight;
mod listener;
mod metrics;
mod opener;
mod purges;
mod region;
mod request;
mod stalled;
mod wal_entry;
mod worker;

pub use config::WorkerConfig;
pub use error::{ErrorKind, Result, WorkerError};
pub use group::{WorkerGroup, WorkerGroupParts};
pub use listener::{EventListener, NoopListener};
pub use region::{Region, RegionMap, RegionState};
pub use strata_wal::LogStoreRef;
