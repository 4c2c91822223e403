//! Scale: N idle keep-alive connections (each has completed one request, so
//! the server has them Idle), then SIGTERM: the time to the drain's
//! completion and to the process's exit, and the server's resident memory
//! per connection. The connections are held by helper processes (`runner
//! hold`), each from its own loopback source address (one source address
//! has ~28k ephemeral ports towards one destination) and within its own
//! descriptor limit.
//!
//! Also, in-process: the core's state per tracked connection,
//! `Server::memory_footprint() / N` for N idle connections.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::http;
use crate::proc::{Binaries, Kind, Server, exit_watcher, fd_count, rss_kib};
use crate::stats::ms;

/// Connections per helper process.
const PER_HOLDER: usize = 8_000;
/// Bound on establishing all connections.
const SETUP: Duration = Duration::from_secs(180);
/// Bound on the drain and exit.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub(crate) struct Figures {
    pub(crate) kind: Kind,
    pub(crate) conns: usize,
    pub(crate) done_ms: Option<f64>,
    pub(crate) exit_ms: Option<f64>,
    pub(crate) exit: String,
    /// Resident memory added by the idle connections, per connection.
    pub(crate) rss_per_conn: Option<f64>,
    pub(crate) server_fds: Option<usize>,
}

/// The figure for `Server::memory_footprint() / n`, with every connection
/// leased (as lameduck's driver leases each) and idle after one request; with the default config and with idle and
/// header timeouts armed (the deadline index then holds every connection).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreMemory {
    pub(crate) conns: usize,
    pub(crate) bytes_default: f64,
    pub(crate) bytes_timers: f64,
}

#[allow(clippy::disallowed_methods)] // the core takes `now`; here is where it comes from
pub(crate) fn core_memory(n: usize) -> CoreMemory {
    use lameduck_core::{Config, Server};
    let per_conn = |config: Config| {
        let t0 = Instant::now();
        let mut server = Server::new(config, t0);
        let l = server.add_listener().expect("a listener");
        let empty = server.memory_footprint();
        let mut leases = Vec::with_capacity(n);
        // A microsecond between events, as on a real server (events at the
        // very same nanosecond would re-arm timers to times they had).
        let mut step = 0u64;
        let mut now = || {
            step += 1;
            t0 + Duration::from_micros(step)
        };
        for _ in 0..n {
            let c = server.accept(l, now()).expect("accept");
            // As lameduck's driver does for every connection.
            leases.push(server.lease(c).expect("a lease"));
            server.request_started(c, now()).expect("request");
            server.headers_complete(c, now()).expect("head");
            server.response_done(c, now()).expect("response");
        }
        // Drained as an adapter does after every input.
        while server.poll_action().is_some() {}
        (server.memory_footprint() - empty) as f64 / n as f64
    };
    CoreMemory {
        conns: n,
        bytes_default: per_conn(Config::default()),
        bytes_timers: per_conn(Config {
            idle_timeout: Some(Duration::from_secs(60)),
            header_timeout: Some(Duration::from_secs(10)),
            ..Config::default()
        }),
    }
}

/// Bound on how long a holder holds its connections.
const HOLD_MAX: Duration = Duration::from_secs(3600);

/// `runner hold ADDR COUNT SOURCE`: opens COUNT connections to ADDR from
/// SOURCE, one `GET /` on each, prints `ready N`, then holds them until its
/// stdin ends — closing each one the server closes (end of stream or a
/// reset) as soon as it sees it, as an HTTP client does, so that the
/// server's gentle close gets its answering FIN at once instead of waiting
/// for it in vain.
pub(crate) fn hold(args: &[String]) -> Result<(), String> {
    let [addr, count, source] = args else {
        return Err("usage: runner hold ADDR COUNT SOURCE".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|_| "bad ADDR")?;
    let count: usize = count.parse().map_err(|_| "bad COUNT")?;
    let source: Ipv4Addr = source.parse().map_err(|_| "bad SOURCE")?;
    crate::raise_nofile();
    let mut conns = Vec::with_capacity(count);
    let deadline = Instant::now() + SETUP;
    for i in 0..count {
        if Instant::now() > deadline {
            return Err(format!("only {i} connections within {SETUP:?}"));
        }
        let mut conn = http::connect(addr, Some(source), Duration::from_secs(10))
            .map_err(|e| format!("connection {i}: {e}"))?;
        conn.get("/")
            .map_err(|f| format!("request {i}: {}", f.failure))?;
        conns.push(conn);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {}", conns.len());
    let _ = out.flush();
    drop(out);
    hold_open(conns)
}

/// Waits for the runner to close our stdin (or go away), at most
/// [`HOLD_MAX`]; meanwhile closes each connection as the server ends it.
/// (epoll: a wake-up costs the connections that became readable, not all
/// of them, so the holders take little CPU from the server they measure.)
fn hold_open(conns: Vec<http::Conn>) -> Result<(), String> {
    use rustix::buffer::spare_capacity;
    use rustix::event::{Timespec, epoll};
    const STDIN: u64 = u64::MAX;
    let stdin = std::io::stdin();
    let poller = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
    epoll::add(
        &poller,
        &stdin,
        epoll::EventData::new_u64(STDIN),
        epoll::EventFlags::IN,
    )
    .map_err(|e| format!("epoll (stdin): {e}"))?;
    for (i, conn) in conns.iter().enumerate() {
        epoll::add(
            &poller,
            conn.socket(),
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
        )
        .map_err(|e| format!("epoll (connection {i}): {e}"))?;
    }
    let mut open: Vec<Option<http::Conn>> = conns.into_iter().map(Some).collect();
    let mut events = Vec::with_capacity(1024);
    let deadline = Instant::now() + HOLD_MAX;
    let tick = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    // Each pass waits up to a second for stdin or connections to become
    // readable; bounded by the deadline.
    while Instant::now() < deadline {
        events.clear();
        match epoll::wait(&poller, spare_capacity(&mut events), Some(&tick)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
        for event in &events {
            let index = event.data.u64();
            if index == STDIN {
                // A line or the end of stdin: either way, the runner is done.
                let mut line = String::new();
                let _ = stdin.lock().read_line(&mut line);
                return Ok(());
            }
            let slot = usize::try_from(index).ok().and_then(|i| open.get_mut(i));
            if let Some(slot) = slot
                && slot.as_mut().is_some_and(|conn| !conn.still_open())
            {
                // Dropped: closed here too (and out of the epoll set).
                *slot = None;
            }
        }
    }
    Ok(())
}

struct Holders {
    children: Vec<Child>,
}

impl Drop for Holders {
    fn drop(&mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        for child in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(5);
            // Polls until it exits or the deadline; then kills.
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn start_holders(runner: &Path, addr: SocketAddr, total: usize) -> Result<Holders, String> {
    let mut holders = Holders {
        children: Vec::new(),
    };
    let (tx, rx) = mpsc::channel();
    let mut left = total;
    let mut index = 0u8;
    while left > 0 {
        let count = left.min(PER_HOLDER);
        left -= count;
        let source = Ipv4Addr::new(127, 0, 0, 2 + index);
        index += 1;
        let mut child = Command::new(runner)
            .arg("hold")
            .arg(addr.to_string())
            .arg(count.to_string())
            .arg(source.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a holder: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        holders.children.push(child);
    }
    drop(tx);
    let deadline = Instant::now() + SETUP + Duration::from_secs(10);
    for _ in 0..holders.children.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("ready ") => {}
            Ok(line) => return Err(format!("a holder failed: {line:?}")),
            Err(_) => return Err("holders not ready in time".into()),
        }
    }
    Ok(holders)
}

pub(crate) fn run(
    bins: &Binaries,
    runner: &Path,
    kind: Kind,
    conns: usize,
) -> Result<Figures, String> {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut server = Server::start(bins.command(kind, listen, 10))?;
    std::thread::sleep(Duration::from_millis(100));
    let rss_before = rss_kib(server.pid);
    let holders = start_holders(runner, server.addr, conns)?;
    std::thread::sleep(Duration::from_millis(200));
    let rss_after = rss_kib(server.pid);
    let server_fds = fd_count(server.pid);
    let exited = exit_watcher(server.take_child().ok_or("no child")?);
    let term = Instant::now();
    server.signal(Signal::TERM)?;
    let exit = exited.recv_timeout(WAIT).ok();
    // Printed before the exit (the baseline has no drain, and no such line).
    let done = match kind {
        Kind::Baseline => None,
        Kind::Demo | Kind::Go => server.stderr_line("done:", Duration::from_secs(1)),
    };
    drop(holders);
    let rss_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) => Some((a.saturating_sub(b) * 1024) as f64 / conns as f64),
        _ => None,
    };
    Ok(Figures {
        kind,
        conns,
        done_ms: done.map(|at| ms(at.duration_since(term))),
        exit_ms: exit.map(|e| ms(e.at.duration_since(term))),
        exit: exit.map_or_else(|| "no exit".to_owned(), |e| e.describe()),
        rss_per_conn,
        server_fds,
    })
}
