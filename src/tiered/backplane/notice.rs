//! A backplane notice: what a write did, as other instances need to know it (ids and
//! versions, never values), as JSON.

use crate::flag::FlagId;
use serde::{Deserialize, Serialize};

/// Notices carry at most this many ids; larger batches are split. With ids of at most 256
/// bytes a notice stays under about 140 KiB.
pub(crate) const IDS_PER_NOTICE: usize = 500;

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
    /// The notices announcing `flags` (ids and versions), at most `IDS_PER_NOTICE` ids each; a
    /// `clear` is one notice without ids.
    pub(crate) fn encode_all(
        origin: &str,
        action: Action,
        flags: &[(FlagId, u64)],
    ) -> Vec<Vec<u8>> {
        let chunks: Vec<&[(FlagId, u64)]> = if flags.is_empty() {
            vec![&[]]
        } else {
            flags.chunks(IDS_PER_NOTICE).collect()
        };
        chunks
            .into_iter()
            .map(|chunk| Notice {
                v: 1,
                origin: origin.to_owned(),
                action,
                ids: chunk.iter().map(|(id, _)| id.as_str().to_owned()).collect(),
                versions: match action {
                    Action::Set => chunk.iter().map(|&(_, v)| v).collect(),
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
        let payloads = Notice::encode_all(&origin, Action::Set, &flags);
        assert_eq!(payloads.len(), 1);
        let json = String::from_utf8(payloads[0].clone()).unwrap();
        assert!(json.contains(r#""action":"set""#), "{json}");
        let back = Notice::decode(&payloads[0]).unwrap();
        assert_eq!((back.action, back.versions), (Action::Set, vec![7]));
        assert_ne!(new_origin(), new_origin());
        assert!(Notice::decode(br#"{"v":2,"origin":"x","action":"clear"}"#).is_none());
    }

    #[test]
    fn large_batches_are_split() {
        let flags: Vec<(FlagId, u64)> = (0..1001)
            .map(|i| (FlagId::new(format!("f{i}")), 1))
            .collect();
        assert_eq!(Notice::encode_all("o", Action::Set, &flags).len(), 3);
        assert_eq!(Notice::encode_all("o", Action::Clear, &[]).len(), 1);
    }
}
