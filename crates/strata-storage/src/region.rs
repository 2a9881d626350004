//! A region's manifest and state behind one committer ([`RegionCommitter`]), the states a
//! region passes through ([`RegionState`]), and its objects in the store
//! ([`RegionFiles`]).

mod committer;
mod files;
mod state;

pub use committer::{CommitError, CommitGuard, CommitPurpose, Committer, RegionCommitter};
pub use files::RegionFiles;
pub use state::RegionState;
