//! [`RegionState`]: what a region accepts, and [`StateCell`], the cell that holds it.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use strata_request::RegionRole;

/// What a region currently accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegionState {
    /// Accepts writes, flushes and DDLs.
    Writable,
    /// Open for reads only: a follower ([`RegionRole::Follower`]), a region of a
    /// read-only engine, or one the embedder made read-only.
    ReadOnly,
    /// Handing the region over ([`RegionRole::Downgrading`]): new writes are refused,
    /// flushes still run and commit.
    Downgrading,
    /// A schema change is being persisted.
    Altering,
    /// Being dropped.
    Dropping,
    /// Being truncated.
    Truncating,
    /// Closed: the instance is no longer in the region map.
    Closed,
}

impl RegionState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => RegionState::Writable,
            1 => RegionState::ReadOnly,
            2 => RegionState::Altering,
            3 => RegionState::Dropping,
            4 => RegionState::Truncating,
            6 => RegionState::Downgrading,
            _ => RegionState::Closed,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            RegionState::Writable => 0,
            RegionState::ReadOnly => 1,
            RegionState::Altering => 2,
            RegionState::Dropping => 3,
            RegionState::Truncating => 4,
            RegionState::Closed => 5,
            RegionState::Downgrading => 6,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionState::Writable => "writable",
            RegionState::ReadOnly => "read-only",
            RegionState::Altering => "altering",
            RegionState::Dropping => "dropping",
            RegionState::Truncating => "truncating",
            RegionState::Closed => "closed",
            RegionState::Downgrading => "downgrading",
        }
    }

    /// The role a region in this state plays: the writable and transient states lead.
    pub fn role(self) -> RegionRole {
        match self {
            RegionState::ReadOnly | RegionState::Closed => RegionRole::Follower,
            RegionState::Downgrading => RegionRole::Downgrading,
            _ => RegionRole::Leader,
        }
    }
}

impl fmt::Display for RegionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A region's state. Read without a lock by anyone; set only through the region's
/// committer, under its manifest lock (see `committer.rs`).
#[derive(Debug)]
pub(crate) struct StateCell(AtomicU8);

impl StateCell {
    pub(crate) fn new(state: RegionState) -> Self {
        Self(AtomicU8::new(state.as_u8()))
    }

    pub(crate) fn get(&self) -> RegionState {
        RegionState::from_u8(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn set(&self, state: RegionState) {
        self.0.store(state.as_u8(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_survives_the_cell() {
        let all = [
            RegionState::Writable,
            RegionState::ReadOnly,
            RegionState::Downgrading,
            RegionState::Altering,
            RegionState::Dropping,
            RegionState::Truncating,
            RegionState::Closed,
        ];
        let cell = StateCell::new(RegionState::Closed);
        for state in all {
            cell.set(state);
            assert_eq!(cell.get(), state);
        }
    }
}
