//! A [`Lifecycle`]'s control socket served: one request line per
//! connection (`restart`, `status`), one reply line (`unix::ctl` has the
//! protocol and the client side).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reply = lameduck::unix::control_status(
//!     std::path::Path::new("/run/server.ctl"),
//!     std::time::Duration::from_secs(5),
//! )?;
//! println!("{reply}");
//! # Ok(()) }
//! ```

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_io::Async;
use futures_lite::FutureExt;

use crate::sync::lock;
use crate::unix::ctl::{
    MAX_CLIENTS, MAX_REQUEST, REQUEST_TIMEOUT, Request, one_line, parse_request,
};
use crate::unix::tasks::Tasks;

use super::Lifecycle;
use super::event::LifecycleEvent;

impl Lifecycle {
    /// Starts accepting on the control socket, if one was given (a task of
    /// the run loop's): its path, removed at the end if no successor took
    /// it over.
    pub(super) fn serve_control(&self, tasks: &mut Tasks) -> Option<PathBuf> {
        let socket = lock(&self.shared.control).take()?;
        if self.supervisor().is_some() {
            self.event(LifecycleEvent::Problem(
                "a supervised generation serves no control socket (the supervisor restarts)".into(),
            ));
            return None;
        }
        let listener = match Async::new(socket.listener) {
            Ok(listener) => Arc::new(listener),
            Err(e) => {
                self.event(LifecycleEvent::Problem(format!(
                    "cannot serve the control socket {}: {e}",
                    socket.path.display()
                )));
                return None;
            }
        };
        *lock(&self.shared.control_listener) = Some(listener.clone());
        let this = self.clone();
        tasks.push(async move {
            // Its clients, driven beside the accept loop.
            let mut clients = Tasks::default();
            // One connection per pass; ends at a hand-off or the end of
            // `run` (a listener that fails stops it too).
            loop {
                let stopped = this.shared.control_stop.listen();
                if this.shared.attempts.successor().is_some() {
                    break;
                }
                // The stop is polled first: once a hand-off notified it, no
                // further connection is accepted here (the successor's).
                let accepted = async {
                    stopped.await;
                    None
                }
                .or(async { Some(listener.accept().await) })
                .or(async {
                    clients.run().await;
                    unreachable!("Tasks::run never completes")
                })
                .await;
                let stream = match accepted {
                    None => break,
                    Some(Ok((stream, _))) => stream,
                    Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                    Some(Err(e)) => {
                        this.event(LifecycleEvent::Problem(format!(
                            "control socket: accept failed: {e}; no longer served here"
                        )));
                        break;
                    }
                };
                if this.shared.control_clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    this.shared.control_clients.fetch_sub(1, Ordering::AcqRel);
                    continue; // closed unanswered
                }
                let client = this.clone();
                clients.push(async move {
                    client.control_client(stream).await;
                    client.shared.control_clients.fetch_sub(1, Ordering::AcqRel);
                });
            }
            // No more accepted here; those accepted get their answers
            // (e.g. the outcome of the restart that ended the loop).
            clients.finish().await;
        });
        Some(socket.path)
    }

    /// One control connection: a request line (bounded in size and time),
    /// one reply line.
    async fn control_client(&self, stream: Async<UnixStream>) {
        let line = async { Some(read_request(&stream).await) }
            .or(async {
                async_io::Timer::after(REQUEST_TIMEOUT).await;
                None
            })
            .await;
        let reply = match line {
            None => return, // no request in time: closed
            Some(Err(why)) => format!("error {why}"),
            Some(Ok(line)) => match parse_request(&line) {
                Err(why) => format!("error {why}"),
                Ok(Request::Status) => format!("ok status {}", self.status_line()),
                Ok(Request::Restart) => match self.restart_or_join(true).await {
                    Ok((pid, generation)) => {
                        format!("ok restarted pid={pid} generation={generation}")
                    }
                    Err(e) => format!("error {}", one_line(&e.to_string())),
                },
            },
        };
        let reply = format!("{reply}\n");
        let _ = async {
            let mut left = reply.as_bytes();
            // Each pass writes at least one byte or ends; bounded by the
            // reply's length (and the timeout below).
            while !left.is_empty() {
                match stream
                    .write_with(|s| {
                        rustix::net::send(s, left, rustix::net::SendFlags::NOSIGNAL)
                            .map_err(io::Error::from)
                    })
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = &left[n..],
                }
            }
        }
        .or(async {
            async_io::Timer::after(REQUEST_TIMEOUT).await;
        })
        .await;
    }

    /// `phase=… restart=… pid=… generation=… new=… active=… idle=…
    /// hijacked=… restarts=…`.
    fn status_line(&self) -> String {
        let s = self.snapshot();
        let c = s.server.counts;
        format!(
            "phase={} restart={} pid={} generation={} new={} active={} idle={} hijacked={} restarts={}",
            format!("{:?}", s.server.phase).to_lowercase(),
            format!("{:?}", s.restart).to_lowercase(),
            std::process::id(),
            s.generation,
            c.new,
            c.active,
            c.idle,
            c.hijacked,
            s.restarts_attempted
        )
    }
}

/// Reads one request line (without its newline), at most [`MAX_REQUEST`]
/// bytes; an end of file first, or a longer line, is the error.
async fn read_request(stream: &Async<UnixStream>) -> Result<Vec<u8>, String> {
    let mut line = Vec::with_capacity(MAX_REQUEST);
    // Each pass reads at least one byte or ends; bounded by MAX_REQUEST.
    loop {
        let mut buf = [0u8; MAX_REQUEST];
        let room = MAX_REQUEST - line.len();
        let n = stream
            .read_with(|s| rustix::io::read(s, &mut buf[..room]).map_err(io::Error::from))
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("no request line".into());
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            return Ok(line);
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() >= MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
    }
}
