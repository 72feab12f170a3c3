//! The one load path: every read-through (`get`, `get_many`, the background loads of
//! `get_now`/`get_with`), every refresh-ahead pass and every backplane revalidation loads a
//! batch of flags here (a single flag is a batch of one).
//!
//! A batch holds an L1 fill ticket per flag, taken before any I/O. It asks L2 once for all of
//! them, then the source once for what L2 lacked; what either answers fills L1 under its
//! ticket. The no-resurrection rule lives here only: an answer reaches L1 only if no write,
//! invalidate or backplane notice for the flag came since its ticket, and it is written back
//! to L2 only if L1 took it, as a fill (`SET NX`: never over a write made since, nor over an
//! invalidate's tombstone). See `docs/architecture.md`.

use super::Inner;
use super::deadlines::Deadlines;
use super::readthrough::Landing;
use super::stats::add;
use crate::cache::CachedFlag;
use crate::error::ErrorKind;
use crate::flag::{FlagDefinition, FlagId};
use crate::local::{FillOutcome, FillTicket};
use crate::sync::Arc;
use crate::time::duration_to_ticks;
use std::time::Duration;

impl Inner {
    /// Loads one flag through L2 and L3 (the leader of its flight).
    pub(crate) async fn load_one(&self, id: &FlagId) -> Landing {
        let ticket = self.l1.begin_fill(id.as_str());
        // Another flight may have filled L1 between this caller's miss and its joining.
        if let Some(hit) = self.l1.peek(id.as_str()) {
            return Landing::Found(hit);
        }
        let landed = self.load_batch(vec![(id.clone(), ticket)]).await;
        landed
            .into_iter()
            .next()
            .map_or(Landing::Failed, |(_, landing)| landing)
    }

    /// Loads a batch of flags through L2 and L3, filling the layers above under each flag's
    /// ticket; returns what each flag landed as, in no particular order.
    pub(crate) async fn load_batch(
        &self,
        batch: Vec<(FlagId, FillTicket)>,
    ) -> Vec<(FlagId, Landing)> {
        let mut landed = Vec::with_capacity(batch.len());
        let mut rest = batch;
        let mut l2_failed = false;
        if let Some(l2) = &self.l2 {
            let ids: Vec<FlagId> = rest.iter().map(|(id, _)| id.clone()).collect();
            match l2.get_many(&ids).await {
                Ok(found) => {
                    let mut fills = 0;
                    rest.retain(|(id, ticket)| match found.get(id) {
                        // Checked as a source's answer is: a store may be written by anyone.
                        Some(flag)
                            if flag.definition.id == *id && flag.definition.validate().is_ok() =>
                        {
                            fills += 1;
                            self.fill_l1(ticket, flag);
                            landed.push((id.clone(), Landing::Found(flag.clone())));
                            false
                        }
                        _ => true,
                    });
                    add(&self.counters.l2_fills, fills);
                }
                // A corrupt value is left out by the store, not an error; anything else is.
                Err(e) if e.kind() == ErrorKind::Corrupt => {}
                Err(e) => {
                    tracing::debug!(error = %e, flags = ids.len(), "L2 read failed");
                    l2_failed = true;
                }
            }
        }
        if rest.is_empty() {
            return landed;
        }
        let Some(l3) = &self.l3 else {
            for (id, ticket) in rest {
                let landing = if l2_failed {
                    self.fail(&id, &ticket)
                } else {
                    self.mark_absent(&id, &ticket)
                };
                landed.push((id, landing));
            }
            return landed;
        };
        let ids: Vec<FlagId> = rest.iter().map(|(id, _)| id.clone()).collect();
        match l3.load_batch(&ids, &self.counters).await {
            Ok(mut loaded) => {
                add(&self.counters.l3_fills, loaded.found.len() as u64);
                let mut write_back = Vec::new();
                for (id, ticket) in rest {
                    let landing = match loaded.found.remove(&id) {
                        Some(def) => {
                            let flag = CachedFlag::new(Arc::new(def));
                            if self.fill_l1(&ticket, &flag) {
                                let def = FlagDefinition::clone(&flag.definition);
                                write_back.push((id.clone(), def, ticket));
                            }
                            Landing::Found(flag)
                        }
                        None if loaded.rejected.contains(&id) => self.fail(&id, &ticket),
                        None => self.mark_absent(&id, &ticket),
                    };
                    landed.push((id, landing));
                }
                if let (Some(l2), false, false) = (&self.l2, l2_failed, write_back.is_empty()) {
                    // Checked again just before: a write, invalidate or clear since the L1 fill
                    // (a clear leaves no tombstone to refuse the fill) drops it. What remains
                    // is the window of one round trip.
                    let write_back: Vec<(FlagId, FlagDefinition)> = write_back
                        .into_iter()
                        .filter(|(_, _, ticket)| self.l1.ticket_is_current(ticket))
                        .map(|(id, def, _)| (id, def))
                        .collect();
                    if let Err(e) = l2.fill_many(&write_back, self.policy.l2_ttl).await {
                        tracing::debug!(error = %e, "L2 write-back failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, flags = ids.len(), "flag source failed; serving stale if known");
                for (id, ticket) in rest {
                    let landing = self.fail(&id, &ticket);
                    landed.push((id, landing));
                }
            }
        }
        landed
    }

    /// Fills L1 under `ticket`; false when L1 dropped the fill (and counted it) because a
    /// write raced with the load, or it holds a newer version.
    fn fill_l1(&self, ticket: &FillTicket, flag: &CachedFlag) -> bool {
        let def = Arc::clone(&flag.definition);
        let outcome = self.l1.complete_fill(ticket, def, Some(self.policy.l1_ttl));
        matches!(outcome, FillOutcome::Installed)
    }

    /// `id` is absent everywhere: remembered for `negative_ttl`, unless a write, invalidate or
    /// notice for it came since the load began (its ticket): then the absence is stale news.
    fn mark_absent(&self, id: &FlagId, ticket: &FillTicket) -> Landing {
        if !self.policy.negative_ttl.is_zero() {
            self.remember(&self.reads.absent, id, self.policy.negative_ttl, ticket);
        }
        Landing::Absent
    }

    /// The backends failed for `id`: do not ask them again for `retry_after` (unless a write
    /// came since the load began), and serve the last known definition if it is recent enough.
    pub(crate) fn fail(&self, id: &FlagId, ticket: &FillTicket) -> Landing {
        self.remember(&self.reads.cooldown, id, self.policy.retry_after, ticket);
        self.stale(id.as_str())
            .map_or(Landing::Failed, Landing::Stale)
    }

    /// Records in `deadlines` what a load learned of `id`, for `ttl`, unless the load's ticket
    /// is no longer current. Set, then checked: a write that moved the fence after the check
    /// forgets the deadline itself (writes forget after they fence).
    fn remember(&self, deadlines: &Deadlines, id: &FlagId, ttl: Duration, ticket: &FillTicket) {
        let now = self.now();
        deadlines.set(id, now.saturating_add(duration_to_ticks(ttl)), now);
        if !self.l1.ticket_is_current(ticket) {
            deadlines.clear(id.as_str());
        }
    }
}
