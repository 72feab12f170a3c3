//! The tiered cache's L2: any [`FlagStore`], every call bounded by the cache's own timeouts,
//! so a store that hangs costs a reader at most `l2_timeout`.

use super::policy::Policy;
use super::readiness::Health;
use super::store::{DynStore, FlagStore, SetManyOutcome, Subscription};
use crate::cache::CachedFlag;
use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::Arc;
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Instrument;

pub(crate) struct L2 {
    store: Box<dyn DynStore>,
    timeout: Duration,
    bulk_timeout: Duration,
    /// Where each call's reach is recorded, for readiness.
    health: Arc<Health>,
}

/// Runs `call` for at most `limit`; running out is a [`ErrorKind::Timeout`], and a panic in
/// the call (user code: a store or a source) is an [`ErrorKind::Backend`] error, so that it
/// fails over like any other failure instead of unwinding through the reader.
///
/// Each call is a `debug` span `flagcache.call` with fields `call` (what), `ids` (how many
/// flags it is about), `outcome` (`ok`, the error's kind, or `cancelled` when the caller
/// dropped the call) and `micros` (its duration), and
/// with the `metrics` feature a sample of the histogram `flagcache_call_seconds` (`layer`:
/// `l2` or `l3`).
pub(crate) async fn bounded<T>(
    layer: &'static str,
    what: &'static str,
    ids: usize,
    limit: Duration,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    let span = tracing::debug_span!(
        "flagcache.call",
        call = what,
        ids,
        outcome = tracing::field::Empty,
        micros = tracing::field::Empty
    );
    // Records the call's end, `cancelled` if the caller dropped it before it ended.
    let mut record = CallRecord {
        span: span.clone(),
        layer,
        started: Instant::now(),
        ended: None,
    };
    let bounded = tokio::time::timeout(limit, CatchUnwind(Box::pin(call))).instrument(span);
    let result = match bounded.await {
        Ok(Ok(result)) => result,
        Ok(Err(())) => Err(Error::new(ErrorKind::Backend, format!("{what} panicked"))),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("{what} took over {limit:?}"),
        )),
    };
    record.ended = Some(result.as_ref().err().map(Error::kind));
    result
}

/// The end of one bounded call, recorded when dropped: on its span, and in the
/// `flagcache_call_seconds` histogram with the `metrics` feature.
struct CallRecord {
    span: tracing::Span,
    layer: &'static str,
    started: Instant,
    /// `None` until the call ended (dropped so, it was cancelled); then its error's kind, if
    /// it failed.
    ended: Option<Option<ErrorKind>>,
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        // The outcome's text is made only for a span or a histogram that takes it.
        if self.span.is_disabled() && !cfg!(feature = "metrics") {
            return;
        }
        let outcome = match self.ended {
            None => "cancelled".to_owned(),
            Some(None) => "ok".to_owned(),
            Some(Some(kind)) => format!("{kind:?}"),
        };
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome.as_str());
            self.span
                .record("micros", self.started.elapsed().as_micros() as u64);
        }
        #[cfg(feature = "metrics")]
        super::metrics::record_call(self.layer, &outcome, self.started.elapsed().as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = self.layer;
    }
}

/// A future that turns a panic while it is polled into `Err(())`; it is not polled again.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::result::Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

impl L2 {
    pub(crate) fn new(store: impl FlagStore) -> Self {
        let policy = Policy::default();
        Self {
            store: Box::new(store),
            timeout: policy.l2_timeout,
            bulk_timeout: policy.bulk_timeout,
            health: Arc::default(),
        }
    }

    /// Records this layer's calls in `health`.
    pub(crate) fn report_to(&mut self, health: Arc<Health>) {
        self.health = health;
    }

    /// [`bounded`], recording whether the call reached L2.
    async fn call<T>(
        &self,
        what: &'static str,
        ids: usize,
        limit: Duration,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = bounded("l2", what, ids, limit, call).await;
        self.health.l2_call(&result);
        result
    }

    pub(crate) fn bound_by(&mut self, policy: &Policy) {
        self.timeout = policy.l2_timeout;
        self.bulk_timeout = policy.bulk_timeout;
    }

    pub(crate) fn as_any(&self) -> &dyn Any {
        self.store.as_any()
    }

    pub(crate) async fn get_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, CachedFlag>> {
        self.call("L2 read", ids.len(), self.timeout, self.store.get_many(ids))
            .await
    }

    pub(crate) async fn set_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Result<SetManyOutcome> {
        self.call(
            "L2 write",
            flags.len(),
            self.timeout,
            self.store.set_many(flags, ttl),
        )
        .await
    }

    pub(crate) async fn fill_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Result<usize> {
        self.call(
            "L2 write-back",
            flags.len(),
            self.timeout,
            self.store.fill_many(flags, ttl),
        )
        .await
    }

    pub(crate) async fn tombstone_many(&self, ids: &[FlagId], ttl: Duration) -> Result<()> {
        self.call(
            "L2 invalidate",
            ids.len(),
            self.timeout,
            self.store.tombstone_many(ids, ttl),
        )
        .await
    }

    pub(crate) async fn clear(&self) -> Result<()> {
        self.call("L2 clear", 0, self.bulk_timeout, self.store.clear())
            .await
    }

    pub(crate) async fn load_all(&self) -> Result<Vec<FlagDefinition>> {
        self.call("L2 load_all", 0, self.bulk_timeout, self.store.load_all())
            .await
    }

    pub(crate) async fn publish(&self, notice: &[u8]) -> Result<()> {
        self.call("L2 publish", 0, self.timeout, self.store.publish(notice))
            .await
    }

    pub(crate) async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.call(
            "L2 lease",
            0,
            self.timeout,
            self.store.lease(name, holder, ttl),
        )
        .await
    }

    pub(crate) async fn sentinel(&self) -> Result<Option<String>> {
        self.call("L2 sentinel", 0, self.timeout, self.store.sentinel())
            .await
    }

    pub(crate) async fn plant_sentinel(&self, token: &str) -> Result<String> {
        let plant = self.store.plant_sentinel(token);
        self.call("L2 sentinel", 0, self.timeout, plant).await
    }

    pub(crate) async fn subscribe(&self, limit: Duration) -> Result<Subscription> {
        self.call("backplane subscribe", 0, limit, self.store.subscribe())
            .await
    }
}
