//! Write fences: a fill that began before an invalidate or a newer set never installs its older
//! value after it (L1 invariants 2 and 3 of `docs/architecture.md`; the protocol is described in
//! `src/local/fences.rs`).

use flagcache_loom_tests::{assert_bound, cache, flag, model, set};
use loom::sync::Arc;
use loom::thread;

/// The flag is absent: the invalidate has no entry to collide with, so only the fence pair
/// (fill: insert, fence, re-read; writer: advance, fence, remove) keeps the fill out.
#[test]
fn fill_of_absent_flag_never_survives_an_invalidate_that_began_after_it() {
    model(|| {
        let c = Arc::new(cache(2));
        let ticket = c.begin_fill("x");
        let c2 = Arc::clone(&c);
        let filler = thread::spawn(move || {
            c2.complete_fill(&ticket, std::sync::Arc::new(flag("x", 1)), None)
        });
        c.invalidate_now("x");
        // Read-your-invalidate: a read that starts after invalidate returned.
        assert!(
            c.get_now("x").is_none(),
            "fill resurrected an invalidated flag"
        );
        // `Installed` is possible (the fill finished before the invalidate began, which then
        // removed it); what may never be is a visible value afterwards.
        filler.join().unwrap();
        assert!(c.get_now("x").is_none());
        assert_bound(&c);
    });
}

/// The flag is present: the fill's check runs inside the map's compute, the invalidate removes
/// the entry; one of them sees the other.
#[test]
fn fill_of_present_flag_never_survives_an_invalidate_that_began_after_it() {
    model(|| {
        let c = Arc::new(cache(2));
        set(&c, "x", 1);
        let ticket = c.begin_fill("x");
        let c2 = Arc::clone(&c);
        let filler = thread::spawn(move || {
            c2.complete_fill(&ticket, std::sync::Arc::new(flag("x", 2)), None)
        });
        c.invalidate_now("x");
        assert!(
            c.get_now("x").is_none(),
            "fill resurrected an invalidated flag"
        );
        filler.join().unwrap();
        assert!(c.get_now("x").is_none());
        assert_bound(&c);
    });
}

/// A newer `set` racing an older fill: the newer version is what stays.
#[test]
fn older_fill_never_replaces_a_newer_set() {
    model(|| {
        let c = Arc::new(cache(2));
        let ticket = c.begin_fill("x");
        let c2 = Arc::clone(&c);
        let filler = thread::spawn(move || {
            c2.complete_fill(&ticket, std::sync::Arc::new(flag("x", 1)), None)
        });
        set(&c, "x", 2);
        // Read-your-write, even when the set replaced the fill's entry before it was published.
        assert_eq!(c.get_now("x").map(|f| f.definition.version), Some(2));
        filler.join().unwrap();
        assert_eq!(c.get_now("x").map(|f| f.definition.version), Some(2));
        assert_bound(&c);
    });
}

/// A fill and a `set` carrying the very same definition (a tiered cache over an in-memory L2
/// hands a fill the `Arc` a set stored): when the set overtakes the fill and replaces its
/// unpublished entry, the fill's withdrawal must take back its own entry only, not the set's.
#[test]
fn a_withdrawn_fill_never_removes_a_set_of_the_same_definition() {
    model(|| {
        let c = Arc::new(cache(2));
        let def = std::sync::Arc::new(flag("x", 2));
        let ticket = c.begin_fill("x");
        let c2 = Arc::clone(&c);
        let shared = std::sync::Arc::clone(&def);
        let filler = thread::spawn(move || c2.complete_fill(&ticket, shared, None));
        c.try_set_arc(&flagcache::FlagId::new("x"), def, None)
            .unwrap();
        filler.join().unwrap();
        assert_eq!(c.get_now("x").map(|f| f.definition.version), Some(2));
        assert_bound(&c);
    });
}
