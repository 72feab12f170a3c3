//! A private Redis Cluster for one test: `redis-server` nodes on free loopback ports, joined with
//! `redis-cli --cluster create`, whose nodes can be killed, restarted or stopped at will, so the
//! cluster tests see real slot ownership, MOVED replies and failovers.
//!
//! Without `redis-server` and `redis-cli` on the `PATH`, [`RedisCluster::start`] prints that the
//! test is skipped and returns `None`; with `FLAGCACHE_REQUIRE_REDIS=1` it panics instead.

#![allow(dead_code)] // each test binary uses its own part of the harness

#[path = "redis_server.rs"]
pub mod redis_server;

pub use redis_server::Reply;

use std::cell::Cell;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Every key hashes to one of these slots.
const SLOTS: i64 = 16384;

/// A running private cluster.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    dir: PathBuf,
    /// None once killed.
    child: Option<Child>,
    /// Stopped with SIGSTOP: it accepts connections but answers nothing, so the harness's own
    /// queries skip it.
    paused: Cell<bool>,
}

/// One slot range of a node's `CLUSTER SLOTS` view and the port of the primary serving it.
type SlotMap = Vec<(i64, i64, u16)>;

fn binary_available(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port whose cluster bus port (+10000) is free too. Client ports come from 10000..22768 so both
/// stay below 32768, where Linux starts handing out ephemeral ports: no outgoing connection (of
/// this or another test) takes one between the check and the node's bind.
fn free_port_pair() -> u16 {
    const LOW: u32 = 10_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // A per-process start, so test binaries running side by side rarely probe the same ports.
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let offset = (start + u32::from(NEXT.fetch_add(1, Ordering::Relaxed))) % SPAN;
        let port = u16::try_from(LOW + offset).expect("below 22768");
        let bindable = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if bindable(port) && bindable(port + 10_000) {
            return port;
        }
    }
    panic!("no free port pair (P, P+10000) below 32768");
}

/// Starts a cluster node on `port` with its config in `dir` and waits for it to answer; None
/// when it exits first (someone took the port after the check).
fn spawn_node(port: u16, dir: &Path) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--protected-mode", "no", "--cluster-enabled", "yes"])
        .args(["--cluster-config-file", "nodes.conf"])
        // Short, so a killed primary's replica takes over within about two seconds.
        .args(["--cluster-node-timeout", "1000"])
        // A replica may always take over, however long it was cut off from its primary.
        .args(["--cluster-replica-validity-factor", "0"])
        // Replicas stay with the primary redis-cli gave them: the tests expect a fixed shape.
        .args(["--cluster-allow-replica-migration", "no"])
        .args(["--appendonly", "no", "--save", ""])
        // A replica's full sync starts at once, not after the default 5 s wait for more replicas.
        .args(["--repl-diskless-sync-delay", "0"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if redis_server::try_command_on(port, &["PING"]).is_ok() {
            return Some(child);
        }
        if child.try_wait().is_ok_and(|status| status.is_some()) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cluster node on port {port} did not answer PING within 10 s");
}

fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {signal} {} failed", child.id());
}

/// The value of `name` in an `INFO` text (`name:value` lines).
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
}

fn number(info: &str, name: &str) -> u64 {
    field(info, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in INFO:\n{info}"))
}

fn text(reply: &Reply) -> Result<String, String> {
    match reply {
        Reply::Bulk(Some(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        other => Err(format!("expected text, got {other:?}")),
    }
}

/// Parses a `CLUSTER SLOTS` reply into ranges sorted by their first slot.
fn slot_map(reply: &Reply) -> Result<SlotMap, String> {
    let bad = || format!("unexpected CLUSTER SLOTS reply {reply:?}");
    let Reply::Array(Some(ranges)) = reply else {
        return Err(bad());
    };
    let mut map = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Reply::Array(Some(fields)) = range else {
            return Err(bad());
        };
        match fields.as_slice() {
            [
                Reply::Integer(first),
                Reply::Integer(last),
                Reply::Array(Some(primary)),
                ..,
            ] => {
                let Some(Reply::Integer(port)) = primary.get(1) else {
                    return Err(bad());
                };
                map.push((*first, *last, u16::try_from(*port).map_err(|_| bad())?));
            }
            _ => return Err(bad()),
        }
    }
    map.sort_unstable();
    Ok(map)
}

impl RedisCluster {
    /// Starts `primaries` primaries (at least 3, as Redis requires) with `replicas` replicas each,
    /// and returns once every node serves the whole slot map and every replica has synced; None
    /// (after saying so) when the binaries are missing and Redis is not required.
    pub fn start(primaries: usize, replicas: usize) -> Option<Self> {
        assert!(primaries >= 3, "a Redis Cluster needs at least 3 primaries");
        for binary in ["redis-server", "redis-cli"] {
            if !binary_available(binary) {
                redis_server::skip_or_fail(&format!("no {binary} binary on the PATH"));
                return None;
            }
        }
        let mut cluster = Self { nodes: Vec::new() };
        for _ in 0..primaries * (1 + replicas) {
            cluster.nodes.push(Self::new_node());
        }

        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in cluster.ports() {
            create.arg(format!("127.0.0.1:{port}"));
        }
        // Its output goes to a file, not a pipe, so that nothing blocks while it is waited for.
        let log = cluster.nodes[0].dir.join("redis-cli.log");
        let log_file = std::fs::File::create(&log).expect("create redis-cli.log");
        let mut cli = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log's handle"))
            .stderr(log_file)
            .spawn()
            .expect("run redis-cli --cluster create");
        // Bounded: redis-cli waits for the nodes to agree forever, even once they are dead.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = cli.try_wait().expect("wait for redis-cli") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = cli.kill();
                let _ = cli.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.is_some_and(|s| s.success()) {
            let outcome = match status {
                Some(status) => format!("failed ({status})"),
                None => "did not finish within 30 s".into(),
            };
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("redis-cli --cluster create {outcome}:\n{log}");
        }
        // redis-cli returns once the nodes agree on the configuration, before gossip has
        // reached every node and before the replicas have their data.
        cluster.wait_ok(Duration::from_secs(30));
        cluster.wait_replicas_synced(Duration::from_secs(30));
        Some(cluster)
    }

    /// A node on a fresh port pair and an empty directory (a stale `nodes.conf` would make it
    /// rejoin an old cluster); tries other ports when one turns out taken.
    fn new_node() -> Node {
        for _ in 0..10 {
            let port = free_port_pair();
            let dir = std::env::temp_dir()
                .join(format!("flagcache-cluster-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the node's directory");
            if let Some(child) = spawn_node(port, &dir) {
                return Node {
                    port,
                    dir,
                    child: Some(child),
                    paused: Cell::new(false),
                };
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("could not start a cluster node on any of 10 free ports");
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// The nodes neither killed nor paused, which the harness can ask.
    fn live(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.paused.get())
            .map(|n| n.port)
            .collect()
    }

    /// The first live node's answer to `args`.
    fn ask_any(&self, args: &[&str]) -> Reply {
        for port in self.live() {
            if let Ok(reply) = self.try_command(port, args) {
                return reply;
            }
        }
        panic!("no live cluster node answered {args:?}");
    }

    /// The seed URLs of every node (killed ones included), e.g. `redis://127.0.0.1:PORT`.
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Every node's port, in the order given to `redis-cli --cluster create` (primaries first).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The node's directory (its `nodes.conf` and `redis.log`), removed on drop.
    pub fn dir(&self, port: u16) -> &Path {
        &self.node(port).dir
    }

    /// The ports of the primaries serving slots now, sorted, as a live node's `CLUSTER SLOTS`
    /// tells (not cached): a killed primary stays listed until its replica has taken over.
    pub fn primaries(&self) -> Vec<u16> {
        let map = slot_map(&self.ask_any(&["CLUSTER", "SLOTS"])).unwrap_or_else(|e| panic!("{e}"));
        let mut ports: Vec<u16> = map.iter().map(|&(_, _, port)| port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The port of the primary serving `key`'s slot now, as a live node tells.
    pub fn primary_of(&self, key: &str) -> u16 {
        let slot = match self.ask_any(&["CLUSTER", "KEYSLOT", key]) {
            Reply::Integer(slot) => slot,
            other => panic!("CLUSTER KEYSLOT {key}: {other:?}"),
        };
        let map = slot_map(&self.ask_any(&["CLUSTER", "SLOTS"])).unwrap_or_else(|e| panic!("{e}"));
        map.iter()
            .find(|&&(first, last, _)| (first..=last).contains(&slot))
            .map(|&(_, _, port)| port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot} (key {key})"))
    }

    /// Sends one command to the node on `port` on a fresh connection; panics on I/O errors (a
    /// killed node refuses the connection; a paused one stalls it for 10 s).
    pub fn command(&self, port: u16, args: &[&str]) -> Reply {
        self.try_command(port, args)
            .unwrap_or_else(|e| panic!("{args:?} on port {port}: {e}"))
    }

    /// [`command`](Self::command) that reports I/O errors.
    pub fn try_command(&self, port: u16, args: &[&str]) -> std::io::Result<Reply> {
        redis_server::try_command_on(port, args)
    }

    /// Kills the node on `port` at once (SIGKILL), as a crash would; the cluster promotes one of
    /// its replicas after `cluster-node-timeout` (1 s) and an election.
    pub fn kill(&mut self, port: u16) {
        let node = self.node_mut(port);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused.set(false);
    }

    /// Starts a killed node again on its port with its `nodes.conf`, so it rejoins the cluster
    /// (a replaced primary comes back as a replica, empty: nothing is kept on disk). Returns
    /// when it answers; [`wait_ok`](Self::wait_ok) waits for the cluster to agree again.
    pub fn restart(&mut self, port: u16) {
        self.kill(port);
        let node = self.node_mut(port);
        node.child = Some(
            spawn_node(port, &node.dir)
                .unwrap_or_else(|| panic!("cluster node on port {port} exited on restart")),
        );
    }

    /// Stops the node on `port` (SIGSTOP): its connections stay open but it answers nothing and
    /// sends no gossip, so after `cluster-node-timeout` the others consider it failed.
    pub fn pause(&self, port: u16) {
        let node = self.node(port);
        signal(node.child.as_ref().expect("the node is running"), "-STOP");
        node.paused.set(true);
    }

    /// Lets a paused node run again (SIGCONT).
    pub fn resume(&self, port: u16) {
        let node = self.node(port);
        signal(node.child.as_ref().expect("the node is running"), "-CONT");
        node.paused.set(false);
    }

    /// Blocks until every live replica has applied every write its primary had taken when this
    /// was called, whichever connection made them. (`WAIT` through [`command`](Self::command)
    /// proves nothing: it waits for the writes of its own connection, and each command has a
    /// fresh one.) Panics after `timeout`.
    pub fn wait_replicated(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let live = self.live();
        for &primary in &live {
            let info = self.info_replication(primary);
            if field(&info, "role") != Some("master") {
                continue;
            }
            let target: u64 = number(&info, "master_repl_offset");
            // `slave0:ip=127.0.0.1,port=17188,state=online,offset=1234,lag=0`
            let replicas = info
                .lines()
                .filter(|l| l.starts_with("slave"))
                .filter_map(|l| {
                    let port = l.split(',').find_map(|kv| kv.strip_prefix("port="))?;
                    port.parse::<u16>().ok().filter(|p| live.contains(p))
                });
            for replica in replicas.collect::<Vec<_>>() {
                loop {
                    let info = self.info_replication(replica);
                    let applied: u64 = number(&info, "slave_repl_offset");
                    if field(&info, "master_port") == Some(primary.to_string().as_str())
                        && applied >= target
                    {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "replica {replica} has not applied {primary}'s offset {target} after \
                         {timeout:?}:\n{info}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn info_replication(&self, port: u16) -> String {
        text(&self.command(port, &["INFO", "replication"]))
            .unwrap_or_else(|e| panic!("INFO replication on port {port}: {e}"))
    }

    /// Blocks until every live (neither killed nor paused) node reports `cluster_state:ok` and
    /// has the same `CLUSTER SLOTS` view, in which all 16384 slots are served by live primaries;
    /// panics with what was still wrong after `timeout`.
    pub fn wait_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let Err(why) = self.check_ok() else {
                return;
            };
            assert!(
                Instant::now() < deadline,
                "cluster not ok after {timeout:?}: {why}\n{}",
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts moving the slot of `key` to the primary on `target` (`IMPORTING`/`MIGRATING`) and
    /// migrates up to `keys` of its keys, then leaves the slot mid-migration: the source
    /// answers `ASK` for the keys it no longer has. Returns how many keys moved.
    pub fn half_migrate(&self, key: &str, target: u16, keys: usize) -> usize {
        let slot = self.slot_of(key);
        let source = self.primary_of(key);
        start_migration(&slot, source, target);
        migrate_keys(&slot, source, target, keys)
    }

    /// The slot of `key`, as text for commands.
    fn slot_of(&self, key: &str) -> String {
        match self.ask_any(&["CLUSTER", "KEYSLOT", key]) {
            Reply::Integer(slot) => slot.to_string(),
            other => panic!("CLUSTER KEYSLOT {key}: {other:?}"),
        }
    }

    /// Moves the slot of `key` (which must hold no keys) from its primary to the primary on
    /// `target`, as a resharding does (`CLUSTER SETSLOT ... IMPORTING/MIGRATING/NODE`), and waits
    /// until every live node agrees.
    pub fn move_empty_slot(&self, key: &str, target: u16) {
        let slot = self.slot_of(key);
        let source = self.primary_of(key);
        assert_ne!(source, target, "the slot is already there");
        start_migration(&slot, source, target);
        assign_slot(&slot, source, target, &[]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.live().iter().any(|&port| {
            let map = slot_map(&self.command(port, &["CLUSTER", "SLOTS"])).unwrap();
            let slot: i64 = slot.parse().unwrap();
            !map.iter()
                .any(|&(first, last, primary)| (first..=last).contains(&slot) && primary == target)
        }) {
            assert!(
                Instant::now() < deadline,
                "the nodes do not agree on slot {slot}'s move"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every live node's `CLUSTER NODES` view, for a failure message.
    fn describe(&self) -> String {
        let mut out = String::new();
        for port in self.live() {
            let nodes = self.try_command(port, &["CLUSTER", "NODES"]);
            let nodes = match &nodes {
                Ok(reply) => text(reply).unwrap_or_else(|e| e),
                Err(e) => e.to_string(),
            };
            out += &format!("CLUSTER NODES on {port}:\n{nodes}\n");
        }
        out
    }

    fn check_ok(&self) -> Result<(), String> {
        let live = self.live();
        let ask = |port: u16, args: &[&str]| {
            self.try_command(port, args)
                .map_err(|e| format!("{args:?} on port {port}: {e}"))
        };
        let mut agreed: Option<(u16, SlotMap)> = None;
        for &port in &live {
            let info = text(&ask(port, &["CLUSTER", "INFO"])?)?;
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err(format!("port {port} does not report cluster_state:ok"));
            }
            let map = slot_map(&ask(port, &["CLUSTER", "SLOTS"])?)?;
            let mut next = 0;
            for &(first, last, primary) in &map {
                if first != next {
                    return Err(format!("port {port} sees slot {next} unserved"));
                }
                if !live.contains(&primary) {
                    return Err(format!(
                        "port {port} sees slots {first}-{last} served by {primary}, not live"
                    ));
                }
                next = last + 1;
            }
            if next != SLOTS {
                return Err(format!("port {port} sees slot {next} unserved"));
            }
            match &agreed {
                Some((other, seen)) if *seen != map => {
                    return Err(format!("ports {other} and {port} see different slot maps"));
                }
                Some(_) => {}
                None => agreed = Some((port, map)),
            }
        }
        match agreed {
            Some(_) => Ok(()),
            None => Err("no live node".into()),
        }
    }

    /// Blocks until every live replica has its primary's data (`master_link_status:up`, no sync
    /// under way), so a test's first write is not raced by an initial full sync.
    fn wait_replicas_synced(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for port in self.live() {
            loop {
                let info = self.info_replication(port);
                if field(&info, "role") == Some("master")
                    || (field(&info, "master_link_status") == Some("up")
                        && field(&info, "master_sync_in_progress") == Some("0"))
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica on port {port} not synced after {timeout:?}:\n{info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // A failing test leaves the nodes' logs and `nodes.conf` behind to be read.
        let keep = std::thread::panicking();
        for node in &mut self.nodes {
            // SIGKILL ends a stopped process too.
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if keep {
                eprintln!("kept {} (node {})", node.dir.display(), node.port);
            } else {
                let _ = std::fs::remove_dir_all(&node.dir);
            }
        }
    }
}

/// Moves `slot` with its keys from the primary on `source` to the one on `target`, `step` keys
/// per `MIGRATE` with `pause` between (the keys of the slot are on both primaries meanwhile),
/// then assigns it to `target` on every primary in `primaries`. A free function on ports, so a
/// test can run it on a thread of its own while it reads. Returns how many keys moved.
pub fn move_slot_with_keys(
    primaries: &[u16],
    slot: i64,
    source: u16,
    target: u16,
    step: usize,
    pause: Duration,
) -> usize {
    let slot = slot.to_string();
    start_migration(&slot, source, target);
    let mut moved = 0;
    loop {
        let n = migrate_keys(&slot, source, target, step);
        if n == 0 {
            break;
        }
        moved += n;
        std::thread::sleep(pause);
    }
    assign_slot(&slot, source, target, primaries);
    moved
}

/// One command to the node on `port`; panics on I/O errors.
fn ask(port: u16, args: &[&str]) -> Reply {
    redis_server::try_command_on(port, args)
        .unwrap_or_else(|e| panic!("{args:?} on port {port}: {e}"))
}

fn node_id(port: u16) -> String {
    match ask(port, &["CLUSTER", "MYID"]) {
        Reply::Bulk(Some(id)) => String::from_utf8(id).unwrap(),
        other => panic!("CLUSTER MYID on {port}: {other:?}"),
    }
}

/// Marks `slot` importing on `target` and migrating on `source`.
fn start_migration(slot: &str, source: u16, target: u16) {
    let ok = Reply::Status("OK".into());
    let (source_id, target_id) = (node_id(source), node_id(target));
    assert_eq!(
        ask(
            target,
            &["CLUSTER", "SETSLOT", slot, "IMPORTING", &source_id]
        ),
        ok
    );
    assert_eq!(
        ask(
            source,
            &["CLUSTER", "SETSLOT", slot, "MIGRATING", &target_id]
        ),
        ok
    );
}

/// Migrates up to `count` keys of `slot` from `source` to `target`; returns how many.
fn migrate_keys(slot: &str, source: u16, target: u16, count: usize) -> usize {
    let count = count.to_string();
    let names: Vec<String> = match ask(source, &["CLUSTER", "GETKEYSINSLOT", slot, &count]) {
        Reply::Array(Some(names)) => names
            .into_iter()
            .map(|n| match n {
                Reply::Bulk(Some(n)) => String::from_utf8(n).unwrap(),
                other => panic!("GETKEYSINSLOT: {other:?}"),
            })
            .collect(),
        other => panic!("GETKEYSINSLOT: {other:?}"),
    };
    if !names.is_empty() {
        let port = target.to_string();
        let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        migrate.extend(names.iter().map(String::as_str));
        let reply = ask(source, &migrate);
        assert!(
            matches!(&reply, Reply::Status(s) if s == "OK" || s == "NOKEY"),
            "MIGRATE: {reply:?}"
        );
    }
    names.len()
}

/// Assigns `slot` to `target` on `target`, `source` and the other `primaries`.
fn assign_slot(slot: &str, source: u16, target: u16, primaries: &[u16]) {
    let ok = Reply::Status("OK".into());
    let target_id = node_id(target);
    assert_eq!(
        ask(target, &["CLUSTER", "SETSLOT", slot, "NODE", &target_id]),
        ok
    );
    assert_eq!(
        ask(source, &["CLUSTER", "SETSLOT", slot, "NODE", &target_id]),
        ok
    );
    for &port in primaries {
        if port != source && port != target {
            let _ = ask(port, &["CLUSTER", "SETSLOT", slot, "NODE", &target_id]);
        }
    }
}
