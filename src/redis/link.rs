//! The connection of a `RedisCache` (one node's, or a cluster's), replaced when it goes silent.
//!
//! `ConnectionManager` reconnects when its connection fails, but a connection that stays open
//! and stops answering (a hung server behind a load balancer, a failover, a dropped NAT entry)
//! never fails: every request just times out. So after [`SILENT_LIMIT`] consecutive timeouts
//! the link is replaced by a new one, which connects on its next request; requests already
//! sent on the old one finish or time out on their own. TCP keepalive and a user timeout (set by
//! the builder) catch a dead peer the kernel can see.
//!
//! Each connection has a generation, and a request reports its outcome against the generation
//! it was sent on: a burst that timed out together on a silent connection replaces it once,
//! and its late timeouts say nothing of the new one. A new connection is not replaced before
//! it is [`SILENT_LIMIT`] timeouts old, doubled for each replacement in a row that no answer
//! followed (up to [`MAX_GRACE`]): its first requests also wait for its handshake, and on a
//! link whose round trip is near the timeout they time out too, which must not get it replaced
//! in turn, for ever.
//!
//! On a cluster an answer proves less: it came from one node, while another may be silent. The
//! cluster client follows redirects and dead nodes, but a primary that hangs with its
//! connections open only times out, and the client keeps sending its slots there even after a
//! replica has taken over. So on a cluster answers do not reset the count: a connection is
//! replaced after [`SILENT_LIMIT`] timeouts (the new one learns the cluster's layout afresh),
//! with the same growing grace, and the count starts again only after [`QUIET`] without a
//! timeout.

use super::conn::{Conn, Target};
use crate::error::Result;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use std::time::{Duration, Instant};

/// Consecutive timeouts after which the connection is replaced.
pub(crate) const SILENT_LIMIT: u64 = 3;

/// The longest a new connection is given before it may be replaced.
const MAX_GRACE: Duration = Duration::from_secs(30);

/// On a cluster, how long without a timeout before past timeouts are forgotten.
const QUIET: Duration = Duration::from_secs(10);

pub(crate) struct Link {
    target: Target,
    /// The response timeout: a new connection's grace is counted in it.
    timeout: Duration,
    current: Mutex<Current>,
    /// Nonzero while `current` has a timeout or a replacement to forget at the next answer:
    /// lets an answered request skip the lock in the common case. Only a hint: decisions are
    /// made under the lock, and a reset it misses is one racing a timeout anyway.
    watching: AtomicU64,
}

struct Current {
    conn: Conn,
    generation: u64,
    /// Requests on this connection that timed out since the last one answered.
    silent: u64,
    /// When this connection was set up (it connects on its first request).
    born: Instant,
    /// Replacements in a row that no answer followed (on a cluster: no quiet period).
    unanswered: u32,
    /// The last timeout on this link (any connection), for a cluster's quiet period.
    last_timeout: Option<Instant>,
}

/// A connection handle and the generation it belongs to.
pub(crate) struct Leased {
    pub(crate) conn: Conn,
    pub(crate) generation: u64,
}

impl Link {
    /// A link that connects on its first request.
    pub(crate) fn new(target: Target, timeout: Duration) -> Result<Self> {
        let conn = target.connect_lazily()?;
        Ok(Self {
            target,
            timeout,
            current: Mutex::new(Current {
                conn,
                generation: 0,
                silent: 0,
                born: Instant::now(),
                unanswered: 0,
                last_timeout: None,
            }),
            watching: AtomicU64::new(0),
        })
    }

    /// The connection to send a request on (a cheap handle), with its generation.
    pub(crate) fn lease(&self) -> Leased {
        let current = lock(&self.current);
        Leased {
            conn: current.conn.clone(),
            generation: current.generation,
        }
    }

    /// What the link connects to, for the dedicated connections a subscription needs.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// A request sent on `generation` was answered (even with an error): that connection is
    /// alive.
    pub(crate) fn answered(&self, generation: u64) {
        // On a cluster, one node's answer says nothing of another's silence (module docs).
        if self.watching.load(Ordering::Relaxed) == 0 || self.target.is_cluster() {
            return;
        }
        let mut current = lock(&self.current);
        if current.generation == generation {
            current.silent = 0;
            current.unanswered = 0;
            self.watching.store(0, Ordering::Relaxed);
        }
    }

    /// A request sent on `generation` timed out; returns true when this made the connection be
    /// replaced. Timeouts of a connection already replaced count for nothing.
    pub(crate) fn timed_out(&self, generation: u64) -> bool {
        let mut current = lock(&self.current);
        if current.generation != generation {
            return false;
        }
        if self.target.is_cluster() {
            let now = Instant::now();
            if current.last_timeout.is_some_and(|t| now - t >= QUIET) {
                current.silent = 0;
                current.unanswered = 0;
            }
            current.last_timeout = Some(now);
        }
        current.silent += 1;
        self.watching.store(1, Ordering::Relaxed);
        if current.silent < SILENT_LIMIT || current.born.elapsed() < self.grace(current.unanswered)
        {
            return false;
        }
        match self.target.connect_lazily() {
            Ok(fresh) => {
                current.conn = fresh;
                current.generation += 1;
                current.silent = 0;
                current.born = Instant::now();
                current.unanswered = current.unanswered.saturating_add(1);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot replace the silent Redis connection");
                false
            }
        }
    }

    /// How old a connection must be before it may be replaced, after `unanswered`
    /// replacements in a row that no answer followed.
    fn grace(&self, unanswered: u32) -> Duration {
        if unanswered == 0 {
            // The first connection, or one that answered: replaced at its third timeout.
            return Duration::ZERO;
        }
        let doubling = 1u32 << unanswered.min(16);
        (self.timeout * SILENT_LIMIT as u32)
            .saturating_mul(doubling)
            .min(MAX_GRACE)
    }
}
