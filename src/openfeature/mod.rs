//! [`FlagcacheProvider`]: flagcache as an OpenFeature provider (feature `openfeature`).

mod convert;

use crate::flag::{FlagDefinition, FlagId, FlagValue};
use crate::local::LocalCache;
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::tiered::{Landing, TieredCache};
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationResult, FlagMetadata,
    StructValue, async_trait,
};
use std::time::Duration;

/// How long `initialize` waits for the warm-up by default.
const DEFAULT_WARM_UP_BUDGET: Duration = Duration::from_secs(2);

/// The provider's status, kept in one word so `status()` (not async) reads it without a lock.
const NOT_READY: u64 = 0;
const READY: u64 = 1;
const STALE: u64 = 2;
const ERROR: u64 = 3;

/// An OpenFeature provider over a [`TieredCache`] (or a [`LocalCache`]): every `resolve_*`
/// reads the definition through the cache and evaluates it with
/// [`FlagDefinition::evaluate`].
///
/// - **Types**: a boolean, string or number flag resolves as `bool`, `String` or `f64`; as
///   `i64` only when the number is integral and at most 2^53 in magnitude; a JSON object flag
///   as a struct. Anything else is `TypeMismatch`.
/// - **Context**: the targeting key is the evaluation key; custom fields are attributes
///   (date-times as RFC 3339 strings, structs as JSON objects).
/// - **Reasons and variants**: `DISABLED` (`default`), `TARGETING_MATCH` (`rule-N`), `SPLIT`
///   (`rollout-N`), `DEFAULT`, or `STATIC` for a flag with no rules and no rollout
///   (`default`); `STALE` when the fail-safe served the definition past its TTL because every
///   backend failed. The flag metadata carries its `version`.
/// - **Errors**: `FLAG_NOT_FOUND` for an absent flag; `PROVIDER_NOT_READY` before the warm-up
///   completed, and when nothing is cached and the backends fail. Never `PARSE_ERROR`: every
///   definition is validated before any layer caches it, and a corrupt value in L2 is a miss
///   loaded from the source, so the provider never holds a definition it cannot read.
/// - **Status**: `NotReady` until `initialize` warmed the cache up (within its budget), then
///   `Ready`; `Error` when the warm-up failed or ran out of its budget. After that it follows
///   the last answer: `STALE` when the fail-safe served it, `Ready` when it was fresh (so it
///   says what the last evaluation got, not whether every backend is up: see
///   [`TieredCache::readiness`]).
///
/// `OpenFeature::set_provider` holds the SDK's registry lock while `initialize` runs, so every
/// evaluation in the process waits for the warm-up (`set_named_provider` does not: meanwhile
/// the named clients get the SDK's no-op provider, which answers `PROVIDER_NOT_READY`). The
/// warm-up is bounded (`warm_up_budget`, 2 s by default). To keep it out of the SDK
/// altogether, warm the cache up first and register [`FlagcacheProvider::warmed`].
pub struct FlagcacheProvider {
    source: Source,
    metadata: ProviderMetadata,
    status: Arc<AtomicU64>,
    warm_up_budget: Duration,
}

enum Source {
    Tiered(TieredCache),
    Local(Arc<LocalCache>),
}

impl std::fmt::Debug for FlagcacheProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagcacheProvider")
            .field("status", &self.status())
            .field("warm_up_budget", &self.warm_up_budget)
            .finish_non_exhaustive()
    }
}

impl FlagcacheProvider {
    /// A provider over `cache`, not ready until `initialize` (which the SDK's `set_provider`
    /// calls) has warmed it up.
    pub fn new(cache: TieredCache) -> Self {
        Self::with(Source::Tiered(cache), NOT_READY)
    }

    /// A provider over `cache` that the caller has already warmed up
    /// ([`TieredCache::warm_up`]): ready at once, and `initialize` does nothing.
    pub fn warmed(cache: TieredCache) -> Self {
        Self::with(Source::Tiered(cache), READY)
    }

    /// A provider over an L1-only cache: ready at once; a flag it does not hold is not found
    /// (one past its TTL within the stale grace is served as `STALE`).
    pub fn local(cache: Arc<LocalCache>) -> Self {
        Self::with(Source::Local(cache), READY)
    }

    fn with(source: Source, status: u64) -> Self {
        Self {
            source,
            metadata: ProviderMetadata::new("flagcache"),
            status: Arc::new(AtomicU64::new(status)),
            warm_up_budget: DEFAULT_WARM_UP_BUDGET,
        }
    }

    /// The most `initialize` waits for the warm-up (default 2 s); past it the provider's
    /// status is `Error` and it serves what the read-through finds.
    #[must_use]
    pub fn warm_up_budget(mut self, budget: Duration) -> Self {
        self.warm_up_budget = budget;
        self
    }

    /// The definition of `flag_key` and whether the fail-safe served it stale.
    async fn lookup(&self, flag_key: &str) -> EvaluationResult<(Arc<FlagDefinition>, bool)> {
        if self.status.load(Ordering::Relaxed) == NOT_READY {
            return Err(error(
                EvaluationErrorCode::ProviderNotReady,
                "the cache is not warmed up yet",
            ));
        }
        let (found, stale) = match &self.source {
            Source::Tiered(cache) => match cache.resolve(&FlagId::new(flag_key)).await {
                Landing::Found(flag) => (flag.definition, false),
                Landing::Stale(flag) => (flag.definition, true),
                Landing::Absent => return Err(not_found(flag_key)),
                Landing::Failed => {
                    return Err(error(
                        EvaluationErrorCode::ProviderNotReady,
                        "every backend failed and nothing is cached",
                    ));
                }
            },
            Source::Local(cache) => match cache.get_now(flag_key) {
                Some(flag) => (flag.definition, false),
                None => match cache.get_stale(flag_key) {
                    Some(stale) => (stale.flag.definition, true),
                    None => return Err(not_found(flag_key)),
                },
            },
        };
        // The last answer's freshness is the status: a stale one, `STALE`; a fresh one (after
        // a failed warm-up too: the backends answer now), `Ready`.
        let to = if stale { STALE } else { READY };
        let _ = self
            .status
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                (now != NOT_READY && now != to).then_some(to)
            });
        Ok((found, stale))
    }

    /// Looks `flag_key` up, evaluates it for `ctx`, and converts the served value with `take`.
    async fn resolve<T>(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
        wanted: &str,
        take: impl FnOnce(&FlagValue) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let (def, stale) = self.lookup(flag_key).await?;
        let ctx = convert::context(ctx);
        let evaluation = def.evaluate(&ctx);
        let value = take(evaluation.value).ok_or_else(|| {
            error(
                EvaluationErrorCode::TypeMismatch,
                format!(
                    "flag `{flag_key}` served a {} value, not {wanted}",
                    evaluation.value.kind()
                ),
            )
        })?;
        let (variant, reason) = convert::variant_and_reason(&def, &ctx, evaluation.reason, stale);
        let version = i64::try_from(def.version).unwrap_or(i64::MAX);
        Ok(ResolutionDetails {
            value,
            variant: Some(variant),
            reason: Some(reason),
            flag_metadata: Some(FlagMetadata::default().with_value("version", version)),
        })
    }
}

fn error(code: EvaluationErrorCode, message: impl Into<String>) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message.into()),
    }
}

fn not_found(flag_key: &str) -> EvaluationError {
    error(
        EvaluationErrorCode::FlagNotFound,
        format!("no flag `{flag_key}`"),
    )
}

#[async_trait]
impl FeatureProvider for FlagcacheProvider {
    /// Warms a [`TieredCache`] up, within `warm_up_budget`.
    async fn initialize(&mut self, _context: &EvaluationContext) {
        let Source::Tiered(cache) = &self.source else {
            return;
        };
        if self.status.load(Ordering::Relaxed) != NOT_READY {
            return;
        }
        let status = match tokio::time::timeout(self.warm_up_budget, cache.warm_up()).await {
            Ok(Ok(_)) => READY,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "OpenFeature provider: the warm-up failed");
                ERROR
            }
            Err(_) => {
                tracing::warn!(
                    budget = ?self.warm_up_budget,
                    "OpenFeature provider: the warm-up did not finish within its budget"
                );
                ERROR
            }
        };
        self.status.store(status, Ordering::Relaxed);
    }

    fn status(&self) -> ProviderStatus {
        match self.status.load(Ordering::Relaxed) {
            READY => ProviderStatus::Ready,
            STALE => ProviderStatus::STALE,
            ERROR => ProviderStatus::Error,
            _ => ProviderStatus::NotReady,
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(flag_key, ctx, "a boolean", |v| match v {
            FlagValue::Boolean(b) => Some(*b),
            _ => None,
        })
        .await
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(
            flag_key,
            ctx,
            "an integer (at most 2^53 in magnitude)",
            convert::integer,
        )
        .await
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(flag_key, ctx, "a number", |v| match v {
            FlagValue::Number(x) => Some(*x),
            _ => None,
        })
        .await
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, ctx, "a string", |v| match v {
            FlagValue::String(s) => Some(s.clone()),
            _ => None,
        })
        .await
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(flag_key, ctx, "a JSON object", |v| match v {
            FlagValue::Json(json) => convert::json_to_struct(json),
            _ => None,
        })
        .await
    }
}
