//! Drain tail: the time from the last in-flight response to the drain's
//! completion and to the process's exit.
//!
//! Per repetition: start the server; make `IDLE` keep-alive connections
//! idle (one request each); start `GET /sleep?ms=300` on another; SIGTERM
//! 100 ms into the sleep; then timestamp (a) the client reading the
//! response's last byte, (b) the server's completion line arriving on its
//! stderr pipe (the demo's `done:` event; the Go peer's line after
//! `Shutdown` returns), (c) `waitpid` returning.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::http;
use crate::proc::{Binaries, Kind, Server, exit_watcher};
use crate::stats::ms;

/// Idle keep-alive connections present at SIGTERM.
const IDLE: usize = 16;
/// The in-flight request's length.
const SLEEP_MS: u64 = 300;
/// When SIGTERM is sent, after the in-flight request.
const TERM_AFTER: Duration = Duration::from_millis(100);
/// Bound on every wait of a repetition.
const WAIT: Duration = Duration::from_secs(10);

/// One repetition's figures, in ms after the last response byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) done_ms: f64,
    pub(crate) exit_ms: f64,
}

/// All repetitions for one server.
#[derive(Debug, Default)]
pub(crate) struct Result {
    pub(crate) samples: Vec<Sample>,
    /// Repetitions that went wrong, and how.
    pub(crate) errors: Vec<String>,
}

pub(crate) fn run(bins: &Binaries, kind: Kind, reps: usize) -> Result {
    let mut result = Result::default();
    for _ in 0..reps {
        match once(bins, kind) {
            Ok(sample) => result.samples.push(sample),
            Err(e) => result.errors.push(e),
        }
    }
    result
}

fn once(bins: &Binaries, kind: Kind) -> std::result::Result<Sample, String> {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut server = Server::start(bins.command(kind, listen, 10))?;
    let addr = server.addr;
    let timeout = Duration::from_secs(5);
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut conn = http::connect(addr, None, timeout).map_err(|e| format!("idle: {e}"))?;
        conn.get("/")
            .map_err(|f| format!("idle request: {}", f.failure))?;
        idle.push(conn);
    }
    // Like real clients, they close when the server ends their connection
    // (the server's gentle closes then end at once).
    for conn in idle {
        conn.close_when_the_server_does();
    }
    let (tx, rx) = mpsc::channel();
    let mut slow = http::connect(addr, None, timeout).map_err(|e| format!("in-flight: {e}"))?;
    std::thread::spawn(move || {
        crate::proc::prompt();
        let _ = tx.send(slow.get(&format!("/sleep?ms={SLEEP_MS}")));
    });
    std::thread::sleep(TERM_AFTER);
    let exited = exit_watcher(server.take_child().ok_or("no child")?);
    server.signal(Signal::TERM)?;
    let response = rx
        .recv_timeout(WAIT)
        .map_err(|_| "in-flight response: no answer".to_owned())?
        .map_err(|f| format!("in-flight response failed: {}", f.failure))?;
    if !response.close {
        return Err("in-flight response during the drain lacks Connection: close".into());
    }
    let done = server
        .stderr_line("done:", WAIT)
        .ok_or("no completion line on stderr")?;
    let exit = exited.recv_timeout(WAIT).map_err(|_| "no exit")?;
    if exit.code != Some(0) {
        return Err(format!("ended with {}", exit.describe()));
    }
    let since = |at: Instant| {
        ms(at.duration_since(response.last_byte)) - ms(response.last_byte.duration_since(at))
    };
    Ok(Sample {
        done_ms: since(done),
        exit_ms: since(exit.at),
    })
}
