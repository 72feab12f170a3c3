//! A fill against swaps: a fill whose ticket predates a `replace_all` that deleted its flag
//! never brings the flag back, however many swaps pass (L1 invariant 4 of
//! `docs/architecture.md`). Under loom an entry's generation tag is one bit wide, so two swaps
//! bring it round again, as 2^20 do in a real build: the fill must check the whole generation
//! number, not the tag.

use flagcache_loom_tests::{assert_bound, cache, flag, model};
use loom::sync::Arc;
use loom::thread;

#[test]
fn a_fill_racing_two_swaps_that_delete_its_flag_never_brings_it_back() {
    model(|| {
        let c = Arc::new(cache(2));
        c.replace_all(vec![flag("x", 1), flag("y", 1)]).unwrap();
        let ticket = c.begin_fill("x");
        let c2 = Arc::clone(&c);
        let filler = thread::spawn(move || {
            c2.complete_fill(&ticket, std::sync::Arc::new(flag("x", 1)), None)
        });
        // Deleted by the first swap; the second brings the tag of the fill's generation back.
        c.replace_all(vec![flag("y", 2)]).unwrap();
        c.replace_all(vec![flag("y", 3)]).unwrap();
        filler.join().unwrap();
        assert!(
            c.get_now("x").is_none(),
            "a fill brought back a deleted flag"
        );
        assert_bound(&c);
    });
}
