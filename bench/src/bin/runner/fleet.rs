//! Fleet drill: N demo backends behind a real load balancer (HAProxy from
//! Debian, a child process; active `GET /healthz` checks), the restart
//! drill's load (keep-alive, new-connection and slow clients) through the
//! balancer, and rolling restarts of every backend, round after round, in
//! each of four ways:
//!
//! - SIGTERM, then a fresh process on the same port once the old one has
//!   exited (the Kubernetes pattern), with a lame-duck phase;
//! - SIGHUP: the demo restarts in place (the successor inherits the
//!   listening socket);
//! - SIGTERM + start without a lame-duck phase;
//! - `kill -9` + start (negative control).
//!
//! Each step waits on state, never on a timer: the old process's exit (or
//! its successor's first line), and the balancer's `UP` for the backend
//! before the next one is touched. Counted: every request's outcome (by
//! kind of failure and of client), and the throughput through the balancer
//! during the roll beside the throughput before it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lameduck_tests::balancer::{self, Haproxy, server_name};
use rustix::process::Signal;

use crate::proc::{self, Binaries, Kind, Server, wait_pid};
use crate::restart::{self, Counts};
use crate::stats::ms;

/// How a backend is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// SIGTERM; once it has exited, a new process on the same port.
    TermStart,
    /// SIGHUP: in place.
    Hup,
    /// SIGKILL; once it is gone, a new process on the same port.
    KillStart,
}

/// One way of rolling the fleet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Variant {
    pub(crate) name: &'static str,
    pub(crate) style: Style,
    /// `--lame-duck` of every backend, seconds.
    pub(crate) lame_duck: f64,
}

/// The drill's variants, in the order they run.
pub(crate) const VARIANTS: [Variant; 4] = [
    Variant {
        name: "SIGTERM + start, lame duck 0.5 s",
        style: Style::TermStart,
        lame_duck: 0.5,
    },
    Variant {
        name: "SIGHUP (in place), lame duck 0.5 s",
        style: Style::Hup,
        lame_duck: 0.5,
    },
    Variant {
        name: "SIGTERM + start, no lame duck",
        style: Style::TermStart,
        lame_duck: 0.0,
    },
    Variant {
        name: "kill -9 + start (negative control)",
        style: Style::KillStart,
        lame_duck: 0.0,
    },
];

/// The drill's plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) backends: usize,
    /// Rolling rounds per variant: each restarts every backend once.
    pub(crate) rounds: usize,
    /// Load alone before the roll (the steady throughput) and after it.
    pub(crate) settle: Duration,
    pub(crate) load: restart::Load,
    /// The backends' `--grace`, seconds.
    pub(crate) grace: u32,
}

/// Bound on each step.
const STEP: Duration = Duration::from_secs(20);

/// One variant's figures.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    pub(crate) variant: Variant,
    pub(crate) restarts_done: usize,
    /// What each kind of client saw.
    pub(crate) by_client: Vec<(&'static str, Counts)>,
    /// Responses per second through the balancer before the roll.
    pub(crate) steady_rps: f64,
    /// Responses per second through the balancer during the roll (first
    /// signal to the last backend `UP` again).
    pub(crate) roll_rps: f64,
    pub(crate) roll_secs: f64,
    /// Per restart: from the signal until the balancer had the backend
    /// `UP` again (serving by the new process).
    pub(crate) step_ms: Vec<f64>,
    /// Restarts whose backend the balancer had marked `DOWN` before it came
    /// back (SIGTERM + start with lame duck: every one, within the lame
    /// duck, since its `/healthz` said 503).
    pub(crate) marked_down: usize,
    pub(crate) error: Option<String>,
    /// What HAProxy logged (servers going down and up), counted.
    pub(crate) haproxy_lines: usize,
}

impl Figures {
    /// Every client kind's counts together.
    pub(crate) fn total(&self) -> Counts {
        let mut total = Counts::default();
        for (_, c) in &self.by_client {
            total.add(c);
        }
        total
    }
}

/// One backend: its address, the process that answers there now, and the
/// `Server` whose stdout its generations share.
struct Backend {
    addr: SocketAddr,
    pid: u32,
    server: Server,
}

fn start_backend(
    bins: &Binaries,
    addr: SocketAddr,
    variant: &Variant,
    plan: &Plan,
) -> Result<Backend, String> {
    let mut command = bins.command(Kind::Demo, addr, plan.grace);
    command
        .arg("--lame-duck")
        .arg(format!("{}", variant.lame_duck));
    let mut server = Server::start(command)?;
    // Waited for by pid (it, or a successor adopted by this subreaper).
    drop(server.take_child());
    Ok(Backend {
        addr: server.addr,
        pid: server.pid,
        server,
    })
}

/// A scratch directory for HAProxy's configuration and stats socket.
fn scratch() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("lameduck-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The `haproxy` to use, or why there is none.
pub(crate) fn haproxy() -> Result<PathBuf, String> {
    balancer::find_haproxy()
        .ok_or_else(|| "haproxy is not installed (bench/run.sh installs it)".to_owned())
}

/// Runs every variant; one `Figures` each.
pub(crate) fn run_all(bins: &Binaries, plan: &Plan) -> Result<Vec<Figures>, String> {
    let haproxy = haproxy()?;
    let dir = scratch()?;
    let figures = VARIANTS
        .iter()
        .map(|v| {
            eprintln!("runner: fleet: {}", v.name);
            run(bins, &haproxy, &dir, *v, plan)
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}

fn run(bins: &Binaries, haproxy: &Path, dir: &Path, variant: Variant, plan: &Plan) -> Figures {
    // Orphaned successors are re-parented to us, so we can reap them.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut figures = Figures {
        variant,
        restarts_done: 0,
        by_client: Vec::new(),
        steady_rps: 0.0,
        roll_rps: 0.0,
        roll_secs: 0.0,
        step_ms: Vec::new(),
        marked_down: 0,
        error: None,
        haproxy_lines: 0,
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut backends = Vec::new();
    for _ in 0..plan.backends {
        match start_backend(bins, any, &variant, plan) {
            Ok(b) => backends.push(b),
            Err(e) => {
                figures.error = Some(e);
                stop_all(&backends);
                return figures;
            }
        }
    }
    let lb = balancer::free_port()
        .map_err(|e| format!("a free port: {e}"))
        .and_then(|port| {
            let frontend = SocketAddr::from(([127, 0, 0, 1], port));
            let plan = balancer::Plan::drill(frontend, backends.iter().map(|b| b.addr).collect());
            Haproxy::start(haproxy, dir, &plan, STEP)
        })
        .and_then(|lb| {
            for i in 0..backends.len() {
                lb.wait_status(&server_name(i), "UP", STEP)?;
            }
            Ok(lb)
        });
    let lb = match lb {
        Ok(lb) => lb,
        Err(e) => {
            figures.error = Some(e);
            stop_all(&backends);
            return figures;
        }
    };
    let load = restart::start_load(lb.addr, &plan.load);
    // Warm up, then the steady throughput.
    std::thread::sleep(plan.settle / 2);
    let (t0, n0) = (Instant::now(), load.served.load(Ordering::Relaxed));
    std::thread::sleep(plan.settle);
    figures.steady_rps = rate(n0, load.served.load(Ordering::Relaxed), t0.elapsed());

    let (roll_t0, roll_n0) = (Instant::now(), load.served.load(Ordering::Relaxed));
    'roll: for round in 0..plan.rounds {
        for i in 0..backends.len() {
            let step = replace(bins, &lb, &mut backends, i, &variant, plan);
            match step {
                Ok((took, down)) => {
                    figures.step_ms.push(took);
                    figures.restarts_done += 1;
                    figures.marked_down += usize::from(down);
                }
                Err(e) => {
                    figures.error = Some(format!("round {}, backend {i}: {e}", round + 1));
                    break 'roll;
                }
            }
        }
    }
    figures.roll_secs = roll_t0.elapsed().as_secs_f64();
    figures.roll_rps = rate(
        roll_n0,
        load.served.load(Ordering::Relaxed),
        roll_t0.elapsed(),
    );
    std::thread::sleep(plan.settle / 2);
    figures.by_client = load.finish_by_kind();
    figures.haproxy_lines = lb.stderr_now().len();
    drop(lb);
    stop_all(&backends);
    figures
}

fn rate(from: u64, to: u64, over: Duration) -> f64 {
    to.saturating_sub(from) as f64 / over.as_secs_f64().max(1e-9)
}

/// SIGTERM to every backend's current process; SIGKILL to any still there
/// after `STEP`; all reaped.
fn stop_all(backends: &[Backend]) {
    for b in backends {
        let _ = proc::send(b.pid, Signal::TERM);
    }
    for b in backends {
        if wait_pid(b.pid, STEP).is_none() {
            let _ = proc::send(b.pid, Signal::KILL);
            let _ = wait_pid(b.pid, STEP);
        }
    }
}

/// Replaces backend `i` in `variant`'s way; returns the time from the
/// signal until the balancer had it `UP` again, and whether the balancer
/// had marked it `DOWN` meanwhile.
fn replace(
    bins: &Binaries,
    lb: &Haproxy,
    backends: &mut [Backend],
    i: usize,
    variant: &Variant,
    plan: &Plan,
) -> Result<(f64, bool), String> {
    let name = server_name(i);
    let t0 = Instant::now();
    let old = backends[i].pid;
    let mut down = false;
    // Watches for DOWN while waiting for `done` (one look per pass;
    // bounded by STEP).
    let mut wait_watching = |done: &mut dyn FnMut() -> Option<bool>| -> Result<(), String> {
        let deadline = Instant::now() + STEP;
        loop {
            if !down && lb.status(&name).is_ok_and(|s| s == "DOWN") {
                down = true;
            }
            match done() {
                Some(true) => return Ok(()),
                Some(false) => return Err(format!("pid {old} ended badly")),
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(format!("pid {old} did not exit within {STEP:?}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    match variant.style {
        Style::TermStart | Style::KillStart => {
            let signal = if variant.style == Style::TermStart {
                Signal::TERM
            } else {
                Signal::KILL
            };
            proc::send(old, signal)?;
            let clean = variant.style == Style::TermStart;
            wait_watching(&mut || {
                wait_pid(old, Duration::ZERO).map(|exit| !clean || exit.code == Some(0))
            })?;
            backends[i] = start_backend(bins, backends[i].addr, variant, plan)?;
        }
        Style::Hup => {
            proc::send(old, Signal::HUP)?;
            let (_, new) = backends[i]
                .server
                .next_first_line(Some(old), STEP)
                .ok_or("no successor's first line")?;
            wait_watching(&mut || wait_pid(old, Duration::ZERO).map(|exit| exit.code == Some(0)))?;
            backends[i].pid = new;
        }
    }
    lb.wait_status(&name, "UP", STEP)?;
    Ok((ms(t0.elapsed()), down))
}
