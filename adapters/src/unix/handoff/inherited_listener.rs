//! An inherited listening socket, checked and owned:
//! [`InheritedListener`], what [`Inherited`](crate::unix::Inherited)
//! hands out.
//!
//! ```
//! let mut inherited = lameduck::unix::Inherited::default();
//! for listener in inherited.take_all() {
//!     println!("{} {}", listener.fd(), listener.name());
//! }
//! ```

use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use crate::listener::ListenAddr;
use crate::server::PendingListener;

/// An inherited listening socket, checked and owned (close-on-exec,
/// non-blocking).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut inherited = lameduck::unix::Inherited::from_env()?;
/// for listener in inherited.take_all() {
///     println!("{} {}: {}", listener.fd(), listener.name(), listener.local_addr()?);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct InheritedListener {
    pub(super) fd: RawFd,
    pub(super) name: String,
    pub(super) socket: Socket,
}

/// The socket itself, by family.
#[derive(Debug)]
pub(super) enum Socket {
    Tcp(std::net::TcpListener),
    Unix(UnixListener),
}

impl InheritedListener {
    /// The descriptor number it was passed at (3, 4, …).
    ///
    /// ```
    /// # let mut inherited = lameduck::unix::Inherited::from_env().unwrap();
    /// if let Some(listener) = inherited.take("http") {
    ///     assert!(listener.fd() >= 3);
    /// }
    /// ```
    #[must_use]
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Its name from `LISTEN_FDNAMES` (`unknown` when none was given).
    ///
    /// ```
    /// # let mut inherited = lameduck::unix::Inherited::from_env().unwrap();
    /// if let Some(listener) = inherited.take("http") {
    ///     assert_eq!(listener.name(), "http");
    /// }
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is a TCP (IPv4 or IPv6) socket; otherwise a Unix one.
    ///
    /// ```
    /// # let mut inherited = lameduck::unix::Inherited::from_env().unwrap();
    /// let tcp = inherited.take_all().into_iter().filter(|l| l.is_tcp()).count();
    /// # let _ = tcp;
    /// ```
    #[must_use]
    pub fn is_tcp(&self) -> bool {
        matches!(self.socket, Socket::Tcp(_))
    }

    /// The address it listens on.
    ///
    /// ```
    /// # let mut inherited = lameduck::unix::Inherited::from_env().unwrap();
    /// for listener in inherited.take_all() {
    ///     println!("{}", listener.local_addr().unwrap());
    /// }
    /// ```
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        Ok(match &self.socket {
            Socket::Tcp(l) => ListenAddr::Tcp(l.local_addr()?),
            Socket::Unix(l) => ListenAddr::Unix(
                l.local_addr()?
                    .as_pathname()
                    .unwrap_or(Path::new(""))
                    .into(),
            ),
        })
    }

    /// The Unix listener, if it is one.
    pub(crate) fn into_unix(self) -> Option<UnixListener> {
        match self.socket {
            Socket::Unix(l) => Some(l),
            Socket::Tcp(_) => None,
        }
    }

    pub(crate) fn into_pending(self) -> PendingListener {
        let name: Arc<str> = self.name.into();
        match self.socket {
            Socket::Tcp(l) => PendingListener::Tcp(l, name, false),
            // Whoever created the file (systemd, a supervisor) owns it: an
            // inherited socket's file is left in place — unless a
            // restarting predecessor hands it over (`LAMEDUCK_OWNED_FDS`),
            // which the `Lifecycle` takes up once this process is ready.
            Socket::Unix(l) => PendingListener::Unix(l, None, name),
        }
    }
}

impl AsFd for InheritedListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix(l) => l.as_fd(),
        }
    }
}
