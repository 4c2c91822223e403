//! The lameduck demo server.
//!
//! ```text
//! serve [--listen ADDR]... [--unix PATH] [--grace SECS] [--new-conn-grace SECS]
//!       [--idle-timeout SECS] [--header-timeout SECS] [--lame-duck SECS]
//!       [--runtime smol|smol-local|compio|tokio|async-std] [--threads N] [--pid-file PATH] [--ready-timeout SECS]
//!       [--tls-cert PEM --tls-key PEM] [--supervise] [--udp ADDR] [--control PATH]
//! serve ctl --control PATH restart|status
//! ```
//!
//! Every listener serves HTTP/1.1 and, to a client with prior knowledge
//! (h2c: `curl --http2-prior-knowledge`, `h2load`), HTTP/2 — every route
//! but `/upgrade` the same over both. With `--tls-cert` and `--tls-key`
//! every TCP listener serves HTTPS instead (ALPN `h2` and `http/1.1`; built
//! with lameduck's `tls` feature); a restart's successor reads the files
//! again, so a SIGHUP puts a renewed certificate in service.
//!
//! Prints `listening on ADDR[,ADDR...] pid=PID` as its first stdout line,
//! lifecycle events on stderr, drains on SIGTERM/SIGINT (a second one closes
//! at once), restarts on SIGHUP (a successor takes the listening sockets;
//! this process drains and exits), closes at once on SIGUSR2, and exits 0
//! after a clean drain, 1 when connections were forced closed or start-up
//! failed, 2 on bad arguments.
//!
//! Started with inherited sockets (`LISTEN_FDS`: a systemd `.socket` unit,
//! or a restarting predecessor) it serves on those: `--listen` number *i*
//! and `--unix` are the inherited sockets named `listen-i` and `unix` when
//! there are such (a restart passes them under these names), and are bound
//! otherwise; inherited sockets of other names are served too. With
//! inherited sockets and no `--listen`/`--unix`, nothing else is bound.
//! Under systemd it sends `READY=1`, `RELOADING=1`, `MAINPID=`,
//! `STOPPING=1` (see `docs/systemd/`).
//!
//! **Supervisor mode** (`--supervise`; `lameduck::unix::Supervisor`): for
//! process managers that track the pid they started (supervisord, a
//! container whose PID 1 is the server, `docker stop`). This process binds
//! (or adopts) the sockets, serves nothing itself, and runs the server as
//! a child generation: this executable with the same arguments, minus
//! `--supervise` and `--pid-file`. Its pid never changes: the first stdout
//! line is `listening on ADDR[,ADDR...] pid=PID` with the **supervisor's**
//! pid, printed once generation 1 is ready, and `--pid-file` holds it too.
//! SIGHUP starts the next generation and, once it is ready, the previous
//! one hands off and drains (`/pid` and the `X-Pid` header name the
//! generation that served). SIGTERM/SIGINT/SIGUSR2 are forwarded to the
//! generations; the supervisor exits with the serving generation's status
//! once all have exited (SIGKILL to any still running `--grace` + 5 s
//! after the stop began). Generations print nothing on stdout; their
//! `generation listening on ... pid=PID` line and events go to stderr, the
//! supervisor's events as `serve: supervisor: ...`. It reaps every child,
//! orphans included when it is PID 1. Under systemd the supervisor is the
//! main process: `READY=1`, `RELOADING=1`/`READY=1`, `STOPPING=1`, no
//! `MAINPID=` (the generations say nothing).
//!
//! **Restart state and the control socket**: `GET /hits` answers the
//! requests served across restarts (each generation hands its count to
//! its successor as restart state, also in supervisor mode); `--udp ADDR`
//! answers datagrams with `pid=PID` on a socket that travels as restart
//! state; `--control PATH` serves a control socket (mode 0600; with
//! `--supervise` the supervisor's): `serve ctl --control PATH restart` prints `restarted
//! pid=PID` and exits 0, or `restart failed: <why>` and exits 1 (the old
//! process serves on); `serve ctl --control PATH status` prints one line
//! (phase, pid, generation, connection counts). See `docs/deploy.md`.
//!
//! **Stderr never holds up serving**: its lines (one `write` each, so the
//! lines of several processes sharing the stream stay whole) are written by
//! a thread of their own from a bounded queue. When stderr is not read
//! (a full pipe) and the queue fills, further lines are dropped and counted,
//! and `serve: N log lines dropped ...` follows once stderr takes lines
//! again; at exit the queued lines are written unless a write has been
//! blocked for 100 ms, so a stderr that never drains does not delay the
//! exit (see `stderr.rs`).
//! The library's own warnings (`log` target `lameduck` from its `unix`
//! layer, such as `LISTEN_*` variables meant for another process) are
//! printed there as `serve: warning: ...`.

pub mod routes;
mod stderr;

use std::io::Write as _;
use std::net::SocketAddr;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lameduck::Config;
#[cfg(feature = "async-std")]
use lameduck::runtime::AsyncStd;
#[cfg(feature = "tokio")]
use lameduck::runtime::Tokio;
use lameduck::runtime::{Runtime, SmolLocal};
use lameduck::unix::{
    ControlSocket, Inherited, Lifecycle, StateOffer, Supervisor, SupervisorEvent,
};
use lameduck::{Builder, Event};
use std::rc::Rc;

const USAGE: &str = "\
usage: serve [--listen ADDR]... [--unix PATH] [--grace SECS] [--new-conn-grace SECS]
             [--idle-timeout SECS] [--header-timeout SECS] [--lame-duck SECS]
             [--runtime smol|smol-local|compio|tokio|async-std] [--threads N] [--pid-file PATH] [--ready-timeout SECS]
             [--tls-cert PEM --tls-key PEM] [--supervise] [--udp ADDR] [--control PATH]
       serve ctl --control PATH restart|status

  --listen ADDR          TCP address to serve (repeatable; default 127.0.0.1:8080
                         unless --unix is given; port 0 picks a free port)
  --unix PATH            Unix stream socket to serve (created; removed at exit)
  --grace SECS           shut down within this: then what remains is closed, lame duck
                         included (default 30)
  --new-conn-grace SECS  while draining, close connections silent this long (default 5)
  --idle-timeout SECS    close keep-alive connections idle this long (default: never)
  --header-timeout SECS  a request head must arrive within this (default: no limit)
  --lame-duck SECS       on shutdown, report draining this long before draining (default 0)
  --runtime NAME         smol (default: a thread of its own), smol-local (the main
                         thread's LocalExecutor), compio (io_uring, or polling
                         where io_uring is unavailable), tokio, or async-std
  --threads N            executor threads serving the same listeners, drained as
                         one server (default 1; not with smol-local)
  --pid-file PATH        write the pid there (atomically; a restart writes the successor's)
  --ready-timeout SECS   a restart's successor must be ready within this (default 60)
  --tls-cert PEM         serve HTTPS on every TCP listener with this certificate chain
  --tls-key PEM          ... and this private key (both or neither; ALPN h2 and
                         http/1.1; each restart reads the files again)
  --supervise            supervisor mode: a stable pid across restarts (for supervisord,
                         containers, docker); this process holds the sockets and runs
                         the server as child generations (see below)
  --udp ADDR             also answer UDP datagrams on ADDR with 'pid=PID' (the socket
                         is handed to each successor as restart state)
  --control PATH         serve a control socket there (mode 0600; it goes to each
                         successor): 'serve ctl --control PATH restart' restarts and
                         prints 'restarted pid=PID' (exit 0) or why it failed (exit 1,
                         the old process serves on); '... status' prints one line:
                         phase, pid, generation, connection counts

SECS may be decimal (0.25). --idle-timeout, --header-timeout and --ready-timeout
must be more than 0; --grace 0 closes at once, --new-conn-grace 0 closes silent new
connections as the drain begins, --lame-duck 0 skips the lame-duck phase. SIGTERM or SIGINT drains; a second one closes at once.
SIGHUP restarts without dropping a connection; SIGUSR2 closes at once.
Inherited sockets (LISTEN_FDS, as systemd passes them) are served.

Routes (HTTP/1.1, HTTP/2 with prior knowledge, and over TLS with --tls-cert):
  GET /                      hello
  GET /sleep?ms=N            'slept N' after N ms
  GET /stream?chunks=N&ms=M  N chunks, M ms apart
  GET /events?ms=M           server-sent events every M ms; at the drain one
                             'event: drain' and a clean end of the body
  GET /pid                   this process's pid
  GET /hits                  requests served so far (kept across restarts)
  GET /healthz               'ok', or 503 'draining' from the lame-duck phase on
  POST /echo                 the request body back (up to a limit)
  GET /upgrade               an echo protocol after 101; told 'bye' at shutdown
A bad parameter is a 400.

Exit status: 0 after a clean drain, 1 if connections were forced closed or
start-up failed, 2 on bad arguments.

With --supervise the pid printed (and in --pid-file) is the supervisor's and never
changes; SIGHUP starts a new generation and the previous one drains; SIGTERM, SIGINT
and SIGUSR2 are forwarded to the generations, and the supervisor exits with the
serving generation's status (generations still running --grace + 5 s after the stop
began are killed). Under systemd prefer direct restarts (MAINPID follows them).";

#[derive(Debug)]
struct Args {
    listen: Vec<SocketAddr>,
    unix: Option<PathBuf>,
    /// `--grace` (`LifecycleBuilder::shutdown_within`).
    shutdown_within: Duration,
    config: Config,
    pid_file: Option<PathBuf>,
    runtime: RuntimeName,
    ready_timeout: Duration,
    supervise: bool,
    /// `--threads N`: executor threads serving the same listeners.
    threads: usize,
    udp: Option<SocketAddr>,
    control: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`: HTTPS on every TCP listener.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls: Option<(PathBuf, PathBuf)>,
}

/// `--runtime`: which binding serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuntimeName {
    /// smol on a thread of the server's own (`Builder::new`).
    Smol,
    /// smol's `LocalExecutor` on the main thread, with the lifecycle.
    SmolLocal,
    #[cfg(feature = "tokio")]
    Tokio,
    #[cfg(feature = "compio")]
    Compio,
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

/// [`seconds`], more than zero: for the timeouts where zero would not mean
/// "none" but "already expired" (`why` says what it would do).
fn positive_seconds(flag: &str, value: &str, why: &str) -> Result<Duration, String> {
    let secs = seconds(flag, value)?;
    if secs.is_zero() {
        return Err(format!("{flag}: must be more than 0 ({why})"));
    }
    Ok(secs)
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: Vec::new(),
        unix: None,
        shutdown_within: Duration::from_secs(30),
        config: Config::default(),
        pid_file: None,
        runtime: RuntimeName::Smol,
        ready_timeout: Duration::from_secs(60),
        supervise: false,
        udp: None,
        control: None,
        threads: 1,
        tls: None,
    };
    let (mut tls_cert, mut tls_key) = (None, None);
    // One flag (and its value) per pass; ends with the arguments.
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        if flag == "--supervise" {
            parsed.supervise = true;
            continue;
        }
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let known = [
            "--threads",
            "--listen",
            "--unix",
            "--grace",
            "--new-conn-grace",
            "--idle-timeout",
            "--header-timeout",
            "--lame-duck",
            "--runtime",
            "--pid-file",
            "--ready-timeout",
            "--udp",
            "--control",
            "--tls-cert",
            "--tls-key",
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
            "--grace" => parsed.shutdown_within = seconds(&flag, &value)?,
            "--new-conn-grace" => parsed.config.new_conn_grace = seconds(&flag, &value)?,
            "--idle-timeout" => {
                parsed.config.idle_timeout = Some(positive_seconds(
                    &flag,
                    &value,
                    "0 would close every connection after its first response; \
                     leave the flag out for no idle timeout",
                )?);
            }
            "--header-timeout" => {
                parsed.config.header_timeout = Some(positive_seconds(
                    &flag,
                    &value,
                    "0 would close every connection before its first request; \
                     leave the flag out for no limit",
                )?);
            }
            "--lame-duck" => parsed.config.lame_duck = seconds(&flag, &value)?,
            "--runtime" => match value.as_str() {
                "smol" => parsed.runtime = RuntimeName::Smol,
                "smol-local" => parsed.runtime = RuntimeName::SmolLocal,
                #[cfg(feature = "tokio")]
                "tokio" => parsed.runtime = RuntimeName::Tokio,
                #[cfg(feature = "async-std")]
                "async-std" => parsed.runtime = RuntimeName::AsyncStd,
                #[cfg(not(feature = "tokio"))]
                "tokio" => return Err(missing_feature("tokio")),
                #[cfg(not(feature = "async-std"))]
                "async-std" => return Err(missing_feature("async-std")),
                #[cfg(feature = "compio")]
                "compio" => parsed.runtime = RuntimeName::Compio,
                #[cfg(not(feature = "compio"))]
                "compio" => return Err(missing_feature("compio")),
                other => {
                    return Err(format!(
                        "--runtime: unknown runtime '{other}' (smol, smol-local, compio, tokio, async-std)"
                    ));
                }
            },
            "--pid-file" => parsed.pid_file = Some(PathBuf::from(value)),
            "--control" => parsed.control = Some(PathBuf::from(value)),
            "--tls-cert" => tls_cert = Some(PathBuf::from(value)),
            "--tls-key" => tls_key = Some(PathBuf::from(value)),
            "--udp" => {
                parsed.udp = Some(value.parse().map_err(|_| {
                    format!("--udp: '{value}' is not an address like 127.0.0.1:8125")
                })?);
            }
            "--threads" => {
                parsed.threads = match value.parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "--threads: '{value}' is not a number of threads from 1 to 1024"
                        ));
                    }
                };
            }
            "--ready-timeout" => {
                parsed.ready_timeout = positive_seconds(
                    &flag,
                    &value,
                    "0 would fail every restart: no successor is ready at once",
                )?;
            }
            _ => unreachable!("every known flag is matched above"),
        }
    }
    if parsed.threads > 1 && parsed.runtime == RuntimeName::SmolLocal {
        return Err("--threads: smol-local serves on the main thread only; \
                    use --runtime smol for several threads"
            .into());
    }
    parsed.tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) if cfg!(feature = "tls") => Some((cert, key)),
        (Some(_), Some(_)) => {
            return Err("--tls-cert: this build lacks lameduck's tls feature \
                        (build with --features tls)"
                .into());
        }
        (None, None) => None,
        (Some(_), None) => return Err("--tls-cert needs --tls-key (the private key)".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert (the certificate)".into()),
    };
    // The default address is applied in `run`: not when sockets are inherited.
    Ok(parsed)
}

/// One line on stderr, `serve: ` first, in a single write: processes of
/// several generations share the stream, and a pipe keeps writes of up to
/// `PIPE_BUF` bytes whole. Queued, never blocking (`stderr.rs`).
fn say(line: std::fmt::Arguments<'_>) {
    stderr::line(format!("serve: {line}"));
}

/// The library's own warnings and errors on stderr: `log` records of
/// target `lameduck` from its `unix` layer (inherited variables ignored, a
/// bad generation number). Events — the server's, the lifecycle's, the
/// supervisor's — are printed by [`print_event`], their one observer,
/// instead (they are logged too, from `lameduck::event`: not printed
/// twice).
struct LibraryWarnings;

impl log::Log for LibraryWarnings {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "lameduck" && metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        let from_unix = record
            .module_path()
            .is_some_and(|m| m.starts_with("lameduck::unix"));
        if self.enabled(record.metadata()) && from_unix {
            let level = if record.level() == log::Level::Error {
                "error"
            } else {
                "warning"
            };
            say(format_args!("{level}: {}", record.args()));
        }
    }

    fn flush(&self) {}
}

/// The one observer of every event: the server's, the lifecycle's and the
/// supervisor's (`supervisor: ` first), one line each on stderr; closes
/// that are routine are left out.
fn print_event(event: &Event) {
    match event {
        Event::ConnClosed {
            reason:
                lameduck::CloseReason::Drain
                | lameduck::CloseReason::KeepAliveOff
                | lameduck::CloseReason::IdleTimeout,
            ..
        } => {}
        _ => say(format_args!("{event}")),
    }
}

fn main() -> ExitCode {
    let code = serve();
    // The last lines (`done: ...`), within a bound: stderr may never drain.
    stderr::flush();
    code
}

fn serve() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().is_some_and(|a| a == "ctl") {
        return ctl(&raw[1..]);
    }
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
    // Before adopting the inherited sockets, which may warn. (`set_logger`
    // starts no thread; the writer thread starts with the first line.)
    if log::set_logger(&LibraryWarnings).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    // First, while this is the only thread: adopt inherited sockets (and
    // remove the variables from the environment).
    let handed_vars = lameduck::unix::handoff::VARS
        .into_iter()
        .any(|k| std::env::var_os(k).is_some());
    let inherited = match Inherited::from_env() {
        Ok(inherited) => inherited,
        Err(e) => {
            say(format_args!("cannot use the inherited sockets: {e}"));
            return ExitCode::from(1);
        }
    };
    // Also when the variables were ignored (for another process).
    if handed_vars {
        let left: Vec<&str> = lameduck::unix::handoff::VARS
            .into_iter()
            .filter(|k| std::env::var_os(k).is_some())
            .collect();
        let names = inherited.names();
        say(format_args!(
            "inherited {} socket(s){}{}; {}",
            inherited.len(),
            if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            },
            if inherited.is_supervised() {
                ", from the supervisor"
            } else if inherited.is_successor() {
                ", from a restarting predecessor"
            } else {
                ""
            },
            if left.is_empty() {
                "LISTEN_* variables removed".to_owned()
            } else {
                format!("still set: {}", left.join(" "))
            }
        ));
    }
    if args.supervise {
        return supervise(args, inherited);
    }
    let result = match args.runtime {
        // The server runs on a thread of its runtime; this thread runs the
        // lifecycle (signals, restarts), which needs no runtime of its own.
        RuntimeName::Smol => smol::block_on(run(Builder::new(), args, inherited)),
        RuntimeName::SmolLocal => {
            let executor = Rc::new(smol::LocalExecutor::new());
            let builder = Builder::with_runtime(SmolLocal::new(executor.clone()));
            smol::block_on(executor.run(run(builder, args, inherited)))
        }
        #[cfg(feature = "tokio")]
        RuntimeName::Tokio => smol::block_on(run(Builder::with_launcher(Tokio), args, inherited)),
        #[cfg(feature = "compio")]
        RuntimeName::Compio => smol::block_on(run(
            Builder::with_launcher(lameduck::runtime::Compio::new()),
            args,
            inherited,
        )),
        #[cfg(feature = "async-std")]
        RuntimeName::AsyncStd => {
            smol::block_on(run(Builder::with_launcher(AsyncStd), args, inherited))
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            say(format_args!("{message}"));
            ExitCode::from(1)
        }
    }
}

/// The generations' arguments: this process's, without `--supervise`,
/// `--pid-file` and `--control` (the pid file and the control socket are
/// the supervisor's).
fn generation_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    // One argument (and a flag's value) per pass; ends with the arguments.
    while let Some(arg) = args.next() {
        if arg == "--supervise" || arg.starts_with("--pid-file=") || arg.starts_with("--control=") {
            continue;
        }
        if arg == "--pid-file" || arg == "--control" {
            let _ = args.next();
            continue;
        }
        out.push(arg);
    }
    out
}

/// Supervisor mode: binds (or adopts) the sockets, runs the generations,
/// and exits with the serving one's status.
fn supervise(mut args: Args, mut inherited: Inherited) -> ExitCode {
    if args.listen.is_empty() && args.unix.is_none() && inherited.is_empty() {
        args.listen.push(SocketAddr::from(([127, 0, 0, 1], 8080)));
    }
    let mut supervisor = Supervisor::new();
    // Named as `run` names them, so each generation finds its sockets.
    for (i, addr) in args.listen.iter().enumerate() {
        supervisor = match supervisor.inherit_or_bind(&mut inherited, &format!("listen-{i}"), addr)
        {
            Ok(s) => s,
            Err(e) => {
                say(format_args!("cannot listen on {addr}: {e}"));
                return ExitCode::from(1);
            }
        };
    }
    if let Some(path) = &args.unix {
        supervisor = match supervisor.inherit_or_bind_unix(&mut inherited, "unix", path) {
            Ok(s) => s,
            Err(e) => {
                say(format_args!(
                    "cannot listen on unix:{}: {e}",
                    path.display()
                ));
                return ExitCode::from(1);
            }
        };
    }
    if let Some(path) = &args.control {
        match ControlSocket::inherit_or_bind(&mut inherited, path) {
            Ok(control) => supervisor = supervisor.control(control),
            Err(e) => {
                say(format_args!(
                    "cannot serve the control socket {}: {e}",
                    path.display()
                ));
                return ExitCode::from(1);
            }
        }
    } else {
        drop(ControlSocket::take_inherited(&mut inherited));
    }
    supervisor = supervisor.inherit_rest(&mut inherited);
    let addrs: Vec<String> = supervisor
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let addrs = addrs.join(",");
    supervisor = supervisor
        .args(generation_args())
        .ready_timeout(args.ready_timeout)
        .stop_timeout(args.shutdown_within.saturating_add(Duration::from_secs(5)))
        .on_event(move |event| {
            print_event(event);
            if let Event::Supervisor(SupervisorEvent::Ready { pid, .. }) = event {
                // The first line: the supervisor's pid, the stable one.
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "listening on {addrs} pid={pid}");
                let _ = stdout.flush();
            }
        });
    if let Some(path) = &args.pid_file {
        supervisor = supervisor.pid_file(path);
    }
    match supervisor.run() {
        Ok(status) => {
            let code = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => code,
                (None, Some(signal)) => 128 + signal,
                (None, None) => 1,
            };
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(e) => {
            say(format_args!("supervisor: {e}"));
            ExitCode::from(1)
        }
    }
}

/// `serve ctl --control PATH restart|status`: a deploy script's client.
fn ctl(args: &[String]) -> ExitCode {
    let mut path = None;
    let mut command = None;
    let mut args = args.iter();
    // One argument (and a flag's value) per pass; ends with the arguments.
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--control" => path = args.next().map(PathBuf::from),
            a if a.starts_with("--control=") => path = Some(PathBuf::from(&a[10..])),
            "restart" | "status" if command.is_none() => command = Some(arg.clone()),
            other => {
                eprintln!("serve ctl: unexpected argument '{other}'\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(path), Some(command)) = (path, command) else {
        eprintln!("serve ctl: needs --control PATH and restart or status\n{USAGE}");
        return ExitCode::from(2);
    };
    if command == "status" {
        return match lameduck::unix::control_status(&path, Duration::from_secs(10)) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("serve ctl: status: {e}");
                ExitCode::from(1)
            }
        };
    }
    // Longer than any readiness deadline a deploy would set.
    match lameduck::unix::control_restart(&path, Duration::from_secs(600)) {
        Ok(done) => {
            println!("restarted pid={}", done.pid);
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("restart failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// The restart state's format: `hits` (a number), and `udp` (a UDP
/// socket, with `--udp`).
const STATE_VERSION: u32 = 1;

/// Takes the predecessor's restart state, if any: its hit count goes on
/// in this process, and its UDP socket (or a new one on `udp`) is
/// returned. `LAMEDUCK_DEMO_FAULT` (for tests) makes a successor fail:
/// `refuse-state` (it knows only version 2), `exit-after-state` (exit 3
/// once it took it), `hang-after-state` (never ready).
fn take_restart_state(
    inherited: &mut Inherited,
    udp: Option<SocketAddr>,
) -> Result<Option<Arc<UdpSocket>>, String> {
    let fault = std::env::var("LAMEDUCK_DEMO_FAULT").unwrap_or_default();
    let known = if fault == "refuse-state" {
        STATE_VERSION + 1..=STATE_VERSION + 1
    } else {
        STATE_VERSION..=STATE_VERSION
    };
    let mut passed = None;
    match inherited.take_state(known) {
        Ok(Some(mut state)) => {
            let hits = state.u64("hits").unwrap_or(0);
            routes::HITS.store(hits, Ordering::Relaxed);
            passed = state.take_fd("udp").map(UdpSocket::from);
            say(format_args!(
                "took the restart state: hits={hits}{}",
                if passed.is_some() {
                    ", a UDP socket"
                } else {
                    ""
                }
            ));
        }
        Ok(None) => {}
        Err(e) => return Err(format!("cannot take the restart state: {e}")),
    }
    match fault.as_str() {
        "exit-after-state" => {
            say(format_args!(
                "LAMEDUCK_DEMO_FAULT: exiting after taking the state"
            ));
            stderr::flush();
            std::process::exit(3);
        }
        "hang-after-state" => {
            say(format_args!(
                "LAMEDUCK_DEMO_FAULT: hanging after taking the state"
            ));
            // Never ready: the predecessor's deadline kills this process.
            loop {
                std::thread::park();
            }
        }
        _ => {}
    }
    let socket = match (passed, udp) {
        (Some(socket), _) => socket,
        (None, Some(addr)) => {
            UdpSocket::bind(addr).map_err(|e| format!("cannot bind udp:{addr}: {e}"))?
        }
        (None, None) => return Ok(None),
    };
    if let Ok(addr) = socket.local_addr() {
        say(format_args!("udp on {addr}"));
    }
    Ok(Some(Arc::new(socket)))
}

/// Answers each datagram on `udp` with `pid=PID`, until the server stops
/// serving (a hand-off: the successor answers from then on, on the same
/// socket).
fn answer_udp(udp: Arc<UdpSocket>, handle: lameduck::Handle) {
    let _ = udp.set_read_timeout(Some(Duration::from_millis(20)));
    std::thread::spawn(move || {
        let reply = format!("pid={}", std::process::id());
        let mut buf = [0u8; 512];
        // One datagram (or a 20 ms timeout) per pass; ends with serving.
        while !handle.phase().is_shutting_down() {
            if let Ok((_, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(reply.as_bytes(), from);
            }
        }
    });
}

/// Serves with `builder` until done; the same code for every runtime.
async fn run<R: Runtime>(
    builder: Builder<R>,
    mut args: Args,
    mut inherited: Inherited,
) -> Result<ExitCode, String> {
    if args.listen.is_empty() && args.unix.is_none() && inherited.is_empty() {
        args.listen.push(SocketAddr::from(([127, 0, 0, 1], 8080)));
    }
    let udp = take_restart_state(&mut inherited, args.udp)?;
    // Before the listeners: the control socket travels among them.
    let control = match &args.control {
        Some(path) => Some(
            ControlSocket::inherit_or_bind(&mut inherited, path)
                .map_err(|e| format!("cannot serve the control socket {}: {e}", path.display()))?,
        ),
        None => {
            drop(ControlSocket::take_inherited(&mut inherited));
            None
        }
    };
    // Upgraded (echo) connections say `bye` and close when shutdown begins;
    // the drain waits for them (bounded by --grace) so the goodbye is sent.
    let config = Config {
        wait_for_hijacked: true,
        ..args.config
    };
    let mut builder = builder
        .threads(args.threads)
        .config(config)
        .on_event(print_event);
    #[cfg(feature = "tls")]
    if let Some((cert, key)) = &args.tls {
        let acceptor = lameduck::tls::TlsAcceptor::from_pem_files(cert, key)
            .map_err(|e| format!("cannot serve HTTPS: {e}"))?;
        builder = builder.tls(acceptor);
    }
    // Named, so that a restart's successor finds each under its flag.
    for (i, addr) in args.listen.iter().enumerate() {
        builder = builder
            .inherit_or_bind(&mut inherited, &format!("listen-{i}"), addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    if let Some(path) = &args.unix {
        builder = builder
            .inherit_or_bind_unix(&mut inherited, "unix", path)
            .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
    }
    builder = builder.inherit_rest(&mut inherited);
    let server = builder.build().map_err(|e| format!("cannot start: {e}"))?;
    let handle = server.handle();
    let handle = server.serve_http_with(move |rt| routes::router(rt, handle.clone()));

    let supervised = inherited.is_supervised();
    let mut lifecycle = Lifecycle::builder(handle.clone())
        .shutdown_within(args.shutdown_within)
        .ready_timeout(args.ready_timeout)
        .inherited(inherited)
        .on_event(print_event);
    if let Some(path) = &args.pid_file {
        lifecycle = lifecycle.pid_file(path);
    }
    if let Some(control) = control {
        lifecycle = lifecycle.control(control);
    }
    let offered_udp = udp.clone();
    lifecycle = lifecycle.restart_state(move || {
        let mut offer = StateOffer::new(STATE_VERSION);
        offer.u64("hits", routes::HITS.load(Ordering::Relaxed))?;
        if let Some(udp) = &offered_udp {
            offer.fd("udp", udp.as_fd())?;
        }
        Ok(offer)
    });
    let lifecycle = lifecycle.build();
    if let Some(udp) = udp {
        answer_udp(udp, handle.clone());
    }
    // Before the first line, so a signal sent right after it is handled,
    // and the pid file is there for whoever reads the line.
    lifecycle
        .handle_signals()
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    lifecycle.ready().await;
    let addrs: Vec<String> = handle
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    if supervised {
        // The first stdout line is the supervisor's (its stable pid).
        say(format_args!(
            "generation listening on {} pid={}",
            addrs.join(","),
            std::process::id()
        ));
    } else {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "listening on {} pid={}",
            addrs.join(","),
            std::process::id()
        );
        let _ = stdout.flush();
    }

    let ended = lifecycle
        .run()
        .await
        .map_err(|e| format!("signal handling failed: {e}"))?;
    Ok(if ended.outcome.is_graceful() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The message for a runtime this build has no feature for.
#[allow(dead_code)] // Used only in builds without some runtime feature.
fn missing_feature(name: &str) -> String {
    format!(
        "--runtime {name}: this build lacks lameduck's {name} feature (build with --features {name})"
    )
}
