//! The accept loop: one per listener and thread, with Go's back-off on
//! `EMFILE` and friends; each accepted connection registered with the
//! driver and served.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use lameduck_core::ListenerId;
use rustix::io::Errno;

use crate::conn::Socket;
use crate::conn::Transport;
use crate::control::Control;
use crate::driver::Driver;
use crate::event::Event;
use crate::listener::{Accepting, ListenerFd};
use crate::runtime::Runtime;
use crate::sync::Stop;
use crate::worker::ServeConn;
use crate::worker::Worker;
use std::os::fd::AsFd;
use std::path::PathBuf;

/// A listening socket registered with the runtime: what the accept loop
/// accepts on. Its [`ListenerFd`] goes with it (the last of the two to go
/// removes a socket file this process owns).
pub(crate) struct ListenSocket<R: Runtime> {
    listener: Listening<R>,
    pub(crate) fd: Arc<ListenerFd>,
}

enum Listening<R: Runtime> {
    Tcp(R::TcpListener),
    Unix(R::UnixListener),
}

impl<R: Runtime> ListenSocket<R> {
    /// A TCP listener; `bound_here`: this process created it, and these
    /// are the server's threads that accept on it (this one counted in).
    pub(crate) fn tcp(
        listener: R::TcpListener,
        bound_here: Option<Arc<Accepting>>,
    ) -> io::Result<Self> {
        let fd = ListenerFd::of(listener.as_fd(), bound_here, None, false)?;
        Ok(ListenSocket {
            listener: Listening::Tcp(listener),
            fd: Arc::new(fd),
        })
    }

    /// A Unix listener; `unlink`: its file, if this process owns it.
    pub(crate) fn unix(listener: R::UnixListener, unlink: Option<PathBuf>) -> io::Result<Self> {
        let fd = ListenerFd::of(listener.as_fd(), None, unlink, true)?;
        Ok(ListenSocket {
            listener: Listening::Unix(listener),
            fd: Arc::new(fd),
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<Socket<R>> {
        match &self.listener {
            Listening::Tcp(l) => R::accept_tcp(l).await.map(Socket::Tcp),
            Listening::Unix(l) => R::accept_unix(l).await.map(Socket::Unix),
        }
    }
}

/// Back-off after a resource error: 5 ms doubling to 1 s, as Go's `Serve`.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Errors retried at once in a row before they back off too.
const MAX_IMMEDIATE_RETRIES: u32 = 16;

enum Retry {
    /// The failed connection is gone; the next one is fine.
    Now,
    /// Out of a resource (descriptors, buffers, memory): wait, then retry.
    Backoff,
    /// The listener is broken.
    Never,
}

fn classify(error: &io::Error) -> Retry {
    if error.kind() == io::ErrorKind::Interrupted {
        return Retry::Now;
    }
    match error.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::CONNABORTED | Errno::CONNRESET | Errno::PROTO | Errno::PERM) => Retry::Now,
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM | Errno::TIMEDOUT) => {
            Retry::Backoff
        }
        Some(Errno::AGAIN) => Retry::Now,
        _ => Retry::Never,
    }
}

/// Accepts on one listener until it is stopped or fails for good.
pub(crate) async fn accept_loop<R: Runtime>(
    worker: Arc<Worker<R>>,
    id: ListenerId,
    socket: Arc<ListenSocket<R>>,
    stop: Arc<Stop>,
    serve: Arc<dyn ServeConn<R>>,
) {
    let driver = &worker.driver;
    // Tells the driver (and so the core) that this loop no longer
    // accepts, however it ends.
    let _exited = ExitGuard {
        driver,
        id,
        stop: &stop,
    };
    stop.armed();
    let mut backoff: Option<Duration> = None;
    let mut immediate = 0u32;
    // Each pass accepts one connection, or retries an error (at most
    // MAX_IMMEDIATE_RETRIES times in a row without sleeping); it ends when
    // the listener is stopped or broken.
    //
    // The stop is polled first: once stopped, the loop takes no connection
    // from the backlog (where, on a socket others hold, it waits for them).
    loop {
        // At the connection limit, wait (in the backlog) until a slot frees.
        let open = async {
            stop.wait().await;
            false
        }
        .or(async {
            driver.accept_gate.wait_open().await;
            true
        })
        .await;
        if !open {
            return;
        }
        let accepted = async {
            stop.wait().await;
            None
        }
        .or(async { Some(socket.accept().await) })
        .await;
        let Some(result) = accepted else { return };
        // An accept that raced the stop is served if the core still takes
        // it (a hand-off releases the listeners before its drain begins);
        // after a shutdown the core refuses it, and dropping it refuses the
        // connection.
        let stopped = stop.is_stopped();
        match result {
            Ok(stream) => {
                backoff = None;
                immediate = 0;
                let control = Arc::new(Control::default());
                match driver.accept(id, control.clone()) {
                    Ok(conn) => serve.serve(
                        &worker,
                        Transport::Plain(worker.conn_io(conn, control, stream)),
                    ),
                    // Raced the pause at the connection limit: this one
                    // client is refused; the loop waits at the gate.
                    Err(lameduck_core::Error::AtCapacity) => drop(stream),
                    // Draining or closed: the listener is being stopped;
                    // dropping the stream refuses the connection.
                    Err(_) => return,
                }
                if stopped {
                    return;
                }
            }
            Err(_) if stopped => return,
            Err(error) => {
                let retry = match classify(&error) {
                    Retry::Now if immediate < MAX_IMMEDIATE_RETRIES => {
                        immediate += 1;
                        continue;
                    }
                    Retry::Now | Retry::Backoff => true,
                    Retry::Never => false,
                };
                if !retry {
                    driver.observe(&Event::AcceptError {
                        listener: id,
                        error,
                        retry_in: None,
                    });
                    return;
                }
                let delay = backoff.map_or(BACKOFF_FIRST, |d| (d * 2).min(BACKOFF_MAX));
                backoff = Some(delay);
                immediate = 0;
                driver.observe(&Event::AcceptError {
                    listener: id,
                    error,
                    retry_in: Some(delay),
                });
                let slept = async {
                    worker.rt.sleep_until(Instant::now() + delay).await;
                    true
                }
                .or(async {
                    stop.wait().await;
                    false
                })
                .await;
                if !slept {
                    return;
                }
            }
        }
    }
}

/// Reports an accept loop's end to its [`Stop`] and the driver.
struct ExitGuard<'a> {
    driver: &'a Arc<Driver>,
    id: ListenerId,
    stop: &'a Stop,
}

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        self.stop.exited();
        self.driver.accept_loop_ended(self.id);
    }
}
