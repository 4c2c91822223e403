//! The report: a summary table against the project's targets, then each
//! section's details, in Markdown.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::stats::{fmt_ms, median, percentile, thousands};
use crate::{Options, drain, fleet, micro, overhead, proc::Kind, restart, scale};

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
    pub(crate) scale: Option<Scale>,
    pub(crate) restart: Option<(restart::Plan, Vec<restart::Figures>)>,
    pub(crate) fleet: Option<(fleet::Plan, Result<Vec<fleet::Figures>, String>)>,
    pub(crate) notes: Vec<String>,
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

pub(crate) fn render(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(out, "## Results: {}\n", m.date);
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), Linux {}; {}; {}; {}. Commit `{}`. \
         Descriptor limit {}. Load average before {}, after {}. \
         Runner wall time {:.0} s ({}).\n",
        m.cpus,
        m.cpu_model,
        m.kernel,
        m.rustc,
        m.go,
        m.wrk,
        m.commit,
        m.nofile,
        m.load_before,
        m.load_after,
        r.total.as_secs_f64(),
        r.timings
            .iter()
            .map(|(n, d)| format!("{n} {:.0} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    summary(&mut out, r);
    details(&mut out, r);
    if !r.notes.is_empty() {
        let _ = writeln!(out, "\n### Runner notes\n");
        for note in &r.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

fn summary(out: &mut String, r: &Results) {
    let _ = writeln!(out, "### Summary against the targets\n");
    let _ = writeln!(
        out,
        "| measure | lameduck (demo) | untracked baseline | Go net/http | target | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    if let Some((demo, go)) = &r.drain {
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
    if let Some(o) = &r.overhead {
        let get = |k: Kind| {
            o.runs
                .iter()
                .find(|(kind, _)| *kind == k)
                .and_then(|(_, runs)| rps_median(runs))
        };
        let (d, b, g) = (get(Kind::Demo), get(Kind::Baseline), get(Kind::Go));
        let f =
            |v: Option<f64>| v.map_or("—".into(), |v| format!("{} req/s", thousands(v as u64)));
        let ratio = d.zip(b).map(|(d, b)| d / b);
        let _ = writeln!(
            out,
            "| keep-alive throughput `GET /`, median of {} wrk runs | {} | {} | {} | ≥ 0.97× untracked | {} |",
            o.runs.first().map_or(0, |(_, runs)| runs.len()),
            f(d),
            f(b),
            f(g),
            ratio.map_or_else(
                || verdict(None).to_owned(),
                |x| format!("{:.3}× → {}", x, verdict(Some(x >= OVERHEAD_TARGET)))
            )
        );
        let cpu = |k: Kind| {
            o.runs
                .iter()
                .find(|(kind, _)| *kind == k)
                .and_then(|(_, runs)| {
                    median(
                        &runs
                            .iter()
                            .filter_map(|r| r.cpu_us_per_req)
                            .collect::<Vec<_>>(),
                    )
                })
        };
        let (cd, cb, cg) = (cpu(Kind::Demo), cpu(Kind::Baseline), cpu(Kind::Go));
        let us = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2} µs"));
        let _ = writeln!(
            out,
            "| … server CPU time per request (all its threads, median of the runs): less sensitive to the machine's other load than req/s | {} | {} | {} | — | context: untracked ÷ tracked = {} |",
            us(cd),
            us(cb),
            us(cg),
            cd.zip(cb)
                .map_or("—".into(), |(d, b)| format!("{:.3}×", b / d))
        );
        let ins = |k: Kind| {
            o.instructions
                .iter()
                .find(|(kind, _)| *kind == k)
                .and_then(|(_, r)| r.as_ref().ok())
        };
        if let (Some(id), Some(ib)) = (ins(Kind::Demo), ins(Kind::Baseline)) {
            let added = id.per_request - ib.per_request;
            let (xd, xb) = (
                id.per_request - id.memset_per_request,
                ib.per_request - ib.memset_per_request,
            );
            let _ = writeln!(
                out,
                "| … user-space instructions per request (callgrind: deterministic; kernel time not seen) | {} | {} | — | — | context: tracking adds {:+.0} per request; {:+.1}% ({:+.1}% leaving out `memset`, {} vs {}) |",
                thousands(id.per_request as u64),
                thousands(ib.per_request as u64),
                added,
                100.0 * added / ib.per_request,
                100.0 * (xd - xb) / xb,
                thousands(xd as u64),
                thousands(xb as u64)
            );
        }
        let vs_go = d.zip(g).map(|(d, g)| d / g);
        let _ = writeln!(
            out,
            "| … lameduck ÷ Go | {} | | | ≥ 1× (not behind Go) | {} |",
            vs_go.map_or("—".into(), |x| format!("{x:.3}×")),
            vs_go.map_or_else(
                || verdict(None).to_owned(),
                |x| verdict(Some(x >= 1.0)).to_owned()
            )
        );
    }
    if let Some(s) = &r.scale {
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
    if let Some((plan, drills)) = &r.restart {
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
    if let Some((rows, _)) = &r.micro {
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

fn details(out: &mut String, r: &Results) {
    if let Some((demo, go)) = &r.drain {
        let _ = writeln!(out, "\n### Drain tail\n");
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
    if let Some(o) = &r.overhead {
        let _ = writeln!(out, "\n### Overhead\n");
        let _ = writeln!(
            out,
            "`{}` against each server's `GET /` (body `hello`, an `X-Pid` header), \
             servers started once, a 2 s warm-up each, then rounds in rotating order. wrk and \
             the server share the machine's CPUs (nothing pinned). The demo and the baseline \
             run on smol's global executor (one executor thread by default); Go on \
             GOMAXPROCS = all CPUs.\n",
            o.wrk_args
        );
        let _ = writeln!(
            out,
            "| server | req/s per run | median req/s | server CPU per request, per run | latency p50 / p99 (last run) | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for (kind, runs) in &o.runs {
            let last = runs.last();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                kind.name(),
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
                last.map_or("—".into(), |r| format!("{} / {}", r.p50, r.p99)),
                runs.iter().map(|r| r.errors).sum::<u64>()
            );
        }
        for (kind, runs) in &o.runs {
            let lines: Vec<&str> = runs
                .iter()
                .flat_map(|r| r.error_lines.iter().map(String::as_str))
                .collect();
            if !lines.is_empty() {
                let _ = writeln!(
                    out,
                    "\n{} errors, as wrk put them: {}.",
                    kind.name(),
                    lines.join("; ")
                );
            }
        }
        let runs_of = |k: Kind| o.runs.iter().find(|(kind, _)| *kind == k).map(|(_, r)| r);
        if let (Some(d), Some(b)) = (runs_of(Kind::Demo), runs_of(Kind::Baseline)) {
            let per_round: Vec<String> = d
                .iter()
                .zip(b)
                .map(|(d, b)| format!("{:.3}", d.rps / b.rps))
                .collect();
            let _ = writeln!(
                out,
                "\nlameduck ÷ baseline req/s, round by round: {}.",
                per_round.join(", ")
            );
        }
        if !o.instructions.is_empty() {
            let _ = writeln!(
                out,
                "\nInstructions per request, counted by callgrind (valgrind): each server \
                 runs under callgrind twice, serving 2,000 and then 12,000 keep-alive \
                 `GET /` requests over 8 connections; the difference of the totals over the \
                 10,000 extra requests is the cost of a request, start-up and shutdown \
                 cancelled out. User space only. valgrind counts each byte of a `rep stosb` \
                 as an instruction, so the bridge's zeroed 8 KiB read scratch (the same in \
                 both servers) shows as ~8,200 `memset` instructions per request though it \
                 costs a few hundred cycles.\n"
            );
            let _ = writeln!(
                out,
                "| server | instructions per request | of which `memset` | without `memset` |"
            );
            let _ = writeln!(out, "|---|---|---|---|");
            for (kind, counted) in &o.instructions {
                match counted {
                    Ok(i) => {
                        let _ = writeln!(
                            out,
                            "| {} | {} | {} | {} |",
                            kind.name(),
                            thousands(i.per_request as u64),
                            thousands(i.memset_per_request as u64),
                            thousands((i.per_request - i.memset_per_request) as u64)
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(out, "| {} | failed: {e} | | |", kind.name());
                    }
                }
            }
        }
        for e in &o.errors {
            let _ = writeln!(out, "\n- error: {e}");
        }
    }
    if let Some(s) = &r.scale {
        let _ = writeln!(out, "\n### Scale\n");
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
             *capacity* of the connection table, the deadline index and the action queue) \
             with N connections made idle after one request, per connection. Vectors grow \
             by doubling, so the figure depends on where N falls between powers of two:\n"
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
    if let Some((plan, drills)) = &r.restart {
        let l = &plan.load;
        let _ = writeln!(out, "\n### Restart drill\n");
        let _ = writeln!(
            out,
            "{} restarts per method, {} ms of load between restarts. Load throughout: {} \
             keep-alive clients and {} new-connection-per-request clients on `GET /` (a {} ms \
             pause between requests), {} keep-alive clients on `GET /sleep?ms={}`. A request \
             on a reused keep-alive connection that fails before any response byte is retried \
             once on a new connection (RFC 9112 §9.3.1; counted as retried, not failed). The \
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
    if let Some((_, raw)) = &r.micro {
        let _ = writeln!(
            out,
            "\n### Core micro-benchmarks (divan, `cargo bench -p lameduck-core`)\n"
        );
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

/// Begin and end markers of the results in BENCHMARKS.md.
pub(crate) const BEGIN: &str = "<!-- results:begin (bench/run.sh writes this part) -->";
pub(crate) const END: &str = "<!-- results:end -->";
/// Begin and end markers of the fleet drill's results in BENCHMARKS.md.
pub(crate) const FLEET_BEGIN: &str = "<!-- fleet:begin (bench/run.sh writes this part) -->";
pub(crate) const FLEET_END: &str = "<!-- fleet:end -->";

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
            .find(|(n, _)| *n == "fleet drill")
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
