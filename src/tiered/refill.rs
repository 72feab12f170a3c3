//! Refilling an emptied L2: Redis restarted without persistence (or was flushed, or failed
//! over to an empty replica) holds nothing, and every instance's next loads would fall through
//! to the source at once.
//!
//! The fleet keeps a sentinel in L2 (`FlagStore::sentinel`): a random token planted after L2
//! was filled. Each instance checks it when its backplane subscription is made and every
//! `sentinel_interval`, and remembers the last token it saw.
//!
//! - With a source: an instance that finds the sentinel gone competes for the L2 lease
//!   `refill`. The holder loads the whole set from the source once, fills L2 with it
//!   (`fill_many`: never over a write or a live tombstone; a batch filled more than half a
//!   `tombstone_ttl` after the read is read again first, so that a deletion whose tombstone
//!   expired is not undone) and plants a new token. The others wait for
//!   the token (see below how long) before they revalidate their L1 through L2, so the source
//!   answers one `load_all` instead of every instance's working set.
//! - Without one, L2 is the fleet's only copy besides the instances' L1: each instance that
//!   finds the sentinel gone, or a token it has not seen (another instance refilled L2 since),
//!   writes its own L1 (fresh and stale) into L2 behind the version guard (the highest version
//!   any instance held wins), then plants a token (the first one planted stays). So what any
//!   instance held is put back before it revalidates L1 through L2 (which drops what no layer
//!   holds any more); an instance that cannot do so does not revalidate.
//!
//! The refill lease, and the wait for another instance's refill, last three times
//! `bulk_timeout`: a `load_all` may take that long once, and the fill after it.

use super::backplane::new_token;
use super::stats::add;
use super::{Inner, l2::L2};
use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, Mutex, lock};
use std::time::Duration;

/// The name of the lease that elects the instance refilling L2 from the source.
const REFILL_LEASE: &str = "refill";
/// Flags written to L2 in one call.
const BATCH: usize = 500;
/// How often an instance waiting for another's refill checks the sentinel.
const WAIT_STEP: Duration = Duration::from_millis(50);

/// The last sentinel this instance saw in L2.
#[derive(Default)]
pub(crate) struct SentinelSeen(Mutex<Option<String>>);

impl SentinelSeen {
    /// Records `token`; true when it differs from the one seen before (if one was).
    fn changed_to(&self, token: &str) -> bool {
        let mut seen = lock(&self.0);
        let changed = seen.as_deref().is_some_and(|before| before != token);
        *seen = Some(token.to_owned());
        changed
    }
}

impl Inner {
    /// Makes sure L2 holds the fleet's working set (see the module); returns whether this
    /// instance wrote to it.
    pub(crate) async fn ensure_l2_filled(self: &Arc<Self>) -> Result<bool> {
        let Some(l2) = &self.l2 else { return Ok(false) };
        let found = l2.sentinel().await?;
        if self.l3.is_none() {
            return self.refill_from_l1(l2, found).await;
        }
        if let Some(token) = found {
            self.sentinel_seen.changed_to(&token);
            return Ok(false);
        }
        let limit = self.policy.bulk_timeout * 3;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if l2
                .lease(REFILL_LEASE, self.backplane.origin(), limit)
                .await?
            {
                // Checked again under the lease: another holder may have just finished.
                if let Some(token) = l2.sentinel().await? {
                    self.sentinel_seen.changed_to(&token);
                    return Ok(false);
                }
                self.refill_from_source(l2).await?;
                return Ok(true);
            }
            tokio::time::sleep(WAIT_STEP).await;
            if let Some(token) = l2.sentinel().await? {
                self.sentinel_seen.changed_to(&token);
                return Ok(false);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("another instance has been refilling L2 for over {limit:?}"),
                ));
            }
        }
    }

    /// Fills L2 with the source's whole set, then plants a new sentinel. A failing source is
    /// an error (this instance's L1 may hold what the fleet changed or deleted since).
    ///
    /// A `SET NX` fill is refused by a deletion's tombstone only while it lives: a batch
    /// filled more than half a `tombstone_ttl` after the set was read is read again first
    /// (one `load_many`), so that a flag deleted meanwhile is not put back.
    async fn refill_from_source(&self, l2: &L2) -> Result<()> {
        let Some(l3) = &self.l3 else { return Ok(()) };
        let read_at = tokio::time::Instant::now();
        let defs = l3.load_all(&self.counters).await?;
        let fresh_for = self.policy.tombstone_ttl / 2;
        let ttl = self.policy.l2_ttl;
        let mut stored = 0;
        let mut flags = defs.into_iter().map(|d| (d.id.clone(), d)).peekable();
        while flags.peek().is_some() {
            let mut batch: Vec<(FlagId, FlagDefinition)> = flags.by_ref().take(BATCH).collect();
            if read_at.elapsed() > fresh_for {
                let ids: Vec<FlagId> = batch.iter().map(|(id, _)| id.clone()).collect();
                let mut again = l3.load_batch(&ids, &self.counters).await?;
                batch = ids
                    .into_iter()
                    .filter_map(|id| again.found.remove(&id).map(|d| (id, d)))
                    .collect();
            }
            stored += l2.fill_many(&batch, ttl).await?;
        }
        self.planted(l2, stored).await
    }

    /// Without a source: fills L2 with this instance's L1 when the sentinel is gone, or is one
    /// this instance has not seen.
    async fn refill_from_l1(&self, l2: &L2, found: Option<String>) -> Result<bool> {
        match found {
            Some(token) if !self.sentinel_seen.changed_to(&token) => Ok(false),
            _ => {
                self.fill_from_l1(l2).await?;
                Ok(true)
            }
        }
    }

    /// Writes this instance's L1 into L2 behind the version guard (the highest version any
    /// instance held wins), then plants a sentinel.
    async fn fill_from_l1(&self, l2: &L2) -> Result<()> {
        let ttl = self.policy.l2_ttl;
        let mut stored = 0;
        for batch in self.l1_flags().chunks(BATCH) {
            stored += l2.set_many(batch, ttl).await?.stored;
        }
        self.planted(l2, stored).await
    }

    /// Plants a sentinel after a refill that stored `stored` flags (a new token, unless
    /// another instance planted one meanwhile), remembered as seen.
    async fn planted(&self, l2: &L2, stored: usize) -> Result<()> {
        let token = l2.plant_sentinel(&new_token()).await?;
        self.sentinel_seen.changed_to(&token);
        if stored > 0 {
            add(&self.counters.l2_refills, 1);
            tracing::warn!(
                stored,
                "L2 had lost its content (its sentinel was gone); refilled it"
            );
        }
        Ok(())
    }

    /// What L1 holds, fresh or stale (the last known definitions).
    fn l1_flags(&self) -> Vec<(FlagId, FlagDefinition)> {
        self.l1
            .last_known_all()
            .into_iter()
            .map(|d| (d.id.clone(), FlagDefinition::clone(&d)))
            .collect()
    }
}
