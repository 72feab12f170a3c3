//! [`RedisCacheBuilder`]: the connection and policy settings of a [`RedisCache`], checked at
//! `build()`.

use super::RedisCache;
use super::codec::DEFAULT_MAX_VALUE_BYTES;
use super::conn::{ClusterSeeds, Target};
use super::keys::Keys;
use super::link::Link;
use crate::error::{Error, Result};
use redis::aio::ConnectionManagerConfig;
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::io::tcp::TcpSettings;
use redis::{ConnectionInfo, IntoConnectionInfo};
use std::time::Duration;

/// Default bound on one request: an L2 read that takes longer is a miss.
pub(crate) const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(50);
/// Default bound on one connection attempt (made in the background of the calls).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// Default TTL of stored definitions.
pub(crate) const DEFAULT_L2_TTL: Duration = Duration::from_secs(10 * 60);
/// Default number of flags whose last decoded definition is remembered.
pub(crate) const DEFAULT_DECODE_MEMO: usize = 10_000;
/// Default pause after which a quiet backplane subscription is pinged (and the most a ping
/// may take).
pub(crate) const DEFAULT_HEALTH_CHECK: Duration = Duration::from_secs(1);
/// Default number of keys `clear` asks `SCAN` for (and removes with one `UNLINK`) per batch.
pub(crate) const DEFAULT_SCAN_BATCH: usize = 500;

/// Configures a [`RedisCache`]; see [`RedisCache::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct RedisCacheBuilder {
    /// One node's URL, or a cluster's seed nodes.
    urls: Vec<String>,
    cluster: bool,
    prefix: String,
    default_ttl: Duration,
    response_timeout: Duration,
    connect_timeout: Duration,
    max_value_bytes: usize,
    scan_batch: usize,
    decode_memo: usize,
    health_check_interval: Duration,
    #[cfg(feature = "redis-tls")]
    tls_root: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCacheBuilder")
            .field(
                "urls",
                &self.urls.iter().map(|u| redacted(u)).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("default_ttl", &self.default_ttl)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("scan_batch", &self.scan_batch)
            .field("decode_memo", &self.decode_memo)
            .field("health_check_interval", &self.health_check_interval)
            .finish_non_exhaustive()
    }
}

/// `url` with its password replaced by `***`, for anything that may be printed: the one in
/// the user information (`scheme://user:password@host`) and a `pass=` query parameter (how a
/// Unix socket URL carries it).
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let rest = match rest.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    match query {
        None => format!("{scheme}://{rest}"),
        Some(query) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key @ ("pass" | "password"), _)) => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{scheme}://{rest}?{}", query.join("&"))
        }
    }
}

impl RedisCacheBuilder {
    pub(super) fn new(url: &str) -> Self {
        Self::with_urls(vec![url.to_owned()], false)
    }

    pub(super) fn cluster(seeds: Vec<String>) -> Self {
        Self::with_urls(seeds, true)
    }

    fn with_urls(urls: Vec<String>, cluster: bool) -> Self {
        Self {
            urls,
            cluster,
            prefix: "flagcache".to_owned(),
            default_ttl: DEFAULT_L2_TTL,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            scan_batch: DEFAULT_SCAN_BATCH,
            decode_memo: DEFAULT_DECODE_MEMO,
            health_check_interval: DEFAULT_HEALTH_CHECK,
            #[cfg(feature = "redis-tls")]
            tls_root: None,
        }
    }

    /// The key prefix: keys are `{prefix}:flag:{id}` (default `flagcache`). No glob characters
    /// (`* ? [ ] \`), whitespace or control characters; at most 128 bytes.
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// TTL of a write that gives none (default 10 minutes). Not zero.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The most one request may take, waiting for a connection included (default 50 ms):
    /// past it the call fails with a timeout (a miss through [`FlagCache`](crate::FlagCache)).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The most one connection attempt may take (default 100 ms). Attempts run while calls
    /// wait at most their response timeout; a broken connection is re-made on the next call.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest value read or written (default 256 KiB); a larger stored value is a
    /// decode error, a larger definition is refused before it is sent.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Keys per `SCAN`/`UNLINK` batch of [`RedisCache::try_clear`] (default 500).
    pub fn scan_batch(mut self, keys: usize) -> Self {
        self.scan_batch = keys;
        self
    }

    /// How many flags' last decoded definitions to remember (default 10 000; 0 turns it off).
    /// A read that returns the bytes a flag decoded from last time reuses that definition
    /// instead of decoding the JSON again (most L2 reads are of unchanged flags). Costs about
    /// the stored value's size plus 100 bytes per remembered flag.
    pub fn decode_memo(mut self, flags: usize) -> Self {
        self.decode_memo = flags;
        self
    }

    /// How long a backplane subscription may be quiet before it is checked with a `PING` (and
    /// how long the `PING` may take), default 1 s: a connection that stays open but stops
    /// answering ends the subscription, which is then made again on a new connection.
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// For a `rediss://` URL: trust this CA certificate (PEM) instead of the platform's root
    /// certificates (a private CA, say).
    #[cfg(feature = "redis-tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root = Some(pem.into());
        self
    }

    /// Checks the settings and creates the cache. It connects lazily, on the first call, so
    /// building succeeds while Redis is down (calls fail fast until it is back); use
    /// [`RedisCache::try_ping`] to check the connection and credentials at start-up.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a URL that does not
    /// parse (or asks for TLS without the `redis-tls` feature), a bad prefix, a zero TTL,
    /// timeout, size limit or batch, or when called outside a tokio runtime.
    pub fn build(self) -> Result<RedisCache> {
        let keys = Keys::new(&self.prefix)?;
        for (what, d) in [
            ("default_ttl", self.default_ttl),
            ("response_timeout", self.response_timeout),
            ("connect_timeout", self.connect_timeout),
            ("health_check_interval", self.health_check_interval),
        ] {
            if d.is_zero() {
                return Err(Error::invalid_config(format!("{what} is zero")));
            }
        }
        if self.max_value_bytes == 0 || self.scan_batch == 0 {
            return Err(Error::invalid_config(
                "max_value_bytes and scan_batch must be above zero",
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::invalid_config(
                "RedisCache must be built inside a tokio runtime (its connection runs on it)",
            ));
        }
        let target = if self.cluster {
            self.cluster_target()?
        } else {
            self.node_target()?
        };
        let link = Link::new(target, self.response_timeout)?;
        Ok(RedisCache::from_parts(
            link,
            keys,
            self.default_ttl,
            self.response_timeout,
            self.max_value_bytes,
            self.scan_batch,
            self.decode_memo,
            self.health_check_interval,
        ))
    }
}

impl RedisCacheBuilder {
    fn connection_infos(&self) -> Result<Vec<ConnectionInfo>> {
        if self.urls.is_empty() {
            return Err(Error::invalid_config(
                "a Redis Cluster needs at least one seed node",
            ));
        }
        self.urls
            .iter()
            .map(|url| {
                url.as_str()
                    .into_connection_info()
                    .map(|info| info.set_tcp_settings(tcp_settings()))
                    .map_err(|e| {
                        Error::invalid_config(format!("bad Redis URL {}: {e}", redacted(url)))
                            .with_source(e)
                    })
            })
            .collect()
    }

    fn node_target(&self) -> Result<Target> {
        let info = self.connection_infos()?.remove(0);
        #[cfg(feature = "redis-tls")]
        let client = match &self.tls_root {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        };
        #[cfg(not(feature = "redis-tls"))]
        let client = redis::Client::open(info);
        let client = client.map_err(|e| {
            Error::invalid_config(format!("bad Redis URL or TLS settings: {e}")).with_source(e)
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            // One attempt per reconnect: a call never waits out a backoff; the next call after
            // a failed attempt starts another.
            .set_number_of_retries(0);
        Ok(Target::Node(client, config))
    }

    fn cluster_target(&self) -> Result<Target> {
        let infos = self.connection_infos()?;
        if let Some((url, _)) = self
            .urls
            .iter()
            .zip(&infos)
            .find(|(_, info)| info.redis_settings().db() != 0)
        {
            return Err(Error::invalid_config(format!(
                "{}: a Redis Cluster has database 0 only",
                redacted(url)
            )));
        }
        let (connect_timeout, response_timeout) = (self.connect_timeout, self.response_timeout);
        #[cfg(feature = "redis-tls")]
        let tls_root = self.tls_root.clone();
        let make = move || {
            let builder = ClusterClientBuilder::new(infos.clone())
                .connection_timeout(connect_timeout)
                .response_timeout(response_timeout)
                .tcp_settings(tcp_settings())
                // A redirect (`MOVED`, `ASK`) is followed at once; a failed node is retried
                // after a short pause, while the client fetches the slot map again. A call's
                // own response timeout bounds all of it.
                .retries(CLUSTER_RETRIES)
                .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
                .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS);
            #[cfg(feature = "redis-tls")]
            let builder = match &tls_root {
                Some(pem) => builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                }),
                None => builder,
            };
            builder
        };
        let client = make().build().map_err(|e| {
            Error::invalid_config(format!("bad Redis Cluster settings: {e}")).with_source(e)
        })?;
        let config = ClusterConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.response_timeout);
        Ok(Target::Cluster(
            client,
            config,
            ClusterSeeds {
                make: Box::new(make),
            },
        ))
    }
}

/// Attempts of one cluster request beyond the first (redirects and failed nodes).
const CLUSTER_RETRIES: u32 = 3;
/// The shortest and longest pause before retrying a failed cluster node, in milliseconds.
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 5;
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 100;

/// `TCP_NODELAY` (requests are small and latency-bound), keepalive probes after 10 s of
/// silence, and (on Linux) a 15 s user timeout: a peer the kernel can see is gone closes the
/// connection, and the connection manager makes a new one.
fn tcp_settings() -> TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5));
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(Duration::from_secs(15));
    settings
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redacted("rediss://u:p@ss@h"), "rediss://u:***@h");
        assert_eq!(redacted("redis://u@h"), "redis://u@h");
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
        assert_eq!(redacted("not a url"), "not a url");
        assert_eq!(
            redacted("unix:///s.sock?user=u&pass=pw&db=1"),
            "unix:///s.sock?user=u&pass=***&db=1"
        );
        assert_eq!(
            redacted("redis+unix:///s.sock?pass=pw"),
            "redis+unix:///s.sock?pass=***"
        );
    }
}
