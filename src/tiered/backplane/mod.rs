//! The backplane: cross-instance invalidation through L2's publish/subscribe.
//!
//! A write through a `TieredCache` with L2 publishes a notice (`notice`) after it reached L2.
//! Every other subscribed instance drops its L1 copies that the notice makes stale and
//! detaches the flags' loads in flight, so its next read loads the new definition from L2; an
//! instance ignores its own notices. Delivery is at most once, so when the subscription ends
//! and comes back, every L1 entry is revalidated.
//!
//! A notice for version `v` of a flag fences the flag in L1 (advances its write fence) unless
//! L1 already holds `v` or newer: a load that read an older version before the notice came
//! cannot install it after. The copy it makes obsolete is served stale until its reload, which
//! is coalesced with the other notices' and spread over `notice_spread` (`reloads`).

mod notice;
mod reloads;

use super::stats::add;
use super::{Inner, TieredCache};
use crate::error::{Error, Result};
use crate::flag::FlagId;
use crate::sync::{Arc, AtomicU64, Ordering, Weak};
pub(crate) use notice::Action;
/// A random token (an instance's origin, a sentinel).
pub(crate) use notice::new_origin as new_token;
use notice::{Notice, new_origin};
use reloads::{Reloads, reload_loop};
use std::time::Duration;
use tracing::Instrument;

/// The handle of a backplane subscription task; it stops when this is dropped or the cache
/// is.
pub type BackplaneTask = crate::task::BackgroundTask;

/// The longest pause between two subscription attempts while the store is away.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// While subscribing keeps failing, a warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The pause between two attempts to check L2's sentinel while L2 fails.
const MAINTENANCE_RETRY: Duration = Duration::from_millis(100);
/// Ids a notice applies before the task yields to the runtime.
const IDS_PER_STEP: usize = 64;

/// This instance's side of the backplane.
pub(crate) struct Backplane {
    /// This instance's id on the backplane.
    origin: String,
    max_notice_bytes: usize,
    timeout: Duration,
    /// 1 while subscribed.
    subscribed: AtomicU64,
    /// The reloads notices scheduled.
    pub(crate) reloads: Reloads,
}

impl Backplane {
    pub(crate) fn new(policy: &super::Policy) -> Self {
        Self {
            origin: new_origin(),
            max_notice_bytes: policy.max_notice_bytes,
            timeout: policy.backplane_timeout,
            subscribed: AtomicU64::new(0),
            reloads: Reloads::new(policy.remembered_flags),
        }
    }

    /// This instance's id on the backplane (also its name as a lease holder).
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) == 1
    }

    fn set_subscribed(&self, on: bool) {
        self.subscribed.store(u64::from(on), Ordering::Relaxed);
    }
}

impl Inner {
    /// Publishes what a write did to the other instances (after it reached L2). A notice that
    /// cannot be sent is counted; the write stands.
    pub(crate) async fn publish(&self, action: Action, flags: &[(FlagId, u64)]) {
        let Some(l2) = &self.l2 else { return };
        let origin = &self.backplane.origin;
        for payload in Notice::encode_all(origin, action, flags, self.backplane.max_notice_bytes) {
            match l2.publish(&payload).await {
                Ok(()) => add(&self.counters.notices_sent, 1),
                Err(e) => {
                    add(&self.counters.notices_failed, 1);
                    tracing::debug!(error = %e, "backplane notice not sent");
                }
            }
        }
    }

    /// Applies one notice from another instance to L1, yielding to the runtime every
    /// `IDS_PER_STEP` ids; returns what became of it (`applied`, `bad`, `own`), and records
    /// the number of ids on the current span.
    async fn apply_notice(&self, payload: &[u8]) -> &'static str {
        if payload.len() > self.backplane.max_notice_bytes {
            add(&self.counters.notices_bad, 1);
            return "bad";
        }
        let Some(notice) = Notice::decode(payload) else {
            add(&self.counters.notices_bad, 1);
            return "bad";
        };
        if notice.origin == self.backplane.origin {
            return "own";
        }
        tracing::Span::current().record("ids", notice.ids.len());
        match notice.action {
            Action::Clear => self.clear_l1(),
            Action::Invalidate | Action::Set => {
                for (i, id) in notice.ids.iter().enumerate() {
                    match (notice.action, notice.versions.get(i)) {
                        (Action::Set, Some(&version)) => self.apply_set(id, version),
                        // A set notice with fewer versions than ids: the rest is malformed.
                        (Action::Set, None) => break,
                        _ => self.supersede(id),
                    }
                    if (i + 1) % IDS_PER_STEP == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        // Counted once applied, as the statistic says: whoever sees the count sees its effect.
        add(&self.counters.notices_received, 1);
        "applied"
    }

    /// Another instance stored `version` of `id`: unless L1 holds it or newer, L1's copy is
    /// superseded (fencing loads in flight; see `reloads`), and the new version is loaded from
    /// L2, where the writer put it before publishing.
    fn apply_set(&self, id: &str, version: u64) {
        let current = self
            .l1
            .peek(id)
            .is_some_and(|f| f.definition.version >= version);
        if !current {
            self.supersede(id);
        } else {
            self.reads.forget(id);
        }
    }

    /// Reloads every L1 entry through L2 and L3 in batches, dropping those no layer has any
    /// more: what this instance may have missed while it was not subscribed.
    pub(crate) async fn revalidate_all(self: &Arc<Self>) -> usize {
        revalidate(Arc::downgrade(self)).await
    }
}

/// [`Inner::revalidate_all`] holding the cache only for one batch at a time: a background
/// revalidation does not keep a dropped cache alive.
async fn revalidate(weak: Weak<Inner>) -> usize {
    let Some(ids) = weak.upgrade().map(|inner| inner.l1.ids()) else {
        return 0;
    };
    let mut checked = 0;
    for batch in ids.chunks(100) {
        let Some(inner) = weak.upgrade() else {
            return checked;
        };
        let tickets = batch
            .iter()
            .map(|id| (id.clone(), inner.l1.begin_fill(id.as_str())))
            .collect();
        for (id, landing) in inner.load_batch(tickets).await {
            if matches!(landing, super::Landing::Absent) {
                inner.l1.invalidate_now(id.as_str());
            }
            checked += 1;
        }
    }
    if let Some(inner) = weak.upgrade() {
        add(&inner.counters.revalidations, 1);
    }
    checked
}

impl TieredCache {
    /// Subscribes this instance to the backplane of its L2, on the runtime the cache was built
    /// in: other instances' writes drop this instance's stale L1 copies, and after the
    /// subscription ends and returns, every L1 entry is revalidated. Writes through this cache
    /// publish notices whether or not it subscribes. Whether it is subscribed now:
    /// [`TieredStats::backplane_subscribed`](crate::TieredStats).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) without an L2, or when
    /// the cache was built outside a tokio runtime.
    pub fn start_backplane(&self) -> Result<BackplaneTask> {
        if self.inner.l2.is_none() {
            return Err(Error::invalid_config("the backplane needs an L2"));
        }
        let Some(runtime) = &self.inner.runtime else {
            return Err(Error::invalid_config(
                "start_backplane needs the cache to be built inside a tokio runtime",
            ));
        };
        let handle = runtime.spawn(subscribe_loop(Arc::downgrade(&self.inner)));
        Ok(BackplaneTask::new(handle))
    }
}

/// Makes sure L2 holds the fleet's working set (see `refill`; tried again for up to
/// `bulk_timeout` while L2 fails, as it may just after a restart), then, after a
/// re-subscription (`revalidate_l1`), revalidates L1 through it: through an L2 known to hold
/// the working set, so that the revalidations of a fleet do not all fall through to the
/// source. Holds only a `Weak`.
fn maintain(weak: Weak<Inner>, revalidate_l1: bool) -> BackplaneTask {
    BackplaneTask::new(tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let checked = loop {
            let Some(inner) = weak.upgrade() else { return };
            match inner.ensure_l2_filled().await {
                Ok(_) => break true,
                Err(e) if started.elapsed() < inner.policy.bulk_timeout => {
                    tracing::debug!(error = %e, "cannot check or refill L2 yet");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check or refill L2");
                    break false;
                }
            }
            drop(inner);
            tokio::time::sleep(MAINTENANCE_RETRY).await;
        };
        // Without a source, an L2 that may have lost its content and could not be refilled
        // would make the revalidation drop every flag it lacks: L1 is kept instead.
        let has_source = weak.upgrade().is_some_and(|inner| inner.l3.is_some());
        if revalidate_l1 && (checked || has_source) {
            revalidate(weak).await;
        } else if revalidate_l1 {
            tracing::warn!(
                "L1 not revalidated: L2's content could not be checked, and there is no source"
            );
        }
    }))
}

/// Clears the subscribed state when the task ends, however it ends (its handle dropped, the
/// runtime shut down).
struct Unsubscribed(Weak<Inner>);

impl Drop for Unsubscribed {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.backplane.set_subscribed(false);
        }
    }
}

/// Subscribes, applies notices until the subscription ends, and subscribes again with a
/// growing pause; revalidates L1 after every re-subscription. Holds only a `Weak`.
async fn subscribe_loop(weak: Weak<Inner>) {
    let _unsubscribed = Unsubscribed(weak.clone());
    let mut subscribed_before = false;
    let mut pause = Duration::from_millis(50);
    let mut failures: u64 = 0;
    let mut last_warning: Option<tokio::time::Instant> = None;
    // The maintenance after a subscription (L2's sentinel checked, L2 refilled if it lost its
    // content, and after a re-subscription L1 revalidated) runs beside the notices, not before
    // them: it may take long (every L1 entry through L2 and the source), and a notice arriving
    // meanwhile must not wait for it (its fill tickets keep it from undoing what the notices
    // do). At most one runs; a newer subscription's replaces it, the periodic sentinel check
    // starts one only when none runs, and it ends with this task.
    let mut maintenance: Option<BackplaneTask> = None;
    // The reloads that notices schedule run beside the notices, and end with this task.
    let _reloads = BackplaneTask::new(tokio::spawn(reload_loop(weak.clone())));
    loop {
        let subscription = {
            let Some(inner) = weak.upgrade() else { return };
            let Some(l2) = &inner.l2 else { return };
            l2.subscribe(inner.backplane.timeout).await
        };
        match subscription {
            Ok(mut subscription) => {
                pause = Duration::from_millis(50);
                failures = 0;
                let Some(sentinel_every) = weak.upgrade().map(|inner| {
                    add(&inner.counters.subscriptions, 1);
                    inner.backplane.set_subscribed(true);
                    inner.policy.sentinel_interval
                }) else {
                    return;
                };
                if subscribed_before {
                    tracing::info!("backplane subscribed again; revalidating L1");
                }
                let task = maintain(weak.clone(), subscribed_before);
                if let Some(older) = maintenance.replace(task) {
                    older.stop();
                }
                subscribed_before = true;
                let mut sentinel = tokio::time::interval(sentinel_every);
                sentinel.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                sentinel.tick().await;
                loop {
                    let payload = tokio::select! {
                        payload = subscription.next() => payload,
                        _ = sentinel.tick() => {
                            // Also how a quiet subscription learns that the cache is gone.
                            if weak.strong_count() == 0 {
                                return;
                            }
                            if maintenance.as_ref().is_none_or(BackplaneTask::is_finished) {
                                maintenance = Some(maintain(weak.clone(), false));
                            }
                            continue;
                        }
                    };
                    let Some(payload) = payload else { break };
                    let Some(inner) = weak.upgrade() else { return };
                    let span = tracing::debug_span!(
                        "flagcache.notice",
                        bytes = payload.len(),
                        ids = tracing::field::Empty,
                        outcome = tracing::field::Empty,
                        micros = tracing::field::Empty
                    );
                    let started = std::time::Instant::now();
                    let outcome = inner.apply_notice(&payload).instrument(span.clone()).await;
                    span.record("outcome", outcome);
                    span.record("micros", started.elapsed().as_micros() as u64);
                }
                if let Some(inner) = weak.upgrade() {
                    inner.backplane.set_subscribed(false);
                }
                tracing::warn!(
                    "backplane subscription ended; L1 may miss other instances' writes until it is back"
                );
            }
            Err(e) => {
                failures += 1;
                let due = last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY);
                if due {
                    last_warning = Some(tokio::time::Instant::now());
                    tracing::warn!(error = %e, failures, "backplane cannot subscribe; retrying");
                } else {
                    tracing::debug!(error = %e, failures, "backplane cannot subscribe; retrying");
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}
