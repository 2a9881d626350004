//! A test kit for property suites over the engine (feature `testing`): what Strata's own
//! model test uses, public so a downstream project can check an engine it configures the
//! same way in a few lines.
//!
//! - [`TestEngine`]: an [`Engine`](crate::Engine) on a memory object store behind a
//!   [`FaultPlan`], a memory log that outlives engine restarts, a [`ManualClock`] and a
//!   recording listener ([`Events`]). [`TestEngine::apply`] runs one [`Op`];
//!   [`TestEngine::rows`] reads a region back as [`Row`]s; [`TestEngine::check`] compares
//!   every region with a [`Model`].
//! - [`Model`]: the reference model — per region a last-write-wins map from (tags,
//!   timestamp) to fields, with deletes, truncates, drops, added fields and the region's
//!   TTL on the kit's clock. [`Model::apply`] takes the same [`Op`]s.
//! - [`strategies`]: proptest strategies for region schemas ([`TableSchema`]), write
//!   batches (puts and deletes, with duplicate keys inside a batch and across batches) and
//!   operation sequences, weighted by a [`Mix`].
//! - [`proptest`] itself, re-exported, so a downstream crate needs no version of its own.
//!
//! # A property test
//!
//! Proptest bodies are synchronous: build a tokio runtime inside the body and block on
//! the engine there. Errors of the kit ([`KitError`]) turn into test failures with `?`.
//!
//! ```
//! use strata_engine::testing::proptest::prelude::*;
//! use strata_engine::testing::{Mix, TestEngine, strategies};
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
//!     // #[test] (in a test target; here the doc test calls it)
//!     fn the_engine_matches_the_model(
//!         (schema, ops) in strategies::scenario(2, Mix::default(), 1..12)
//!     ) {
//!         let runtime = tokio::runtime::Builder::new_multi_thread()
//!             .worker_threads(2)
//!             .enable_all()
//!             .build()?;
//!         runtime.block_on(async {
//!             let mut engine = TestEngine::builder().schema(schema).regions(2).build().await?;
//!             let mut model = engine.model();
//!             // Applies each op to both and compares every region after each step.
//!             engine.run(&mut model, &ops).await?;
//!             engine.stop().await
//!         })?;
//!     }
//! }
//! # fn main() { the_engine_matches_the_model(); }
//! ```
//!
//! Step by step, the same is `engine.apply(&op).await?; model.apply(&op);` and then
//! `engine.check(&model).await?` — or, for one region,
//! `prop_assert_eq!(model.settled(r, engine.rows(r).await?), model.rows(r))`.
//!
//! # What the model cannot decide
//!
//! A row that expired under a region's TTL may have been removed for good by a compaction
//! (or the delete marker hiding an older version of it may have been): if a longer TTL
//! (or none) makes its time visible again, it may be there or not, with any of its
//! versions. The model tracks, per region, the highest TTL cutoff there ever was;
//! [`Model::rows`] leaves out rows older than it that are visible again, and
//! [`Model::settled`] removes the same rows from what the engine returned, so the two
//! compare equal exactly when every row the model can decide matches.

mod engine;
mod events;
mod model;
mod op;
mod schema;
pub mod strategies;
#[cfg(test)]
mod tests;

use std::fmt;

pub use engine::{TestEngine, TestEngineBuilder};
pub use events::{Event, Events};
pub use model::Model;
pub use op::{Key, Op, Row};
pub use schema::{FieldSpec, TableSchema};
pub use strategies::Mix;

/// The proptest version the [`strategies`] are written for.
pub use proptest;
pub use strata_scheduler::ManualClock;
pub use strata_storage::testing::{FaultLayer, FaultPlan};

/// Where a [`TestEngine`]'s clock (and a fresh [`Model`]'s) starts, in milliseconds since
/// the epoch: just past the timestamps the [`strategies`] write (a few milliseconds after
/// the epoch, in the region's unit), so TTLs of about a second — what
/// [`strategies::ops`] sets — expire some of them and the clock's small steps expire more.
pub const CLOCK_START_MILLIS: i64 = 1_000;

/// Why a step of the kit failed: the engine failed an operation, refused one it should
/// have accepted (or accepted one it should have refused), returned something the kit
/// cannot read, or differs from the model.
#[derive(Debug)]
#[non_exhaustive]
pub enum KitError {
    /// The engine failed `op`.
    Engine {
        /// What the kit was doing.
        op: String,
        /// The engine's error.
        source: crate::Error,
    },
    /// The engine answered `op` other than the kit expects.
    Unexpected {
        /// What the kit was doing.
        op: String,
        /// What was expected and what happened.
        detail: String,
    },
    /// A schema or rows given to the kit, or a batch the engine returned, do not fit.
    Invalid {
        /// What does not fit.
        detail: String,
    },
    /// A region read from the engine differs from the model.
    Mismatch {
        /// The region's index in the [`TestEngine`].
        region: usize,
        /// The difference.
        detail: String,
    },
    /// A step of [`TestEngine::run`] failed: which step, after which operations.
    Step {
        /// The failing step's index in the sequence.
        step: usize,
        /// The operations applied up to and including it.
        history: Vec<Op>,
        /// What failed.
        source: Box<KitError>,
    },
}

impl fmt::Display for KitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KitError::Engine { op, source } => write!(f, "{op}: {source}"),
            KitError::Unexpected { op, detail } => write!(f, "{op}: {detail}"),
            KitError::Invalid { detail } => write!(f, "invalid: {detail}"),
            KitError::Mismatch { region, detail } => {
                write!(f, "region #{region} differs from the model: {detail}")
            }
            KitError::Step {
                step,
                history,
                source,
            } => {
                write!(f, "step {step}: {source}\nafter:")?;
                for (i, op) in history.iter().enumerate() {
                    write!(f, "\n  {i}: {op}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for KitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KitError::Engine { source, .. } => Some(source),
            KitError::Step { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Results of the kit.
pub type KitResult<T> = std::result::Result<T, KitError>;
