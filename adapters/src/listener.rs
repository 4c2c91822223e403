//! Listeners: TCP and Unix stream sockets, and the accept loop (with Go's
//! back-off on `EMFILE` and friends).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use lameduck_core::ListenerId;
use rustix::io::Errno;

use crate::conn::{ConnIo, Socket, Transport};
use crate::control::Control;
use crate::driver::{Driver, Stop};
use crate::event::Event;
use crate::runtime::Runtime;
use crate::worker::Worker;

/// Where a server listens: printed as `127.0.0.1:8080` or `unix:/path`.
///
/// ```
/// use lameduck::ListenAddr;
///
/// let tcp = ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap());
/// assert_eq!(tcp.to_string(), "127.0.0.1:8080");
/// let unix = ListenAddr::Unix("/run/demo.sock".into());
/// assert_eq!(unix.to_string(), "unix:/run/demo.sock");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP socket's local address (with the port the system chose for 0).
    Tcp(SocketAddr),
    /// A Unix stream socket's path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// How many threads of one server accept on a socket this process created
/// (each counts itself in when it registers the socket).
#[derive(Debug, Default)]
pub(crate) struct Accepting(AtomicUsize);

/// A listening socket as the driver sees it, whatever the runtime: a
/// descriptor of its own for the socket (a duplicate of the one the accept
/// loop uses, so that stopping, releasing and handing over never touch the
/// runtime's types), whether this process created the socket, and the
/// Unix socket file it must remove.
#[derive(Debug)]
pub(crate) struct ListenerFd {
    fd: OwnedFd,
    /// This process created the TCP socket: the threads of the server that
    /// accept on it (see [`ListenerFd::stop_accepting`]).
    bound_here: Option<Arc<Accepting>>,
    /// A Unix socket's file, removed when the listener is stopped or
    /// dropped (we bound it, or took it over from a predecessor that owned
    /// it: [`ListenerFd::own_file`]), unless it was handed to a successor
    /// ([`ListenerFd::keep_file`]). Always `None` for TCP.
    unlink: Mutex<Option<PathBuf>>,
    unix: bool,
}

impl AsFd for ListenerFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl ListenerFd {
    /// The driver's view of `socket` (a new descriptor for it).
    fn of(
        socket: BorrowedFd<'_>,
        bound_here: Option<Arc<Accepting>>,
        unlink: Option<PathBuf>,
        unix: bool,
    ) -> io::Result<ListenerFd> {
        let fd = socket.try_clone_to_owned()?;
        let bound_here = bound_here.filter(|_| !unix);
        if let Some(accepting) = &bound_here {
            accepting.0.fetch_add(1, Ordering::AcqRel);
        }
        Ok(ListenerFd {
            fd,
            bound_here,
            unlink: Mutex::new(unlink),
            unix,
        })
    }

    /// Stops the kernel from completing new connections, now — for a
    /// socket this process created; call it after the accept loop was told
    /// to stop (so that the loop sees the stop, not an error).
    ///
    /// `shutdown(SHUT_RD)` on a listening socket (Linux) moves it out of the
    /// listening state at once: later connects are refused and a pending
    /// accept wakes up. The descriptors themselves close when the driver and
    /// the accept loop let go of them, moments later. Where the system
    /// refuses (not Linux), those closes alone stop the listener.
    ///
    /// A socket this process did not create — inherited from systemd's
    /// socket unit, from a restarting predecessor or a supervisor, or
    /// handed in by the application — is never shut down: other processes
    /// may hold it (systemd keeps its socket listening for the next start,
    /// and queues connections meanwhile), and `shutdown(2)` acts on the
    /// socket, not on this process's descriptor. Closing the descriptors
    /// is all this process does with it.
    ///
    /// A server on several threads accepts on one socket from each: only
    /// the last of them to stop shuts it down (before that, the others'
    /// accepts would fail, and they would report the listener lost).
    pub(crate) fn stop_accepting(&self) {
        if let Some(accepting) = &self.bound_here
            && accepting.0.fetch_sub(1, Ordering::AcqRel) == 1
        {
            let _ = rustix::net::shutdown(self, rustix::net::Shutdown::Read);
        }
        // The file goes now, not when the last reference is dropped (an
        // accept loop on another thread, maybe after the process exits).
        if let Some(path) = self.lock_unlink().take() {
            let _ = std::fs::remove_file(path);
        }
    }

    fn lock_unlink(&self) -> std::sync::MutexGuard<'_, Option<PathBuf>> {
        crate::sync::lock(&self.unlink)
    }

    /// The socket's file at `path` is this process's to remove from now on
    /// (a predecessor that owned it handed the socket over).
    #[cfg(unix)]
    pub(crate) fn own_file(&self, path: PathBuf) {
        if self.unix {
            *self.lock_unlink() = Some(path);
        }
    }

    /// Whether this process removes the socket's file at its end.
    #[cfg(unix)]
    pub(crate) fn owns_file(&self) -> bool {
        self.unix && self.bound_here()
    }

    /// Whether this process created the socket (or took it over from a
    /// predecessor that did): only then may it shut it down. A Unix
    /// socket's file is removed by its owner, so the two go together.
    fn bound_here(&self) -> bool {
        if self.unix {
            self.lock_unlink().is_some()
        } else {
            self.bound_here.is_some()
        }
    }

    /// The socket lives on in a successor: leave its file in place.
    pub(crate) fn keep_file(&self) {
        self.lock_unlink().take();
    }
}

impl Drop for ListenerFd {
    fn drop(&mut self) {
        let path = self
            .unlink
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
    }
}

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

    async fn accept(&self) -> io::Result<Socket<R>> {
        match &self.listener {
            Listening::Tcp(l) => R::accept_tcp(l).await.map(Socket::Tcp),
            Listening::Unix(l) => R::accept_unix(l).await.map(Socket::Unix),
        }
    }
}

/// How a connection is served once accepted (HTTP/1.1, a raw stream).
pub(crate) trait ServeConn<R: Runtime>: 'static {
    /// Serves `io` in a task of its own on `worker`'s runtime.
    fn serve(&self, worker: &Arc<Worker<R>>, io: Transport<R>);
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
                        Transport::Plain(ConnIo::new(&worker, conn, control, stream)),
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
