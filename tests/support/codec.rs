//! The `codec` fuzz target's checks, shared with `tests/fuzz_corpus.rs`: arbitrary bytes read
//! as a value stored in Redis never panic, and whatever is accepted is a valid definition of
//! the flag it was stored under, which survives a round trip.

#![allow(dead_code)] // the fuzz target and the corpus test each use part of it

use flagcache::{FlagId, RedisCache};

const IDS: [&str; 4] = ["a", "checkout.new-flow", "flag-001", "x_y-z.0"];

/// The first byte picks the flag id and the size limit; the rest is the stored value.
pub fn run(data: &[u8]) {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let id = FlagId::new(IDS[usize::from(selector & 3)]);
    let max_len = if selector & 4 == 0 { 256 * 1024 } else { 64 };
    match RedisCache::decode_value(&id, value, max_len) {
        Ok(def) => {
            assert!(
                value.len() <= max_len,
                "accepted {} bytes over a limit of {max_len}",
                value.len()
            );
            assert_eq!(def.id, id, "accepted another flag's definition");
            def.validate().expect("an accepted definition is valid");
            let again = RedisCache::decode_value(&id, &def.to_json(), usize::MAX)
                .expect("a decoded definition re-encodes to a decodable value");
            assert_eq!(again, def, "the round trip changed the definition");
        }
        Err(e) => assert_eq!(e.kind(), flagcache::ErrorKind::Corrupt, "{e}"),
    }
}
