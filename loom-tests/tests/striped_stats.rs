//! Striped counters: exact sums at quiescence (L1 invariant 6 of `docs/architecture.md`).

use flagcache_loom_tests::{cache, model, set};
use loom::sync::Arc;
use loom::thread;

#[test]
fn hits_plus_misses_equal_lookups() {
    model(|| {
        let c = Arc::new(cache(2));
        set(&c, "x", 1);
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || {
            c2.get_now("x");
            c2.get_now("nope");
        });
        c.get_with("x", |_| ());
        c.get_now("nope");
        t.join().unwrap();
        let s = c.stats_now();
        assert_eq!(s.hits, 2);
        assert_eq!(s.misses, 2);
    });
}
