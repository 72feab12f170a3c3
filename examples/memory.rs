//! Memory per entry: what each cache allocates for 100 000 entries beyond the keys and
//! definitions themselves (those are built before measuring and shared by `Arc`).
//! Run: `cargo run --release --example memory`.

// The baselines are the very types the crate's facade rule bans.
#![allow(clippy::disallowed_types)]

use flagcache::{FlagDefinition, FlagId, LocalCache};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ENTRIES: usize = 100_000;

/// Bytes still allocated after `build` ran, per entry.
fn per_entry<T>(build: impl FnOnce() -> T) -> (f64, T) {
    let region = Region::new(GLOBAL);
    let value = build();
    let s = region.change();
    let live = s.bytes_allocated as f64 - s.bytes_deallocated as f64;
    (live / ENTRIES as f64, value)
}

fn main() {
    let ids: Vec<FlagId> = (0..ENTRIES)
        .map(|i| FlagId::new(format!("team{}.flag-{i}", i % 37)))
        .collect();
    let defs: Vec<Arc<FlagDefinition>> = ids
        .iter()
        .map(|id| Arc::new(FlagDefinition::new_boolean(id.as_str(), "memory", false).unwrap()))
        .collect();

    let (flagcache, c) = per_entry(|| {
        let cache = LocalCache::builder()
            .max_size(ENTRIES)
            .default_ttl(Duration::from_secs(3_600))
            .build()
            .unwrap();
        for (id, def) in ids.iter().zip(&defs) {
            cache.try_set_arc(id, Arc::clone(def), None).unwrap();
        }
        cache
    });
    assert_eq!(c.len(), ENTRIES);

    let (quick, q) = per_entry(|| {
        let cache = quick_cache::sync::Cache::new(ENTRIES);
        for (id, def) in ids.iter().zip(&defs) {
            cache.insert(id.clone(), Arc::clone(def));
        }
        cache
    });
    let (moka, m) = per_entry(|| {
        let cache = moka::sync::Cache::builder()
            .max_capacity(ENTRIES as u64)
            .time_to_live(Duration::from_secs(3_600))
            .build();
        for (id, def) in ids.iter().zip(&defs) {
            cache.insert(id.clone(), Arc::clone(def));
        }
        cache.run_pending_tasks();
        cache
    });
    let (papaya, p) = per_entry(|| {
        let map: papaya::HashMap<FlagId, Arc<FlagDefinition>, foldhash::fast::RandomState> =
            papaya::HashMap::builder()
                .hasher(Default::default())
                .build();
        for (id, def) in ids.iter().zip(&defs) {
            map.pin().insert(id.clone(), Arc::clone(def));
        }
        map
    });

    println!("bytes per entry at {ENTRIES} entries (beyond key and definition):");
    println!("| cache | bytes/entry |");
    println!("|---|---|");
    println!("| flagcache LocalCache | {flagcache:.1} |");
    println!("| raw papaya map | {papaya:.1} |");
    println!("| quick_cache::sync | {quick:.1} |");
    println!("| moka::sync (TTL) | {moka:.1} |");
    println!("\ntarget: flagcache <= 128 bytes/entry");
    drop((c, q, m, p));
}
