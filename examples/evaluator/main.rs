//! A flag evaluator on every core, reading flags through three layers: L1 in process, L2 in
//! Redis, L3 a real SQLite database.
//!
//! It shows what `flagcache` is built for: a service evaluating feature flags for a stream of
//! users, each evaluation a lock-free, allocation-free borrow of the definition from L1
//! ([`TieredCache::get_with`]) handed to [`FlagDefinition::evaluate`], while the flags change
//! underneath it.
//!
//! - L3 is a SQLite file (`target/flagcache-demo.db` by default), created on the first run with
//!   10 000 seeded demo flags (kill switches, percentage rollouts, A/B/C experiments, numeric
//!   and JSON configs, targeting on country, plan, email, app version, age and seats). The
//!   evaluators' cache loads all of it at start (`warm_up`).
//! - One OS thread per core evaluates Zipf-skewed flags (about 80 % of the traffic on 20 % of
//!   the flags, 1 % misspelled ids, which the negative cache answers) for users from a prepared
//!   pool, timing every 64th.
//! - The refresh task reloads the flags the evaluators read before they expire (from L2, or
//!   SQLite for what L2 lacks), so the hot path never waits and rarely misses.
//! - A writer, standing for an admin service with its own cache, changes a few flags a second
//!   in SQLite and through its cache (L2, when there is one); an observer measures how long each
//!   change takes to reach the evaluators' L1. With Redis the change arrives over the
//!   backplane (pub/sub) within milliseconds; without it, with the next refresh, within the L1
//!   TTL (`--l1-ttl`, 2 s by default).
//! - A reporter prints throughput and the layers' counters every second, then a summary with
//!   latency percentiles, per-layer stats, change propagation and the results by reason.
//!
//! L2 is the Redis Cluster whose nodes `REDIS_CLUSTER` lists (comma-separated URLs; one live
//! node is enough), or the Redis at `REDIS_URL`, or else a private `redis-server` the example
//! starts on a free loopback port (and kills at exit) when one is on the `PATH`; with none of
//! them (or `--no-redis`) it runs on L1 and L3. No Redis is needed. Run it with
//!
//! ```sh
//! cargo run --release --example evaluator                   # 5 s, 10 000 flags
//! cargo run --release --example evaluator -- --seconds 10 --l1-ttl 5
//! cargo run --release --example evaluator -- --db /tmp/flags.db --flags 50000  # a new database
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example evaluator   # your Redis
//! REDIS_CLUSTER=redis://127.0.0.1:7000,redis://127.0.0.1:7001 \
//!     cargo run --release --example evaluator                               # a cluster
//! cargo run --release --example evaluator -- --no-redis                    # L1 and L3 only
//! ```

// Example code is outside the crate's loom facade rule (clippy.toml bans std atomics there).
#![allow(clippy::disallowed_types)]

mod database;
mod histogram;
#[path = "../../tests/support/redis_server.rs"]
mod redis_server;
#[path = "../common/sqlite_source.rs"]
mod sqlite_source;
mod workload;

use crossbeam_utils::CachePadded;
use database::Database;
use flagcache::{EvalContext, FlagCache, FlagDefinition, FlagId, FlagSource, Reason, TieredCache};
use histogram::Histogram;
use sqlite_source::SqliteSource;
use std::error::Error;
use std::hint::black_box;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use workload::Rng;

const SEED: u64 = 0x5eed_f1a6;
const USERS: usize = 4_096;
const TYPOS: usize = 256;
/// The share of lookups for an id that does not exist.
const MISS_RATE: f64 = 0.01;
/// Keys drawn up front per thread (a power of two: the loop masks instead of dividing).
const TRACE_LEN: usize = 1 << 16;
/// Evaluations between two publications of a thread's count (and two checks of `stop`).
const BATCH: u64 = 1_024;
/// One evaluation in this many is timed (`Instant::now` costs about as much as a hit).
const SAMPLE_EVERY: u64 = 64;

struct Config {
    seconds: f64,
    flags: usize,
    threads: usize,
    db: PathBuf,
    l1_ttl: Duration,
    changes_per_sec: f64,
    redis_url: Option<String>,
    /// The seed nodes of a Redis Cluster (`REDIS_CLUSTER`), used instead of `redis_url`.
    redis_cluster: Option<Vec<String>>,
    /// Start a private `redis-server` for L2 when `REDIS_URL` is not set.
    private_redis: bool,
    /// Serve the caches' metrics as Prometheus text here (`--metrics-addr`).
    metrics_addr: Option<std::net::SocketAddr>,
    /// L3 on this PostgreSQL instead of SQLite (`POSTGRES_URL`, or `--postgres`).
    postgres_url: Option<String>,
}

/// What the workers share: all read-only but `stop` and their own `progress` slot.
struct Shared {
    cache: TieredCache,
    /// The real ids, then the misspelled ones.
    keys: Vec<Box<str>>,
    flags: usize,
    /// Changes the writer made that the observer has not yet seen in the evaluators' L1.
    pending: Mutex<Vec<Change>>,
    /// How long each change took to reach the evaluators' L1.
    propagation: Mutex<Histogram>,
    changes_written: AtomicU64,
    users: Vec<EvalContext>,
    stop: AtomicBool,
    /// Each thread's evaluation count, published every `BATCH`; padded so threads do not
    /// share a cache line.
    progress: Vec<CachePadded<AtomicU64>>,
}

/// A flag version the writer stored, and when.
struct Change {
    id: FlagId,
    version: u64,
    at: Instant,
}

/// One thread's results.
#[derive(Default)]
struct WorkerReport {
    evaluations: u64,
    elapsed: Duration,
    latency: Histogram,
    /// Counts by [`outcome_index`]: rule match, rollout, default, disabled, not found.
    outcomes: [u64; 5],
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evaluator: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(mut config: Config) -> Result<(), Box<dyn Error>> {
    // L2: `REDIS_URL`, or else a private redis-server this example starts (and kills at exit)
    // when one is on the PATH; without either, L1 and L3 only.
    let private_redis = (cfg!(feature = "redis")
        && config.redis_url.is_none()
        && config.redis_cluster.is_none()
        && config.private_redis)
        .then(redis_server::RedisServer::start)
        .flatten();
    let l2_label = match (&config.redis_url, &private_redis) {
        _ if config.redis_cluster.is_some() => "the Redis Cluster at REDIS_CLUSTER".to_owned(),
        (Some(_), _) => "Redis at REDIS_URL".to_owned(),
        (None, Some(server)) => format!(
            "a private redis-server on 127.0.0.1:{} (started by this example; set REDIS_URL to use yours)",
            server.port()
        ),
        (None, None) if !config.private_redis => "off (--no-redis)".to_owned(),
        (None, None) => "off (no REDIS_URL, and no redis-server on the PATH)".to_owned(),
    };
    if let Some(server) = &private_redis {
        config.redis_url = Some(server.url());
    }
    let config = &config;
    // The runtime hosts the caches' background tasks, the Redis connection, SQLite's blocking
    // pool and the writer; the evaluators are plain OS threads, as in a service whose request
    // handlers call the cache directly.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flagcache-bg")
        .enable_all()
        .build()?;
    let _entered = runtime.enter();

    let source = runtime.block_on(open_database(config))?;
    let defs = runtime.block_on(source.load_all())?;
    let flags = defs.len();
    let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    let mut keys: Vec<Box<str>> = ids.iter().map(|&id| id.into()).collect();
    keys.extend(
        workload::typos(&ids, TYPOS, SEED + 1)
            .into_iter()
            .map(Into::into),
    );

    let cache = tiered(config, &source, flags)?;
    let admin = tiered(config, &source, flags)?;
    let warmed = runtime.block_on(cache.warm_up())?;
    // A database that announces its changes (PostgreSQL): the cache follows them.
    let _feed = match source.has_change_feed() {
        true => Some(cache.start_change_feed()?),
        false => None,
    };
    // Reloads the flags the evaluators read before they expire, in batches.
    let _refresh = cache.start_refresh_task(Duration::from_millis(250))?;
    let _metrics = serve_metrics(config, &cache)?;
    // With L2, other instances' writes arrive over Redis pub/sub within milliseconds.
    let _backplane = match config.redis_url.is_some() || config.redis_cluster.is_some() {
        true => Some(cache.start_backplane()?),
        false => None,
    };
    println!(
        "L1 in process (TTL {:?}), L2 {l2_label}, L3 {} ({warmed} flags loaded into L1)",
        config.l1_ttl,
        match &source {
            Database::Sqlite(_) => format!("SQLite {}", config.db.display()),
            #[allow(unreachable_patterns)] // without the `postgres` feature
            other => other.label(),
        },
    );

    let shared = Shared {
        cache,
        keys,
        flags,
        pending: Mutex::new(Vec::new()),
        propagation: Mutex::new(Histogram::default()),
        changes_written: AtomicU64::new(0),
        users: workload::demo_users(USERS, SEED + 2),
        stop: AtomicBool::new(false),
        progress: (0..config.threads)
            .map(|_| CachePadded::default())
            .collect(),
    };
    println!(
        "evaluating {flags} flags on {} threads for {} s, {} flag changes/s",
        config.threads, config.seconds, config.changes_per_sec
    );

    let reports = std::thread::scope(|s| {
        let spawned: Result<Vec<_>, _> = (0..config.threads)
            .map(|t| {
                let shared = &shared;
                std::thread::Builder::new()
                    .name(format!("evaluator-{t}"))
                    .spawn_scoped(s, move || worker(shared, t))
            })
            .collect();
        let workers = match spawned {
            Ok(workers) => workers,
            Err(e) => {
                // Stop the threads already running, or the scope would wait for them forever.
                shared.stop.store(true, Relaxed);
                return Err(e.into());
            }
        };
        s.spawn(|| observe_changes(&shared));
        let handle = runtime.handle();
        let shared_ref = &shared;
        let all_ids: Vec<FlagId> = defs.iter().map(|d| d.id.clone()).collect();
        s.spawn(move || {
            handle.block_on(write_changes(
                shared_ref,
                &source,
                &admin,
                &all_ids,
                config.changes_per_sec,
            ))
        });
        report_progress(&shared, Duration::from_secs_f64(config.seconds));
        shared.stop.store(true, Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "an evaluator thread panicked".into()))
            .collect::<Result<Vec<_>, Box<dyn Error>>>()
    })?;

    print_summary(&shared, config, &reports);
    Ok(())
}

/// Opens the database (PostgreSQL at `postgres_url`, or else SQLite), filling it with the
/// demo flags on the first run.
async fn open_database(config: &Config) -> Result<Database, Box<dyn Error>> {
    if let Some(url) = &config.postgres_url {
        return postgres(url, config).await;
    }
    if let Some(dir) = config.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let source = SqliteSource::open(&config.db)?;
    if source.len()? == 0 {
        for def in workload::demo_flags(config.flags, SEED)? {
            source.upsert(&def)?;
        }
        println!(
            "created {} with {} demo flags",
            config.db.display(),
            config.flags
        );
    }
    Ok(Database::Sqlite(source))
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str, config: &Config) -> Result<Database, Box<dyn Error>> {
    let demo = workload::demo_flags(config.flags, SEED)?;
    Database::postgres(url, || demo).await
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_: &str, _: &Config) -> Result<Database, Box<dyn Error>> {
    Err("POSTGRES_URL needs the `postgres` feature: cargo run --release --features postgres --example evaluator".into())
}

/// One instance's cache over the shared L2 (when `REDIS_URL` is set) and L3.
fn tiered(config: &Config, source: &Database, flags: usize) -> flagcache::Result<TieredCache> {
    let builder = TieredCache::builder()
        .l1_size(flags + flags / 4 + TYPOS)
        .l1_ttl(config.l1_ttl)
        .source(source.clone())
        .redis_prefix("flagcache-evaluator")
        .max_stale(Duration::from_secs(300));
    match (&config.redis_cluster, &config.redis_url) {
        (Some(seeds), _) => on_cluster(builder, seeds)?,
        (None, Some(url)) => builder.redis_url(url),
        (None, None) => builder,
    }
    .build()
}

/// With `--metrics-addr`, the evaluators' cache's metrics as Prometheus text on
/// `http://ADDR/metrics` (through `metrics-exporter-prometheus`), sampled every second.
#[cfg(feature = "metrics")]
fn serve_metrics(
    config: &Config,
    cache: &TieredCache,
) -> Result<Option<flagcache::MetricsTask>, Box<dyn Error>> {
    let Some(addr) = config.metrics_addr else {
        return Ok(None);
    };
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    println!("metrics          http://{addr}/metrics");
    Ok(Some(
        cache.start_metrics_task("evaluator", Duration::from_secs(1))?,
    ))
}

#[cfg(not(feature = "metrics"))]
fn serve_metrics(config: &Config, _: &TieredCache) -> Result<Option<()>, Box<dyn Error>> {
    match config.metrics_addr {
        Some(_) => Err("--metrics-addr needs the `metrics` feature".into()),
        None => Ok(None),
    }
}

/// L2 on the Redis Cluster reached through `seeds`.
#[cfg(feature = "redis")]
fn on_cluster(
    builder: flagcache::TieredCacheBuilder,
    seeds: &[String],
) -> flagcache::Result<flagcache::TieredCacheBuilder> {
    let l2 = flagcache::RedisCache::cluster_builder(seeds)
        .prefix("flagcache-evaluator")
        .build()?;
    Ok(builder.redis(l2))
}

#[cfg(not(feature = "redis"))]
fn on_cluster(
    _: flagcache::TieredCacheBuilder,
    _: &[String],
) -> flagcache::Result<flagcache::TieredCacheBuilder> {
    Err(flagcache::Error::new(
        flagcache::ErrorKind::InvalidConfig,
        "REDIS_CLUSTER needs the `redis` feature",
    ))
}

/// The admin service: changes `per_sec` flags a second in the database, recording each change
/// for the observer. With SQLite it also writes the change through its own cache (its L1, and
/// L2 when there is one); with PostgreSQL it writes plain SQL only, and the change reaches the
/// caches through the database's change feed.
async fn write_changes(
    shared: &Shared,
    source: &Database,
    admin: &TieredCache,
    ids: &[FlagId],
    per_sec: f64,
) {
    if per_sec <= 0.0 || ids.is_empty() {
        return;
    }
    let mut rng = Rng::new(SEED + 3);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec));
    while !shared.stop.load(Relaxed) {
        tick.tick().await;
        let id = rng.pick(ids);
        let Some(def) = source.change(id).await else {
            continue;
        };
        let version = def.version;
        if !source.has_change_feed() {
            admin.set(id, def, None).await;
        }
        let change = Change {
            id: id.clone(),
            version,
            at: Instant::now(),
        };
        lock(&shared.pending).push(change);
        shared.changes_written.fetch_add(1, Relaxed);
    }
}

/// Checks every 5 ms which pending changes the evaluators' L1 now serves, and records how long
/// each took. Reads through `get_with`, as the evaluators do (a miss starts a background load).
fn observe_changes(shared: &Shared) {
    while !shared.stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
        let now = Instant::now();
        let mut pending = lock(&shared.pending);
        pending.retain(|change| {
            let seen = shared
                .cache
                .get_with(change.id.as_str(), |d| d.version >= change.version)
                .unwrap_or(false);
            if seen {
                lock(&shared.propagation).record(now - change.at);
            }
            !seen
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `--seconds N` (or `EVALUATOR_SECONDS`), `--flags N`, `--threads N`.
fn parse_args() -> Result<Config, Box<dyn Error>> {
    const USAGE: &str = "usage: evaluator [--seconds N] [--flags N] [--threads N] [--db PATH] \
         [--l1-ttl SECONDS] [--changes-per-sec N] [--no-redis] [--metrics-addr HOST:PORT] [--postgres URL]   (env: EVALUATOR_SECONDS, REDIS_URL, REDIS_CLUSTER, POSTGRES_URL)";
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut config = Config {
        seconds: 5.0,
        flags: 10_000,
        threads: cores,
        db: PathBuf::from("target/flagcache-demo.db"),
        l1_ttl: Duration::from_secs(2),
        changes_per_sec: 5.0,
        redis_url: std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()),
        redis_cluster: std::env::var("REDIS_CLUSTER")
            .ok()
            .map(|nodes| {
                nodes
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|nodes| !nodes.is_empty()),
        private_redis: true,
        metrics_addr: None,
        postgres_url: std::env::var("POSTGRES_URL").ok().filter(|u| !u.is_empty()),
    };
    if let Ok(s) = std::env::var("EVALUATOR_SECONDS") {
        config.seconds = s
            .parse()
            .map_err(|e| format!("EVALUATOR_SECONDS={s}: {e}"))?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if arg == "--no-redis" {
            config.private_redis = false;
            config.redis_url = None;
            config.redis_cluster = None;
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{arg} {value}: {e}\n{USAGE}");
        match arg.as_str() {
            "--seconds" => config.seconds = value.parse().map_err(|e| bad(&e))?,
            "--flags" => config.flags = value.parse().map_err(|e| bad(&e))?,
            "--threads" => config.threads = value.parse().map_err(|e| bad(&e))?,
            "--db" => config.db = PathBuf::from(value),
            "--l1-ttl" => {
                let secs: f64 = value.parse().map_err(|e| bad(&e))?;
                config.l1_ttl = Duration::try_from_secs_f64(secs).map_err(|e| bad(&e))?;
            }
            "--changes-per-sec" => config.changes_per_sec = value.parse().map_err(|e| bad(&e))?,
            "--metrics-addr" => config.metrics_addr = Some(value.parse().map_err(|e| bad(&e))?),
            "--postgres" => config.postgres_url = Some(value),
            _ => return Err(format!("unknown argument {arg}\n{USAGE}").into()),
        }
    }
    if !(config.seconds > 0.0 && config.seconds < 1e6) || config.flags == 0 || config.threads == 0 {
        return Err(format!("seconds, flags and threads must be positive\n{USAGE}").into());
    }
    Ok(config)
}

/// Evaluates keys from this thread's trace for random users until `stop`.
fn worker(shared: &Shared, thread: usize) -> WorkerReport {
    let mut rng = Rng::new(SEED ^ ((thread as u64 + 1) << 32));
    let trace = workload::key_trace(&mut rng, shared.flags, TYPOS, MISS_RATE, TRACE_LEN);
    let mut report = WorkerReport::default();
    let mut n: u64 = 0;
    let started = Instant::now();
    while !shared.stop.load(Relaxed) {
        for _ in 0..BATCH {
            let key = &shared.keys[trace[n as usize & (TRACE_LEN - 1)] as usize];
            let user = &shared.users[rng.below(shared.users.len())];
            let outcome = if n % SAMPLE_EVERY == 0 {
                let t = Instant::now();
                let outcome = evaluate(&shared.cache, key, user);
                report.latency.record(t.elapsed());
                outcome
            } else {
                evaluate(&shared.cache, key, user)
            };
            report.outcomes[outcome_index(outcome)] += 1;
            n += 1;
        }
        // A plain store: only this thread writes its slot, so no read-modify-write is needed.
        shared.progress[thread].store(n, Relaxed);
    }
    report.evaluations = n;
    report.elapsed = started.elapsed();
    report
}

/// One evaluation on the borrowing path: no `Arc` clone, no allocation, no waiting.
#[inline]
fn evaluate(cache: &TieredCache, key: &str, user: &EvalContext) -> Option<Reason> {
    cache.get_with(key, |def: &FlagDefinition| {
        let evaluation = def.evaluate(user);
        black_box(evaluation.value);
        evaluation.reason
    })
}

const OUTCOMES: [&str; 5] = ["rule match", "rollout", "default", "disabled", "not found"];

fn outcome_index(outcome: Option<Reason>) -> usize {
    match outcome {
        Some(Reason::RuleMatch { .. }) => 0,
        Some(Reason::Rollout { .. }) => 1,
        Some(Reason::Default) => 2,
        Some(Reason::Disabled) => 3,
        None => 4,
    }
}

/// Prints a progress line every second until `duration` has passed: one line rewritten in
/// place on a terminal, one line per second otherwise (logs, pipes).
fn report_progress(shared: &Shared, duration: Duration) {
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let (mut last_total, mut last_at) = (0u64, start);
    for second in 1.. {
        let next = start + duration.min(Duration::from_secs(second));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        let total: u64 = shared.progress.iter().map(|p| p.load(Relaxed)).sum();
        let rate = (total - last_total) as f64 / (now - last_at).as_secs_f64();
        let stats = shared.cache.tiered_stats();
        let line = format!(
            "[{:>5.1} s] {:>7.2} M evals/s   total {:>13}   L1 hit rate {:.2} %   \
             refreshed {}   stale {}   changes seen {}/{}",
            (now - start).as_secs_f64(),
            rate / 1e6,
            thousands(total),
            stats.l1.hit_rate * 100.0,
            stats.refreshes,
            stats.stale_serves,
            lock(&shared.propagation).count(),
            shared.changes_written.load(Relaxed),
        );
        let mut out = std::io::stdout().lock();
        // Progress output is best effort: a closed stdout must not stop the run.
        let _ = if tty {
            write!(out, "\r{line}\x1b[K")
        } else {
            writeln!(out, "{line}")
        };
        let _ = out.flush();
        (last_total, last_at) = (total, now);
        if now >= start + duration {
            break;
        }
    }
    if tty {
        println!();
    }
}

fn print_summary(shared: &Shared, config: &Config, reports: &[WorkerReport]) {
    let mut latency = Histogram::default();
    let mut outcomes = [0u64; 5];
    for r in reports {
        latency.merge(&r.latency);
        for (sum, n) in outcomes.iter_mut().zip(r.outcomes) {
            *sum += n;
        }
    }
    let total: u64 = reports.iter().map(|r| r.evaluations).sum();
    // Each thread over its own running time, so start-up and join skew do not count.
    let per_sec: f64 = reports
        .iter()
        .map(|r| r.evaluations as f64 / r.elapsed.as_secs_f64())
        .sum();
    let wall = reports.iter().map(|r| r.elapsed).max().unwrap_or_default();
    let tiered = shared.cache.tiered_stats();
    let stats = &tiered.l1;
    let pct = |n: u64| 100.0 * n as f64 / total.max(1) as f64;

    println!("\n== summary ==");
    println!("threads          {}", config.threads);
    println!("duration         {:.2} s", wall.as_secs_f64());
    println!("evaluations      {}", thousands(total));
    println!(
        "throughput       {:.2} M/s total, {:.2} M/s per thread",
        per_sec / 1e6,
        per_sec / 1e6 / config.threads as f64
    );
    println!(
        "latency (ns)     p50 {}   p99 {}   p99.9 {}   max {}   ({} samples, 1 in {SAMPLE_EVERY})",
        latency.percentile_ns(0.50),
        latency.percentile_ns(0.99),
        latency.percentile_ns(0.999),
        latency.max_ns(),
        thousands(latency.count()),
    );
    println!(
        "L1               {} hits, {} misses, hit rate {:.2} %, {} of {} entries, {} expirations",
        thousands(stats.hits),
        thousands(stats.misses),
        stats.hit_rate * 100.0,
        stats.size,
        stats.capacity,
        stats.expirations
    );
    #[cfg(feature = "redis")]
    match &tiered.l2 {
        Some(l2) => println!(
            "L2 (Redis)       {} fills, {} hits, {} misses, {} errors, {} timeouts, {} round trips",
            tiered.l2_fills, l2.hits, l2.misses, l2.errors, l2.timeouts, l2.round_trips
        ),
        None => println!("L2 (Redis)       off"),
    }
    #[cfg(not(feature = "redis"))]
    println!("L2 (Redis)       not built (the `redis` feature is off)");
    println!(
        "{:<17}{} loads, {} fills, {} errors",
        if config.postgres_url.is_some() {
            "L3 (PostgreSQL)"
        } else {
            "L3 (SQLite)"
        },
        tiered.l3_loads,
        tiered.l3_fills,
        tiered.l3_errors
    );
    if config.postgres_url.is_some() {
        println!(
            "change feed      {} changes applied, {} resyncs, following: {}",
            tiered.feed_changes, tiered.feed_resyncs, tiered.feed_following
        );
    }
    println!(
        "read-through     {} coalesced waits, {} negative-cache answers, {} stale serves, {} refreshed ahead",
        tiered.coalesced_waits, tiered.negative_hits, tiered.stale_serves, tiered.refreshes
    );
    let propagation = lock(&shared.propagation);
    let written = shared.changes_written.load(Relaxed);
    if propagation.count() > 0 {
        println!(
            "flag changes     {} written, {} reached the evaluators' L1: p50 {:.3} s, max {:.3} s \
             ({}, L1 TTL {:?})",
            written,
            propagation.count(),
            propagation.percentile_ns(0.50) as f64 / 1e9,
            propagation.max_ns() as f64 / 1e9,
            if config.postgres_url.is_some() {
                "plain SQL, through the change feed; the observer polls every 5 ms"
            } else if config.redis_url.is_some() || config.redis_cluster.is_some() {
                "over the backplane; the observer polls every 5 ms"
            } else {
                "by refresh: without Redis there is no backplane"
            },
            config.l1_ttl,
        );
    } else {
        println!("flag changes     {written} written, none seen yet in the evaluators' L1");
    }
    println!("results by reason");
    for (name, n) in OUTCOMES.iter().zip(outcomes) {
        println!("  {name:<14} {:>15}  {:>6.2} %", thousands(n), pct(n));
    }
}

/// `1234567` as `1 234 567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}
