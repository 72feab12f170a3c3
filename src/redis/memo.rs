//! Decoded definitions remembered with the bytes they came from.
//!
//! Most L2 reads return a value the instance has decoded before (a refresh of an unchanged
//! flag, a `get_many` after an L1 flush), and decoding is most of a read's client work (about
//! 0.6 µs for a 170-byte definition, next to a few nanoseconds to compare the bytes). The same
//! bytes decode to the same definition for the same flag, so a memo hit returns the `Arc` it
//! decoded last time. Bounded by a number of flags; a full memo stops remembering new flags
//! (it still replaces the entries of the flags it holds, whose values changed). An entry never
//! answers for other bytes, so one left behind by a removed key costs memory only.

use super::codec;
use crate::error::Result;
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, ConcurrentMap, MapOp};

struct Decoded {
    bytes: Box<[u8]>,
    def: Arc<FlagDefinition>,
}

pub(crate) struct DecodeMemo {
    map: ConcurrentMap<Decoded>,
    capacity: usize,
}

impl DecodeMemo {
    /// A memo of at most `capacity` flags (0: decode every time).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: ConcurrentMap::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    /// `codec::decode`, skipped when `bytes` are what `id` decoded from last time.
    pub(crate) fn decode(
        &self,
        id: &FlagId,
        bytes: &[u8],
        max_len: usize,
    ) -> Result<Arc<FlagDefinition>> {
        if self.capacity == 0 {
            return codec::decode(id, bytes, max_len).map(Arc::new);
        }
        let known = self.map.read(id.as_str(), |d| {
            (*d.bytes == *bytes).then(|| Arc::clone(&d.def))
        });
        if let Some(Some(def)) = known {
            return Ok(def);
        }
        let def = Arc::new(codec::decode(id, bytes, max_len)?);
        // `len` may lag concurrent inserts by a few: the bound holds to within the number of
        // concurrent callers.
        let room = known.is_some() || self.map.len() < self.capacity;
        if room {
            let remembered = Arc::clone(&def);
            let bytes: Box<[u8]> = bytes.into();
            self.map.compute(id.clone(), |_| {
                MapOp::<_, ()>::Insert(Decoded {
                    bytes: bytes.clone(),
                    def: Arc::clone(&remembered),
                })
            });
        }
        Ok(def)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(id: &str, version: u64) -> Vec<u8> {
        let mut d = FlagDefinition::new_boolean(id, "A flag", true).unwrap();
        d.version = version;
        d.to_json()
    }

    #[test]
    fn the_same_bytes_return_the_same_definition() {
        let memo = DecodeMemo::new(10);
        let id = FlagId::new("a");
        let first = memo.decode(&id, &json("a", 1), 4096).unwrap();
        let again = memo.decode(&id, &json("a", 1), 4096).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "decoded twice");
        let changed = memo.decode(&id, &json("a", 2), 4096).unwrap();
        assert_eq!(changed.version, 2);
        let back = memo.decode(&id, &json("a", 1), 4096).unwrap();
        assert_eq!(back.version, 1);
        assert!(
            !Arc::ptr_eq(&first, &back),
            "the memo keeps one value per flag"
        );
    }

    #[test]
    fn corrupt_values_are_never_remembered() {
        let memo = DecodeMemo::new(10);
        let id = FlagId::new("a");
        assert!(memo.decode(&id, b"garbage", 4096).is_err());
        assert!(memo.decode(&id, b"garbage", 4096).is_err());
        assert_eq!(memo.len(), 0);
        // Another flag's definition stays an error however often it is read.
        let misfiled = json("b", 1);
        for _ in 0..2 {
            assert!(memo.decode(&id, &misfiled, 4096).is_err());
        }
    }

    #[test]
    fn a_full_memo_still_decodes_and_updates_what_it_holds() {
        let memo = DecodeMemo::new(2);
        for id in ["a", "b", "c", "d"] {
            let def = memo.decode(&FlagId::new(id), &json(id, 1), 4096).unwrap();
            assert_eq!(def.id.as_str(), id);
        }
        assert_eq!(memo.len(), 2);
        let a = FlagId::new("a");
        assert_eq!(memo.decode(&a, &json("a", 7), 4096).unwrap().version, 7);
        let cached = memo.decode(&a, &json("a", 7), 4096).unwrap();
        assert!(Arc::ptr_eq(
            &cached,
            &memo.decode(&a, &json("a", 7), 4096).unwrap()
        ));
    }

    #[test]
    fn a_zero_capacity_memo_remembers_nothing() {
        let memo = DecodeMemo::new(0);
        let id = FlagId::new("a");
        let first = memo.decode(&id, &json("a", 1), 4096).unwrap();
        let again = memo.decode(&id, &json("a", 1), 4096).unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(memo.len(), 0);
    }
}
