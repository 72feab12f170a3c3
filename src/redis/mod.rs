//! L2: [`RedisCache`], the layer a fleet of instances shares.
//!
//! One multiplexed connection (`redis::aio::ConnectionManager`, re-made after it breaks)
//! carries every call; each request is bounded by the response timeout, so a dead or stalled
//! Redis costs a caller at most that long. Keys are `{prefix}:flag:{id}` (`keys`), values the
//! definition's JSON (`codec`), writes go through a version-guard script (`script`), and the
//! counters are kept on the client (`stats`).

mod batch;
mod builder;
mod codec;
mod conn;
mod keys;
mod lease;
mod link;
mod memo;
mod script;
mod sharded;
mod shards;
mod stats;
mod store;
mod walk;

pub use builder::RedisCacheBuilder;
pub use stats::RedisStats;

use crate::cache::{CacheStats, CachedFlag, FlagCache};
use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{AtomicU64, Ordering};
use crate::tiered::SetManyOutcome;
use batch::Keyed;
use conn::Conn;
use keys::Keys;
use link::{Leased, Link};
use memo::DecodeMemo;
use redis::{FromRedisValue, Value};
use shards::Shards;
use stats::{Counters, add};
use std::collections::HashMap;
use std::time::Duration;

/// A [`FlagCache`] on Redis, shared by every instance that uses the same prefix.
///
/// Through the trait, failures are misses (counted, and logged through `tracing` when Redis
/// goes away and comes back); the `try_*` methods return them. Build it inside a tokio
/// runtime; it connects on first use and reconnects by itself.
///
/// ```no_run
/// # async fn demo() -> flagcache::Result<()> {
/// use flagcache::{FlagCache, FlagDefinition, FlagId, RedisCache};
/// use std::time::Duration;
///
/// let l2 = RedisCache::new("redis://127.0.0.1:6379", "myapp", Duration::from_secs(300))?;
/// l2.try_ping().await?; // optional: fail fast on a wrong address or password
/// let id = FlagId::new("checkout.new-flow");
/// l2.set(&id, FlagDefinition::new_boolean("checkout.new-flow", "New checkout", true)?, None).await;
/// assert!(l2.get(&id).await.is_some());
/// # Ok(()) }
/// ```
pub struct RedisCache {
    link: Link,
    keys: Keys,
    default_ttl: Duration,
    timeout: Duration,
    max_value_bytes: usize,
    scan_batch: usize,
    memo: DecodeMemo,
    /// How often a quiet backplane subscription is pinged.
    health_check_interval: Duration,
    counters: Counters,
    /// 1 while the last request reached Redis, 0 after one failed: warnings are logged on the
    /// change, not for every failed call of an outage.
    reachable: AtomicU64,
    /// On a cluster, which primary serves which slots (a batch goes out as one pipeline per
    /// primary); `None` on a single node.
    shards: Option<Shards>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.keys.prefix())
            .field("default_ttl", &self.default_ttl)
            .field("response_timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// A cache on the Redis at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` with the `redis-tls` feature) with keys `{prefix}:flag:{id}` and
    /// `default_ttl`; the other settings are [`RedisCacheBuilder`]'s defaults.
    ///
    /// # Errors
    /// See [`RedisCacheBuilder::build`].
    pub fn new(url: &str, prefix: &str, default_ttl: Duration) -> Result<Self> {
        Self::builder(url)
            .prefix(prefix)
            .default_ttl(default_ttl)
            .build()
    }

    /// A builder for the Redis at `url`.
    pub fn builder(url: &str) -> RedisCacheBuilder {
        RedisCacheBuilder::new(url)
    }

    /// A builder for a Redis Cluster (or a Valkey cluster), reached through any of `seeds`:
    /// node URLs such as `redis://10.0.0.1:7000` (credentials and `rediss://` as for
    /// [`builder`](Self::builder); no database number, a cluster has one). One live seed is
    /// enough: the client learns the others from it.
    ///
    /// Every operation keeps its single-node meaning. A batch goes out as one pipeline per
    /// primary; `clear` and `load_all` walk every primary; the backplane uses sharded pub/sub
    /// (`SPUBLISH`/`SSUBSCRIBE` over RESP3) on one channel; `MOVED`, `ASK` and failovers are
    /// followed within the response timeout.
    ///
    /// ```no_run
    /// # async fn demo() -> flagcache::Result<()> {
    /// let l2 = flagcache::RedisCache::cluster_builder([
    ///     "redis://127.0.0.1:7000",
    ///     "redis://127.0.0.1:7001",
    /// ])
    /// .prefix("myapp")
    /// .build()?;
    /// l2.try_ping().await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster_builder<S: AsRef<str>>(seeds: impl IntoIterator<Item = S>) -> RedisCacheBuilder {
        RedisCacheBuilder::cluster(seeds.into_iter().map(|s| s.as_ref().to_owned()).collect())
    }

    #[allow(clippy::too_many_arguments)] // the builder's checked settings, once
    fn from_parts(
        link: Link,
        keys: Keys,
        default_ttl: Duration,
        timeout: Duration,
        max_value_bytes: usize,
        scan_batch: usize,
        memo_capacity: usize,
        health_check_interval: Duration,
    ) -> Self {
        let shards = link.target().is_cluster().then(Shards::default);
        Self {
            link,
            shards,
            keys,
            default_ttl,
            timeout,
            max_value_bytes,
            scan_batch,
            memo: DecodeMemo::new(memo_capacity),
            health_check_interval,
            counters: Counters::default(),
            reachable: AtomicU64::new(1),
        }
    }

    /// The key prefix this cache was built with.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// How often a quiet subscription is health-checked.
    pub(crate) fn health_check_interval(&self) -> Duration {
        self.health_check_interval
    }

    /// The backplane channel of this cache's prefix: `{prefix}:flagcache:v1:events`, and on a
    /// cluster the prefix in braces (a hash tag), `{{prefix}}:flagcache:v1:events`, which puts
    /// it on one shard, the one that serves the slot of the prefix.
    pub(crate) fn channel(&self) -> String {
        if self.shards.is_some() {
            format!("{{{}}}:flagcache:v1:events", self.keys.prefix())
        } else {
            format!("{}:flagcache:v1:events", self.keys.prefix())
        }
    }

    /// Publishes `payload` on `channel` (one round trip): `PUBLISH` on one node, `SPUBLISH`
    /// (sharded: only the channel's shard carries it) on a cluster. Returns how many
    /// subscribers got it.
    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64> {
        let publish = if self.shards.is_some() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        self.request(redis::cmd(publish).arg(channel).arg(payload))
            .await
    }

    /// A dedicated connection subscribed to `channel`. Not bounded by the response timeout: a
    /// connection and a subscription take several round trips, which a link of a few tens of
    /// milliseconds would not fit in it. The caller bounds it (the backplane's own timeout).
    pub(crate) async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub> {
        let conn::Target::Node(client, _) = self.link.target() else {
            return Err(Error::invalid_config(
                "plain pub/sub on a cluster: use the sharded subscription",
            ));
        };
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        subscribe.await.map_err(|e| self.classify(e))
    }

    /// The key `id` is stored under: `{prefix}:flag:{id}`.
    pub fn key_of(&self, id: &FlagId) -> String {
        self.keys.key(id)
    }

    /// Decodes a value as this crate stores it under `id`'s key: a valid definition of `id`,
    /// as JSON, at most `max_len` bytes. For tools that read the keys directly.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] for anything else.
    pub fn decode_value(id: &FlagId, bytes: &[u8], max_len: usize) -> Result<FlagDefinition> {
        codec::decode(id, bytes, max_len)
    }

    /// The Lua script every write goes through (`KEYS[1]` the key; `ARGV` the JSON, the
    /// version in decimal, the TTL in milliseconds (0: no expiry) and the flag's id; it returns
    /// 1 when it stored, 0 when a valid higher version of the flag was stored). Other services
    /// writing the same keys should use it too, so that versions never go backwards whoever
    /// writes.
    pub fn version_guard_script() -> &'static str {
        script::GUARDED_SET
    }

    /// Client-side counters.
    pub fn redis_stats(&self) -> RedisStats {
        self.counters.snapshot()
    }

    /// Checks the address, the credentials, that Redis answers in time, and that it is what
    /// the builder was told: a cluster for [`cluster_builder`](Self::cluster_builder) (whose
    /// state is `ok`), a node outside any cluster for [`builder`](Self::builder). One `PING`
    /// and one `INFO cluster`; on a cluster, one `CLUSTER INFO`.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`], [`ErrorKind::Timeout`], [`ErrorKind::Backend`] (a refused
    /// password, say), or [`ErrorKind::InvalidConfig`] for a cluster reached as a single node
    /// or the reverse.
    pub async fn try_ping(&self) -> Result<()> {
        if self.shards.is_some() {
            let info: Result<String> = self.request(redis::cmd("CLUSTER").arg("INFO")).await;
            return match info {
                Ok(info) if info.lines().any(|l| l.trim() == "cluster_state:ok") => Ok(()),
                Ok(_) => Err(Error::new(
                    ErrorKind::Unavailable,
                    "the Redis Cluster does not report cluster_state:ok",
                )),
                Err(e) if e.to_string().contains("cluster support disabled") => {
                    Err(Error::invalid_config(
                        "this Redis is not part of a Redis Cluster: build the cache with \
                         RedisCache::builder",
                    ))
                }
                Err(e) => Err(e),
            };
        }
        let reply: String = self.request(&redis::cmd("PING")).await?;
        if reply != "PONG" {
            return Err(Error::new(
                ErrorKind::Backend,
                format!("PING answered {reply:?}"),
            ));
        }
        let info: String = self.request(redis::cmd("INFO").arg("cluster")).await?;
        if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Err(Error::invalid_config(
                "this Redis is a node of a Redis Cluster: build the cache with \
                 RedisCache::cluster_builder",
            ));
        }
        Ok(())
    }

    /// The definition stored under `id`, or `None` (also for the tombstone a `TieredCache`
    /// leaves when it invalidates a flag, and for an empty value). One `GETRANGE` of at most
    /// `max_value_bytes + 1` bytes: a huge stored value costs the reader the limit, not its size.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] when the stored value is not a valid definition of `id`
    /// (counted as a decode error and a miss); connection errors and timeouts.
    pub async fn try_get(&self, id: &FlagId) -> Result<Option<CachedFlag>> {
        // At most one byte over the limit is sent, whatever is stored: a huge value costs a
        // reader the limit, not its size. An absent key reads as empty.
        let got: Result<Vec<u8>> = self
            .request(
                redis::cmd("GETRANGE")
                    .arg(self.keys.key(id))
                    .arg(0)
                    .arg(self.max_value_bytes),
            )
            .await;
        let bytes = match got {
            Ok(bytes) => bytes,
            Err(e) => {
                add(&self.counters.misses, 1);
                // A key of another type: what it holds is not a definition.
                return Err(if redis_code(&e) == Some("WRONGTYPE") {
                    self.decode_error(Error::new(
                        ErrorKind::Corrupt,
                        format!("stored value of flag `{id}`: {e}"),
                    ))
                } else {
                    e
                });
            }
        };
        add(&self.counters.value_bytes, bytes.len() as u64);
        let bytes = Some(bytes).filter(|b| codec::has_definition(b));
        match bytes.map(|b| self.memo.decode(id, &b, self.max_value_bytes)) {
            None => {
                add(&self.counters.misses, 1);
                Ok(None)
            }
            Some(Ok(def)) => {
                add(&self.counters.hits, 1);
                Ok(Some(CachedFlag::new(def)))
            }
            Some(Err(e)) => {
                add(&self.counters.misses, 1);
                Err(self.decode_error(e))
            }
        }
    }

    /// The definitions stored under those `ids` that have one, with one `MGET`. A corrupt
    /// value is left out (counted as a decode error and a miss) and the others are returned;
    /// under `MGET` a key of another type reads as absent.
    ///
    /// # Errors
    /// Connection errors and timeouts (every id counted as a miss).
    pub async fn try_get_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, CachedFlag>> {
        let mut out = HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(out);
        }
        let values = match self.read_values(ids).await {
            Ok(values) => values,
            Err(e) => {
                add(&self.counters.misses, ids.len() as u64);
                return Err(e);
            }
        };
        let received: usize = values.iter().flatten().map(Vec::len).sum();
        add(&self.counters.value_bytes, received as u64);
        let mut hits = 0;
        for (id, value) in ids.iter().zip(values) {
            let Some(bytes) = value.filter(|b| codec::has_definition(b)) else {
                continue;
            };
            match self.memo.decode(id, &bytes, self.max_value_bytes) {
                Ok(def) => {
                    hits += 1;
                    out.insert(id.clone(), CachedFlag::new(def));
                }
                Err(e) => {
                    self.decode_error(e);
                }
            }
        }
        add(&self.counters.hits, hits);
        add(&self.counters.misses, ids.len() as u64 - hits);
        Ok(out)
    }

    /// The stored values of `ids`, in order: one `MGET` on a single node, one pipeline of
    /// `GET`s per primary on a cluster. A key of another type reads as absent.
    async fn read_values(&self, ids: &[FlagId]) -> Result<Vec<Option<Vec<u8>>>> {
        if self.shards.is_none() {
            let mut mget = redis::cmd("MGET");
            for id in ids {
                mget.arg(self.keys.key(id));
            }
            return self.request(&mget).await;
        }
        let gets: Vec<Keyed> = ids
            .iter()
            .map(|id| {
                let key = self.keys.key(id).into_bytes();
                let cmd = redis::cmd("GET").arg(&key).clone();
                Keyed { key, cmd }
            })
            .collect();
        let replies = self.per_node(&gets).await?;
        replies
            .into_iter()
            .map(|reply| match reply {
                Value::BulkString(bytes) => Ok(Some(bytes)),
                // As under `MGET`: a key of another type reads as absent.
                Value::ServerError(e) if e.code() == "WRONGTYPE" => Ok(None),
                // A node that cannot serve its keys now (a failover under way, say) fails the
                // read: reading its keys as absent would be a wrong answer, not a miss.
                Value::ServerError(e) => Err(batch::refusal(&e)),
                _ => Ok(None),
            })
            .collect()
    }

    /// Stores `def` under `id` for `ttl` (the default when `None`; at least 1 ms), unless
    /// Redis holds a higher version of it.
    ///
    /// # Errors
    /// [`ErrorKind::StaleVersion`] when the version guard refused the write (counted);
    /// [`ErrorKind::InvalidFlag`] when `id` is not `def.id`, the definition fails
    /// [`FlagDefinition::validate`] or is over the size limit; [`ErrorKind::InvalidConfig`] for a zero `ttl`; connection errors and timeouts.
    pub async fn try_set(
        &self,
        id: &FlagId,
        def: &FlagDefinition,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let write = self.prepare_write(id, def, ttl)?;
        let stored = self.eval(|with_body| write.command(with_body)).await? == 1
            || self.replace_if_corrupt(&write).await?;
        if stored {
            add(&self.counters.writes, 1);
            Ok(())
        } else {
            add(&self.counters.stale_writes_refused, 1);
            Err(stale(id))
        }
    }

    /// Stores several definitions in one pipeline, each as [`try_set`](Self::try_set) would.
    /// Definitions that fail the checks are not sent; the others are.
    ///
    /// # Errors
    /// The first check that failed, else connection errors and timeouts. Refusals by the
    /// version guard are not errors here: they are in the outcome (and counted).
    pub async fn try_set_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Option<Duration>,
    ) -> Result<SetManyOutcome> {
        let mut first_error = None;
        let (ids, writes): (Vec<&FlagId>, Vec<Write>) = flags
            .iter()
            .filter_map(|(id, def)| {
                self.prepare_write(id, def, ttl)
                    .map_err(|e| first_error.get_or_insert(e))
                    .ok()
                    .map(|w| (id, w))
            })
            .unzip();
        let mut outcome = SetManyOutcome::default();
        if !writes.is_empty() {
            let replies = match self.pipeline_writes(&writes, false).await? {
                replies
                    if replies
                        .iter()
                        .any(|r| matches!(r, Err(e) if script::is_no_script(e))) =>
                {
                    // The server lost the script (a restart): send the batch again with its
                    // body. Writes are idempotent under the guard, so the repeat is safe.
                    self.pipeline_writes(&writes, true).await?
                }
                replies => replies,
            };
            for ((id, write), reply) in ids.into_iter().zip(&writes).zip(replies) {
                match reply {
                    Ok(1) => outcome.stored += 1,
                    // Refusals are rare: each is settled on its own (see `replace_if_corrupt`).
                    Ok(_) => match self.replace_if_corrupt(write).await {
                        Ok(true) => outcome.stored += 1,
                        Ok(false) => outcome.refused.push(id.clone()),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    },
                    Err(e) => {
                        add(&self.counters.errors, 1);
                        first_error.get_or_insert(
                            Error::new(ErrorKind::Backend, e.to_string()).with_source(e),
                        );
                    }
                }
            }
        }
        add(&self.counters.writes, outcome.stored as u64);
        add(
            &self.counters.stale_writes_refused,
            outcome.refused.len() as u64,
        );
        first_error.map_or(Ok(outcome), Err)
    }

    /// Stores each definition only where its key is absent (`SET ... PX ... NX`, one pipeline):
    /// the write-back of a read-through load, which must not replace anything written since
    /// the load found the key empty, nor a tombstone. Returns how many were stored.
    pub(crate) async fn try_fill_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Result<usize> {
        let sets: Vec<Keyed> = flags
            .iter()
            .filter_map(|(id, def)| {
                let value = codec::encode(def, self.max_value_bytes).ok()?;
                let key = self.keys.key(id).into_bytes();
                let cmd = set_command(&key, &value, ttl).arg("NX").clone();
                Some(Keyed { key, cmd })
            })
            .collect();
        if sets.is_empty() {
            return Ok(0);
        }
        let replies = self.per_node(&sets).await?;
        let stored = replies.iter().filter(|r| matches!(r, Value::Okay)).count();
        add(&self.counters.writes, stored as u64);
        Ok(stored)
    }

    /// Replaces the keys of `ids` with tombstones living `ttl` (one pipeline): read as absent,
    /// and they refuse the write-backs of loads that began before (see `try_fill_many`).
    pub(crate) async fn try_tombstone_many(&self, ids: &[FlagId], ttl: Duration) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sets: Vec<Keyed> = ids
            .iter()
            .map(|id| {
                let key = self.keys.key(id).into_bytes();
                let cmd = set_command(&key, codec::TOMBSTONE, ttl);
                Keyed { key, cmd }
            })
            .collect();
        if let Some(refused) = self
            .per_node(&sets)
            .await?
            .into_iter()
            .find_map(|r| match r {
                Value::ServerError(e) => Some(e),
                _ => None,
            })
        {
            add(&self.counters.errors, 1);
            return Err(Error::new(
                ErrorKind::Backend,
                format!("Redis refused a tombstone: {refused:?}"),
            ));
        }
        add(&self.counters.keys_removed, ids.len() as u64);
        Ok(())
    }

    /// Removes `id`'s key.
    ///
    /// # Errors
    /// Connection errors and timeouts.
    pub async fn try_invalidate(&self, id: &FlagId) -> Result<()> {
        self.try_invalidate_many(std::slice::from_ref(id)).await
    }

    /// Removes the keys of `ids` with one `UNLINK`.
    ///
    /// # Errors
    /// Connection errors and timeouts.
    pub async fn try_invalidate_many(&self, ids: &[FlagId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| self.keys.key(id).into_bytes())
            .collect();
        let removed = self.unlink(keys).await?;
        add(&self.counters.keys_removed, removed);
        Ok(())
    }

    /// Removes `keys`: one `UNLINK` on a single node, one pipeline of them per primary on a
    /// cluster. Returns how many existed.
    async fn unlink(&self, keys: Vec<Vec<u8>>) -> Result<u64> {
        if self.shards.is_none() {
            return self.request(redis::cmd("UNLINK").arg(&keys)).await;
        }
        let unlinks: Vec<Keyed> = keys
            .into_iter()
            .map(|key| {
                let cmd = redis::cmd("UNLINK").arg(&key).clone();
                Keyed { key, cmd }
            })
            .collect();
        let mut removed = 0;
        for reply in self.per_node(&unlinks).await? {
            match reply {
                Value::Int(n) => removed += u64::try_from(n).unwrap_or(0),
                other => {
                    add(&self.counters.errors, 1);
                    return Err(Error::new(
                        ErrorKind::Backend,
                        format!("UNLINK answered {other:?}"),
                    ));
                }
            }
        }
        Ok(removed)
    }

    /// Every valid definition stored under this cache's prefix (not under a prefix nested in
    /// it): `SCAN MATCH {prefix}:flag:*` (on every primary of a cluster) and one batch read per
    /// page. Corrupt values, and keys of the prefix whose name is not UTF-8, are left out
    /// (counted as decode errors). For warming an instance up from L2.
    ///
    /// # Errors
    /// Connection errors and timeouts.
    pub async fn try_load_all(&self) -> Result<Vec<FlagDefinition>> {
        let mut defs = Vec::new();
        for _ in 0..walk::WALKS {
            let mut scan = self.walk().await?;
            while let Some(keys) = scan.next_page(self).await? {
                let mut ids = Vec::with_capacity(keys.len());
                for key in &keys {
                    match self.keys.own(key) {
                        Some(Ok(id)) => ids.push(FlagId::new(id)),
                        // A key of this prefix that no flag id can name: left out, counted.
                        Some(Err(())) => add(&self.counters.decode_errors, 1),
                        None => {}
                    }
                }
                // SCAN may return a key twice; a later read simply reads it again.
                if !ids.is_empty() {
                    let found = self.try_get_many(&ids).await?;
                    defs.extend(
                        found
                            .into_values()
                            .map(|f| FlagDefinition::clone(&f.definition)),
                    );
                }
            }
            if scan.held(self).await? {
                // The highest version of a flag read twice (before and after it changed).
                defs.sort_by(|a, b| {
                    a.id.as_str()
                        .cmp(b.id.as_str())
                        .then(b.version.cmp(&a.version))
                });
                defs.dedup_by(|a, b| a.id == b.id);
                return Ok(defs);
            }
        }
        Err(walk::kept_moving())
    }

    /// Removes every key of this cache's prefix, and only those (not the keys of a prefix
    /// nested under it): `SCAN MATCH {prefix}:flag:*` (on every primary of a cluster) and one
    /// `UNLINK` batch per page. Returns how many keys it removed. Keys written while it runs
    /// may survive it.
    ///
    /// # Errors
    /// Connection errors and timeouts (keys removed before the failure stay removed).
    pub async fn try_clear(&self) -> Result<u64> {
        let mut removed = 0;
        for _ in 0..walk::WALKS {
            let mut scan = self.walk().await?;
            while let Some(keys) = scan.next_page(self).await? {
                let keys: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|key| self.keys.own(key).is_some())
                    .collect();
                if !keys.is_empty() {
                    let n = self.unlink(keys).await?;
                    removed += n;
                    add(&self.counters.keys_removed, n);
                }
            }
            if scan.held(self).await? {
                return Ok(removed);
            }
        }
        Err(walk::kept_moving())
    }

    /// Runs a script call, sent by SHA and again with its body when the server lost it.
    async fn eval(&self, command: impl Fn(bool) -> redis::Cmd) -> Result<i64> {
        match self.request(&command(false)).await {
            Err(e) if e.kind() == ErrorKind::Backend && write_needs_body(&e) => {
                self.request(&command(true)).await
            }
            other => other,
        }
    }

    /// After the guard refused `write`: reads the stored value, and unless it holds its version
    /// ([`codec::holds_its_version`]: what the guard cannot check, such as an empty name, does
    /// not), replaces it, as long as it is still the bytes read. True when the write is stored
    /// in the end; false for a real refusal (a higher version is stored).
    async fn replace_if_corrupt(&self, write: &Write) -> Result<bool> {
        for _ in 0..2 {
            let seen: Option<Vec<u8>> = self.request(redis::cmd("GET").arg(&write.key)).await?;
            let replaced = match seen {
                // Gone since the guard looked: try the guarded write again.
                None => self.eval(|with_body| write.command(with_body)).await? == 1,
                Some(seen) => {
                    if codec::holds_its_version(&write.id, &seen) {
                        return Ok(false);
                    }
                    let replace = |with_body| {
                        script::replace_if_unchanged(
                            &write.key,
                            &seen,
                            &write.value,
                            write.ttl_ms,
                            with_body,
                        )
                    };
                    self.eval(replace).await? == 1
                }
            };
            if replaced {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Checks one write and makes its command's arguments.
    fn prepare_write(
        &self,
        id: &FlagId,
        def: &FlagDefinition,
        ttl: Option<Duration>,
    ) -> Result<Write> {
        if def.id != *id {
            return Err(Error::invalid_flag(format!(
                "set under id `{id}` of a definition whose id is `{}`",
                def.id
            )));
        }
        // A definition the read path would call corrupt is never stored.
        def.validate()?;
        let ttl = ttl.unwrap_or(self.default_ttl);
        if ttl.is_zero() {
            return Err(Error::invalid_config(
                "a TTL of zero would expire the entry at once",
            ));
        }
        Ok(Write {
            id: id.clone(),
            key: self.keys.key(id),
            value: codec::encode(def, self.max_value_bytes)?,
            version: def.version,
            // 0 tells the script: no expiry.
            ttl_ms: ttl_millis(ttl).unwrap_or(0),
        })
    }

    async fn pipeline_writes(
        &self,
        writes: &[Write],
        with_body: bool,
    ) -> Result<Vec<redis::RedisResult<i64>>> {
        let commands: Vec<Keyed> = writes
            .iter()
            .map(|w| Keyed {
                key: w.key.clone().into_bytes(),
                cmd: w.command(with_body),
            })
            .collect();
        Ok(self
            .per_node(&commands)
            .await?
            .into_iter()
            .map(|v| match v {
                // Kept as the server's error, so a NOSCRIPT is recognized.
                Value::ServerError(e) => Err(e.into()),
                v => i64::from_redis_value(v).map_err(Into::into),
            })
            .collect())
    }

    /// Sends one command and converts its reply.
    async fn request<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.round_trip(async |conn| cmd.query_async(conn).await)
            .await
    }

    /// Runs one request, sent by `send` on the link's connection, under the response timeout,
    /// counting it and its failure.
    async fn round_trip<T>(
        &self,
        send: impl AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T> {
        add(&self.counters.round_trips, 1);
        let Leased {
            mut conn,
            generation,
        } = self.link.lease();
        let result = match tokio::time::timeout(self.timeout, send(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("Redis did not answer within {:?}", self.timeout),
            )),
        };
        match &result {
            Err(e) if e.kind() == ErrorKind::Timeout => {
                if self.link.timed_out(generation) {
                    add(&self.counters.reconnects, 1);
                    tracing::warn!(
                        prefix = self.keys.prefix(),
                        "Redis L2 stopped answering on its connection; using a new one"
                    );
                }
            }
            _ => self.link.answered(generation),
        }
        match &result {
            Err(e) if e.is_transient() => {
                // On a cluster, a failure may mean the layout changed: the next batch groups
                // its keys by a map fetched again.
                self.stale_slot_map();
                let counter = if e.kind() == ErrorKind::Timeout {
                    &self.counters.timeouts
                } else {
                    &self.counters.errors
                };
                add(counter, 1);
                if self.reachable.swap(0, Ordering::Relaxed) == 1 {
                    tracing::warn!(error = %e, prefix = self.keys.prefix(), "Redis L2 unreachable; its reads are misses until it is back");
                }
            }
            // A NOSCRIPT is answered by sending the script: part of a write, not a failure.
            Err(e) if write_needs_body(e) => {}
            Err(_) => add(&self.counters.errors, 1),
            Ok(_) => {
                if self.reachable.load(Ordering::Relaxed) == 0
                    && self.reachable.swap(1, Ordering::Relaxed) == 0
                {
                    tracing::info!(prefix = self.keys.prefix(), "Redis L2 reachable again");
                }
            }
        }
        result
    }

    /// Maps a client error to the crate's kinds.
    fn classify(&self, e: redis::RedisError) -> Error {
        use redis::ServerErrorKind as Server;
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            ErrorKind::Unavailable
        } else {
            match e.kind() {
                // A cluster that cannot serve a key now: no node to send it to, a failover or
                // a slot move under way, a node still loading. A retry may help.
                redis::ErrorKind::ClusterConnectionNotFound
                | redis::ErrorKind::Server(
                    Server::ClusterDown
                    | Server::TryAgain
                    | Server::Moved
                    | Server::Ask
                    | Server::MasterDown
                    | Server::BusyLoading,
                ) => ErrorKind::Unavailable,
                _ => ErrorKind::Backend,
            }
        };
        let message = match e.kind() {
            redis::ErrorKind::AuthenticationFailed => format!("Redis refused the credentials: {e}"),
            _ => format!("Redis: {e}"),
        };
        Error::new(kind, message).with_source(e)
    }

    /// Counts and logs a stored value that did not decode; returns the error.
    fn decode_error(&self, e: Error) -> Error {
        add(&self.counters.decode_errors, 1);
        tracing::warn!(error = %e, "corrupt value in Redis L2, treated as a miss");
        e
    }
}

/// The longest TTL sent as `PX`: Redis keeps expiry as milliseconds since the epoch in an `i64`
/// and refuses a `PX` that would overflow it; longer TTLs (such as `Duration::MAX`, the crate's
/// "no expiry") are stored without one.
const MAX_PX_MS: u64 = (i64::MAX as u64) / 2;

/// A TTL for `PX`: whole milliseconds, and at least 1 (0 is an error in Redis, so
/// sub-millisecond TTLs round up); `None` for a TTL beyond [`MAX_PX_MS`]: no expiry.
fn ttl_millis(ttl: Duration) -> Option<u64> {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    (ms <= MAX_PX_MS).then_some(ms)
}

/// `SET key value [PX ttl]` with the rest of the arguments added by the caller.
fn set_command(key: &[u8], value: &[u8], ttl: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if let Some(ms) = ttl_millis(ttl) {
        cmd.arg("PX").arg(ms);
    }
    cmd
}

/// One checked write.
struct Write {
    id: FlagId,
    key: String,
    value: Vec<u8>,
    version: u64,
    ttl_ms: u64,
}

impl Write {
    fn command(&self, with_body: bool) -> redis::Cmd {
        script::guarded_set(
            &self.key,
            self.id.as_str(),
            &self.value,
            self.version,
            self.ttl_ms,
            with_body,
        )
    }
}

/// True when a write failed only because the server did not know the script.
fn write_needs_body(e: &Error) -> bool {
    redis_error(e).is_some_and(script::is_no_script)
}

/// The Redis client's error behind `e`, if it came from one.
fn redis_error(e: &Error) -> Option<&redis::RedisError> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<redis::RedisError>())
}

/// The server's error code behind `e` (`WRONGTYPE`, `NOAUTH`, ...), if the server sent one.
fn redis_code(e: &Error) -> Option<&str> {
    redis_error(e).and_then(redis::RedisError::code)
}

fn stale(id: &FlagId) -> Error {
    Error::new(
        ErrorKind::StaleVersion,
        format!("flag `{id}`: Redis holds a newer version than the write"),
    )
}

fn report<T>(op: &str, result: Result<T>) {
    match result {
        // Transient failures were logged when Redis became unreachable; corrupt values when
        // they were read.
        Err(e) if !e.is_transient() && e.kind() != ErrorKind::Corrupt => {
            tracing::warn!(error = %e, "RedisCache::{op} failed");
        }
        _ => {}
    }
}

impl FlagCache for RedisCache {
    async fn get(&self, flag_id: &FlagId) -> Option<CachedFlag> {
        self.try_get(flag_id).await.unwrap_or(None)
    }

    async fn get_many(&self, flag_ids: &[FlagId]) -> HashMap<FlagId, CachedFlag> {
        self.try_get_many(flag_ids).await.unwrap_or_default()
    }

    async fn set(&self, flag_id: &FlagId, flag: FlagDefinition, ttl: Option<Duration>) {
        report("set", self.try_set(flag_id, &flag, ttl).await);
    }

    async fn set_many(&self, flags: Vec<(FlagId, FlagDefinition)>, ttl: Option<Duration>) {
        report("set_many", self.try_set_many(&flags, ttl).await);
    }

    async fn invalidate(&self, flag_id: &FlagId) {
        report("invalidate", self.try_invalidate(flag_id).await);
    }

    async fn invalidate_many(&self, flag_ids: &[FlagId]) {
        report("invalidate_many", self.try_invalidate_many(flag_ids).await);
    }

    async fn clear(&self) {
        report("clear", self.try_clear().await);
    }

    /// Hits, misses, writes, refusals and removed keys as counted by this client; `size` and
    /// `capacity` are 0 (Redis holds other instances' keys too). See
    /// [`RedisCache::redis_stats`] for errors, timeouts, decode errors and round trips.
    async fn stats(&self) -> CacheStats {
        let s = self.redis_stats();
        CacheStats {
            hits: s.hits,
            misses: s.misses,
            hit_rate: CacheStats::ratio(s.hits, s.misses),
            inserts: s.writes,
            invalidations: s.keys_removed,
            stale_writes_refused: s.stale_writes_refused,
            ..CacheStats::default()
        }
    }
}
