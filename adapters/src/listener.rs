//! Listeners: TCP and Unix stream sockets, as the accept loop
//! ([`accept`](crate::accept)) and the driver see them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
    pub(crate) fn of(
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
