//! A backplane notice: what a write did, as other instances need to know it (ids and
//! versions, never values), as JSON.

use crate::flag::{FlagId, MAX_ID_LEN};
use serde::{Deserialize, Serialize};

/// Notices carry at most this many ids; larger batches are split.
pub(crate) const IDS_PER_NOTICE: usize = 500;
/// Room for a notice's fields besides its ids and versions (`v`, `origin`, `action`, the
/// punctuation), with a margin.
const NOTICE_OVERHEAD: usize = 256;
/// What one id adds to a notice at most besides its own bytes: its quotes and comma, and a
/// version of up to 20 digits with its comma.
const PER_ID_OVERHEAD: usize = 3 + 21;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Set,
    Invalidate,
    Clear,
}

/// One notice, as JSON on the channel.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Notice {
    /// The format version: 1.
    pub(crate) v: u8,
    /// The publishing instance.
    pub(crate) origin: String,
    pub(crate) action: Action,
    #[serde(default)]
    pub(crate) ids: Vec<String>,
    /// For `set`, each id's new version.
    #[serde(default)]
    pub(crate) versions: Vec<u64>,
}

impl Notice {
    /// The notices announcing `flags` (ids and versions): at most `IDS_PER_NOTICE` ids and
    /// `max_bytes` bytes each, so every receiver with the same limit reads them; a `clear` is
    /// one notice without ids. Ids longer than any flag id can be are left out: no cache holds
    /// a definition under them.
    pub(crate) fn encode_all(
        origin: &str,
        action: Action,
        flags: &[(FlagId, u64)],
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        let budget = max_bytes.saturating_sub(NOTICE_OVERHEAD + origin.len());
        let mut chunks: Vec<Vec<&(FlagId, u64)>> = vec![Vec::new()];
        let mut used = 0;
        for flag in flags
            .iter()
            .filter(|(id, _)| id.as_str().len() <= MAX_ID_LEN)
        {
            let cost = flag.0.as_str().len() + PER_ID_OVERHEAD;
            let full = chunks.last().is_some_and(|c| c.len() == IDS_PER_NOTICE);
            if full || (used + cost > budget && used > 0) {
                chunks.push(Vec::new());
                used = 0;
            }
            used += cost;
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(flag);
            }
        }
        let announces_nothing = chunks.iter().all(Vec::is_empty);
        if announces_nothing && action != Action::Clear {
            return Vec::new();
        }
        chunks
            .into_iter()
            .filter(|chunk| !chunk.is_empty() || action == Action::Clear)
            .map(|chunk| Notice {
                v: 1,
                origin: origin.to_owned(),
                action,
                ids: chunk.iter().map(|(id, _)| id.as_str().to_owned()).collect(),
                versions: match action {
                    Action::Set => chunk.iter().map(|&&(_, v)| v).collect(),
                    Action::Invalidate | Action::Clear => Vec::new(),
                },
            })
            .map(|notice| serde_json::to_vec(&notice).unwrap_or_default())
            .collect()
    }

    /// A notice of format 1, or `None` for anything else.
    pub(crate) fn decode(payload: &[u8]) -> Option<Self> {
        match serde_json::from_slice(payload) {
            Ok(n @ Notice { v: 1, .. }) => Some(n),
            Ok(_) | Err(_) => None,
        }
    }
}

/// A random instance id (the standard library's per-process random hash keys, mixed with the
/// time), so an instance can tell its own notices from others'.
pub(crate) fn new_origin() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let origin = new_origin();
        let flags = [(FlagId::new("a"), 7)];
        let payloads = Notice::encode_all(&origin, Action::Set, &flags, 1 << 18);
        assert_eq!(payloads.len(), 1);
        let json = String::from_utf8(payloads[0].clone()).unwrap();
        assert!(json.contains(r#""action":"set""#), "{json}");
        let back = Notice::decode(&payloads[0]).unwrap();
        assert_eq!((back.action, back.versions), (Action::Set, vec![7]));
        assert_ne!(new_origin(), new_origin());
        assert!(Notice::decode(br#"{"v":2,"origin":"x","action":"clear"}"#).is_none());
    }

    #[test]
    fn large_batches_are_split_by_count_and_by_bytes() {
        let flags: Vec<(FlagId, u64)> = (0..1001)
            .map(|i| (FlagId::new(format!("f{i}")), u64::MAX))
            .collect();
        assert_eq!(
            Notice::encode_all("o", Action::Set, &flags, 1 << 18).len(),
            3
        );
        assert_eq!(
            Notice::encode_all("o", Action::Clear, &[], 1 << 18).len(),
            1
        );
        let long: Vec<(FlagId, u64)> = (0..500)
            .map(|i| (FlagId::new(format!("{i:0>256}")), u64::MAX))
            .collect();
        for limit in [4096, 20_000, 1 << 18] {
            let notices = Notice::encode_all("origin", Action::Set, &long, limit);
            let ids: usize = notices
                .iter()
                .map(|n| Notice::decode(n).unwrap().ids.len())
                .sum();
            assert_eq!(ids, 500, "every id announced");
            assert!(notices.iter().all(|n| n.len() <= limit), "within {limit}");
        }
        // An id no flag can have is left out, the rest announced.
        let odd = [
            (FlagId::new("x".repeat(300 * 1024)), 1),
            (FlagId::new("f"), 2),
        ];
        let notices = Notice::encode_all("o", Action::Invalidate, &odd, 1 << 18);
        assert_eq!(notices.len(), 1);
        assert_eq!(Notice::decode(&notices[0]).unwrap().ids, ["f"]);
        assert!(Notice::encode_all("o", Action::Set, &odd[..1], 1 << 18).is_empty());
    }
}
