//! What the caller reads back: the next queued [`Action`], and the queries —
//! phase, whether done, [`Counts`], a [`Snapshot`] (with its
//! [`DrainProgress`]), keep-alive, accepting paused, a connection's state
//! and listener, memory footprint — with the types they return.

use std::time::Instant;

use crate::action::Action;
use crate::conn::{ConnId, ConnState, Resolved, Stage};
use crate::error::Error;
use crate::listener::ListenerId;
use crate::phase::Phase;

use super::Server;

// Named in doc links only.
#[cfg(doc)]
use crate::config::Config;

/// Connections by state: a cheap query at any time ([`Server::counts`]).
///
/// ```
/// # use std::time::Instant;
/// use lameduck_core::{Config, Counts, Server};
///
/// let now = Instant::now();
/// let mut server = Server::new(Config::default(), now);
/// let l = server.add_listener().unwrap();
/// let c = server.accept(l, now).unwrap();
/// server.request_started(c, now).unwrap();
/// assert_eq!(server.counts(), Counts { active: 1, ..Counts::default() });
/// assert_eq!(server.counts().tracked(), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    /// [`ConnState::New`] connections.
    pub new: usize,
    /// [`ConnState::Active`] connections.
    pub active: usize,
    /// [`ConnState::Idle`] connections.
    pub idle: usize,
    /// [`ConnState::Hijacked`] connections not yet reported closed.
    pub hijacked: usize,
}

impl Counts {
    /// New + Active + Idle: the connections a drain waits for.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.new + self.active + self.idle
    }

    pub(super) fn of(&mut self, stage: Stage) -> Option<&mut usize> {
        match stage {
            Stage::New => Some(&mut self.new),
            Stage::ReadingHead | Stage::ReadingBody | Stage::Active => Some(&mut self.active),
            Stage::Idle => Some(&mut self.idle),
            Stage::Hijacked => Some(&mut self.hijacked),
            Stage::Vacant | Stage::Retired => None,
        }
    }
}

/// A point-in-time view of a server, for observability ([`Server::snapshot`]).
///
/// ```
/// # use std::time::{Duration, Instant};
/// use lameduck_core::{Config, Phase, Server};
/// let t0 = Instant::now();
/// let mut server = Server::new(Config::default(), t0);
/// let l = server.add_listener().unwrap();
/// let c = server.accept(l, t0).unwrap();
/// server.request_started(c, t0).unwrap();
/// server.shutdown(t0, Some(t0 + Duration::from_secs(30)));
/// let snap = server.snapshot();
/// assert_eq!(snap.phase, Phase::Draining);
/// assert_eq!(snap.deadline, Some(t0 + Duration::from_secs(30)));
/// let drain = snap.drain.unwrap();
/// assert_eq!((drain.connections_at_start, drain.remaining), (1, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The phase.
    pub phase: Phase,
    /// Connections by state.
    pub counts: Counts,
    /// Accepting is paused at [`Config::max_connections`].
    pub accepting_paused: bool,
    /// The shutdown deadline, while shutting down.
    pub deadline: Option<Instant>,
    /// Progress of the drain, once it has begun.
    pub drain: Option<DrainProgress>,
}

/// How far a drain has come.
///
/// ```
/// use std::time::Instant;
/// use lameduck_core::DrainProgress;
/// let p = DrainProgress { started: Instant::now(), connections_at_start: 10, remaining: 4 };
/// assert_eq!(p.finished(), 6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainProgress {
    /// When the drain began (listeners closed).
    pub started: Instant,
    /// Connections tracked when it began.
    pub connections_at_start: usize,
    /// Connections tracked now.
    pub remaining: usize,
}

impl Snapshot {
    /// The snapshot of a server made of several machines (one per executor
    /// thread): the least advanced phase, counts and drain progress added
    /// up, accepting paused if any is, the earliest deadline.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, Phase, Server};
    /// let t0 = Instant::now();
    /// let mut a = Server::new(Config::default(), t0);
    /// let b = Server::new(Config::default(), t0);
    /// let l = a.add_listener().unwrap();
    /// a.accept(l, t0).unwrap();
    /// a.shutdown(t0, Some(t0 + Duration::from_secs(5)));
    /// let both = a.snapshot().merge(b.snapshot());
    /// assert_eq!(both.phase, Phase::Serving);
    /// assert_eq!(both.counts.new, 1);
    /// assert_eq!(both.deadline, Some(t0 + Duration::from_secs(5)));
    /// ```
    #[must_use]
    pub fn merge(self, other: Snapshot) -> Snapshot {
        let counts = Counts {
            new: self.counts.new + other.counts.new,
            active: self.counts.active + other.counts.active,
            idle: self.counts.idle + other.counts.idle,
            hijacked: self.counts.hijacked + other.counts.hijacked,
        };
        let deadline = match (self.deadline, other.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let drain = match (self.drain, other.drain) {
            (Some(a), Some(b)) => Some(DrainProgress {
                started: a.started.min(b.started),
                connections_at_start: a.connections_at_start + b.connections_at_start,
                remaining: a.remaining + b.remaining,
            }),
            (a, b) => a.or(b),
        };
        Snapshot {
            phase: self.phase.min(other.phase),
            counts,
            accepting_paused: self.accepting_paused || other.accepting_paused,
            deadline,
            drain,
        }
    }
}

impl DrainProgress {
    /// Connections that have gone since the drain began (clamped at zero:
    /// New connections accepted in a lame-duck delay count from the start).
    #[must_use]
    pub fn finished(&self) -> usize {
        self.connections_at_start.saturating_sub(self.remaining)
    }
}

impl Server {
    /// The next action to carry out; drain until `None` after every input.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let mut server = Server::new(Config::default(), Instant::now());
    /// assert_eq!(server.poll_action(), None);
    /// ```
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The phase.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Phase, Server};
    /// let server = Server::new(Config::default(), Instant::now());
    /// assert_eq!(server.phase(), Phase::Serving);
    /// ```
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the server is closed: [`Action::Done`] has been queued.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// assert!(!server.is_done());
    /// server.close(now);
    /// assert!(server.is_done());
    /// ```
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Phase, counts, deadline and drain progress at once. O(1).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Phase, Server};
    /// let server = Server::new(Config::default(), Instant::now());
    /// let snap = server.snapshot();
    /// assert_eq!((snap.phase, snap.drain), (Phase::Serving, None));
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let shutting_down = matches!(
            self.phase,
            Phase::LameDuck | Phase::HandedOff | Phase::Draining
        );
        Snapshot {
            phase: self.phase,
            counts: self.counts(),
            accepting_paused: self.accept_paused,
            deadline: if shutting_down && !self.expired {
                self.time.instant(self.shutdown_deadline)
            } else {
                None
            },
            drain: self
                .time
                .instant(self.drain_started)
                .map(|started| DrainProgress {
                    started,
                    connections_at_start: self.tracked_at_drain,
                    remaining: self.counts.tracked(),
                }),
        }
    }

    /// Whether accepting is paused at [`Config::max_connections`] (between
    /// [`Action::PauseAccepting`] and [`Action::ResumeAccepting`]).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Action, Config, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config { max_connections: Some(1), ..Config::default() }, now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// assert_eq!(server.poll_action(), Some(Action::PauseAccepting));
    /// assert!(server.is_accepting_paused());
    /// server.closed(c, now).unwrap();
    /// assert_eq!(server.poll_action(), Some(Action::ResumeAccepting));
    /// ```
    #[must_use]
    pub fn is_accepting_paused(&self) -> bool {
        self.accept_paused
    }

    /// Whether a response written now may keep its connection alive (Go's
    /// `doKeepAlives`): only while [`Serving`](Phase::Serving) with
    /// [`Config::keep_alives`]. When `false`, write `Connection: close`.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// assert!(server.keep_alive());
    /// server.shutdown(now, None);
    /// assert!(!server.keep_alive());
    /// ```
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.phase == Phase::Serving && self.config.keep_alives
    }

    /// The state of a connection: [`ConnState::Closed`] for any closed one,
    /// [`Error::UnknownConn`] for an id this server never issued.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, ConnState, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::New));
    /// ```
    pub fn conn_state(&self, conn: ConnId) -> Result<ConnState, Error> {
        match self.conns.resolve(conn) {
            Resolved::Live(_) => Ok(self.stage_now(conn).state()),
            Resolved::Closed => Ok(ConnState::Closed),
            Resolved::Unknown => Err(Error::UnknownConn(conn)),
        }
    }

    /// The listener a live connection was accepted on.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// assert_eq!(server.conn_listener(c), Ok(l));
    /// ```
    pub fn conn_listener(&self, conn: ConnId) -> Result<ListenerId, Error> {
        match self.conns.resolve(conn) {
            Resolved::Live(_) => Ok(self.conns.slot(conn).listener),
            Resolved::Closed => Err(Error::ConnClosed(conn)),
            Resolved::Unknown => Err(Error::UnknownConn(conn)),
        }
    }

    /// Connections by state. O(1), plus a read of each lent connection's
    /// lease while any is lent ([`lease`](crate::lease)).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let server = Server::new(Config::default(), Instant::now());
    /// assert_eq!(server.counts().tracked(), 0);
    /// ```
    #[must_use]
    pub fn counts(&self) -> Counts {
        let mut counts = self.counts;
        if self.lent > 0 {
            // A lent connection is counted Idle; its lease may say Active.
            for index in 0..self.conns.capacity() {
                if let Some(conn) = self.conns.live_id(index)
                    && self.conns.slot(conn).lent
                    && self.stage_now(conn) != Stage::Idle
                {
                    counts.idle -= 1;
                    counts.active += 1;
                }
            }
        }
        counts
    }

    /// Heap bytes the machine holds for connections, deadlines and queued
    /// actions (capacity, not length): for memory-per-connection figures.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// for _ in 0..1000 {
    ///     let _ = server.accept(l, now).unwrap();
    /// }
    /// assert!(server.memory_footprint() / 1000 <= 64);
    /// ```
    #[must_use]
    pub fn memory_footprint(&self) -> usize {
        self.conns.heap_bytes()
            + self.deadlines.heap_bytes()
            + self.words.heap_bytes()
            + self.actions.capacity() * size_of::<Action>()
    }
}
