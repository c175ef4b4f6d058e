//! The id of a stored message, unique across the partitions of a store.
//!
//! A row id is unique within its partition only (it is the capture time, see
//! [`super::schema::RowIds`], and a replayed capture may land in another partition with
//! the same times), so an id names the partition too: `START-SPAN-ROW`, three decimal
//! numbers, the partition's start (Unix seconds) and span (seconds) as in its file name,
//! and the row id. Readers should treat it as opaque: the HTTP API hands it out
//! (`"id"` of each message) and takes it back (`GET /api/v1/messages/{id}`).

use std::fmt;
use std::str::FromStr;

/// Where a stored message is: its partition and its row, written `START-SPAN-ROW`: the
/// partition's start (Unix seconds) and span (seconds) as in its file name, and the row
/// id. Opaque to readers: the HTTP API hands it out and takes it back.
///
/// ```
/// use hep_server::store::MessageId;
/// let id: MessageId = "1795651200-3600-1838746763362304".parse().unwrap();
/// assert_eq!(id.partition_start, 1_795_651_200);
/// assert_eq!(id.to_string(), "1795651200-3600-1838746763362304");
/// assert!("1795651200-3600".parse::<MessageId>().is_err());
/// assert!("a-b-c".parse::<MessageId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    /// The partition's start, Unix seconds.
    pub partition_start: i64,
    /// The partition's span, seconds.
    pub partition_span: i64,
    /// The row id within the partition.
    pub row: i64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}",
            self.partition_start, self.partition_span, self.row
        )
    }
}

/// Why a text is not a [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a message id (expected three numbers START-SPAN-ROW, as the API gives them)")]
pub struct BadMessageId(pub String);

impl FromStr for MessageId {
    type Err = BadMessageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMessageId(s.chars().take(100).collect());
        let mut parts = s.split('-');
        let mut next = || -> Result<i64, BadMessageId> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let (partition_start, partition_span, row) = (next()?, next()?, next()?);
        if parts.next().is_some() || partition_span == 0 {
            return Err(bad());
        }
        Ok(Self {
            partition_start,
            partition_span,
            row,
        })
    }
}
