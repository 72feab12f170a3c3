//! The fault-injecting proxy of `tests/support/proxy.rs` does what the fault tests need, against
//! a private `redis-server`: it forwards, delays each direction, silences old connections (and
//! with `silence_all` new ones) with their sockets open, resumes them losing nothing, kills
//! connections, counts them, and closes everything when dropped; inside a runtime or not.

#![cfg(feature = "redis")]

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis_server.rs"]
mod redis_server;

use proxy::Proxy;
use redis_server::RedisServer;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";
/// Long enough for anything that should answer, on a loaded 2-core machine.
const ANSWER: Duration = Duration::from_secs(2);
/// How long a silenced connection is watched for an answer that must not come.
const SILENT: Duration = Duration::from_millis(300);

fn upstream(server: &RedisServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

/// A server and a proxy in front of it, or `None` when the test is skipped.
fn start() -> Option<(RedisServer, Proxy)> {
    let server = RedisServer::start()?;
    let proxy = Proxy::start(upstream(&server));
    Some((server, proxy))
}

fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly `expected` within [`ANSWER`] and checks it.
fn expect(stream: &mut TcpStream, expected: &[u8]) {
    stream.set_read_timeout(Some(ANSWER)).unwrap();
    let mut got = vec![0; expected.len()];
    stream
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("no {:?}: {e}", String::from_utf8_lossy(expected)));
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

/// One PING round trip; returns how long it took.
fn ping(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    stream.write_all(PING).unwrap();
    expect(stream, PONG);
    started.elapsed()
}

/// Checks nothing arrives for [`SILENT`], and that the stream is not at its end either.
fn expect_silence(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(SILENT)).unwrap();
    let mut byte = [0];
    match stream.read(&mut byte) {
        Ok(0) => panic!("a silenced connection was closed"),
        Ok(_) => panic!("a silenced connection answered"),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "a silenced connection failed: {e}"
        ),
    }
}

/// A RESP `ECHO` of `word`, and Redis's reply to it.
fn echo(word: &str) -> (Vec<u8>, Vec<u8>) {
    let n = word.len();
    (
        format!("*2\r\n$4\r\nECHO\r\n${n}\r\n{word}\r\n").into_bytes(),
        format!("${n}\r\n{word}\r\n").into_bytes(),
    )
}

#[test]
fn pings_pass_through_and_connections_are_counted() {
    let Some((_server, proxy)) = start() else {
        return;
    };
    assert_eq!(proxy.connections_accepted(), 0);
    assert!(proxy.url().ends_with(&format!(":{}", proxy.addr().port())));
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    ping(&mut a);
    ping(&mut b);
    ping(&mut a);
    assert_eq!(proxy.connections_accepted(), 2);
}

#[test]
fn a_delay_holds_each_direction_and_keeps_the_order() {
    let Some((_server, proxy)) = start() else {
        return;
    };
    let mut old = connect(&proxy);
    ping(&mut old);
    proxy.set_delay(Duration::from_millis(25));
    let mut new = connect(&proxy);
    for stream in [&mut old, &mut new] {
        let rtt = ping(stream);
        assert!(
            rtt >= Duration::from_millis(50),
            "a 25 ms delay gave a {rtt:?} round trip"
        );
        assert!(rtt < ANSWER, "a 25 ms delay gave a {rtt:?} round trip");
    }

    // Separate writes, so separate chunks in flight at once: they arrive in order, each reply
    // matching its request.
    let words = ["one", "two", "three", "four"];
    for word in words {
        old.write_all(&echo(word).0).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    for word in words {
        expect(&mut old, &echo(word).1);
    }

    proxy.set_delay(Duration::ZERO);
    assert!(ping(&mut old) < ANSWER);
}

#[test]
fn silence_hangs_existing_connections_but_not_new_ones() {
    let Some((_server, proxy)) = start() else {
        return;
    };
    let mut old = connect(&proxy);
    ping(&mut old);
    proxy.silence();

    old.write_all(PING).unwrap();
    expect_silence(&mut old);
    let mut new = connect(&proxy);
    ping(&mut new);

    proxy.resume();
    // The PING sent while silenced was held, not lost: its answer comes first.
    expect(&mut old, PONG);
    ping(&mut old);
    ping(&mut new);
    assert_eq!(proxy.connections_accepted(), 2);
}

#[test]
fn silence_all_hangs_new_connections_too() {
    let Some((_server, proxy)) = start() else {
        return;
    };
    let mut old = connect(&proxy);
    ping(&mut old);
    proxy.silence_all(true);

    let mut new = connect(&proxy);
    new.write_all(PING).unwrap();
    old.write_all(PING).unwrap();
    expect_silence(&mut new);
    expect_silence(&mut old);

    proxy.silence_all(false);
    expect(&mut new, PONG);
    expect(&mut old, PONG);

    // `resume` ends `silence_all` as well.
    proxy.silence_all(true);
    old.write_all(PING).unwrap();
    expect_silence(&mut old);
    proxy.resume();
    expect(&mut old, PONG);
    assert_eq!(proxy.connections_accepted(), 2);
}

#[test]
fn killed_connections_end_and_new_ones_work() {
    let Some((_server, proxy)) = start() else {
        return;
    };
    let mut old = connect(&proxy);
    ping(&mut old);
    proxy.kill_connections();

    old.set_read_timeout(Some(ANSWER)).unwrap();
    let mut byte = [0];
    match old.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("a killed connection sent data"),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "a killed connection stayed open"
        ),
    }
    let mut new = connect(&proxy);
    ping(&mut new);
    assert_eq!(proxy.connections_accepted(), 2);
}

#[test]
fn dropping_the_proxy_closes_everything_promptly() {
    let Some((_server, proxy)) = start() else {
        return;
    };
    let addr = proxy.addr();
    let mut live = connect(&proxy);
    ping(&mut live);
    let mut silent = connect(&proxy);
    ping(&mut silent);
    proxy.set_delay(Duration::from_millis(25));
    proxy.silence();

    let started = Instant::now();
    drop(proxy);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the drop took {:?}",
        started.elapsed()
    );
    for stream in [&mut live, &mut silent] {
        stream.set_read_timeout(Some(ANSWER)).unwrap();
        let mut byte = [0];
        let end = stream.read(&mut byte);
        assert!(
            matches!(end, Ok(0)) || end.is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
            "a connection outlived the proxy"
        );
    }
    assert!(
        TcpStream::connect(addr).is_err(),
        "the proxy's port still accepts"
    );
}

/// The crate's Redis client through the proxy, from inside a runtime of either flavour: the
/// proxy must not need the test's runtime to make progress.
async fn redis_client_through_the_proxy() {
    let Some((_server, proxy)) = start() else {
        return;
    };
    let client = redis::Client::open(proxy.url()).unwrap();
    let mut old = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut old).await.unwrap();
    assert_eq!(pong, "PONG");

    proxy.set_delay(Duration::from_millis(25));
    let started = Instant::now();
    let _: String = redis::cmd("PING").query_async(&mut old).await.unwrap();
    let rtt = started.elapsed();
    assert!(
        rtt >= Duration::from_millis(50) && rtt < ANSWER,
        "a 25 ms delay gave a {rtt:?} round trip"
    );
    proxy.set_delay(Duration::ZERO);

    proxy.silence();
    let hung =
        tokio::time::timeout(SILENT, redis::cmd("PING").query_async::<String>(&mut old)).await;
    assert!(!matches!(hung, Ok(Ok(_))), "a silenced connection answered");
    let mut new = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut new).await.unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(proxy.connections_accepted(), 2);
}

#[tokio::test]
async fn the_redis_client_works_through_it_on_a_current_thread_runtime() {
    redis_client_through_the_proxy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_client_works_through_it_on_a_multi_thread_runtime() {
    redis_client_through_the_proxy().await;
}
