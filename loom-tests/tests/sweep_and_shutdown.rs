//! The background work: a sweep step racing writes, and the task's shutdown protocol (hold a
//! `Weak`, upgrade for one step, exit when the upgrade fails). L1 invariant 7.

use flagcache_loom_tests::{assert_bound, cache, model, set};
use loom::thread;
use std::sync::Arc;

/// A sweep step racing an invalidate and an insert frees each slot once; the bound holds.
#[test]
fn sweep_racing_writes_keeps_the_bound() {
    model(|| {
        let c = Arc::new(cache(2));
        set(&c, "a", 1);
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || {
            c2.invalidate_now("a");
            set(&c2, "b", 1);
        });
        flagcache::__internals::sweep_step(&c);
        t.join().unwrap();
        assert_bound(&c);
        assert!(c.get_now("b").is_some());
        assert!(c.get_now("a").is_none());
    });
}

/// The task's loop body (upgrade, one step, release) racing the cache's drop: the task ends,
/// and every definition the cache held is freed.
#[test]
fn dropping_the_cache_ends_the_sweeper_and_frees_entries() {
    model(|| {
        let c = Arc::new(cache(2));
        let def = Arc::new(flagcache_loom_tests::flag("a", 1));
        c.try_set_arc(&flagcache::FlagId::new("a"), Arc::clone(&def), None)
            .unwrap();
        let weak = Arc::downgrade(&c);
        let task = thread::spawn(move || {
            let mut steps = 0;
            while let Some(cache) = weak.upgrade() {
                flagcache::__internals::sweep_step(&cache);
                drop(cache);
                steps += 1;
                if steps == 2 {
                    loom::thread::yield_now();
                }
                if steps > 3 {
                    break;
                }
            }
            weak
        });
        drop(c);
        let weak = task.join().unwrap();
        assert!(weak.upgrade().is_none());
        assert_eq!(
            Arc::strong_count(&def),
            1,
            "a definition outlived its cache"
        );
    });
}
