//! Adversarial review probes of RedisCache's cluster mode (not part of the suite).
//! Run one at a time:
//!   CARGO_TARGET_DIR=/work/review-target cargo test --test probe_cluster_review NAME -- --nocapture

#![cfg(feature = "redis")]
#![allow(dead_code, clippy::all)]

#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[path = "support/sources.rs"]
mod sources;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{ErrorKind, FlagCache, FlagDefinition, FlagId, RedisCache, TieredCache};
use redis_cluster::{RedisCluster, Reply};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn def(id: &str, version: u64) -> FlagDefinition {
    let mut d = FlagDefinition::new_boolean(id, "A flag", true).unwrap();
    d.version = version;
    d
}

fn ids(prefix: &str, n: usize) -> Vec<FlagId> {
    (0..n)
        .map(|i| FlagId::new(format!("{prefix}.f{i:06}")))
        .collect()
}

fn cache_t(cluster: &RedisCluster, prefix: &str, timeout: Duration) -> RedisCache {
    RedisCache::cluster_builder(cluster.urls())
        .prefix(prefix)
        .response_timeout(timeout)
        .build()
        .unwrap()
}

fn node_stat(cluster: &RedisCluster, port: u16, section: &str, name: &str) -> u64 {
    let Ok(Reply::Bulk(Some(info))) = cluster.try_command(port, &["INFO", section]) else {
        return 0;
    };
    let info = String::from_utf8(info).unwrap();
    let needle = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |rest| {
            let value = rest.split(',').next().unwrap();
            value.split('=').nth(1).unwrap().trim().parse().unwrap()
        })
}

fn moved_total(cluster: &RedisCluster) -> u64 {
    cluster
        .primaries()
        .iter()
        .map(|&p| node_stat(cluster, p, "errorstats", "errorstat_MOVED"))
        .sum()
}

fn myid(cluster: &RedisCluster, port: u16) -> String {
    match cluster.command(port, &["CLUSTER", "MYID"]) {
        Reply::Bulk(Some(id)) => String::from_utf8(id).unwrap(),
        other => panic!("MYID {other:?}"),
    }
}

fn flags_of(ids: &[FlagId], version: impl Fn(usize) -> u64) -> Vec<(FlagId, FlagDefinition)> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), def(id.as_str(), version(i))))
        .collect()
}

async fn write_all(l2: &RedisCache, flags: &[(FlagId, FlagDefinition)]) {
    for chunk in flags.chunks(2000) {
        let out = l2.try_set_many(chunk, None).await.unwrap();
        assert_eq!(out.stored, chunk.len());
    }
}

/// Number of client connections on `port` (CLIENT LIST lines), minus the one asking.
fn clients(cluster: &RedisCluster, port: u16) -> usize {
    match cluster.try_command(port, &["CLIENT", "LIST"]) {
        Ok(Reply::Bulk(Some(list))) => String::from_utf8_lossy(&list)
            .lines()
            .count()
            .saturating_sub(1),
        _ => usize::MAX,
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Recovery: a slot moved under a big batch.

/// After a slot moves, the reader's slot map is stale. The first big batch falls back to one
/// request per key for the affected group; if that fallback does not fit the response timeout,
/// the map is never marked stale (stale_slot_map runs only after a successful round trip), so
/// every later batch repeats the same failure: permanent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_stale_map_after_slot_move_big_batch() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let n: usize = std::env::var("PROBE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let timeout = Duration::from_millis(
        std::env::var("PROBE_TIMEOUT_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(50),
    );
    let writer = cache_t(&cluster, "big", Duration::from_secs(10));
    let reader = cache_t(&cluster, "big", timeout);
    let many = ids("b", n);
    // The reader fetches its map now.
    reader.try_get_many(&many[..10]).await.unwrap();

    let key0 = reader.key_of(&many[0]);
    let source = cluster.primary_of(&key0);
    let target = *cluster.primaries().iter().find(|&&p| p != source).unwrap();
    cluster.move_empty_slot(&key0, target);
    write_all(&writer, &flags_of(&many, |i| i as u64 + 1)).await;

    // Control: a fresh cache reads the whole batch in one go.
    let fresh = cache_t(&cluster, "big", timeout);
    let t = Instant::now();
    let r = fresh.try_get_many(&many).await;
    eprintln!(
        "fresh cache: {:?} in {:?}",
        r.as_ref().map(|m| m.len()).map_err(|e| e.kind()),
        t.elapsed()
    );
    let t = Instant::now();
    let r = fresh.try_get_many(&many).await;
    eprintln!(
        "fresh cache (2nd): {:?} in {:?}",
        r.as_ref().map(|m| m.len()).map_err(|e| e.kind()),
        t.elapsed()
    );

    let mut ok = 0;
    for attempt in 0..10 {
        let moved_before = moved_total(&cluster);
        let t = Instant::now();
        let r = reader.try_get_many(&many).await;
        let took = t.elapsed();
        let moved = moved_total(&cluster) - moved_before;
        eprintln!(
            "reader attempt {attempt}: {:?} in {took:?}, MOVED replies {moved}, stats {:?}",
            r.as_ref().map(|m| m.len()).map_err(|e| e.kind()),
            reader.redis_stats()
        );
        if matches!(&r, Ok(m) if m.len() == n) {
            ok += 1;
        }
    }
    assert!(
        ok > 0,
        "the stale reader never recovered: every batch after the slot move failed"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. clear / load_all on a primary the cached slot map does not know (scale-out).

/// Moves every slot of `from` to `to` with redis-cli --cluster reshard.
fn reshard_all(cluster: &RedisCluster, from: u16, to: u16, slots: usize) {
    let out = Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{to}")])
        .args(["--cluster-from", &myid(cluster, from)])
        .args(["--cluster-to", &myid(cluster, to)])
        .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reshard: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_scale_out_primary_missed_by_clear_and_load_all() {
    let Some(cluster) = RedisCluster::start(4, 0) else {
        return;
    };
    let ports = cluster.ports();
    let (a, d) = (ports[0], ports[3]);
    // D gives every slot away: a primary without slots (as a freshly added node is).
    reshard_all(&cluster, d, a, 16384);
    cluster.wait_ok(Duration::from_secs(30));
    assert_eq!(cluster.primaries().len(), 3);

    let l2 = cache_t(&cluster, "scale", Duration::from_millis(500));
    let many = ids("s", 300);
    let slots_calls = |c: &RedisCluster| -> u64 {
        c.ports()
            .iter()
            .map(|&p| node_stat(c, p, "commandstats", "cmdstat_cluster|slots"))
            .sum()
    };
    let s0 = slots_calls(&cluster);
    write_all(&l2, &flags_of(&many, |_| 1)).await; // the map (3 primaries) is fetched here
    eprintln!(
        "CLUSTER SLOTS calls during write_all: {}",
        slots_calls(&cluster) - s0
    );
    let s0 = slots_calls(&cluster);
    assert_eq!(l2.try_load_all().await.unwrap().len(), 300);
    eprintln!(
        "CLUSTER SLOTS calls during first load_all: {}",
        slots_calls(&cluster) - s0
    );
    let s0 = slots_calls(&cluster);
    assert_eq!(l2.try_load_all().await.unwrap().len(), 300);
    eprintln!(
        "CLUSTER SLOTS calls during 2nd load_all: {}",
        slots_calls(&cluster) - s0
    );

    // Scale-out: D takes one slot back (a resharding). Then a flag in that slot is written.
    let extra = (0..)
        .map(|i| FlagId::new(format!("new.{i}")))
        .find(|id| cluster.primary_of(&l2.key_of(id)) == a)
        .unwrap();
    cluster.move_empty_slot(&l2.key_of(&extra), d);
    l2.try_set(&extra, &def(extra.as_str(), 7), None)
        .await
        .unwrap();
    assert!(l2.try_get(&extra).await.unwrap().is_some());

    let key = l2.key_of(&extra);
    for p in cluster.ports() {
        eprintln!(
            "port {p}: EXISTS {key} = {:?}",
            cluster.command(p, &["EXISTS", &key])
        );
    }
    eprintln!(
        "primary_of(extra) = {}, d = {d}, a = {a}",
        cluster.primary_of(&key)
    );
    let moved_before = moved_total(&cluster);
    let s0 = slots_calls(&cluster);
    let all = l2.try_load_all().await.unwrap();
    eprintln!(
        "CLUSTER SLOTS calls during load_all after move: {}",
        slots_calls(&cluster) - s0
    );
    eprintln!(
        "MOVED during load_all: {}",
        moved_total(&cluster) - moved_before
    );
    let has_extra = all.iter().any(|f| f.id == extra);
    eprintln!(
        "load_all: {} flags, includes the flag on the new primary: {has_extra}",
        all.len()
    );
    let fresh = cache_t(&cluster, "scale", Duration::from_millis(500));
    eprintln!(
        "fresh cache load_all: {} flags",
        fresh.try_load_all().await.unwrap().len()
    );

    let removed = l2.try_clear().await.unwrap();
    let survivor = l2.try_get(&extra).await.unwrap();
    eprintln!(
        "clear removed {removed}; the flag on the new primary survived: {}",
        survivor.is_some()
    );
    assert!(
        has_extra,
        "load_all missed a flag stored on a primary added since the map was fetched"
    );
    assert!(
        survivor.is_none(),
        "clear left a key of its prefix on a primary added since"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Bad configuration.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_config_errors() {
    let empty: Vec<String> = vec![];
    let r = RedisCache::cluster_builder(empty).build();
    eprintln!(
        "empty seeds: {:?}",
        r.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    assert!(r.is_err());
    for bad in [
        "garbage",
        "http://127.0.0.1:7000",
        "redis://",
        "redis://127.0.0.1:notaport",
        "unix:///tmp/x.sock",
        "rediss://127.0.0.1:7000",
    ] {
        let r = RedisCache::cluster_builder([bad]).build();
        eprintln!(
            "{bad}: {:?}",
            r.as_ref().map(|_| ()).map_err(|e| e.to_string())
        );
    }
    let r =
        RedisCache::cluster_builder(["redis://:a@127.0.0.1:1", "redis://:b@127.0.0.1:2"]).build();
    eprintln!(
        "different passwords: {:?}",
        r.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    let r = RedisCache::cluster_builder(["redis://127.0.0.1:1/3"]).build();
    eprintln!(
        "db 3 on a cluster: {:?}",
        r.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    let r = RedisCache::cluster_builder(["redis://127.0.0.1:1", "redis://127.0.0.1:2/5"]).build();
    eprintln!(
        "db 5 on 2nd seed: {:?}",
        r.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    let r = RedisCache::cluster_builder(["redis://127.0.0.1:1/?protocol=3"]).build();
    eprintln!(
        "resp3 url: {:?}",
        r.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_db_number_on_cluster() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("{u}/3")).collect();
    let r = RedisCache::cluster_builder(&urls).prefix("db").build();
    eprintln!(
        "build with /3: {:?}",
        r.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    let Ok(l2) = r else { return };
    let p = l2.try_ping().await;
    eprintln!("ping: {p:?}");
    let id = FlagId::new("x");
    let s = l2.try_set(&id, &def("x", 1), None).await;
    eprintln!(
        "set: {s:?}; got back: {:?}",
        l2.try_get(&id).await.map(|f| f.is_some())
    );
    let key = l2.key_of(&id);
    let port = cluster.primary_of(&key);
    eprintln!(
        "raw GET in db 0 of {key}: {:?}",
        cluster.command(port, &["EXISTS", &key])
    );
    panic!("build() accepted a database number on a cluster (it is silently ignored)");
}

// ---------------------------------------------------------------------------------------------
// Pointing the wrong builder at the wrong server.

struct Plain {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Plain {
    fn start(cluster_enabled: bool) -> Plain {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("flagcache-probe-plain-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir);
        if cluster_enabled {
            cmd.args(["--cluster-enabled", "yes"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis_cluster::redis_server::try_command_on(port, &["PING"]).is_err() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
        Plain { child, port, dir }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_cluster_builder_on_plain_node() {
    let plain = Plain::start(false);
    let l2 = RedisCache::cluster_builder([format!("redis://127.0.0.1:{}", plain.port)])
        .prefix("plain")
        .response_timeout(Duration::from_millis(500))
        .build();
    eprintln!(
        "build: {:?}",
        l2.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    let l2 = l2.unwrap();
    let ping = l2.try_ping().await;
    eprintln!("ping: {ping:?}");
    let id = FlagId::new("x");
    eprintln!("set: {:?}", l2.try_set(&id, &def("x", 1), None).await);
    eprintln!(
        "get: {:?}",
        l2.try_get(&id)
            .await
            .map(|f| f.map(|f| f.definition.version))
    );
    let many = ids("p", 20);
    eprintln!(
        "set_many: {:?}",
        l2.try_set_many(&flags_of(&many, |_| 1), None)
            .await
            .map(|o| o.stored)
    );
    eprintln!(
        "get_many: {:?}",
        l2.try_get_many(&many).await.map(|m| m.len())
    );
    eprintln!("load_all: {:?}", l2.try_load_all().await.map(|m| m.len()));
    eprintln!("clear: {:?}", l2.try_clear().await);
    eprintln!("stats: {:?}", l2.redis_stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_single_node_builder_on_cluster() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let l2 = RedisCache::builder(&cluster.urls()[0])
        .prefix("single")
        .response_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    eprintln!("ping: {:?}", l2.try_ping().await);
    let many = ids("p", 20);
    for id in &many[..6] {
        let port = cluster.primary_of(&l2.key_of(id));
        let r = l2.try_set(id, &def(id.as_str(), 1), None).await;
        eprintln!(
            "set {id} (on {port}, seed {}): {:?}",
            cluster.ports()[0],
            r.as_ref().map_err(|e| (e.kind(), e.to_string()))
        );
    }
    eprintln!(
        "get_many: {:?}",
        l2.try_get_many(&many)
            .await
            .map(|m| m.len())
            .map_err(|e| (e.kind(), e.to_string()))
    );
    eprintln!(
        "set_many: {:?}",
        l2.try_set_many(&flags_of(&many, |_| 1), None)
            .await
            .map(|o| o.stored)
            .map_err(|e| (e.kind(), e.to_string()))
    );
    eprintln!("load_all: {:?}", l2.try_load_all().await.map(|m| m.len()));
    eprintln!("clear: {:?}", l2.try_clear().await);
    eprintln!("stats: {:?}", l2.redis_stats());
}

// ---------------------------------------------------------------------------------------------
// 2. NOSCRIPT on one primary only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_noscript_on_one_primary() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let l2 = cache_t(&cluster, "ns", Duration::from_millis(500));
    let many = ids("n", 600);
    write_all(&l2, &flags_of(&many, |_| 1)).await;
    let victim = cluster.primaries()[1];
    cluster.command(victim, &["SCRIPT", "FLUSH"]);
    let out = l2
        .try_set_many(&flags_of(&many, |_| 2), None)
        .await
        .unwrap();
    eprintln!(
        "after SCRIPT FLUSH on one primary: stored {} refused {}",
        out.stored,
        out.refused.len()
    );
    assert_eq!(out.stored, 600);
    let got = l2.try_get_many(&many).await.unwrap();
    assert!(got.values().all(|f| f.definition.version == 2));
    // Single writes too.
    cluster.command(victim, &["SCRIPT", "FLUSH"]);
    for id in &many[..30] {
        l2.try_set(id, &def(id.as_str(), 3), None).await.unwrap();
    }
    // And with lower versions mixed in: refusals per id across nodes.
    cluster.command(victim, &["SCRIPT", "FLUSH"]);
    let mixed = flags_of(&many, |i| if i % 7 == 0 { 1 } else { 4 });
    let out = l2.try_set_many(&mixed, None).await.unwrap();
    let mut refused: Vec<_> = out.refused.iter().map(|i| i.as_str().to_owned()).collect();
    refused.sort();
    let mut expect: Vec<_> = many
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 == 0)
        .map(|(_, id)| id.as_str().to_owned())
        .collect();
    expect.sort();
    eprintln!("mixed: stored {} refused {}", out.stored, refused.len());
    assert_eq!(refused, expect);
}

// ---------------------------------------------------------------------------------------------
// 1 & 2. Bounds and correctness under faults: a hammer of calls while the cluster misbehaves.

#[derive(Default, Debug)]
struct Report {
    max: std::collections::BTreeMap<&'static str, Duration>,
    ok: std::collections::BTreeMap<&'static str, u64>,
    err: std::collections::BTreeMap<String, u64>,
    /// get/get_many returned a value with another id or version than stored.
    wrong: u64,
    /// get_many answered Ok but left out ids that exist.
    absent: u64,
    absent_examples: Vec<String>,
    over_bound: Vec<String>,
    err_examples: std::collections::BTreeMap<String, String>,
}

impl Report {
    fn note<T>(
        &mut self,
        op: &'static str,
        took: Duration,
        r: &flagcache::Result<T>,
        bound: Duration,
    ) {
        let m = self.max.entry(op).or_default();
        *m = (*m).max(took);
        match r {
            Ok(_) => *self.ok.entry(op).or_default() += 1,
            Err(e) => {
                let k = format!("{op}:{:?}", e.kind());
                *self.err.entry(k.clone()).or_default() += 1;
                if e.kind() != ErrorKind::Timeout {
                    self.err_examples.entry(k).or_insert_with(|| e.to_string());
                }
            }
        }
        if took > bound && self.over_bound.len() < 20 {
            self.over_bound.push(format!(
                "{op} took {took:?} (> {bound:?}): {:?}",
                r.as_ref().map(|_| ()).map_err(|e| e.to_string())
            ));
        }
    }
}

/// Calls every operation again and again for `run`, checking bounds and read correctness.
/// `reads` hold version i+1 for reads[i] and are never written here; `writes` are.
async fn hammer(
    l2: std::sync::Arc<RedisCache>,
    reads: Vec<FlagId>,
    writes: Vec<FlagId>,
    timeout: Duration,
    run: Duration,
) -> Report {
    let expect: HashMap<FlagId, u64> = reads
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i as u64 + 1))
        .collect();
    let slack = Duration::from_millis(100);
    let mut rep = Report::default();
    let started = Instant::now();
    let mut k = 0usize;
    let mut version = 10u64;
    while started.elapsed() < run {
        k += 1;
        version += 1;
        let id = &reads[k % reads.len()];
        let t = Instant::now();
        let r = l2.try_get(id).await;
        rep.note("get", t.elapsed(), &r, timeout + slack);
        if let Ok(Some(f)) = &r {
            if f.definition.id != *id || f.definition.version != expect[id] {
                rep.wrong += 1;
            }
        }
        let t = Instant::now();
        let r = l2.try_get_many(&reads).await;
        // One round trip, plus a slot-map fetch when the map went stale.
        rep.note("get_many", t.elapsed(), &r, timeout * 2 + slack);
        if let Ok(found) = &r {
            for (fid, f) in found {
                if f.definition.id != *fid || expect.get(fid) != Some(&f.definition.version) {
                    rep.wrong += 1;
                }
            }
            if found.len() != reads.len() {
                rep.absent += 1;
                if rep.absent_examples.len() < 5 {
                    let missing: Vec<_> = reads
                        .iter()
                        .filter(|i| !found.contains_key(*i))
                        .take(3)
                        .map(|i| i.as_str().to_owned())
                        .collect();
                    rep.absent_examples.push(format!(
                        "{} of {} found at {:?}; missing e.g. {missing:?}",
                        found.len(),
                        reads.len(),
                        started.elapsed()
                    ));
                }
            }
        }
        let w = &writes[k % writes.len()];
        let t = Instant::now();
        let r = l2.try_set(w, &def(w.as_str(), version), None).await;
        // EVALSHA, EVAL after a NOSCRIPT, and the read-and-replace after a refusal.
        rep.note("set", t.elapsed(), &r, timeout * 2 + slack);
        let batch = flags_of(&writes, |_| version);
        let t = Instant::now();
        let r = l2.try_set_many(&batch, None).await;
        rep.note("set_many", t.elapsed(), &r, timeout * 3 + slack);
        let t = Instant::now();
        let r = l2.try_invalidate_many(&writes[..writes.len() / 4]).await;
        rep.note("invalidate_many", t.elapsed(), &r, timeout * 2 + slack);
        let t = Instant::now();
        let r = l2.try_ping().await;
        rep.note("ping", t.elapsed(), &r, timeout + slack);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rep
}

async fn setup(
    cluster: &RedisCluster,
    prefix: &str,
    timeout: Duration,
    n: usize,
) -> (std::sync::Arc<RedisCache>, Vec<FlagId>, Vec<FlagId>) {
    let seed = cache_t(cluster, prefix, Duration::from_secs(5));
    let tag: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let reads = ids(&format!("{tag}r"), n);
    write_all(&seed, &flags_of(&reads, |i| i as u64 + 1)).await;
    let writes = ids(&format!("{tag}w"), 60);
    let l2 = std::sync::Arc::new(cache_t(cluster, prefix, timeout));
    assert_eq!(l2.try_get_many(&reads).await.unwrap().len(), n);
    (l2, reads, writes)
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Waits until a fresh get_many returns everything; returns how long it took.
async fn until_whole(l2: &RedisCache, reads: &[FlagId], limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if matches!(l2.try_get_many(reads).await, Ok(m) if m.len() == reads.len()) {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// After service is back: the MOVED replies and the round trips of 5 more batches.
async fn steady(cluster: &RedisCluster, l2: &RedisCache, reads: &[FlagId]) -> (u64, u64) {
    let m0 = blocking(|| moved_total(cluster));
    let r0 = l2.redis_stats().round_trips;
    for _ in 0..5 {
        let _ = l2.try_get_many(reads).await;
    }
    (
        blocking(|| moved_total(cluster)) - m0,
        l2.redis_stats().round_trips - r0,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_bounds_all_seeds_dead() {
    // Ports nothing listens on.
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let timeout = Duration::from_millis(50);
    let l2 = std::sync::Arc::new(
        RedisCache::cluster_builder(ports.iter().map(|p| format!("redis://127.0.0.1:{p}")))
            .prefix("dead")
            .response_timeout(timeout)
            .build()
            .unwrap(),
    );
    let rep = hammer(
        l2.clone(),
        ids("d", 50),
        ids("dw", 20),
        timeout,
        Duration::from_secs(3),
    )
    .await;
    eprintln!("{rep:#?}");
    eprintln!(
        "get error: {}",
        l2.try_get(&FlagId::new("x")).await.unwrap_err()
    );
    eprintln!(
        "get_many error: {}",
        l2.try_get_many(&ids("d", 5)).await.unwrap_err()
    );
    eprintln!("stats: {:?}", l2.redis_stats());
    let single = RedisCache::builder(&format!("redis://127.0.0.1:{}", ports[0]))
        .build()
        .unwrap();
    let e = single.try_get(&FlagId::new("x")).await.unwrap_err();
    eprintln!("single-node builder, same dead port: {:?} {e}", e.kind());
    let t = Instant::now();
    let r = l2.try_load_all().await;
    eprintln!(
        "load_all: {:?} in {:?}",
        r.map(|v| v.len()).map_err(|e| e.kind()),
        t.elapsed()
    );
    let t = Instant::now();
    let r = l2.try_clear().await;
    eprintln!("clear: {:?} in {:?}", r.map_err(|e| e.kind()), t.elapsed());
    // A non-routable address (SYN never answered).
    let l3 = RedisCache::cluster_builder(["redis://10.255.255.1:7000"])
        .prefix("dead")
        .response_timeout(timeout)
        .build()
        .unwrap();
    let t = Instant::now();
    let r = l3.try_get_many(&ids("d", 5)).await;
    eprintln!(
        "blackholed seed get_many: {:?} in {:?}",
        r.map(|v| v.len()).map_err(|e| e.kind()),
        t.elapsed()
    );
    assert!(rep.over_bound.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_bounds_all_nodes_paused() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let timeout = Duration::from_millis(50);
    let (l2, reads, writes) = setup(&cluster, "pa", timeout, 300).await;
    let ports = cluster.ports();
    let task = tokio::spawn(hammer(
        l2.clone(),
        reads.clone(),
        writes,
        timeout,
        Duration::from_secs(6),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for &p in &ports {
        blocking(|| cluster.pause(p));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for &p in &ports {
        blocking(|| cluster.resume(p));
    }
    let rep = task.await.unwrap();
    eprintln!("{rep:#?}");
    blocking(|| cluster.wait_ok(Duration::from_secs(20)));
    let back = until_whole(&l2, &reads, Duration::from_secs(10)).await;
    eprintln!(
        "service whole again after {back:?}; stats {:?}",
        l2.redis_stats()
    );
    eprintln!(
        "steady (MOVED, round trips) over 5 batches: {:?}",
        steady(&cluster, &l2, &reads).await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for &p in &ports {
        eprintln!("clients on {p}: {}", blocking(|| clients(&cluster, p)));
    }
    assert!(rep.over_bound.is_empty() && rep.wrong == 0 && rep.absent == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_bounds_primary_paused_no_replica_clusterdown() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let timeout = Duration::from_millis(50);
    let (l2, reads, writes) = setup(&cluster, "pn", timeout, 300).await;
    let victim = cluster.primaries()[0];
    let task = tokio::spawn(hammer(
        l2.clone(),
        reads.clone(),
        writes,
        timeout,
        Duration::from_secs(8),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocking(|| cluster.pause(victim));
    // Beyond cluster-node-timeout: the others mark it failed -> CLUSTERDOWN everywhere.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let others: Vec<u16> = cluster
        .ports()
        .into_iter()
        .filter(|&p| p != victim)
        .collect();
    eprintln!(
        "during: CLUSTER INFO state on {}: {:?}",
        others[0],
        blocking(|| cluster.command(others[0], &["CLUSTER", "INFO"])).clone()
    );
    blocking(|| cluster.resume(victim));
    let rep = task.await.unwrap();
    eprintln!("{rep:#?}");
    blocking(|| cluster.wait_ok(Duration::from_secs(20)));
    let back = until_whole(&l2, &reads, Duration::from_secs(10)).await;
    eprintln!(
        "service whole again after {back:?}; stats {:?}",
        l2.redis_stats()
    );
    eprintln!(
        "steady (MOVED, round trips) over 5 batches: {:?}",
        steady(&cluster, &l2, &reads).await
    );
    for p in cluster.ports() {
        eprintln!("clients on {p}: {}", blocking(|| clients(&cluster, p)));
    }
    assert!(rep.over_bound.is_empty() && rep.wrong == 0 && rep.absent == 0);
}

/// One primary paused (its replica takes over after ~2 s): do the keys of the *healthy*
/// primaries keep being served meanwhile?
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_paused_primary_hurts_healthy_keys() {
    let Some(cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let timeout = Duration::from_millis(50);
    let (l2, reads, _writes) = setup(&cluster, "ph", timeout, 300).await;
    blocking(|| cluster.wait_replicated(Duration::from_secs(10)));
    let victim = cluster.primary_of(&l2.key_of(&reads[0]));
    let healthy: Vec<FlagId> = reads
        .iter()
        .filter(|id| cluster.primary_of(&l2.key_of(id)) != victim)
        .cloned()
        .collect();
    let on_victim: Vec<FlagId> = reads
        .iter()
        .filter(|id| cluster.primary_of(&l2.key_of(id)) == victim)
        .cloned()
        .collect();
    // A mix: a caller keeps reading a victim key too (what makes the link time out).
    let l2b = l2.clone();
    let v = on_victim.clone();
    let bg = tokio::spawn(async move {
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed() < Duration::from_secs(6) {
            let _ = l2b.try_get_many(&v).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocking(|| cluster.pause(victim));
    let paused = Instant::now();
    let mut timeline = Vec::new();
    let (mut ok, mut fail) = (0, 0);
    while paused.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        let r = l2.try_get_many(&healthy).await;
        let good = matches!(&r, Ok(m) if m.len() == healthy.len());
        if good {
            ok += 1
        } else {
            fail += 1
        }
        timeline.push(format!(
            "{:>5}ms {} ({:?})",
            paused.elapsed().as_millis(),
            if good { "ok" } else { "FAIL" },
            t.elapsed()
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = bg.await;
    // Compress the timeline: print state changes.
    let mut last = "";
    for line in &timeline {
        let state = if line.contains("FAIL") { "FAIL" } else { "ok" };
        if state != last {
            eprintln!("{line}");
            last = if state == "FAIL" { "FAIL" } else { "ok" };
        }
    }
    eprintln!(
        "healthy-key batches during the pause: ok {ok}, failed {fail}; stats {:?}",
        l2.redis_stats()
    );
    blocking(|| cluster.resume(victim));
    // Failures only while the cluster itself is down (primary marked FAIL, replica not yet
    // promoted): Redis answers CLUSTERDOWN everywhere then.
    eprintln!("failed batches: {fail}");
}

// ---------------------------------------------------------------------------------------------
// Slot migrations with keys (ASK), driven from a plain thread with raw commands.

fn raw(port: u16, args: &[&str]) -> Reply {
    redis_cluster::redis_server::try_command_on(port, args)
        .unwrap_or_else(|e| panic!("{args:?} on {port}: {e}"))
}

fn raw_id(port: u16) -> String {
    match raw(port, &["CLUSTER", "MYID"]) {
        Reply::Bulk(Some(id)) => String::from_utf8(id).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn keyslot(port: u16, key: &str) -> i64 {
    match raw(port, &["CLUSTER", "KEYSLOT", key]) {
        Reply::Integer(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Moves `slot` with its keys from `src` to `dst`, `step` keys per MIGRATE with `pause`
/// between, and stays `hold` half-way; then assigns it on every primary.
fn migrate_slot(
    slot: i64,
    src: u16,
    dst: u16,
    primaries: &[u16],
    step: usize,
    pause: Duration,
    hold: Duration,
) -> usize {
    let slot_s = slot.to_string();
    let (src_id, dst_id) = (raw_id(src), raw_id(dst));
    let ok = Reply::Status("OK".into());
    assert_eq!(
        raw(dst, &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id]),
        ok
    );
    assert_eq!(
        raw(src, &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id]),
        ok
    );
    let mut moved = 0;
    let mut held = false;
    loop {
        let keys = match raw(
            src,
            &["CLUSTER", "GETKEYSINSLOT", &slot_s, &step.to_string()],
        ) {
            Reply::Array(Some(keys)) => keys
                .into_iter()
                .map(|k| match k {
                    Reply::Bulk(Some(k)) => String::from_utf8(k).unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        if keys.is_empty() {
            break;
        }
        let dst_port = dst.to_string();
        let mut args: Vec<&str> = vec!["MIGRATE", "127.0.0.1", &dst_port, "", "0", "5000", "KEYS"];
        args.extend(keys.iter().map(String::as_str));
        let r = raw(src, &args);
        assert!(
            matches!(&r, Reply::Status(s) if s == "OK" || s == "NOKEY"),
            "MIGRATE: {r:?}"
        );
        moved += keys.len();
        std::thread::sleep(pause);
        if !held && moved > 0 {
            held = true;
            std::thread::sleep(hold);
        }
    }
    assert_eq!(
        raw(dst, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]),
        ok
    );
    assert_eq!(
        raw(src, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]),
        ok
    );
    for &p in primaries {
        if p != src && p != dst {
            let _ = raw(p, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]);
        }
    }
    moved
}

fn owner_of_slot(port: u16, slot: i64) -> u16 {
    let Reply::Array(Some(ranges)) = raw(port, &["CLUSTER", "SLOTS"]) else {
        panic!()
    };
    for r in ranges {
        let Reply::Array(Some(f)) = r else { panic!() };
        if let (Reply::Integer(a), Reply::Integer(b), Reply::Array(Some(n))) = (&f[0], &f[1], &f[2])
        {
            if (*a..=*b).contains(&slot) {
                if let Reply::Integer(p) = n[1] {
                    return p as u16;
                }
            }
        }
    }
    panic!("slot {slot} unowned")
}

/// Spawns a thread that moves `slot` around the primaries `rounds` times.
fn mover(
    slot: i64,
    primaries: Vec<u16>,
    rounds: usize,
    step: usize,
    pause: Duration,
    hold: Duration,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut log = Vec::new();
        for _ in 0..rounds {
            let src = owner_of_slot(primaries[0], slot);
            let dst = *primaries.iter().find(|&&p| p != src).unwrap();
            let t = Instant::now();
            let n = migrate_slot(slot, src, dst, &primaries, step, pause, hold);
            log.push(format!(
                "moved slot {slot} ({n} keys) {src} -> {dst} in {:?}",
                t.elapsed()
            ));
            // Let gossip settle a little.
            std::thread::sleep(Duration::from_millis(100));
        }
        log
    })
}

/// Reads, writes and batches while a hash-tagged prefix's one slot moves with its keys (ASK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_hammer_during_ask_migration() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let timeout = Duration::from_millis(200);
    let prefix = "{mv}";
    let (l2, reads, writes) = setup(&cluster, prefix, timeout, 1500).await;
    let slot = keyslot(cluster.ports()[0], &l2.key_of(&reads[0]));
    let mv = mover(
        slot,
        cluster.primaries(),
        3,
        25,
        Duration::from_millis(10),
        Duration::from_millis(500),
    );
    let rep = hammer(
        l2.clone(),
        reads.clone(),
        writes,
        timeout,
        Duration::from_secs(12),
    )
    .await;
    let log = mv.join().unwrap();
    eprintln!("{log:#?}");
    eprintln!("{rep:#?}");
    let back = until_whole(&l2, &reads, Duration::from_secs(5)).await;
    eprintln!("whole again after {back:?}");
    eprintln!(
        "steady (MOVED, round trips): {:?}",
        steady(&cluster, &l2, &reads).await
    );
    assert!(
        rep.wrong == 0 && rep.absent == 0,
        "wrong {} absent {}",
        rep.wrong,
        rep.absent
    );
}

/// load_all and clear while slots move with their keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_load_all_during_slot_moves() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let prefix = "{lm}";
    let seed = cache_t(&cluster, prefix, Duration::from_secs(5));
    let n = 3000;
    let reads = ids("l", n);
    write_all(&seed, &flags_of(&reads, |i| i as u64 + 1)).await;
    let l2 = RedisCache::cluster_builder(cluster.urls())
        .prefix(prefix)
        .response_timeout(timeout)
        .scan_batch(10)
        .build()
        .unwrap();
    let t = Instant::now();
    assert_eq!(l2.try_load_all().await.unwrap().len(), n);
    eprintln!("a quiet load_all takes {:?}", t.elapsed());
    let slot = keyslot(cluster.ports()[0], &l2.key_of(&reads[0]));
    let step: usize = std::env::var("PROBE_STEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let rounds: usize = std::env::var("PROBE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mv = mover(
        slot,
        cluster.primaries(),
        rounds,
        step,
        Duration::from_millis(20),
        Duration::ZERO,
    );
    let mut results = Vec::new();
    let started = Instant::now();
    while !mv.is_finished() && started.elapsed() < Duration::from_secs(40) {
        let t = Instant::now();
        let r = l2.try_load_all().await;
        results.push(format!(
            "{:?} in {:?}",
            r.as_ref().map(|v| v.len()).map_err(|e| e.to_string()),
            t.elapsed()
        ));
    }
    let log = mv.join().unwrap();
    eprintln!("{log:#?}");
    let mut summary: std::collections::BTreeMap<String, u32> = Default::default();
    for r in &results {
        let k = if r.starts_with("Err") {
            r.split(" in ").next().unwrap().to_owned()
        } else {
            r.split(" in ").next().unwrap().to_owned()
        };
        *summary.entry(k).or_default() += 1;
    }
    eprintln!("load_all results during the moves: {summary:#?}");
    let short = results
        .iter()
        .filter(|r| r.starts_with("Ok(") && !r.starts_with(&format!("Ok({n})")))
        .count();
    eprintln!("load_all Ok but incomplete: {short} of {}", results.len());

    // clear while the slot moves.
    let mut clears: std::collections::BTreeMap<String, u32> = Default::default();
    let mv = mover(
        slot,
        cluster.primaries(),
        rounds,
        step,
        Duration::from_millis(20),
        Duration::ZERO,
    );
    while !mv.is_finished() {
        if seed
            .try_set_many(&flags_of(&reads, |i| i as u64 + 1), None)
            .await
            .is_err()
        {
            continue;
        }
        let r = l2.try_clear().await;
        let left = seed.try_get_many(&reads).await.map(|m| m.len());
        let k = match (&r, &left) {
            (Ok(_), Ok(0)) => "Ok, nothing left".to_owned(),
            (Ok(_), Ok(n)) => format!("OK BUT {n} LEFT"),
            (Err(e), _) => format!("Err {:?}", e.kind()),
            (Ok(_), Err(_)) => "Ok, unknown".to_owned(),
        };
        *clears.entry(k).or_default() += 1;
    }
    mv.join().unwrap();
    eprintln!("clear outcomes while the slot moves: {clears:#?}");
    assert_eq!(short, 0, "load_all returned Ok without every flag");
}

/// A slot held mid-migration (some keys already on the importing node): batches and single
/// reads of its keys, many times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reads_of_a_slot_held_mid_migration() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let prefix = "{hm}";
    let seed = cache_t(&cluster, prefix, Duration::from_secs(5));
    let reads = ids("h", 200);
    write_all(&seed, &flags_of(&reads, |i| i as u64 + 1)).await;
    let l2 = cache_t(&cluster, prefix, Duration::from_millis(200));
    assert_eq!(l2.try_get_many(&reads).await.unwrap().len(), 200);
    let key0 = l2.key_of(&reads[0]);
    let slot = keyslot(cluster.ports()[0], &key0);
    let src = cluster.primary_of(&key0);
    let dst = *cluster.primaries().iter().find(|&&p| p != src).unwrap();
    let (src_id, dst_id) = (raw_id(src), raw_id(dst));
    let s = slot.to_string();
    raw(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id]);
    raw(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id]);
    // Move half of the keys.
    let half: Vec<String> = reads[..100].iter().map(|id| l2.key_of(id)).collect();
    let dport = dst.to_string();
    let mut args: Vec<&str> = vec!["MIGRATE", "127.0.0.1", &dport, "", "0", "5000", "KEYS"];
    args.extend(half.iter().map(String::as_str));
    eprintln!("MIGRATE: {:?}", raw(src, &args));
    cluster.command(dst, &["CONFIG", "RESETSTAT"]);
    cluster.command(src, &["CONFIG", "RESETSTAT"]);

    for (what, batch) in [
        ("all 200", &reads[..]),
        ("10 migrated", &reads[..10]),
        ("10 not migrated", &reads[150..160]),
        ("5 + 5", &reads[95..105]),
        ("1 migrated", &reads[..1]),
        ("2 migrated", &reads[..2]),
    ] {
        let mut outcomes: std::collections::BTreeMap<String, u32> = Default::default();
        for _ in 0..20 {
            let t = Instant::now();
            let r = l2.try_get_many(batch).await;
            let o = match r {
                Ok(m) if m.len() == batch.len() => "ok".to_owned(),
                Ok(m) => format!("OK BUT {} of {}", m.len(), batch.len()),
                Err(e) => format!("{e}"),
            };
            let _ = t;
            *outcomes.entry(o).or_default() += 1;
        }
        eprintln!("get_many {what}: {outcomes:?}");
    }
    let mut single: std::collections::BTreeMap<String, u32> = Default::default();
    for id in &reads[..100] {
        let o = match l2.try_get(id).await {
            Ok(Some(_)) => "ok".to_owned(),
            Ok(None) => "ABSENT".to_owned(),
            Err(e) => e.to_string(),
        };
        *single.entry(o).or_default() += 1;
    }
    eprintln!("try_get of the 100 migrated keys, one at a time: {single:?}");
    // Concurrent single reads.
    let futs = reads[..100].iter().map(|id| l2.try_get(id));
    let mut conc: std::collections::BTreeMap<String, u32> = Default::default();
    for r in futures_util::future::join_all(futs).await {
        let o = match r {
            Ok(Some(_)) => "ok".to_owned(),
            Ok(None) => "ABSENT".to_owned(),
            Err(e) => e.to_string(),
        };
        *conc.entry(o).or_default() += 1;
    }
    eprintln!("try_get of the 100 migrated keys, concurrently: {conc:?}");
    for p in [src, dst] {
        eprintln!(
            "node {p}: ASK {} MOVED {} asking calls {}",
            node_stat(&cluster, p, "errorstats", "errorstat_ASK"),
            node_stat(&cluster, p, "errorstats", "errorstat_MOVED"),
            node_stat(&cluster, p, "commandstats", "cmdstat_asking")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. The backplane on a cluster.

fn instance(cluster: &RedisCluster, db: &sources::Db, prefix: &str) -> TieredCache {
    TieredCache::builder()
        .l2(cache_t(cluster, prefix, Duration::from_millis(200)))
        .source(db.source.clone())
        .l1_ttl(Duration::from_secs(600))
        .build()
        .unwrap()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_long(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let t = Instant::now();
    while !done() {
        if t.elapsed() > limit {
            eprintln!("gave up waiting for {what} after {limit:?}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Some(t.elapsed())
}

/// Writes f at `version` through `a`, then checks that `b`'s L1 drops its older copy.
async fn notice_reaches(
    a: &TieredCache,
    b: &TieredCache,
    db: &sources::Db,
    version: u64,
) -> Option<Duration> {
    let f = FlagId::new("f");
    // B holds a copy.
    let _ = b.get(&f).await;
    db.source.upsert(&sources::def("f", version)).unwrap();
    a.try_set(&f, sources::def("f", version), None).await.ok()?;
    wait_long("B to drop its copy", Duration::from_secs(3), || {
        b.l1()
            .get_now("f")
            .is_none_or(|c| c.definition.version == version)
    })
    .await
}

/// Any node of the cluster dying (here a replica of another shard) ends every instance's
/// sharded subscription (each subscription holds a connection to every node, all feeding the
/// same push sink): a re-subscription and a full L1 revalidation per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_backplane_unrelated_node_death() {
    let Some(mut cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let db = sources::Db::new("probe-bp-unrelated");
    db.source.upsert(&sources::def("f", 1)).unwrap();
    let (a, b) = (
        instance(&cluster, &db, "fleet"),
        instance(&cluster, &db, "fleet"),
    );
    let _task = b.start_backplane().unwrap();
    wait_long("subscribed", Duration::from_secs(5), || {
        b.tiered_stats().backplane_subscribed
    })
    .await
    .unwrap();
    assert!(b.get(&FlagId::new("f")).await.is_some());
    eprintln!(
        "baseline notice: {:?}",
        notice_reaches(&a, &b, &db, 2).await
    );
    let channel = "{fleet}:flagcache:v1:events";
    let shard = cluster.primary_of(channel);
    let primaries = cluster.primaries();
    let unrelated = cluster
        .ports()
        .into_iter()
        .find(|&p| {
            !primaries.contains(&p)
                && !matches!(cluster.command(p, &["INFO", "replication"]), Reply::Bulk(Some(ref b)) if String::from_utf8_lossy(b).contains(&format!("master_port:{shard}")))
        })
        .unwrap();
    let s0 = b.tiered_stats();
    blocking(|| cluster.kill(unrelated));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s1 = b.tiered_stats();
    eprintln!(
        "killing replica {unrelated} of another shard (channel shard {shard}): subscriptions {} -> {}, revalidations {} -> {}",
        s0.subscriptions, s1.subscriptions, s0.revalidations, s1.revalidations
    );
    blocking(|| cluster.restart(unrelated));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s2 = b.tiered_stats();
    eprintln!(
        "restarting it: subscriptions {} -> {}, revalidations {} -> {}",
        s1.subscriptions, s2.subscriptions, s1.revalidations, s2.revalidations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_backplane_many_resubscriptions_leak() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let db = sources::Db::new("probe-bp-leak");
    db.source.upsert(&sources::def("f", 1)).unwrap();
    let b = instance(&cluster, &db, "leak");
    let _task = b.start_backplane().unwrap();
    wait_long("subscribed", Duration::from_secs(5), || {
        b.tiered_stats().backplane_subscribed
    })
    .await
    .unwrap();
    let channel = "{leak}:flagcache:v1:events";
    let shard = cluster.primary_of(channel);
    let metrics = tokio::runtime::Handle::current().metrics();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = |c: &RedisCluster| c.ports().iter().map(|&p| clients(c, p)).collect::<Vec<_>>();
    let before = (count(&cluster), metrics.num_alive_tasks(), rss_kib());
    eprintln!(
        "before: clients per node {:?}, tasks {}, rss {} KiB",
        before.0, before.1, before.2
    );
    for i in 0..40 {
        let s0 = b.tiered_stats().subscriptions;
        blocking(|| cluster.command(shard, &["CLIENT", "KILL", "TYPE", "pubsub"]));
        if wait_long("re-subscribed", Duration::from_secs(10), || {
            let s = b.tiered_stats();
            s.subscriptions > s0 && s.backplane_subscribed
        })
        .await
        .is_none()
        {
            eprintln!("round {i}: no re-subscription");
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = (count(&cluster), metrics.num_alive_tasks(), rss_kib());
    eprintln!(
        "after 40 re-subscriptions: clients per node {:?}, tasks {}, rss {} KiB; stats {:?}",
        after.0,
        after.1,
        after.2,
        b.tiered_stats()
    );
}

/// 100k SPUBLISH from redis-cli at a subscriber whose notices take a while to apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_backplane_flood() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let db = sources::Db::new("probe-bp-flood");
    db.source.upsert(&sources::def("f", 1)).unwrap();
    let b = instance(&cluster, &db, "flood");
    // Many L1 entries so a revalidation costs something.
    let warm: Vec<FlagId> = (0..2000).map(|i| FlagId::new(format!("w{i}"))).collect();
    for id in &warm {
        db.source.upsert(&sources::def(id.as_str(), 1)).unwrap();
    }
    let _ = b.get_many(&warm).await;
    let _task = b.start_backplane().unwrap();
    wait_long("subscribed", Duration::from_secs(5), || {
        b.tiered_stats().backplane_subscribed
    })
    .await
    .unwrap();
    let channel = "{flood}:flagcache:v1:events";
    let shard = cluster.primary_of(channel);
    // A valid notice of another origin with 400 ids, each making B drop and fence.
    let ids_json: Vec<String> = (0..400).map(|i| format!("\"w{}\"", i % 2000)).collect();
    let vers: Vec<String> = (0..400).map(|_| "9".to_owned()).collect();
    let payload = format!(
        "{{\"v\":1,\"origin\":\"flooder\",\"action\":\"set\",\"ids\":[{}],\"versions\":[{}]}}",
        ids_json.join(","),
        vers.join(",")
    );
    let mut script = Vec::new();
    for _ in 0..100_000 {
        let args = ["SPUBLISH", channel, &payload];
        script.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            script.extend_from_slice(format!("${}\r\n{}\r\n", a.len(), a).as_bytes());
        }
    }
    let path = std::env::temp_dir().join(format!("probe-flood-{}.resp", std::process::id()));
    std::fs::write(&path, &script).unwrap();
    let rss0 = rss_kib();
    let s0 = b.tiered_stats();
    let t = Instant::now();
    let port = shard.to_string();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("redis-cli -p {port} --pipe < {}", path.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = rss0;
    loop {
        peak = peak.max(rss_kib());
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent_in = t.elapsed();
    for _ in 0..40 {
        peak = peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_file(&path);
    let s1 = b.tiered_stats();
    eprintln!(
        "flood of 100k sent in {sent_in:?}: rss {rss0} -> peak {peak} KiB -> {} KiB; notices_received {} -> {}, subscriptions {} -> {}, revalidations {} -> {}, subscribed {}",
        rss_kib(),
        s0.notices_received,
        s1.notices_received,
        s0.subscriptions,
        s1.subscriptions,
        s0.revalidations,
        s1.revalidations,
        s1.backplane_subscribed
    );
    eprintln!(
        "server-side client output buffers on {shard}: {:?}",
        match cluster.command(shard, &["CLIENT", "LIST", "TYPE", "pubsub"]) {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            o => format!("{o:?}"),
        }
    );
}

/// The channel's shard primary hangs (SIGSTOP, kernel still up) and its replica takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_backplane_hung_shard_primary_fails_over() {
    let Some(cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let db = sources::Db::new("probe-bp-hung");
    db.source.upsert(&sources::def("f", 1)).unwrap();
    let (a, b) = (
        instance(&cluster, &db, "fleet"),
        instance(&cluster, &db, "fleet"),
    );
    let _task = b.start_backplane().unwrap();
    wait_long("subscribed", Duration::from_secs(5), || {
        b.tiered_stats().backplane_subscribed
    })
    .await
    .unwrap();
    assert!(b.get(&FlagId::new("f")).await.is_some());
    eprintln!(
        "baseline notice: {:?}",
        notice_reaches(&a, &b, &db, 2).await
    );
    let channel = "{fleet}:flagcache:v1:events";
    let shard = cluster.primary_of(channel);
    let s0 = b.tiered_stats();
    blocking(|| cluster.pause(shard));
    let paused = Instant::now();
    let mut saw_unsubscribed = false;
    while paused.elapsed() < Duration::from_secs(8) {
        saw_unsubscribed |= !b.tiered_stats().backplane_subscribed;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s1 = b.tiered_stats();
    let new_shard = cluster.primary_of(channel);
    eprintln!(
        "8 s after pausing {shard}: new shard primary {new_shard}; B subscribed {} (was ever unsubscribed: {saw_unsubscribed}), subscriptions {} -> {}, revalidations {} -> {}",
        s1.backplane_subscribed,
        s0.subscriptions,
        s1.subscriptions,
        s0.revalidations,
        s1.revalidations
    );
    eprintln!(
        "SHARDNUMSUB on the new primary: {:?}",
        cluster.command(new_shard, &["PUBSUB", "SHARDNUMSUB", channel])
    );
    let mut delivered = Vec::new();
    for v in 3..8 {
        delivered.push(notice_reaches(&a, &b, &db, v).await.is_some());
    }
    eprintln!(
        "notices delivered after the failover: {delivered:?}; A sent {}",
        a.tiered_stats().notices_sent
    );
    let deaf = delivered.iter().all(|d| !d);
    blocking(|| cluster.resume(shard));
    let t = Instant::now();
    let back = wait_long(
        "a notice after resuming the old primary",
        Duration::from_secs(10),
        || b.tiered_stats().subscriptions > s1.subscriptions,
    )
    .await;
    eprintln!(
        "after resuming the old primary: re-subscribed after {back:?} ({:?})",
        t.elapsed()
    );
    assert!(
        !deaf,
        "B stayed 'subscribed' but deaf after its shard primary hung and failed over"
    );
}

/// A primary hangs (SIGSTOP) and its replica takes over, while the cache keeps serving other
/// requests successfully in between (a busy service): do the hung shard's keys come back?
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_hung_primary_failover_with_interleaved_successes() {
    let Some(cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let timeout = Duration::from_millis(200);
    let (l2, reads, _writes) = setup(&cluster, "hung", timeout, 300).await;
    blocking(|| cluster.wait_replicated(Duration::from_secs(10)));
    let victim = cluster.primary_of(&l2.key_of(&reads[0]));
    let on_victim = reads[0].clone();
    let healthy = reads
        .iter()
        .find(|id| cluster.primary_of(&l2.key_of(id)) != victim)
        .unwrap()
        .clone();
    let kill = std::env::var("PROBE_KILL").is_ok();
    let mut cluster = cluster;
    if kill {
        blocking(|| cluster.kill(victim));
    } else {
        blocking(|| cluster.pause(victim));
    }
    let paused = Instant::now();
    let mut timeline: Vec<String> = Vec::new();
    let mut last = String::new();
    let mut victim_ok_after_failover = false;
    let mut failed_over_at = None;
    while paused.elapsed() < Duration::from_secs(15) {
        let r = l2.try_get(&on_victim).await;
        let state = match &r {
            Ok(Some(_)) => "ok".to_owned(),
            Ok(None) => "ABSENT".to_owned(),
            Err(e) => format!("{:?}", e.kind()),
        };
        // A request that succeeds: another shard.
        let _ = l2.try_get(&healthy).await;
        if state != last {
            timeline.push(format!(
                "{:>6}ms victim key: {state}",
                paused.elapsed().as_millis()
            ));
            last = state.clone();
        }
        if failed_over_at.is_none() && paused.elapsed() > Duration::from_secs(1) {
            let now = blocking(|| cluster.primary_of(&l2.key_of(&on_victim)));
            if now != victim {
                failed_over_at = Some(paused.elapsed());
            }
        }
        if failed_over_at.is_some() && state == "ok" {
            victim_ok_after_failover = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{timeline:#?}");
    eprintln!(
        "replica promoted by {failed_over_at:?}; stats {:?}",
        l2.redis_stats()
    );
    let fresh = cache_t(&cluster, "hung", timeout);
    eprintln!(
        "a fresh cache reads it: {:?}",
        fresh.try_get(&on_victim).await.map(|f| f.is_some())
    );
    if kill {
        assert!(victim_ok_after_failover);
        return;
    }
    blocking(|| cluster.resume(victim));
    let t = Instant::now();
    let mut back = None;
    while t.elapsed() < Duration::from_secs(10) {
        if matches!(l2.try_get(&on_victim).await, Ok(Some(_))) {
            back = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("after resuming the hung node: served again after {back:?}");
    assert!(
        victim_ok_after_failover,
        "the failed-over shard's keys never came back while other requests succeeded"
    );
}

fn pubsub_clients(cluster: &RedisCluster) -> Vec<(u16, usize, u64)> {
    cluster
        .ports()
        .into_iter()
        .filter_map(
            |p| match cluster.try_command(p, &["CLIENT", "LIST", "TYPE", "pubsub"]) {
                Ok(Reply::Bulk(Some(b))) => Some((
                    p,
                    String::from_utf8_lossy(&b).lines().count(),
                    node_stat(cluster, p, "commandstats", "cmdstat_ping"),
                )),
                _ => None,
            },
        )
        .collect()
}

/// Kill the shard primary (B re-subscribes during the failover), restart it (it comes back as
/// a replica), then hang the new shard primary: does B's health check notice?
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_backplane_health_check_after_failover() {
    let Some(mut cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let db = sources::Db::new("probe-bp-hc");
    db.source.upsert(&sources::def("f", 1)).unwrap();
    let b = instance(&cluster, &db, "fleet");
    let _task = b.start_backplane().unwrap();
    wait_long("subscribed", Duration::from_secs(5), || {
        b.tiered_stats().backplane_subscribed
    })
    .await
    .unwrap();
    let channel = "{fleet}:flagcache:v1:events";
    let p = cluster.primary_of(channel);
    let s0 = b.tiered_stats().subscriptions;
    blocking(|| cluster.kill(p));
    wait_long("re-subscribed", Duration::from_secs(15), || {
        let s = b.tiered_stats();
        s.subscriptions > s0 && s.backplane_subscribed
    })
    .await;
    blocking(|| cluster.wait_ok(Duration::from_secs(20)));
    blocking(|| cluster.restart(p));
    blocking(|| cluster.wait_ok(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = cluster.primary_of(channel);
    eprintln!(
        "old shard primary {p} (now a replica), new {r}; subscriptions {}",
        b.tiered_stats().subscriptions
    );
    eprintln!(
        "pubsub clients / PING calls per node: {:?}",
        pubsub_clients(&cluster)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "3 s later, PING calls per node: {:?}",
        pubsub_clients(&cluster)
    );
    let s1 = b.tiered_stats();
    blocking(|| cluster.pause(r));
    let paused = Instant::now();
    let seen = wait_long(
        "B to notice the hung shard primary",
        Duration::from_secs(10),
        || {
            let s = b.tiered_stats();
            !s.backplane_subscribed || s.subscriptions > s1.subscriptions
        },
    )
    .await;
    eprintln!(
        "B noticed after {seen:?} ({:?} since pause)",
        paused.elapsed()
    );
    blocking(|| cluster.resume(r));
    assert!(
        seen.is_some(),
        "B's health check never noticed its shard primary hang"
    );
}

/// CLUSTERDOWN: one slot unassigned everywhere (cluster-require-full-coverage yes: the whole
/// cluster refuses), then a gap with full coverage off; then the slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_clusterdown_and_gaps() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let timeout = Duration::from_millis(100);
    let (l2, reads, writes) = setup(&cluster, "cd", timeout, 300).await;
    let key = l2.key_of(&reads[0]);
    let owner = cluster.primary_of(&key);
    let slot = keyslot(owner, &key).to_string();
    let owner_id = myid(&cluster, owner);
    let ports = cluster.ports();
    for &p in &ports {
        cluster.command(p, &["CLUSTER", "DELSLOTS", &slot]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rep = hammer(
        l2.clone(),
        reads.clone(),
        writes.clone(),
        timeout,
        Duration::from_secs(2),
    )
    .await;
    eprintln!("full coverage required, one slot unassigned: {rep:#?}");
    // Coverage not required: only the slot's keys are refused.
    for &p in &ports {
        cluster.command(p, &["CONFIG", "SET", "cluster-require-full-coverage", "no"]);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fresh = cache_t(&cluster, "cd", timeout);
    let r = fresh.try_get_many(&reads).await; // its map has the gap
    eprintln!(
        "coverage off, gap: get_many of 300 (one id in the gap): {:?}",
        r.as_ref().map(|m| m.len()).map_err(|e| e.to_string())
    );
    let without: Vec<FlagId> = reads
        .iter()
        .filter(|id| keyslot(owner, &l2.key_of(id)).to_string() != slot)
        .cloned()
        .collect();
    eprintln!(
        "coverage off, gap: get_many of the {} others: {:?}",
        without.len(),
        fresh
            .try_get_many(&without)
            .await
            .map(|m| m.len())
            .map_err(|e| e.to_string())
    );
    eprintln!(
        "single get in the gap: {:?}",
        fresh
            .try_get(&reads[0])
            .await
            .map_err(|e| (e.kind(), e.to_string()))
    );
    eprintln!(
        "set in the gap: {:?}",
        fresh
            .try_set(&reads[0], &def(reads[0].as_str(), 1), None)
            .await
            .map_err(|e| (e.kind(), e.to_string()))
    );
    // The slot comes back.
    cluster.command(owner, &["CLUSTER", "ADDSLOTS", &slot]);
    for &p in &ports {
        if p != owner {
            let _ = cluster.command(p, &["CLUSTER", "SETSLOT", &slot, "NODE", &owner_id]);
        }
    }
    cluster.wait_ok(Duration::from_secs(20));
    for (name, c) in [("hammered", &*l2), ("map-with-gap", &fresh)] {
        let back = until_whole(c, &reads, Duration::from_secs(10)).await;
        eprintln!(
            "{name}: whole again after {back:?}; steady {:?}",
            steady(&cluster, c, &reads).await
        );
    }
}

/// A primary without replica restarted empty: data loss, then service without rebuilding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_primary_restarted_empty() {
    let Some(mut cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let timeout = Duration::from_millis(100);
    let (l2, reads, writes) = setup(&cluster, "re", timeout, 300).await;
    let victim = cluster.primary_of(&l2.key_of(&reads[0]));
    blocking(|| cluster.kill(victim));
    let rep = hammer(
        l2.clone(),
        reads.clone(),
        writes.clone(),
        timeout,
        Duration::from_secs(3),
    )
    .await;
    eprintln!(
        "while killed: max {:?} err {:?} examples {:?} over_bound {:?}",
        rep.max, rep.err, rep.err_examples, rep.over_bound
    );
    blocking(|| cluster.restart(victim));
    blocking(|| cluster.wait_ok(Duration::from_secs(20)));
    let t = Instant::now();
    let mut served = None;
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(m) = l2.try_get_many(&reads).await {
            served = Some((m.len(), t.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let on_victim = reads
        .iter()
        .filter(|id| cluster.primary_of(&l2.key_of(id)) == victim)
        .count();
    eprintln!(
        "after restart: get_many served {served:?} (expected {} = 300 - {on_victim} lost)",
        300 - on_victim
    );
    let w = &writes[0];
    eprintln!(
        "write after restart: {:?}",
        l2.try_set(w, &def(w.as_str(), 999), None).await
    );
    l2.try_set(&reads[0], &def(reads[0].as_str(), 1), None)
        .await
        .unwrap();
    eprintln!("steady {:?}", steady(&cluster, &l2, &reads).await);
    for p in cluster.ports() {
        eprintln!("clients on {p}: {}", blocking(|| clients(&cluster, p)));
    }
}

/// set_many refusals per id when ids span nodes and a group falls back (stale map).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_set_many_refusals_with_fallback() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let writer = cache_t(&cluster, "rf", Duration::from_secs(5));
    let l2 = cache_t(&cluster, "rf", Duration::from_millis(500));
    let many = ids("r", 600);
    l2.try_get_many(&many[..3]).await.unwrap(); // map fetched
    let key0 = l2.key_of(&many[0]);
    let src = cluster.primary_of(&key0);
    let dst = *cluster.primaries().iter().find(|&&p| p != src).unwrap();
    cluster.move_empty_slot(&key0, dst);
    write_all(&writer, &flags_of(&many, |_| 5)).await;
    let mixed = flags_of(&many, |i| if i % 7 == 0 { 1 } else { 6 });
    let m0 = moved_total(&cluster);
    let out = l2.try_set_many(&mixed, None).await.unwrap();
    eprintln!("MOVED during set_many: {}", moved_total(&cluster) - m0);
    let mut refused: Vec<String> = out.refused.iter().map(|i| i.as_str().to_owned()).collect();
    refused.sort();
    let mut expect: Vec<String> = many
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 == 0)
        .map(|(_, id)| id.as_str().to_owned())
        .collect();
    expect.sort();
    eprintln!(
        "stored {} refused {} (expected {} refused)",
        out.stored,
        refused.len(),
        expect.len()
    );
    assert_eq!(refused, expect);
    let got = l2.try_get_many(&many).await.unwrap();
    for (i, id) in many.iter().enumerate() {
        let want = if i % 7 == 0 { 5 } else { 6 };
        assert_eq!(got[id].definition.version, want, "{id}");
    }
}

/// Hash-tagged and nested prefixes: clear and load_all touch only their own keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_hash_tag_prefixes() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let prefixes = [
        "{t}",
        "{t}x",
        "{t}:flag:x",
        "t",
        "a}b{c",
        "}{",
        "{}",
        "{t",
        "t}",
    ];
    let caches: Vec<RedisCache> = prefixes
        .iter()
        .map(|p| cache_t(&cluster, p, Duration::from_secs(2)))
        .collect();
    let many = ids("h", 200);
    for c in &caches {
        write_all(c, &flags_of(&many, |_| 1)).await;
    }
    for (i, c) in caches.iter().enumerate() {
        let all = c.try_load_all().await.unwrap();
        let mut uniq: Vec<_> = all.iter().map(|f| f.id.as_str().to_owned()).collect();
        uniq.dedup();
        eprintln!(
            "{:>10}: load_all {} (unique {})",
            prefixes[i],
            all.len(),
            uniq.len()
        );
        assert_eq!(all.len(), 200);
    }
    let removed = caches[0].try_clear().await.unwrap();
    eprintln!("clear of {{t}} removed {removed}");
    for (i, c) in caches.iter().enumerate() {
        let n = c.try_get_many(&many).await.unwrap().len();
        eprintln!("{:>10}: {} left", prefixes[i], n);
        assert_eq!(n, if i == 0 { 0 } else { 200 });
    }
}

/// 6. A million ids in one get_many: time and peak memory, cluster vs one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_million_ids() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let n: usize = std::env::var("PROBE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let many = ids("m", n);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let measure = |name: &'static str, peak: std::sync::Arc<std::sync::atomic::AtomicU64>| {
        let base = rss_kib();
        peak.store(base, std::sync::atomic::Ordering::Relaxed);
        move |r: String, took: Duration| {
            eprintln!(
                "{name}: {r} in {took:?}; rss {base} KiB -> peak {} KiB (+{} MiB) -> now {} KiB",
                peak.load(std::sync::atomic::Ordering::Relaxed),
                (peak.load(std::sync::atomic::Ordering::Relaxed) - base) / 1024,
                rss_kib()
            )
        }
    };
    let l2 = cache_t(&cluster, "mil", Duration::from_secs(30));
    let done = measure("cluster get_many", peak.clone());
    let t = Instant::now();
    let r = l2.try_get_many(&many).await;
    done(
        format!("{:?}", r.map(|m| m.len()).map_err(|e| e.to_string())),
        t.elapsed(),
    );
    let short = cache_t(&cluster, "mil", Duration::from_millis(50));
    let done = measure("cluster get_many, 50 ms timeout", peak.clone());
    let t = Instant::now();
    let r = short.try_get_many(&many).await;
    done(
        format!("{:?}", r.map(|m| m.len()).map_err(|e| e.to_string())),
        t.elapsed(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "2 s after the timed-out batch: rss {} KiB; clients {:?}",
        rss_kib(),
        cluster
            .ports()
            .iter()
            .map(|&p| clients(&cluster, p))
            .collect::<Vec<_>>()
    );
    if let Some(server) = redis_cluster::redis_server::RedisServer::start() {
        let one = RedisCache::builder(&server.url())
            .prefix("mil")
            .response_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let done = measure("single node get_many", peak.clone());
        let t = Instant::now();
        let r = one.try_get_many(&many).await;
        done(
            format!("{:?}", r.map(|m| m.len()).map_err(|e| e.to_string())),
            t.elapsed(),
        );
        let one = RedisCache::builder(&server.url())
            .prefix("mil")
            .response_timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let done = measure("single node get_many, 50 ms timeout", peak.clone());
        let t = Instant::now();
        let r = one.try_get_many(&many).await;
        done(
            format!("{:?}", r.map(|m| m.len()).map_err(|e| e.to_string())),
            t.elapsed(),
        );
        let few = &many[..100_000];
        let t = Instant::now();
        let r = one.try_get_many(few).await;
        eprintln!(
            "single node 100k, 50 ms: {:?} in {:?}",
            r.map(|m| m.len()).map_err(|e| e.kind()),
            t.elapsed()
        );
        let t = Instant::now();
        let r = short.try_get_many(few).await;
        eprintln!(
            "cluster 100k, 50 ms: {:?} in {:?}",
            r.map(|m| m.len()).map_err(|e| e.kind()),
            t.elapsed()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
}
