//! Caller mistakes and refusals.

use std::fmt;

use crate::conn::{ConnId, ConnState};
use crate::listener::ListenerId;

/// Why the core refused an input. Refusals change nothing.
///
/// ```
/// # use std::time::Instant;
/// use lameduck_core::{Config, Error, Server};
///
/// let now = Instant::now();
/// let mut server = Server::new(Config::default(), now);
/// server.shutdown(now, None);
/// assert_eq!(server.add_listener(), Err(Error::ServerClosed));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The server is shutting down or closed: no new listener, and no new
    /// connection once draining (Go's `ErrServerClosed`). Drop the socket.
    ServerClosed,
    /// This server never issued that listener id.
    UnknownListener(ListenerId),
    /// The listener is closed; drop the socket.
    ListenerClosed(ListenerId),
    /// [`Config::max_connections`](crate::Config::max_connections) are open:
    /// an accept that raced [`Action::PauseAccepting`](crate::Action::PauseAccepting).
    /// Drop the socket.
    AtCapacity,
    /// This server never issued that connection id.
    UnknownConn(ConnId),
    /// The connection is closed (the core may have closed it: look for its
    /// [`Action::CloseConn`](crate::Action::CloseConn)). Do not serve on it.
    ConnClosed(ConnId),
    /// The event does not apply to a connection in this state.
    InvalidTransition {
        /// The connection.
        conn: ConnId,
        /// Its state.
        state: ConnState,
        /// What was reported.
        event: ConnEvent,
    },
}

/// A connection event, for [`Error::InvalidTransition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnEvent {
    /// [`Server::request_started`](crate::Server::request_started)
    RequestStarted,
    /// [`Server::headers_complete`](crate::Server::headers_complete)
    HeadersComplete,
    /// [`Server::body_complete`](crate::Server::body_complete)
    BodyComplete,
    /// [`Server::response_done`](crate::Server::response_done)
    ResponseDone,
    /// [`Server::hijack`](crate::Server::hijack)
    Hijack,
    /// [`Server::stream_opened`](crate::Server::stream_opened)
    StreamOpened,
    /// [`Server::stream_closed`](crate::Server::stream_closed)
    StreamClosed,
}

impl Error {
    /// The connection is closed: in a concurrent adapter this is the normal
    /// answer to a race (the core closed it for a drain, a timeout, the
    /// deadline or `close`, while its task was working), not a bug. Stop
    /// serving it and close it unanswered. Every other error is a caller
    /// mistake.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// server.close(now);
    /// assert!(server.request_started(c, now).unwrap_err().is_conn_closed());
    /// ```
    #[must_use]
    pub fn is_conn_closed(&self) -> bool {
        matches!(self, Error::ConnClosed(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ServerClosed => f.write_str("server closed"),
            Error::AtCapacity => f.write_str("at the maximum number of connections"),
            Error::UnknownListener(l) => write!(f, "unknown {l}"),
            Error::ListenerClosed(l) => write!(f, "{l} is closed"),
            Error::UnknownConn(c) => write!(f, "unknown {c}"),
            Error::ConnClosed(c) => write!(f, "{c} is closed"),
            Error::InvalidTransition { conn, state, event } => {
                write!(f, "{event:?} is invalid for {conn} in state {state:?}")
            }
        }
    }
}

impl std::error::Error for Error {}
