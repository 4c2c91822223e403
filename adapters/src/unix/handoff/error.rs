//! Why the inherited descriptors were refused: [`InheritError`].
//!
//! ```
//! use lameduck::unix::{InheritError, Inherited};
//! // A second adoption in one process is refused.
//! let _first = Inherited::from_env();
//! let second = Inherited::from_env().unwrap_err();
//! assert!(matches!(second, InheritError::AlreadyAdopted));
//! ```

use std::fmt;
use std::io;
use std::os::fd::RawFd;

use lameduck_core::activation::ActivationError;

use super::{OWNED_FDS_VAR, READY_FD_VAR, SUPERVISOR_FD_VAR};

/// Why the inherited sockets were refused. The process should report it
/// and exit non-zero: it was told to serve on sockets it cannot use.
///
/// ```
/// use lameduck::unix::InheritError;
/// use lameduck::unix::ActivationError;
///
/// let error = InheritError::Env(ActivationError::InvalidCount("x".into()));
/// assert_eq!(error.to_string(), "LISTEN_FDS=\"x\" is not a count");
/// let error = InheritError::NotASocket { fd: 3, name: "http".into() };
/// assert_eq!(error.to_string(), "inherited fd 3 (http) is not a socket");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum InheritError {
    /// `LISTEN_PID`, `LISTEN_FDS` or `LISTEN_FDNAMES` is malformed.
    /// (Variables for another process are not an error: they are ignored,
    /// see [`Inherited::from_env`](crate::unix::Inherited::from_env).)
    Env(ActivationError),
    /// The descriptor is not open.
    NotOpen {
        /// The descriptor.
        fd: RawFd,
        /// Its name.
        name: String,
    },
    /// The descriptor is not a socket.
    NotASocket {
        /// The descriptor.
        fd: RawFd,
        /// Its name.
        name: String,
    },
    /// The socket is not a stream socket (a datagram socket, say).
    NotStream {
        /// The descriptor.
        fd: RawFd,
        /// Its name.
        name: String,
    },
    /// The socket is not listening (`SO_ACCEPTCONN` is off).
    NotListening {
        /// The descriptor.
        fd: RawFd,
        /// Its name.
        name: String,
    },
    /// The descriptor was adopted already under another name (say
    /// `LAMEDUCK_READY_FD` names one of the `LISTEN_FDS` too): it is owned
    /// once, by the first.
    NamedTwice {
        /// The descriptor.
        fd: RawFd,
        /// Its name.
        name: String,
    },
    /// The socket is neither IPv4, IPv6 nor Unix.
    UnsupportedFamily {
        /// The descriptor.
        fd: RawFd,
        /// Its name.
        name: String,
    },
    /// `LAMEDUCK_READY_FD` does not name the write end of a pipe.
    ReadyFd {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `LAMEDUCK_SUPERVISOR_FD` does not name the read end of a pipe.
    SupervisorFd {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `LAMEDUCK_OWNED_FDS` does not name inherited Unix sockets bound to
    /// a path, or is set where no predecessor hands files over.
    OwnedFds {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`Inherited::from_env`](crate::unix::Inherited::from_env) already adopted this process's descriptors.
    AlreadyAdopted,
    /// A system call failed while checking or adopting a descriptor.
    Io {
        /// The descriptor.
        fd: RawFd,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for InheritError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InheritError::Env(e) => write!(f, "{e}"),
            InheritError::NotOpen { fd, name } => {
                write!(f, "inherited fd {fd} ({name}) is not open")
            }
            InheritError::NotASocket { fd, name } => {
                write!(f, "inherited fd {fd} ({name}) is not a socket")
            }
            InheritError::NotStream { fd, name } => {
                write!(f, "inherited fd {fd} ({name}) is not a stream socket")
            }
            InheritError::NotListening { fd, name } => {
                write!(f, "inherited fd {fd} ({name}) is not a listening socket")
            }
            InheritError::UnsupportedFamily { fd, name } => write!(
                f,
                "inherited fd {fd} ({name}) is neither an IPv4, IPv6 nor Unix socket"
            ),
            InheritError::NamedTwice { fd, name } => write!(
                f,
                "inherited fd {fd} ({name}) is named twice: it was adopted already under \
                 another name"
            ),
            InheritError::ReadyFd { value, reason } => {
                write!(f, "{READY_FD_VAR}={value:?}: {reason}")
            }
            InheritError::SupervisorFd { value, reason } => {
                write!(f, "{SUPERVISOR_FD_VAR}={value:?}: {reason}")
            }
            InheritError::OwnedFds { value, reason } => {
                write!(f, "{OWNED_FDS_VAR}={value:?}: {reason}")
            }
            InheritError::AlreadyAdopted => {
                f.write_str("the inherited sockets were already adopted by this process")
            }
            InheritError::Io { fd, error } => write!(f, "inherited fd {fd}: {error}"),
        }
    }
}

impl std::error::Error for InheritError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InheritError::Env(e) => Some(e),
            InheritError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<ActivationError> for InheritError {
    fn from(e: ActivationError) -> Self {
        InheritError::Env(e)
    }
}
