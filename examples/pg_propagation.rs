//! How long a flag edited in PostgreSQL with plain SQL takes to leave a fleet's L1: 4
//! instances, each a `TieredCache` with its own L1 over one private `redis-server` (L2 and
//! backplane) and one `PostgresSource` (L3, a schema this example creates and drops), each
//! running the change feed (one of them follows it) and the backplane.
//!
//! Each round, every instance holds the flag in L1; an `UPDATE` in its own transaction, by a
//! plain client, is the change. The clock starts when the statement is sent (its commit comes
//! within its one round trip; the notification may arrive before the reply), and a watcher
//! thread polls the 4 L1s until none holds the old version any more. The path: the trigger's
//! `NOTIFY` → the follower's `LISTEN` → its load of the row → L2 (version guard) and its L1 →
//! a backplane notice → the other instances drop their copy.
//!
//! Run: `cargo run --release --features postgres --example pg_propagation [rounds]` (default
//! 200). Needs `redis-server` on the `PATH` and PostgreSQL at `FLAGCACHE_POSTGRES_URL` (by
//! default `host=127.0.0.1 port=5432 user=postgres dbname=test`).

#[path = "common/fleet_watch.rs"]
mod fleet_watch;
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use flagcache::{FlagCache, FlagDefinition, FlagId, PostgresSource, RedisCache, TieredCache};
use fleet_watch::{Watch, percentile};
use redis_server::RedisServer;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSTANCES: usize = 4;
const FLAG: &str = "checkout.new-flow";
const SCHEMA: &str = "flagcache_pg_propagation";

fn version(cache: &TieredCache) -> Option<u64> {
    cache.l1().get_now(FLAG).map(|f| f.definition.version)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(Ok(200), |r| r.parse())
        .map_err(|_| "rounds: a number")?;
    let url = std::env::var("FLAGCACHE_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _entered = runtime.enter();
    let Some(redis) = RedisServer::start() else {
        return Err("needs redis-server on the PATH".into());
    };

    let (admin, connection) =
        runtime.block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))?;
    runtime.spawn(connection);
    runtime.block_on(admin.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};"
    )))?;
    let source = PostgresSource::builder(&url).schema(SCHEMA).build()?;
    runtime.block_on(source.install())?;
    runtime.block_on(source.upsert(&FlagDefinition::new_boolean(FLAG, "New checkout", true)?))?;
    let update = format!(
        "UPDATE {} SET definition = jsonb_set(definition, '{{enabled}}', \
         to_jsonb(NOT (definition->>'enabled')::boolean)) WHERE id = $1 RETURNING version",
        source.table()
    );

    let fleet: Vec<TieredCache> = (0..INSTANCES)
        .map(|_| {
            let l2 = RedisCache::builder(&redis.url())
                .prefix("pg-propagation")
                .build()?;
            TieredCache::builder()
                .l2(l2)
                .source(source.clone())
                .l1_ttl(Duration::from_secs(600))
                .build()
        })
        .collect::<flagcache::Result<_>>()?;
    let _backplanes = fleet
        .iter()
        .map(TieredCache::start_backplane)
        .collect::<flagcache::Result<Vec<_>>>()?;
    let _feeds = fleet
        .iter()
        .map(TieredCache::start_change_feed)
        .collect::<flagcache::Result<Vec<_>>>()?;
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = |c: &TieredCache| c.tiered_stats().backplane_subscribed;
        let following = || {
            fleet
                .iter()
                .filter(|c| c.tiered_stats().feed_following)
                .count()
        };
        while !(fleet.iter().all(ready) && following() == 1) {
            if Instant::now() > deadline {
                return Err("the fleet did not subscribe and elect a follower within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    })?;

    let fleet = Arc::new(fleet);
    let id = FlagId::new(FLAG);
    let (mut last, mut each, mut commits) = (Vec::new(), Vec::new(), Vec::new());
    // The time from the UPDATE's reply (its commit done) to the last instance's drop; 0 when
    // every instance dropped it before the reply arrived.
    let mut after_commit = Vec::new();
    for round in 1..=rounds {
        // Every instance holds the current version in L1.
        let held = runtime.block_on(async {
            let mut held = 0;
            for c in fleet.iter() {
                held = c.get(&id).await.map_or(0, |f| f.definition.version);
            }
            held
        });
        let watch = Watch::spawn(&fleet, move |c| version(c) != Some(held));
        runtime.block_on(async {
            // Autocommit: the statement's own transaction commits before it returns. The clock
            // starts as it is sent: the notification may arrive before the reply does.
            let sent = watch.start();
            admin.query_one(&update, &[&FLAG]).await?;
            commits.push(sent.elapsed().as_micros() as u64);
            watch.wait().await;
            Ok::<_, tokio_postgres::Error>(())
        })?;
        match watch.finish() {
            Some(all) => {
                let slowest = all.iter().copied().max().unwrap_or(0);
                last.push(slowest);
                let commit = commits.last().copied().unwrap_or(0);
                after_commit.push(slowest.saturating_sub(commit));
                each.extend(all);
            }
            None => eprintln!("round {round}: an instance kept v{held} for 2 s"),
        }
    }
    runtime.block_on(admin.batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE")))?;

    last.sort_unstable();
    each.sort_unstable();
    commits.sort_unstable();
    after_commit.sort_unstable();
    if last.is_empty() {
        return Err("no round completed".into());
    }
    println!(
        "{INSTANCES} instances, {rounds} UPDATEs in plain SQL; from the UPDATE (autocommit) sent to the old version gone from L1:"
    );
    println!("{}", fleet_watch::summary(&last, &each, rounds));
    println!(
        "the UPDATE's own round trip (its commit included): p50 {:>6} us  p99 {:>6} us",
        percentile(&commits, 0.50),
        percentile(&commits, 0.99),
    );
    println!(
        "from the UPDATE's reply (the commit done) to every instance: p50 {:>6} us  p99 {:>6} us",
        percentile(&after_commit, 0.50),
        percentile(&after_commit, 0.99),
    );
    Ok(())
}
