//! End-to-end scenarios of the engine: flush triggers, stalls, region lifecycle, and a
//! regression test for each problem users hit in the engine this one is modelled on
//! (reference section 16). Time comes from a manual clock; waits use the listener, each
//! under a watchdog.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    unreachable_pub,
    missing_docs
)]

mod background_changes;
mod background_open;
mod common;
mod compaction;
mod file_lifetime;
mod flush;
mod lifecycle;
mod read_only;
mod regressions;
mod replay;
mod roles;
mod scan;
mod slowdown;
mod ttl;
mod write_path;
