//! [`ChangeFeed`]: what a [`FlagSource`](super::FlagSource) announces of its own changes.

use crate::flag::FlagId;
use tokio::sync::mpsc;

/// One announcement of a source's change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These flags were created, changed or deleted.
    Flags(Vec<FlagId>),
    /// Anything may have changed (a table truncated, say): every flag is checked again.
    All,
}

/// The changes a [`FlagSource`](super::FlagSource) announces, in the order it announces them,
/// from [`FlagSource::subscribe_changes`](super::FlagSource::subscribe_changes).
///
/// Delivery may be lossy only at its end: a feed that may have lost a change must end (its
/// `next` returning `None`), so that the cache subscribes again and checks every flag.
pub struct ChangeFeed {
    changes: mpsc::Receiver<Change>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// A feed fed through a channel: the source sends each change; dropping every sender ends
    /// the feed. A source whose channel is full should end the feed (drop its sender) rather
    /// than wait or drop a change.
    pub fn from_channel(changes: mpsc::Receiver<Change>) -> Self {
        Self { changes }
    }

    /// The next change, or `None` once the feed has ended (changes may have been lost).
    pub async fn next(&mut self) -> Option<Change> {
        self.changes.recv().await
    }
}
