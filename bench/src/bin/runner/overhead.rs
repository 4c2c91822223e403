//! Overhead: keep-alive HTTP/1.1 throughput of `GET /` with wrk, for the
//! demo (lameduck tracking), the untracked baseline and the Go peer, in
//! interleaved rounds (the order rotates each round) so that the machine's
//! drift hits every server alike.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::proc::{Binaries, Kind, Server};

/// One wrk run's figures.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) rps: f64,
    pub(crate) p50: String,
    pub(crate) p99: String,
    /// Non-2xx responses and socket errors wrk reported.
    pub(crate) errors: u64,
}

/// Every round's runs, per server (in `KINDS` order).
#[derive(Debug, Default)]
pub(crate) struct Result {
    pub(crate) runs: Vec<(Kind, Vec<Run>)>,
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

fn wrk(addr: SocketAddr, plan: &Plan, seconds: u32) -> std::result::Result<Run, String> {
    let url = format!("http://{addr}/");
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
    parse(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))
}

/// Reads `Requests/sec`, the 50% and 99% latencies, and error counts.
fn parse(text: &str) -> Option<Run> {
    let mut rps = None;
    let mut p50 = String::from("?");
    let mut p99 = String::from("?");
    let mut errors = 0u64;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(Run {
        rps: rps?,
        p50,
        p99,
        errors,
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
        if let Err(e) = wrk(server.addr, plan, 2) {
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
            match wrk(server.addr, plan, plan.seconds) {
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
