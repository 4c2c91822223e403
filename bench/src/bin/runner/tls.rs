//! TLS: new HTTPS connections per second — each a TCP connect, a full TLS
//! handshake (no resumption), one `GET /` with `Connection: close`, its
//! response read to the server's `close_notify` — for the demo
//! (`serve --tls-cert --tls-key`: lameduck tracks the handshake and the
//! request) and the untracked baseline (`baseline --tls-cert --tls-key`:
//! the same rustls configuration and `futures-rustls` acceptor, no lameduck
//! driver, core or tracking), in interleaved rounds (which server goes
//! first alternates round by round); and callgrind's instructions per
//! connection of both, under the same client loop.
//!
//! h2load cannot open a new connection per request, hence this client: a
//! few threads, each a blocking rustls client (`ring`, the server's
//! provider) trusting a certificate authority made for the run (the tests'
//! `TestCa`, rcgen), ALPN `http/1.1`. Every loop is bounded in count and
//! time; loopback only.
//!
//! ```text
//! let figures = tls::run(&bins, &tls::Plan { rounds: 5, connections: 5_000, clients: 4 }, true);
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lameduck::tls::rustls;
use lameduck_testkit::tls::TestCa;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::overhead::{self, Instructions};
use crate::proc::{Binaries, Server, Setup, cpu_ns};

/// How many connections, and how they are spread.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) rounds: usize,
    /// New connections per measured run (all clients together).
    pub(crate) connections: usize,
    /// Client threads, each opening its share of the connections one after
    /// the other.
    pub(crate) clients: usize,
}

/// One measured run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Connections completed (handshake, request, response, clean close)
    /// per second of the run's wall time.
    pub(crate) per_sec: f64,
    pub(crate) completed: u64,
    /// The server's CPU time per completed connection, µs.
    pub(crate) cpu_us_per_conn: Option<f64>,
}

/// The section's figures.
#[derive(Debug, Default)]
pub(crate) struct Result {
    pub(crate) runs: Vec<(Setup, Vec<Run>)>,
    pub(crate) instructions: Vec<(Setup, std::result::Result<Instructions, String>)>,
    pub(crate) errors: Vec<String>,
    pub(crate) plan: Option<Plan>,
    /// The negotiated protocol version and cipher suite, as the client saw
    /// them on its first connection to each server.
    pub(crate) sessions: Vec<(Setup, String)>,
}

impl Result {
    pub(crate) fn runs_of(&self, setup: Setup) -> Option<&[Run]> {
        crate::proc::of(&self.runs, setup).map(Vec::as_slice)
    }

    pub(crate) fn instructions_of(
        &self,
        setup: Setup,
    ) -> Option<&std::result::Result<Instructions, String>> {
        crate::proc::of(&self.instructions, setup)
    }
}

/// The two servers compared: one smol executor thread each.
pub(crate) fn setups() -> [Setup; 2] {
    crate::proc::smol_pair()
}

/// Connections of callgrind's two runs (the difference is what is counted).
pub(crate) const SMALL: usize = 200;
pub(crate) const LARGE: usize = 1_200;

/// Longest a measured run (or a callgrind load) may take, whatever happens.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest a single connection's connect, reads and writes may each block.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The request each connection sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// The certificate files of a run, removed when dropped.
struct CertFiles {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    /// A certificate for `localhost` issued by `ca`, written as PEM files.
    fn write(ca: &TestCa) -> io::Result<CertFiles> {
        let dir = std::env::temp_dir().join(format!("lameduck-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let issued = ca.issue("lameduck bench");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &issued.cert_pem)?;
        std::fs::write(&key, &issued.key_pem)?;
        Ok(CertFiles { dir, cert, key })
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The command starting `setup` on `listen` with TLS from `certs`.
fn command(bins: &Binaries, setup: Setup, listen: SocketAddr, certs: &CertFiles) -> Command {
    // The demo as built with lameduck's `tls` feature (bench/run.sh).
    let bins = Binaries {
        demo: bins.demo_tls.clone(),
        ..bins.clone()
    };
    let mut c = bins.setup_command(setup, listen, 10);
    c.arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key);
    c
}

/// One connection: connect, handshake, `GET /`, the response read to the
/// server's `close_notify`. Returns the session's protocol version and
/// cipher suite.
fn one_connection(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> std::result::Result<String, String> {
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(conn, tcp);
    // The write runs the handshake first (rustls' `StreamOwned`).
    stream
        .write_all(REQUEST)
        .map_err(|e| format!("handshake or request: {e}"))?;
    let session = match (
        stream.conn.protocol_version(),
        stream.conn.negotiated_cipher_suite(),
    ) {
        (Some(version), Some(suite)) => format!("{version:?}, {:?}", suite.suite()),
        _ => "unknown".to_owned(),
    };
    // Bounded by the reads' timeout; a response is one or two records.
    let mut response = Vec::with_capacity(512);
    // `Ok` only after the server's `close_notify`: an end of stream without
    // it is an `UnexpectedEof` error.
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("response: {e} (after {} bytes)", response.len()))?;
    if !response.starts_with(b"HTTP/1.1 200 ") || !response.ends_with(b"hello") {
        return Err(format!(
            "unexpected response: {:?}",
            String::from_utf8_lossy(&response[..response.len().min(200)])
        ));
    }
    Ok(session)
}

/// `connections` connections to `addr` over `clients` threads; the first
/// failure ends the load (and is returned), and so does `RUN_TIMEOUT`.
/// Returns how many completed and the session seen first.
fn load(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    connections: usize,
    clients: usize,
) -> std::result::Result<(u64, String), String> {
    let clients = clients.clamp(1, connections.max(1));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let config = config.clone();
            // An even share; the first threads take the remainder.
            let share = connections / clients + usize::from(i < connections % clients);
            std::thread::spawn(move || -> std::result::Result<(u64, String), String> {
                let mut session = String::new();
                for n in 0..share {
                    if Instant::now() >= deadline {
                        return Err(format!("not done within {RUN_TIMEOUT:?} ({n} of {share})"));
                    }
                    session = one_connection(addr, &config)?;
                }
                Ok((share as u64, session))
            })
        })
        .collect();
    let mut completed = 0;
    let mut session = String::new();
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok((n, s))) => {
                completed += n;
                session = s;
            }
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some("a client thread panicked".to_owned())),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok((completed, session)),
    }
}

/// One measured run against `server`, with its CPU time.
fn measured(
    server: &Server,
    config: &Arc<ClientConfig>,
    plan: &Plan,
) -> std::result::Result<(Run, String), String> {
    let before = cpu_ns(server.pid);
    let started = Instant::now();
    let (completed, session) = load(server.addr, config, plan.connections, plan.clients)?;
    let wall = started.elapsed().as_secs_f64();
    let cpu_us_per_conn = before
        .zip(cpu_ns(server.pid))
        .map(|(before, after)| after.saturating_sub(before) as f64 / 1e3 / completed as f64);
    Ok((
        Run {
            per_sec: completed as f64 / wall,
            completed,
            cpu_us_per_conn,
        },
        session,
    ))
}

/// The section: rounds of new connections, then (if `callgrind`)
/// instructions per connection.
pub(crate) fn run(bins: &Binaries, plan: &Plan, callgrind: bool) -> Result {
    let mut result = Result {
        plan: Some(plan.clone()),
        ..Result::default()
    };
    let ca = TestCa::new();
    let config = ca.client_config(&[b"http/1.1"]);
    let certs = match CertFiles::write(&ca) {
        Ok(certs) => certs,
        Err(e) => {
            result
                .errors
                .push(format!("cannot write the certificate: {e}"));
            return result;
        }
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut servers = Vec::new();
    for setup in setups() {
        match Server::start(command(bins, setup, listen, &certs)) {
            Ok(server) => servers.push((setup, server)),
            Err(e) => result.errors.push(format!("{}: {e}", setup.name())),
        }
    }
    // A warm-up of each (not counted), which also records the session.
    for (setup, server) in &servers {
        let warm = Plan {
            connections: (plan.connections / 4).max(100),
            ..plan.clone()
        };
        match measured(server, &config, &warm) {
            Ok((_, session)) => result.sessions.push((*setup, session)),
            Err(e) => result.errors.push(format!("{} warm-up: {e}", setup.name())),
        }
    }
    result.runs = servers.iter().map(|(s, _)| (*s, Vec::new())).collect();
    for round in 0..plan.rounds {
        for i in 0..servers.len() {
            let (setup, server) = &servers[(i + round) % servers.len()];
            eprintln!(
                "runner: tls round {}/{}: {}",
                round + 1,
                plan.rounds,
                setup.name()
            );
            match measured(server, &config, plan) {
                Ok((run, _)) => {
                    if let Some((_, runs)) = result.runs.iter_mut().find(|(s, _)| s == setup) {
                        runs.push(run);
                    }
                }
                Err(e) => result.errors.push(format!("{}: {e}", setup.name())),
            }
        }
    }
    for (_, server) in servers {
        server.stop(Duration::from_secs(5));
    }
    if callgrind {
        for setup in setups() {
            eprintln!(
                "runner: tls instructions per connection (callgrind): {}",
                setup.name()
            );
            let plain = || command(bins, setup, listen, &certs);
            let count = |addr, connections| {
                load(addr, &config, connections, plan.clients).and_then(|(n, _)| {
                    if n == connections as u64 {
                        Ok(())
                    } else {
                        Err(format!("{n} of {connections} connections completed"))
                    }
                })
            };
            let counted = overhead::instructions_of_command(&plain, setup, SMALL, LARGE, count);
            result.instructions.push((setup, counted));
        }
    }
    drop(certs);
    result
}
