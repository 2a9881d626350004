//! [`RegionId`]: the 64-bit name of a region, `table_id << 32 | region_number`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use snafu::{OptionExt, ResultExt, Snafu};

/// Identifies one region (a shard of a table) for its whole life.
///
/// The table id sits in the high 32 bits and the region number in the low 32 bits, so ids of
/// one table sort together. The text form is `table_id.region_number`, e.g. `1024.0`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegionId(u64);

impl RegionId {
    /// Builds the id of region `region_number` of table `table_id`.
    pub const fn new(table_id: u32, region_number: u32) -> Self {
        Self(((table_id as u64) << 32) | region_number as u64)
    }

    /// Wraps an already packed id.
    pub const fn from_u64(packed: u64) -> Self {
        Self(packed)
    }

    /// The packed 64-bit form.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The table this region belongs to (high 32 bits).
    pub const fn table_id(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The region's number within its table (low 32 bits).
    pub const fn region_number(self) -> u32 {
        self.0 as u32
    }
}

impl From<u64> for RegionId {
    fn from(packed: u64) -> Self {
        Self(packed)
    }
}

impl From<RegionId> for u64 {
    fn from(id: RegionId) -> Self {
        id.0
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.table_id(), self.region_number())
    }
}

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionId({}.{})", self.table_id(), self.region_number())
    }
}

/// Why a text could not be parsed as a [`RegionId`].
#[derive(Debug, Snafu, Clone, PartialEq, Eq)]
#[snafu(display("invalid region id {input:?}: {reason}"))]
pub struct ParseRegionIdError {
    input: String,
    reason: ParseRegionIdReason,
}

/// The specific reason a region id text was rejected.
#[derive(Debug, Snafu, Clone, PartialEq, Eq)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum ParseRegionIdReason {
    /// The text has no `.` between table id and region number.
    #[snafu(display("expected `table_id.region_number`, e.g. `1024.0`"))]
    MissingDot,
    /// One half is empty or has characters other than ASCII digits.
    #[snafu(display("{part} {text:?} is not a decimal number"))]
    NotDecimal {
        /// Which half: `table id` or `region number`.
        part: &'static str,
        /// The offending text.
        text: String,
    },
    /// One half is decimal but does not fit in a `u32`.
    #[snafu(display("{part} {text:?} is out of range 0..=4294967295"))]
    OutOfRange {
        /// Which half: `table id` or `region number`.
        part: &'static str,
        /// The offending text.
        text: String,
        /// The integer parser's complaint.
        source: std::num::ParseIntError,
    },
}

impl FromStr for RegionId {
    type Err = ParseRegionIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let parse = || -> Result<RegionId, ParseRegionIdReason> {
            let (table, region) = input.split_once('.').context(MissingDotSnafu)?;
            let number = |part: &'static str, text: &str| {
                // `u32::from_str` also accepts a leading `+`; a region id never has one.
                snafu::ensure!(
                    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
                    NotDecimalSnafu { part, text }
                );
                text.parse::<u32>().context(OutOfRangeSnafu { part, text })
            };
            Ok(RegionId::new(
                number("table id", table)?,
                number("region number", region)?,
            ))
        };
        parse().map_err(|reason| ParseRegionIdError {
            input: input.to_string(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packs_table_id_high_and_region_number_low() {
        let id = RegionId::new(1024, 7);
        assert_eq!(id.as_u64(), (1024u64 << 32) | 7);
        assert_eq!(id.table_id(), 1024);
        assert_eq!(id.region_number(), 7);
        assert_eq!(RegionId::from_u64(id.as_u64()), id);
    }

    #[test]
    fn displays_and_parses_as_table_dot_region() {
        let id = RegionId::new(1024, 0);
        assert_eq!(id.to_string(), "1024.0");
        assert_eq!("1024.0".parse::<RegionId>(), Ok(id));
        assert_eq!(format!("{id:?}"), "RegionId(1024.0)");
    }

    #[test]
    fn rejects_malformed_text_with_a_reason() {
        for bad in [
            "",
            "1024",
            "1024.",
            ".0",
            "a.0",
            "1.b",
            "1.2.3",
            "-1.0",
            "+1.0",
            "1.+0",
            "4294967296.0",
        ] {
            let err = bad.parse::<RegionId>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("invalid region id"), "{bad:?}: {msg}");
        }
        let msg = "1024".parse::<RegionId>().unwrap_err().to_string();
        assert!(msg.contains("table_id.region_number"), "{msg}");
        let msg = "1.x".parse::<RegionId>().unwrap_err().to_string();
        assert!(
            msg.contains("region number \"x\" is not a decimal"),
            "{msg}"
        );
        let msg = "4294967296.0".parse::<RegionId>().unwrap_err().to_string();
        assert!(msg.contains("out of range"), "{msg}");
    }

    #[test]
    fn serializes_as_the_packed_integer() {
        let id = RegionId::new(3, 4);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, ((3u64 << 32) | 4).to_string());
        assert_eq!(serde_json::from_str::<RegionId>(&json).unwrap(), id);
    }

    proptest! {
        #[test]
        fn text_form_round_trips(table in any::<u32>(), region in any::<u32>()) {
            let id = RegionId::new(table, region);
            prop_assert_eq!(id.to_string().parse::<RegionId>(), Ok(id));
            prop_assert_eq!(RegionId::from_u64(id.as_u64()), id);
        }
    }
}
