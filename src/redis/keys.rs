//! The Redis key layout, built in this one place: `{prefix}:flag:{id}`.
//!
//! Keeping every key here is what makes a Redis Cluster layout (a hash tag around the prefix,
//! say) a one-file change. Nothing in the crate relies on two flags' keys being in one slot.

use crate::error::{Error, Result};
use crate::flag::FlagId;

/// The longest prefix accepted; keys stay short for Redis and for the wire.
pub(crate) const MAX_PREFIX_LEN: usize = 128;

/// Builds and reads the keys of one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `{prefix}:flag:`, the part every key of this cache starts with.
    head: String,
}

impl Keys {
    /// Checks `prefix`: not empty, at most [`MAX_PREFIX_LEN`] bytes, no glob character
    /// (`* ? [ ] \`) that would let `clear`'s `SCAN MATCH` reach another namespace, and no
    /// whitespace or control character.
    pub(crate) fn new(prefix: &str) -> Result<Self> {
        if prefix.is_empty() {
            return Err(Error::invalid_config("the Redis key prefix is empty"));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::invalid_config(format!(
                "the Redis key prefix is {} bytes long; the limit is {MAX_PREFIX_LEN}",
                prefix.len()
            )));
        }
        if let Some(c) = prefix.chars().find(|c| {
            matches!(c, '*' | '?' | '[' | ']' | '\\') || c.is_whitespace() || c.is_control()
        }) {
            return Err(Error::invalid_config(format!(
                "the Redis key prefix {prefix:?} contains {c:?}: glob characters, whitespace and \
                 control characters are not allowed (clear matches keys by pattern)"
            )));
        }
        Ok(Self {
            head: format!("{prefix}:flag:"),
        })
    }

    /// The key of `id`.
    pub(crate) fn key(&self, id: &FlagId) -> String {
        let mut key = String::with_capacity(self.head.len() + id.as_str().len());
        key.push_str(&self.head);
        key.push_str(id.as_str());
        key
    }

    /// The `SCAN MATCH` pattern covering every key of this prefix, and nothing else (the
    /// prefix has no glob characters, and flag ids have none either).
    pub(crate) fn pattern(&self) -> String {
        format!("{}*", self.head)
    }

    /// Whether `key` (as `SCAN` returns it) is one of this prefix's: `{prefix}:flag:` and a
    /// rest without `:` (ids have none, so a longer rest is a key of a prefix nested under this
    /// one, such as `{prefix}:flag:x:flag:y`). Returns the rest: an id when it is UTF-8.
    pub(crate) fn own<'k>(&self, key: &'k [u8]) -> Option<std::result::Result<&'k str, ()>> {
        let rest = key.strip_prefix(self.head.as_bytes())?;
        if rest.is_empty() || rest.contains(&b':') {
            return None;
        }
        Some(std::str::from_utf8(rest).map_err(|_| ()))
    }

    /// The prefix the cache was built with.
    pub(crate) fn prefix(&self) -> &str {
        &self.head[..self.head.len() - ":flag:".len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_seed_layout() {
        let keys = Keys::new("tachikoma").unwrap();
        assert_eq!(
            keys.key(&FlagId::new("checkout.new-flow")),
            "tachikoma:flag:checkout.new-flow"
        );
        assert_eq!(keys.pattern(), "tachikoma:flag:*");
        assert_eq!(keys.prefix(), "tachikoma");
    }

    #[test]
    fn prefixes_that_could_widen_the_clear_pattern_are_refused() {
        for bad in [
            "",
            "a*",
            "a?",
            "a[b]",
            "a]",
            "a\\b",
            "a b",
            "a\nb",
            &"x".repeat(129),
        ] {
            let err = Keys::new(bad).unwrap_err();
            assert!(err.is_config(), "{bad:?}: {err}");
        }
        assert!(Keys::new("team-a:prod.v2").is_ok());
    }
}

#[cfg(test)]
mod own_tests {
    use super::Keys;

    #[test]
    fn a_prefix_owns_its_keys_only() {
        let keys = Keys::new("acc").unwrap();
        assert_eq!(keys.own(b"acc:flag:f"), Some(Ok("f")));
        assert_eq!(
            keys.own(b"acc:flag:x:flag:y"),
            None,
            "a nested prefix's key"
        );
        assert_eq!(keys.own(b"acc:flagx"), None);
        assert_eq!(keys.own(b"acc:flag:"), None);
        assert_eq!(keys.own(b"acc:flag:\xff"), Some(Err(())), "ours, not an id");
        let nested = Keys::new("acc:flag:x").unwrap();
        assert_eq!(nested.own(b"acc:flag:x:flag:y"), Some(Ok("y")));
    }
}
