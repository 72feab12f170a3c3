//! The backplane: cross-instance invalidation over Redis pub/sub.
//!
//! A write through a `TieredCache` with L2 publishes a notice (origin, action, ids, versions;
//! no values) on `{prefix}:flagcache:v1:events` after it reached L2. Every other instance drops
//! its L1 copies that the notice makes stale, so their next read loads the new definition from
//! L2; an instance ignores its own notices. Pub/sub delivers at most once, so when the
//! subscription drops and comes back, every L1 entry is revalidated against L2 and L3.

use super::TieredCache;
use super::stats::add;
use crate::error::{Error, Result};
use crate::flag::FlagId;
use crate::sync::Arc;
use serde::{Deserialize, Serialize};

/// Notices carry at most this many ids; larger batches are split.
const IDS_PER_NOTICE: usize = 500;

/// What a write did, as other instances need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Set,
    Invalidate,
    Clear,
}

/// One notice, as JSON on the channel.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    /// The format version: 1.
    v: u8,
    /// The publishing instance.
    origin: String,
    action: Action,
    #[serde(default)]
    ids: Vec<String>,
    /// For `set`, each id's new version.
    #[serde(default)]
    versions: Vec<u64>,
}

/// The channel of a prefix.
pub(crate) fn channel(prefix: &str) -> String {
    format!("{prefix}:flagcache:v1:events")
}

/// A random instance id (the standard library's per-process random hash keys, mixed with the
/// time), so an instance can tell its own notices from others'.
pub(crate) fn new_origin() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// The handle of a backplane subscription task; it stops when this is dropped or the cache
/// is.
pub type BackplaneTask = crate::task::BackgroundTask;

impl TieredCache {
    /// Publishes what a write did to the other instances (after it reached L2). A notice that
    /// cannot be sent is counted; the write stands.
    pub(crate) async fn publish(&self, action: Action, flags: &[(FlagId, u64)]) {
        let Some(l2) = &self.l2 else { return };
        if flags.is_empty() && action != Action::Clear {
            return;
        }
        let channel = channel(l2.prefix());
        let chunks: Vec<&[(FlagId, u64)]> = if flags.is_empty() {
            vec![&[]]
        } else {
            flags.chunks(IDS_PER_NOTICE).collect()
        };
        for chunk in chunks {
            let notice = Notice {
                v: 1,
                origin: self.origin.clone(),
                action,
                ids: chunk.iter().map(|(id, _)| id.as_str().to_owned()).collect(),
                versions: match action {
                    Action::Set => chunk.iter().map(|&(_, v)| v).collect(),
                    Action::Invalidate | Action::Clear => Vec::new(),
                },
            };
            let payload = serde_json::to_vec(&notice).unwrap_or_default();
            match l2.publish(&channel, &payload).await {
                Ok(_) => add(&self.counters.notices_sent, 1),
                Err(e) => {
                    add(&self.counters.notices_failed, 1);
                    tracing::debug!(error = %e, "backplane notice not sent");
                }
            }
        }
    }
}

/// The subscribing side, which needs a Redis client.
#[cfg(all(feature = "redis", not(flagcache_loom)))]
mod subscription {
    use super::super::Landing;
    use super::*;
    use crate::sync::Weak;
    use futures_util::StreamExt;
    use std::time::Duration;

    /// The longest wait between two subscription attempts while Redis is away.
    const MAX_RETRY: Duration = Duration::from_secs(2);

    impl TieredCache {
        /// Applies one notice from the channel to L1.
        fn apply_notice(&self, payload: &[u8]) {
            let notice: Notice = match serde_json::from_slice(payload) {
                Ok(n @ Notice { v: 1, .. }) => n,
                Ok(_) | Err(_) => {
                    add(&self.counters.notices_bad, 1);
                    return;
                }
            };
            if notice.origin == self.origin {
                return;
            }
            add(&self.counters.notices_received, 1);
            match notice.action {
                Action::Clear => self.l1.clear_now(),
                Action::Invalidate => {
                    for id in &notice.ids {
                        self.l1.invalidate_now(id);
                        self.absent.clear(id);
                    }
                }
                Action::Set => {
                    for (id, &version) in notice.ids.iter().zip(&notice.versions) {
                        // Dropped (not reloaded here): the next read loads the new version from
                        // L2, where the writer put it before publishing.
                        let older = self
                            .l1
                            .get_with(id, |d| d.version < version)
                            .unwrap_or(false)
                            || self
                                .l1
                                .get_stale(id)
                                .is_some_and(|s| s.flag.definition.version < version);
                        if older {
                            self.l1.invalidate_now(id);
                        }
                        self.absent.clear(id);
                    }
                }
            }
        }

        /// Subscribes this instance to the backplane of its L2 prefix, on the runtime the cache
        /// was built in: other instances' writes drop this instance's stale L1 copies, and after
        /// the subscription drops and returns, every L1 entry is revalidated. Writes through
        /// this cache publish notices whether or not it subscribes.
        ///
        /// # Errors
        /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) without an L2, or when
        /// the cache was built outside a tokio runtime.
        pub fn start_backplane(self: &Arc<Self>) -> Result<BackplaneTask> {
            if self.l2.is_none() {
                return Err(Error::invalid_config("the backplane needs an L2 (Redis)"));
            }
            let Some(runtime) = &self.runtime else {
                return Err(Error::invalid_config(
                    "start_backplane needs the cache to be built inside a tokio runtime",
                ));
            };
            let handle = runtime.spawn(subscribe_loop(Arc::downgrade(self)));
            Ok(BackplaneTask::new(handle))
        }

        /// Reloads every L1 entry through L2 and L3 in batches, dropping those no layer has any
        /// more: what this instance may have missed while it was not subscribed.
        pub(crate) async fn revalidate_all(&self) -> usize {
            let ids = self.l1.ids();
            let mut checked = 0;
            for batch in ids.chunks(100) {
                let tickets = batch
                    .iter()
                    .map(|id| (id.clone(), self.l1.begin_fill(id.as_str())))
                    .collect();
                for (id, landing) in self.load_many(tickets).await {
                    if matches!(landing, Landing::Absent) {
                        self.l1.invalidate_now(id.as_str());
                    }
                    checked += 1;
                }
            }
            add(&self.counters.revalidations, 1);
            checked
        }
    }

    /// Subscribes, applies notices until the subscription drops, and subscribes again with a
    /// growing pause; revalidates L1 after every re-subscription. Holds only a `Weak`.
    async fn subscribe_loop(weak: Weak<TieredCache>) {
        let mut subscribed_before = false;
        let mut pause = Duration::from_millis(50);
        loop {
            let pubsub = {
                let Some(cache) = weak.upgrade() else { return };
                let Some(l2) = &cache.l2 else { return };
                let channel = channel(l2.redis().prefix());
                l2.redis().subscribe(&channel).await
            };
            match pubsub {
                Ok(mut pubsub) => {
                    pause = Duration::from_millis(50);
                    if let Some(cache) = weak.upgrade() {
                        add(&cache.counters.subscriptions, 1);
                        if subscribed_before {
                            tracing::info!("backplane subscribed again; revalidating L1");
                            cache.revalidate_all().await;
                        }
                    }
                    subscribed_before = true;
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Some(cache) = weak.upgrade() else { return };
                        cache.apply_notice(message.get_payload_bytes());
                    }
                    tracing::warn!(
                        "backplane subscription dropped; L1 may miss other instances' writes until it is back"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "backplane subscription failed; retrying"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY);
        }
    }
}

/// Without a Redis client there is nothing to subscribe to.
#[cfg(not(all(feature = "redis", not(flagcache_loom))))]
impl TieredCache {
    /// Always an error: the backplane needs the `redis` feature.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig).
    pub fn start_backplane(self: &Arc<Self>) -> Result<BackplaneTask> {
        Err(Error::invalid_config(
            "the backplane needs the `redis` feature and an L2",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_name_their_channel() {
        let notice = Notice {
            v: 1,
            origin: new_origin(),
            action: Action::Set,
            ids: vec!["a".into()],
            versions: vec![7],
        };
        let json = serde_json::to_string(&notice).unwrap();
        assert!(json.contains(r#""action":"set""#), "{json}");
        let back: Notice = serde_json::from_str(&json).unwrap();
        assert_eq!((back.action, back.versions), (Action::Set, vec![7]));
        assert_eq!(channel("app"), "app:flagcache:v1:events");
        assert_ne!(new_origin(), new_origin());
    }
}
