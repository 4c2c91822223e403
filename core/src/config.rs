//! The server's configuration.

use std::time::Duration;

/// How a [`Server`](crate::Server) treats its connections. Every field has a
/// documented default; build one with struct update syntax.
///
/// ```
/// use std::time::Duration;
/// use lameduck_core::Config;
///
/// let config = Config {
///     idle_timeout: Some(Duration::from_secs(60)),
///     lame_duck: Duration::from_secs(5),
///     ..Config::default()
/// };
/// assert_eq!(config.new_conn_grace, Duration::from_secs(5));
/// assert_eq!(config.body_timeout, None);
/// assert_eq!(config.write_timeout, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Once draining, a connection still in [`ConnState::New`](crate::ConnState::New)
    /// this long after its accept is closed. Default 5 s.
    ///
    /// Go (`net/http/server.go`, `closeIdleConns`): "Issue 22682: treat
    /// StateNew connections as if they're idle if we haven't read the first
    /// request's header in over 5 seconds." Go compares whole seconds of a
    /// timestamp and only notices at its next poll, so it really waits 5–6 s
    /// plus up to 500 ms; here the grace is measured exactly from the accept
    /// and the deadline is reported through [`poll_timeout`](crate::Server::poll_timeout).
    /// While serving (not draining) the grace does not apply.
    pub new_conn_grace: Duration,
    /// An [`Idle`](crate::ConnState::Idle) connection is closed after this long
    /// without a new request (Go's `IdleTimeout`). `None`: never. Default `None`.
    ///
    /// `Some(Duration::ZERO)` is not "no timeout" (that is `None`): it is a
    /// deadline already passed, so a connection is closed
    /// ([`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout)) as
    /// soon as it becomes idle — after every response, as if keep-alive
    /// were off. The core accepts it; a front end taking the value from a
    /// user should refuse zero (the demo server does).
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, ConnState, Server};
    /// let t0 = Instant::now();
    /// let config = Config { idle_timeout: Some(Duration::ZERO), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, t0).unwrap();
    /// server.request_started(c, t0).unwrap();
    /// server.response_done(c, t0).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    /// ```
    pub idle_timeout: Option<Duration>,
    /// A request head must be complete this long after it began: after the
    /// accept for the first request, after its first byte for later ones (Go's
    /// `ReadHeaderTimeout`). `None`: no limit. Default `None`.
    ///
    /// `Some(Duration::ZERO)` is not "no limit" (that is `None`): it is a
    /// deadline already passed, so every connection is closed
    /// ([`CloseReason::HeaderTimeout`](crate::CloseReason::HeaderTimeout))
    /// at its accept, before a byte is read — nothing is ever served. The
    /// core accepts it; a front end taking the value from a user should
    /// refuse zero (the demo server does).
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, ConnState, Server};
    /// let t0 = Instant::now();
    /// let config = Config { header_timeout: Some(Duration::ZERO), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, t0).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    /// ```
    pub header_timeout: Option<Duration>,
    /// A request body must be read completely this long after its head was
    /// (after [`headers_complete`](crate::Server::headers_complete), until
    /// [`body_complete`](crate::Server::body_complete)): a hard bound on the
    /// whole body, however steadily its bytes trickle in, as
    /// [`header_timeout`](Self::header_timeout) is on the head. Together they
    /// are Go's `ReadTimeout`. The time counts whether the client is slow or
    /// the application reads late; a request without a body (the adapter
    /// reports `body_complete` with the head) is not subject to it. Expiry
    /// closes the connection by force ([`CloseReason::BodyTimeout`](crate::CloseReason::BodyTimeout)).
    /// `None`: no limit. Default `None`, as in Go: only the application knows
    /// how large and how slow its uploads may legitimately be (at 1 MB/s a
    /// 100 MB upload takes 100 s). Set it to the largest body you accept
    /// divided by the slowest client bandwidth you serve.
    pub body_timeout: Option<Duration>,
    /// A response write may be blocked this long without progress: a
    /// *stall* timeout, from [`write_blocked`](crate::Server::write_blocked)
    /// (the socket accepts no more bytes: the peer is not reading) to
    /// [`write_unblocked`](crate::Server::write_unblocked) (it accepted
    /// some), counted only while a request is in progress (from its start
    /// if the write blocked before). A slow but progressing client is never
    /// cut, however long its response takes (a large download, a
    /// server-sent event stream); a client that stops reading is closed by
    /// force this long after its socket filled ([`CloseReason::WriteTimeout`](crate::CloseReason::WriteTimeout)).
    ///
    /// Unlike Go's `WriteTimeout` (a deadline on the whole response from the
    /// end of the request head, which kills long streams), only a stall
    /// counts; and the adapter reports only the edges (the first write that
    /// finds the socket full, the next that gets through), not every write,
    /// so a response that never fills the socket costs nothing. `None`: no
    /// limit (the shutdown deadline still bounds a drain). Default `None`,
    /// as Go's: a client may deliberately stop reading for a while
    /// (backpressure); 30–60 s (nginx's `send_timeout` is 60 s) suits most
    /// HTTP servers.
    pub write_timeout: Option<Duration>,
    /// How long [`shutdown`](crate::Server::shutdown) stays in
    /// [`Phase::LameDuck`](crate::Phase::LameDuck) before draining: listeners
    /// keep accepting and requests are served, but readiness reports draining
    /// and responses stop keep-alive, so a load balancer routes elsewhere
    /// before connections are refused. Zero skips the phase. Default zero.
    pub lame_duck: Duration,
    /// Keep connections alive between requests at all (Go's
    /// `SetKeepAlivesEnabled`). Default `true`.
    pub keep_alives: bool,
    /// Let the drain wait for [`Hijacked`](crate::ConnState::Hijacked)
    /// connections to close too, up to the shutdown deadline. They are never
    /// closed by the core either way. Default `false`, as in Go.
    pub wait_for_hijacked: bool,
    /// Emit [`Action::RunHooks`](crate::Action::RunHooks) and wait for
    /// [`hooks_finished`](crate::Server::hooks_finished) (bounded by the
    /// shutdown deadline) before the drain may complete. Set it when there are
    /// hooks to run. Default `false`.
    pub shutdown_hooks: bool,
    /// At most this many connections open at once (hijacked ones included:
    /// each holds a descriptor). At the limit the core queues
    /// [`Action::PauseAccepting`](crate::Action::PauseAccepting) and the
    /// caller stops calling `accept()`, so further clients wait in the
    /// kernel's listen backlog (queued, not refused) until a connection
    /// closes and [`Action::ResumeAccepting`](crate::Action::ResumeAccepting)
    /// follows. `None`: no limit. Default `None`.
    pub max_connections: Option<usize>,
    /// How long the [`HookStage::ForcedClose`](crate::HookStage::ForcedClose)
    /// hooks may run after the shutdown deadline before the server completes
    /// anyway. Default 1 s.
    pub forced_close_hook_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            new_conn_grace: Duration::from_secs(5),
            idle_timeout: None,
            header_timeout: None,
            body_timeout: None,
            write_timeout: None,
            lame_duck: Duration::ZERO,
            keep_alives: true,
            wait_for_hijacked: false,
            shutdown_hooks: false,
            max_connections: None,
            forced_close_hook_timeout: Duration::from_secs(1),
        }
    }
}
