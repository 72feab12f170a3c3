//! The backplane of a `MemoryStore`: a bounded channel per subscriber.
//!
//! Like Redis with a slow pub/sub client, a subscriber whose buffer is full is dropped rather
//! than waited for or silently skipped: its subscription ends, which tells it that notices
//! were lost, so it resubscribes and revalidates.

use crate::error::{Error, ErrorKind, Result};
use crate::sync::{Mutex, lock};
use crate::tiered::Subscription;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// How many notices a subscriber may have unread before it is dropped.
pub(super) const NOTICE_BUFFER: usize = 1024;

/// How many subscribers a store keeps at once.
pub(super) const MAX_SUBSCRIBERS: usize = 1024;

pub(super) struct Subscribers {
    senders: Mutex<Vec<mpsc::Sender<Vec<u8>>>>,
}

impl Subscribers {
    pub(super) fn new() -> Self {
        Self {
            senders: Mutex::new(Vec::new()),
        }
    }

    /// A new subscriber, unless [`MAX_SUBSCRIBERS`] are subscribed (after dropping those that
    /// went away).
    pub(super) fn subscribe(&self) -> Result<Subscription> {
        let mut senders = lock(&self.senders);
        if senders.len() >= MAX_SUBSCRIBERS {
            senders.retain(|tx| !tx.is_closed());
        }
        if senders.len() >= MAX_SUBSCRIBERS {
            return Err(Error::new(
                ErrorKind::CapacityExceeded,
                format!("MemoryStore::subscribe: {MAX_SUBSCRIBERS} subscribers already"),
            ));
        }
        let (tx, rx) = mpsc::channel(NOTICE_BUFFER);
        senders.push(tx);
        Ok(Subscription::from_channel(rx))
    }

    /// Sends `notice` to every subscriber, dropping the full ones and forgetting the closed
    /// ones; returns how many were dropped for being full.
    pub(super) fn publish(&self, notice: &[u8]) -> usize {
        let mut dropped = 0;
        lock(&self.senders).retain(|tx| match tx.try_send(notice.to_vec()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                dropped += 1;
                false
            }
            Err(TrySendError::Closed(_)) => false,
        });
        dropped
    }

    /// Ends every current subscription (each reads what it had buffered, then `None`).
    pub(super) fn end_all(&self) {
        let ended = std::mem::take(&mut *lock(&self.senders));
        drop(ended);
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.senders).len()
    }
}
