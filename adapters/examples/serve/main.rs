//! The lameduck demo server (DESIGN §6).
//!
//! ```text
//! serve [--listen ADDR]... [--unix PATH] [--grace SECS] [--new-conn-grace SECS]
//!       [--idle-timeout SECS] [--header-timeout SECS] [--lame-duck SECS]
//!       [--runtime smol|async-std] [--pid-file PATH]
//! ```
//!
//! Prints `listening on ADDR[,ADDR...] pid=PID` as its first stdout line,
//! lifecycle events on stderr, drains on SIGTERM/SIGINT (a second one closes
//! at once), and exits 0 after a clean drain, 1 when connections were forced
//! closed or start-up failed, 2 on bad arguments.

pub mod routes;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use async_signal::{Signal, Signals};
use futures_lite::{FutureExt, StreamExt};
use lameduck::core::Config;
#[cfg(feature = "async-std")]
use lameduck::runtime::AsyncStd;
use lameduck::runtime::{Runtime, Smol};
use lameduck::{Builder, Event};

const USAGE: &str = "\
usage: serve [--listen ADDR]... [--unix PATH] [--grace SECS] [--new-conn-grace SECS]
             [--idle-timeout SECS] [--header-timeout SECS] [--lame-duck SECS]
             [--runtime smol|async-std] [--pid-file PATH]

  --listen ADDR          TCP address to serve (repeatable; default 127.0.0.1:8080
                         unless --unix is given; port 0 picks a free port)
  --unix PATH            Unix stream socket to serve (created; removed at exit)
  --grace SECS           shutdown deadline, lame duck included (default 30)
  --new-conn-grace SECS  while draining, close connections silent this long (default 5)
  --idle-timeout SECS    close keep-alive connections idle this long (default: never)
  --header-timeout SECS  a request head must arrive within this (default: no limit)
  --lame-duck SECS       on shutdown, report draining this long before draining (default 0)
  --runtime NAME         smol (default) or async-std
  --pid-file PATH        write the pid there (atomically)

SECS may be decimal (0.25). SIGTERM or SIGINT drains; a second one closes at once.
Exit status: 0 after a clean drain, 1 if connections were forced closed or
start-up failed, 2 on bad arguments.";

#[derive(Debug)]
struct Args {
    listen: Vec<SocketAddr>,
    unix: Option<PathBuf>,
    grace: Duration,
    config: Config,
    pid_file: Option<PathBuf>,
    runtime: RuntimeName,
}

/// `--runtime`: which binding serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuntimeName {
    Smol,
    #[cfg(feature = "async-std")]
    AsyncStd,
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .parse()
        .map_err(|_| format!("{flag}: '{value}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{flag}: '{value}' must be a finite number of seconds, 0 or more"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: Vec::new(),
        unix: None,
        grace: Duration::from_secs(30),
        config: Config::default(),
        pid_file: None,
        runtime: RuntimeName::Smol,
    };
    // One flag (and its value) per pass; ends with the arguments.
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let known = [
            "--listen",
            "--unix",
            "--grace",
            "--new-conn-grace",
            "--idle-timeout",
            "--header-timeout",
            "--lame-duck",
            "--runtime",
            "--pid-file",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument '{flag}'"));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{flag} needs a value")),
        };
        match flag.as_str() {
            "--listen" => parsed.listen.push(value.parse().map_err(|_| {
                format!("--listen: '{value}' is not an address like 127.0.0.1:8080")
            })?),
            "--unix" => parsed.unix = Some(PathBuf::from(value)),
            "--grace" => parsed.grace = seconds(&flag, &value)?,
            "--new-conn-grace" => parsed.config.new_conn_grace = seconds(&flag, &value)?,
            "--idle-timeout" => parsed.config.idle_timeout = Some(seconds(&flag, &value)?),
            "--header-timeout" => parsed.config.header_timeout = Some(seconds(&flag, &value)?),
            "--lame-duck" => parsed.config.lame_duck = seconds(&flag, &value)?,
            "--runtime" => match value.as_str() {
                "smol" => parsed.runtime = RuntimeName::Smol,
                #[cfg(feature = "async-std")]
                "async-std" => parsed.runtime = RuntimeName::AsyncStd,
                #[cfg(not(feature = "async-std"))]
                "async-std" => {
                    return Err(
                        "--runtime async-std: this build lacks lameduck's async-std \
                         feature (build with --features async-std)"
                            .into(),
                    );
                }
                other => {
                    return Err(format!(
                        "--runtime: unknown runtime '{other}' (smol, async-std)"
                    ));
                }
            },
            "--pid-file" => parsed.pid_file = Some(PathBuf::from(value)),
            _ => unreachable!("every known flag is matched above"),
        }
    }
    if parsed.listen.is_empty() && parsed.unix.is_none() {
        parsed.listen.push(SocketAddr::from(([127, 0, 0, 1], 8080)));
    }
    Ok(parsed)
}

/// Writes the pid to `path` atomically: a temporary file beside it, renamed.
fn write_pid_file(path: &PathBuf) -> std::io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn log_event(event: &Event) {
    let worth_a_line = match event {
        Event::ConnClosed { reason, .. } => !matches!(
            reason,
            lameduck::CloseReason::Drain
                | lameduck::CloseReason::KeepAliveOff
                | lameduck::CloseReason::IdleTimeout
        ),
        _ => true,
    };
    if worth_a_line {
        eprintln!("serve: {event}");
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("serve: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.runtime {
        RuntimeName::Smol => smol::block_on(run(Smol::global(), args)),
        #[cfg(feature = "async-std")]
        RuntimeName::AsyncStd => async_std::task::block_on(run(AsyncStd, args)),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("serve: {message}");
            ExitCode::from(1)
        }
    }
}

/// Serves on `rt` until done; the same code for every runtime.
async fn run<R: Runtime>(rt: R, args: Args) -> Result<ExitCode, String> {
    // Registered first, so a signal sent right after the first line drains.
    let mut signals = Signals::new([Signal::Term, Signal::Int])
        .map_err(|e| format!("cannot handle signals: {e}"))?;

    // Upgraded (echo) connections say `bye` and close when shutdown begins;
    // the drain waits for them (bounded by --grace) so the goodbye is sent.
    let config = Config {
        wait_for_hijacked: true,
        ..args.config
    };
    let mut builder = Builder::with_runtime(rt.clone())
        .config(config)
        .on_event(log_event);
    for addr in &args.listen {
        builder = builder
            .bind(addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    if let Some(path) = &args.unix {
        builder = builder
            .bind_unix(path)
            .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
    }
    let server = builder.build().map_err(|e| format!("cannot start: {e}"))?;
    let handle = server.handle();
    let handle = server.serve_http(routes::router(rt, handle));

    if let Some(path) = &args.pid_file {
        write_pid_file(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let addrs: Vec<String> = handle
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "listening on {} pid={}",
        addrs.join(","),
        std::process::id()
    );
    let _ = stdout.flush();
    drop(stdout);

    let drained = handle.drained();
    let mut signalled = 0u32;
    // One signal per pass; ends when the server is done (the second signal
    // closes it, which completes it at once).
    enum Woke {
        Signal(Option<std::io::Result<Signal>>),
        Done(Result<lameduck::Outcome, lameduck::core::Abandoned>),
    }
    let outcome = loop {
        let woke = async { Woke::Signal(signals.next().await) }
            .or(async { Woke::Done(drained.wait().await) })
            .await;
        match woke {
            Woke::Done(outcome) => break outcome,
            Woke::Signal(Some(Ok(signal))) => {
                signalled += 1;
                let name = if signal == Signal::Term {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                if signalled == 1 {
                    eprintln!(
                        "serve: {name}: draining (deadline {:.3} s; again to close at once)",
                        args.grace.as_secs_f64()
                    );
                    handle.shutdown_within(args.grace);
                } else {
                    eprintln!("serve: {name} again: closing now");
                    handle.close();
                }
            }
            Woke::Signal(Some(Err(e))) => return Err(format!("signal handling failed: {e}")),
            Woke::Signal(None) => return Err("signal handling stopped".into()),
        }
    };
    match outcome {
        Ok(outcome) if outcome.is_graceful() => Ok(ExitCode::SUCCESS),
        Ok(_) => Ok(ExitCode::from(1)),
        Err(e) => Err(e.to_string()),
    }
}
