//! Following the source's change feed, once per fleet.
//!
//! One instance of a fleet holds the L2 lease `change-feed` (renewed every third of
//! `feed_lease`) and follows the source's [`ChangeFeed`]: for each announced flag it loads the
//! source's definition and writes it through the cache (L2 behind its version guard, its own
//! L1, a notice to the others), or invalidates the flag when the source no longer has it. The
//! other instances learn of it on the backplane. Without an L2 there is no fleet to share
//! with: the instance follows the feed for itself.
//!
//! A feed announces what changes after it began, so each new feed starts with a resync: the
//! whole source compared with L2 and this instance's L1, and what differs written or
//! invalidated; the versions of the flags L2 does not hold are announced, for the other
//! instances' L1. A feed that ends is followed again after a pause, resync included. An
//! instance that holds the lease but cannot follow (the feed or a step fails) steps aside for
//! a whole lease, so that another instance takes it.

use super::backplane::Action;
use super::changes::{Change, ChangeFeed};
use super::stats::add;
use super::{Inner, TieredCache};
use crate::error::{Error, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, AtomicU64, Ordering, Weak};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::oneshot;

/// The handle of a change-feed task; it stops when this is dropped or the cache is.
pub type ChangeFeedTask = crate::task::BackgroundTask;

/// The name of the lease that elects the instance following the feed.
const FEED_LEASE: &str = "change-feed";
/// The longest pause between two attempts to follow the feed.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// While following keeps failing, a warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Flags asked of the source, or written, in one call.
const BATCH: usize = 500;

/// This instance's side of the change feed.
#[derive(Default)]
pub(crate) struct Feed {
    /// 1 while this instance follows the feed.
    following: AtomicU64,
    /// 1 while a feed task runs: one per cache.
    running: AtomicU64,
}

impl Feed {
    pub(crate) fn is_following(&self) -> bool {
        self.following.load(Ordering::Relaxed) == 1
    }

    fn set_following(&self, on: bool) {
        self.following.store(u64::from(on), Ordering::Relaxed);
    }
}

impl TieredCache {
    /// Follows the source's change feed on the runtime the cache was built in, so that flags
    /// changed in the source, not through a cache, reach the fleet within a round trip or two.
    /// Start it on every instance: one of them (the holder of an L2 lease, taken over within
    /// `feed_lease` when its holder dies) follows the feed and writes each change through to
    /// L2, its L1 and the backplane; the others receive it on the backplane (start that too).
    /// Each time the feed starts, every flag is checked against the source first. Whether this
    /// instance follows now: [`TieredStats::feed_following`](crate::TieredStats).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) without a source, with a
    /// source that has no change feed, when the cache was built outside a tokio runtime, or
    /// while a feed task of this cache runs (one is enough).
    pub fn start_change_feed(&self) -> Result<ChangeFeedTask> {
        let Some(l3) = &self.inner.l3 else {
            return Err(Error::invalid_config("the change feed needs a FlagSource"));
        };
        if !l3.has_change_feed() {
            return Err(Error::invalid_config("this FlagSource has no change feed"));
        }
        let Some(runtime) = &self.inner.runtime else {
            return Err(Error::invalid_config(
                "start_change_feed needs the cache to be built inside a tokio runtime",
            ));
        };
        let feed = &self.inner.feed;
        if feed.running.swap(1, Ordering::AcqRel) == 1 {
            return Err(Error::invalid_config(
                "a change feed task of this cache runs already",
            ));
        }
        let weak = Arc::downgrade(&self.inner);
        // Made here, not in the task: a task stopped before it first ran drops it too.
        let stopped = Stopped(weak.clone());
        let handle = runtime.spawn(async move {
            let _stopped = stopped;
            follow_loop(weak).await;
        });
        Ok(ChangeFeedTask::new(handle))
    }
}

impl Inner {
    /// Takes or renews the feed's lease; without an L2 this instance is the whole fleet.
    async fn hold_feed_lease(&self) -> Result<bool> {
        match &self.l2 {
            Some(l2) => {
                l2.lease(FEED_LEASE, self.backplane.origin(), self.policy.feed_lease)
                    .await
            }
            None => Ok(true),
        }
    }

    /// Writes the source's definitions of `ids` through the cache, and invalidates those the
    /// source no longer has. An error (the source's, or L2's) leaves the change unapplied: the
    /// caller follows the feed again, resync included.
    async fn apply_changes(self: &Arc<Self>, ids: Vec<FlagId>) -> Result<()> {
        let Some(l3) = &self.l3 else { return Ok(()) };
        let mut seen = HashSet::with_capacity(ids.len());
        let ids: Vec<FlagId> = ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();
        for batch in ids.chunks(BATCH) {
            let mut loaded = l3.load_batch(batch, &self.counters).await?;
            let mut gone = Vec::new();
            let mut found = Vec::with_capacity(loaded.found.len());
            for id in batch {
                match loaded.found.remove(id) {
                    Some(def) => found.push((id.clone(), def)),
                    // An invalid definition in the source: the cached one stands.
                    None if loaded.rejected.contains(id) => {}
                    None => gone.push(id.clone()),
                }
            }
            self.write_through(found, gone).await?;
            add(&self.counters.feed_changes, batch.len() as u64);
        }
        Ok(())
    }

    /// Compares the whole source with L2 and this instance's L1, and writes through what
    /// differs: definitions whose cached version is not the source's, and invalidations of
    /// what the source no longer has. Flags cached nowhere are left for reads to load.
    async fn resync(self: &Arc<Self>) -> Result<usize> {
        let Some(l3) = &self.l3 else { return Ok(0) };
        // The caches are read before the source: a flag created after the source was read,
        // and cached meanwhile, would otherwise look deleted.
        let stored: HashMap<FlagId, u64> = match &self.l2 {
            Some(l2) => l2
                .load_all()
                .await?
                .into_iter()
                .map(|d| (d.id, d.version))
                .collect(),
            None => HashMap::new(),
        };
        let cached = self.l1.ids();
        let (defs, invalid) = l3.load_all_checked(&self.counters).await?;
        // An invalid definition is the source's too: its flag is not deleted, and the cached
        // copies stand.
        let mut in_source = invalid;
        in_source.extend(defs.iter().map(|d| d.id.clone()));
        // What L2 does not hold may still be in other instances' L1: the source's versions of
        // it are announced (nothing written), and an instance holding an older one drops it.
        let unstored: Vec<(FlagId, u64)> = match &self.l2 {
            Some(_) => defs
                .iter()
                .filter(|d| !stored.contains_key(&d.id))
                .map(|d| (d.id.clone(), d.version))
                .collect(),
            None => Vec::new(),
        };
        let changed: Vec<(FlagId, FlagDefinition)> = defs
            .into_iter()
            .filter(|def| {
                let differs = |v: u64| v != def.version;
                let in_l2 = stored.get(&def.id).copied();
                let in_l1 = self.l1.peek(def.id.as_str()).map(|f| f.definition.version);
                in_l2.is_some_and(differs) || in_l1.is_some_and(differs)
            })
            .map(|def| (def.id.clone(), def))
            .collect();
        let gone: Vec<FlagId> = stored
            .into_keys()
            .chain(cached)
            .filter(|id| !in_source.contains(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let fixed = changed.len() + gone.len();
        let mut changed = changed.into_iter().peekable();
        while changed.peek().is_some() {
            let batch: Vec<_> = changed.by_ref().take(BATCH).collect();
            self.write_through(batch, Vec::new()).await?;
        }
        for batch in gone.chunks(BATCH) {
            self.write_through(Vec::new(), batch.to_vec()).await?;
        }
        self.publish(Action::Set, &unstored).await;
        add(&self.counters.feed_resyncs, 1);
        Ok(fixed)
    }

    /// Writes `found` and invalidates `gone` through the cache (L2, L1, the backplane).
    async fn write_through(
        self: &Arc<Self>,
        found: Vec<(FlagId, FlagDefinition)>,
        gone: Vec<FlagId>,
    ) -> Result<()> {
        let cache = TieredCache {
            inner: Arc::clone(self),
        };
        if !found.is_empty() {
            // A refusal means a cache holds a higher version than the source: not an error
            // of the feed's, and nothing it can mend.
            let outcome = cache.try_set_many(found, None).await?;
            if !outcome.refused.is_empty() {
                tracing::warn!(
                    flags = outcome.refused.len(),
                    "a cache holds a higher version than the source; left as it is"
                );
            }
        }
        if !gone.is_empty() {
            cache.try_invalidate_many(&gone).await?;
        }
        Ok(())
    }
}

/// Clears the following state when one feed ends, however it ends.
struct Unfollowed(Weak<Inner>);

impl Drop for Unfollowed {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.feed.set_following(false);
        }
    }
}

/// Lets the cache start a feed task again once this one ends, however it ends.
struct Stopped(Weak<Inner>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.feed.running.store(0, Ordering::Release);
        }
    }
}

/// Takes the lease (or waits for it), follows the feed until it ends or the lease is lost,
/// and starts again after a pause. Holds only a `Weak`.
async fn follow_loop(weak: Weak<Inner>) {
    let _unfollowed = Unfollowed(weak.clone());
    let mut pause = Duration::from_millis(50);
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let (lease_every, leading) = {
            let Some(inner) = weak.upgrade() else { return };
            (inner.policy.feed_lease / 3, inner.hold_feed_lease().await)
        };
        let outcome = match leading {
            Ok(true) => follow(&weak, lease_every).await.map_err(|e| (e, true)),
            Ok(false) => {
                // Another instance follows: ask again before its lease could run out.
                pause = Duration::from_millis(50);
                tokio::time::sleep(lease_every).await;
                continue;
            }
            Err(e) => Err((e, false)),
        };
        match outcome {
            Ok(()) => pause = Duration::from_millis(50),
            Err((e, held)) => {
                // An instance that held the lease and could not follow steps aside for a
                // whole lease, so that it lapses and an instance that can follow takes it.
                if held {
                    tokio::time::sleep(lease_every * 3).await;
                }
                if let Some(inner) = weak.upgrade() {
                    add(&inner.counters.feed_errors, 1);
                }
                if last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    last_warning = Some(tokio::time::Instant::now());
                    tracing::warn!(error = %e, "cannot follow the source's change feed; retrying");
                } else {
                    tracing::debug!(error = %e, "cannot follow the source's change feed; retrying");
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// Follows one feed while this instance holds the lease: subscribes, resyncs, applies each
/// change. Ok when the feed ended or the lease was lost; an error when a step failed.
async fn follow(weak: &Weak<Inner>, lease_every: Duration) -> Result<()> {
    let mut feed: ChangeFeed = {
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        let Some(l3) = &inner.l3 else { return Ok(()) };
        l3.subscribe_changes(inner.policy.backplane_timeout).await?
    };
    let (lost_tx, mut lost) = oneshot::channel();
    let _keeper = ChangeFeedTask::new(tokio::spawn(keep_lease(weak.clone(), lease_every, lost_tx)));
    let Some(inner) = weak.upgrade() else {
        return Ok(());
    };
    add(&inner.counters.feed_subscriptions, 1);
    inner.feed.set_following(true);
    let _following = Unfollowed(weak.clone());
    let fixed = inner.resync().await?;
    tracing::info!(fixed, "following the source's change feed");
    drop(inner);
    loop {
        let change = tokio::select! {
            change = feed.next() => change,
            _ = &mut lost => {
                tracing::info!("the change feed's lease went to another instance");
                return Ok(());
            }
        };
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        match change {
            Some(Change::Flags(ids)) => inner.apply_changes(ids).await?,
            Some(Change::All) => {
                inner.resync().await?;
            }
            None => {
                tracing::warn!("the source's change feed ended; following it again");
                return Ok(());
            }
        }
    }
}

/// Renews the feed's lease every `every`; reports on `lost` once it may have run out (not
/// renewed, or not confirmed for nearly a whole lease).
async fn keep_lease(weak: Weak<Inner>, every: Duration, lost: oneshot::Sender<()>) {
    let mut confirmed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else { return };
        match inner.hold_feed_lease().await {
            Ok(true) => confirmed = tokio::time::Instant::now(),
            Ok(false) => break,
            // The lease may still be ours; it cannot be once a renewal would come too late.
            Err(_) if confirmed.elapsed() + every < inner.policy.feed_lease => {}
            Err(_) => break,
        }
    }
    let _ = lost.send(());
}
