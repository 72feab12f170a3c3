//! Which primary of a Redis Cluster serves which keys: the slot ranges of `CLUSTER SLOTS`,
//! so that a batch goes out as one pipeline per primary instead of one request per slot.
//!
//! The map is only a grouping hint. Each group is sent to the node the client's own slot map
//! names for the group's first key; a key that moved since gets `MOVED`, and the caller sends
//! that group again key by key (each request then follows its redirect) and marks the map
//! stale, so the next batch fetches it again.

use crate::error::{Error, ErrorKind, Result};
use crate::sync::{Arc, Mutex, lock};
use redis::Value;
use redis::cluster_routing::{Route, SlotAddr};

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16_384;

/// The slot of `key`: CRC-16/XMODEM of the key, or of its hash tag (the bytes between the
/// first `{` and the next `}`, when not empty), modulo 16 384, as Redis Cluster computes it.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % SLOTS
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The route to the primary serving `slot` (a slot of `slot_of`, always in range).
pub(crate) fn primary_route(slot: u16) -> Route {
    Route::new(slot % SLOTS, SlotAddr::Master)
}

/// Slot ranges and the primary (by index) serving each.
#[derive(Debug, Default)]
pub(crate) struct SlotMap {
    /// `(first slot, last slot, primary)`, sorted by first slot.
    ranges: Vec<(u16, u16, usize)>,
    /// One slot of each primary, which routes a request to it.
    primaries: Vec<u16>,
    /// Each primary's address (host, port), as the cluster announces it.
    addresses: Vec<(String, u16)>,
    /// Each primary's node id.
    ids: Vec<String>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply.
    ///
    /// # Errors
    /// [`ErrorKind::Backend`] for a reply of another shape.
    pub(crate) fn from_reply(reply: &Value) -> Result<Self> {
        let bad = |what: &str| Error::new(ErrorKind::Backend, format!("CLUSTER SLOTS: {what}"));
        let Value::Array(entries) = reply else {
            return Err(bad("not an array"));
        };
        let mut map = SlotMap::default();
        for entry in entries {
            let Value::Array(fields) = entry else {
                return Err(bad("an entry is not an array"));
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(node))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(bad("an entry lacks its range or primary"));
            };
            let (Ok(first), Ok(last)) = (u16::try_from(*first), u16::try_from(*last)) else {
                return Err(bad("a slot out of range"));
            };
            if first > last || last >= SLOTS {
                return Err(bad("a slot out of range"));
            }
            let address = match (node.first(), node.get(1)) {
                (Some(Value::BulkString(host)), Some(Value::Int(port))) => {
                    let port = u16::try_from(*port).map_err(|_| bad("a port out of range"))?;
                    (String::from_utf8_lossy(host).into_owned(), port)
                }
                _ => return Err(bad("a primary without host and port")),
            };
            let id = match node.get(2) {
                Some(Value::BulkString(id)) => String::from_utf8_lossy(id).into_owned(),
                _ => String::new(),
            };
            let primary = match map.addresses.iter().position(|a| *a == address) {
                Some(i) => i,
                None => {
                    map.addresses.push(address);
                    map.ids.push(id);
                    map.primaries.push(first);
                    map.addresses.len() - 1
                }
            };
            map.ranges.push((first, last, primary));
        }
        map.ranges.sort_unstable_by_key(|r| r.0);
        Ok(map)
    }

    /// The primary serving `slot`, if the map covers it.
    pub(crate) fn primary_of(&self, slot: u16) -> Option<usize> {
        let i = self
            .ranges
            .partition_point(|r| r.0 <= slot)
            .checked_sub(1)?;
        let (_, last, primary) = self.ranges[i];
        (slot <= last).then_some(primary)
    }

    /// One slot of each primary: a route to every primary.
    pub(crate) fn primaries(&self) -> &[u16] {
        &self.primaries
    }

    /// The slot ranges with their primaries' addresses, in slot order: the map's content,
    /// whichever node it was asked of (nodes list the ranges in an order of their own).
    pub(crate) fn ranges(&self) -> Vec<(u16, u16, (String, u16))> {
        self.ranges
            .iter()
            .map(|&(first, last, p)| (first, last, self.addresses[p].clone()))
            .collect()
    }

    /// The address of the primary at `index` (as in [`primaries`](Self::primaries)).
    pub(crate) fn address(&self, index: usize) -> (String, u16) {
        self.addresses[index].clone()
    }

    /// The index (as in [`primaries`](Self::primaries)) of the primary whose node id is `id`.
    pub(crate) fn primary_with_id(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|i| i == id)
    }

    /// The address (host, port) of the primary serving `slot`.
    pub(crate) fn address_of(&self, slot: u16) -> Option<(&str, u16)> {
        let (host, port) = &self.addresses[self.primary_of(slot)?];
        Some((host, *port))
    }
}

/// The slot map a cluster cache holds, fetched when missing or marked stale.
#[derive(Default)]
pub(crate) struct Shards {
    map: Mutex<Option<Arc<SlotMap>>>,
}

impl Shards {
    /// The current map, if there is one that is not stale.
    pub(crate) fn current(&self) -> Option<Arc<SlotMap>> {
        lock(&self.map).clone()
    }

    pub(crate) fn set(&self, map: SlotMap) -> Arc<SlotMap> {
        let map = Arc::new(map);
        *lock(&self.map) = Some(Arc::clone(&map));
        map
    }

    /// A key moved or a node failed: fetch the map again before the next batch.
    pub(crate) fn mark_stale(&self) {
        *lock(&self.map) = None;
    }
}

/// Indexes of `keys` grouped by the primary serving them (by `map`); keys of slots the map does
/// not cover form groups of their own, one per key.
pub(crate) fn group_by_primary<K: AsRef<[u8]>>(map: &SlotMap, keys: &[K]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); map.primaries.len()];
    let mut strays = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match map.primary_of(slot_of(key.as_ref())) {
            Some(p) => groups[p].push(i),
            None => strays.push(vec![i]),
        }
    }
    groups.retain(|g| !g.is_empty());
    groups.extend(strays);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.into()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(first: i64, last: i64, primary: Value) -> Value {
        Value::Array(vec![Value::Int(first), Value::Int(last), primary])
    }

    #[test]
    fn a_cluster_slots_reply_maps_every_slot_to_its_primary() {
        let reply = Value::Array(vec![
            range(5461, 10922, node("127.0.0.1", 7001)),
            range(0, 5460, node("127.0.0.1", 7000)),
            range(10923, 16000, node("127.0.0.1", 7002)),
            range(16001, 16383, node("127.0.0.1", 7000)),
        ]);
        let map = SlotMap::from_reply(&reply).unwrap();
        assert_eq!(map.primaries().len(), 3);
        let p0 = map.primary_of(0).unwrap();
        assert_eq!(map.primary_of(5460), Some(p0));
        assert_eq!(map.primary_of(16383), Some(p0));
        assert_ne!(map.primary_of(5461), Some(p0));
        assert_ne!(map.primary_of(10923), map.primary_of(5461));
        assert_eq!(map.address_of(16383), Some(("127.0.0.1", 7000)));
        assert_eq!(map.address_of(5461), Some(("127.0.0.1", 7001)));
        for &slot in map.primaries() {
            assert!(map.primary_of(slot).is_some());
        }
    }

    #[test]
    fn a_gap_in_the_map_leaves_its_keys_in_groups_of_one() {
        let reply = Value::Array(vec![range(0, 100, node("h", 1))]);
        let map = SlotMap::from_reply(&reply).unwrap();
        assert_eq!(map.primary_of(101), None);
        let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        let groups = group_by_primary(&map, &keys);
        let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>(), "every key in one group");
        for g in &groups {
            let covered = g
                .iter()
                .all(|&i| map.primary_of(slot_of(keys[i].as_bytes())).is_some());
            assert!(covered || g.len() == 1);
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        for reply in [
            Value::Nil,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![range(10, 5, node("h", 1))]),
            Value::Array(vec![range(0, 16384, node("h", 1))]),
            Value::Array(vec![range(0, 1, Value::Array(vec![]))]),
        ] {
            assert!(SlotMap::from_reply(&reply).is_err(), "{reply:?}");
        }
    }

    #[test]
    fn slots_are_computed_as_redis_cluster_does() {
        // Values from Redis's own `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"{user1}.a"), slot_of(b"{user1}.b"));
        assert_eq!(slot_of(b"{user1}.a"), slot_of(b"user1"));
        // An empty tag is no tag: the whole key is hashed.
        assert_ne!(slot_of(b"{}a"), slot_of(b"{}b"));
        // Every key hashes the way `redis`'s own router does.
        for key in [
            "flag.service-3.feature_00042",
            "x",
            "",
            "{",
            "a{b}c{d}",
            "é{ü}",
        ] {
            let ours = primary_route(slot_of(key.as_bytes()));
            assert_eq!(ours, Route::with_key(key, SlotAddr::Master), "{key:?}");
        }
    }
}
