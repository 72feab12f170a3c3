//! The private-cluster harness of `tests/support/redis_cluster.rs` does what the cluster tests
//! need: the cluster forms with every slot served, a key is answered by its primary and MOVED
//! elsewhere, a killed primary's replica takes over with its data, and nothing outlives the drop.

#[path = "support/redis_cluster.rs"]
mod redis_cluster;

use redis_cluster::{RedisCluster, Reply};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn ok() -> Reply {
    Reply::Status("OK".into())
}

fn bulk(value: &str) -> Reply {
    Reply::Bulk(Some(value.as_bytes().to_vec()))
}

#[test]
fn a_cluster_serves_each_key_from_its_primary_and_moves_the_rest() {
    let started = Instant::now();
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    eprintln!("3-primary cluster up in {:?}", started.elapsed());
    let ports = cluster.ports();
    assert_eq!(ports.len(), 3);
    assert_eq!(
        cluster.urls(),
        ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
    );
    for &port in &ports {
        let Reply::Bulk(Some(info)) = cluster.command(port, &["CLUSTER", "INFO"]) else {
            panic!("CLUSTER INFO on port {port}");
        };
        let info = String::from_utf8(info).expect("CLUSTER INFO is text");
        assert!(info.contains("cluster_state:ok"), "port {port}: {info}");
        assert!(
            info.contains("cluster_slots_ok:16384"),
            "port {port}: {info}"
        );
    }
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    assert_eq!(cluster.primaries(), sorted);

    // Keys until every primary owns at least one, so all three are written to and read from.
    let mut keys: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        if sorted.iter().all(|p| keys.iter().any(|(_, o)| o == p)) {
            break;
        }
        let key = format!("flag:{i}");
        let owner = cluster.primary_of(&key);
        keys.push((key, owner));
    }
    for (key, owner) in &keys {
        let value = format!("value of {key}");
        assert_eq!(cluster.command(*owner, &["SET", key, &value]), ok());
        assert_eq!(cluster.command(*owner, &["GET", key]), bulk(&value));

        let Reply::Integer(slot) = cluster.command(*owner, &["CLUSTER", "KEYSLOT", key]) else {
            panic!("CLUSTER KEYSLOT {key}");
        };
        let wrong = *sorted.iter().find(|p| *p != owner).expect("another node");
        let moved = cluster.command(wrong, &["GET", key]);
        assert_eq!(
            moved,
            Reply::Error(format!("MOVED {slot} 127.0.0.1:{owner}")),
            "{key} sent to {wrong}"
        );
    }

    // A slot with no key changes hands: its new primary serves it and its old one MOVEs it.
    let tag = "{harness-moved}";
    let from = cluster.primary_of(tag);
    let to = *sorted
        .iter()
        .find(|&&p| p != from)
        .expect("another primary");
    cluster.move_empty_slot(tag, to);
    assert_eq!(cluster.primary_of(tag), to);
    let key = format!("{tag}:k");
    assert_eq!(cluster.command(to, &["SET", &key, "moved"]), ok());
    let moved = cluster.command(from, &["GET", &key]);
    assert!(
        matches!(&moved, Reply::Error(e) if e.starts_with("MOVED") && e.ends_with(&format!(":{to}"))),
        "{key} sent to its slot's old primary: {moved:?}"
    );
    eprintln!("test 1 done in {:?}", started.elapsed());
}

#[test]
fn a_killed_primary_is_replaced_by_its_replica_with_its_data() {
    let started = Instant::now();
    let Some(mut cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    eprintln!("3+3 cluster up in {:?}", started.elapsed());
    assert_eq!(cluster.ports().len(), 6);
    let before = cluster.primaries();
    assert_eq!(before.len(), 3, "primaries {before:?}");

    let key = "flag:failover";
    let owner = cluster.primary_of(key);
    assert_eq!(cluster.command(owner, &["SET", key, "kept"]), ok());
    // Not `WAIT 1 1000`: on a connection of its own it waits for nothing (its writes are none).
    cluster.wait_replicated(Duration::from_secs(5));

    cluster.kill(owner);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(15);
    let after = loop {
        let now = cluster.primaries();
        if now.len() == 3 && !now.contains(&owner) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "no replica took over from {owner} within 15 s: primaries {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let promoted = killed.elapsed();
    cluster.wait_ok(Duration::from_secs(15));
    let healed = killed.elapsed();
    assert!(
        healed < Duration::from_secs(15),
        "ok again only after {healed:?}"
    );
    eprintln!("replica promoted {promoted:?} and cluster ok {healed:?} after the kill");

    let new_owner = cluster.primary_of(key);
    assert!(
        after.contains(&new_owner) && !before.contains(&new_owner),
        "{key} is served by {new_owner}, not a promoted replica (before {before:?}, after {after:?})"
    );
    assert_eq!(cluster.command(new_owner, &["GET", key]), bulk("kept"));

    // The old primary rejoins as a replica of the one that replaced it.
    cluster.restart(owner);
    cluster.wait_ok(Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let Reply::Bulk(Some(info)) = cluster.command(owner, &["INFO", "replication"]) else {
            panic!("INFO replication on port {owner}");
        };
        let info = String::from_utf8(info).expect("INFO is text");
        if info.contains("role:slave") && info.contains(&format!("master_port:{new_owner}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted {owner} is not a replica of {new_owner}:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cluster.primaries(), after);
    eprintln!("test 2 done in {:?}", started.elapsed());
}

#[test]
fn a_paused_node_stalls_and_dropping_the_cluster_ends_every_node() {
    let started = Instant::now();
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let ports = cluster.ports();
    let dirs: Vec<_> = ports.iter().map(|&p| cluster.dir(p).to_owned()).collect();
    assert!(dirs.iter().all(|d| d.join("nodes.conf").exists()));

    // A stopped node takes the connection and the command but answers only once resumed.
    let paused = ports[0];
    cluster.pause(paused);
    let mut stream = TcpStream::connect(("127.0.0.1", paused)).expect("connect");
    stream.write_all(b"PING\r\n").expect("send PING");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("set a read timeout");
    let mut byte = [0; 1];
    assert!(
        stream.read(&mut byte).is_err(),
        "a paused node answered a command"
    );
    cluster.resume(paused);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("PONG");
    assert_eq!(line, "+PONG\r\n");

    // Dropping ends stopped nodes too.
    cluster.pause(ports[1]);
    drop(cluster);
    for &port in &ports {
        for p in [port, port + 10_000] {
            assert!(
                TcpStream::connect(("127.0.0.1", p)).is_err(),
                "port {p} still accepts connections after the drop"
            );
        }
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} outlived the drop", dir.display());
    }
    eprintln!("test 3 done in {:?}", started.elapsed());
}
