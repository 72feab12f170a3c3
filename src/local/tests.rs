//! Operation sequences against a model (proptest), with the internal invariants checked
//! after every step.
use super::*;
use crate::sync::Arc;
use crate::time::MockClock;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Set(u8, u64, Option<u16>),
    Get(u8),
    Invalidate(u8),
    Fill(u8, u64),
    FillOvertakenBySet(u8, u64, u64),
    Advance(u16),
    Clear,
    ReplaceAll(Vec<(u8, u64)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..12u8, 1..6u64, proptest::option::of(1..3_000u16)).prop_map(|(k, v, t)| Op::Set(k, v, t)),
        4 => (0..12u8).prop_map(Op::Get),
        2 => (0..12u8).prop_map(Op::Invalidate),
        2 => (0..12u8, 1..6u64).prop_map(|(k, v)| Op::Fill(k, v)),
        1 => (0..12u8, 1..6u64, 1..6u64).prop_map(|(k, a, b)| Op::FillOvertakenBySet(k, a, b)),
        2 => (0..2_000u16).prop_map(Op::Advance),
        1 => Just(Op::Clear),
        1 => proptest::collection::vec((0..12u8, 1..6u64), 0..8).prop_map(Op::ReplaceAll),
    ]
}

fn key(k: u8) -> FlagId {
    FlagId::new(format!("k{k}"))
}

fn def(k: u8, version: u64) -> FlagDefinition {
    match FlagDefinition::new_boolean(key(k).as_str(), "model", false) {
        Ok(d) => d.with_version(version),
        Err(e) => panic!("{e}"),
    }
}

/// The model: what is in the map (expired or not), as (version, expires_at in ms).
#[derive(Default)]
struct Model {
    entries: HashMap<u8, (u64, u64)>,
    now_ms: u64,
}

const TTL_MS: u64 = 1_000;

fn check_internals(cache: &LocalCache) {
    let live = cache.live_slots();
    let entries = cache.map_len();
    assert!(
        entries <= live,
        "{entries} entries but {live} published slots"
    );
    assert!(live <= cache.capacity());
    assert_eq!(cache.ring_fault(), None);
}

fn run(ops: Vec<Op>, capacity: usize) {
    let mock = MockClock::new();
    let cache = match LocalCache::builder()
        .max_size(capacity)
        .default_ttl(Duration::from_millis(TTL_MS))
        .clock(Clock::mock(&mock))
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let exact = capacity >= 12;
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Set(k, v, ttl) => {
                let ttl_ms = ttl.map_or(TTL_MS, u64::from);
                let result = cache.try_set(
                    &key(k),
                    def(k, v),
                    ttl.map(|t| Duration::from_millis(t.into())),
                );
                let refused = m.entries.get(&k).is_some_and(|(have, _)| *have > v);
                if exact {
                    assert_eq!(result.is_err(), refused, "set k{k} v{v}");
                }
                // With eviction the cache may have forgotten a higher version: follow it.
                if result.is_ok() {
                    m.entries.insert(k, (v, m.now_ms + ttl_ms));
                }
            }
            Op::Get(k) => {
                let got = cache.get_now(key(k).as_str()).map(|f| f.definition.version);
                let want = match m.entries.get(&k) {
                    Some(&(v, exp)) if m.now_ms < exp => Some(v),
                    Some(_) => {
                        m.entries.remove(&k);
                        None
                    }
                    None => None,
                };
                if exact {
                    assert_eq!(got, want, "get k{k}");
                } else if let Some(v) = got {
                    // Evictions may lose entries, never invent or regress them.
                    assert_eq!(Some(v), want, "get k{k} returned what the model lacks");
                }
            }
            Op::Invalidate(k) => {
                cache.invalidate_now(key(k).as_str());
                m.entries.remove(&k);
                assert!(cache.get_now(key(k).as_str()).is_none());
            }
            Op::Fill(k, v) => {
                let ticket = cache.begin_fill(key(k).as_str());
                let outcome = cache.complete_fill(&ticket, Arc::new(def(k, v)), None);
                let superseded = m.entries.get(&k).is_some_and(|(have, _)| *have > v);
                if exact {
                    assert_eq!(
                        outcome == FillOutcome::Installed,
                        !superseded,
                        "fill k{k} v{v}"
                    );
                }
                if outcome == FillOutcome::Installed {
                    m.entries.insert(k, (v, m.now_ms + TTL_MS));
                }
            }
            Op::FillOvertakenBySet(k, fill_v, set_v) => {
                let ticket = cache.begin_fill(key(k).as_str());
                let set_ok = cache.try_set(&key(k), def(k, set_v), None).is_ok();
                let outcome = cache.complete_fill(&ticket, Arc::new(def(k, fill_v)), None);
                assert_ne!(
                    outcome,
                    FillOutcome::Installed,
                    "an overtaken fill installed"
                );
                if set_ok {
                    m.entries.insert(k, (set_v, m.now_ms + TTL_MS));
                }
            }
            Op::Advance(ms) => {
                mock.advance(Duration::from_millis(ms.into()));
                m.now_ms += u64::from(ms);
            }
            Op::Clear => {
                cache.clear_now();
                m.entries.clear();
                assert_eq!(cache.len(), 0);
            }
            Op::ReplaceAll(set) => {
                let mut next: HashMap<u8, u64> = HashMap::new();
                for &(k, v) in &set {
                    let e = next.entry(k).or_insert(v);
                    *e = (*e).max(v);
                }
                let result = cache.replace_all(set.iter().map(|&(k, v)| def(k, v)));
                if next.len() > capacity {
                    assert!(result.is_err());
                } else {
                    assert!(result.is_ok());
                    m.entries = next
                        .into_iter()
                        .map(|(k, v)| (k, (v, m.now_ms + TTL_MS)))
                        .collect();
                }
            }
        }
        check_internals(&cache);
        if exact {
            let stats = cache.stats_now();
            assert_eq!(stats.size, m.entries.len(), "size");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model_without_eviction(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, 16);
    }

    #[test]
    fn keeps_its_invariants_under_eviction(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops, 3);
    }
}

#[test]
fn sweep_step_removes_expired_entries_and_counts_them() {
    let mock = MockClock::new();
    let cache = LocalCache::builder()
        .max_size(3_000)
        .default_ttl(Duration::from_secs(1))
        .clock(Clock::mock(&mock))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for k in 0..2_500u32 {
        let id = FlagId::new(format!("f{k}"));
        let d =
            FlagDefinition::new_boolean(id.as_str(), "x", true).unwrap_or_else(|e| panic!("{e}"));
        cache
            .try_set(&id, d, None)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    mock.advance(Duration::from_secs(2));
    let mut passes = 0;
    let mut removed = 0;
    while passes < 2 {
        let (n, done) = cache.sweep_step();
        removed += n;
        if done {
            passes += 1;
        }
    }
    assert_eq!(removed, 2_500);
    assert_eq!(cache.stats_now().expirations, 2_500);
    assert_eq!(cache.len(), 0);
    check_internals(&cache);
}

/// A fill that stalls between `complete_fill`'s generation check and its map write, while
/// 2^20 swaps run (the generation tag in an entry's state word is 20 bits wide): the first swap
/// deletes the flag, so the fill's definition must never be served.
#[test]
fn a_fill_stalled_across_a_full_turn_of_the_tag_is_not_served() {
    use super::generation::{Stamp, Writer};
    let cache = LocalCache::builder()
        .max_size(16)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The flag is `k0`; `k1` keeps the set from being empty.
    cache
        .replace_all([def(0, 1), def(1, 1)])
        .unwrap_or_else(|e| panic!("{e}"));
    let ticket = cache.begin_fill("k0");
    // What `complete_fill` does before its write: the generation checked, the stamp taken.
    let a = cache.snapshots.active();
    assert_eq!(a.number(), ticket.generation);
    let stamp = Stamp {
        cached_at: std::time::Instant::now(),
        expires_at: cache.clock.now() + 60_000_000_000,
        tag: a.tag(),
    };
    // The stall: the flag is deleted, then the set is swapped until the tag comes round again.
    cache
        .replace_all([def(1, 2)])
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 1..(1u64 << 20) {
        cache.clear_now();
    }
    assert_eq!(cache.snapshots.active().tag(), a.tag());
    // The fill wakes and writes, as `complete_fill` goes on to.
    let fetched = Arc::new(def(0, 1));
    cache.snapshots.buffer(a).write(
        &fetched.id,
        &fetched,
        stamp,
        Writer::Fill(&ticket, &cache.fences, &cache.snapshots),
        &cache.stats,
    );
    assert!(cache.get_now("k0").is_none(), "a deleted flag came back");
    check_internals(&cache);
}
