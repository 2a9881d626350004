//! [`Op`]: one step of a test sequence, and the [`Row`]s and [`Key`]s it carries.

use std::fmt;
use std::time::Duration;

use strata_request::{ColumnDataType, Value};

/// A row's primary key and time: its tags (in declared order; `None` is a null tag) and
/// its timestamp in the region's unit. Ordered as the engine orders rows (nulls first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The tag values.
    pub tags: Vec<Option<String>>,
    /// The timestamp, in the unit of the region's time index.
    pub ts: i64,
}

/// One row: its [`Key`] and its field values in the region's field order (`None` is a
/// null). In an [`Op::Put`] the fields are the [`TableSchema`](super::TableSchema)'s;
/// read back ([`TestEngine::rows`](super::TestEngine::rows), [`Model::rows`](super::Model::rows))
/// they are the region's current fields, fields added later included.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Tags and timestamp.
    pub key: Key,
    /// The field values.
    pub fields: Vec<Option<Value>>,
}

/// One step of a test sequence, for both a [`TestEngine`](super::TestEngine) and a
/// [`Model`](super::Model). `region` is an index into the engine's regions
/// (`0..regions`).
///
/// An operation on a region that does not exist (dropped, not created again) is sent to
/// the engine only when the engine must refuse it (writes, flushes, compactions,
/// truncates, alters: with [`RegionNotFound`](crate::ErrorKind::RegionNotFound)); the
/// others ([`Op::Reopen`], [`Op::Drop`]) and [`Op::Create`] of a region that exists are
/// skipped. Neither changes the model.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// Write these rows (later rows of the batch win over earlier ones with the same key).
    Put {
        /// The region.
        region: usize,
        /// The rows, with the table schema's fields.
        rows: Vec<Row>,
    },
    /// Delete the rows with these keys (keys may repeat; a missing key deletes nothing).
    Delete {
        /// The region.
        region: usize,
        /// The keys.
        keys: Vec<Key>,
    },
    /// Flush the region's memtables.
    Flush {
        /// The region.
        region: usize,
    },
    /// Compact the region now (automatic compactions also run in the background).
    Compact {
        /// The region.
        region: usize,
    },
    /// Remove every row of the region.
    Truncate {
        /// The region.
        region: usize,
    },
    /// Add a nullable field (rows written before read it as null; puts leave it null).
    /// Adding a field whose name the region has must be refused
    /// ([`InvalidRequest`](crate::ErrorKind::InvalidRequest)) and changes nothing.
    AddField {
        /// The region.
        region: usize,
        /// The new field's name.
        name: String,
        /// Its type (a field type).
        data_type: ColumnDataType,
    },
    /// Set the region's time to live (`None`: remove it). Rows older than the clock minus
    /// the TTL are not returned.
    SetTtl {
        /// The region.
        region: usize,
        /// The TTL; whole milliseconds count.
        ttl: Option<Duration>,
    },
    /// Move the manual clock on.
    AdvanceClock {
        /// By this much.
        by: Duration,
    },
    /// Close the region and open it again (replaying its log).
    Reopen {
        /// The region.
        region: usize,
    },
    /// Stop the engine and build a new one over the same object store, log and clock,
    /// opening every region that exists.
    Restart,
    /// Drop the region.
    Drop {
        /// The region.
        region: usize,
    },
    /// Create the region again (after a drop), with the table schema.
    Create {
        /// The region.
        region: usize,
    },
}

impl Op {
    /// The region the operation is about, if one.
    pub fn region(&self) -> Option<usize> {
        match self {
            Op::Put { region, .. }
            | Op::Delete { region, .. }
            | Op::Flush { region }
            | Op::Compact { region }
            | Op::Truncate { region }
            | Op::AddField { region, .. }
            | Op::SetTtl { region, .. }
            | Op::Reopen { region }
            | Op::Drop { region }
            | Op::Create { region } => Some(*region),
            Op::AdvanceClock { .. } | Op::Restart => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for tag in &self.tags {
            match tag {
                Some(tag) => write!(f, "{tag:?}, ")?,
                None => f.write_str("null, ")?,
            }
        }
        write!(f, "{})", self.ts)
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} =", self.key)?;
        for field in &self.fields {
            match field {
                Some(value) => write!(f, " {value:?}")?,
                None => f.write_str(" null")?,
            }
        }
        Ok(())
    }
}

fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    f.write_str("[")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str("]")
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { region, rows } => {
                write!(f, "put #{region} ")?;
                list(f, rows)
            }
            Op::Delete { region, keys } => {
                write!(f, "delete #{region} ")?;
                list(f, keys)
            }
            Op::Flush { region } => write!(f, "flush #{region}"),
            Op::Compact { region } => write!(f, "compact #{region}"),
            Op::Truncate { region } => write!(f, "truncate #{region}"),
            Op::AddField {
                region,
                name,
                data_type,
            } => write!(f, "add field {name:?} {data_type} to #{region}"),
            Op::SetTtl { region, ttl } => write!(f, "set ttl of #{region} to {ttl:?}"),
            Op::AdvanceClock { by } => write!(f, "advance the clock {by:?}"),
            Op::Reopen { region } => write!(f, "close and open #{region}"),
            Op::Restart => f.write_str("restart the engine"),
            Op::Drop { region } => write!(f, "drop #{region}"),
            Op::Create { region } => write!(f, "create #{region}"),
        }
    }
}
