//! `replace_all` against readers and writers (L1 invariant 4 of `docs/architecture.md`).

use flagcache::FlagId;
use flagcache_loom_tests::{assert_bound, cache, flag, model, set};
use loom::sync::Arc;
use loom::thread;

/// A `get_many` racing a swap answers wholly from the old set or wholly from the new one.
#[test]
fn get_many_never_mixes_two_snapshots() {
    model(|| {
        let c = Arc::new(cache(4));
        c.replace_all(vec![flag("a", 1), flag("b", 1)]).unwrap();
        let c2 = Arc::clone(&c);
        let swapper =
            thread::spawn(move || c2.replace_all(vec![flag("a", 2), flag("b", 2)]).unwrap());
        let got = c.get_many_now(&[FlagId::new("a"), FlagId::new("b")]);
        assert_eq!(got.len(), 2);
        let versions: Vec<u64> = got.values().map(|f| f.definition.version).collect();
        assert_eq!(versions[0], versions[1], "mixed snapshot: {versions:?}");
        swapper.join().unwrap();
        assert_bound(&c);
    });
}

/// A write racing a swap lands in one of the two generations; the live one stays bounded and
/// consistent, and the swap's own entries are all there.
#[test]
fn writes_racing_a_swap_keep_the_new_snapshot_whole() {
    model(|| {
        let c = Arc::new(cache(2));
        let c2 = Arc::clone(&c);
        let writer = thread::spawn(move || set(&c2, "w", 1));
        c.replace_all(vec![flag("a", 1)]).unwrap();
        writer.join().unwrap();
        assert!(c.get_now("a").is_some(), "the snapshot lost an entry");
        assert_bound(&c);
    });
}

/// A read racing a clear and a replace answers from one of the three snapshots, and a read that
/// starts after the last swap returned sees the last set.
#[test]
fn reads_racing_two_swaps_answer_from_one_snapshot() {
    model(|| {
        let c = Arc::new(cache(2));
        c.replace_all(vec![flag("a", 1), flag("b", 1)]).unwrap();
        let c2 = Arc::clone(&c);
        let swapper = thread::spawn(move || {
            c2.clear_now();
            c2.replace_all(vec![flag("a", 3), flag("b", 3)]).unwrap();
            assert_eq!(c2.get_now("a").map(|f| f.definition.version), Some(3));
        });
        let got = c.get_many_now(&[FlagId::new("a"), FlagId::new("b")]);
        let versions: Vec<u64> = got.values().map(|f| f.definition.version).collect();
        assert!(
            versions.is_empty() || (versions.len() == 2 && versions[0] == versions[1]),
            "mixed or partial snapshot: {versions:?}"
        );
        swapper.join().unwrap();
        assert_bound(&c);
    });
}

/// A single read racing a swap of a set that holds its flag in both snapshots finds it: when
/// swaps overlap every optimistic attempt, the read holds swaps off for one more.
#[test]
fn a_read_overlapped_by_swaps_still_finds_a_flag_of_both_snapshots() {
    model(|| {
        let c = Arc::new(cache(2));
        c.replace_all(vec![flag("a", 1)]).unwrap();
        let c2 = Arc::clone(&c);
        let swapper = thread::spawn(move || {
            c2.replace_all(vec![flag("a", 2)]).unwrap();
            c2.replace_all(vec![flag("a", 3)]).unwrap();
        });
        let version = c.get_with("a", |d| d.version);
        assert!(matches!(version, Some(1..=3)), "missed: {version:?}");
        swapper.join().unwrap();
    });
}
