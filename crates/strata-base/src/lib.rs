//! The base every Strata crate may use: the things that must be shared below the WAL and
//! the storage layer.
//!
//! - [`ErrorKind`]: the coarse class of an error — what a caller can do about it, and
//!   whether retrying helps. Each crate's error type classifies itself with it.
//! - [`Clock`]: wall time, a monotonic instant and sleeps, injected everywhere the engine
//!   reads time ([`SystemClock`] in production, [`ManualClock`] in tests).
//!
//! # Layering
//!
//! Depends on no other Strata crate; every Strata crate may depend on it.

mod clock;
mod error_kind;

pub use clock::{Clock, ClockRef, ManualClock, Sleep, SystemClock};
pub use error_kind::ErrorKind;
