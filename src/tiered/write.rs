//! The writes of [`TieredCache`]: L2 first (through its version guard), then L1, then a notice
//! to the other instances (the backplane). In that order, a load that read L2 before the write
//! holds an L1 fill ticket older than the write's fence, so it cannot install what it read.

use super::TieredCache;
use super::backplane::Action;
use crate::error::Result;
use crate::flag::{FlagDefinition, FlagId};
use std::time::Duration;

impl TieredCache {
    /// Stores `def` in L2 (through its version guard) and then in L1, for `ttl` (each layer's
    /// default when `None`).
    ///
    /// # Errors
    /// [`ErrorKind::StaleVersion`](crate::ErrorKind::StaleVersion) when L2 or L1 holds a higher version (L1's copy is then
    /// dropped, so the next read fetches the newer one); an L2 failure (L1 is still written);
    /// the checks of [`LocalCache::try_set`](crate::LocalCache::try_set).
    pub async fn try_set(
        &self,
        id: &FlagId,
        def: FlagDefinition,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let mut l2_error = None;
        if let Some(l2) = &self.l2 {
            match l2.set(id, &def, ttl.unwrap_or(self.l2_ttl)).await {
                Ok(()) => {}
                Err(e) if e.is_stale_version() => {
                    self.l1.invalidate_now(id.as_str());
                    return Err(e);
                }
                Err(e) => l2_error = Some(e),
            }
        }
        self.forget_deadlines(id);
        let version = def.version;
        self.l1.try_set(id, def, ttl.or(Some(self.l1_ttl)))?;
        match l2_error {
            Some(e) => Err(e),
            None => {
                self.publish(Action::Set, &[(id.clone(), version)]).await;
                Ok(())
            }
        }
    }

    /// [`try_set`](Self::try_set) for several definitions: one L2 pipeline, then L1.
    ///
    /// # Errors
    /// The first error of either layer, after attempting every write.
    pub async fn try_set_many(
        &self,
        flags: Vec<(FlagId, FlagDefinition)>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let mut first_error = None;
        if let Some(l2) = &self.l2 {
            if let Err(e) = l2.set_many(&flags, ttl.unwrap_or(self.l2_ttl)).await {
                first_error = Some(e);
            }
        }
        let written: Vec<(FlagId, u64)> = flags
            .iter()
            .map(|(id, def)| (id.clone(), def.version))
            .collect();
        for (id, _) in &written {
            self.forget_deadlines(id);
        }
        if let Err(e) = self.l1.try_set_many(flags, ttl.or(Some(self.l1_ttl))) {
            first_error.get_or_insert(e);
        }
        // Other instances drop only copies older than the notice says, so a refused write
        // in the batch costs them nothing.
        self.publish(Action::Set, &written).await;
        first_error.map_or(Ok(()), Err)
    }

    /// Drops `id` from L2 (leaving a tombstone for `tombstone_ttl`), then from L1: no load
    /// that began before can bring the dropped definition back into either.
    ///
    /// # Errors
    /// An L2 failure (L1 is still invalidated).
    pub async fn try_invalidate(&self, id: &FlagId) -> Result<()> {
        self.try_invalidate_many(std::slice::from_ref(id)).await
    }

    /// [`try_invalidate`](Self::try_invalidate) for several flags: one L2 `UNLINK`.
    ///
    /// # Errors
    /// An L2 failure (L1 is still invalidated).
    pub async fn try_invalidate_many(&self, ids: &[FlagId]) -> Result<()> {
        // Tombstones rather than deletions: a load that read L2 before this and writes back
        // after it finds the key taken (its write-back is `SET NX`).
        let l2_result = match &self.l2 {
            Some(l2) => l2.tombstone_many(ids, self.tombstone_ttl).await,
            None => Ok(()),
        };
        self.l1.invalidate_many_now(ids);
        for id in ids {
            self.forget_deadlines(id);
        }
        if l2_result.is_ok() {
            let dropped: Vec<(FlagId, u64)> = ids.iter().map(|id| (id.clone(), 0)).collect();
            self.publish(Action::Invalidate, &dropped).await;
        }
        l2_result
    }

    /// Empties L2 (this prefix only), then L1.
    ///
    /// # Errors
    /// An L2 failure (L1 is still cleared).
    pub async fn try_clear(&self) -> Result<()> {
        let l2_result = match &self.l2 {
            Some(l2) => l2.clear().await,
            None => Ok(()),
        };
        self.l1.clear_now();
        self.absent.clear_all();
        self.cooldown.clear_all();
        if l2_result.is_ok() {
            self.publish(Action::Clear, &[]).await;
        }
        l2_result
    }
}
