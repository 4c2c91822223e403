//! Overhead: keep-alive HTTP/1.1 throughput of `GET /` with wrk, for the
//! demo (lameduck tracking) and the untracked baseline on each runtime
//! binding, and the Go peer, in interleaved rounds (the order of the
//! runtimes rotates each round, and each runtime's tracked and untracked
//! servers run back to back, in alternating order) so that the machine's
//! drift hits every server alike. Also callgrind's instructions per
//! request, tracked and untracked, per runtime.
//!
//! The same wrk runs serve the threads section (`threads.rs`).

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::proc::{Binaries, Kind, Server, Setup, cpu_ns, machine_busy_ns};

/// One wrk run's figures.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) rps: f64,
    /// Requests wrk completed.
    pub(crate) requests: u64,
    /// The server's CPU time per request (all its threads), in µs.
    pub(crate) cpu_us_per_req: Option<f64>,
    /// CPUs the server kept busy on average during the run (its CPU time
    /// over the wall time).
    pub(crate) server_cpus: Option<f64>,
    /// CPUs the whole machine kept busy meanwhile (the server, wrk, and
    /// whatever else runs).
    pub(crate) machine_cpus: Option<f64>,
    pub(crate) p50: String,
    pub(crate) p99: String,
    /// Non-2xx responses and socket errors wrk reported.
    pub(crate) errors: u64,
    /// wrk's own words for them, if any.
    pub(crate) error_lines: Vec<String>,
}

/// Every round's runs, per server.
#[derive(Debug, Default)]
pub(crate) struct Result {
    pub(crate) runs: Vec<(Setup, Vec<Run>)>,
    /// Callgrind's count per request, tracked and untracked, per runtime.
    pub(crate) instructions: Vec<(Setup, std::result::Result<Instructions, String>)>,
    pub(crate) errors: Vec<String>,
    pub(crate) wrk_args: String,
    pub(crate) rounds: usize,
}

impl Result {
    /// The runs of `setup`.
    pub(crate) fn runs_of(&self, setup: Setup) -> Option<&[Run]> {
        crate::proc::of(&self.runs, setup).map(Vec::as_slice)
    }

    /// Callgrind's count for `setup`.
    pub(crate) fn instructions_of(
        &self,
        setup: Setup,
    ) -> Option<&std::result::Result<Instructions, String>> {
        crate::proc::of(&self.instructions, setup)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) rounds: usize,
    pub(crate) seconds: u32,
    pub(crate) connections: u32,
    /// wrk's threads.
    pub(crate) threads: u32,
}

impl Plan {
    pub(crate) fn wrk_args(&self) -> String {
        format!(
            "wrk -t{} -c{} -d{}s --latency http://ADDR/",
            self.threads, self.connections, self.seconds
        )
    }
}

pub(crate) fn wrk(server: &Server, plan: &Plan, seconds: u32) -> std::result::Result<Run, String> {
    let url = format!("http://{}/", server.addr);
    let cpu_before = cpu_ns(server.pid);
    let machine_before = machine_busy_ns();
    let started = Instant::now();
    let output = Command::new("timeout")
        .arg((seconds + 30).to_string())
        .arg("wrk")
        .arg(format!("-t{}", plan.threads))
        .arg(format!("-c{}", plan.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(&url)
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let wall_ns = started.elapsed().as_nanos() as f64;
    let machine_after = machine_busy_ns();
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut run = parse(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))?;
    if let (Some(before), Some(after)) = (cpu_before, cpu_ns(server.pid))
        && run.requests > 0
    {
        let used = after.saturating_sub(before) as f64;
        run.cpu_us_per_req = Some(used / 1e3 / run.requests as f64);
        run.server_cpus = Some(used / wall_ns);
    }
    if let (Some(before), Some(after)) = (machine_before, machine_after) {
        run.machine_cpus = Some(after.saturating_sub(before) as f64 / wall_ns);
    }
    Ok(run)
}

/// Reads `Requests/sec`, the 50% and 99% latencies, and error counts.
fn parse(text: &str) -> Option<Run> {
    let mut rps = None;
    let mut requests = 0u64;
    let mut p50 = String::from("?");
    let mut p99 = String::from("?");
    let mut errors = 0u64;
    let mut error_lines = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some((n, rest)) = line.split_once(" requests in ")
            && (rest.ends_with("read") || rest.contains(','))
        {
            requests = n.trim().parse().unwrap_or(0);
        }
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
            error_lines.push(line.to_owned());
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            error_lines.push(line.to_owned());
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(Run {
        rps: rps?,
        requests,
        cpu_us_per_req: None,
        server_cpus: None,
        machine_cpus: None,
        p50,
        p99,
        errors,
        error_lines,
    })
}

/// Starts every setup once, warms each up, then runs wrk on them in
/// `rounds`: each round walks `groups` (servers compared with each other
/// run back to back) in an order that rotates round by round, and runs
/// each group's servers in an order that rotates too.
pub(crate) fn rounds(bins: &Binaries, plan: &Plan, groups: &[Vec<Setup>], what: &str) -> Result {
    let mut result = Result {
        wrk_args: plan.wrk_args(),
        rounds: plan.rounds,
        ..Result::default()
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut servers: Vec<Vec<(Setup, Server)>> = Vec::new();
    for group in groups {
        let mut started = Vec::new();
        for setup in group {
            match Server::start(bins.setup_command(*setup, listen, 10)) {
                Ok(server) => started.push((*setup, server)),
                Err(e) => result.errors.push(format!("{}: {e}", setup.name())),
            }
        }
        servers.push(started);
    }
    // A short warm-up of each (not counted).
    for (setup, server) in servers.iter().flatten() {
        if let Err(e) = wrk(server, plan, 2) {
            result.errors.push(format!("{} warm-up: {e}", setup.name()));
        }
    }
    result.runs = servers
        .iter()
        .flatten()
        .map(|(setup, _)| (*setup, Vec::new()))
        .collect();
    for round in 0..plan.rounds {
        for g in 0..servers.len() {
            let group = &servers[(g + round) % servers.len()];
            for i in 0..group.len() {
                let (setup, server) = &group[(i + round) % group.len()];
                eprintln!(
                    "runner: {what} round {}/{}: {}",
                    round + 1,
                    plan.rounds,
                    setup.name()
                );
                let runs = result
                    .runs
                    .iter_mut()
                    .find(|(s, _)| s == setup)
                    .map(|(_, runs)| runs);
                match (wrk(server, plan, plan.seconds), runs) {
                    (Ok(run), Some(runs)) => runs.push(run),
                    (Err(e), _) => result.errors.push(format!("{}: {e}", setup.name())),
                    (Ok(_), None) => {}
                }
            }
        }
    }
    for (_, server) in servers.into_iter().flatten() {
        server.stop(Duration::from_secs(5));
    }
    result
}

/// The overhead section: on each of `runtimes`, the demo and the
/// untracked baseline (one executor thread each), then Go.
pub(crate) fn run(bins: &Binaries, plan: &Plan, runtimes: &[&'static str]) -> Result {
    let mut groups: Vec<Vec<Setup>> = runtimes
        .iter()
        .map(|rt| {
            vec![
                Setup::new(Kind::Demo, rt, 1),
                Setup::new(Kind::Baseline, rt, 1),
            ]
        })
        .collect();
    groups.push(vec![Setup::go()]);
    rounds(bins, plan, &groups, "overhead")
}

/// Instructions per request, counted by callgrind (valgrind): deterministic
/// enough to compare the tracked and untracked servers on a noisy machine.
/// The server runs under callgrind twice, serving `small` and then `large`
/// keep-alive `GET /` requests over `conns` connections; the difference of
/// the totals divided by the difference of the requests is the cost of a
/// request, with start-up and shutdown cancelled out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Instructions {
    /// Instructions per request, user space only (callgrind does not see
    /// the kernel).
    pub(crate) per_request: f64,
    /// Of which in `memset` (valgrind counts each byte of `rep stosb` as an
    /// instruction: the bridge's zeroed 8 KiB scratch per read weighs far
    /// more here than its real cost).
    pub(crate) memset_per_request: f64,
}

/// Total instructions, and those in `memset` (self cost), from
/// `callgrind_annotate`'s function list.
fn callgrind_counts(out: &std::path::Path) -> std::result::Result<(u64, u64), String> {
    let output = Command::new("callgrind_annotate")
        .arg("--threshold=100")
        .arg("--auto=no")
        .arg(out)
        .output()
        .map_err(|e| format!("cannot run callgrind_annotate: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let count = |line: &str| -> Option<u64> {
        line.split_whitespace()
            .next()?
            .replace(',', "")
            .parse()
            .ok()
    };
    let mut total = None;
    let mut memset = 0;
    // The function list follows the `file:function` header and ends at the
    // next blank line.
    let mut in_list = false;
    for line in text.lines() {
        if line.contains("PROGRAM TOTALS") {
            total = count(line);
        } else if line.contains("file:function") {
            in_list = true;
        } else if in_list && line.trim().is_empty() {
            in_list = false;
        } else if in_list && (line.contains(":__memset") || line.contains(":memset")) {
            memset += count(line).unwrap_or(0);
        }
    }
    Ok((
        total.ok_or("no totals in callgrind_annotate's output")?,
        memset,
    ))
}

/// Runs `plain` (the command starting `setup`) under callgrind while
/// `load` sends it `requests` requests (at its address), stops it, and
/// reads its totals.
pub(crate) fn callgrind_total(
    plain: Command,
    setup: Setup,
    requests: usize,
    load: impl FnOnce(SocketAddr, usize) -> std::result::Result<(), String>,
) -> std::result::Result<(u64, u64), String> {
    let out = std::env::temp_dir().join(format!(
        "lameduck-bench-callgrind-{}-{:?}-{}-{requests}.out",
        std::process::id(),
        setup.kind,
        setup.runtime
    ));
    let _ = std::fs::remove_file(&out);
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(plain.get_program())
        .args(plain.get_args());
    if setup.runtime == "compio" {
        without_io_uring(&mut command);
    }
    let mut server = Server::start(command)?;
    load(server.addr, requests)?;
    let exited = crate::proc::exit_watcher(server.take_child().ok_or("no child")?);
    server.signal(rustix::process::Signal::TERM)?;
    exited
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| "no exit under callgrind")?;
    let counts = callgrind_counts(&out);
    let _ = std::fs::remove_file(&out);
    counts
}

/// Makes `io_uring_setup` fail with `ENOSYS` in the process `command`
/// starts (a seccomp filter, installed between fork and exec), as on a
/// machine without io_uring: compio then runs on its polling driver.
///
/// For callgrind: valgrind (3.19) runs `io_uring_enter` without letting
/// the process's other threads run meanwhile, so a compio thread waiting
/// for completions stops every other thread (the demo never gets past its
/// start). The tracked and untracked servers both run this way under it.
fn without_io_uring(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // Load the syscall number; if it is io_uring_setup, fail with ENOSYS;
    // otherwise allow.
    let filter = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0, // offsetof(struct seccomp_data, nr)
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let install = move || {
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prctl` with these options reads only its integer
        // arguments and, for the filter, `program`, which lives on this
        // stack frame through the call.
        let failed = unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &raw const program,
                ) != 0
        };
        if failed {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: `install` runs in the child between fork and exec, and makes
    // only two `prctl` calls (async-signal-safe) on a filter built before
    // the fork; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(install);
    }
}

pub(crate) fn instructions(
    bins: &Binaries,
    setup: Setup,
    conns: usize,
    small: usize,
    large: usize,
) -> std::result::Result<Instructions, String> {
    let load = |addr, requests| keep_alive_gets(addr, conns, requests);
    instructions_with(bins, setup, small, large, load)
}

/// As [`instructions`], with `load(addr, requests)` sending the requests.
pub(crate) fn instructions_with(
    bins: &Binaries,
    setup: Setup,
    small: usize,
    large: usize,
    load: impl Fn(SocketAddr, usize) -> std::result::Result<(), String>,
) -> std::result::Result<Instructions, String> {
    let plain = || bins.setup_command(setup, SocketAddr::from(([127, 0, 0, 1], 0)), 30);
    instructions_of_command(&plain, setup, small, large, load)
}

/// As [`instructions_with`], starting the server with `plain()` (e.g.
/// with arguments of its own) under callgrind; `setup` names it.
pub(crate) fn instructions_of_command(
    plain: &dyn Fn() -> Command,
    setup: Setup,
    small: usize,
    large: usize,
    load: impl Fn(SocketAddr, usize) -> std::result::Result<(), String>,
) -> std::result::Result<Instructions, String> {
    let (a, a_memset) = callgrind_total(plain(), setup, small, &load)?;
    let (b, b_memset) = callgrind_total(plain(), setup, large, &load)?;
    let n = (large - small) as f64;
    Ok(Instructions {
        per_request: (b as f64 - a as f64) / n,
        memset_per_request: (b_memset as f64 - a_memset as f64) / n,
    })
}

/// `requests` keep-alive HTTP/1.1 `GET /` over `conns` connections, a
/// thread each.
fn keep_alive_gets(
    addr: SocketAddr,
    conns: usize,
    requests: usize,
) -> std::result::Result<(), String> {
    let per_conn = requests / conns;
    let clients: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || -> std::result::Result<(), String> {
                let timeout = Duration::from_secs(60);
                let mut conn =
                    crate::http::connect(addr, None, timeout).map_err(|e| e.to_string())?;
                for _ in 0..per_conn {
                    conn.get("/").map_err(|f| f.failure.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for client in clients {
        client
            .join()
            .map_err(|_| "a client panicked".to_owned())?
            .map_err(|e| format!("client: {e}"))?;
    }
    Ok(())
}
