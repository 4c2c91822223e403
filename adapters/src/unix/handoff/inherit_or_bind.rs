//! Serving an inherited listening socket or a newly bound one: the inherited socket of a name if there is one, else
//! a new one bound under that name
//! ([`Builder::inherit_or_bind`](crate::Builder::inherit_or_bind), and
//! the [`Supervisor`](crate::unix::Supervisor)'s equivalents).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Started by hand: nothing inherited, so "http" is bound.
//! let mut inherited = lameduck::unix::Inherited::default();
//! let builder = lameduck::Builder::new().inherit_or_bind(&mut inherited, "http", "127.0.0.1:0")?;
//! # let _ = builder; Ok(()) }
//! ```

use std::io;
use std::net::ToSocketAddrs;
use std::os::unix::net::UnixListener;
use std::path::Path;

use lameduck_core::activation::ListenEnv;

use super::inherit::Inherited;
use super::inherited_listener::InheritedListener;
use crate::runtime::Runtime;
use crate::server::{Builder, PendingListener};

/// Whether `path` is a Unix socket file that nothing listens on.
fn is_stale_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    is_socket
        && matches!(
            std::os::unix::net::UnixStream::connect(path),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
        )
}

/// The inherited TCP socket named `name`, or a new one bound to `addr`
/// (see [`Builder::inherit_or_bind`]).
pub(crate) fn take_or_bind(
    inherited: &mut Inherited,
    name: &str,
    addr: impl ToSocketAddrs,
) -> io::Result<PendingListener> {
    if let Some(inherited) = take_kind(inherited, name, true)? {
        return Ok(inherited);
    }
    let listener = std::net::TcpListener::bind(addr)?;
    Ok(PendingListener::Tcp(listener, name.into(), true))
}

/// The inherited Unix socket named `name`, or a new one bound at `path`
/// (see [`Builder::inherit_or_bind_unix`]).
pub(crate) fn take_or_bind_unix(
    inherited: &mut Inherited,
    name: &str,
    path: &Path,
) -> io::Result<PendingListener> {
    if let Some(inherited) = take_kind(inherited, name, false)? {
        return Ok(inherited);
    }
    let listener = match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && is_stale_socket(path) => {
            std::fs::remove_file(path)?;
            UnixListener::bind(path)?
        }
        bound => bound?,
    };
    Ok(PendingListener::Unix(
        listener,
        Some(path.to_path_buf()),
        name.into(),
    ))
}

/// The inherited socket named `name` (a valid name), if there is one: a
/// TCP one if `tcp`, else a Unix one; one of the other kind is an error
/// (and is closed).
fn take_kind(
    inherited: &mut Inherited,
    name: &str,
    tcp: bool,
) -> io::Result<Option<PendingListener>> {
    valid_name(name)?;
    let Some(listener) = inherited.take(name) else {
        return Ok(None);
    };
    if listener.is_tcp() == tcp {
        return Ok(Some(listener.into_pending()));
    }
    let (found, wanted) = if tcp {
        ("Unix", "TCP")
    } else {
        ("TCP", "Unix")
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "inherited fd {} ({name}) is a {found} socket; a {wanted} one was expected",
            listener.fd
        ),
    ))
}

/// Checks a listener name for `LISTEN_FDNAMES`.
fn valid_name(name: &str) -> io::Result<()> {
    ListenEnv::for_successor(1, &[name])
        .map(drop)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

impl<R: Runtime> Builder<R> {
    /// Serves on an adopted socket, under its inherited name.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = lameduck::unix::Inherited::from_env()?;
    /// let mut builder = lameduck::Builder::new();
    /// for listener in inherited.take_all() {
    ///     builder = builder.inherited_listener(listener);
    /// }
    /// # let _ = builder; Ok(()) }
    /// ```
    #[must_use]
    pub fn inherited_listener(self, listener: InheritedListener) -> Self {
        self.push_listener(listener.into_pending())
    }

    /// Serves on the inherited TCP socket named `name` if there is one (a
    /// restart, or a systemd socket with `FileDescriptorName=name`);
    /// otherwise binds `addr` and names the new listener `name`, so that a
    /// successor finds it under that name. A socket of that name that is
    /// not TCP is an error.
    ///
    /// Names are 1–255 printable ASCII characters without `:`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = lameduck::unix::Inherited::from_env()?;
    /// let builder = lameduck::Builder::new()
    ///     .inherit_or_bind(&mut inherited, "http", "127.0.0.1:0")?
    ///     .inherit_or_bind(&mut inherited, "admin", "127.0.0.1:0")?;
    /// # let _ = builder; Ok(()) }
    /// ```
    pub fn inherit_or_bind(
        self,
        inherited: &mut Inherited,
        name: &str,
        addr: impl ToSocketAddrs,
    ) -> io::Result<Self> {
        Ok(self.push_listener(take_or_bind(inherited, name, addr)?))
    }

    /// Like [`inherit_or_bind`](Self::inherit_or_bind), for a Unix stream
    /// socket at `path`. A bound socket's file is removed when the server
    /// stops serving it; a restart hands that duty to the successor with
    /// the socket (`LAMEDUCK_OWNED_FDS`), so the file
    /// goes with the last process of the line. An inherited socket whose
    /// file no predecessor handed over (systemd's `.socket` unit owns it,
    /// or a [`Supervisor`](crate::unix::Supervisor)) keeps its file. When
    /// binding, a socket file nobody listens on any more (connecting to it
    /// is refused: left by a crash, say) is replaced; one that is listened
    /// on, or any other file, is an error.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = std::env::temp_dir().join(format!("lameduck-doc-inherit-{}.sock", std::process::id()));
    /// let mut inherited = lameduck::unix::Inherited::from_env()?;
    /// let server = lameduck::Builder::new()
    ///     .inherit_or_bind_unix(&mut inherited, "local", &path)?
    ///     .build()?;
    /// # drop(server); Ok(()) }
    /// ```
    pub fn inherit_or_bind_unix(
        self,
        inherited: &mut Inherited,
        name: &str,
        path: impl AsRef<Path>,
    ) -> io::Result<Self> {
        Ok(self.push_listener(take_or_bind_unix(inherited, name, path.as_ref())?))
    }

    /// Serves on every inherited socket not taken yet (e.g. all of a
    /// systemd `.socket` unit's), in descriptor order.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = lameduck::unix::Inherited::from_env()?;
    /// let builder = lameduck::Builder::new().inherit_rest(&mut inherited);
    /// # let _ = builder; Ok(()) }
    /// ```
    #[must_use]
    pub fn inherit_rest(mut self, inherited: &mut Inherited) -> Self {
        for listener in inherited.take_all() {
            self = self.inherited_listener(listener);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "smol")]
    #[test]
    fn a_stale_socket_file_is_replaced_a_live_one_is_not() {
        let dir = std::env::temp_dir().join(format!("lameduck-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        // Left behind: the file stays when a std listener is dropped.
        drop(UnixListener::bind(&path).unwrap());
        assert!(is_stale_socket(&path));
        let mut none = Inherited::default();
        let server = Builder::new()
            .inherit_or_bind_unix(&mut none, "unix", &path)
            .unwrap()
            .build()
            .unwrap();
        assert!(!is_stale_socket(&path), "listened on now");
        let again = Builder::new().inherit_or_bind_unix(&mut none, "unix", &path);
        assert_eq!(again.unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(server);
        let plain = dir.join("plain");
        std::fs::write(&plain, "x").unwrap();
        assert!(!is_stale_socket(&plain));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("http").is_ok());
        assert!(valid_name("a:b").is_err());
        assert!(valid_name("").is_err());
    }
}
