//! The slots of a `MemoryStore`: a value or a tombstone per flag, each with its expiry, and at
//! most `max_slots` of them.
//!
//! An expired slot is absent in every respect (reads, the version guard, fills); it stays in
//! the map until a read finds it or a write needs its room, and then it is removed.

use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::Arc;
use crate::time::{NEVER, Ticks};
use std::collections::HashMap;

/// A stored definition.
pub(super) struct Stored {
    pub(super) def: Arc<FlagDefinition>,
    pub(super) stored_at: Ticks,
    pub(super) expires_at: Ticks,
}

enum Slot {
    Value(Stored),
    /// Reads as absent and refuses fills until it expires or a write replaces it.
    Tombstone {
        expires_at: Ticks,
    },
}

impl Slot {
    fn expires_at(&self) -> Ticks {
        match self {
            Slot::Value(v) => v.expires_at,
            Slot::Tombstone { expires_at } => *expires_at,
        }
    }
}

pub(super) struct Table {
    slots: HashMap<FlagId, Slot>,
    max_slots: usize,
    /// At most the earliest expiry in `slots` (a replaced slot may leave it lower): until
    /// then a purge would find nothing, so a full table of live slots costs no scan per write.
    next_expiry: Ticks,
}

impl Table {
    pub(super) fn new(max_slots: usize) -> Self {
        Self {
            slots: HashMap::new(),
            max_slots,
            next_expiry: NEVER,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The fresh value of `id`; an expired slot found on the way is removed.
    pub(super) fn value(&mut self, id: &FlagId, now: Ticks) -> Option<&Stored> {
        if self.slots.get(id).is_some_and(|s| s.expires_at() <= now) {
            self.slots.remove(id);
            return None;
        }
        match self.slots.get(id) {
            Some(Slot::Value(v)) => Some(v),
            _ => None,
        }
    }

    /// Every fresh value.
    pub(super) fn values(&self, now: Ticks) -> Vec<Arc<FlagDefinition>> {
        self.slots
            .values()
            .filter_map(|s| match s {
                Slot::Value(v) if v.expires_at > now => Some(Arc::clone(&v.def)),
                _ => None,
            })
            .collect()
    }

    /// Stores `value` unless a fresh value of a higher version is stored: `Ok(false)` when
    /// the version guard refused it.
    ///
    /// # Errors
    /// [`ErrorKind::CapacityExceeded`] when the write needs a new slot and none is free.
    pub(super) fn set(&mut self, id: &FlagId, value: Stored, now: Ticks) -> Result<bool> {
        if let Some(Slot::Value(v)) = self.fresh(id, now) {
            if v.def.version > value.def.version {
                return Ok(false);
            }
        }
        self.put(id, Slot::Value(value), now)?;
        Ok(true)
    }

    /// Stores `value` only where `id`'s slot is empty or expired: `Ok(false)` when a fresh
    /// value or tombstone is there.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub(super) fn fill(&mut self, id: &FlagId, value: Stored, now: Ticks) -> Result<bool> {
        if self.fresh(id, now).is_some() {
            return Ok(false);
        }
        self.put(id, Slot::Value(value), now)?;
        Ok(true)
    }

    /// Replaces `id`'s slot with a tombstone expiring at `expires_at`.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub(super) fn tombstone(&mut self, id: &FlagId, expires_at: Ticks, now: Ticks) -> Result<()> {
        self.put(id, Slot::Tombstone { expires_at }, now)
    }

    /// Empties the table; returns the old one, for the caller to drop outside its lock.
    pub(super) fn take_all(&mut self) -> Table {
        std::mem::replace(self, Table::new(self.max_slots))
    }

    fn fresh(&self, id: &FlagId, now: Ticks) -> Option<&Slot> {
        self.slots.get(id).filter(|s| s.expires_at() > now)
    }

    /// Puts `slot` in `id`'s place, making room by purging expired slots if it needs a new
    /// one and the table is full.
    fn put(&mut self, id: &FlagId, slot: Slot, now: Ticks) -> Result<()> {
        if !self.slots.contains_key(id) && self.slots.len() >= self.max_slots {
            self.purge(now);
            if self.slots.len() >= self.max_slots {
                return Err(Error::new(
                    ErrorKind::CapacityExceeded,
                    format!(
                        "flag `{id}`: the store holds its maximum of {} flags, none expired",
                        self.max_slots
                    ),
                ));
            }
        }
        self.next_expiry = self.next_expiry.min(slot.expires_at());
        self.slots.insert(id.clone(), slot);
        Ok(())
    }

    /// Removes every expired slot (unless none can have expired yet).
    fn purge(&mut self, now: Ticks) {
        if now < self.next_expiry {
            return;
        }
        let mut next = NEVER;
        self.slots.retain(|_, s| {
            let expires_at = s.expires_at();
            if expires_at > now {
                next = next.min(expires_at);
            }
            expires_at > now
        });
        self.next_expiry = next;
    }
}
