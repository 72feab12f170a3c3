//! The version guard: writes go through a Lua script that refuses to replace a stored
//! definition of a higher version, atomically on the server.
//!
//! The guard honours a stored version only where the reader would accept the stored value as
//! far as the script can tell: JSON that decodes to an object whose `id` is the flag's and whose
//! `version` is an integer in `u64` range, written as such (not `1e300`, `"5"` or 2^64). Versions
//! are compared exactly as decimal strings (length, then bytes), not as Lua's doubles; a member
//! name spelled with escapes is read as the name it spells. What the script cannot check (the
//! rest of the definition's validation) the client settles after a refusal: it reads the stored
//! value, and overwrites it, if it is still the same bytes ([`REPLACE_IF_UNCHANGED`]), unless
//! it holds its version (a valid definition, or a newer build's: `codec::holds_its_version`).
//!
//! The scripts are sent by SHA (`EVALSHA`); a server that does not know one (first use, or after
//! a restart emptied its script cache) answers `NOSCRIPT`, and the call is sent once more with
//! the body (`EVAL`), which also caches it.

use redis::Cmd;
use std::sync::LazyLock;

/// `KEYS[1]` the flag's key; `ARGV[1]` the definition's JSON, `ARGV[2]` its version in decimal,
/// `ARGV[3]` the TTL in milliseconds (0: no expiry), `ARGV[4]` the flag's id. Returns 1 when
/// stored, 0 when a higher version of the flag is stored.
pub(crate) const GUARDED_SET: &str = r#"
local function version_token(s)
  local i = string.find(s, '[^ \t\r\n]')
  if not i or string.byte(s, i) ~= 123 then return nil end
  i = i + 1
  local function after_string(j)
    j = j + 1
    while true do
      local k = string.find(s, '["\\]', j)
      if not k then return nil end
      if string.byte(s, k) == 34 then return k + 1 end
      j = k + 2
    end
  end
  local function after_value(j)
    local c = string.byte(s, j)
    if c == 34 then return after_string(j) end
    if c == 123 or c == 91 then
      local depth = 0
      while true do
        local k = string.find(s, '[%[%]{}"]', j)
        if not k then return nil end
        local d = string.byte(s, k)
        if d == 34 then
          j = after_string(k)
          if not j then return nil end
        else
          if d == 123 or d == 91 then depth = depth + 1 else depth = depth - 1 end
          j = k + 1
          if depth == 0 then return j end
        end
      end
    end
    return string.find(s, '[,}%]%s]', j)
  end
  while true do
    i = string.find(s, '[^ \t\r\n]', i)
    if not i or string.byte(s, i) ~= 34 then return nil end
    local key_end = after_string(i)
    if not key_end then return nil end
    local key = string.sub(s, i + 1, key_end - 2)
    if string.find(key, '\\', 1, true) then
      -- An escaped name (`"vers\u0069on"`) is the name it spells, to cjson as to serde.
      local ok, decoded = pcall(cjson.decode, string.sub(s, i, key_end - 1))
      if not ok then return nil end
      key = decoded
    end
    i = string.find(s, '[^ \t\r\n]', key_end)
    if not i or string.byte(s, i) ~= 58 then return nil end
    i = string.find(s, '[^ \t\r\n]', i + 1)
    if not i then return nil end
    local value_end = after_value(i)
    if not value_end then return nil end
    if key == 'version' then return string.sub(s, i, value_end - 1) end
    i = string.find(s, '[^ \t\r\n]', value_end)
    if not i or string.byte(s, i) ~= 44 then return nil end
    i = i + 1
  end
end
local function as_u64(token)
  if not token or not string.find(token, '^%d+$') then return nil end
  if #token > 1 and string.byte(token, 1) == 48 then return nil end
  if #token > 20 or (#token == 20 and token > '18446744073709551615') then return nil end
  return token
end
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'string' then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and stored['id'] == ARGV[4] then
    local version
    if stored['version'] == nil then
      -- No member: the reader's default.
      version = '1'
    elseif type(stored['version']) == 'number' then
      -- Fast path: the first `"version":` member, when it agrees exactly with what cjson
      -- decoded (it is the top-level one for this crate's encoding). Up to 15 digits a double
      -- holds the number exactly, so equal doubles are equal versions; longer tokens, and
      -- anything else, go to the scanner.
      local _, _, token = string.find(current, '"version"%s*:%s*(%d+)[%s,}]')
      if not token or #token > 15 or tonumber(token) ~= stored['version'] then
        token = version_token(current)
      end
      version = as_u64(token)
    end
    if version and (#version > #ARGV[2] or (#version == #ARGV[2] and version > ARGV[2])) then
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
"#;

/// `KEYS[1]` the key; `ARGV[1]` the value the client read (and found corrupt), `ARGV[2]` the new
/// JSON, `ARGV[3]` the TTL in milliseconds (0: no expiry). Stores only if the key still holds
/// exactly what was read; returns 1 when stored.
pub(crate) const REPLACE_IF_UNCHANGED: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
";

static GUARD: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GUARDED_SET));
static REPLACE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(REPLACE_IF_UNCHANGED));

/// `EVALSHA` of `script` (`with_body` false) or `EVAL` of `body`.
fn call(script: &redis::Script, body: &str, with_body: bool) -> Cmd {
    let mut cmd = if with_body {
        let mut c = redis::cmd("EVAL");
        c.arg(body);
        c
    } else {
        let mut c = redis::cmd("EVALSHA");
        c.arg(script.get_hash());
        c
    };
    cmd.arg(1);
    cmd
}

/// One guarded write.
pub(crate) fn guarded_set(
    key: &str,
    id: &str,
    value: &[u8],
    version: u64,
    ttl_ms: u64,
    with_body: bool,
) -> Cmd {
    let mut cmd = call(&GUARD, GUARDED_SET, with_body);
    cmd.arg(key)
        .arg(value)
        .arg(version.to_string())
        .arg(ttl_ms)
        .arg(id);
    cmd
}

/// One replacement of a value the reader found corrupt, if it is still `seen`.
pub(crate) fn replace_if_unchanged(
    key: &str,
    seen: &[u8],
    value: &[u8],
    ttl_ms: u64,
    with_body: bool,
) -> Cmd {
    let mut cmd = call(&REPLACE, REPLACE_IF_UNCHANGED, with_body);
    cmd.arg(key).arg(seen).arg(value).arg(ttl_ms);
    cmd
}

/// True when the server did not know the script.
pub(crate) fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
