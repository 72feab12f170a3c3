//! The tiered cache's L2: any [`FlagStore`], every call bounded by the cache's own timeouts,
//! so a store that hangs costs a reader at most `l2_timeout`.

use super::policy::Policy;
use super::store::{DynStore, FlagStore, SetManyOutcome, Subscription};
use crate::cache::CachedFlag;
use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) struct L2 {
    store: Box<dyn DynStore>,
    timeout: Duration,
    bulk_timeout: Duration,
}

/// Runs `call` for at most `limit`; running out is a [`ErrorKind::Timeout`], and a panic in
/// the call (user code: a store or a source) is an [`ErrorKind::Backend`] error, so that it
/// fails over like any other failure instead of unwinding through the reader.
pub(crate) async fn bounded<T>(
    what: &str,
    limit: Duration,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, CatchUnwind(Box::pin(call))).await {
        Ok(Ok(result)) => result,
        Ok(Err(())) => Err(Error::new(ErrorKind::Backend, format!("{what} panicked"))),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("{what} took over {limit:?}"),
        )),
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
        }
    }

    pub(crate) fn bound_by(&mut self, policy: &Policy) {
        self.timeout = policy.l2_timeout;
        self.bulk_timeout = policy.bulk_timeout;
    }

    pub(crate) fn as_any(&self) -> &dyn Any {
        self.store.as_any()
    }

    pub(crate) async fn get_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, CachedFlag>> {
        bounded("L2 read", self.timeout, self.store.get_many(ids)).await
    }

    pub(crate) async fn set_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Result<SetManyOutcome> {
        bounded("L2 write", self.timeout, self.store.set_many(flags, ttl)).await
    }

    pub(crate) async fn fill_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Result<usize> {
        bounded(
            "L2 write-back",
            self.timeout,
            self.store.fill_many(flags, ttl),
        )
        .await
    }

    pub(crate) async fn tombstone_many(&self, ids: &[FlagId], ttl: Duration) -> Result<()> {
        bounded(
            "L2 invalidate",
            self.timeout,
            self.store.tombstone_many(ids, ttl),
        )
        .await
    }

    pub(crate) async fn clear(&self) -> Result<()> {
        bounded("L2 clear", self.bulk_timeout, self.store.clear()).await
    }

    pub(crate) async fn load_all(&self) -> Result<Vec<FlagDefinition>> {
        bounded("L2 load_all", self.bulk_timeout, self.store.load_all()).await
    }

    pub(crate) async fn publish(&self, notice: &[u8]) -> Result<()> {
        bounded("L2 publish", self.timeout, self.store.publish(notice)).await
    }

    pub(crate) async fn subscribe(&self, limit: Duration) -> Result<Subscription> {
        bounded("backplane subscribe", limit, self.store.subscribe()).await
    }
}
