//! A fault-injecting TCP proxy for one test, between a client and a private `redis-server` on
//! loopback: it adds latency, hangs connections with their sockets left open (a hung server
//! behind a load balancer, a dropped NAT entry), kills them, and counts them.
//!
//! It runs on its own OS threads with blocking sockets, so it works whether or not the test runs
//! inside a tokio runtime, and never needs that runtime to be free. Every blocking call is
//! bounded (reads, writes and accept polls by [`POLL`]) and every loop checks its flags, so no
//! test can hang on the proxy; dropping the [`Proxy`] closes everything and joins its threads
//! (bounded).

#![allow(dead_code)] // each test binary uses its own part of the harness
#![allow(clippy::disallowed_types)] // test support, not crate code: std's atomics and locks

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest any proxy thread blocks before it looks at its flags again: how late a fault
/// (or the drop) can take effect, and how far past its due time a delayed chunk can be written.
const POLL: Duration = Duration::from_millis(5);
/// How long dropping the proxy waits for its threads before leaving them behind.
const JOIN_TIMEOUT: Duration = Duration::from_secs(2);
/// A refused upstream (a killed server) fails at once on loopback; this only bounds the odd case.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A running proxy; dropping it stops it.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    delay_nanos: AtomicU64,
    silence_all: AtomicBool,
    /// Connections numbered below this are silent ([`Proxy::silence`]); 0 silences none.
    silenced_below: AtomicUsize,
    /// Connections accepted so far; also the next connection's number.
    accepted: AtomicUsize,
    /// Weak, so a connection's sockets close as soon as both its pumps are done with them.
    connections: Mutex<Vec<Weak<Connection>>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

struct Connection {
    id: usize,
    client: TcpStream,
    server: TcpStream,
    closed: AtomicBool,
}

impl Proxy {
    /// Listens on a free `127.0.0.1` port and forwards every connection to `upstream`, which
    /// must be a loopback address.
    pub fn start(upstream: SocketAddr) -> Self {
        assert!(
            upstream.ip().is_loopback(),
            "the test proxy only forwards to loopback, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        // Non-blocking, so the accept loop can poll the stop flag.
        listener
            .set_nonblocking(true)
            .expect("make the listener non-blocking");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            upstream,
            stop: AtomicBool::new(false),
            delay_nanos: AtomicU64::new(0),
            silence_all: AtomicBool::new(false),
            silenced_below: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            connections: Mutex::new(Vec::new()),
            pumps: Mutex::new(Vec::new()),
        });
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-accept-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&shared, listener)
            })
            .expect("spawn the proxy's accept thread");
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `redis://` URL for the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// Holds every chunk, in either direction, for `delay` after it is read before writing it:
    /// a round trip gains 2 × `delay`. Applies to chunks read from now on, on every connection;
    /// chunks already held keep their due time, and each direction keeps its byte order.
    pub fn set_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.shared.delay_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Stops every connection accepted so far forwarding, both ways, with its sockets left open;
    /// connections accepted later forward normally. Nothing is lost: the proxy stops reading, and
    /// what it holds or the kernel buffers is delivered, in order, on [`resume`](Self::resume).
    ///
    /// "Accepted" is the proxy's `accept`, which can trail a client's `connect`: make one round
    /// trip on a connection before counting on it being silenced.
    pub fn silence(&self) {
        let accepted = self.shared.accepted.load(Ordering::SeqCst);
        self.shared.silenced_below.store(accepted, Ordering::SeqCst);
    }

    /// While on, every connection, existing or new, is silent as with [`silence`](Self::silence)
    /// (new ones are accepted, and connected upstream, but never forwarded).
    pub fn silence_all(&self, on: bool) {
        self.shared.silence_all.store(on, Ordering::SeqCst);
    }

    /// Undoes [`silence`](Self::silence) and [`silence_all`](Self::silence_all): every
    /// connection forwards again.
    pub fn resume(&self) {
        self.shared.silence_all.store(false, Ordering::SeqCst);
        self.shared.silenced_below.store(0, Ordering::SeqCst);
    }

    /// Connections accepted since the start, closed ones included.
    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Closes every current connection on both sides (the client and the server each see the
    /// stream end); new connections are still accepted.
    pub fn kill_connections(&self) {
        self.shared.kill_connections();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.kill_connections();
        let deadline = Instant::now() + JOIN_TIMEOUT;
        // The acceptor first: once it is gone, no pump can be added behind the drain.
        if let Some(acceptor) = self.acceptor.take() {
            join_bounded(acceptor, deadline);
        }
        let pumps = std::mem::take(&mut *lock(&self.shared.pumps));
        for pump in pumps {
            join_bounded(pump, deadline);
        }
    }
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::SeqCst))
    }

    fn is_silent(&self, id: usize) -> bool {
        self.silence_all.load(Ordering::SeqCst) || id < self.silenced_below.load(Ordering::SeqCst)
    }

    fn kill_connections(&self) {
        let connections = std::mem::take(&mut *lock(&self.connections));
        for connection in connections.iter().filter_map(Weak::upgrade) {
            connection.close();
        }
    }
}

impl Connection {
    /// Shuts both sockets down, which sends each peer a FIN and wakes the pumps' reads; the
    /// pumps see `closed` and end, and the last one to go closes the descriptors.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A panicking test thread must not wedge the proxy's drop behind a poisoned lock.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Joins `handle` if it ends by `deadline`; otherwise leaves it running (it only holds loopback
/// sockets already shut down, and ends at its next poll) rather than hang the test.
fn join_bounded(handle: JoinHandle<()>, deadline: Instant) {
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if handle.is_finished() {
        if handle.join().is_err() {
            eprintln!("a test proxy thread panicked");
        }
    } else {
        eprintln!("a test proxy thread did not stop within {JOIN_TIMEOUT:?}; left behind");
    }
}

/// Owns the listener, so it closes when this thread ends.
fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => serve(shared, client),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // WouldBlock is the idle case; anything else (say, out of descriptors) is retried
            // after a pause rather than spun on.
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Connects a newly accepted client upstream and starts its two pumps.
fn serve(shared: &Arc<Shared>, client: TcpStream) {
    let id = shared.accepted.fetch_add(1, Ordering::SeqCst);
    // A refused upstream closes the client at once, as a load balancer with a dead backend does.
    let Ok(server) = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) else {
        return;
    };
    for stream in [&client, &server] {
        // Accepted sockets may inherit the listener's non-blocking mode on some platforms.
        let configured = stream.set_nonblocking(false).is_ok()
            // Without this, Nagle's algorithm against delayed ACKs adds its own ~40 ms stalls.
            && stream.set_nodelay(true).is_ok()
            && stream.set_read_timeout(Some(POLL)).is_ok()
            && stream.set_write_timeout(Some(POLL)).is_ok();
        if !configured {
            return;
        }
    }
    let connection = Arc::new(Connection {
        id,
        client,
        server,
        closed: AtomicBool::new(false),
    });
    {
        let mut connections = lock(&shared.connections);
        connections.retain(|c| c.strong_count() > 0);
        connections.push(Arc::downgrade(&connection));
    }
    let mut pumps = lock(&shared.pumps);
    pumps.retain(|p| !p.is_finished());
    for upward in [true, false] {
        let shared = Arc::clone(shared);
        let ours = Arc::clone(&connection);
        let name = format!("proxy-{id}-{}", if upward { "up" } else { "down" });
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let (from, to) = if upward {
                (&ours.client, &ours.server)
            } else {
                (&ours.server, &ours.client)
            };
            pump(&shared, &ours, from, to);
        });
        match spawned {
            Ok(handle) => pumps.push(handle),
            Err(_) => connection.close(),
        }
    }
}

/// Forwards `from` to `to`, one direction of one connection, until either side ends, the
/// connection is killed, or the proxy stops.
///
/// One thread does both the reads and the delayed writes, through a FIFO of chunks stamped with
/// their due time: order is kept by construction, and reading goes on while a chunk is held, so
/// a chunk waits `delay` from when it arrived, not from when the one before it went out.
fn pump(shared: &Shared, connection: &Connection, mut from: &TcpStream, to: &TcpStream) {
    let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0; 16 * 1024];
    let mut ended = false;
    loop {
        if shared.stop.load(Ordering::SeqCst) || connection.is_closed() {
            return;
        }
        if shared.is_silent(connection.id) {
            // Neither read nor write; the sockets stay open, the kernel buffers what comes.
            std::thread::sleep(POLL);
            continue;
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, chunk) = held.pop_front().expect("a front chunk");
            if !write_all(shared, connection, to, &chunk) {
                connection.close();
                return;
            }
        }
        let wait = held.front().map_or(POLL, |(due, _)| {
            due.saturating_duration_since(now)
                .clamp(Duration::from_millis(1), POLL)
        });
        if ended {
            if held.is_empty() {
                // Pass the half-close on; the other direction carries on until it ends too.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            std::thread::sleep(wait);
            continue;
        }
        // Only this thread sets `from`'s read timeout (the other pump sets its write timeout).
        if from.set_read_timeout(Some(wait)).is_err() {
            connection.close();
            return;
        }
        match from.read(&mut buf) {
            Ok(0) => ended = true,
            Ok(n) => held.push_back((Instant::now() + shared.delay(), buf[..n].to_vec())),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                connection.close();
                return;
            }
        }
    }
}

/// Writes all of `chunk` in writes bounded by the socket's write timeout, giving up when the
/// connection is killed or the proxy stops; false when the chunk could not be written.
fn write_all(shared: &Shared, connection: &Connection, mut to: &TcpStream, chunk: &[u8]) -> bool {
    let mut rest = chunk;
    while !rest.is_empty() {
        if shared.stop.load(Ordering::SeqCst) || connection.is_closed() {
            return false;
        }
        match to.write(rest) {
            Ok(0) => return false,
            Ok(n) => rest = &rest[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    true
}
