//! A private `redis-server` for one test: started on a free loopback port, and killed,
//! restarted or paused at will, so the Redis tests never touch a shared server.
//!
//! Without a `redis-server` binary on the `PATH`, [`RedisServer::start`] prints that the test is
//! skipped and returns `None`; with `FLAGCACHE_REQUIRE_REDIS=1` (set by `.ci/run`) it panics
//! instead, so CI cannot pass by skipping.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private server.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    password: Option<String>,
    /// The TLS port, when the server also listens with TLS (`start_tls`).
    tls_port: Option<u16>,
}

/// The reply to a raw command, as RESP types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

fn binary_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `ca.pem` (a test CA) and `cert.pem`/`key.pem` (a certificate for 127.0.0.1 it signed)
/// in `dir`; false when `openssl` is missing or fails.
fn make_certificates(dir: &std::path::Path) -> bool {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=IP:127.0.0.1\n").is_ok()
        && openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=flagcache test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ])
        && openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
        ])
        && openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ])
}

/// Says the test is skipped because of `why`, or fails it when `FLAGCACHE_REQUIRE_REDIS=1`.
pub fn skip_or_fail(why: &str) {
    assert!(
        std::env::var("FLAGCACHE_REQUIRE_REDIS").as_deref() != Ok("1"),
        "FLAGCACHE_REQUIRE_REDIS=1 but {why}"
    );
    eprintln!("skipped: {why} (set FLAGCACHE_REQUIRE_REDIS=1 to fail instead)");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local address").port()
}

impl RedisServer {
    /// Starts a server without a password, or returns `None` (after saying so) when the binary
    /// is missing and Redis is not required.
    pub fn start() -> Option<Self> {
        Self::start_with_password(None)
    }

    /// Starts a server that requires `password` (`requirepass`) when one is given.
    pub fn start_with_password(password: Option<&str>) -> Option<Self> {
        let mut server = Self::prepare(password)?;
        server.spawn();
        Some(server)
    }

    /// Starts a server that also listens with TLS, on a certificate for 127.0.0.1 signed by a
    /// test CA, both made with the `openssl` command; the harness's own commands keep using the
    /// plain port.
    pub fn start_tls() -> Option<Self> {
        let mut server = Self::prepare(None)?;
        if !make_certificates(&server.dir) {
            skip_or_fail("no `openssl` command to make test certificates");
            return None;
        }
        server.tls_port = Some(free_port());
        server.spawn();
        Some(server)
    }

    fn prepare(password: Option<&str>) -> Option<Self> {
        if !binary_available() {
            skip_or_fail("no redis-server binary on the PATH");
            return None;
        }
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("flagcache-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        Some(Self {
            child: None,
            port,
            dir,
            password: password.map(str::to_owned),
            tls_port: None,
        })
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        if let Some(tls_port) = self.tls_port {
            cmd.args(["--tls-port", &tls_port.to_string()])
                .args(["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem"])
                .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
                .current_dir(&self.dir);
        }
        self.child = Some(cmd.spawn().expect("spawn redis-server"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_command(&["PING"]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        );
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL for the server (with the password, if it has one).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// A `rediss://` URL for the TLS port (`start_tls`).
    pub fn tls_url(&self) -> String {
        let port = self
            .tls_port
            .expect("the server was started with start_tls");
        format!("rediss://127.0.0.1:{port}")
    }

    /// The test CA's certificate (PEM), for the client to trust.
    pub fn tls_ca_certificate(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("ca.pem")).expect("read the test CA certificate")
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: it keeps nothing on disk).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops the server answering clients for `duration` (`CLIENT PAUSE ... ALL`).
    pub fn pause(&self, duration: Duration) {
        let ms = duration.as_millis().to_string();
        let reply = self.command(&["CLIENT", "PAUSE", &ms, "ALL"]);
        assert_eq!(reply, Reply::Status("OK".into()), "CLIENT PAUSE failed");
    }

    /// Sends one command on a fresh connection and returns the reply; panics on I/O errors.
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    /// Sends one command with binary arguments (to store bytes that are not valid UTF-8).
    pub fn command_bytes(&self, args: &[&[u8]]) -> Reply {
        self.try_command_bytes(args)
            .unwrap_or_else(|e| panic!("command on port {}: {e}", self.port))
    }

    /// [`command`](Self::command) that reports I/O errors (a killed server refuses the
    /// connection).
    pub fn try_command(&self, args: &[&str]) -> std::io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.try_command_bytes(&args)
    }

    fn try_command_bytes(&self, args: &[&[u8]]) -> std::io::Result<Reply> {
        self.command_as(self.password.as_deref(), args)
    }

    /// Sends one command after authenticating with `password` (none: no `AUTH`); a refused
    /// `AUTH` is returned as the reply.
    pub fn command_as(&self, password: Option<&str>, args: &[&[u8]]) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        if let Some(password) = password {
            stream.write_all(&encode(&[b"AUTH", password.as_bytes()]))?;
            let auth = read_reply(&mut reader)?;
            if auth != Reply::Status("OK".into()) {
                return Ok(auth);
            }
        }
        stream.write_all(&encode(args))?;
        read_reply(&mut reader)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command, without a password, on a fresh connection to whatever server listens on `port`
/// of 127.0.0.1: the nodes of the cluster harness (`redis_cluster.rs`) are not `RedisServer`s.
pub fn try_command_on(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    stream.write_all(&encode(&args))?;
    read_reply(&mut BufReader::new(stream))
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1.min(line.len()));
    let number = || rest.parse::<i64>().map_err(|_| invalid(line));
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(number()?),
        "$" => match number()? {
            -1 => Reply::Bulk(None),
            n => {
                let mut buf = vec![0; usize::try_from(n).map_err(|_| invalid(line))? + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Reply::Bulk(Some(buf))
            }
        },
        "*" => match number()? {
            -1 => Reply::Array(None),
            n => Reply::Array(Some(
                (0..n)
                    .map(|_| read_reply(reader))
                    .collect::<Result<_, _>>()?,
            )),
        },
        _ => return Err(invalid(line)),
    })
}
