//! Hit-ratio simulation: flagcache's CLOCK against exact LRU, moka (TinyLFU) and quick_cache
//! (CLOCK-Pro-like), on the same traces. Run: `cargo run --release --example hit_ratio`.
//!
//! Traces over 50 000 keys, 500 000 accesses each: Zipf(0.8), Zipf(1.0), and Zipf(1.0) polluted
//! by a sequential scan of never-repeated keys (twice the capacity) every 20 000 accesses. Each
//! at 1 % and 10 % capacity. Every cache sees a miss as "load and insert".

#[path = "../benches/support/keys.rs"]
mod keys;

use flagcache::{FlagDefinition, FlagId, LocalCache};
use keys::{Rng, Zipf};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const KEYS: usize = 50_000;
const ACCESSES: usize = 500_000;

fn zipf_trace(s: f64, seed: u64) -> Vec<u32> {
    let zipf = Zipf::new(KEYS, s);
    let mut rng = Rng(seed);
    // Ranks are shuffled onto key numbers so popularity is not ordered by key.
    let mut perm: Vec<u32> = (0..KEYS as u32).collect();
    for i in (1..perm.len()).rev() {
        perm.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    (0..ACCESSES).map(|_| perm[zipf.sample(&mut rng)]).collect()
}

/// Zipf(1.0) with a scan of `scan_len` fresh keys every 20 000 accesses.
fn scan_polluted(scan_len: usize, seed: u64) -> Vec<u32> {
    let base = zipf_trace(1.0, seed);
    let mut out = Vec::with_capacity(ACCESSES * 2);
    let mut fresh = KEYS as u32;
    for (i, k) in base.into_iter().enumerate() {
        if i % 20_000 == 19_999 {
            for _ in 0..scan_len {
                out.push(fresh);
                fresh += 1;
            }
        }
        out.push(k);
    }
    out
}

/// Exact LRU over an index-linked list (the reference policy).
struct Lru {
    cap: usize,
    map: HashMap<u32, usize>,
    nodes: Vec<(u32, usize, usize)>, // key, prev, next
    head: usize,                     // most recent
    tail: usize,                     // least recent
}

const NIL: usize = usize::MAX;

impl Lru {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::new(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }
    fn unlink(&mut self, i: usize) {
        let (_, p, n) = self.nodes[i];
        if p != NIL {
            self.nodes[p].2 = n
        } else {
            self.head = n
        }
        if n != NIL {
            self.nodes[n].1 = p
        } else {
            self.tail = p
        }
    }
    fn push_front(&mut self, i: usize) {
        self.nodes[i].1 = NIL;
        self.nodes[i].2 = self.head;
        if self.head != NIL {
            self.nodes[self.head].1 = i
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i
        }
    }
    fn access(&mut self, k: u32) -> bool {
        if let Some(&i) = self.map.get(&k) {
            self.unlink(i);
            self.push_front(i);
            return true;
        }
        let i = if self.map.len() == self.cap {
            let t = self.tail;
            self.unlink(t);
            self.map.remove(&self.nodes[t].0);
            self.nodes[t].0 = k;
            t
        } else {
            self.nodes.push((k, NIL, NIL));
            self.nodes.len() - 1
        };
        self.map.insert(k, i);
        self.push_front(i);
        false
    }
}

fn ratio(hits: usize, trace: &[u32]) -> f64 {
    hits as f64 / trace.len() as f64
}

fn run_lru(trace: &[u32], cap: usize) -> f64 {
    let mut lru = Lru::new(cap);
    replay(trace, |k| lru.access(k))
}

fn run_flagcache(trace: &[u32], cap: usize, ids: &[FlagId], defs: &[Arc<FlagDefinition>]) -> f64 {
    let cache = LocalCache::builder()
        .max_size(cap)
        .default_ttl(Duration::from_secs(3_600))
        .build()
        .unwrap();
    replay(trace, |k| {
        let (id, def) = (&ids[k as usize], &defs[k as usize]);
        cache.get_with(id.as_str(), |_| ()).is_some() || {
            cache.try_set_arc(id, Arc::clone(def), None).unwrap();
            false
        }
    })
}

/// Replays `trace` through a cache given as "look up, and insert on a miss": the hit ratio.
fn replay(trace: &[u32], mut hit_or_insert: impl FnMut(u32) -> bool) -> f64 {
    ratio(trace.iter().filter(|&&k| hit_or_insert(k)).count(), trace)
}

fn run_moka(trace: &[u32], cap: usize) -> f64 {
    let cache = moka::sync::Cache::new(cap as u64);
    replay(trace, |k| {
        cache.get(&k).is_some() || {
            cache.insert(k, ());
            false
        }
    })
}

fn run_quick_cache(trace: &[u32], cap: usize) -> f64 {
    let mut cache = quick_cache::unsync::Cache::new(cap);
    replay(trace, |k| {
        cache.get(&k).is_some() || {
            cache.insert(k, ());
            false
        }
    })
}

fn main() {
    let max_key = KEYS + 2 * (KEYS / 10) * (ACCESSES / 20_000) + 1;
    let ids: Vec<FlagId> = (0..max_key)
        .map(|k| FlagId::new(format!("flag-{k}")))
        .collect();
    let defs: Vec<Arc<FlagDefinition>> = ids
        .iter()
        .map(|id| Arc::new(FlagDefinition::new_boolean(id.as_str(), "sim", false).unwrap()))
        .collect();

    println!("| trace | capacity | flagcache CLOCK | LRU | moka | quick_cache | CLOCK / LRU |");
    println!("|---|---|---|---|---|---|---|");
    let mut worst = f64::INFINITY;
    for (pct, cap) in [(1, KEYS / 100), (10, KEYS / 10)] {
        let traces = [
            ("Zipf 0.8", zipf_trace(0.8, 1)),
            ("Zipf 1.0", zipf_trace(1.0, 2)),
            ("Zipf 1.0 + scans", scan_polluted(2 * cap, 3)),
        ];
        for (name, trace) in &traces {
            let fc = run_flagcache(trace, cap, &ids, &defs);
            let lru = run_lru(trace, cap);
            let mk = run_moka(trace, cap);
            let qc = run_quick_cache(trace, cap);
            worst = worst.min(fc / lru);
            println!(
                "| {name} | {pct} % ({cap}) | {:.2} % | {:.2} % | {:.2} % | {:.2} % | {:.3} |",
                fc * 100.0,
                lru * 100.0,
                mk * 100.0,
                qc * 100.0,
                fc / lru
            );
        }
    }
    println!("\nworst flagcache / LRU ratio: {worst:.3} (target: >= 1.0 on every trace)");
}
