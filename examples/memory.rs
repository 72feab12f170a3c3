//! Memory per entry: what each cache allocates beyond the keys and definitions themselves
//! (those are built before measuring and shared by `Arc`), at 100 000 and 1 000 000 entries,
//! and the peak of `replace_all` (the warm-up path) over what it leaves live.
//! Run: `cargo run --release --example memory` (about a minute; `-- 100000` for one size).

// The baselines are the very types the crate's facade rule bans.
#![allow(clippy::disallowed_types)]

use flagcache::{FlagDefinition, FlagId, LocalCache};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed, process-wide.
fn live_bytes() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// Bytes per entry still allocated after `build` ran, and at the peak while it ran (sampled
/// every 50 µs by another thread: a peak shorter than that can be missed).
fn per_entry<T>(entries: usize, build: impl FnOnce() -> T) -> (f64, f64, T) {
    let before = live_bytes();
    let peak = AtomicIsize::new(before);
    let done = AtomicBool::new(false);
    let value = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(live_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        let value = build();
        peak.fetch_max(live_bytes(), Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        value
    });
    let n = entries as f64;
    let live = (live_bytes() - before) as f64 / n;
    (live, (peak.into_inner() - before) as f64 / n, value)
}

fn measure(entries: usize) {
    let ids: Vec<FlagId> = (0..entries)
        .map(|i| FlagId::new(format!("flag.service-{}.feature_{i:07}", i % 37)))
        .collect();
    let defs: Vec<Arc<FlagDefinition>> = ids
        .iter()
        .map(|id| Arc::new(FlagDefinition::new_boolean(id.as_str(), "memory", false).unwrap()))
        .collect();
    let local = || {
        LocalCache::builder()
            .max_size(entries)
            .default_ttl(Duration::from_secs(3_600))
            .build()
            .unwrap()
    };
    let mut rows = Vec::new();

    let (live, peak, c) = per_entry(entries, || {
        let cache = local();
        for (id, def) in ids.iter().zip(&defs) {
            cache.try_set_arc(id, Arc::clone(def), None).unwrap();
        }
        cache
    });
    assert_eq!(c.len(), entries);
    rows.push(("flagcache LocalCache, try_set_arc", live, peak));
    drop(c);

    // `replace_all` takes owned definitions and moves each into an `Arc` of its own: fed
    // from an iterator that clones them one at a time (as a loader decoding rows does), and
    // charged, in the row, only what the cache adds to what those `Arc`s cost on their own.
    let (arcs, _, copies) = per_entry(entries, || {
        defs.iter()
            .map(|d| Arc::new(FlagDefinition::clone(d)))
            .collect::<Vec<_>>()
    });
    drop(copies);
    let definitions = arcs - std::mem::size_of::<usize>() as f64;
    let (live, peak, c) = per_entry(entries, || {
        let cache = local();
        cache
            .replace_all(defs.iter().map(|d| FlagDefinition::clone(d)))
            .unwrap();
        cache
    });
    assert_eq!(c.len(), entries);
    let (live, peak) = (live - definitions, peak - definitions);
    rows.push(("flagcache LocalCache, replace_all", live, peak));
    let replace_all_overshoot = peak - live;
    drop(c);

    let (live, peak, p) = per_entry(entries, || {
        let map: papaya::HashMap<FlagId, Arc<FlagDefinition>, foldhash::fast::RandomState> =
            papaya::HashMap::with_hasher(Default::default());
        for def in &defs {
            map.pin().insert(def.id.clone(), Arc::clone(def));
        }
        map
    });
    rows.push(("papaya, keyed by the definition's own FlagId", live, peak));
    drop(p);

    let (live, peak, p) = per_entry(entries, || {
        let map: papaya::HashMap<Arc<str>, Arc<FlagDefinition>, foldhash::fast::RandomState> =
            papaya::HashMap::with_hasher(Default::default());
        for def in &defs {
            map.pin()
                .insert(Arc::from(def.id.as_str()), Arc::clone(def));
        }
        map
    });
    rows.push(("papaya, keyed by a copied Arc<str>", live, peak));
    drop(p);

    let (live, peak, q) = per_entry(entries, || {
        let cache = quick_cache::sync::Cache::new(entries);
        for (id, def) in ids.iter().zip(&defs) {
            cache.insert(id.clone(), Arc::clone(def));
        }
        cache
    });
    rows.push(("quick_cache::sync", live, peak));
    drop(q);

    let (live, peak, m) = per_entry(entries, || {
        let cache = moka::sync::Cache::builder()
            .max_capacity(entries as u64)
            .time_to_live(Duration::from_secs(3_600))
            .build();
        for (id, def) in ids.iter().zip(&defs) {
            cache.insert(id.clone(), Arc::clone(def));
        }
        cache.run_pending_tasks();
        cache
    });
    rows.push(("moka::sync (TTL)", live, peak));
    drop(m);

    println!("\nbytes per entry at {entries} entries (beyond keys and definitions):");
    println!("| cache | live | peak while built |");
    println!("|---|---|---|");
    for (name, live, peak) in rows {
        println!("| {name} | {live:.1} | {peak:.1} |");
    }
    println!(
        "replace_all peaks {replace_all_overshoot:.1} bytes per entry above what it leaves live"
    );
}

fn main() {
    let sizes: Vec<usize> = match std::env::args().nth(1) {
        Some(n) => vec![n.parse().expect("an entry count")],
        None => vec![100_000, 1_000_000],
    };
    for entries in sizes {
        measure(entries);
    }
}
