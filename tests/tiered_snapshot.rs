//! Booting from a snapshot: an instance starting while Redis is stopped and the source fails
//! serves the flags its snapshot holds, as stale, until a backend confirms them; unusable
//! snapshots are warnings; and a process killed while writing one leaves the previous one
//! whole (a child process, this test binary run again, writes snapshots until it is killed).

#![allow(clippy::disallowed_types)]

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/sources.rs"]
mod sources;

use flagcache::{
    ErrorKind, FlagCache, FlagDefinition, FlagId, FlagSource, RedisCache, TieredCache,
};
use redis_server::RedisServer;
use sources::{Db, def};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("flagcache-snapshot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A source that always fails, as a database that is down.
struct Down;

impl FlagSource for Down {
    async fn load(&self, _: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        Err(flagcache::Error::new(
            ErrorKind::Unavailable,
            "the database is down",
        ))
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        Err(flagcache::Error::new(
            ErrorKind::Unavailable,
            "the database is down",
        ))
    }
}

/// An instance with `snapshot` and no L2 whose source is down: warm-up has only the snapshot.
fn booting(snapshot: &Path, prefix: &str) -> TieredCache {
    TieredCache::builder()
        .source(Down)
        .redis_prefix(prefix)
        .snapshot_file(snapshot)
        .warm_up_budget(Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_starting_with_redis_stopped_and_the_source_failing_serves_its_snapshot() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let db = Db::new("snapshot-boot");
    for i in 0..100 {
        db.source.upsert(&def(&format!("f{i}"), 3)).unwrap();
    }
    let dir = dir("boot");
    let snapshot = dir.join("flags.snapshot");
    let url = redis.url();
    let l2 = || RedisCache::builder(&url).prefix("snap").build().unwrap();
    let instance = |l2: RedisCache| {
        TieredCache::builder()
            .l2(l2)
            .source(db.source.clone())
            .snapshot_file(&snapshot)
            .warm_up_budget(Duration::from_millis(500))
            .l2_timeout(Duration::from_millis(200))
            .retry_after(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    // A running instance keeps the snapshot up to date, and writes it once more at shutdown.
    let first = instance(l2());
    assert_eq!(first.warm_up().await.unwrap(), 100);
    let task = first.start_snapshot_task().unwrap();
    assert_eq!(task.shutdown().await.unwrap(), 100);
    drop(first);

    // Both backends go down; a new instance starts.
    redis.kill();
    db.source.break_table();
    let second = instance(l2());
    let started = Instant::now();
    assert_eq!(
        second.warm_up().await.unwrap(),
        100,
        "booted from the snapshot"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the budget"
    );
    let s = second.tiered_stats();
    assert_eq!((s.snapshot_flags, s.snapshot_errors), (100, 0));
    assert!(!second.readiness().warmed_up, "the backends never answered");
    let f = FlagId::new("f7");
    assert_eq!(second.get(&f).await.unwrap().definition.version, 3);
    assert_eq!(second.get_with("f8", |d| d.version), Some(3));
    assert!(second.tiered_stats().stale_serves >= 2, "served as stale");
    assert!(
        second.l1().get_now("f7").is_none(),
        "never fresh until confirmed"
    );

    // The backends come back: the next reads confirm the flags.
    db.source.upsert(&def("f7", 4)).unwrap_err(); // the table is still away
    db.source.repair_table();
    db.source.upsert(&def("f7", 4)).unwrap();
    redis.restart();
    tokio::time::sleep(Duration::from_millis(150)).await; // past retry_after
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = second.get(&f).await.map(|c| c.definition.version);
        if got == Some(4) && second.l1().get_now("f7").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "not confirmed: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the cache warms up from them by itself: the whole set fresh, the warm-up done.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !second.readiness().warmed_up {
        assert!(
            Instant::now() < deadline,
            "never warmed up from the backends"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        second.l1().get_now("f8").map(|f| f.definition.version),
        Some(3)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_unusable_snapshot_is_a_warning_and_the_start_goes_on() {
    let dir = dir("unusable");
    let snapshot = dir.join("flags.snapshot");
    // Missing.
    let cache = booting(&snapshot, "app");
    let e = cache.warm_up().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "the backends' error: {e}");
    assert_eq!(cache.tiered_stats().snapshot_errors, 1);

    // Another prefix's, then damaged, then too old.
    let writer = TieredCache::builder()
        .redis_prefix("other")
        .snapshot_file(&snapshot)
        .build()
        .unwrap();
    writer
        .try_set(&FlagId::new("a"), def("a", 1), None)
        .await
        .unwrap();
    assert_eq!(writer.save_snapshot().await.unwrap(), 1);
    let cache = booting(&snapshot, "app");
    assert!(cache.warm_up().await.is_err());
    assert_eq!(cache.tiered_stats().snapshot_errors, 1);
    let cache = booting(&snapshot, "other");
    assert_eq!(cache.warm_up().await.unwrap(), 1, "its own prefix's");

    let mut bytes = std::fs::read(&snapshot).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x20;
    std::fs::write(&snapshot, &bytes).unwrap();
    let cache = booting(&snapshot, "other");
    assert!(cache.warm_up().await.is_err());
    assert_eq!(cache.get_with("a", |d| d.version), None);

    writer.save_snapshot().await.unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let old = TieredCache::builder()
        .source(Down)
        .redis_prefix("other")
        .snapshot_file(&snapshot)
        .snapshot_max_age(Duration::from_millis(10))
        .warm_up_budget(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(old.warm_up().await.is_err());
    assert_eq!(old.tiered_stats().snapshot_errors, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Set by the crash test for the child process it starts.
const CHILD_ENV: &str = "FLAGCACHE_SNAPSHOT_WRITER";
const CHILD_FLAGS: usize = 20_000;

/// The child of `a_process_killed_while_writing_leaves_the_previous_snapshot_whole`: writes
/// the snapshot named by `FLAGCACHE_SNAPSHOT_WRITER` over and over, every flag at version 1,
/// then every flag at version 2, and so on, until it is killed. Without the variable (any
/// ordinary run) it returns at once: it is that test's helper, not a test of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_writer_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cache = TieredCache::builder()
        .l1_size(CHILD_FLAGS)
        .snapshot_file(&path)
        .build()
        .unwrap();
    for version in 1.. {
        let flags: Vec<(FlagId, FlagDefinition)> = (0..CHILD_FLAGS)
            .map(|i| {
                let id = format!("flag.service-{}.feature_{i:05}", i % 37);
                (FlagId::new(&id), def(&id, version))
            })
            .collect();
        cache.try_set_many(flags, None).await.unwrap();
        cache.save_snapshot().await.unwrap();
        println!("wrote version {version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_while_writing_leaves_the_previous_snapshot_whole() {
    let dir = dir("crash");
    let snapshot = dir.join("flags.snapshot");
    // The child's temporary file, named after its process.
    let temporary_left = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .map(|e| e.path())
    };
    let mut versions_seen = HashMap::new();
    let mut killed_mid_write = 0;
    for round in 0..20u64 {
        if killed_mid_write >= 3 {
            break;
        }
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "snapshot_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &snapshot)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed as soon as it has begun a write after its first snapshot (its temporary file
        // appeared), or at a different point of its loop each round.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !snapshot.exists() {
            assert!(Instant::now() < deadline, "the child wrote no snapshot");
            std::thread::sleep(Duration::from_millis(1));
        }
        let aim = Instant::now() + Duration::from_millis(17 * round + 10);
        while !(round % 2 == 0 && temporary_left().is_some())
            && Instant::now() < aim + Duration::from_secs(2)
        {
            if round % 2 == 1 && Instant::now() >= aim {
                break;
            }
            std::hint::spin_loop();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // A temporary file left behind: the kill came in the middle of a write.
        let left = temporary_left();
        if left.is_some() {
            killed_mid_write += 1;
        }

        let cache = TieredCache::builder()
            .l1_size(CHILD_FLAGS)
            .source(Down)
            .snapshot_file(&snapshot)
            // Also how long reading the snapshot may take (20 000 flags, a debug build).
            .warm_up_budget(Duration::from_secs(10))
            .build()
            .unwrap();
        assert_eq!(cache.warm_up().await.unwrap(), CHILD_FLAGS, "round {round}");
        let mut versions: Vec<u64> = (0..CHILD_FLAGS)
            .map(|i| {
                let id = format!("flag.service-{}.feature_{i:05}", i % 37);
                cache.l1().get_stale(&id).unwrap().flag.definition.version
            })
            .collect();
        versions.dedup();
        assert_eq!(
            versions.len(),
            1,
            "one whole snapshot, not a mix: round {round}"
        );
        *versions_seen.entry(versions[0]).or_insert(0) += 1;
        std::fs::remove_file(&snapshot).unwrap();
        if let Some(left) = left {
            std::fs::remove_file(left).unwrap();
        }
    }
    assert!(
        killed_mid_write >= 1,
        "no kill came in the middle of a write; the test proved nothing"
    );
    eprintln!(
        "killed in the middle of a write {killed_mid_write} times; versions found: {versions_seen:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// This process's temporary snapshot file beside `snapshot`.
fn temporary_of(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(name)
}

#[cfg(unix)]
#[tokio::test]
async fn a_file_or_a_link_left_at_the_temporary_path_is_replaced_not_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir("leftover");
    let snapshot = dir.join("flags.snapshot");
    let cache = TieredCache::builder()
        .snapshot_file(&snapshot)
        .build()
        .unwrap();
    cache
        .try_set(&FlagId::new("secret"), def("secret", 1), None)
        .await
        .unwrap();
    // A world-readable leftover: the snapshot is still private.
    let temporary = temporary_of(&snapshot);
    std::fs::write(&temporary, b"old").unwrap();
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).unwrap();
    cache.save_snapshot().await.unwrap();
    let mode = std::fs::metadata(&snapshot).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A link to another file: removed, never followed.
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious data").unwrap();
    std::os::unix::fs::symlink(&victim, &temporary).unwrap();
    cache.save_snapshot().await.unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious data");
    let kind = std::fs::symlink_metadata(&snapshot).unwrap().file_type();
    assert!(kind.is_file(), "the snapshot is a file of its own");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A source whose calls never end, as a database that hangs.
struct Hanging;

impl FlagSource for Hanging {
    async fn load(&self, _: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        std::future::pending().await
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_source_leaves_l2_part_of_the_budget() {
    let dir = dir("hung");
    let snapshot = dir.join("flags.snapshot");
    let store = flagcache::MemoryStore::new();
    let writer = TieredCache::builder().l2(store.clone()).build().unwrap();
    writer
        .try_set(&FlagId::new("f"), def("f", 2), None)
        .await
        .unwrap();
    let old = TieredCache::builder()
        .snapshot_file(&snapshot)
        .build()
        .unwrap();
    old.try_set(&FlagId::new("f"), def("f", 1), None)
        .await
        .unwrap();
    old.save_snapshot().await.unwrap();
    let cache = TieredCache::builder()
        .l2(store)
        .source(Hanging)
        .snapshot_file(&snapshot)
        .warm_up_budget(Duration::from_millis(300))
        .build()
        .unwrap();
    assert_eq!(cache.warm_up().await.unwrap(), 1);
    assert_eq!(
        cache.l1().get_now("f").map(|f| f.definition.version),
        Some(2),
        "L2's set, fresh; not the snapshot's"
    );
    assert_eq!(cache.tiered_stats().snapshot_flags, 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_read_that_never_returns_does_not_hold_warm_up() {
    let db = Db::new("snapshot-hung-read");
    db.source.break_table();
    // A FIFO nobody writes stands for a file system that stopped answering (a hung mount).
    let path = db.dir.join("flags.snapshot");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .snapshot_file(&path)
        .warm_up_budget(Duration::from_millis(200))
        .build()
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(3), cache.warm_up()).await;
    // Lets the blocked reading thread go, so that the runtime can shut down.
    let _ = std::fs::OpenOptions::new().write(true).open(&path);
    let e = outcome.expect("warm-up bounded").unwrap_err();
    assert!(
        e.to_string().contains("no such table"),
        "the backends' error: {e}"
    );
    assert_eq!(cache.tiered_stats().snapshot_errors, 1);
}
