//! lameduck's end-to-end benchmark runner: drain tail, tracking overhead
//! per runtime, one thread against two, scale, the restart drill, and the
//! fleet drill (rolling restarts behind HAProxy), side by side with the
//! untracked baseline on each runtime and a Go `net/http` peer, HTTP/2
//! (h2c) keep-alive throughput tracked against untracked, new TLS
//! connections per second (handshake and one request) tracked against
//! untracked, in one run; and the core's micro-benchmarks, read from divan's output
//! (`--micro`). Prints a Markdown report and writes it to `--out`, and
//! each section into `--doc` between that section's markers, so that
//! `--only` leaves the other sections' results as they are. Run it through
//! `bench/run.sh`, which installs wrk, h2load, Go, valgrind and HAProxy, builds
//! everything in release, and raises the descriptor limit.
//!
//! ```text
//! runner [--out PATH] [--doc PATH] [--micro PATH] [--bin-dir DIR]
//!        [--only drain,overhead,threads,scale,restart,micro,fleet,h2,tls]
//!        [--runtimes smol,smol-local,compio,tokio,async-std]
//!        [--threads-runtimes compio,smol] [--drain-reps N]
//!        [--rounds N] [--wrk-secs N] [--scale-conns N] [--scale-reps N]
//!        [--restarts N] [--fleet-backends N] [--fleet-rounds N]
//!        [--h2-requests N] [--tls-conns N] [--tls-clients N] [--no-callgrind]
//! runner hold ADDR COUNT SOURCE      (a helper of the scale section)
//! ```

mod drain;
mod fleet;
mod h2;
mod http;
mod micro;
mod overhead;
mod proc;
mod report;
mod restart;
mod scale;
mod stats;
mod threads;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit};

use crate::proc::{Binaries, Kind, RUNTIMES, Setup};

/// Raises this process's soft descriptor limit to its hard limit (children
/// inherit it); returns the soft limit now in force.
pub(crate) fn raise_nofile() -> u64 {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let _ = rustix::process::setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
    rustix::process::getrlimit(Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// What to run, and how much of it.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) out: Option<PathBuf>,
    pub(crate) doc: Option<PathBuf>,
    pub(crate) micro: Option<PathBuf>,
    pub(crate) bin_dir: PathBuf,
    pub(crate) sections: Vec<String>,
    /// The runtimes of the overhead section.
    pub(crate) runtimes: Vec<&'static str>,
    /// The runtimes of the threads section.
    pub(crate) threads_runtimes: Vec<&'static str>,
    pub(crate) drain_reps: usize,
    pub(crate) rounds: usize,
    pub(crate) wrk_secs: u32,
    pub(crate) scale_conns: usize,
    pub(crate) scale_reps: usize,
    pub(crate) restarts: usize,
    pub(crate) fleet_backends: usize,
    pub(crate) fleet_rounds: usize,
    /// Requests per h2load run of the h2 section.
    pub(crate) h2_requests: usize,
    /// New connections per run of the tls section.
    pub(crate) tls_conns: usize,
    /// The tls section's client threads.
    pub(crate) tls_clients: usize,
    pub(crate) callgrind: bool,
}

/// The sections, in the report's order.
pub(crate) const SECTIONS: [&str; 9] = [
    "drain", "overhead", "threads", "scale", "restart", "micro", "fleet", "h2", "tls",
];

/// `smol,compio` → the runtimes named, each known.
fn runtimes(flag: &str, list: Option<String>) -> Result<Vec<&'static str>, String> {
    let list = list.ok_or_else(|| format!("{flag} needs a list"))?;
    list.split(',')
        .map(|name| {
            RUNTIMES
                .iter()
                .find(|r| **r == name)
                .copied()
                .ok_or_else(|| {
                    format!("{flag}: unknown runtime '{name}' ({})", RUNTIMES.join(", "))
                })
        })
        .collect()
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut options = Options {
        out: None,
        doc: None,
        micro: None,
        bin_dir: exe.parent().ok_or("own directory")?.to_path_buf(),
        sections: SECTIONS.iter().map(|s| (*s).to_owned()).collect(),
        runtimes: RUNTIMES.to_vec(),
        threads_runtimes: vec!["compio", "smol"],
        drain_reps: 20,
        rounds: 5,
        wrk_secs: 10,
        scale_conns: 50_000,
        scale_reps: 3,
        restarts: 50,
        fleet_backends: 3,
        fleet_rounds: 2,
        h2_requests: 500_000,
        tls_conns: 5_000,
        tls_clients: 4,
        callgrind: true,
    };
    let number = |flag: &str, v: Option<String>| -> Result<usize, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a whole number"))
    };
    // One flag (and its value) per pass; ends with the arguments.
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--out" => options.out = args.next().map(PathBuf::from),
            "--doc" => options.doc = args.next().map(PathBuf::from),
            "--micro" => options.micro = args.next().map(PathBuf::from),
            "--bin-dir" => {
                options.bin_dir = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--bin-dir needs a value")?;
            }
            "--only" => {
                let list = args.next().ok_or("--only needs a list")?;
                options.sections = list.split(',').map(str::to_owned).collect();
                if let Some(bad) = options
                    .sections
                    .iter()
                    .find(|s| !SECTIONS.contains(&s.as_str()))
                {
                    return Err(format!("--only: unknown section '{bad}'"));
                }
            }
            "--runtimes" => options.runtimes = runtimes(&flag, args.next())?,
            "--threads-runtimes" => {
                options.threads_runtimes = runtimes(&flag, args.next())?;
            }
            "--drain-reps" => options.drain_reps = number(&flag, args.next())?,
            "--rounds" => options.rounds = number(&flag, args.next())?,
            "--wrk-secs" => {
                options.wrk_secs = u32::try_from(number(&flag, args.next())?)
                    .map_err(|_| "--wrk-secs: too large")?;
            }
            "--scale-conns" => options.scale_conns = number(&flag, args.next())?,
            "--scale-reps" => options.scale_reps = number(&flag, args.next())?,
            "--restarts" => options.restarts = number(&flag, args.next())?,
            "--fleet-backends" => {
                options.fleet_backends = number(&flag, args.next())?.max(2);
            }
            "--fleet-rounds" => options.fleet_rounds = number(&flag, args.next())?.max(1),
            "--h2-requests" => options.h2_requests = number(&flag, args.next())?.max(1_000),
            "--tls-conns" => options.tls_conns = number(&flag, args.next())?.max(100),
            "--tls-clients" => options.tls_clients = number(&flag, args.next())?.clamp(1, 64),
            "--no-callgrind" => options.callgrind = false,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("hold") {
        return match scale::hold(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("error {e}");
                ExitCode::from(1)
            }
        };
    }
    let options = match parse_args(args.into_iter()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::from(2);
        }
    };
    let bins = Binaries::beside(&options.bin_dir);
    // The fleet drill and the threads section run the demo only; the
    // micro-benchmarks, nothing.
    let want = |s: &str| options.sections.iter().any(|x| x == s);
    let mut needed = Vec::new();
    if [
        "drain", "overhead", "threads", "scale", "restart", "fleet", "h2",
    ]
    .iter()
    .any(|s| want(s))
    {
        needed.push(&bins.demo);
    }
    if want("tls") {
        needed.push(&bins.demo_tls);
    }
    if ["overhead", "scale", "restart", "h2", "tls"]
        .iter()
        .any(|s| want(s))
    {
        needed.push(&bins.baseline);
    }
    if ["drain", "overhead", "scale"].iter().any(|s| want(s)) {
        needed.push(&bins.go);
    }
    for path in needed {
        if !path.exists() {
            eprintln!(
                "runner: {} is missing (bench/run.sh builds it)",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    let nofile = raise_nofile();
    let started = Instant::now();
    let mut results = report::Results {
        machine: report::Machine::read(nofile),
        ..report::Results::default()
    };
    let section = |name: &str| {
        eprintln!(
            "runner: {name} ... ({:.0} s so far)",
            started.elapsed().as_secs_f64()
        );
        Instant::now()
    };

    if want("micro") {
        match &options.micro {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => results.micro = Some((micro::parse(&text), text)),
                Err(e) => eprintln!("runner: cannot read {}: {e}", path.display()),
            },
            None => eprintln!("runner: micro: no --micro file (bench/run.sh makes it)"),
        }
    }
    if want("drain") {
        let t = section("drain tail");
        let demo = drain::run(&bins, Kind::Demo, options.drain_reps);
        let go = drain::run(&bins, Kind::Go, options.drain_reps);
        results.drain = Some((demo, go));
        results.timings.push(("drain", t.elapsed()));
    }
    let wrk_plan = overhead::Plan {
        rounds: options.rounds,
        seconds: options.wrk_secs,
        connections: 64,
        threads: 2,
    };
    if want("overhead") {
        let t = section("overhead");
        let mut overhead = overhead::run(&bins, &wrk_plan, &options.runtimes);
        if options.callgrind {
            for rt in &options.runtimes {
                for kind in [Kind::Demo, Kind::Baseline] {
                    let setup = Setup::new(kind, rt, 1);
                    eprintln!(
                        "runner: instructions per request (callgrind): {}",
                        setup.name()
                    );
                    let counted = overhead::instructions(&bins, setup, 8, 2_000, 12_000);
                    overhead.instructions.push((setup, counted));
                }
            }
        }
        results.overhead = Some(overhead);
        results.timings.push(("overhead", t.elapsed()));
    }
    if want("threads") {
        let t = section("threads");
        results.threads = Some(threads::run(&bins, &wrk_plan, &options.threads_runtimes));
        results.timings.push(("threads", t.elapsed()));
    }
    if want("scale") {
        let t = section("scale");
        // Each idle connection is a descriptor in the server; leave room
        // for the rest, in whole thousands.
        let fit = usize::try_from(nofile.saturating_sub(200) / 1000 * 1000).unwrap_or(usize::MAX);
        let conns = options.scale_conns.min(fit);
        let runner = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("runner"));
        let mut runs = Vec::new();
        for _ in 0..options.scale_reps {
            for kind in [Kind::Demo, Kind::Baseline, Kind::Go] {
                match scale::run(&bins, &runner, kind, conns) {
                    Ok(f) => runs.push(Ok(f)),
                    Err(e) => runs.push(Err(format!("{}: {e}", kind.name()))),
                }
            }
        }
        results.scale = Some(report::Scale {
            requested: options.scale_conns,
            nofile,
            runs,
            core_at_target: scale::core_memory(options.scale_conns),
            core_sweep: [1_000, 10_000, conns, 50_000, 100_000]
                .into_iter()
                .map(scale::core_memory)
                .collect(),
        });
        results.timings.push(("scale", t.elapsed()));
    }
    if want("restart") {
        let t = section("restart");
        let plan = restart::Plan {
            restarts: options.restarts,
            between: Duration::from_millis(100),
            load: restart::Load {
                keep_alive: 4,
                new_conn: 4,
                slow: 2,
                slow_ms: 200,
                pause: Duration::from_millis(2),
            },
        };
        let mut drills = Vec::new();
        if restart::demo_restarts(&bins) {
            drills.push(restart::run(&bins, restart::Method::Lameduck, &plan));
        } else {
            results.notes.push((
                "restart",
                "The demo server has no SIGHUP restart in this build (issue 5): \
                 the lameduck restart drill did not run."
                    .into(),
            ));
        }
        drills.push(restart::run(&bins, restart::Method::KillStart, &plan));
        drills.push(restart::run(&bins, restart::Method::ReusePort, &plan));
        results.restart = Some((plan, drills));
        results.timings.push(("restart", t.elapsed()));
    }
    if want("fleet") {
        let t = section("fleet");
        let plan = fleet::Plan {
            backends: options.fleet_backends,
            rounds: options.fleet_rounds,
            settle: Duration::from_secs(2),
            load: restart::Load {
                keep_alive: 2,
                new_conn: 2,
                slow: 2,
                slow_ms: 200,
                pause: Duration::from_millis(1),
            },
            grace: 10,
        };
        results.fleet = Some((plan, fleet::run_all(&bins, &plan)));
        results.timings.push(("fleet", t.elapsed()));
    }
    if want("h2") {
        let t = section("h2");
        let plan = h2::Plan {
            rounds: options.rounds,
            requests: options.h2_requests,
            connections: 8,
            streams: 10,
        };
        results.h2 = Some(h2::run(&bins, &plan, options.callgrind));
        results.timings.push(("h2", t.elapsed()));
    }
    if want("tls") {
        let t = section("tls");
        let plan = tls::Plan {
            rounds: options.rounds,
            connections: options.tls_conns,
            clients: options.tls_clients,
        };
        results.tls = Some(tls::run(&bins, &plan, options.callgrind));
        results.timings.push(("tls", t.elapsed()));
    }
    results.total = started.elapsed();
    results.machine.load_after = report::loadavg();
    results.options = Some(options.clone());

    // Each section has markers of its own in the document: a run of some
    // leaves the others' results there as they are.
    let parts: Vec<(&str, String)> = SECTIONS
        .iter()
        .filter(|s| report::ran(&results, s))
        .map(|s| (*s, report::render_section(&results, s)))
        .collect();
    let text = parts
        .iter()
        .map(|(_, t)| t.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    println!("{text}");
    if let Some(path) = &options.out
        && let Err(e) = std::fs::write(path, &text)
    {
        eprintln!("runner: cannot write {}: {e}", path.display());
        return ExitCode::from(1);
    }
    if let Some(path) = &options.doc {
        for (name, part) in &parts {
            let (begin, end) = report::markers(name);
            if let Err(e) = report::splice(path, &begin, &end, part) {
                eprintln!("runner: cannot update {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
