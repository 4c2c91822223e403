//! Lifecycle events, for logs and metrics.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use lameduck_core::{CloseReason, Completion, ConnId, HookStage, ListenerId, Outcome, Phase};

/// Something that happened in a server's life, reported to the observer
/// given to [`Builder::on_event`](crate::Builder::on_event). `Display` gives
/// one line, fit for a log.
///
/// ```
/// use lameduck::Event;
/// use lameduck::core::Phase;
///
/// assert_eq!(Event::Phase(Phase::Draining).to_string(), "phase: draining");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The server entered a phase.
    Phase(Phase),
    /// The core closed a connection (whatever the reason; a connection
    /// that ends on its own is not reported).
    ConnClosed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// An accept failed. With `retry_in` the listener backs off and retries
    /// (Go: 5 ms doubling to 1 s, e.g. on `EMFILE`); without, the listener
    /// is lost.
    AcceptError {
        /// The listener.
        listener: ListenerId,
        /// The error.
        error: io::Error,
        /// When it retries; `None`: it stopped.
        retry_in: Option<Duration>,
    },
    /// `Config::max_connections` are open: accepting paused (new clients
    /// wait in the listen backlog).
    AcceptPaused,
    /// Below the connection limit again: accepting resumed.
    AcceptResumed,
    /// Hooks of this stage were still running when the core stopped waiting
    /// (the shutdown deadline, or `close()`): they were dropped.
    HooksCutOff(HookStage),
    /// The server is done; how it ended.
    Done(Outcome),
}

impl Event {
    /// Whether this event is a connection closed by force, before it was
    /// done: at the shutdown deadline, by `close()`, or mid-request by a
    /// body or write timeout ([`CloseReason::is_forced`]).
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::core::{CloseReason, Config, Server};
    /// # let now = std::time::Instant::now();
    /// # let mut server = Server::new(Config::default(), now);
    /// # let l = server.add_listener().unwrap();
    /// # let conn = server.accept(l, now).unwrap();
    /// let cut = Event::ConnClosed { conn, reason: CloseReason::WriteTimeout };
    /// assert!(cut.is_forced_close());
    /// assert_eq!(cut.level(), log::Level::Debug, "a slow client is no news");
    /// ```
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::core::Phase;
    /// assert!(!Event::Phase(Phase::Closed).is_forced_close());
    /// ```
    #[must_use]
    pub fn is_forced_close(&self) -> bool {
        matches!(self, Event::ConnClosed { reason, .. } if reason.is_forced())
    }

    /// The `log` level lameduck logs this event at (target `lameduck`):
    /// phases and a graceful end are `Info`; closes the application expects
    /// (idle, timeouts — the body and write timeouts too, though forced —
    /// keep-alive off) `Debug`; closes forced by the shutdown deadline or
    /// `close()`, cut-off hooks, accept back-off, the connection limit and a
    /// forced end `Warn`; a lost listener `Error`.
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::core::Phase;
    /// assert_eq!(Event::Phase(Phase::Draining).level(), log::Level::Info);
    /// ```
    #[must_use]
    pub fn level(&self) -> log::Level {
        match self {
            Event::Phase(_) => log::Level::Info,
            Event::ConnClosed {
                reason: CloseReason::Deadline | CloseReason::ServerClosed,
                ..
            } => log::Level::Warn,
            Event::ConnClosed { .. } => log::Level::Debug,
            Event::AcceptError {
                retry_in: Some(_), ..
            } => log::Level::Warn,
            Event::AcceptError { retry_in: None, .. } => log::Level::Error,
            Event::AcceptPaused | Event::AcceptResumed | Event::HooksCutOff(_) => log::Level::Warn,
            Event::Done(outcome) if outcome.is_graceful() => log::Level::Info,
            Event::Done(_) => log::Level::Warn,
        }
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Serving => "serving",
        Phase::LameDuck => "lame duck",
        Phase::HandedOff => "handed off",
        Phase::Draining => "draining",
        Phase::Closed => "closed",
    }
}

fn reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Drain => "idle at drain",
        CloseReason::KeepAliveOff => "response done, keep-alive off",
        CloseReason::NewConnGrace => "no request within the new-connection grace",
        CloseReason::IdleTimeout => "idle timeout",
        CloseReason::HeaderTimeout => "request header timeout",
        CloseReason::BodyTimeout => "request body timeout",
        CloseReason::WriteTimeout => "write timeout (the client stopped reading)",
        CloseReason::Deadline => "forced at the shutdown deadline",
        CloseReason::ServerClosed => "forced by close",
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Phase(phase) => write!(f, "phase: {}", phase_name(*phase)),
            Event::ConnClosed { conn, reason } => {
                write!(f, "closed {conn}: {}", reason_name(*reason))
            }
            Event::AcceptError {
                listener,
                error,
                retry_in: Some(delay),
            } => write!(
                f,
                "accept on {listener} failed: {error}; retrying in {} ms",
                delay.as_millis()
            ),
            Event::AcceptError {
                listener, error, ..
            } => write!(f, "accept on {listener} failed: {error}; listener stopped"),
            Event::AcceptPaused => f.write_str("at the connection limit: accepting paused"),
            Event::AcceptResumed => f.write_str("below the connection limit: accepting resumed"),
            Event::HooksCutOff(stage) => write!(f, "{stage:?} hooks cut off"),
            Event::Done(outcome) => {
                let how = match outcome.completion {
                    Completion::Drained => "drained",
                    Completion::DeadlineExpired => "deadline expired",
                    Completion::Closed => "closed",
                };
                write!(
                    f,
                    "done: {how}, forced={}, hooks_cut_off={}, hijacked_open={}",
                    outcome.forced, outcome.hooks_cut_off, outcome.hijacked_open
                )
            }
        }
    }
}

/// The observer: called after the driver's lock is released, so it may use
/// the [`Handle`](crate::Handle).
pub(crate) type Observer = Arc<dyn Fn(&Event) + Send + Sync>;
