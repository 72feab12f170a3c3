//! What a full L1 keeps allocated per entry, beyond the keys and definitions it was given.
//!
//! One test in its own binary: the counting allocator sees every thread of the process, so no
//! other test may run beside it.

use flagcache::{FlagDefinition, FlagId, LocalCache};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_bytes() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// 300 000 entries put the map's table at 2^19 slots of 9 bytes (15.7 B an entry); beside it
/// each entry holds a 56-byte map node (the key, 8, and the entry, 48) and a ring slot of 12
/// bytes (a 32-bit state word and the key; the keys' locks are shared by 64 slots): 83.9 B in
/// all. Neither a key of two words (a fat `Arc<str>`: 16 B more, in the node and the ring), nor
/// a 64-bit ring state (4 B), nor a lock of each slot's own (8 B), nor an expiry beside the
/// entry's state word (8 B), nor the tables the map outgrew on the way (2^17 and 2^18 slots,
/// 11.8 B) may be among them: papaya retires those tables through its collector, whose batches
/// of 1 024 a set written once never fills.
#[test]
fn a_full_cache_keeps_no_table_it_outgrew_and_no_lock_per_slot() {
    const ENTRIES: usize = 300_000;
    let ids: Vec<FlagId> = (0..ENTRIES)
        .map(|i| FlagId::new(format!("flag.service-{}.feature_{i:06}", i % 37)))
        .collect();
    let defs: Vec<Arc<FlagDefinition>> = ids
        .iter()
        .map(|id| Arc::new(FlagDefinition::new_boolean(id.as_str(), "memory", false).unwrap()))
        .collect();

    let before = live_bytes();
    let cache = LocalCache::builder()
        .max_size(ENTRIES)
        .default_ttl(Duration::from_secs(3_600))
        .build()
        .unwrap();
    for (id, def) in ids.iter().zip(&defs) {
        cache.try_set_arc(id, Arc::clone(def), None).unwrap();
    }
    let per_entry = (live_bytes() - before) as f64 / ENTRIES as f64;

    assert_eq!(cache.len(), ENTRIES);
    assert!(
        per_entry < 86.0,
        "{per_entry:.1} bytes an entry, expected 83.9"
    );
}
