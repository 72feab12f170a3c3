//! The writes of [`TieredCache`]: L2 first (through its version guard), then L1, then a notice
//! to the other instances (the backplane). Every write also detaches the flag's flight and
//! forgets its deadlines, so a reader that starts after the write returned loads afresh.
//!
//! In that order, a load that read L2 before the write holds an L1 fill ticket older than the
//! write's fence, so it cannot install what it read; and an invalidate leaves an L2 tombstone
//! that refuses the load's write-back.

use super::backplane::Action;
use super::{Inner, SetManyOutcome, TieredCache};
use crate::error::Result;
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::Arc;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

impl TieredCache {
    /// Stores `def` in L2 (through its version guard) and then in L1, for `ttl` (each layer's
    /// default when `None`), and announces it.
    ///
    /// # Errors
    /// [`ErrorKind::StaleVersion`](crate::ErrorKind::StaleVersion) when L2 or L1 holds a higher
    /// version (L1's copy is then dropped, so the next read fetches the newer one; nothing is
    /// announced); an L2 failure (L1 is still written); the checks of
    /// [`LocalCache::try_set`](crate::LocalCache::try_set).
    pub async fn try_set(
        &self,
        id: &FlagId,
        def: FlagDefinition,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let outcome = self.try_set_many(vec![(id.clone(), def)], ttl).await?;
        match outcome.refused.first() {
            Some(refused) => Err(crate::Error::new(
                crate::ErrorKind::StaleVersion,
                format!("a higher version of `{refused}` is cached; the write was refused"),
            )),
            None => Ok(()),
        }
    }

    /// [`try_set`](Self::try_set) for several definitions: one L2 batch, then L1, then one
    /// notice. Says flag by flag which writes a higher version refused: those are not written
    /// to L1 (whose copy is dropped, so the next read fetches the newer one) nor announced. An
    /// id given twice is written once, at its highest version. An invalid definition is left
    /// out (an error), and the rest are written and announced.
    ///
    /// # Errors
    /// The first error (an invalid definition, or either layer's), after attempting every
    /// write; the outcome of the others is then not reported (check the flags again if it
    /// matters).
    pub async fn try_set_many(
        &self,
        flags: Vec<(FlagId, FlagDefinition)>,
        ttl: Option<Duration>,
    ) -> Result<SetManyOutcome> {
        let inner = &self.inner;
        let (flags, mut first_error) = checked_batch(flags);
        let mut refused: Vec<FlagId> = Vec::new();
        let mut l2_failed = false;
        if let Some(l2) = &inner.l2 {
            match l2
                .set_many(&flags, ttl.unwrap_or(inner.policy.l2_ttl))
                .await
            {
                Ok(outcome) => refused = outcome.refused,
                Err(e) => {
                    l2_failed = true;
                    first_error.get_or_insert(e);
                }
            }
        }
        let refused_set: HashSet<FlagId> = refused.iter().cloned().collect();
        let l1_ttl = ttl.or(Some(inner.policy.l1_ttl));
        let mut written = Vec::with_capacity(flags.len());
        for (id, def) in flags {
            if refused_set.contains(&id) {
                // L2 holds a newer version: drop L1's copy so the next read fetches it.
                inner.drop_l1(id.as_str());
            } else {
                let version = def.version;
                let def = Arc::new(def);
                inner.warm_log.record_set(&id, &def);
                match inner.l1.try_set_arc(&id, def, l1_ttl) {
                    Ok(()) => written.push((id.clone(), version)),
                    Err(e) if e.is_stale_version() => refused.push(id.clone()),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            // After L1's fence moved: a load that began before cannot record what it learned.
            inner.detach(id.as_str());
        }
        // Announced when L2 took them: other instances reload from L2.
        if !l2_failed {
            inner.publish(Action::Set, &written).await;
        }
        let stored = written.len();
        first_error.map_or(Ok(SetManyOutcome { stored, refused }), Err)
    }

    /// Drops `id` from L2 (leaving a tombstone for `tombstone_ttl`), then from L1: no load
    /// that began before can bring the dropped definition back into either, and a read that
    /// starts after this returned loads afresh.
    ///
    /// # Errors
    /// An L2 failure (L1 is still invalidated).
    pub async fn try_invalidate(&self, id: &FlagId) -> Result<()> {
        self.try_invalidate_many(std::slice::from_ref(id)).await
    }

    /// [`try_invalidate`](Self::try_invalidate) for several flags: one L2 batch.
    ///
    /// # Errors
    /// An L2 failure (L1 is still invalidated).
    pub async fn try_invalidate_many(&self, ids: &[FlagId]) -> Result<()> {
        let inner = &self.inner;
        // Tombstones rather than deletions: a load that read L2 before this and writes back
        // after it finds the key taken (its write-back is a fill).
        let l2_result = match &inner.l2 {
            Some(l2) => l2.tombstone_many(ids, inner.policy.tombstone_ttl).await,
            None => Ok(()),
        };
        for id in ids {
            inner.drop_l1(id.as_str());
            inner.detach(id.as_str());
        }
        if l2_result.is_ok() {
            let dropped: Vec<(FlagId, u64)> = ids.iter().map(|id| (id.clone(), 0)).collect();
            inner.publish(Action::Invalidate, &dropped).await;
        }
        l2_result
    }

    /// Empties L2 (this cache's namespace only), then L1.
    ///
    /// # Errors
    /// An L2 failure (L1 is still cleared).
    pub async fn try_clear(&self) -> Result<()> {
        let inner = &self.inner;
        let l2_result = match &inner.l2 {
            Some(l2) => l2.clear().await,
            None => Ok(()),
        };
        inner.clear_l1();
        if l2_result.is_ok() {
            inner.publish(Action::Clear, &[]).await;
        }
        l2_result
    }
}

/// The definitions of a batch that can be written: each id once (its highest version; a lower
/// one would be refused by the higher anyway), each definition valid and filed under its own id.
/// Returns them and the first reason one was left out.
fn checked_batch(
    flags: Vec<(FlagId, FlagDefinition)>,
) -> (Vec<(FlagId, FlagDefinition)>, Option<crate::Error>) {
    let mut first_error = None;
    let mut highest: HashMap<FlagId, usize> = HashMap::with_capacity(flags.len());
    let mut kept: Vec<(FlagId, FlagDefinition)> = Vec::with_capacity(flags.len());
    for (id, def) in flags {
        let checked = if def.id == id {
            def.validate()
        } else {
            Err(crate::Error::new(
                crate::ErrorKind::InvalidFlag,
                format!(
                    "set under id `{id}` of a definition whose id is `{}`",
                    def.id
                ),
            ))
        };
        if let Err(e) = checked {
            first_error.get_or_insert(e);
            continue;
        }
        match highest.get(&id) {
            Some(&at) if kept[at].1.version >= def.version => {}
            Some(&at) => kept[at].1 = def,
            None => {
                highest.insert(id.clone(), kept.len());
                kept.push((id, def));
            }
        }
    }
    (kept, first_error)
}

impl Inner {
    /// Drops L1's copy of `id` (fencing its loads in flight), recorded for a running warm-up.
    pub(crate) fn drop_l1(&self, id: &str) {
        self.warm_log.record_drop(id);
        self.l1.invalidate_now(id);
    }

    /// Empties L1 (recorded for a running warm-up), and forgets every deadline and flight.
    pub(crate) fn clear_l1(&self) {
        self.warm_log.record_clear();
        self.l1.clear_now();
        self.reads.forget_all();
        self.reads.flights.detach_all();
    }

    /// What a write (or another instance's notice) makes obsolete besides L1's copy: the
    /// flag's deadlines, and its load in flight, which later readers must not join.
    pub(crate) fn detach(&self, id: &str) {
        self.reads.forget(id);
        self.reads.flights.detach(id);
    }
}
