//! The server lifecycle machine: [`Server`], Go's `net/http`
//! `Server.Shutdown` model as a sans-IO state machine.
//!
//! This file holds the struct and its construction; its methods live by
//! job in the sibling files, each an `impl Server` block:
//!
//! - `conn_events.rs`: connection inputs (accept, a request's steps,
//!   streams, hijack, closed);
//! - `listeners.rs`: listener inputs (added, closed), and closing them;
//! - `shutdown.rs`: phase changes (shutdown, hand-off, close, lame duck,
//!   drain, hooks, the deadline's forced close, completion);
//! - `timers.rs`: `poll_timeout`/`handle_timeout`, running what is due,
//!   arming a connection's timer;
//! - `lending.rs`: leases, lending Idle connections, taking them back;
//! - `slots.rs`: connection-table bookkeeping (stage, counts, removal);
//! - `queries.rs`: the action queue, queries, and the types they return
//!   ([`Counts`], [`Snapshot`], [`DrainProgress`]).

mod conn_events;
mod lending;
mod listeners;
mod queries;
mod shutdown;
mod slots;
mod timers;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::action::Action;
use crate::config::Config;
use crate::conn::ConnTable;
use crate::deadlines::DeadlineQueue;
use crate::lease::Words;
use crate::listener::ListenerTable;
use crate::phase::Phase;
use crate::time::{Nanos, Timeline};

pub use queries::{Counts, DrainProgress, Snapshot};

/// The lifecycle of one server and its connections: a sans-IO state machine.
///
/// It owns no socket, reads no clock and starts no task. The caller (an
/// adapter) reports what happened, passing the current time, and carries out
/// the [`Action`]s the machine queues. See the [crate docs](crate) for the
/// run-loop contract.
///
/// ```
/// use std::time::{Duration, Instant};
/// use lameduck_core::{Action, CloseReason, Config, Server};
///
/// let t0 = Instant::now(); // virtual time starts here and moves only when we say
/// let mut server = Server::new(Config::default(), t0);
/// let l = server.add_listener().unwrap();
/// let busy = server.accept(l, t0).unwrap();
/// let idle = server.accept(l, t0).unwrap();
/// server.request_started(busy, t0).unwrap();
/// server.request_started(idle, t0).unwrap();
/// server.response_done(idle, t0).unwrap();
///
/// server.shutdown(t0, None);
/// let actions: Vec<_> = std::iter::from_fn(|| server.poll_action()).collect();
/// assert!(actions.contains(&Action::CloseListener(l)));
/// assert!(actions.contains(&Action::CloseConn { conn: idle, reason: CloseReason::Drain }));
/// assert!(actions.contains(&Action::FinishAndClose(busy)));
///
/// // The busy connection's response completes: the drain completes in that call.
/// server.response_done(busy, t0 + Duration::from_millis(30)).unwrap();
/// assert_eq!(
///     server.poll_action(),
///     Some(Action::CloseConn { conn: busy, reason: CloseReason::KeepAliveOff })
/// );
/// assert!(server.is_done());
/// ```
#[derive(Debug)]
pub struct Server {
    config: Config,
    time: Timeline,
    phase: Phase,
    listeners: ListenerTable,
    conns: ConnTable,
    deadlines: DeadlineQueue,
    counts: Counts,
    /// End of the lame-duck delay while in [`Phase::LameDuck`].
    lame_duck_end: Nanos,
    /// The shutdown deadline while shutting down.
    shutdown_deadline: Nanos,
    /// [`HookStage::bit`]s of hook groups started and not finished.
    hooks_pending: u8,
    /// Connections closed by force so far (deadline or `close`).
    forced: usize,
    /// `PauseAccepting` was queued and `ResumeAccepting` not yet.
    accept_paused: bool,
    /// The shutdown deadline passed; only the forced-close hooks remain,
    /// until `shutdown_deadline` (now their time limit).
    expired: bool,
    /// Some hooks were cut off at the deadline.
    hooks_cut_off: bool,
    /// When the drain began, and how many connections it started with.
    drain_started: Nanos,
    tracked_at_drain: usize,
    actions: VecDeque<Action>,
    /// The lease words of the slots, by slot index ([`Server::lease`]).
    words: Words,
    /// Connections lent now.
    lent: usize,
    /// How long a lent connection stays lent without a look: the shortest
    /// of the header, body and idle timeouts (`None`: no timer needs one).
    lease_check: Option<Duration>,
}

impl Server {
    /// A server in [`Phase::Serving`], with no listener. `now` is the origin of
    /// its time.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Phase, Server};
    ///
    /// let server = Server::new(Config::default(), Instant::now());
    /// assert_eq!(server.phase(), Phase::Serving);
    /// ```
    #[must_use]
    pub fn new(config: Config, now: Instant) -> Server {
        Server {
            time: Timeline::new(now),
            phase: Phase::Serving,
            listeners: ListenerTable::default(),
            conns: ConnTable::default(),
            deadlines: DeadlineQueue::default(),
            counts: Counts::default(),
            lame_duck_end: Nanos::NEVER,
            shutdown_deadline: Nanos::NEVER,
            hooks_pending: 0,
            forced: 0,
            accept_paused: false,
            expired: false,
            hooks_cut_off: false,
            drain_started: Nanos::NEVER,
            tracked_at_drain: 0,
            actions: VecDeque::new(),
            words: Words::default(),
            lent: 0,
            lease_check: [
                config.header_timeout,
                config.body_timeout,
                config.idle_timeout,
            ]
            .into_iter()
            .flatten()
            .min(),
            config,
        }
    }

    /// The configuration.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let server = Server::new(Config::default(), Instant::now());
    /// assert!(server.config().keep_alives);
    /// ```
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }
}
