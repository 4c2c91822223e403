//! Restarts under load, shared by the process tests of both restart modes
//! (`tests/restart.rs`: the server replaces itself; `tests/supervisor.rs`:
//! a supervisor replaces its generations): scratch directories and
//! installed executables, `/pid` probes, and the load clients —
//! keep-alive, a new connection per request, slow requests — with their
//! tallies. Every loop is bounded in count and time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::{EVENTUALLY, serve_binary};
use lameduck_testkit::client::{Client, Ending};
use lameduck_testkit::h2::{H2Client, H2Outcome};

/// A fresh directory under the target directory (the same filesystem as
/// the demo binary, so it can be hard-linked there), named after the test
/// process and `name`.
///
/// # Panics
/// If it cannot be created.
#[must_use]
pub fn scratch_dir(name: &str) -> PathBuf {
    let target = serve_binary()
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let dir = target.join(format!("restart-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// What [`install`] puts in place.
#[derive(Debug, Clone, Copy)]
pub enum Install<'a> {
    /// A copy (a hard link if it can) of this binary.
    Binary(&'a Path),
    /// A script with this text; executable or not.
    Script(&'a str, bool),
}

/// Successors that fail, each way a restart can fail: what it is, what to
/// install in its place, and what the failure report must say.
pub const FAILING_SUCCESSORS: [(&str, Install<'static>, &str); 4] = [
    (
        "exits at once",
        Install::Script("#!/bin/sh\nexit 7\n", true),
        "exited before it was ready (exit status: 7)",
    ),
    (
        "never ready",
        Install::Script("#!/bin/sh\nexec sleep 60\n", true),
        "was not ready in time",
    ),
    (
        "not executable",
        Install::Script("#!/bin/sh\nexit 0\n", false),
        "could not be started",
    ),
    (
        "not a program",
        Install::Script("\u{7f}ELF? not really\n", true),
        "could not be started",
    ),
];

/// Puts `contents` at `path` atomically (a new file renamed over it), as
/// an upgrade would: the running binary's file is not touched.
///
/// # Panics
/// If it cannot.
pub fn install(path: &Path, contents: Install<'_>) {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    match contents {
        Install::Binary(source) => {
            if std::fs::hard_link(source, &tmp).is_err() {
                std::fs::copy(source, &tmp).expect("copying the demo binary");
            }
        }
        Install::Script(text, executable) => {
            std::fs::write(&tmp, text).expect("writing a script");
            use std::os::unix::fs::PermissionsExt;
            let mode = if executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                .expect("setting permissions");
        }
    }
    std::fs::rename(&tmp, path).expect("installing");
}

/// The demo installed in a scratch directory, where a restart finds it
/// again, with a second copy beside it that stays the real binary: a test
/// swaps the first for a wrapper that runs the second with a fault (or
/// behind a gate), then puts the demo back.
#[derive(Debug)]
pub struct SwappableDemo {
    /// The scratch directory (from [`scratch_dir`]).
    pub dir: PathBuf,
    /// What the server runs and its restarts run again.
    pub exe: PathBuf,
    /// The demo itself, which wrappers `exec`.
    pub real: PathBuf,
}

impl SwappableDemo {
    /// A scratch directory named after `name` with the demo installed twice.
    ///
    /// # Panics
    /// If the directory or the copies cannot be made.
    #[must_use]
    pub fn new(name: &str) -> Self {
        let dir = scratch_dir(name);
        let exe = dir.join("serve");
        let real = dir.join("serve-real");
        install(&real, Install::Binary(&serve_binary()));
        install(&exe, Install::Binary(&serve_binary()));
        Self { dir, exe, real }
    }

    /// A command that runs the installed executable.
    #[must_use]
    pub fn command(&self) -> std::process::Command {
        std::process::Command::new(&self.exe)
    }

    /// Puts the demo back in place of any wrapper.
    pub fn install_demo(&self) {
        install(&self.exe, Install::Binary(&serve_binary()));
    }

    /// Installs a wrapper that runs the demo with `LAMEDUCK_DEMO_FAULT`
    /// set to `fault`.
    pub fn install_fault(&self, fault: &str) {
        self.install_wrapper(&format!("LAMEDUCK_DEMO_FAULT={fault} "));
    }

    /// Installs a wrapper that runs `before` (shell lines, or a variable
    /// assignment ending in a space) and then `exec`s the demo.
    pub fn install_wrapper(&self, before: &str) {
        let script = format!("#!/bin/sh\n{before}exec {} \"$@\"\n", self.real.display());
        install(&self.exe, Install::Script(&script, true));
    }
}

/// `GET /pid` on a new connection: the pid of the process that served it.
///
/// # Errors
/// If the request fails or the answer is not a pid.
pub fn pid_at(addr: SocketAddr) -> std::io::Result<u32> {
    let response = Client::connect(addr)?.get("/pid")?;
    response
        .text()
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad /pid answer {response:?}")))
}

/// Waits until new connections reach `pid` (the predecessor may still take
/// one it accepted just before it let the listener go).
///
/// # Panics
/// If they do not within [`EVENTUALLY`].
pub fn wait_serving(addr: SocketAddr, pid: u32) {
    let deadline = Instant::now() + EVENTUALLY;
    // One request per pass; bounded by the deadline.
    loop {
        let got = pid_at(addr);
        if got.as_ref().is_ok_and(|p| *p == pid) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/pid never answered {pid}: {got:?}"
        );
    }
}

/// What one load client saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Complete, correct responses.
    pub ok: AtomicU64,
    /// Requests whose idle keep-alive connection the draining predecessor
    /// had closed before any byte of a response: resent on a new
    /// connection, as HTTP clients do (the server never answered them).
    pub resent: AtomicU64,
    /// HTTP/2 requests the server never processed — handed back by the
    /// client because its connection was going away (the server's
    /// GOAWAY), or refused (`REFUSED_STREAM`) — and sent again on a new
    /// connection, as HTTP/2 allows (RFC 9113 §8.7).
    pub retried: AtomicU64,
    /// What failed, one line each.
    pub failures: Mutex<Vec<String>>,
}

impl Tally {
    /// Records a failure.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// Shared by the load clients and the restarting thread.
#[derive(Debug)]
pub struct Load {
    /// Where the clients connect.
    pub addr: SocketAddr,
    /// Set to stop the clients.
    pub stop: AtomicBool,
    /// Bumped after each hand-off is seen.
    pub restarts: AtomicU64,
    /// A slow request is in flight that was sent after the hand-off with
    /// this number (`restarts` when it was sent), plus one; 0: none.
    pub slow_in_flight: AtomicU64,
    /// Slow responses whose request was in flight across a hand-off.
    pub slow_across_restart: AtomicU64,
    /// The clients stop by then in any case.
    pub until: Instant,
    /// The clients go through a load balancer, which picks a backend per
    /// request: a client connection's requests may be served by different
    /// processes, so slow clients do not check that they are not.
    pub balanced: bool,
}

impl Load {
    /// Load against `addr` for at most `limit`.
    #[must_use]
    pub fn new(addr: SocketAddr, limit: Duration) -> Load {
        Load {
            addr,
            stop: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            slow_in_flight: AtomicU64::new(0),
            slow_across_restart: AtomicU64::new(0),
            until: Instant::now() + limit,
            balanced: false,
        }
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Acquire) && Instant::now() < self.until
    }
}

/// Keep-alive client: `GET /` over one connection for as long as the
/// server keeps it; a new one when it says `Connection: close` or has
/// closed it while idle.
pub fn keep_alive_client(load: &Load, tally: &Tally) {
    let mut conn: Option<Client> = None;
    // One request per pass; bounded by `load.until` and the count.
    for _ in 0..1_000_000 {
        if !load.running() {
            return;
        }
        let (mut client, fresh) = match conn.take() {
            Some(c) => (c, false),
            None => match Client::connect(load.addr) {
                Ok(c) => (c, true),
                Err(e) => return tally.fail(format!("keep-alive connect: {e}")),
            },
        };
        let outcome = client
            .send_get("/")
            .map_err(|e| (e.kind(), e.to_string()))
            .and_then(|()| {
                client
                    .read_response_or_close()
                    .map_err(|e| (e.kind(), e.to_string()))
            });
        match outcome {
            Ok(Ok(response)) => {
                if response.status != 200 || response.text() != "hello" {
                    return tally.fail(format!("keep-alive: bad response {response:?}"));
                }
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if !response.connection_close() {
                    conn = Some(client);
                }
            }
            // The idle connection was closed under the request: nothing was
            // answered; send it again on a new connection.
            Ok(Err(Ending::Eof | Ending::Reset)) if !fresh => {
                tally.resent.fetch_add(1, Ordering::Relaxed);
            }
            Err((std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset, _))
                if !fresh =>
            {
                tally.resent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(ending)) => {
                return tally.fail(format!("keep-alive: new connection ended ({ending:?})"));
            }
            Err((_, e)) => return tally.fail(format!("keep-alive: {e}")),
        }
    }
}

/// A new connection per request.
pub fn new_connection_client(load: &Load, tally: &Tally) {
    // One request per pass; bounded by `load.until` and the count.
    for _ in 0..1_000_000 {
        if !load.running() {
            return;
        }
        let response = Client::connect(load.addr).and_then(|mut c| c.get("/"));
        match response {
            Ok(r) if r.status == 200 && r.text() == "hello" => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => return tally.fail(format!("new connection: bad response {r:?}")),
            Err(e) => return tally.fail(format!("new connection: {e}")),
        }
    }
}

/// Slow requests (`/sleep?ms=300`, `/stream`): on each connection `/pid`
/// first, then every slow response must come from that same process
/// (unless the load is [`balanced`](Load::balanced)).
pub fn slow_client(load: &Load, tally: &Tally) {
    let mut conn: Option<(Client, u32)> = None;
    // One request per pass; bounded by `load.until` and the count.
    for i in 0..1_000_000u64 {
        if !load.running() {
            return;
        }
        let (mut client, pid) = match conn.take() {
            Some((c, pid)) => (c, pid),
            None => {
                let mut client = match Client::connect(load.addr) {
                    Ok(c) => c,
                    Err(e) => return tally.fail(format!("slow connect: {e}")),
                };
                match client.get("/pid") {
                    Ok(r) => match r.text().parse::<u32>() {
                        Ok(pid) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            if r.connection_close() {
                                continue;
                            }
                            (client, pid)
                        }
                        Err(_) => return tally.fail(format!("slow: bad /pid {r:?}")),
                    },
                    Err(e) => return tally.fail(format!("slow: /pid on a new connection: {e}")),
                }
            }
        };
        let (path, body) = if i % 2 == 0 {
            ("/sleep?ms=300", "slept 300".to_owned())
        } else {
            (
                "/stream?chunks=4&ms=100",
                "chunk 0\nchunk 1\nchunk 2\nchunk 3\n".to_owned(),
            )
        };
        let restarts_before = load.restarts.load(Ordering::Acquire);
        load.slow_in_flight
            .store(restarts_before + 1, Ordering::Release);
        let outcome = client
            .send_get(path)
            .map_err(|e| e.to_string())
            .and_then(|()| client.read_response_or_close().map_err(|e| e.to_string()));
        let _ = load.slow_in_flight.compare_exchange(
            restarts_before + 1,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        match outcome {
            Ok(Ok(response)) => {
                let served_by = response.header("x-pid").and_then(|p| p.parse::<u32>().ok());
                if response.status != 200 || response.text() != body {
                    return tally.fail(format!("slow {path}: bad or truncated {response:?}"));
                }
                if !load.balanced && served_by != Some(pid) {
                    return tally.fail(format!(
                        "slow {path}: served by {served_by:?}, the connection is to {pid}"
                    ));
                }
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if load.restarts.load(Ordering::Acquire) > restarts_before {
                    load.slow_across_restart.fetch_add(1, Ordering::Relaxed);
                }
                if !response.connection_close() {
                    conn = Some((client, pid));
                }
            }
            // Always on a used connection (`/pid` went first): a drain that
            // began just then may have closed it while idle.
            Ok(Err(_)) => {
                tally.resent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return tally.fail(format!("slow {path}: {e}")),
        }
    }
}

/// Concurrent streams at a time on an HTTP/2 client's connection.
const H2_STREAMS: usize = 4;

/// HTTP/2 client (h2c): `GET /` on four streams at once, round
/// after round, over one connection for as long as it takes requests; a
/// new one when the server sent GOAWAY.
pub fn h2_client(load: &Load, tally: &Tally) {
    let mut conn: Option<H2Client> = None;
    // One round per pass; bounded by `load.until` and the count.
    for _ in 0..1_000_000 {
        if !load.running() {
            return;
        }
        let client = match conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => match H2Client::connect(load.addr) {
                Ok(c) => c,
                Err(e) => return tally.fail(format!("h2 connect: {e}")),
            },
        };
        let mut keep = true;
        for outcome in client.try_get_many("/", H2_STREAMS) {
            match outcome {
                H2Outcome::Response(r) if r.status == 200 && r.text() == "hello" => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                H2Outcome::Response(r) => return tally.fail(format!("h2: bad response {r:?}")),
                H2Outcome::NeverProcessed(_) => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    keep = false;
                }
                H2Outcome::Failed(e) => return tally.fail(format!("h2: {e}")),
            }
        }
        if keep {
            conn = Some(client);
        }
    }
}

/// Slow HTTP/2 requests (`/sleep?ms=300`, `/stream`): on each connection
/// `/pid` first, then every slow response must come from that process.
pub fn h2_slow_client(load: &Load, tally: &Tally) {
    let mut conn: Option<(H2Client, u32)> = None;
    // One request per pass; bounded by `load.until` and the count.
    for i in 0..1_000_000u64 {
        if !load.running() {
            return;
        }
        let (client, pid) = match conn.take() {
            Some((c, pid)) if !c.is_closed() => (c, pid),
            _ => {
                let client = match H2Client::connect(load.addr) {
                    Ok(c) => c,
                    Err(e) => return tally.fail(format!("h2 slow connect: {e}")),
                };
                match client.try_get("/pid") {
                    H2Outcome::Response(r) => match r.text().parse::<u32>() {
                        Ok(pid) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            (client, pid)
                        }
                        Err(_) => return tally.fail(format!("h2 slow: bad /pid {r:?}")),
                    },
                    H2Outcome::NeverProcessed(_) => {
                        tally.retried.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    H2Outcome::Failed(e) => return tally.fail(format!("h2 slow: /pid: {e}")),
                }
            }
        };
        let (path, body) = if i % 2 == 0 {
            ("/sleep?ms=300", "slept 300".to_owned())
        } else {
            (
                "/stream?chunks=4&ms=100",
                "chunk 0\nchunk 1\nchunk 2\nchunk 3\n".to_owned(),
            )
        };
        let restarts_before = load.restarts.load(Ordering::Acquire);
        load.slow_in_flight
            .store(restarts_before + 1, Ordering::Release);
        let outcome = client.try_get(path);
        let _ = load.slow_in_flight.compare_exchange(
            restarts_before + 1,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        match outcome {
            H2Outcome::Response(r) => {
                if r.status != 200 || r.text() != body {
                    return tally.fail(format!("h2 slow {path}: bad or truncated {r:?}"));
                }
                if !load.balanced && r.pid != Some(pid) {
                    return tally.fail(format!(
                        "h2 slow {path}: served by {:?}, the connection is to {pid}",
                        r.pid
                    ));
                }
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if load.restarts.load(Ordering::Acquire) > restarts_before {
                    load.slow_across_restart.fetch_add(1, Ordering::Relaxed);
                }
                conn = Some((client, pid));
            }
            H2Outcome::NeverProcessed(_) => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
            }
            H2Outcome::Failed(e) => return tally.fail(format!("h2 slow {path}: {e}")),
        }
    }
}

/// The mixed load of a restart test: two keep-alive clients, two with a
/// new connection per request, two with slow requests, each on a thread.
#[derive(Debug)]
pub struct LoadRun {
    /// What the clients share.
    pub load: Arc<Load>,
    tallies: Vec<(&'static str, Arc<Tally>)>,
    clients: Vec<JoinHandle<()>>,
}

/// What a [`LoadRun`] saw.
#[derive(Debug)]
pub struct LoadReport {
    /// Responses that came back complete and correct.
    pub total: u64,
    /// Requests resent after finding an idle connection closed.
    pub resent: u64,
    /// HTTP/2 requests the server never processed, sent again.
    pub retried: u64,
    /// Slow responses whose request was in flight across a restart.
    pub across: u64,
    /// What failed.
    pub failures: Vec<String>,
    /// Per client kind: `kind: N ok, M resent`.
    pub per_kind: Vec<String>,
    /// The fewest responses any client got.
    pub least: u64,
}

impl LoadRun {
    /// Starts the clients against `addr` (for at most two minutes).
    #[must_use]
    pub fn start(addr: SocketAddr) -> LoadRun {
        LoadRun::with(Load::new(addr, Duration::from_secs(120)))
    }

    /// Starts the clients against a load balancer at `addr` (for at most
    /// two minutes): see [`Load::balanced`].
    #[must_use]
    pub fn through_balancer(addr: SocketAddr) -> LoadRun {
        let mut load = Load::new(addr, Duration::from_secs(120));
        load.balanced = true;
        LoadRun::with(load)
    }

    /// Starts HTTP/2 clients (h2c) against `addr` (for at most two
    /// minutes): two multiplexing `GET /`, two with slow requests, and one
    /// HTTP/1.1 client with a new connection per request beside them.
    #[must_use]
    pub fn start_h2(addr: SocketAddr) -> LoadRun {
        LoadRun::with_kinds(
            Load::new(addr, Duration::from_secs(120)),
            &["h2", "h2", "h2-slow", "h2-slow", "new-conn"],
        )
    }

    fn with(load: Load) -> LoadRun {
        LoadRun::with_kinds(
            load,
            &[
                "keep-alive",
                "keep-alive",
                "new-conn",
                "new-conn",
                "slow",
                "slow",
            ],
        )
    }

    fn with_kinds(load: Load, kinds: &[&'static str]) -> LoadRun {
        let load = Arc::new(load);
        let tallies: Vec<(&'static str, Arc<Tally>)> = kinds
            .iter()
            .copied()
            .map(|kind| (kind, Arc::new(Tally::default())))
            .collect();
        let clients = tallies
            .iter()
            .map(|(kind, tally)| {
                let (load, tally, kind) = (load.clone(), tally.clone(), *kind);
                std::thread::spawn(move || match kind {
                    "keep-alive" => keep_alive_client(&load, &tally),
                    "new-conn" => new_connection_client(&load, &tally),
                    "h2" => h2_client(&load, &tally),
                    "h2-slow" => h2_slow_client(&load, &tally),
                    _ => slow_client(&load, &tally),
                })
            })
            .collect();
        LoadRun {
            load,
            tallies,
            clients,
        }
    }

    fn ok(&self) -> u64 {
        self.tallies
            .iter()
            .map(|(_, t)| t.ok.load(Ordering::Relaxed))
            .sum()
    }

    /// Waits until a slow request sent since the last restart is in
    /// flight: call it before each restart.
    ///
    /// # Panics
    /// If none is within [`EVENTUALLY`].
    pub fn wait_slow_in_flight(&self) {
        let deadline = Instant::now() + EVENTUALLY;
        let wanted = self.load.restarts.load(Ordering::Acquire) + 1;
        // One look per pass; bounded by the deadline.
        while self.load.slow_in_flight.load(Ordering::Acquire) != wanted {
            assert!(Instant::now() < deadline, "no slow request in flight");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Counts a restart (after its hand-off is seen).
    pub fn restarted(&self) {
        self.load.restarts.fetch_add(1, Ordering::AcqRel);
    }

    /// Lets the clients get 50 more responses (against the last
    /// generation), then stops them and reports.
    ///
    /// # Panics
    /// If they stall, or a client thread panicked.
    #[must_use]
    pub fn finish(self) -> LoadReport {
        let before = self.ok();
        let deadline = Instant::now() + EVENTUALLY;
        // One look per pass; bounded by the deadline.
        while self.ok() < before + 50 {
            assert!(Instant::now() < deadline, "the clients stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.load.stop.store(true, Ordering::Release);
        for client in self.clients {
            client.join().expect("a client thread panicked");
        }
        let mut failures = Vec::new();
        let mut per_kind = Vec::new();
        for (kind, tally) in &self.tallies {
            per_kind.push(format!(
                "{kind}: {} ok, {} resent, {} retried",
                tally.ok.load(Ordering::Relaxed),
                tally.resent.load(Ordering::Relaxed),
                tally.retried.load(Ordering::Relaxed)
            ));
            failures.extend(tally.failures.lock().expect("not poisoned").iter().cloned());
        }
        LoadReport {
            total: self
                .tallies
                .iter()
                .map(|(_, t)| t.ok.load(Ordering::Relaxed))
                .sum(),
            resent: self
                .tallies
                .iter()
                .map(|(_, t)| t.resent.load(Ordering::Relaxed))
                .sum(),
            retried: self
                .tallies
                .iter()
                .map(|(_, t)| t.retried.load(Ordering::Relaxed))
                .sum(),
            across: self.load.slow_across_restart.load(Ordering::Relaxed),
            failures,
            per_kind,
            least: self
                .tallies
                .iter()
                .map(|(_, t)| t.ok.load(Ordering::Relaxed))
                .min()
                .unwrap_or(0),
        }
    }
}

impl LoadReport {
    /// The zero-downtime claim: no request failed or was cut short, none
    /// even met a closed idle connection (the old process answers them,
    /// with `Connection: close`, while it lingers), every client got at
    /// least `min_each` responses, and some slow response was in flight
    /// across a restart.
    ///
    /// # Panics
    /// If any of it does not hold.
    pub fn assert_lossless(&self, min_each: u64) {
        assert!(
            self.failures.is_empty(),
            "failed requests: {:#?}; {:?}",
            self.failures,
            self.per_kind
        );
        assert_eq!(
            self.resent, 0,
            "requests that found their connection closed: {:?}",
            self.per_kind
        );
        assert!(
            self.least >= min_each,
            "a client got too few (fewer than {min_each}): {:?}",
            self.per_kind
        );
        assert!(
            self.across > 0,
            "no slow request was in flight across a restart"
        );
    }
}
