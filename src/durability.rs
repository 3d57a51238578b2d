//! Durability levels and the watermarks that define them (DESIGN §3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::wire::ACK_UNTIL_HEADER;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    Memory,
    LocalDisk,
    Replicated,
    ObjectStorage,
    Committed,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Memory,
        Level::LocalDisk,
        Level::Replicated,
        Level::ObjectStorage,
        Level::Committed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Memory => "MEMORY",
            Level::LocalDisk => "LOCAL_DISK",
            Level::Replicated => "REPLICATED",
            Level::ObjectStorage => "OBJECT_STORAGE",
            Level::Committed => "COMMITTED",
        }
    }

    /// The highest level a cluster delivers: COMMITTED with tiering, else REPLICATED.
    pub fn highest(tiering: bool) -> Level {
        if tiering {
            Level::Committed
        } else {
            Level::Replicated
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A durability level that is not one, or that the cluster does not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error("unknown durability level {0:?}; one of MEMORY, LOCAL_DISK, REPLICATED, OBJECT_STORAGE, COMMITTED")]
    Unknown(String),
    #[error("{ACK_UNTIL_HEADER}: {level} is not enabled on this cluster (tiering to object storage is not configured: set object-store-url); the highest level is {highest}")]
    NotDelivered { level: Level, highest: Level },
}

impl FromStr for Level {
    type Err = LevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| LevelError::Unknown(s.to_string()))
    }
}

/// Parses `x-arka-ack-until`, refusing levels above `highest` (what the cluster delivers);
/// without the header, `default` (or `highest` if that is lower).
pub fn parse_ack_until(
    value: Option<&str>,
    default: Level,
    highest: Level,
) -> Result<Level, LevelError> {
    let Some(value) = value else {
        return Ok(default.min(highest));
    };
    let level: Level = value.parse()?;
    if level > highest {
        return Err(LevelError::NotDelivered { level, highest });
    }
    Ok(level)
}

/// The node's watermarks: an LSN is at level L when `lsn <= watermark(L)`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Watermarks {
    pub memory_lsn: u64,
    pub disk_lsn: u64,
    pub replicated_lsn: u64,
    pub s3_lsn: u64,
    pub committed_lsn: u64,
}

impl Watermarks {
    /// Each level with its watermark, lowest level first.
    pub fn by_level(&self) -> [(Level, u64); 5] {
        [
            (Level::Memory, self.memory_lsn),
            (Level::LocalDisk, self.disk_lsn),
            (Level::Replicated, self.replicated_lsn),
            (Level::ObjectStorage, self.s3_lsn),
            (Level::Committed, self.committed_lsn),
        ]
    }

    /// The highest level `lsn` has reached, if any.
    pub fn level_of(&self, lsn: u64) -> Option<Level> {
        self.by_level()
            .into_iter()
            .rev()
            .find(|(_, mark)| lsn > 0 && lsn <= *mark)
            .map(|(level, _)| level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!("replicated".parse::<Level>(), Ok(Level::Replicated));
        assert!(Level::Memory < Level::Committed);
        assert!("DISK".parse::<Level>().is_err());
        let replicated = Level::highest(false);
        assert!(
            parse_ack_until(Some("COMMITTED"), Level::Committed, replicated)
                .unwrap_err()
                .to_string()
                .contains("not enabled")
        );
        assert_eq!(
            parse_ack_until(None, Level::Committed, replicated),
            Ok(Level::Replicated)
        );
        assert_eq!(
            parse_ack_until(None, Level::Committed, Level::highest(true)),
            Ok(Level::Committed)
        );
    }

    #[test]
    fn level_of_takes_the_highest_watermark_reached() {
        let w = Watermarks {
            memory_lsn: 10,
            disk_lsn: 8,
            replicated_lsn: 5,
            ..Default::default()
        };
        assert_eq!(w.level_of(4), Some(Level::Replicated));
        assert_eq!(w.level_of(7), Some(Level::LocalDisk));
        assert_eq!(w.level_of(10), Some(Level::Memory));
        assert_eq!(w.level_of(11), None);
    }
}
