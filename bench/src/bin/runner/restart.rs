//! Restart drill: R restarts under load, with every failed request counted,
//! for lameduck's SIGHUP restart (the successor inherits the listening
//! socket; the old process drains) and two negative controls with the
//! untracked baseline: kill and start a new process, and a new process
//! binding beside the old one with `SO_REUSEPORT`, then the old one
//! closing its listener and exiting.
//!
//! The load, the same for all three: keep-alive clients, clients opening a
//! new connection per request, and slow (`/sleep`) keep-alive clients, all
//! running throughout. A request on a *reused* keep-alive connection that
//! fails before any response byte is retried once on a new connection (as
//! HTTP clients do, RFC 9112, section 9.3.1: the server may close an idle
//! connection at any time) and counted as retried; everything else that
//! does not end in a complete 200 is a failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::http::{self, Failure};
use crate::proc::{self, Binaries, Kind, Server, wait_pid};
use crate::stats::ms;

/// The three ways of replacing a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// lameduck: SIGHUP; the successor inherits the listener.
    Lameduck,
    /// SIGTERM (the baseline dies at once), then a new process binds.
    KillStart,
    /// A new process binds with `SO_REUSEPORT`; then the old one gets
    /// SIGTERM, closes its listener, serves what it has for a while, exits.
    ReusePort,
}

impl Method {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::Lameduck => "lameduck SIGHUP restart",
            Method::KillStart => "kill + start (baseline)",
            Method::ReusePort => "SO_REUSEPORT + old closes (baseline)",
        }
    }
}

/// The load's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) keep_alive: usize,
    pub(crate) new_conn: usize,
    pub(crate) slow: usize,
    pub(crate) slow_ms: u64,
    /// Pause between a client's requests.
    pub(crate) pause: Duration,
}

/// The drill's plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) restarts: usize,
    /// Load-only time between restarts.
    pub(crate) between: Duration,
    pub(crate) load: Load,
}

/// How long the `--reuseport` baseline keeps serving its connections after
/// closing its listener.
const STOP_WAIT: &str = "0.5";
/// Bound on each step of a restart.
const STEP: Duration = Duration::from_secs(20);
/// A client's timeout for connecting and for each read.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a whole drill's load.
const MAX_LOAD: Duration = Duration::from_secs(600);

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    pub(crate) ok: u64,
    pub(crate) retried: u64,
    pub(crate) failures: BTreeMap<Failure, u64>,
}

impl Counts {
    pub(crate) fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub(crate) fn add(&mut self, other: &Counts) {
        self.ok += other.ok;
        self.retried += other.retried;
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
    }
}

/// One drill's figures.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    pub(crate) method: Method,
    pub(crate) restarts_done: usize,
    pub(crate) counts: Counts,
    /// Per restart: from the signal (or the new process's start) until the
    /// old process had exited and the new one served.
    pub(crate) restart_ms: Vec<f64>,
    pub(crate) error: Option<String>,
    pub(crate) seconds: f64,
}

#[derive(Debug, Clone, Copy)]
enum Style {
    KeepAlive,
    NewConn,
}

fn client(
    addr: SocketAddr,
    style: Style,
    path: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) -> Counts {
    let mut counts = Counts::default();
    let mut conn: Option<http::Conn> = None;
    let started = Instant::now();
    let fail = |counts: &mut Counts, f: Failure| *counts.failures.entry(f).or_default() += 1;
    // One request per pass; ends when told, or at MAX_LOAD.
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LOAD {
        let mut c = match conn.take() {
            Some(c) => c,
            None => match http::connect(addr, None, CLIENT_TIMEOUT) {
                Ok(c) => c,
                Err(f) => {
                    fail(&mut counts, f);
                    std::thread::sleep(pause.max(Duration::from_millis(1)));
                    continue;
                }
            },
        };
        let reused = c.reused;
        let outcome = match c.get(&path) {
            Err(failed) if reused && !failed.got_bytes && failed.failure == Failure::Reset => {
                // The server closed this idle connection as the request
                // went out: retry once on a new connection.
                counts.retried += 1;
                match http::connect(addr, None, CLIENT_TIMEOUT) {
                    Ok(fresh) => {
                        c = fresh;
                        c.get(&path).map_err(|f| f.failure)
                    }
                    Err(f) => Err(f),
                }
            }
            other => other.map_err(|f| f.failure),
        };
        match outcome {
            Ok(response) => {
                counts.ok += 1;
                served.fetch_add(1, Ordering::Relaxed);
                if matches!(style, Style::KeepAlive) && !response.close {
                    conn = Some(c);
                }
            }
            Err(f) => fail(&mut counts, f),
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    counts
}

/// The load's clients, running.
pub(crate) struct Running {
    stop: Arc<AtomicBool>,
    /// Complete responses so far, all clients together.
    pub(crate) served: Arc<AtomicU64>,
    threads: Vec<(&'static str, JoinHandle<Counts>)>,
}

/// The client kinds, as [`Running::finish_by_kind`] names them.
pub(crate) const CLIENT_KINDS: [&str; 3] = ["keep-alive", "new-conn", "slow"];

/// Starts `load`'s clients against `addr`.
pub(crate) fn start_load(addr: SocketAddr, load: &Load) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let mut spawn = |kind: &'static str, style: Style, path: String, pause: Duration| {
        let (stop, served) = (stop.clone(), served.clone());
        threads.push((
            kind,
            std::thread::spawn(move || client(addr, style, path, pause, stop, served)),
        ));
    };
    for _ in 0..load.keep_alive {
        spawn(CLIENT_KINDS[0], Style::KeepAlive, "/".into(), load.pause);
    }
    for _ in 0..load.new_conn {
        spawn(CLIENT_KINDS[1], Style::NewConn, "/".into(), load.pause);
    }
    for _ in 0..load.slow {
        spawn(
            CLIENT_KINDS[2],
            Style::KeepAlive,
            format!("/sleep?ms={}", load.slow_ms),
            Duration::ZERO,
        );
    }
    Running {
        stop,
        served,
        threads,
    }
}

impl Running {
    fn finish(self) -> Counts {
        let mut total = Counts::default();
        for (_, counts) in self.finish_by_kind() {
            total.add(&counts);
        }
        total
    }

    /// Stops the clients; what each kind of client saw (in
    /// [`CLIENT_KINDS`] order).
    pub(crate) fn finish_by_kind(self) -> Vec<(&'static str, Counts)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut by_kind: Vec<(&'static str, Counts)> = CLIENT_KINDS
            .iter()
            .map(|k| (*k, Counts::default()))
            .collect();
        for (kind, t) in self.threads {
            if let Ok(c) = t.join()
                && let Some((_, total)) = by_kind.iter_mut().find(|(k, _)| *k == kind)
            {
                total.add(&c);
            }
        }
        by_kind
    }
}

/// Whether the demo restarts on SIGHUP (its usage text says so).
pub(crate) fn demo_restarts(bins: &Binaries) -> bool {
    std::process::Command::new(&bins.demo)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("SIGHUP restarts"))
        .unwrap_or(false)
}

fn baseline(bins: &Binaries, addr: SocketAddr, method: Method) -> Result<Server, String> {
    let mut command = std::process::Command::new(&bins.baseline);
    command.arg("--listen").arg(addr.to_string());
    if method == Method::ReusePort {
        command.arg("--reuseport").arg("--stop-wait").arg(STOP_WAIT);
    }
    Server::start(command)
}

pub(crate) fn run(bins: &Binaries, method: Method, plan: &Plan) -> Figures {
    let started = Instant::now();
    // Orphaned successors are re-parented to us, so we can reap them.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut figures = Figures {
        method,
        restarts_done: 0,
        counts: Counts::default(),
        restart_ms: Vec::new(),
        error: None,
        seconds: 0.0,
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let first = match method {
        Method::Lameduck => Server::start(bins.command(Kind::Demo, any, 30)),
        Method::KillStart | Method::ReusePort => baseline(bins, any, method),
    };
    let mut current = match first {
        Ok(server) => server,
        Err(e) => {
            figures.error = Some(e);
            return figures;
        }
    };
    let addr = current.addr;
    // The demo's generations: the first is our child; each successor is its
    // predecessor's child, adopted by us (a subreaper) when that one exits.
    // All are waited for by pid.
    let mut current_pid = current.pid;
    if method == Method::Lameduck {
        drop(current.take_child());
    }
    let load = start_load(addr, &plan.load);
    std::thread::sleep(Duration::from_millis(300));
    // Replaced baselines, kept until the end (their output pipes stay read).
    let mut retired: Vec<Server> = Vec::new();
    for i in 0..plan.restarts {
        std::thread::sleep(plan.between);
        if i % 10 == 0 {
            eprintln!(
                "runner: {}: restart {}/{}",
                method.name(),
                i + 1,
                plan.restarts
            );
        }
        let step = match method {
            Method::Lameduck => restart_demo(&current, current_pid),
            Method::KillStart => kill_start(bins, &mut current, addr, &mut retired),
            Method::ReusePort => reuse_port(bins, &mut current, addr, &mut retired),
        };
        match step {
            Ok((pid, took)) => {
                current_pid = pid;
                figures.restart_ms.push(took);
                figures.restarts_done += 1;
            }
            Err(e) => {
                figures.error = Some(format!("restart {}: {e}", i + 1));
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    figures.counts = load.finish();
    // The last generation.
    match method {
        Method::Lameduck => {
            let _ = proc::send(current_pid, Signal::TERM);
            if wait_pid(current_pid, STEP).is_none() {
                let _ = proc::send(current_pid, Signal::KILL);
                let _ = wait_pid(current_pid, STEP);
            }
        }
        Method::KillStart | Method::ReusePort => current.stop(STEP),
    }
    drop(retired);
    figures.seconds = started.elapsed().as_secs_f64();
    figures
}

/// SIGHUP; the successor's first line; the old generation's exit.
fn restart_demo(first: &Server, old: u32) -> Result<(u32, f64), String> {
    let t0 = Instant::now();
    proc::send(old, Signal::HUP)?;
    let (_, new) = first
        .next_first_line(Some(old), STEP)
        .ok_or("no successor's first line")?;
    let exit = wait_pid(old, STEP).ok_or_else(|| format!("generation {old} did not exit"))?;
    if exit.code != Some(0) {
        return Err(format!("generation {old} ended with {}", exit.describe()));
    }
    Ok((new, ms(t0.elapsed())))
}

/// SIGTERM (the baseline dies at once), wait for the exit, start another.
fn kill_start(
    bins: &Binaries,
    current: &mut Server,
    addr: SocketAddr,
    retired: &mut Vec<Server>,
) -> Result<(u32, f64), String> {
    let t0 = Instant::now();
    let child = current.take_child().ok_or("no child")?;
    let exited = proc::exit_watcher(child);
    current.signal(Signal::TERM)?;
    exited
        .recv_timeout(STEP)
        .map_err(|_| "old process did not exit")?;
    let next = baseline(bins, addr, Method::KillStart)?;
    let pid = next.pid;
    retired.push(std::mem::replace(current, next));
    Ok((pid, ms(t0.elapsed())))
}

/// A new process binds beside the old; SIGTERM to the old, which closes its
/// listener, serves on for `STOP_WAIT`, and exits.
fn reuse_port(
    bins: &Binaries,
    current: &mut Server,
    addr: SocketAddr,
    retired: &mut Vec<Server>,
) -> Result<(u32, f64), String> {
    let t0 = Instant::now();
    let next = baseline(bins, addr, Method::ReusePort)?;
    let pid = next.pid;
    let exited = proc::exit_watcher(current.take_child().ok_or("no child")?);
    current.signal(Signal::TERM)?;
    let exit = exited
        .recv_timeout(STEP)
        .map_err(|_| "old process did not exit")?;
    if exit.code != Some(0) {
        return Err(format!("old process ended with {}", exit.describe()));
    }
    retired.push(std::mem::replace(current, next));
    Ok((pid, ms(t0.elapsed())))
}
