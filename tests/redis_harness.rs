//! The private-server harness of `tests/support/redis_server.rs` does what the Redis tests need:
//! start on a free port, answer, die when killed, come back when restarted, stall when paused,
//! and refuse a wrong password.

#[path = "support/redis_server.rs"]
mod redis_server;

use redis_server::{RedisServer, Reply};
use std::time::{Duration, Instant};

#[test]
fn a_private_server_answers_dies_and_comes_back() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    assert_ne!(server.port(), 6379, "never the shared server's port");
    assert_eq!(server.command(&["PING"]), Reply::Status("PONG".into()));
    assert_eq!(
        server.command(&["SET", "k", "v"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        server.command(&["GET", "k"]),
        Reply::Bulk(Some(b"v".to_vec()))
    );
    server.command_bytes(&[b"SET", b"raw", &[0xff, 0x00, 0xfe]]);
    assert_eq!(
        server.command(&["GET", "raw"]),
        Reply::Bulk(Some(vec![0xff, 0x00, 0xfe]))
    );

    server.kill();
    assert!(
        server.try_command(&["PING"]).is_err(),
        "a killed server still answers"
    );

    server.restart();
    assert_eq!(server.command(&["PING"]), Reply::Status("PONG".into()));
    assert_eq!(
        server.command(&["GET", "k"]),
        Reply::Bulk(None),
        "a restarted server is empty"
    );
}

#[test]
fn a_paused_server_stalls_its_clients() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    server.pause(Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(server.command(&["GET", "k"]), Reply::Bulk(None));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the command was answered during the pause, after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_password_protected_server_refuses_a_wrong_password() {
    let Some(server) = RedisServer::start_with_password(Some("s3cret")) else {
        return;
    };
    assert!(server.url().contains(":s3cret@"));
    assert_eq!(server.command(&["PING"]), Reply::Status("PONG".into()));
    let wrong = server
        .command_as(Some("nope"), &[b"PING"])
        .expect("connect");
    assert!(
        matches!(&wrong, Reply::Error(e) if e.starts_with("WRONGPASS")),
        "wrong password: {wrong:?}"
    );
    let none = server.command_as(None, &[b"PING"]).expect("connect");
    assert!(
        matches!(&none, Reply::Error(e) if e.starts_with("NOAUTH")),
        "no password: {none:?}"
    );
}
