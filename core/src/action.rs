//! What the core asks its caller to do.

use crate::conn::ConnId;
use crate::listener::ListenerId;
use crate::phase::Phase;

/// An output of the core, drained with [`Server::poll_action`](crate::Server::poll_action).
///
/// By the time an action is queued the core's own state already reflects it:
/// a connection named in [`Action::CloseConn`] is already
/// [`Closed`](crate::ConnState::Closed), a listener in
/// [`Action::CloseListener`] already refuses accepts. The caller carries it out.
///
/// ```
/// # use std::time::Instant;
/// use lameduck_core::{Action, Config, Phase, Server};
///
/// let now = Instant::now();
/// let mut server = Server::new(Config::default(), now);
/// let l = server.add_listener().unwrap();
/// server.shutdown(now, None);
/// assert_eq!(server.poll_action(), Some(Action::PhaseChanged(Phase::Draining)));
/// assert_eq!(server.poll_action(), Some(Action::CloseListener(l)));
/// assert_eq!(server.poll_action(), Some(Action::PhaseChanged(Phase::Closed)));
/// assert!(matches!(server.poll_action(), Some(Action::Done(_))));
/// assert_eq!(server.poll_action(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The server entered a new phase (for readiness reporting and logs).
    PhaseChanged(Phase),
    /// Stop accepting on this listener and close it.
    CloseListener(ListenerId),
    /// The listener now belongs to a successor ([`Server::hand_off`](crate::Server::hand_off)):
    /// stop accepting on it and close this process's descriptor, but do
    /// not shut the socket down (`shutdown(2)` would stop it in the
    /// successor too) nor remove a Unix socket's file. A connection
    /// accepted meanwhile is still taken by the core; report
    /// [`listener_closed`](crate::Server::listener_closed) once this process
    /// accepts no more on it.
    ReleaseListener(ListenerId),
    /// Close this connection now.
    CloseConn {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// This Active connection must finish its current response, without
    /// keep-alive (`Connection: close`), and then close. The core closes it
    /// with [`CloseReason::KeepAliveOff`] when the caller reports
    /// [`response_done`](crate::Server::response_done).
    ///
    /// An adapter that asks [`Server::keep_alive`](crate::Server::keep_alive)
    /// when writing each response head has nothing to do here; one whose
    /// protocol engine decided keep-alive earlier (hyper's
    /// `graceful_shutdown`, say) tells it now.
    FinishAndClose(ConnId),
    /// Shutdown has begun: tell this hijacked connection (e.g. a WebSocket), so
    /// it can say goodbye and close on its own terms. Sent once per connection.
    NotifyHijacked(ConnId),
    /// The drain has begun while this connection serves a request (or
    /// streams): tell the code producing its responses, so that a
    /// long-lived one (server-sent events, a long poll) ends now instead
    /// of holding the drain until the deadline cuts it.
    ///
    /// Sent when [`Phase::Draining`] begins — after a lame-duck delay or a
    /// hand-off's linger, not at their start (the service is still meant to
    /// be available then) — to every Active connection, and at once to a
    /// connection whose request starts (or whose first stream opens) while
    /// draining, before that input returns. At most once per connection.
    /// Independent of keep-alive: sent with
    /// [`Config::keep_alives`](crate::Config::keep_alives) off too, where
    /// [`Action::FinishAndClose`] is not.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Action, Config, Server};
    /// let t0 = Instant::now();
    /// let config = Config { lame_duck: Duration::from_secs(2), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// let l = server.add_listener().unwrap();
    /// let (busy, fresh) = (server.accept(l, t0).unwrap(), server.accept(l, t0).unwrap());
    /// server.request_started(busy, t0).unwrap();
    /// server.shutdown(t0, None);
    /// let lame_duck: Vec<_> = std::iter::from_fn(|| server.poll_action()).collect();
    /// assert!(!lame_duck.contains(&Action::NotifyActive(busy)), "lame duck: still serving");
    /// server.handle_timeout(t0 + Duration::from_secs(2));
    /// let drain: Vec<_> = std::iter::from_fn(|| server.poll_action()).collect();
    /// assert!(drain.contains(&Action::NotifyActive(busy)));
    /// // A request that starts while draining is told at once.
    /// server.request_started(fresh, t0 + Duration::from_secs(3)).unwrap();
    /// assert_eq!(server.poll_action(), Some(Action::NotifyActive(fresh)));
    /// ```
    NotifyActive(ConnId),
    /// [`Config::max_connections`](crate::Config::max_connections) are open:
    /// stop calling `accept()` on every listener until
    /// [`Action::ResumeAccepting`]; clients wait in the listen backlog.
    PauseAccepting,
    /// A connection closed below the limit: accept again.
    ResumeAccepting,
    /// Stop running the hooks of this stage (drop their futures): the
    /// deadline passed, or the server closed, before they finished.
    CutOffHooks(HookStage),
    /// Run the shutdown hooks of this stage, then report
    /// [`hooks_finished`](crate::Server::hooks_finished). Only with
    /// [`Config::shutdown_hooks`](crate::Config::shutdown_hooks).
    RunHooks(HookStage),
    /// The server is closed: every tracked connection is gone. Queued exactly
    /// once, last.
    Done(Outcome),
}

/// Why the core closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Idle when the drain began (Go's `closeIdleConns`).
    Drain,
    /// Its response finished while keep-alive was off (draining, lame duck, or
    /// [`Config::keep_alives`](crate::Config::keep_alives) false).
    KeepAliveOff,
    /// Draining, still New [`Config::new_conn_grace`](crate::Config::new_conn_grace)
    /// after its accept.
    NewConnGrace,
    /// Idle longer than [`Config::idle_timeout`](crate::Config::idle_timeout).
    IdleTimeout,
    /// Request head not complete within [`Config::header_timeout`](crate::Config::header_timeout).
    HeaderTimeout,
    /// Request body not complete within [`Config::body_timeout`](crate::Config::body_timeout)
    /// of its head. Forced: the request is cut off mid-way.
    BodyTimeout,
    /// A response write blocked (the peer not reading) for
    /// [`Config::write_timeout`](crate::Config::write_timeout) without
    /// progress. Forced: the response is cut off mid-way.
    WriteTimeout,
    /// Still open at the shutdown deadline: forced.
    Deadline,
    /// [`Server::close`](crate::Server::close): everything at once.
    ServerClosed,
}

impl CloseReason {
    /// The connection is cut off mid-work — at the shutdown deadline
    /// ([`CloseReason::Deadline`]), by [`Server::close`](crate::Server::close)
    /// ([`CloseReason::ServerClosed`]), or in the middle of a request by a
    /// slow client ([`CloseReason::BodyTimeout`], [`CloseReason::WriteTimeout`]):
    /// close it at once (an ordinary close, no deliberate reset). There is
    /// no complete response to protect, and a client that stopped reading
    /// or trickles its body is not worth another moment of a descriptor.
    /// For every other reason the connection is between requests or its
    /// response is complete: close it gently — shut the write side, then
    /// discard input briefly before closing — so that unread input (a
    /// pipelined request) does not make the kernel send a reset that
    /// destroys the response in flight (Go: `closeWriteAndWait`,
    /// `rstAvoidanceDelay`).
    ///
    /// ```
    /// use lameduck_core::CloseReason;
    /// assert!(CloseReason::Deadline.is_forced());
    /// assert!(CloseReason::WriteTimeout.is_forced());
    /// assert!(!CloseReason::KeepAliveOff.is_forced());
    /// assert!(!CloseReason::HeaderTimeout.is_forced());
    /// ```
    #[must_use]
    pub fn is_forced(self) -> bool {
        matches!(
            self,
            CloseReason::Deadline
                | CloseReason::ServerClosed
                | CloseReason::BodyTimeout
                | CloseReason::WriteTimeout
        )
    }
}

/// When a group of shutdown hooks runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookStage {
    /// On entering [`Phase::LameDuck`].
    LameDuck,
    /// On entering [`Phase::Draining`] (Go's `RegisterOnShutdown`, but awaited).
    Drain,
    /// At the shutdown deadline, as the remaining connections are forced
    /// closed; bounded by [`Config::forced_close_hook_timeout`](crate::Config::forced_close_hook_timeout).
    ForcedClose,
}

impl HookStage {
    pub(crate) fn bit(self) -> u8 {
        match self {
            HookStage::LameDuck => 1,
            HookStage::Drain => 2,
            HookStage::ForcedClose => 4,
        }
    }
}

/// How the server ended: carried by [`Action::Done`].
///
/// ```
/// # use std::time::{Duration, Instant};
/// use lameduck_core::{Action, Completion, Config, Server};
///
/// let t0 = Instant::now();
/// let mut server = Server::new(Config::default(), t0);
/// let l = server.add_listener().unwrap();
/// let c = server.accept(l, t0).unwrap();
/// server.request_started(c, t0).unwrap();
/// server.shutdown(t0, Some(t0 + Duration::from_secs(1)));
/// server.handle_timeout(t0 + Duration::from_secs(1));
/// let outcome = std::iter::from_fn(|| server.poll_action())
///     .find_map(|a| match a { Action::Done(o) => Some(o), _ => None })
///     .unwrap();
/// assert_eq!(outcome.completion, Completion::DeadlineExpired);
/// assert_eq!(outcome.forced, 1);
/// assert!(!outcome.is_graceful());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// How it ended.
    pub completion: Completion,
    /// Connections the core closed before they were done: New or Active ones
    /// at the shutdown deadline, every tracked one on [`Server::close`](crate::Server::close).
    pub forced: usize,
    /// Hooks were still running at the deadline (or at `close`) and were cut off.
    pub hooks_cut_off: bool,
    /// Hijacked connections still open when the server closed (never closed by
    /// the core; the application owns them).
    pub hijacked_open: usize,
}

impl Outcome {
    /// Every connection finished on its own and every hook ran to the end.
    #[must_use]
    pub fn is_graceful(&self) -> bool {
        self.completion == Completion::Drained && self.forced == 0 && !self.hooks_cut_off
    }

    /// The outcome of a server made of several machines (one per executor
    /// thread) that ended with `self` and `other`: the harsher completion
    /// (closed, then deadline, then drained), the forced and hijacked
    /// connections added up, hooks cut off if either's were.
    ///
    /// ```
    /// use lameduck_core::{Completion, Outcome};
    /// let drained = Outcome { completion: Completion::Drained, forced: 0, hooks_cut_off: false, hijacked_open: 1 };
    /// let late = Outcome { completion: Completion::DeadlineExpired, forced: 2, hooks_cut_off: true, hijacked_open: 0 };
    /// let both = drained.merge(late);
    /// assert_eq!(both, Outcome { completion: Completion::DeadlineExpired, forced: 2, hooks_cut_off: true, hijacked_open: 1 });
    /// assert!(!both.is_graceful());
    /// ```
    #[must_use]
    pub fn merge(self, other: Outcome) -> Outcome {
        let rank = |c: Completion| match c {
            Completion::Drained => 0,
            Completion::DeadlineExpired => 1,
            Completion::Closed => 2,
        };
        Outcome {
            completion: if rank(other.completion) > rank(self.completion) {
                other.completion
            } else {
                self.completion
            },
            forced: self.forced + other.forced,
            hooks_cut_off: self.hooks_cut_off || other.hooks_cut_off,
            hijacked_open: self.hijacked_open + other.hijacked_open,
        }
    }
}

/// How a shutdown completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Completion {
    /// The last tracked connection went away (and the hooks finished).
    Drained,
    /// The shutdown deadline passed; what remained was forced closed.
    DeadlineExpired,
    /// [`Server::close`](crate::Server::close) was called.
    Closed,
}
