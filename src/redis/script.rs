//! The version guard: writes go through a Lua script that refuses to replace a stored
//! definition of a higher version, atomically on the server.
//!
//! The script is sent by SHA (`EVALSHA`); a server that does not know it (first use, or after
//! a restart emptied its script cache) answers `NOSCRIPT`, and the write is sent once more with
//! the body (`EVAL`), which also caches it. Versions are compared as Lua numbers (doubles):
//! exact up to 2^53.

use redis::Cmd;
use std::sync::LazyLock;

/// `KEYS[1]` the flag's key; `ARGV[1]` the definition's JSON, `ARGV[2]` its version,
/// `ARGV[3]` the TTL in milliseconds (0: no expiry). Returns 1 when stored, 0 when a higher
/// version is stored.
/// A stored value that does not decode, or a key of another type, is overwritten.
pub(crate) const GUARDED_SET: &str = r"
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'string' then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' then
    local version = tonumber(stored['version'])
    if version and version > tonumber(ARGV[2]) then
      return 0
    end
  end
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
return 1
";

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GUARDED_SET));

/// One guarded write, as `EVALSHA` (`with_body` false) or `EVAL`.
pub(crate) fn guarded_set(
    key: &str,
    value: &[u8],
    version: u64,
    ttl_ms: u64,
    with_body: bool,
) -> Cmd {
    let mut cmd = if with_body {
        let mut c = redis::cmd("EVAL");
        c.arg(GUARDED_SET);
        c
    } else {
        let mut c = redis::cmd("EVALSHA");
        c.arg(SCRIPT.get_hash());
        c
    };
    cmd.arg(1).arg(key).arg(value).arg(version).arg(ttl_ms);
    cmd
}

/// True when the server did not know the script.
pub(crate) fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
