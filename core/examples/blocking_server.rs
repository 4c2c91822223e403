//! A graceful-shutdown HTTP/1.1 server with no async runtime at all: plain
//! `std::net`, one blocking thread per connection, and `lameduck-core`
//! deciding every lifecycle question. It is the proof that the core is
//! runtime-free, and a template for adapter authors.
//!
//! # The calls a driver makes, in order
//!
//! One [`Server`] lives in a `Mutex`; every thread that observes an event
//! locks it, reports the event with the current time, then drains
//! [`Server::poll_action`] and carries each [`Action`] out (see `input`):
//!
//! 1. `add_listener` once per listening socket, before serving.
//! 2. `accept(listener, now)` for each accepted socket; an `Err` means the
//!    core has closed that listener (drop the socket and stop accepting).
//! 3. Per request: `request_started` when its first byte is read (`Err`: the
//!    core already closed the connection, e.g. an idle one during a drain, so
//!    close it unanswered), `headers_complete` when the head is parsed,
//!    [`Server::keep_alive`] when writing the response head (`false` means
//!    `Connection: close`), `response_done` once the response is fully
//!    written; `closed` when the peer goes away or the handler gives up.
//! 4. `shutdown(now, deadline)` (here: a line `shutdown` or EOF on stdin) or
//!    `close(now)` (a line `close`).
//! 5. Time: after every input, [`Server::poll_timeout`] may have changed.
//!    A single timer thread waits on a `Condvar` until that instant, then
//!    calls `handle_timeout(Instant::now())` and drains the actions.
//!
//! Actions: `CloseConn` shuts the socket down (a `try_clone` of every
//! connection is kept for this; `shutdown(Both)` wakes its thread blocked in
//! `read`); `CloseListener` wakes the thread blocked in `accept()` by
//! connecting to the listener once (std cannot shut a listener down, and a
//! polled non-blocking listener would add latency or spin); the core then
//! refuses that accept and the loop drops the listener. `FinishAndClose`
//! needs nothing here: the handler asks `keep_alive()` when writing its
//! response. `Done` carries the outcome to `main`, which prints it and exits:
//! 0 after a graceful drain, 1 if connections were forced or cut off.
//!
//! Why stdin and not `SIGTERM`: std has no signal API, and this example uses
//! std only. EOF also fires when the parent process goes away.
//!
//! ```text
//! cargo run -p lameduck-core --example blocking_server -- --grace 5 --deadline 30
//! ```
//! Flags: `--listen ADDR` (default `127.0.0.1:0`), `--grace SECS` (how long a
//! connection that has sent nothing may stay once draining), `--deadline
//! SECS` (after which what remains is closed by force). Routes: `GET /` and
//! `GET /sleep?ms=N`.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use lameduck_core::{Action, Config, ConnId, ListenerId, Outcome, Server};

/// `println!` and `eprintln!` that shrug off a closed pipe instead of panicking.
macro_rules! log {
    ($($arg:tt)*) => {{ let _ = writeln!(io::stdout(), $($arg)*); }};
}
macro_rules! elog {
    ($($arg:tt)*) => {{ let _ = writeln!(io::stderr(), $($arg)*); }};
}

/// The largest request head accepted; longer heads get a 400.
const MAX_HEAD: usize = 8 * 1024;
/// The longest `/sleep` accepted, in milliseconds.
const MAX_SLEEP_MS: u64 = 60_000;

/// The adapter is the clock reader the core never is: every `now` passed to
/// the core comes from here.
#[allow(clippy::disallowed_methods)] // this is the adapter, not the core
fn now() -> Instant {
    Instant::now()
}

/// Blocks the calling thread: `/sleep` and the accept-error back-off.
#[allow(clippy::disallowed_methods)] // this is the adapter, not the core
fn pause(duration: Duration) {
    thread::sleep(duration);
}

/// Everything behind the one lock.
struct State {
    server: Server,
    /// A clone of every open connection's socket, to carry out `CloseConn`.
    sockets: HashMap<ConnId, TcpStream>,
    /// Where to connect to wake the thread blocked in `accept()`.
    wake_addr: SocketAddr,
    /// Set by `Action::Done`.
    outcome: Option<Outcome>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the next deadline changes or the server is done: the
    /// timer thread and `main` wait on it.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoned only if a thread panicked while holding the lock, which
        // is a bug (the core reports caller mistakes as errors): propagate.
        self.state
            .lock()
            .expect("no thread panics while holding the lock")
    }

    /// Reports one input to the core, then follows the run-loop contract:
    /// drain and carry out the actions, and wake the timer thread if the
    /// deadline moved.
    fn input<T>(&self, report: impl FnOnce(&mut State, Instant) -> T) -> T {
        let mut state = self.lock();
        let before = state.server.poll_timeout();
        let now = now();
        let result = report(&mut state, now);
        state.carry_out_actions(now);
        if state.server.poll_timeout() != before || state.outcome.is_some() {
            self.changed.notify_all();
        }
        result
    }
}

impl State {
    fn carry_out_actions(&mut self, now: Instant) {
        while let Some(action) = self.server.poll_action() {
            match action {
                Action::CloseConn { conn, reason } => {
                    log!("{conn} closed by the core: {reason:?}");
                    if let Some(socket) = self.sockets.remove(&conn) {
                        // Wakes the connection's thread (read returns 0). An
                        // error means the socket is already gone: fine.
                        let _ = socket.shutdown(Shutdown::Both);
                    }
                }
                // This server never hands off, so it never releases a
                // listener; either way, its accept thread must stop.
                Action::CloseListener(listener) | Action::ReleaseListener(listener) => {
                    log!("{listener} closing");
                    // Off the lock: a connect may block if the backlog is full.
                    let addr = self.wake_addr;
                    thread::spawn(move || {
                        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    });
                }
                // The handler asks `keep_alive()` when it writes its head.
                Action::FinishAndClose(_) => {}
                Action::PhaseChanged(phase) => log!("phase: {phase:?}"),
                // No hooks here: report them finished at once.
                Action::RunHooks(stage) => self.server.hooks_finished(stage, now),
                // Hooks finish at once, so there is never one to cut off.
                Action::CutOffHooks(_) => {}
                // Nothing is hijacked by this server.
                Action::NotifyHijacked(_) => {}
                // Its responses are short: nothing to end early.
                Action::NotifyActive(_) => {}
                // No `max_connections` is configured here, so accepting is
                // never paused.
                Action::PauseAccepting | Action::ResumeAccepting => {}
                Action::Done(outcome) => self.outcome = Some(outcome),
            }
        }
    }
}

/// The single timer: waits until the core's next deadline, then reports it.
fn drive_timers(shared: &Shared) {
    let mut state = shared.lock();
    while state.outcome.is_none() {
        let now = now();
        state = match state.server.poll_timeout() {
            Some(at) if at <= now => {
                state.server.handle_timeout(now);
                state.carry_out_actions(now);
                shared.changed.notify_all();
                state
            }
            // Woken early by `input` when the deadline moves; a spurious
            // wake-up just loops (an early `handle_timeout` is harmless too).
            Some(at) => {
                shared
                    .changed
                    .wait_timeout(state, at - now)
                    .expect("not poisoned: see `Shared::lock`")
                    .0
            }
            None => shared
                .changed
                .wait(state)
                .expect("not poisoned: see `Shared::lock`"),
        };
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener, id: ListenerId) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // E.g. out of file descriptors: back off rather than spin.
                elog!("accept: {e}");
                pause(Duration::from_millis(10));
                continue;
            }
        };
        let accepted = shared.input(|state, now| {
            let conn = state.server.accept(id, now)?;
            match stream.try_clone() {
                Ok(clone) => {
                    state.sockets.insert(conn, clone);
                    Ok(Some(conn))
                }
                Err(_) => state.server.closed(conn, now).map(|()| None),
            }
        });
        match accepted {
            Ok(Some(conn)) => {
                log!("{conn} accepted");
                let for_thread = Arc::clone(shared);
                let spawned =
                    thread::Builder::new().spawn(move || serve_conn(&for_thread, conn, stream));
                if let Err(e) = spawned {
                    // The socket went down with the closure: tell the core.
                    elog!("{conn}: cannot spawn its thread: {e}");
                    report_closed(shared, conn);
                }
            }
            Ok(None) => {}
            Err(refused) => {
                // The core closed the listener (CloseListener) and refuses
                // further accepts: drop this socket and the listener.
                log!("accept refused: {refused}");
                break;
            }
        }
    }
    drop(listener);
    log!("listener closed");
}

/// The connection is gone (peer left, error, or we are done with it):
/// forget its socket clone and tell the core. Harmless if the core closed it.
fn report_closed(shared: &Shared, conn: ConnId) {
    let result = shared.input(|state, now| {
        state.sockets.remove(&conn);
        state.server.closed(conn, now)
    });
    if let Err(e) = result {
        elog!("{conn}: {e}"); // only for an id the core never issued
    }
}

/// One connection's thread: serve requests until either side closes.
fn serve_conn(shared: &Shared, conn: ConnId, mut stream: TcpStream) {
    if let Err(e) = serve_requests(shared, conn, &mut stream) {
        log!("{conn}: {e}");
    }
    report_closed(shared, conn);
}

fn serve_requests(shared: &Shared, conn: ConnId, stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = Vec::new(); // bytes read and not consumed yet
    loop {
        // A New or Idle connection blocks here; `CloseConn` wakes it (EOF).
        if buf.is_empty() && read_some(stream, &mut buf)? == 0 {
            return Ok(());
        }
        // First byte of a request. Refused if the core has closed this
        // connection (an Idle one racing a drain): close unanswered, as Go.
        let started = shared.input(|s, now| s.server.request_started(conn, now));
        if started.is_err() {
            return Ok(());
        }
        let head_len = loop {
            let searched = &buf[..buf.len().min(MAX_HEAD)];
            if let Some(at) = searched.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() >= MAX_HEAD {
                return write_response(stream, 400, "request head too large\n", false);
            }
            if read_some(stream, &mut buf)? == 0 {
                return Ok(()); // the peer left mid-head
            }
        };
        let request = match parse_head(&buf[..head_len]) {
            Ok(request) => request,
            Err(why) => return write_response(stream, 400, &format!("{why}\n"), false),
        };
        buf.drain(..head_len);
        let parsed = shared.input(|s, now| s.server.headers_complete(conn, now));
        if parsed.is_err() {
            return Ok(()); // closed by force meanwhile (deadline or `close`)
        }
        log!("{conn} {} {}", request.method, request.target);

        // Discard the body: first what is buffered, then the rest.
        let buffered = request.content_length.min(buf.len());
        buf.drain(..buffered);
        let rest = (request.content_length - buffered) as u64;
        if io::copy(&mut Read::by_ref(stream).take(rest), &mut io::sink())? < rest {
            return Ok(()); // the peer left mid-body
        }

        let (status, body) = route(&request);
        // Decide keep-alive as the head is written. A shutdown right after
        // this check is still safe: `response_done` then closes the conn.
        let keep_alive = request.keep_alive && shared.lock().server.keep_alive();
        write_response(stream, status, &body, keep_alive)?;
        // Idle again, or closed by the core (`CloseConn` with KeepAliveOff).
        let done = shared.input(|s, now| s.server.response_done(conn, now));
        if done.is_err() || !keep_alive {
            return Ok(());
        }
        log!("{conn} idle");
    }
}

/// Reads what is available (at least one byte, or 0 at EOF) into `buf`.
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0; 4096];
    let n = loop {
        match stream.read(&mut chunk) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A reset by the peer: the connection is over, like an EOF.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break 0,
            other => break other?,
        }
    };
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

struct Request {
    method: String,
    target: String,
    keep_alive: bool,
    content_length: usize,
}

/// Parses a request head (up to and including the blank line).
fn parse_head(head: &[u8]) -> Result<Request, &'static str> {
    let head = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default(); // split yields >= 1 item
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method.is_empty() || !target.starts_with('/') {
        return Err("malformed request line");
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version"),
    };
    let (mut close, mut keep_alive, mut content_length) = (false, false, None);
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or("malformed header")?;
        if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
            return Err("malformed header name");
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let digits = value.bytes().all(|b| b.is_ascii_digit()); // no `+`
            let n = value.parse().ok().filter(|_| digits);
            let n = n.ok_or("bad Content-Length")?;
            if content_length.replace(n).is_some_and(|old| old != n) {
                return Err("conflicting Content-Length");
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("Transfer-Encoding is not supported");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        keep_alive: !close && (http11 || keep_alive),
        content_length: content_length.unwrap_or(0),
    })
}

/// The application: `GET /` and `GET /sleep?ms=N`.
fn route(request: &Request) -> (u16, String) {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    match (request.method.as_str(), path) {
        ("GET", "/") => (200, "hello\n".to_owned()),
        ("GET", "/sleep") => {
            let ms = query.split('&').find_map(|pair| pair.strip_prefix("ms="));
            match ms.and_then(|ms| ms.parse::<u64>().ok()) {
                Some(ms) if ms <= MAX_SLEEP_MS => {
                    pause(Duration::from_millis(ms));
                    (200, format!("slept {ms}\n"))
                }
                _ => (400, format!("want ms=0..={MAX_SLEEP_MS}\n")),
            }
        }
        _ => (404, "not found\n".to_owned()),
    }
}

fn write_response(
    stream: &mut TcpStream,
    status: u16,
    body: &str,
    keep_alive: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let connection = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let len = body.len();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n{connection}\r\n{body}"
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Commands on stdin: `shutdown` (or EOF) drains, `close` closes at once.
fn read_commands(shared: &Shared, deadline: Duration) {
    let shutdown = || {
        shared.input(|s, now| s.server.shutdown(now, now.checked_add(deadline)));
    };
    for line in io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("shutdown") => shutdown(),
            Ok("close") => shared.input(|s, now| s.server.close(now)),
            Ok(other) => elog!("unknown command {other:?}: try `shutdown` or `close`"),
            Err(_) => break,
        }
    }
    shutdown(); // EOF: whoever drives us is gone or done
}

struct Args {
    listen: String,
    grace: Duration,
    deadline: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".to_owned(),
        grace: Config::default().new_conn_grace,
        deadline: Duration::from_secs(30),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let secs = || {
            let secs = value.parse::<f64>().ok();
            secs.and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("{flag}: not a number of seconds: {value}"))
        };
        match flag.as_str() {
            "--listen" => args.listen.clone_from(&value),
            "--grace" => args.grace = secs()?,
            "--deadline" => args.deadline = secs()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        elog!("{e}\nusage: blocking_server [--listen ADDR] [--grace SECS] [--deadline SECS]");
        std::process::exit(2);
    });
    let listener = TcpListener::bind(&args.listen).and_then(|l| Ok((l.local_addr()?, l)));
    let (addr, listener) = listener.unwrap_or_else(|e| {
        elog!("cannot listen on {}: {e}", args.listen);
        std::process::exit(2);
    });
    let mut wake_addr = addr;
    if wake_addr.ip().is_unspecified() {
        // Bound to 0.0.0.0 or [::]: wake it through loopback.
        wake_addr.set_ip(match addr {
            SocketAddr::V4(_) => [127, 0, 0, 1].into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }

    let config = Config {
        new_conn_grace: args.grace,
        ..Config::default()
    };
    let mut server = Server::new(config, now());
    // A fresh server accepts listeners: this cannot fail.
    let listener_id = server
        .add_listener()
        .expect("a serving server accepts listeners");
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            server,
            sockets: HashMap::new(),
            wake_addr,
            outcome: None,
        }),
        changed: Condvar::new(),
    });
    log!("listening on {addr} pid={}", std::process::id());
    let _ = io::stdout().flush(); // nothing to do if stdout is gone

    let timer = Arc::clone(&shared);
    thread::spawn(move || drive_timers(&timer));
    let commands = Arc::clone(&shared);
    thread::spawn(move || read_commands(&commands, args.deadline));
    let acceptor = Arc::clone(&shared);
    thread::spawn(move || accept_loop(&acceptor, listener, listener_id));

    // Wait for `Action::Done`, whoever carried it out.
    let mut state = shared.lock();
    let outcome = loop {
        match state.outcome {
            Some(outcome) => break outcome,
            None => {
                state = shared
                    .changed
                    .wait(state)
                    .expect("not poisoned: see `Shared::lock`")
            }
        }
    };
    log!("done: {:?}, forced {}", outcome.completion, outcome.forced);
    let _ = io::stdout().flush();
    std::process::exit(if outcome.is_graceful() { 0 } else { 1 });
}
