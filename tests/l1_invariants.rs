//! The invariants of L1 (`docs/architecture.md`), one test (or more) each. The concurrent ones are also
//! model-checked in `loom-tests/`.

// std atomics here coordinate the test threads, not the cache.
#![allow(clippy::disallowed_types)]

#[path = "support/busy_runtime.rs"]
mod busy_runtime;

use flagcache::{
    Clock, ErrorKind, FillOutcome, FlagCache, FlagDefinition, FlagId, LocalCache, MockClock,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn flag(id: &str, version: u64) -> FlagDefinition {
    FlagDefinition::new_boolean(id, "A flag", false)
        .unwrap()
        .with_version(version)
}

fn cache(max_size: usize) -> LocalCache {
    LocalCache::builder()
        .max_size(max_size)
        .default_ttl(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn mocked(max_size: usize, ttl: Duration) -> (LocalCache, MockClock) {
    let mock = MockClock::new();
    let cache = LocalCache::builder()
        .max_size(max_size)
        .default_ttl(ttl)
        .clock(Clock::mock(&mock))
        .build()
        .unwrap();
    (cache, mock)
}

// Invariant 1: bound.

#[test]
fn bound_holds_for_sequential_inserts_and_counts_evictions() {
    let cache = cache(16);
    for i in 0..1_000 {
        let id = format!("f{i}");
        cache
            .try_set(&FlagId::new(&id), flag(&id, 1), None)
            .unwrap();
        assert!(cache.len() <= 16, "len {} after insert {i}", cache.len());
    }
    let stats = cache.stats_now();
    assert_eq!(stats.size, 16);
    assert_eq!(stats.evictions, 1_000 - 16);
    assert_eq!(stats.inserts, 1_000);
}

#[test]
fn bound_holds_under_concurrent_inserts() {
    let cache = cache(64);
    std::thread::scope(|s| {
        for t in 0..4 {
            let cache = &cache;
            s.spawn(move || {
                for i in 0..5_000 {
                    let id = format!("t{t}-{}", i % 700);
                    cache
                        .try_set(&FlagId::new(&id), flag(&id, 1), None)
                        .unwrap();
                    let _ = cache.get_now(&id);
                }
            });
        }
    });
    let stats = cache.stats_now();
    assert!(stats.size <= 64, "size {} above capacity", stats.size);
    assert!(
        stats.size >= 60,
        "a quiescent full cache should be near capacity, got {}",
        stats.size
    );
    assert_eq!(stats.inserts, 20_000);
}

/// The map grows its table from the writing threads (beyond the table presized for 65 536
/// entries, at 114 688): writers racing over that point, with a reader beside them, lose no
/// entry and evict nothing.
#[test]
fn a_set_written_by_two_threads_survives_the_table_growing_under_it() {
    const PER_THREAD: usize = 70_000;
    let cache = LocalCache::builder()
        .max_size(2 * PER_THREAD)
        .default_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let id = |t: usize, i: usize| format!("flag.service-{t}.feature_{i:05}");
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let cache = &cache;
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        let id = id(t, i);
                        cache
                            .try_set(&FlagId::new(&id), flag(&id, 1), None)
                            .unwrap();
                        assert_eq!(cache.get_with(&id, |d| d.version), Some(1), "{id}");
                    }
                })
            })
            .collect();
        s.spawn(|| {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                // Written or not yet: a read must never see another version.
                let found = cache.get_with(&id(i % 2, i % PER_THREAD), |d| d.version);
                assert!(matches!(found, None | Some(1)));
                i += 7;
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    for t in 0..2 {
        for i in 0..PER_THREAD {
            assert!(
                cache.get_with(&id(t, i), |_| ()).is_some(),
                "{} lost",
                id(t, i)
            );
        }
    }
    let stats = cache.stats_now();
    assert_eq!((stats.size, stats.evictions), (2 * PER_THREAD, 0));
}

#[test]
fn clock_keeps_recently_read_entries() {
    let cache = cache(3);
    for id in ["a", "b", "c"] {
        cache.try_set(&FlagId::new(id), flag(id, 1), None).unwrap();
    }
    assert!(cache.get_now("a").is_some());
    cache
        .try_set(&FlagId::new("d"), flag("d", 1), None)
        .unwrap();
    assert!(
        cache.get_now("a").is_some(),
        "the read entry must survive the first eviction"
    );
    assert!(cache.get_now("d").is_some(), "the new entry is cached");
    let survivors = ["b", "c"]
        .iter()
        .filter(|id| cache.get_now(id).is_some())
        .count();
    assert_eq!(survivors, 1, "exactly one unread entry was evicted");
}

#[test]
fn nothing_is_evicted_while_a_slot_is_free() {
    // Regression (found by the l1_ops fuzz target): the hand evicted an unread entry even
    // though an invalidate had just freed a slot.
    let cache = cache(2);
    cache
        .try_set(&FlagId::new("a"), flag("a", 1), None)
        .unwrap();
    cache
        .try_set(&FlagId::new("b"), flag("b", 1), None)
        .unwrap();
    cache.invalidate_now("b");
    cache
        .try_set(&FlagId::new("c"), flag("c", 1), None)
        .unwrap();
    assert!(
        cache.get_now("a").is_some(),
        "`a` was evicted below capacity"
    );
    assert!(cache.get_now("c").is_some());
    assert_eq!(cache.stats_now().evictions, 0);
}

// Invariant 2: read-your-invalidate.

#[test]
fn invalidate_hides_the_definition_from_later_reads() {
    let cache = cache(100);
    let id = FlagId::new("x");
    cache.try_set(&id, flag("x", 1), None).unwrap();
    cache.invalidate_now("x");
    assert!(cache.get_now("x").is_none());
    assert!(cache.get_with("x", |_| ()).is_none());
    assert_eq!(cache.stats_now().invalidations, 1);
    cache.try_set(&id, flag("x", 2), None).unwrap();
    assert_eq!(cache.get_now("x").unwrap().definition.version, 2);
}

#[test]
fn invalidate_is_seen_by_reads_on_other_threads() {
    // A writer sets and invalidates in turn; after each invalidate returns it raises a flag,
    // and a reader that starts after seeing the flag must not find the definition.
    let cache = cache(100);
    let invalidated = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for v in 1..=2_000u64 {
                cache
                    .try_set(&FlagId::new("x"), flag("x", v), None)
                    .unwrap();
                cache.invalidate_now("x");
                invalidated.store(true, Ordering::SeqCst);
                while invalidated.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                if invalidated.load(Ordering::SeqCst) {
                    assert!(
                        cache.get_now("x").is_none(),
                        "read after invalidate found the flag"
                    );
                    invalidated.store(false, Ordering::SeqCst);
                }
            }
        });
    });
}

// Invariant 3: no resurrection, versions never go backwards.

#[test]
fn fill_started_before_invalidate_is_dropped() {
    let cache = cache(100);
    let id = FlagId::new("x");
    cache.try_set(&id, flag("x", 1), None).unwrap();
    let ticket = cache.begin_fill("x");
    cache.invalidate_now("x");
    let outcome = cache.complete_fill(&ticket, Arc::new(flag("x", 1)), None);
    assert_eq!(outcome, FillOutcome::Overtaken);
    assert!(cache.get_now("x").is_none());
    assert_eq!(cache.stats_now().fills_refused, 1);
}

#[test]
fn fill_of_an_absent_flag_started_before_invalidate_is_dropped() {
    let cache = cache(100);
    let ticket = cache.begin_fill("x");
    cache.invalidate_now("x");
    assert_eq!(
        cache.complete_fill(&ticket, Arc::new(flag("x", 1)), None),
        FillOutcome::Overtaken
    );
    assert!(cache.get_now("x").is_none());
}

#[test]
fn fill_started_before_a_newer_set_is_dropped() {
    let cache = cache(100);
    let ticket = cache.begin_fill("x");
    cache
        .try_set(&FlagId::new("x"), flag("x", 2), None)
        .unwrap();
    let outcome = cache.complete_fill(&ticket, Arc::new(flag("x", 1)), None);
    assert_ne!(outcome, FillOutcome::Installed);
    assert_eq!(cache.get_now("x").unwrap().definition.version, 2);
}

#[test]
fn fill_started_before_replace_all_is_dropped() {
    let cache = cache(100);
    let ticket = cache.begin_fill("gone");
    cache.replace_all(vec![flag("kept", 1)]).unwrap();
    assert_eq!(
        cache.complete_fill(&ticket, Arc::new(flag("gone", 1)), None),
        FillOutcome::Overtaken
    );
    assert!(cache.get_now("gone").is_none());
}

#[test]
fn fill_of_an_older_version_is_superseded() {
    let cache = cache(100);
    cache
        .try_set(&FlagId::new("x"), flag("x", 5), None)
        .unwrap();
    let ticket = cache.begin_fill("x");
    assert_eq!(
        cache.complete_fill(&ticket, Arc::new(flag("x", 4)), None),
        FillOutcome::Superseded(5)
    );
    assert_eq!(cache.get_now("x").unwrap().definition.version, 5);
    let ticket = cache.begin_fill("x");
    assert_eq!(
        cache.complete_fill(&ticket, Arc::new(flag("x", 6)), None),
        FillOutcome::Installed
    );
    assert_eq!(cache.get_now("x").unwrap().definition.version, 6);
}

#[tokio::test]
async fn set_of_a_lower_version_is_refused_and_counted() {
    let cache = cache(100);
    let id = FlagId::new("x");
    cache.try_set(&id, flag("x", 5), None).unwrap();
    let err = cache.try_set(&id, flag("x", 3), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StaleVersion);
    assert!(err.to_string().contains("version 5"), "{err}");
    // Through the trait the refusal is counted, not returned.
    cache.set(&id, flag("x", 4), None).await;
    assert_eq!(cache.stats_now().stale_writes_refused, 2);
    assert_eq!(cache.get_now("x").unwrap().definition.version, 5);
    // The same version is accepted (a refresh).
    cache.try_set(&id, flag("x", 5), None).unwrap();
}

// Invariant 4: snapshot atomicity.

#[test]
fn replace_all_is_seen_whole_or_not_at_all() {
    let cache = cache(1_000);
    let ids: Vec<FlagId> = (0..200).map(|i| FlagId::new(format!("f{i}"))).collect();
    let set_of = |v: u64| {
        ids.iter()
            .map(|id| flag(id.as_str(), v))
            .collect::<Vec<_>>()
    };
    cache.replace_all(set_of(1)).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for v in 2..300 {
                cache.replace_all(set_of(v)).unwrap();
            }
            stop.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            let mut checked = 0;
            while !stop.load(Ordering::SeqCst) || checked == 0 {
                let got = cache.get_many_now(&ids);
                assert_eq!(got.len(), ids.len(), "a snapshot lost entries");
                let first = got[&ids[0]].definition.version;
                assert!(
                    got.values().all(|f| f.definition.version == first),
                    "get_many mixed two snapshots"
                );
                checked += 1;
            }
        });
    });
}

#[test]
fn a_long_batch_is_whole_however_often_swaps_overlap_it() {
    // 100 present flags spread through a batch of 20 100 ids, and swaps in a loop: a read of
    // the batch takes long enough that every optimistic attempt may overlap a swap.
    let cache = cache(1_000);
    let present: Vec<FlagId> = (0..100).map(|i| FlagId::new(format!("p{i}"))).collect();
    let batch: Vec<FlagId> = (0..20_100)
        .map(|i| match i % 201 {
            0 => present[i / 201].clone(),
            _ => FlagId::new(format!("absent{i}")),
        })
        .collect();
    let set_of = |v: u64| {
        present
            .iter()
            .map(|id| flag(id.as_str(), v))
            .collect::<Vec<_>>()
    };
    cache.replace_all(set_of(1)).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut v = 2;
            while !stop.load(Ordering::SeqCst) {
                cache.replace_all(set_of(v)).unwrap();
                v += 1;
            }
        });
        let reader = s.spawn(|| {
            let mut sizes = Vec::with_capacity(200);
            for _ in 0..200 {
                let got = cache.get_many_now(&batch);
                let first = got.values().next().map(|f| f.definition.version);
                let one_snapshot = got.values().all(|f| Some(f.definition.version) == first);
                sizes.push((got.len(), one_snapshot));
            }
            stop.store(true, Ordering::SeqCst);
            sizes
        });
        let sizes = reader.join().unwrap();
        let partial: Vec<_> = sizes.iter().filter(|(n, _)| *n != 100).collect();
        assert!(
            partial.is_empty(),
            "{} of 200 batches partial: {partial:?}",
            partial.len()
        );
        assert!(
            sizes.iter().all(|(_, one)| *one),
            "a batch mixed two snapshots"
        );
    });
}

#[test]
fn replace_all_over_capacity_fails_and_keeps_the_old_set() {
    let cache = cache(2);
    cache.replace_all(vec![flag("a", 1)]).unwrap();
    let err = cache
        .replace_all(vec![flag("a", 2), flag("b", 2), flag("c", 2)])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CapacityExceeded);
    assert_eq!(cache.get_now("a").unwrap().definition.version, 1);
    assert!(cache.get_now("b").is_none());
}

#[test]
fn replace_all_keeps_the_highest_version_of_duplicates() {
    let cache = cache(2);
    cache
        .replace_all(vec![flag("a", 3), flag("a", 7), flag("a", 5)])
        .unwrap();
    assert_eq!(cache.get_now("a").unwrap().definition.version, 7);
    assert_eq!(cache.len(), 1);
}

// Invariant 5: expiry.

#[test]
fn expired_entries_are_never_served_fresh() {
    let (cache, clock) = mocked(100, Duration::from_secs(10));
    cache
        .try_set(&FlagId::new("x"), flag("x", 1), None)
        .unwrap();
    clock.advance(Duration::from_millis(9_999));
    assert!(cache.get_now("x").is_some());
    clock.advance(Duration::from_millis(1));
    assert!(cache.get_now("x").is_none(), "served at its expiry instant");
    assert!(cache.get_with("x", |_| ()).is_none());
    let stats = cache.stats_now();
    assert_eq!(stats.expirations, 1, "the read removed the expired entry");
    assert_eq!(stats.size, 0);
}

#[test]
fn expiry_holds_on_a_busy_current_thread_runtime() {
    // The cleanup task runs on a current_thread runtime whose only thread is then kept busy:
    // the task never gets to run, yet an entry is not served long past its expiry.
    let last = busy_runtime::last_served_on_a_busy_runtime(Duration::from_secs(1));
    assert!(
        last < busy_runtime::SERVED_AT_MOST,
        "served {last:?} after it was written, with a {:?} TTL",
        busy_runtime::TTL
    );
}

#[test]
fn per_write_ttl_overrides_the_default() {
    let (cache, clock) = mocked(100, Duration::from_secs(60));
    cache
        .try_set(
            &FlagId::new("short"),
            flag("short", 1),
            Some(Duration::from_millis(500)),
        )
        .unwrap();
    cache
        .try_set(&FlagId::new("long"), flag("long", 1), None)
        .unwrap();
    clock.advance(Duration::from_millis(500));
    assert!(cache.get_now("short").is_none());
    assert!(cache.get_now("long").is_some());
}

#[test]
fn stale_grace_keeps_expired_entries_for_fail_safe_reads_only() {
    let mock = MockClock::new();
    let cache = LocalCache::builder()
        .max_size(10)
        .default_ttl(Duration::from_secs(1))
        .stale_grace(Duration::from_secs(5))
        .clock(Clock::mock(&mock))
        .build()
        .unwrap();
    cache
        .try_set(&FlagId::new("x"), flag("x", 1), None)
        .unwrap();
    assert!(cache.get_stale("x").is_none(), "a fresh entry is not stale");
    mock.advance(Duration::from_secs(3));
    assert!(cache.get_now("x").is_none());
    let stale = cache.get_stale("x").expect("within the grace");
    assert_eq!(stale.expired_for, Duration::from_secs(2));
    mock.advance(Duration::from_secs(3));
    assert!(cache.get_stale("x").is_none(), "past the grace");
}

#[tokio::test(start_paused = true)]
async fn the_cleanup_task_sweeps_expired_entries() {
    let (cache, clock) = mocked(5_000, Duration::from_secs(1));
    let cache = Arc::new(cache);
    for i in 0..3_000 {
        let id = format!("f{i}");
        cache
            .try_set(&FlagId::new(&id), flag(&id, 1), None)
            .unwrap();
    }
    let task = cache
        .start_cleanup_task(Duration::from_millis(100))
        .unwrap();
    clock.advance(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = cache.stats_now();
    assert_eq!(stats.size, 0, "the sweep left expired entries");
    assert_eq!(stats.expirations, 3_000);
    assert_eq!(stats.misses, 0, "the sweep is not a read");
    drop(task);
}

// Invariant 6: exact stats at quiescence.

#[test]
fn stats_are_exact_after_concurrent_lookups() {
    let cache = cache(100);
    cache
        .try_set(&FlagId::new("hit"), flag("hit", 1), None)
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let cache = &cache;
            s.spawn(move || {
                for i in 0..10_000 {
                    match (i + t) % 4 {
                        0 => assert!(cache.get_now("miss").is_none()),
                        1 => assert!(cache.get_with("hit", |d| d.version).is_some()),
                        2 => assert_eq!(
                            cache
                                .get_many_now(&[FlagId::new("hit"), FlagId::new("miss")])
                                .len(),
                            1
                        ),
                        _ => assert!(cache.get_now("hit").is_some()),
                    }
                }
            });
        }
    });
    let stats = cache.stats_now();
    // Per thread: 2 500 each of miss, borrowed hit, get_many (1 hit + 1 miss), owned hit.
    assert_eq!(stats.hits, 4 * 7_500);
    assert_eq!(stats.misses, 4 * 5_000);
    assert!((stats.hit_rate - 0.6).abs() < 1e-12);
}

#[test]
fn hit_count_is_exact_single_threaded() {
    let cache = cache(10);
    cache
        .try_set(&FlagId::new("x"), flag("x", 1), None)
        .unwrap();
    for n in 1..=5 {
        assert_eq!(cache.get_now("x").unwrap().hit_count, n);
    }
    // A replacement keeps the entry's count; borrowing reads do not count.
    cache
        .try_set(&FlagId::new("x"), flag("x", 2), None)
        .unwrap();
    cache.get_with("x", |_| ());
    assert_eq!(cache.get_now("x").unwrap().hit_count, 6);
}

// Invariant 7: no leaks.

#[tokio::test(start_paused = true)]
async fn dropping_the_cache_frees_entries_and_stops_its_task() {
    let cache = Arc::new(cache(100));
    let def = Arc::new(flag("x", 1));
    cache
        .try_set_arc(&FlagId::new("x"), Arc::clone(&def), None)
        .unwrap();
    cache.replace_all(vec![flag("y", 1)]).unwrap(); // retires a generation holding `def`
    cache
        .try_set_arc(&FlagId::new("x"), Arc::clone(&def), None)
        .unwrap();
    let task = cache.start_cleanup_task(Duration::from_millis(10)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished());
    drop(cache);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(task.is_finished(), "the task outlived its cache");
    assert_eq!(
        Arc::strong_count(&def),
        1,
        "the dropped cache still holds a definition"
    );
}

#[test]
fn a_replaced_snapshot_is_freed_without_waiting_for_the_cache_to_drop() {
    // The old set's entries are removed at the swap and handed to papaya's collector at once
    // (not when the thread's batch of replaced entries fills), which frees them once no
    // reader can see them. So all must be gone right after the swap, long before the cache
    // is dropped (a margin is left for the writes' own replaced entries).
    let cache = cache(2_000);
    let defs: Vec<Arc<FlagDefinition>> = (0..1_000)
        .map(|i| Arc::new(flag(&format!("f{i}"), 1)))
        .collect();
    for def in &defs {
        cache.try_set_arc(&def.id, Arc::clone(def), None).unwrap();
    }
    cache.replace_all(vec![flag("y", 1)]).unwrap();
    assert!(cache.get_now("y").is_some());
    let held = defs.iter().filter(|d| Arc::strong_count(d) > 1).count();
    assert!(
        held <= 64,
        "{held} of 1000 replaced definitions are still held"
    );

    for def in &defs {
        cache.try_set_arc(&def.id, Arc::clone(def), None).unwrap();
    }
    cache.clear_now();
    let held = defs.iter().filter(|d| Arc::strong_count(d) > 1).count();
    assert!(
        held <= 64,
        "{held} of 1000 cleared definitions are still held"
    );
}

#[test]
fn replaced_definitions_are_freed_within_a_batch_of_writes() {
    // A write hands the entry it replaces to papaya's collector, which frees a thread's
    // replaced entries a batch at a time (1 024): of 5 000 replacements from one thread, at most
    // a batch's worth (and the live one) may still hold their definitions, never all of them.
    let cache = cache(16);
    let defs: Vec<Arc<FlagDefinition>> = (1..=5_000).map(|v| Arc::new(flag("f", v))).collect();
    for def in &defs {
        cache.try_set_arc(&def.id, Arc::clone(def), None).unwrap();
    }
    let held = defs.iter().filter(|d| Arc::strong_count(d) > 1).count();
    assert!(
        held <= 1_024 + 1,
        "{held} of 5000 replaced definitions are still held"
    );
    assert!(
        Arc::strong_count(&defs[4_999]) > 1,
        "the live one is cached"
    );
}

// Configuration and input errors.

#[test]
fn bad_configuration_fails_at_build() {
    let zero = LocalCache::builder().max_size(0).build().unwrap_err();
    assert_eq!(zero.kind(), ErrorKind::InvalidConfig);
    assert!(zero.to_string().contains("max_size"), "{zero}");
    for short in [Duration::ZERO, Duration::from_micros(999)] {
        let ttl = LocalCache::builder()
            .default_ttl(short)
            .build()
            .unwrap_err();
        assert!(ttl.to_string().contains("default_ttl"), "{ttl}");
    }
    let huge = LocalCache::builder()
        .max_size(usize::MAX)
        .build()
        .unwrap_err();
    assert!(huge.is_config());
    // Below a millisecond the clock thread would spin (and the cleanup task with it).
    for resolution in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_micros(999),
    ] {
        let res = LocalCache::builder()
            .clock_resolution(resolution)
            .build()
            .unwrap_err();
        assert!(res.is_config(), "{resolution:?}: {res}");
    }
    LocalCache::builder()
        .clock_resolution(Duration::from_millis(1))
        .build()
        .unwrap();
}

/// Every way into L1 refuses a definition the read path could not serve as valid: a warm-up's
/// `replace_all` (keeping the current set) and a read-through fill, as `try_set` does.
#[test]
fn invalid_definitions_are_refused_on_every_way_in() {
    let cache = cache(10);
    cache
        .try_set(&FlagId::new("kept"), flag("kept", 1), None)
        .unwrap();
    let mut nameless = flag("bad", 1);
    nameless.name.clear();
    let mut odd_id = flag("odd", 1);
    odd_id.id = FlagId::new("odd*id");
    for bad in [nameless, odd_id] {
        let err = cache.replace_all([flag("a", 1), bad.clone()]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidFlag, "{err}");
        assert!(cache.get_now("kept").is_some(), "the current set is kept");
        assert!(cache.get_now("a").is_none(), "nothing of the new set");

        let ticket = cache.begin_fill(bad.id.as_str());
        let outcome = cache.complete_fill(&ticket, Arc::new(bad.clone()), None);
        assert_eq!(outcome, FillOutcome::Invalid);
        assert!(cache.get_now(bad.id.as_str()).is_none());
    }
    assert_eq!(cache.len(), 1);
}

#[test]
fn writes_with_a_mismatched_id_or_zero_ttl_are_errors() {
    let cache = cache(10);
    let err = cache
        .try_set(&FlagId::new("a"), flag("b", 1), None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidFlag);
    // L1 keeps expiries in whole milliseconds: a TTL under one would be born expired.
    for ttl in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_micros(999),
    ] {
        let err = cache
            .try_set(&FlagId::new("a"), flag("a", 1), Some(ttl))
            .unwrap_err();
        assert!(err.is_config(), "{ttl:?}: {err}");
    }
    assert!(cache.is_empty());
    cache
        .try_set(
            &FlagId::new("a"),
            flag("a", 1),
            Some(Duration::from_millis(1)),
        )
        .unwrap();
    assert!(cache.get_now("a").is_some());
}

/// The clock past the expiry's 40 bits of milliseconds (34 years): an entry without expiry
/// still never expires, on every path that asks.
#[test]
fn an_entry_without_expiry_never_expires_however_late_the_clock() {
    let (cache, mock) = mocked(10, Duration::MAX);
    cache
        .try_set(&FlagId::new("a"), flag("a", 1), None)
        .unwrap();
    mock.advance(Duration::from_secs(35 * 365 * 24 * 3_600));
    assert!(cache.get_now("a").is_some());
    assert!(cache.get_stale("a").is_none());
}

#[test]
fn start_cleanup_task_outside_a_runtime_is_an_error() {
    let cache = Arc::new(cache(10));
    let err = cache
        .start_cleanup_task(Duration::from_secs(1))
        .unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test]
async fn trait_methods_cover_the_whole_api() {
    let cache = cache(10);
    let ids: Vec<FlagId> = ["a", "b", "c"].iter().map(|s| FlagId::new(*s)).collect();
    cache
        .set_many(
            ids.iter()
                .map(|id| (id.clone(), flag(id.as_str(), 1)))
                .collect(),
            None,
        )
        .await;
    assert_eq!(cache.get_many(&ids).await.len(), 3);
    cache.invalidate(&ids[0]).await;
    assert!(cache.get(&ids[0]).await.is_none());
    cache.invalidate_many(&ids[1..]).await;
    assert!(cache.get_many(&ids).await.is_empty());
    cache.set(&ids[0], flag("a", 1), None).await;
    cache.clear().await;
    assert!(cache.get(&ids[0]).await.is_none());
    let stats = cache.stats().await;
    assert_eq!(stats.invalidations, 4);
    assert_eq!(stats.capacity, 10);
}

/// A ticket taken for `a` does not install a definition of `b`: it was checked against `a`'s
/// fence stripe only, so an invalidate of `b` made after the ticket would not stop it.
#[test]
fn a_fill_ticket_of_one_flag_does_not_install_another() {
    let cache = LocalCache::builder().build().unwrap();
    cache
        .try_set(&FlagId::new("b"), flag("b", 1), None)
        .unwrap();
    let ticket = cache.begin_fill("a");
    cache.invalidate_now("b");
    let outcome = cache.complete_fill(&ticket, Arc::new(flag("b", 1)), None);
    assert!(
        cache.get_now("b").is_none(),
        "`b` invalidated after the ticket was taken is back ({outcome:?})"
    );
    assert_ne!(outcome, FillOutcome::Installed);
}

/// `Duration::MAX` is the crate's "never" elsewhere; as a cleanup interval it must not end the
/// task (it panicked on `Instant + Duration::MAX`): the task still keeps the clock.
#[tokio::test]
async fn a_cleanup_interval_of_duration_max_keeps_the_task_running() {
    let cache = Arc::new(LocalCache::builder().build().unwrap());
    let task = cache.start_cleanup_task(Duration::MAX).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !task.is_finished(),
        "the cleanup task ended (panicked) 50 ms after an Ok start"
    );
}
