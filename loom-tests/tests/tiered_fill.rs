//! The tiered read-through against an invalidate, L2 included: a load that read L2 (empty) and
//! L3 before an invalidate (L3 delete, L2 tombstone, L1 invalidate) must leave the old
//! definition in neither L1 nor L2 (L1 invariant 3 and tiered invariant T3 of
//! `docs/architecture.md`). L2 and L3 are stand-ins under loom locks; L1 is the crate's
//! `LocalCache`. The load follows the tiered load path (`src/tiered/load.rs`): ticket, L2 read,
//! L3 read, L1 fill, and an L2 write-back only if L1 took the fill, as a fill (`SET NX`).

use flagcache::FillOutcome;
use flagcache_loom_tests::{cache, flag, model};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// An L2 key as the tiered cache sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Absent,
    Value(u64),
    Tombstone,
}

struct Backends {
    l2: Mutex<Key>,
    /// The source of truth: the flag's version, 0 once deleted.
    l3: Mutex<u64>,
}

fn load(c: &flagcache::LocalCache, b: &Backends, nx_write_back: bool) {
    let ticket = c.begin_fill("x");
    if *b.l2.lock().unwrap() != Key::Absent {
        return; // an L2 hit (or a tombstone, read as absent) is not this model's case
    }
    let version = *b.l3.lock().unwrap();
    if version == 0 {
        return;
    }
    let outcome = c.complete_fill(&ticket, std::sync::Arc::new(flag("x", version)), None);
    if matches!(outcome, FillOutcome::Installed) {
        let mut key = b.l2.lock().unwrap();
        if !nx_write_back || *key == Key::Absent {
            *key = Key::Value(version);
        }
    }
}

fn invalidate(c: &flagcache::LocalCache, b: &Backends) {
    *b.l3.lock().unwrap() = 0;
    *b.l2.lock().unwrap() = Key::Tombstone;
    c.invalidate_now("x");
}

fn run(nx_write_back: bool) {
    model(move || {
        let c = Arc::new(cache(2));
        let b = Arc::new(Backends {
            l2: Mutex::new(Key::Absent),
            l3: Mutex::new(1),
        });
        let loader = {
            let (c, b) = (Arc::clone(&c), Arc::clone(&b));
            thread::spawn(move || load(&c, &b, nx_write_back))
        };
        invalidate(&c, &b);
        loader.join().unwrap();
        assert!(
            c.get_now("x").is_none(),
            "the old definition came back into L1"
        );
        assert_ne!(
            *b.l2.lock().unwrap(),
            Key::Value(1),
            "the old definition came back into L2"
        );
    });
}

#[test]
fn a_load_racing_an_invalidate_leaves_the_old_definition_nowhere() {
    run(true);
}

/// The same protocol with a plain (not `NX`) write-back: the model must find the interleaving
/// where the write-back lands after the tombstone, or it proves nothing.
#[test]
#[should_panic(expected = "came back into L2")]
fn a_plain_write_back_would_resurrect_in_l2() {
    run(false);
}
