//! The cost of one read (or write), counted rather than timed: run under `valgrind
//! --tool=cachegrind --cache-sim=yes` and compare the instructions and first-level data-cache
//! misses of two runs that differ in one thing. Deterministic, so it tells apart layouts that
//! this machine's timing noise (±15 % between criterion runs) hides.
//!
//! 10 000 realistic flag names (`flag.service-{n}.feature_{i:05}`), looked up by separately
//! allocated strings, as in `benches/compare.rs`. Subtract a run of 0 operations (the set-up)
//! from a run of N and divide by N:
//!
//! ```sh
//! cargo build --release --example read_cost
//! valgrind --tool=cachegrind --cache-sim=yes target/release/examples/read_cost borrowed uniform 1000000
//! ```
//!
//! Contenders: `floor` (a `papaya::HashMap<Arc<str>, _>` read with `pin().get`), `borrowed`
//! (`LocalCache::get_with`), `owned` (`LocalCache::get_now`), `quick_cache`; and their writes,
//! as the 90/10 mix of `benches/compare.rs` does them (the key's definition stored again):
//! `floor_write` (`pin().insert` of a copied key), `write` (`LocalCache::try_set_arc`),
//! `quick_cache_write` (`insert`). Keys: `uniform`, `zipf` (Zipf 1.0), `hot` (one key).

// The floor is the very type the crate's facade rule bans.
#![allow(clippy::disallowed_types)]

#[path = "../benches/support/keys.rs"]
mod keys;

use flagcache::{FlagDefinition, FlagId, LocalCache};
use keys::{Rng, Zipf};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const FLAGS: usize = 10_000;

fn sequence(keys: &str, operations: usize) -> Vec<usize> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let zipf = Zipf::new(FLAGS, 1.0);
    (0..operations)
        .map(|_| match keys {
            "uniform" => (rng.next() % FLAGS as u64) as usize,
            "zipf" => zipf.sample(&mut rng),
            "hot" => 42,
            other => panic!("unknown key distribution `{other}`: uniform, zipf or hot"),
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, contender, keys, operations] = args.as_slice() else {
        eprintln!(
            "usage: read_cost <floor|borrowed|owned|quick_cache|floor_write|write|quick_cache_write> \
             <uniform|zipf|hot> <operations>"
        );
        std::process::exit(2);
    };
    let operations: usize = operations.parse().expect("a number of operations");
    let ids: Vec<FlagId> = (0..FLAGS)
        .map(|i| FlagId::new(format!("flag.service-{}.feature_{i:05}", i % 37)))
        .collect();
    let names: Vec<Box<str>> = ids.iter().map(|id| Box::from(id.as_str())).collect();
    let defs: Vec<Arc<FlagDefinition>> = ids
        .iter()
        .map(|id| Arc::new(FlagDefinition::new_boolean(id.as_str(), "read cost", false).unwrap()))
        .collect();
    let seq = sequence(keys, operations);
    let mut sum = 0u64;
    match contender.as_str() {
        "floor" | "floor_write" => {
            let map = papaya::HashMap::with_hasher(foldhash::fast::RandomState::default());
            for (id, def) in ids.iter().zip(&defs) {
                map.pin()
                    .insert(Arc::<str>::from(id.as_str()), Arc::clone(def));
            }
            if contender == "floor" {
                for &k in &seq {
                    sum += map.pin().get(&*names[k]).map_or(0, |d| d.version);
                }
            } else {
                for &k in &seq {
                    map.pin()
                        .insert(Arc::<str>::from(ids[k].as_str()), Arc::clone(&defs[k]));
                }
            }
        }
        "borrowed" | "owned" | "write" => {
            let cache = LocalCache::builder()
                .max_size(2 * FLAGS)
                .default_ttl(Duration::from_secs(3_600))
                .build()
                .unwrap();
            for (id, def) in ids.iter().zip(&defs) {
                cache.try_set_arc(id, Arc::clone(def), None).unwrap();
            }
            // With its cleanup task, as in production: the coarse clock is one load.
            let cache = Arc::new(cache);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_time()
                .build()
                .unwrap();
            let _task = {
                let _entered = runtime.enter();
                cache.start_cleanup_task(Duration::from_secs(1)).unwrap()
            };
            std::thread::sleep(Duration::from_millis(20));
            match contender.as_str() {
                "borrowed" => {
                    for &k in &seq {
                        sum += cache.get_with(&names[k], |d| d.version).unwrap_or(0);
                    }
                }
                "owned" => {
                    for &k in &seq {
                        sum += cache.get_now(&names[k]).map_or(0, |f| f.definition.version);
                    }
                }
                _ => {
                    for &k in &seq {
                        cache
                            .try_set_arc(&ids[k], Arc::clone(&defs[k]), None)
                            .unwrap();
                    }
                }
            }
        }
        "quick_cache" | "quick_cache_write" => {
            let cache = quick_cache::sync::Cache::new(2 * FLAGS);
            for (id, def) in ids.iter().zip(&defs) {
                cache.insert(id.clone(), Arc::clone(def));
            }
            if contender == "quick_cache" {
                for &k in &seq {
                    sum += cache
                        .get(&*names[k])
                        .map_or(0, |d: Arc<FlagDefinition>| d.version);
                }
            } else {
                for &k in &seq {
                    cache.insert(ids[k].clone(), Arc::clone(&defs[k]));
                }
            }
        }
        other => panic!("unknown contender `{other}`: see the usage"),
    }
    black_box(sum);
}
