//! A region's manifest and state behind one committer ([`RegionCommitter`]), and the
//! states a region passes through ([`RegionState`]).

mod committer;
mod state;

pub use committer::{CommitError, CommitGuard, CommitPurpose, Committer, RegionCommitter};
pub use state::RegionState;
