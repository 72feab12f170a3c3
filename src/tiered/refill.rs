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
//!   (`fill_many`: never over a write made since) and plants a new token. The others wait for
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

/// How a refill writes into L2.
#[derive(Clone, Copy)]
enum Write {
    /// The source's set: only where a key is empty (`SET NX`), never over a write made since.
    IfEmpty,
    /// An instance's L1: behind the version guard, so that the highest version any instance
    /// held wins.
    Guarded,
}

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

    /// Fills L2 with the source's whole set (or this instance's L1, when the source fails),
    /// then plants a new sentinel.
    async fn refill_from_source(&self, l2: &L2) -> Result<()> {
        let from_source = match &self.l3 {
            Some(l3) => l3.load_all(&self.counters).await.ok(),
            None => None,
        };
        match from_source {
            Some(defs) => {
                let flags: Vec<_> = defs.into_iter().map(|d| (d.id.clone(), d)).collect();
                self.fill(l2, &flags, Write::IfEmpty).await
            }
            None => self.fill(l2, &self.l1_flags(), Write::Guarded).await,
        }
    }

    /// Without a source: fills L2 with this instance's L1 when the sentinel is gone, or is one
    /// this instance has not seen.
    async fn refill_from_l1(&self, l2: &L2, found: Option<String>) -> Result<bool> {
        match found {
            Some(token) if !self.sentinel_seen.changed_to(&token) => Ok(false),
            _ => {
                self.fill(l2, &self.l1_flags(), Write::Guarded).await?;
                Ok(true)
            }
        }
    }

    /// Writes `flags` into L2 as `how` says, then plants a sentinel (a new token, unless
    /// another instance planted one meanwhile), remembered as seen.
    async fn fill(&self, l2: &L2, flags: &[(FlagId, FlagDefinition)], how: Write) -> Result<()> {
        let ttl = self.policy.l2_ttl;
        let mut stored = 0;
        for batch in flags.chunks(BATCH) {
            stored += match how {
                Write::IfEmpty => l2.fill_many(batch, ttl).await?,
                Write::Guarded => l2.set_many(batch, ttl).await?.stored,
            };
        }
        let token = l2.plant_sentinel(&new_token()).await?;
        self.sentinel_seen.changed_to(&token);
        if !flags.is_empty() {
            add(&self.counters.l2_refills, 1);
            tracing::warn!(
                flags = flags.len(),
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
