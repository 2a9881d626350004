//! Strata's cross-crate reliability suites live in this crate's `tests/` directory:
//!
//! - `bad_input.rs`: a table of invalid requests, DDLs and configurations; each must get
//!   its typed error, leave the WAL untouched, and a restart must replay cleanly.
//!
//! The library itself is empty; suites that need shared support code will put it here.
