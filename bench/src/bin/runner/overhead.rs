//! Overhead: keep-alive HTTP/1.1 throughput of `GET /` with wrk, for the
//! demo (lameduck tracking), the untracked baseline and the Go peer, in
//! interleaved rounds (the order rotates each round) so that the machine's
//! drift hits every server alike.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::proc::{Binaries, Kind, Server, cpu_ns};

/// One wrk run's figures.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) rps: f64,
    /// Requests wrk completed.
    pub(crate) requests: u64,
    /// The server's CPU time per request (all its threads), in µs.
    pub(crate) cpu_us_per_req: Option<f64>,
    pub(crate) p50: String,
    pub(crate) p99: String,
    /// Non-2xx responses and socket errors wrk reported.
    pub(crate) errors: u64,
    /// wrk's own words for them, if any.
    pub(crate) error_lines: Vec<String>,
}

/// Every round's runs, per server (in `KINDS` order).
#[derive(Debug, Default)]
pub(crate) struct Result {
    pub(crate) runs: Vec<(Kind, Vec<Run>)>,
    /// Callgrind's count per request, tracked and untracked.
    pub(crate) instructions: Vec<(Kind, std::result::Result<Instructions, String>)>,
    pub(crate) errors: Vec<String>,
    pub(crate) wrk_args: String,
}

pub(crate) const KINDS: [Kind; 3] = [Kind::Demo, Kind::Baseline, Kind::Go];

#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) rounds: usize,
    pub(crate) seconds: u32,
    pub(crate) connections: u32,
    pub(crate) threads: u32,
}

fn wrk(server: &Server, plan: &Plan, seconds: u32) -> std::result::Result<Run, String> {
    let url = format!("http://{}/", server.addr);
    let cpu_before = cpu_ns(server.pid);
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
        run.cpu_us_per_req =
            Some((after.saturating_sub(before)) as f64 / 1e3 / run.requests as f64);
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
        p50,
        p99,
        errors,
        error_lines,
    })
}

pub(crate) fn run(bins: &Binaries, plan: &Plan) -> Result {
    let mut result = Result {
        wrk_args: format!(
            "wrk -t{} -c{} -d{}s --latency http://ADDR/",
            plan.threads, plan.connections, plan.seconds
        ),
        ..Result::default()
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut servers = Vec::new();
    for kind in KINDS {
        match Server::start(bins.command(kind, listen, 10)) {
            Ok(server) => servers.push((kind, server)),
            Err(e) => result.errors.push(format!("{}: {e}", kind.name())),
        }
    }
    // A short warm-up of each (not counted).
    for (kind, server) in &servers {
        if let Err(e) = wrk(server, plan, 2) {
            result.errors.push(format!("{} warm-up: {e}", kind.name()));
        }
    }
    let mut runs: Vec<(Kind, Vec<Run>)> = servers.iter().map(|(k, _)| (*k, Vec::new())).collect();
    for round in 0..plan.rounds {
        for i in 0..servers.len() {
            let index = (i + round) % servers.len();
            let (kind, server) = &servers[index];
            eprintln!(
                "runner: overhead round {}/{}: {}",
                round + 1,
                plan.rounds,
                kind.name()
            );
            match wrk(server, plan, plan.seconds) {
                Ok(run) => runs[index].1.push(run),
                Err(e) => result.errors.push(format!("{}: {e}", kind.name())),
            }
        }
    }
    for (_, server) in servers {
        server.stop(Duration::from_secs(5));
    }
    result.runs = runs;
    result
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

fn callgrind_total(
    bins: &Binaries,
    kind: Kind,
    conns: usize,
    requests: usize,
) -> std::result::Result<(u64, u64), String> {
    let out = std::env::temp_dir().join(format!(
        "lameduck-bench-callgrind-{}-{}-{requests}.out",
        std::process::id(),
        kind.name().split_whitespace().next().unwrap_or("server")
    ));
    let _ = std::fs::remove_file(&out);
    let plain = bins.command(kind, SocketAddr::from(([127, 0, 0, 1], 0)), 30);
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(plain.get_program())
        .args(plain.get_args());
    let mut server = Server::start(command)?;
    let addr = server.addr;
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
    let exited = crate::proc::exit_watcher(server.take_child().ok_or("no child")?);
    server.signal(rustix::process::Signal::TERM)?;
    exited
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| "no exit under callgrind")?;
    let counts = callgrind_counts(&out);
    let _ = std::fs::remove_file(&out);
    counts
}

pub(crate) fn instructions(
    bins: &Binaries,
    kind: Kind,
    conns: usize,
    small: usize,
    large: usize,
) -> std::result::Result<Instructions, String> {
    let (a, a_memset) = callgrind_total(bins, kind, conns, small)?;
    let (b, b_memset) = callgrind_total(bins, kind, conns, large)?;
    let n = (large - small) as f64;
    Ok(Instructions {
        per_request: (b as f64 - a as f64) / n,
        memset_per_request: (b_memset as f64 - a_memset as f64) / n,
    })
}
