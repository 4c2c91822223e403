//! HTTP/2: keep-alive h2c throughput (prior knowledge) of `GET /` with
//! h2load, for the demo (lameduck tracking each stream) and the untracked
//! baseline (the same smol runtime, sniff and hyper `http2` connection, no
//! driver or tracking), in interleaved rounds (which server goes first
//! alternates round by round); and callgrind's instructions per request of
//! both, under the same h2load load.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::overhead::{self, Instructions};
use crate::proc::{Binaries, Server, Setup, cpu_ns};

/// How much load, and how it is spread.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) rounds: usize,
    /// Requests per h2load run.
    pub(crate) requests: usize,
    /// h2load's connections (`-c`).
    pub(crate) connections: usize,
    /// Streams in flight per connection (`-m`).
    pub(crate) streams: usize,
}

impl Plan {
    pub(crate) fn h2load_args(&self) -> String {
        format!(
            "h2load -c {} -m {} -n {} http://ADDR/",
            self.connections, self.streams, self.requests
        )
    }
}

/// One h2load run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) rps: f64,
    pub(crate) succeeded: u64,
    /// Requests that failed or errored (h2load's counts).
    pub(crate) failed: u64,
    /// The server's CPU time per request, µs.
    pub(crate) cpu_us_per_req: Option<f64>,
}

/// The section's figures.
#[derive(Debug, Default)]
pub(crate) struct Result {
    pub(crate) runs: Vec<(Setup, Vec<Run>)>,
    pub(crate) instructions: Vec<(Setup, std::result::Result<Instructions, String>)>,
    pub(crate) errors: Vec<String>,
    pub(crate) h2load_args: String,
    pub(crate) rounds: usize,
    pub(crate) h2load_version: String,
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

/// Runs h2load against `addr`: `requests` over `connections` connections,
/// `streams` at a time on each.
fn h2load(
    addr: SocketAddr,
    connections: usize,
    streams: usize,
    requests: usize,
    timeout: Duration,
) -> std::result::Result<Run, String> {
    let output = Command::new("timeout")
        .arg(timeout.as_secs().to_string())
        .arg("h2load")
        .arg("-c")
        .arg(connections.to_string())
        .arg("-m")
        .arg(streams.to_string())
        .arg("-n")
        .arg(requests.to_string())
        .arg(format!("http://{addr}/"))
        .output()
        .map_err(|e| format!("cannot run h2load: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "h2load failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let run = parse(&text).ok_or_else(|| format!("cannot read h2load's output:\n{text}"))?;
    if run.succeeded == 0 {
        return Err(format!("h2load: no request succeeded:\n{text}"));
    }
    Ok(run)
}

/// Reads `finished in T, R req/s, ...` and
/// `requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout`.
fn parse(text: &str) -> Option<Run> {
    let mut rps = None;
    let mut succeeded = None;
    let mut failed = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("finished in ") {
            rps = rest
                .split(',')
                .nth(1)?
                .trim()
                .strip_suffix(" req/s")?
                .parse::<f64>()
                .ok();
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().ok()?;
                match what {
                    "succeeded" => succeeded = Some(n),
                    "failed" | "timeout" => failed += n,
                    _ => {}
                }
            }
        }
    }
    Some(Run {
        rps: rps?,
        succeeded: succeeded?,
        failed,
        cpu_us_per_req: None,
    })
}

/// One measured run against `server`, with its CPU time.
fn measured(server: &Server, plan: &Plan) -> std::result::Result<Run, String> {
    let before = cpu_ns(server.pid);
    let mut run = h2load(
        server.addr,
        plan.connections,
        plan.streams,
        plan.requests,
        Duration::from_secs(300),
    )?;
    if let (Some(before), Some(after)) = (before, cpu_ns(server.pid)) {
        let used = after.saturating_sub(before) as f64;
        run.cpu_us_per_req = Some(used / 1e3 / run.succeeded as f64);
    }
    Ok(run)
}

/// h2load's first line (`h2load nghttp2/1.52.0`).
fn version() -> String {
    Command::new("h2load")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "h2load (version unknown)".into())
}

/// The section: throughput rounds, then (if `callgrind`) instructions.
pub(crate) fn run(bins: &Binaries, plan: &Plan, callgrind: bool) -> Result {
    let mut result = Result {
        h2load_args: plan.h2load_args(),
        rounds: plan.rounds,
        h2load_version: version(),
        ..Result::default()
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut servers = Vec::new();
    for setup in setups() {
        match Server::start(bins.setup_command(setup, listen, 10)) {
            Ok(server) => servers.push((setup, server)),
            Err(e) => result.errors.push(format!("{}: {e}", setup.name())),
        }
    }
    // A warm-up of each (not counted).
    for (setup, server) in &servers {
        let warm = Plan {
            requests: (plan.requests / 4).max(1_000),
            ..plan.clone()
        };
        if let Err(e) = measured(server, &warm) {
            result.errors.push(format!("{} warm-up: {e}", setup.name()));
        }
    }
    result.runs = servers.iter().map(|(s, _)| (*s, Vec::new())).collect();
    for round in 0..plan.rounds {
        for i in 0..servers.len() {
            let (setup, server) = &servers[(i + round) % servers.len()];
            eprintln!(
                "runner: h2 round {}/{}: {}",
                round + 1,
                plan.rounds,
                setup.name()
            );
            match measured(server, plan) {
                Ok(run) => {
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
                "runner: h2 instructions per request (callgrind): {}",
                setup.name()
            );
            let load = |addr, requests| {
                h2load(
                    addr,
                    plan.connections,
                    plan.streams,
                    requests,
                    Duration::from_secs(600),
                )
                .and_then(|run| {
                    if run.failed == 0 && run.succeeded == requests as u64 {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} of {requests} requests succeeded",
                            run.succeeded
                        ))
                    }
                })
            };
            let counted = overhead::instructions_with(bins, setup, SMALL, LARGE, load);
            result.instructions.push((setup, counted));
        }
    }
    result
}

/// Requests of callgrind's two runs (the difference is what is counted).
pub(crate) const SMALL: usize = 2_000;
pub(crate) const LARGE: usize = 12_000;
