//! Leases on Redis: one key per lease, `{prefix}:lease:{name}`, holding its holder's name and
//! expiring with the lease. Taken with `SET NX` semantics and renewed only by its holder, both
//! in one script, so a holder whose lease expired and was taken by another cannot renew it.
//! Beside them, the fleet's sentinel, `{prefix}:sentinel`, whose absence says Redis lost its
//! content.

use super::RedisCache;
use crate::error::Result;
use std::time::Duration;

/// `KEYS[1]` the lease's key; `ARGV[1]` the holder, `ARGV[2]` the TTL in milliseconds. Returns
/// 1 when `ARGV[1]` holds the lease after the call.
const TAKE_OR_RENEW: &str = r"
local held = redis.call('GET', KEYS[1])
if held == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

impl RedisCache {
    /// The key of the fleet's sentinel, `{prefix}:sentinel`: its absence says Redis lost its
    /// content.
    pub(crate) fn sentinel_key(&self) -> String {
        format!("{}:sentinel", self.prefix())
    }

    /// The key of the lease `name`.
    pub(crate) fn lease_key(&self, name: &str) -> String {
        format!("{}:lease:{name}", self.prefix())
    }

    /// Takes the lease `name` for `holder` for `ttl` (at least a millisecond), or renews it
    /// if `holder` holds it; true when `holder` holds it after the call. One round trip: the
    /// script is sent whole (`EVAL`), as leases are renewed every few seconds at most.
    pub(crate) async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self
            .request(
                redis::cmd("EVAL")
                    .arg(TAKE_OR_RENEW)
                    .arg(1)
                    .arg(self.lease_key(name))
                    .arg(holder)
                    .arg(ttl_ms),
            )
            .await?;
        Ok(held == 1)
    }
}
