//! A flag evaluator on every core, reading 10 000 realistic flags through the L1 cache.
//!
//! It shows the hot path `flagcache` is built for: a service evaluating feature flags for a
//! stream of users, each evaluation a lock-free, allocation-free
//! [`LocalCache::get_with`] that lends the definition to [`FlagDefinition::evaluate`].
//!
//! - 10 000 seeded demo flags (kill switches, percentage rollouts, A/B/C experiments, numeric
//!   and JSON configs, targeting on country, plan, email, app version, age and seats) are
//!   loaded with one `replace_all`, and the cleanup task runs on a tokio runtime.
//! - One OS thread per core evaluates Zipf-skewed flags (about 80 % of the traffic on 20 % of
//!   the flags, 1 % misspelled ids) for users from a prepared pool, timing every 64th.
//! - A reporter prints throughput and the L1 hit rate every second, then a summary with
//!   latency percentiles, cache stats and the results by reason.
//!
//! No Redis needed. Run it with
//!
//! ```sh
//! cargo run --release --example evaluator                   # 5 s, 10 000 flags
//! cargo run --release --example evaluator -- --seconds 3 --flags 50000
//! EVALUATOR_SECONDS=10 cargo run --release --example evaluator
//! ```

// Example code is outside the crate's loom facade rule (clippy.toml bans std atomics there).
#![allow(clippy::disallowed_types)]

mod histogram;
mod workload;

use crossbeam_utils::CachePadded;
use flagcache::{EvalContext, FlagDefinition, LocalCache, Reason};
use histogram::Histogram;
use std::error::Error;
use std::hint::black_box;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
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
}

/// What the workers share: all read-only but `stop` and their own `progress` slot.
struct Shared {
    cache: Arc<LocalCache>,
    /// The real ids, then the misspelled ones.
    keys: Vec<Box<str>>,
    flags: usize,
    users: Vec<EvalContext>,
    stop: AtomicBool,
    /// Each thread's evaluation count, published every `BATCH`; padded so threads do not
    /// share a cache line.
    progress: Vec<CachePadded<AtomicU64>>,
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
    match parse_args().and_then(|config| run(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evaluator: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(config: &Config) -> Result<(), Box<dyn Error>> {
    let defs = workload::demo_flags(config.flags, SEED)?;
    let cache = Arc::new(
        LocalCache::builder()
            .max_size(config.flags + config.flags / 4)
            .default_ttl(Duration::from_secs(300))
            .build()?,
    );
    let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    let mut keys: Vec<Box<str>> = ids.iter().map(|&id| id.into()).collect();
    keys.extend(
        workload::typos(&ids, TYPOS, SEED + 1)
            .into_iter()
            .map(Into::into),
    );
    cache.replace_all(defs)?;

    // The runtime only hosts the cleanup task (coarse clock + expiry sweeps); the evaluators
    // are plain OS threads, as in a service whose request handlers call the cache directly.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flagcache-bg")
        .enable_time()
        .build()?;
    let _cleanup = {
        let _entered = runtime.enter();
        cache.start_cleanup_task(Duration::from_secs(1))?
    };

    let shared = Shared {
        cache,
        keys,
        flags: config.flags,
        users: workload::demo_users(USERS, SEED + 2),
        stop: AtomicBool::new(false),
        progress: (0..config.threads)
            .map(|_| CachePadded::default())
            .collect(),
    };
    println!(
        "evaluating {} flags on {} threads for {} s",
        config.flags, config.threads, config.seconds
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

/// `--seconds N` (or `EVALUATOR_SECONDS`), `--flags N`, `--threads N`.
fn parse_args() -> Result<Config, Box<dyn Error>> {
    const USAGE: &str =
        "usage: evaluator [--seconds N] [--flags N] [--threads N]   (env: EVALUATOR_SECONDS)";
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut config = Config {
        seconds: 5.0,
        flags: 10_000,
        threads: cores,
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
        let value = args
            .next()
            .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{arg} {value}: {e}\n{USAGE}");
        match arg.as_str() {
            "--seconds" => config.seconds = value.parse().map_err(|e| bad(&e))?,
            "--flags" => config.flags = value.parse().map_err(|e| bad(&e))?,
            "--threads" => config.threads = value.parse().map_err(|e| bad(&e))?,
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

/// One evaluation on the borrowing path: no `Arc` clone, no allocation.
#[inline]
fn evaluate(cache: &LocalCache, key: &str, user: &EvalContext) -> Option<Reason> {
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
        let line = format!(
            "[{:>5.1} s] {:>7.2} M evals/s   total {:>13}   L1 hit rate {:.2} %",
            (now - start).as_secs_f64(),
            rate / 1e6,
            thousands(total),
            shared.cache.stats_now().hit_rate * 100.0,
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
    let stats = shared.cache.stats_now();
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
        "L1               {} hits, {} misses, hit rate {:.2} %",
        thousands(stats.hits),
        thousands(stats.misses),
        stats.hit_rate * 100.0
    );
    println!(
        "L1 entries       {} of {}, {} evictions, {} expirations",
        stats.size, stats.capacity, stats.evictions, stats.expirations
    );
    println!("results by reason");
    for (name, n) in OUTCOMES.iter().zip(outcomes) {
        println!("  {name:<14} {:>15}  {:>6.2} %", thousands(n), pct(n));
    }
    // Every evaluation is exactly one lookup, and stats are exact once the workers stopped.
    let lookups = stats.hits + stats.misses;
    if lookups != total || stats.misses != outcomes[4] {
        println!(
            "warning: the cache counted {lookups} lookups and {} misses",
            stats.misses
        );
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
