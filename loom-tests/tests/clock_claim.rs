//! CLOCK: claiming slots, evicting, and reading while the hand moves (L1 invariant 1).

use flagcache_loom_tests::{assert_bound, cache, model, set};
use loom::sync::Arc;
use loom::thread;

/// Two inserts of new keys into a full cache of one slot: each claims the slot in turn, the
/// other's entry is evicted, and at no point do two entries own it.
#[test]
fn concurrent_inserts_into_a_full_cache_keep_the_bound() {
    model(|| {
        let c = Arc::new(cache(1));
        set(&c, "a", 1);
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || set(&c2, "b", 1));
        set(&c, "c", 1);
        t.join().unwrap();
        assert_bound(&c);
        assert!(c.len() <= 1);
        assert_eq!(c.stats_now().inserts, 3);
    });
}

/// A read racing an eviction of its entry returns the entry or nothing, and the entry it returns
/// is the right one.
#[test]
fn read_racing_eviction_returns_the_entry_or_nothing() {
    model(|| {
        let c = Arc::new(cache(1));
        set(&c, "a", 7);
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || set(&c2, "b", 1));
        if let Some(f) = c.get_now("a") {
            assert_eq!(f.definition.id.as_str(), "a");
            assert_eq!(f.definition.version, 7);
        }
        t.join().unwrap();
        assert_bound(&c);
        assert!(c.get_now("b").is_some() || c.get_now("a").is_some());
    });
}

/// Two inserts of the same new key: one entry, one slot.
#[test]
fn racing_inserts_of_one_key_make_one_entry() {
    model(|| {
        let c = Arc::new(cache(2));
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || set(&c2, "k", 1));
        set(&c, "k", 2);
        t.join().unwrap();
        assert_bound(&c);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get_now("k").map(|f| f.definition.version), Some(2));
    });
}

/// Invalidate racing an insert that needs to evict: the slot is freed or reused exactly once.
#[test]
fn invalidate_racing_eviction_frees_the_slot_once() {
    model(|| {
        let c = Arc::new(cache(1));
        set(&c, "a", 1);
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || c2.invalidate_now("a"));
        set(&c, "b", 1);
        t.join().unwrap();
        assert_bound(&c);
        assert!(c.get_now("a").is_none());
        assert!(c.get_now("b").is_some());
    });
}
