//! The tiered cache's L3: the [`FlagSource`], every call bounded by `source_timeout`, and
//! every answer checked before anything caches it: a definition filed under another id (a
//! case-insensitive database answering `Checkout` with `checkout`), or one that fails
//! validation, is rejected and counted, never cached or written back.

use super::changes::ChangeFeed;
use super::l2::bounded;
use super::policy::Policy;
use super::readiness::Health;
use super::source::{DynSource, FlagSource};
use super::stats::{Counters, add};
use crate::error::Result;
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::Arc;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub(crate) struct L3 {
    source: Box<dyn DynSource>,
    timeout: Duration,
    bulk_timeout: Duration,
    /// Where the source's failures are recorded, for readiness.
    health: Arc<Health>,
}

/// What the source answered for a batch, checked.
pub(crate) struct Loaded {
    /// Valid definitions of the ids asked.
    pub(crate) found: HashMap<FlagId, FlagDefinition>,
    /// Ids whose answer was rejected, or that may have been answered under another id: a
    /// failure for them, not an absence.
    pub(crate) rejected: HashSet<FlagId>,
}

impl L3 {
    pub(crate) fn new(source: impl FlagSource) -> Self {
        let policy = Policy::default();
        Self {
            source: Box::new(source),
            timeout: policy.source_timeout,
            bulk_timeout: policy.bulk_timeout,
            health: Arc::default(),
        }
    }

    /// Records this layer's failures in `health`.
    pub(crate) fn report_to(&mut self, health: Arc<Health>) {
        self.health = health;
    }

    pub(crate) fn bound_by(&mut self, policy: &Policy) {
        self.timeout = policy.source_timeout;
        self.bulk_timeout = policy.bulk_timeout;
    }

    /// Loads `ids` (`load` for one, `load_many` for more) and checks the answers.
    pub(crate) async fn load_batch(&self, ids: &[FlagId], counters: &Counters) -> Result<Loaded> {
        add(&counters.l3_loads, 1);
        let answered = bounded("l3", "the flag source", ids.len(), self.timeout, async {
            match ids {
                [id] => Ok(self
                    .source
                    .load(id)
                    .await?
                    .map(|def| HashMap::from([(id.clone(), def)]))
                    .unwrap_or_default()),
                _ => self.source.load_many(ids).await,
            }
        })
        .await
        .inspect_err(|e| {
            add(&counters.l3_errors, 1);
            self.health.source_failed(e);
        })?;
        let asked: HashSet<&FlagId> = ids.iter().collect();
        let mut loaded = Loaded {
            found: HashMap::with_capacity(answered.len()),
            rejected: HashSet::new(),
        };
        let mut misfiled = false;
        for (id, def) in answered {
            if !asked.contains(&id) {
                add(&counters.l3_rejected, 1);
                misfiled = true;
                tracing::warn!(flag = %id, "the flag source answered an id that was not asked; ignored");
            } else if let Err(e) = check(&id, &def) {
                add(&counters.l3_rejected, 1);
                tracing::warn!(error = %e, flag = %id, "the flag source answered an invalid definition; not cached");
                loaded.rejected.insert(id);
            } else {
                loaded.found.insert(id, def);
            }
        }
        // An answer filed under an id not asked may be the answer to one that was (a
        // case-insensitive database): none of the unanswered ids is known absent.
        if misfiled {
            let unanswered = ids.iter().filter(|id| !loaded.found.contains_key(*id));
            loaded.rejected.extend(unanswered.cloned());
        }
        Ok(loaded)
    }

    pub(crate) fn has_change_feed(&self) -> bool {
        self.source.has_change_feed()
    }

    /// Starts the source's change feed, within `limit`.
    pub(crate) async fn subscribe_changes(&self, limit: Duration) -> Result<ChangeFeed> {
        bounded(
            "l3",
            "the flag source's change feed",
            0,
            limit,
            self.source.subscribe_changes(),
        )
        .await
    }

    /// Every definition, for warm-up; invalid ones are left out and counted.
    pub(crate) async fn load_all(&self, counters: &Counters) -> Result<Vec<FlagDefinition>> {
        self.load_all_checked(counters).await.map(|(defs, _)| defs)
    }

    /// Every valid definition, and the ids of those left out as invalid (which the source
    /// has, so they are not deleted flags).
    pub(crate) async fn load_all_checked(
        &self,
        counters: &Counters,
    ) -> Result<(Vec<FlagDefinition>, HashSet<FlagId>)> {
        add(&counters.l3_loads, 1);
        let mut defs = bounded(
            "l3",
            "the flag source's load_all",
            0,
            self.bulk_timeout,
            self.source.load_all(),
        )
        .await
        .inspect_err(|e| {
            add(&counters.l3_errors, 1);
            self.health.source_failed(e);
        })?;
        let mut rejected = HashSet::new();
        defs.retain(|def| match def.validate() {
            Ok(()) => true,
            Err(e) => {
                add(&counters.l3_rejected, 1);
                tracing::warn!(error = %e, flag = %def.id, "the flag source's load_all answered an invalid definition; left out");
                rejected.insert(def.id.clone());
                false
            }
        });
        Ok((defs, rejected))
    }
}

/// A definition may be cached under `id` only if it is `id`'s and valid.
fn check(id: &FlagId, def: &FlagDefinition) -> Result<()> {
    if def.id != *id {
        return Err(crate::Error::invalid_flag(format!(
            "asked for `{id}`, the source answered the definition of `{}`",
            def.id
        )));
    }
    def.validate()
}
