//! The report: a summary table against the project's targets, then each
//! section's details, in Markdown.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::proc::{Kind, Setup};
use crate::stats::{fmt_ms, median, percentile, thousands};
use crate::{Options, drain, fleet, h2, micro, overhead, restart, scale, threads, tls};

/// The machine and the tools, as read at the start.
#[derive(Debug, Default, Clone)]
pub(crate) struct Machine {
    pub(crate) cpus: String,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    pub(crate) rustc: String,
    pub(crate) go: String,
    pub(crate) wrk: String,
    pub(crate) date: String,
    pub(crate) commit: String,
    pub(crate) nofile: u64,
    pub(crate) load_before: String,
    pub(crate) load_after: String,
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `/proc/loadavg`'s three averages.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Machine {
    pub(crate) fn read(nofile: u64) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown", |(_, v)| v.trim())
            .to_owned();
        Machine {
            cpus: std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or("unknown".into(), |s| s.trim().to_owned()),
            rustc: command_line("rustc", &["--version"]),
            go: command_line("go", &["version"]),
            wrk: command_line("wrk", &["-v"]),
            date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            commit: command_line("git", &["describe", "--always", "--dirty"]),
            nofile,
            load_before: loadavg(),
            load_after: String::new(),
        }
    }
}

/// The scale section's figures.
#[derive(Debug)]
pub(crate) struct Scale {
    pub(crate) requested: usize,
    pub(crate) nofile: u64,
    /// Every run, servers taking turns.
    pub(crate) runs: Vec<Result<scale::Figures, String>>,
    /// Core memory at the requested N.
    pub(crate) core_at_target: scale::CoreMemory,
    /// Core memory at other N, for context.
    pub(crate) core_sweep: Vec<scale::CoreMemory>,
}

/// One server's scale runs, gathered.
#[derive(Debug)]
pub(crate) struct Agg {
    conns: usize,
    fds: Option<usize>,
    done: Vec<f64>,
    exit: Vec<f64>,
    rss: Vec<f64>,
    exits: Vec<String>,
}

impl Scale {
    fn agg(&self, kind: Kind) -> Option<Agg> {
        let runs: Vec<&scale::Figures> = self
            .runs
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|f| f.kind == kind)
            .collect();
        let first = runs.first()?;
        Some(Agg {
            conns: first.conns,
            fds: first.server_fds,
            done: runs.iter().filter_map(|f| f.done_ms).collect(),
            exit: runs.iter().filter_map(|f| f.exit_ms).collect(),
            rss: runs.iter().filter_map(|f| f.rss_per_conn).collect(),
            exits: runs.iter().map(|f| f.exit.clone()).collect(),
        })
    }
}

/// Everything measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) machine: Machine,
    pub(crate) options: Option<Options>,
    pub(crate) micro: Option<(Vec<micro::Row>, String)>,
    pub(crate) drain: Option<(drain::Result, drain::Result)>,
    pub(crate) overhead: Option<overhead::Result>,
    pub(crate) threads: Option<threads::Result>,
    pub(crate) scale: Option<Scale>,
    pub(crate) restart: Option<(restart::Plan, Vec<restart::Figures>)>,
    pub(crate) fleet: Option<(fleet::Plan, Result<Vec<fleet::Figures>, String>)>,
    pub(crate) h2: Option<h2::Result>,
    pub(crate) tls: Option<tls::Result>,
    /// Notes, by section.
    pub(crate) notes: Vec<(&'static str, String)>,
    /// Wall time, by section.
    pub(crate) timings: Vec<(&'static str, Duration)>,
    pub(crate) total: Duration,
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**MISSED**",
        None => "not measured",
    }
}

fn med_p90(values: &[f64]) -> String {
    match (median(values), percentile(values, 90.0)) {
        (Some(m), Some(p)) => format!("{} (p90 {})", fmt_ms(m), fmt_ms(p)),
        _ => "—".into(),
    }
}

fn rps_median(runs: &[overhead::Run]) -> Option<f64> {
    median(&runs.iter().map(|r| r.rps).collect::<Vec<_>>())
}

/// Target for the drain tail, ms.
const DRAIN_TARGET_MS: f64 = 2.0;
/// Target for tracked/untracked throughput.
const OVERHEAD_TARGET: f64 = 0.97;
/// Target for the scale drain, ms.
const SCALE_TARGET_MS: f64 = 100.0;
/// Target for core bytes per connection.
const CORE_BYTES_TARGET: f64 = 64.0;

/// The heading of each section's part of the report.
fn title(section: &str) -> &'static str {
    match section {
        "drain" => "Drain tail",
        "overhead" => "Overhead: what tracking costs, per runtime",
        "threads" => "Thread-per-core: one thread against two",
        "scale" => "Scale",
        "restart" => "Restart drill",
        "micro" => "Core micro-benchmarks (divan, `cargo bench -p lameduck-core`)",
        "h2" => "HTTP/2: what tracking costs a stream (h2c keep-alive)",
        "tls" => "TLS: what tracking costs a new HTTPS connection (handshake and one request)",
        _ => "Fleet drill",
    }
}

/// Whether `section` was measured in this run.
pub(crate) fn ran(r: &Results, section: &str) -> bool {
    match section {
        "drain" => r.drain.is_some(),
        "overhead" => r.overhead.is_some(),
        "threads" => r.threads.is_some(),
        "scale" => r.scale.is_some(),
        "restart" => r.restart.is_some(),
        "micro" => r.micro.is_some(),
        "fleet" => r.fleet.is_some(),
        "h2" => r.h2.is_some(),
        "tls" => r.tls.is_some(),
        _ => false,
    }
}

/// The begin and end markers of `section`'s results in BENCHMARKS.md.
pub(crate) fn markers(section: &str) -> (String, String) {
    (
        format!("<!-- {section}:begin (bench/run.sh writes this part) -->"),
        format!("<!-- {section}:end -->"),
    )
}

/// One section's part of the report: what ran where, its figures against
/// the targets, then the details. Each section has markers of its own in
/// BENCHMARKS.md, so that `--only` rewrites just the sections it runs.
pub(crate) fn render_section(r: &Results, section: &str) -> String {
    if section == "fleet" {
        return render_fleet(r);
    }
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(out, "### {}\n", title(section));
    let tools = match section {
        "drain" | "scale" | "restart" => format!("; {}", m.go),
        "overhead" => format!("; {}; {}", m.go, m.wrk),
        "threads" => format!("; {}", m.wrk),
        "h2" => {
            r.h2.as_ref()
                .map_or(String::new(), |h| format!("; {}", h.h2load_version))
        }
        _ => String::new(),
    };
    let limit = if section == "scale" {
        format!(" Descriptor limit {}.", m.nofile)
    } else {
        String::new()
    };
    let took = r
        .timings
        .iter()
        .find(|(n, _)| *n == section)
        .map_or(String::new(), |(_, d)| {
            format!(" This section took {:.0} s;", d.as_secs_f64())
        });
    let _ = writeln!(
        out,
        "Run {}, commit `{}`: {} CPUs ({}), Linux {}; {}{tools}.{limit} Load average before \
         the run {}, after {}.{took} `bench/run.sh --only {section}` reruns it alone.\n",
        m.date, m.commit, m.cpus, m.cpu_model, m.kernel, m.rustc, m.load_before, m.load_after,
    );
    match section {
        "overhead" => {
            if let Some(o) = &r.overhead {
                overhead_section(&mut out, o);
            }
        }
        "threads" => {
            if let Some(t) = &r.threads {
                threads_section(&mut out, t);
            }
        }
        "h2" => {
            if let Some(h) = &r.h2 {
                h2_section(&mut out, h);
            }
        }
        "tls" => {
            if let Some(t) = &r.tls {
                tls_section(&mut out, t);
            }
        }
        _ => {
            summary(&mut out, r, section);
            details(&mut out, r, section);
        }
    }
    let notes: Vec<&String> = r
        .notes
        .iter()
        .filter(|(s, _)| *s == section)
        .map(|(_, n)| n)
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\nRunner notes:\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

fn cpu_median(runs: &[overhead::Run]) -> Option<f64> {
    median(
        &runs
            .iter()
            .filter_map(|r| r.cpu_us_per_req)
            .collect::<Vec<_>>(),
    )
}

/// `a ÷ b` per round (runs of the same round side by side).
fn per_round(a: &[overhead::Run], b: &[overhead::Run]) -> String {
    a.iter()
        .zip(b)
        .map(|(a, b)| format!("{:.3}", a.rps / b.rps))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The wrk table: every run of every server.
fn wrk_table(out: &mut String, o: &overhead::Result) {
    let _ = writeln!(
        out,
        "| server | req/s per run | median req/s | server CPU per request, per run | CPUs busy: server / machine (median) | latency p50 / p99 (last run) | errors |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (setup, runs) in &o.runs {
        let last = runs.last();
        let busy = |f: fn(&overhead::Run) -> Option<f64>| {
            median(&runs.iter().filter_map(f).collect::<Vec<_>>())
                .map_or("?".into(), |v| format!("{v:.2}"))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} | {} |",
            setup.name(),
            runs.iter()
                .map(|r| thousands(r.rps as u64))
                .collect::<Vec<_>>()
                .join(", "),
            rps_median(runs).map_or("—".into(), |v| thousands(v as u64)),
            runs.iter()
                .map(|r| r
                    .cpu_us_per_req
                    .map_or("?".into(), |c| format!("{c:.2} µs")))
                .collect::<Vec<_>>()
                .join(", "),
            busy(|r| r.server_cpus),
            busy(|r| r.machine_cpus),
            last.map_or("—".into(), |r| format!("{} / {}", r.p50, r.p99)),
            runs.iter().map(|r| r.errors).sum::<u64>()
        );
    }
    for (setup, runs) in &o.runs {
        let lines: Vec<&str> = runs
            .iter()
            .flat_map(|r| r.error_lines.iter().map(String::as_str))
            .collect();
        if !lines.is_empty() {
            let _ = writeln!(
                out,
                "\n{} errors, as wrk put them: {}.",
                setup.name(),
                lines.join("; ")
            );
        }
    }
    if !o.errors.is_empty() {
        let _ = writeln!(out);
        for e in &o.errors {
            // One line each (wrk's and valgrind's words may span several).
            let _ = writeln!(out, "- error: {}", one_line(e));
        }
    }
}

/// `text` on one line, for a Markdown list or table cell.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Target for tracking's share of instructions per request.
const INSTRUCTIONS_TARGET: f64 = 0.03;
/// Target for two threads' throughput over one's.
const THREADS_TARGET: f64 = 1.8;

fn overhead_section(out: &mut String, o: &overhead::Result) {
    let runtimes: Vec<&'static str> = o
        .runs
        .iter()
        .filter(|(s, _)| s.kind == Kind::Demo)
        .map(|(s, _)| s.runtime)
        .collect();
    let _ = writeln!(
        out,
        "Each runtime binding's demo (`serve --runtime NAME`, one executor thread) against \
         the untracked baseline on the same runtime (`baseline --runtime NAME`: the same \
         threads, executor, sockets and futures-io → hyper bridge, no lameduck driver, core \
         or tracking). Throughput: `{}` on `GET /`, {} rounds, medians. Instructions: \
         user space, counted by callgrind (see below); *tracking's cost* is the tracked \
         server's extra instructions per request over the untracked one's, leaving out \
         `memset` (the bridge's zeroed read scratch, the same in both, which callgrind \
         over-counts), as a share of the untracked one's.\n",
        o.wrk_args, o.rounds
    );
    let _ = writeln!(
        out,
        "| runtime | req/s tracked / untracked | ratio (target ≥ 0.97×) | ratio per round | CPU per request tracked / untracked | instructions per request tracked / untracked (without `memset`) | tracking's cost (target ≤ 3%) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for rt in &runtimes {
        let demo = Setup::new(Kind::Demo, rt, 1);
        let base = Setup::new(Kind::Baseline, rt, 1);
        let (d, b) = (o.runs_of(demo), o.runs_of(base));
        let (dm, bm) = (d.and_then(rps_median), b.and_then(rps_median));
        let ratio = dm.zip(bm).map(|(d, b)| d / b);
        let rps = |v: Option<f64>| v.map_or("—".into(), |v| thousands(v as u64));
        let us = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2} µs"));
        let (counts, cost) = instruction_cells(o.instructions_of(demo), o.instructions_of(base));
        let _ = writeln!(
            out,
            "| {rt} | {} / {} | {} | {} | {} / {} | {counts} | {cost} |",
            rps(dm),
            rps(bm),
            ratio.map_or_else(
                || verdict(None).to_owned(),
                |x| format!("{x:.3}× → {}", verdict(Some(x >= OVERHEAD_TARGET)))
            ),
            d.zip(b).map_or("—".into(), |(d, b)| per_round(d, b)),
            us(d.and_then(cpu_median)),
            us(b.and_then(cpu_median)),
        );
    }
    let go = o.runs_of(Setup::go()).and_then(rps_median);
    let smol = o
        .runs_of(Setup::new(Kind::Demo, "smol", 1))
        .and_then(rps_median);
    if let Some(go) = go {
        let _ = writeln!(
            out,
            "\nGo `net/http` (GOMAXPROCS = all CPUs): {} req/s; lameduck on smol ÷ Go = {} \
             (target: not behind Go, ≥ 1×) → {}.",
            thousands(go as u64),
            smol.map_or("—".into(), |s| format!("{:.3}×", s / go)),
            verdict(smol.map(|s| s >= go))
        );
    }
    let _ = writeln!(
        out,
        "\nEvery wrk run: servers started once, a 2 s warm-up each, then rounds; each round \
         takes the runtimes in an order that rotates, and runs each runtime's tracked and \
         untracked servers back to back, which first alternating. wrk and the servers \
         share the machine's CPUs (nothing pinned). *CPUs busy*: the server's CPU time \
         (all its threads, `/proc/PID/task/*/schedstat`) over the run's wall time, and the \
         whole machine's (`/proc/stat`: wrk, the server, and anything else running).\n"
    );
    wrk_table(out, o);
    if !o.instructions.is_empty() {
        let _ = writeln!(
            out,
            "\nInstructions per request, counted by callgrind (valgrind): each server \
             runs under callgrind twice, serving 2,000 and then 12,000 keep-alive \
             `GET /` requests over 8 connections; the difference of the totals over the \
             10,000 extra requests is the cost of a request, start-up and shutdown \
             cancelled out. User space only, all threads. valgrind counts each byte of a \
             `rep stosb` as an instruction, so the bridge's zeroed 8 KiB read scratch (the \
             same in the tracked and untracked servers) shows as ~8,200 `memset` \
             instructions per request though it costs a few hundred cycles.\n"
        );
        let _ = writeln!(
            out,
            "| server | instructions per request | of which `memset` | without `memset` |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for (setup, counted) in &o.instructions {
            match counted {
                Ok(i) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} |",
                        setup.name(),
                        thousands(i.per_request as u64),
                        thousands(i.memset_per_request as u64),
                        thousands((i.per_request - i.memset_per_request) as u64)
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "| {} | failed: {} | | |", setup.name(), one_line(e));
                }
            }
        }
    }
}

fn h2_section(out: &mut String, h: &h2::Result) {
    let [demo, base] = h2::setups();
    let _ = writeln!(
        out,
        "The demo (`serve --runtime smol`, one executor thread: lameduck tracks each HTTP/2 \
         stream in its core) against the untracked baseline (`baseline --runtime smol`: \
         the same runtime, preface sniff, futures-io → hyper bridge and hyper `http2` \
         connection with each stream's task on the runtime, no lameduck driver, core or \
         tracking), h2c with prior knowledge. Throughput: `{}` on `GET /`, {} rounds \
         (a warm-up run each first; which server goes first alternates), medians. \
         Instructions: user space, counted by callgrind with the same h2load load of \
         {} and then {} requests; the difference of the totals over the {} extra \
         requests is the cost of a request, start-up and shutdown cancelled out. \
         *Tracking's cost* leaves out `memset` (the bridge's zeroed read scratch, the \
         same in both, which callgrind over-counts). h2load and the servers share the \
         machine's CPUs, with whatever else runs on it: the req/s ratio is noisy on a \
         loaded machine, the instruction counts are the stable figure.\n",
        h.h2load_args,
        h.rounds,
        thousands(h2::SMALL as u64),
        thousands(h2::LARGE as u64),
        thousands((h2::LARGE - h2::SMALL) as u64),
    );
    let (d, b) = (h.runs_of(demo), h.runs_of(base));
    let median_of = |runs: Option<&[h2::Run]>| {
        runs.and_then(|r| median(&r.iter().map(|r| r.rps).collect::<Vec<_>>()))
    };
    let cpu_of = |runs: Option<&[h2::Run]>| {
        runs.and_then(|r| {
            median(
                &r.iter()
                    .filter_map(|r| r.cpu_us_per_req)
                    .collect::<Vec<_>>(),
            )
        })
    };
    let (dm, bm) = (median_of(d), median_of(b));
    let rps = |v: Option<f64>| v.map_or("—".into(), |v| thousands(v as u64));
    let us = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2} µs"));
    let per_round = d.zip(b).map_or("—".into(), |(d, b)| {
        d.iter()
            .zip(b)
            .map(|(d, b)| format!("{:.3}", d.rps / b.rps))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let (counts, cost) = instruction_cells(h.instructions_of(demo), h.instructions_of(base));
    let _ = writeln!(
        out,
        "| req/s tracked / untracked | ratio | ratio per round | CPU per request tracked / untracked | instructions per request tracked / untracked (without `memset`) | tracking's cost (target ≤ 3%) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} / {} | {} | {per_round} | {} / {} | {counts} | {cost} |",
        rps(dm),
        rps(bm),
        dm.zip(bm)
            .map_or("—".into(), |(d, b)| format!("{:.3}×", d / b)),
        us(cpu_of(d)),
        us(cpu_of(b)),
    );
    let _ = writeln!(
        out,
        "\n| server | req/s per run | failed requests | instructions per request | of which `memset` |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for setup in [demo, base] {
        let runs = h.runs_of(setup).unwrap_or(&[]);
        let per_run = runs
            .iter()
            .map(|r| thousands(r.rps as u64))
            .collect::<Vec<_>>()
            .join(", ");
        let failed: u64 = runs.iter().map(|r| r.failed).sum();
        let (count, memset) = count_cells(h.instructions_of(setup));
        let _ = writeln!(
            out,
            "| {} | {per_run} | {failed} | {count} | {memset} |",
            setup.name()
        );
    }
    if !h.errors.is_empty() {
        let _ = writeln!(out, "\nErrors:\n");
        for e in &h.errors {
            let _ = writeln!(out, "- {}", one_line(e));
        }
    }
}

fn tls_section(out: &mut String, t: &tls::Result) {
    let [demo, base] = tls::setups();
    let (conns, clients, rounds) = t
        .plan
        .as_ref()
        .map_or((0, 0, 0), |p| (p.connections, p.clients, p.rounds));
    let _ = writeln!(
        out,
        "The demo (`serve --runtime smol --tls-cert PEM --tls-key PEM`, one executor thread, \
         built with lameduck's `tls` feature: lameduck tracks each connection from its accept, \
         through the handshake, to its close) against the untracked baseline (`baseline \
         --runtime smol --tls-cert PEM --tls-key PEM`: the same rustls configuration, made by \
         `lameduck::tls::TlsAcceptor::from_pem_files`, the same `futures-rustls` acceptor, \
         bridge and hyper `http1` connection, no lameduck driver, core or tracking). Each \
         connection: TCP connect, a full TLS handshake (a fresh rustls client session, no \
         resumption; rustls' `ring` provider on both sides; a certificate for `localhost` \
         from a CA made for the run with rcgen), `GET /` with `Connection: close`, the \
         response read to the server's `close_notify` (a close without it counts as a \
         failure), then the client's close. {} connections per run over {} client threads \
         (each opening its share one after the other), {} rounds (a warm-up run of each \
         first; which server goes first alternates), medians; *connections/s* is completed \
         connections over the run's wall time. Instructions: user space, counted by \
         callgrind in the server with the same client loop opening {} and then {} \
         connections; the difference of the totals over the {} extra connections is the \
         cost of one (handshake, request and close), start-up and shutdown cancelled out. \
         The clients, which also verify the certificate and its signature, and the server \
         share the machine's CPUs: the connections/s ratio is noisy on a loaded machine, \
         the instruction counts are the stable figure.\n",
        thousands(conns as u64),
        clients,
        rounds,
        thousands(tls::SMALL as u64),
        thousands(tls::LARGE as u64),
        thousands((tls::LARGE - tls::SMALL) as u64),
    );
    for (setup, session) in &t.sessions {
        let _ = writeln!(out, "- Session with {}: {session}", setup.name());
    }
    if !t.sessions.is_empty() {
        let _ = writeln!(out);
    }
    let (d, b) = (t.runs_of(demo), t.runs_of(base));
    let median_of = |runs: Option<&[tls::Run]>| {
        runs.and_then(|r| median(&r.iter().map(|r| r.per_sec).collect::<Vec<_>>()))
    };
    let cpu_of = |runs: Option<&[tls::Run]>| {
        runs.and_then(|r| {
            median(
                &r.iter()
                    .filter_map(|r| r.cpu_us_per_conn)
                    .collect::<Vec<_>>(),
            )
        })
    };
    let (dm, bm) = (median_of(d), median_of(b));
    let rate = |v: Option<f64>| v.map_or("—".into(), |v| thousands(v as u64));
    let us = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0} µs"));
    let per_round = d.zip(b).map_or("—".into(), |(d, b)| {
        d.iter()
            .zip(b)
            .map(|(d, b)| format!("{:.3}", d.per_sec / b.per_sec))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let count = |i: Option<&Result<overhead::Instructions, String>>| match i {
        Some(Ok(i)) => Some(i.per_request),
        _ => None,
    };
    let (cd, cb) = (
        count(t.instructions_of(demo)),
        count(t.instructions_of(base)),
    );
    let (counts, cost) = match cd.zip(cb) {
        Some((cd, cb)) => (
            format!("{} / {}", thousands(cd as u64), thousands(cb as u64)),
            format!(
                "{:+.0} per connection, {:+.2}%",
                cd - cb,
                100.0 * (cd - cb) / cb
            ),
        ),
        None => ("not measured".into(), "not measured".into()),
    };
    let _ = writeln!(
        out,
        "| connections/s tracked / untracked | ratio | ratio per round | server CPU per connection tracked / untracked | instructions per connection tracked / untracked | tracking's cost |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} / {} | {} | {per_round} | {} / {} | {counts} | {cost} |",
        rate(dm),
        rate(bm),
        dm.zip(bm)
            .map_or("—".into(), |(d, b)| format!("{:.3}×", d / b)),
        us(cpu_of(d)),
        us(cpu_of(b)),
    );
    let _ = writeln!(
        out,
        "\n| server | connections/s per run | connections completed | instructions per connection | of which `memset` |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for setup in [demo, base] {
        let runs = t.runs_of(setup).unwrap_or(&[]);
        let per_run = runs
            .iter()
            .map(|r| thousands(r.per_sec as u64))
            .collect::<Vec<_>>()
            .join(", ");
        let completed: u64 = runs.iter().map(|r| r.completed).sum();
        let (count, memset) = count_cells(t.instructions_of(setup));
        let _ = writeln!(
            out,
            "| {} | {per_run} | {} | {count} | {memset} |",
            setup.name(),
            thousands(completed)
        );
    }
    if !t.errors.is_empty() {
        let _ = writeln!(out, "\nErrors:\n");
        for e in &t.errors {
            let _ = writeln!(out, "- {}", one_line(e));
        }
    }
}

fn threads_section(out: &mut String, t: &threads::Result) {
    let o = &t.runs;
    let _ = writeln!(
        out,
        "The demo with `--threads 1` and `--threads 2` on the same runtime (each thread its \
         own executor and accept loop on the shared listening socket), `{}` on `GET /`, \
         {} rounds, medians. wrk runs on the same {} CPUs: what the second server thread \
         can add is bounded by the CPU that wrk (and the machine's other load) leaves it, \
         shown as *CPUs busy*.\n",
        o.wrk_args, o.rounds, t.cpus
    );
    let _ = writeln!(
        out,
        "| runtime | req/s 1 thread / 2 threads | 2 ÷ 1 | per round | server CPUs busy 1 / 2 threads | machine CPUs busy 1 / 2 threads | CPU per request 1 / 2 threads | target ≥ 1.8× on 2 cores' worth of work |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for rt in &t.runtimes {
        let one = o.runs_of(Setup::new(Kind::Demo, rt, 1));
        let two = o.runs_of(Setup::new(Kind::Demo, rt, 2));
        let (m1, m2) = (one.and_then(rps_median), two.and_then(rps_median));
        let ratio = m1.zip(m2).map(|(a, b)| b / a);
        let med = |runs: Option<&[overhead::Run]>, f: fn(&overhead::Run) -> Option<f64>| {
            runs.and_then(|runs| median(&runs.iter().filter_map(f).collect::<Vec<_>>()))
                .map_or("—".into(), |v| format!("{v:.2}"))
        };
        // Two server threads and wrk need more than two CPUs between them.
        let verdict_cell = match ratio {
            None => verdict(None).to_owned(),
            Some(x) if x >= THREADS_TARGET => verdict(Some(true)).to_owned(),
            Some(_) if t.cpus < 4 => format!(
                "not measurable here: {} CPUs for two server threads and wrk",
                t.cpus
            ),
            Some(_) => verdict(Some(false)).to_owned(),
        };
        let _ = writeln!(
            out,
            "| {rt} | {} / {} | {} | {} | {} / {} | {} / {} | {} / {} | {verdict_cell} |",
            m1.map_or("—".into(), |v| thousands(v as u64)),
            m2.map_or("—".into(), |v| thousands(v as u64)),
            ratio.map_or("—".into(), |x| format!("{x:.3}×")),
            one.zip(two).map_or("—".into(), |(a, b)| per_round(b, a)),
            med(one, |r| r.server_cpus),
            med(two, |r| r.server_cpus),
            med(one, |r| r.machine_cpus),
            med(two, |r| r.machine_cpus),
            one.and_then(cpu_median)
                .map_or("—".into(), |v| format!("{v:.2} µs")),
            two.and_then(cpu_median)
                .map_or("—".into(), |v| format!("{v:.2} µs")),
        );
    }
    let _ = writeln!(out);
    wrk_table(out, o);
}

fn summary(out: &mut String, r: &Results, section: &str) {
    let _ = writeln!(
        out,
        "| measure | lameduck (demo) | untracked baseline | Go net/http | target | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    if section == "drain"
        && let Some((demo, go)) = &r.drain
    {
        let d_done: Vec<f64> = demo.samples.iter().map(|s| s.done_ms).collect();
        let d_exit: Vec<f64> = demo.samples.iter().map(|s| s.exit_ms).collect();
        let g_done: Vec<f64> = go.samples.iter().map(|s| s.done_ms).collect();
        let g_exit: Vec<f64> = go.samples.iter().map(|s| s.exit_ms).collect();
        let ok =
            |v: &[f64]| percentile(v, 90.0).map(|p| p <= DRAIN_TARGET_MS && demo.errors.is_empty());
        let _ = writeln!(
            out,
            "| drain tail: last response → drain complete, median (p90), {} runs | {} | — | {} | ≤ 2 ms (p90) | {} |",
            demo.samples.len(),
            med_p90(&d_done),
            med_p90(&g_done),
            verdict(ok(&d_done))
        );
        let _ = writeln!(
            out,
            "| drain tail: last response → process exit, median (p90) | {} | — | {} | ≤ 2 ms (p90) | {} |",
            med_p90(&d_exit),
            med_p90(&g_exit),
            verdict(ok(&d_exit))
        );
    }
    if section == "scale"
        && let Some(s) = &r.scale
    {
        let (d, b, g) = (s.agg(Kind::Demo), s.agg(Kind::Baseline), s.agg(Kind::Go));
        let conns = [&d, &b, &g]
            .iter()
            .find_map(|a| a.as_ref().map(|a| a.conns))
            .unwrap_or(0);
        let reduced = if conns < s.requested {
            format!(
                " (**not the {} asked for**: the descriptor limit here is {})",
                thousands(s.requested as u64),
                s.nofile
            )
        } else {
            String::new()
        };
        let at = if conns < s.requested {
            format!(" at {}", thousands(conns as u64))
        } else {
            String::new()
        };
        let cell = |a: &Option<Agg>, f: fn(&Agg) -> &Vec<f64>| {
            a.as_ref()
                .and_then(|a| median(f(a)))
                .map_or("—".into(), fmt_ms)
        };
        let met = |a: &Option<Agg>, f: fn(&Agg) -> &Vec<f64>| {
            a.as_ref()
                .and_then(|a| median(f(a)))
                .map(|x| x <= SCALE_TARGET_MS)
        };
        let runs = d.as_ref().map_or(0, |a| a.exit.len());
        let _ = writeln!(
            out,
            "| scale: {} idle keep-alive conns{}, SIGTERM → drain complete, median of {} runs | {} | no drain | {} | ≤ 100 ms | {}{} |",
            thousands(conns as u64),
            reduced,
            runs,
            cell(&d, |a| &a.done),
            cell(&g, |a| &a.done),
            verdict(met(&d, |a| &a.done)),
            at
        );
        let _ = writeln!(
            out,
            "| scale: same, SIGTERM → process exit (baseline: killed by the SIGTERM, no drain: the kernel's own cost of tearing down that many sockets) | {} | {} | {} | ≤ 100 ms | {}{} |",
            cell(&d, |a| &a.exit),
            cell(&b, |a| &a.exit),
            cell(&g, |a| &a.exit),
            verdict(met(&d, |a| &a.exit)),
            at
        );
        let core = &s.core_at_target;
        let _ = writeln!(
            out,
            "| core state per tracked conn ({} idle, in-process `memory_footprint()`): default config / idle+header timeouts armed | {:.1} B / {:.1} B | — | — | ≤ 64 B | {} |",
            thousands(core.conns as u64),
            core.bytes_default,
            core.bytes_timers,
            verdict(Some(
                core.bytes_default.max(core.bytes_timers) <= CORE_BYTES_TARGET
            ))
        );
        let rss = |a: &Option<Agg>| {
            a.as_ref()
                .and_then(|a| median(&a.rss))
                .map_or("—".into(), |b| format!("{:.1} KiB", b / 1024.0))
        };
        let _ = writeln!(
            out,
            "| whole-process RSS per idle conn (context: the connection's task, hyper's buffers, adapter state) | {} | {} | {} | — | context |",
            rss(&d),
            rss(&b),
            rss(&g)
        );
    }
    if section == "restart"
        && let Some((plan, drills)) = &r.restart
    {
        let cell = |m: restart::Method| {
            drills
                .iter()
                .find(|d| d.method == m)
                .map_or("not run".into(), |d| {
                    let mut s = format!(
                        "{} failed, {} retried, {} ok; {} restarts",
                        thousands(d.counts.failed()),
                        thousands(d.counts.retried),
                        thousands(d.counts.ok),
                        d.restarts_done
                    );
                    if d.error.is_some() {
                        s.push_str(" (aborted)");
                    }
                    s
                })
        };
        let lame = drills
            .iter()
            .find(|d| d.method == restart::Method::Lameduck);
        let met = lame.map(|d| {
            d.counts.failed() == 0 && d.restarts_done == plan.restarts && d.error.is_none()
        });
        let _ = writeln!(
            out,
            "| restart drill under load, {} restarts: failed requests (retried: a request on a reused keep-alive connection closed under it, retried once) | {} | kill+start: {}; SO_REUSEPORT: {} | — | 0 failures (lameduck) | {} |",
            plan.restarts,
            cell(restart::Method::Lameduck),
            cell(restart::Method::KillStart),
            cell(restart::Method::ReusePort),
            verdict(met)
        );
    }
    if section == "micro"
        && let Some((rows, _)) = &r.micro
    {
        if let Some(cycle) = rows.iter().find(|r| r.name == "connection_cycle") {
            let _ = writeln!(
                out,
                "| core: connection cycle accept→active→idle→closed (divan median; allocs/grows per cycle, median) | {} ({} allocs, {} grows) | — | — | a few hundred ns, no allocation in steady state | {} |",
                cycle.median,
                cycle.allocs,
                cycle.grows,
                verdict(Some(cycle.allocs == "0" && cycle.grows == "0"))
            );
        }
        let shutdown: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let n = r.name.strip_prefix("shutdown_idle/")?;
                Some(format!(
                    "N={}: {} ({} allocs, {} grows)",
                    n, r.median, r.allocs, r.grows
                ))
            })
            .collect();
        if !shutdown.is_empty() {
            let _ = writeln!(
                out,
                "| core: `shutdown` over N idle conns, all actions drained (divan median) | {} | — | — | — | context |",
                shutdown.join("; ")
            );
        }
    }
}

fn details(out: &mut String, r: &Results, section: &str) {
    if section == "drain"
        && let Some((demo, go)) = &r.drain
    {
        let _ = writeln!(
            out,
            "Per run: a fresh server on 127.0.0.1, 16 idle keep-alive connections, one \
             `GET /sleep?ms=300` in flight, SIGTERM 100 ms into it. Times after the client \
             read the in-flight response's last byte: the completion line's arrival on the \
             server's stderr pipe (demo: the `done:` event; Go: a line printed when \
             `Shutdown` returns) and `waitpid` returning. Negative values: the line arrived \
             before the client thread took its timestamp.\n"
        );
        let _ = writeln!(
            out,
            "| server | runs | → done: median | p90 | max | → exit: median | p90 | max | failed runs |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for (name, res) in [(Kind::Demo.name(), demo), (Kind::Go.name(), go)] {
            let done: Vec<f64> = res.samples.iter().map(|s| s.done_ms).collect();
            let exit: Vec<f64> = res.samples.iter().map(|s| s.exit_ms).collect();
            let f = |v: Option<f64>| v.map_or("—".into(), fmt_ms);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                name,
                res.samples.len(),
                f(median(&done)),
                f(percentile(&done, 90.0)),
                f(percentile(&done, 100.0)),
                f(median(&exit)),
                f(percentile(&exit, 90.0)),
                f(percentile(&exit, 100.0)),
                res.errors.len()
            );
        }
        for (name, res) in [(Kind::Demo.name(), demo), (Kind::Go.name(), go)] {
            let list = |f: fn(&drain::Sample) -> f64| {
                res.samples
                    .iter()
                    .map(|s| format!("{:.2}", f(s)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let _ = writeln!(
                out,
                "\n{name}, every run (ms): → done `{}`; → exit `{}`",
                list(|s| s.done_ms),
                list(|s| s.exit_ms)
            );
        }
        for e in demo.errors.iter().chain(&go.errors).take(5) {
            let _ = writeln!(out, "\n- failed run: {e}");
        }
    }
    if section == "scale"
        && let Some(s) = &r.scale
    {
        let conns = s
            .runs
            .iter()
            .find_map(|f| f.as_ref().ok().map(|f| thousands(f.conns as u64)))
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(
            out,
            "Idle keep-alive connections (each completed one `GET /`) held by helper \
             processes of at most 8,000 connections, each from its own source address \
             (127.0.0.2, 127.0.0.3, …), then SIGTERM; times from the signal; the servers \
             take turns, run after run. RSS: the server's `VmRSS` after minus before the \
             connections, per connection. Asked for {} connections; the runner's descriptor \
             limit is {} (raised to its hard limit; the server inherits it), so {} were run.\n",
            thousands(s.requested as u64),
            s.nofile,
            conns
        );
        let _ = writeln!(
            out,
            "| server | conns | server fds | SIGTERM → done, per run | SIGTERM → exit, per run | exits | RSS per conn (median) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for kind in [Kind::Demo, Kind::Baseline, Kind::Go] {
            let Some(a) = s.agg(kind) else { continue };
            let list = |v: &[f64]| {
                if v.is_empty() {
                    "—".to_owned()
                } else {
                    v.iter().map(|x| fmt_ms(*x)).collect::<Vec<_>>().join(", ")
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                kind.name(),
                thousands(a.conns as u64),
                a.fds.map_or("?".into(), |n| thousands(n as u64)),
                list(&a.done),
                list(&a.exit),
                a.exits.join(", "),
                median(&a.rss).map_or("—".into(), |b| format!("{:.1} KiB", b / 1024.0))
            );
        }
        for e in s.runs.iter().filter_map(|r| r.as_ref().err()) {
            let _ = writeln!(out, "\n- failed run: {e}");
        }
        let _ = writeln!(
            out,
            "\nCore state, in-process: `lameduck_core::Server::memory_footprint()` (heap \
             *capacity* of the connection table, the deadline index, the lease words and \
             the action queue) with N connections, each holding a lease as lameduck's driver \
             takes one, made idle after one request, per connection. Vectors grow by \
             doubling, so the figure depends on where N falls between powers of two:\n"
        );
        let _ = writeln!(out, "| N | default config | idle + header timeouts armed |");
        let _ = writeln!(out, "|---|---|---|");
        for c in &s.core_sweep {
            let _ = writeln!(
                out,
                "| {} | {:.1} B | {:.1} B |",
                thousands(c.conns as u64),
                c.bytes_default,
                c.bytes_timers
            );
        }
    }
    if section == "restart"
        && let Some((plan, drills)) = &r.restart
    {
        let l = &plan.load;
        let _ = writeln!(
            out,
            "{} restarts per method, {} ms of load between restarts. Load throughout: {} \
             keep-alive clients and {} new-connection-per-request clients on `GET /` (a {} ms \
             pause between requests), {} keep-alive clients on `GET /sleep?ms={}`. A request \
             on a reused keep-alive connection that fails before any response byte is retried \
             once on a new connection (RFC 9112, section 9.3.1; counted as retried, not failed). The \
             baseline's `SO_REUSEPORT` control: the new process binds beside the old, then \
             the old one gets SIGTERM, closes its listener, serves its open connections for \
             0.5 s more and exits; the kill + start control: SIGTERM (the baseline dies at \
             once), then a new process binds.\n",
            plan.restarts,
            plan.between.as_millis(),
            l.keep_alive,
            l.new_conn,
            l.pause.as_millis(),
            l.slow,
            l.slow_ms
        );
        let _ = writeln!(
            out,
            "| method | restarts | requests ok | retried | failed | failures by kind | restart time median (max) | wall |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for d in drills {
            let kinds = if d.counts.failures.is_empty() {
                "—".to_owned()
            } else {
                d.counts
                    .failures
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "| {} | {}{} | {} | {} | {} | {} | {} ({}) | {:.0} s |",
                d.method.name(),
                d.restarts_done,
                d.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (stopped: {e})")),
                thousands(d.counts.ok),
                thousands(d.counts.retried),
                thousands(d.counts.failed()),
                kinds,
                median(&d.restart_ms).map_or("—".into(), fmt_ms),
                percentile(&d.restart_ms, 100.0).map_or("—".into(), fmt_ms),
                d.seconds
            );
        }
    }
    if section == "micro"
        && let Some((_, raw)) = &r.micro
    {
        let _ = writeln!(out);
        let _ = writeln!(out, "```text");
        for line in raw.lines().filter(|l| {
            !l.trim_start().starts_with("Compiling")
                && !l.trim_start().starts_with("Finished")
                && !l.trim_start().starts_with("Running")
                && !l.trim_start().starts_with("Blocking")
        }) {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "```");
    }
}

/// Replaces what lies between the markers `begin` and `end` in `path`
/// with `text`.
pub(crate) fn splice(path: &Path, begin: &str, end: &str, text: &str) -> std::io::Result<()> {
    let doc = std::fs::read_to_string(path)?;
    let (Some(from), Some(to)) = (doc.find(begin), doc.find(end)) else {
        return Err(std::io::Error::other(format!(
            "no `{begin}` … `{end}` markers"
        )));
    };
    let mut updated = String::with_capacity(doc.len() + text.len());
    updated.push_str(&doc[..from + begin.len()]);
    updated.push_str("\n\n");
    updated.push_str(text.trim_end());
    updated.push_str("\n\n");
    updated.push_str(&doc[to..]);
    std::fs::write(path, updated)
}

/// The fleet drill's report: a section of its own (BENCHMARKS.md keeps it
/// between [`FLEET_BEGIN`] and [`FLEET_END`]).
pub(crate) fn render_fleet(r: &Results) -> String {
    let mut out = String::new();
    let Some((plan, figures)) = &r.fleet else {
        return out;
    };
    let m = &r.machine;
    let haproxy = fleet::haproxy()
        .map(|path| command_line(&path.to_string_lossy(), &["-v"]))
        .unwrap_or_else(|e| e);
    let _ = writeln!(out, "### Fleet drill results: {}\n", m.date);
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), Linux {}; {}; {}. Commit `{}`. Load average before {}, \
         after {}. Wall time {:.0} s. Reproduce: `bench/run.sh --only fleet` (this \
         section only; `--fleet-backends N`, `--fleet-rounds N`).\n",
        m.cpus,
        m.cpu_model,
        m.kernel,
        m.rustc,
        haproxy,
        m.commit,
        m.load_before,
        m.load_after,
        r.timings
            .iter()
            .find(|(n, _)| *n == "fleet")
            .map_or(0.0, |(_, d)| d.as_secs_f64())
    );
    let l = &plan.load;
    let _ = writeln!(
        out,
        "{} demo backends (`--grace {}`, `--lame-duck` as the variant says) behind HAProxy on \
         127.0.0.1: round robin, active `GET /healthz` checks every 100 ms, `fall 1`, \
         `rise 2`, `retries 0` (no retry hides a refusal from the clients), `timeout check \
         2s` (see `tests/src/balancer.rs` for the whole configuration). Load through the \
         balancer throughout: {} keep-alive and {} new-connection-per-request clients on \
         `GET /` ({} ms pause between requests), {} keep-alive clients on \
         `GET /sleep?ms={}`; a client's timeout is 5 s. {} rolling round(s) per variant, each \
         restarting every backend once: SIGTERM, and a fresh process on the same port once \
         the old one has exited (the Kubernetes pattern: a new pod for an old one); SIGHUP \
         (the demo restarts in place); or SIGKILL and a fresh process. The next backend is \
         touched only once the balancer has the last one `UP` again. Throughput: complete \
         responses per second through the balancer for {} s before the roll, and from the \
         first signal to the last backend `UP`. A request on a reused keep-alive connection \
         that fails before any response byte is retried once on a new connection (counted \
         as retried, not failed).\n",
        plan.backends,
        plan.grace,
        l.keep_alive,
        l.new_conn,
        l.pause.as_millis(),
        l.slow,
        l.slow_ms,
        plan.rounds,
        plan.settle.as_secs()
    );
    let figures = match figures {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(out, "**Not run**: {e}.");
            return out;
        }
    };
    let lame_on: Vec<&fleet::Figures> = figures
        .iter()
        .filter(|f| f.variant.lame_duck > 0.0)
        .collect();
    let complete =
        |f: &fleet::Figures| f.error.is_none() && f.restarts_done == plan.backends * plan.rounds;
    let met = !lame_on.is_empty()
        && lame_on
            .iter()
            .all(|f| complete(f) && f.total().failed() == 0);
    let _ = writeln!(
        out,
        "**Lame duck on, both restart styles: {} failed requests of {} → {}.** Without it: {}.\n",
        thousands(lame_on.iter().map(|f| f.total().failed()).sum()),
        thousands(
            lame_on
                .iter()
                .map(|f| f.total().ok + f.total().failed())
                .sum()
        ),
        if met {
            "zero, target met"
        } else {
            "target (zero) MISSED"
        },
        figures
            .iter()
            .filter(|f| f.variant.lame_duck == 0.0)
            .map(|f| format!(
                "{} — {} failed",
                f.variant.name,
                thousands(f.total().failed())
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        out,
        "| variant | restarts | requests ok | failed | failures by kind | failed per client kind ({}) | retried | balancer marked it DOWN first | req/s before → during the roll | roll | signal → `UP` again, median (max) |",
        restart::CLIENT_KINDS.join(" / ")
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        let total = f.total();
        let kinds = if total.failures.is_empty() {
            "—".to_owned()
        } else {
            total
                .failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let per_client = f
            .by_client
            .iter()
            .map(|(_, c)| thousands(c.failed()))
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | **{}** | {} | {} | {} | {} of {} | {} → {} | {:.1} s | {} ({}) |",
            f.variant.name,
            f.restarts_done,
            f.error
                .as_ref()
                .map_or(String::new(), |e| format!(" (stopped: {e})")),
            thousands(total.ok),
            thousands(total.failed()),
            kinds,
            per_client,
            thousands(total.retried),
            f.marked_down,
            f.restarts_done,
            thousands(f.steady_rps as u64),
            thousands(f.roll_rps as u64),
            f.roll_secs,
            median(&f.step_ms).map_or("—".into(), fmt_ms),
            percentile(&f.step_ms, 100.0).map_or("—".into(), fmt_ms),
        );
    }
    out
}

/// One server's instruction count and its `memset` share, as table cells.
fn count_cells(counted: Option<&Result<overhead::Instructions, String>>) -> (String, String) {
    match counted {
        Some(Ok(i)) => (
            thousands(i.per_request as u64),
            thousands(i.memset_per_request as u64),
        ),
        Some(Err(e)) => (format!("failed: {}", one_line(e)), String::new()),
        None => ("not measured".into(), String::new()),
    }
}

/// The two instruction cells of a tracked/untracked pair: the counts per
/// request (with and without `memset`), and tracking's cost against the
/// target.
fn instruction_cells(
    demo: Option<&Result<overhead::Instructions, String>>,
    base: Option<&Result<overhead::Instructions, String>>,
) -> (String, String) {
    let (Some(Ok(id)), Some(Ok(ib))) = (demo, base) else {
        return ("not measured".into(), verdict(None).into());
    };
    let (xd, xb) = (
        id.per_request - id.memset_per_request,
        ib.per_request - ib.memset_per_request,
    );
    let share = (xd - xb) / xb;
    (
        format!(
            "{} / {} ({} / {})",
            thousands(id.per_request as u64),
            thousands(ib.per_request as u64),
            thousands(xd as u64),
            thousands(xb as u64)
        ),
        format!(
            "{:+.0} per request, {:+.1}% → {} ({:+.1}% counting `memset`)",
            xd - xb,
            100.0 * share,
            verdict(Some(share <= INSTRUCTIONS_TARGET)),
            100.0 * (id.per_request - ib.per_request) / ib.per_request
        ),
    )
}
