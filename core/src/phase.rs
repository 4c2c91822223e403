//! The server's phases.

/// Where a [`Server`](crate::Server) is in its life.
///
/// `Serving` → (`LameDuck`) → `Draining` → `Closed`; after a restart's
/// hand-off `Serving` → `HandedOff` → `Draining` → `Closed`; or straight to
/// `Closed` through [`Server::close`](crate::Server::close).
///
/// ```
/// # use std::time::Instant;
/// use lameduck_core::{Config, Phase, Server};
///
/// let now = Instant::now();
/// let mut server = Server::new(Config::default(), now);
/// assert_eq!(server.phase(), Phase::Serving);
/// server.close(now);
/// assert_eq!(server.phase(), Phase::Closed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Accepting and serving, keep-alive on.
    Serving,
    /// Shutdown began with a lame-duck delay: still accepting and serving,
    /// readiness reports draining, keep-alive off.
    LameDuck,
    /// The listeners went to a successor ([`Server::hand_off`](crate::Server::hand_off)):
    /// keep-alive off, nothing new accepted here (but accepts that raced
    /// the release), and idle keep-alive connections linger so that each
    /// client's next request is still answered, with `Connection: close`.
    /// Then `Draining`.
    HandedOff,
    /// Listeners closed; in-flight requests finish; idle connections are gone.
    Draining,
    /// Done. Nothing tracked remains.
    Closed,
}

impl Phase {
    /// Shutdown (or close) has begun: no new listeners, and once `Draining`,
    /// no new connections (Go's `inShutdown`).
    #[must_use]
    pub fn is_shutting_down(self) -> bool {
        self != Phase::Serving
    }

    /// A readiness probe should report ready: only while `Serving`.
    #[must_use]
    pub fn is_ready(self) -> bool {
        self == Phase::Serving
    }

    /// `LameDuck` or `HandedOff`: a delay before the drain, during which
    /// connections are still served (keep-alive off).
    pub(crate) fn is_delay(self) -> bool {
        matches!(self, Phase::LameDuck | Phase::HandedOff)
    }
}
