//! The fence pair of `src/local/fences.rs`, modelled at the level where it matters.
//!
//! The other fill models run over the facade's lock-based map, which orders everything and so
//! cannot show why the fences are needed. Here the map is reduced to what papaya does for one
//! key: a fill's insert publishes the entry with a release store, and an invalidate of an
//! absent key is a plain acquire load (no write for the fill's insert to collide with). The
//! fences are the crate's own `WriteFences`; the fill side's `SeqCst` fence mirrors the one in
//! `Generation::write`. The property: the fill and the invalidate never both miss each other
//! (which would let the fill's value survive an invalidate that began after its ticket).

use flagcache::__internals::Fences;
use flagcache_loom_tests::model;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering, fence};
use loom::thread;

#[test]
fn an_absent_key_fill_and_an_invalidate_never_both_miss_each_other() {
    model(|| {
        let fences = Arc::new(Fences::default());
        let entry = Arc::new(AtomicBool::new(false));
        let ticket = fences.ticket("x");
        let (f, e) = (Arc::clone(&fences), Arc::clone(&entry));
        let filler = thread::spawn(move || {
            e.store(true, Ordering::Release); // the unpublished insert
            fence(Ordering::SeqCst); // as in `Generation::write`
            f.unchanged_since(&ticket) // true: the fill publishes its entry
        });
        fences.advance("x"); // `invalidate`: announce (with its fence) ...
        let invalidate_saw_entry = entry.load(Ordering::Acquire); // ... then remove the key
        let fill_published = filler.join().unwrap();
        assert!(
            invalidate_saw_entry || !fill_published,
            "the fill published and the invalidate missed its entry"
        );
    });
}
