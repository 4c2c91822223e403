//! The server lifecycle machine.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::action::{Action, CloseReason, Completion, HookStage, Outcome};
use crate::config::Config;
use crate::conn::{ConnId, ConnState, ConnTable, Resolved, Stage, Timer};
use crate::deadlines::DeadlineQueue;
use crate::error::{ConnEvent, Error};
use crate::lease::{Lease, LeaseClock, Words};
use crate::listener::{ListenerId, ListenerState, ListenerTable};
use crate::phase::Phase;
use crate::time::{Nanos, Timeline};

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

    fn of(&mut self, stage: Stage) -> Option<&mut usize> {
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

    // ----- listeners -------------------------------------------------------

    /// Registers a listener. Refused with [`Error::ServerClosed`] once shutdown
    /// has begun (Go: `trackListener` returns false when `shuttingDown()`, and
    /// `Serve` returns `ErrServerClosed`).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Error, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// assert!(server.add_listener().is_ok());
    /// server.close(now);
    /// assert_eq!(server.add_listener(), Err(Error::ServerClosed));
    /// ```
    pub fn add_listener(&mut self) -> Result<ListenerId, Error> {
        if self.phase.is_shutting_down() {
            return Err(Error::ServerClosed);
        }
        Ok(self.listeners.add())
    }

    /// The caller closed or lost a listener on its own (e.g. a fatal accept
    /// error), or finished releasing it after [`Action::ReleaseListener`]
    /// (its accept loop ended). Accepts on it are refused from now on; a
    /// drain that waited only for a released listener completes in this
    /// call.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Error, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// server.listener_closed(l).unwrap();
    /// assert_eq!(server.accept(l, now), Err(Error::ListenerClosed(l)));
    /// ```
    pub fn listener_closed(&mut self, listener: ListenerId) -> Result<(), Error> {
        match self.listeners.state(listener) {
            None => Err(Error::UnknownListener(listener)),
            Some(_) => {
                self.listeners.close(listener);
                self.maybe_complete();
                Ok(())
            }
        }
    }

    // ----- connection events -----------------------------------------------

    /// A connection was accepted on `listener`: it starts [`ConnState::New`].
    ///
    /// Accepted while [`Serving`](Phase::Serving) or in the
    /// [`LameDuck`](Phase::LameDuck) delay; refused with
    /// [`Error::ServerClosed`] once draining (an accept that raced the
    /// [`Action::CloseListener`]): drop the socket. On a listener released
    /// to a successor ([`Action::ReleaseListener`]) an accept that raced the
    /// release is taken even while draining — the kernel gave that
    /// connection to this process, and refusing it would reset it — until
    /// the caller reports the listener closed.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, ConnState, Error, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::New));
    /// server.shutdown(now, None);
    /// assert_eq!(server.accept(l, now), Err(Error::ServerClosed));
    /// ```
    pub fn accept(&mut self, listener: ListenerId, now: Instant) -> Result<ConnId, Error> {
        let now = self.enter(now);
        let state = self.listeners.state(listener);
        let released = state == Some(ListenerState::Released);
        if self.phase == Phase::Closed || (self.phase == Phase::Draining && !released) {
            return Err(Error::ServerClosed);
        }
        match state {
            None => return Err(Error::UnknownListener(listener)),
            Some(ListenerState::Closed) => return Err(Error::ListenerClosed(listener)),
            Some(ListenerState::Open | ListenerState::Released) => {}
        }
        if self.at_capacity() {
            return Err(Error::AtCapacity);
        }
        let id = self.conns.insert(listener, now);
        self.counts.new += 1;
        if self.at_capacity() && !self.accept_paused {
            self.accept_paused = true;
            self.actions.push_back(Action::PauseAccepting);
        }
        let (at, timer) = self.new_conn_timer(now);
        self.arm(id, timer, at);
        self.run_timers(now);
        Ok(id)
    }

    /// The first byte of a request was read: New or Idle → Active.
    ///
    /// While draining, an Idle connection is already closed (Go closes idle
    /// connections when shutdown begins and drops request bytes that race
    /// it): the answer is [`Error::ConnClosed`] and the caller closes without
    /// a response. A New connection may still start its request while
    /// draining (within the grace); its response goes out without keep-alive.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, ConnState, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// server.request_started(c, now).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Active));
    /// ```
    pub fn request_started(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        let stage = self.stage_taken_back(conn)?;
        if !matches!(stage, Stage::New | Stage::Idle) {
            return Err(self.invalid(conn, stage, ConnEvent::RequestStarted));
        }
        // A write already blocked counts against this request from its start.
        // (Set before the stage: outside a request the mark is not a deadline.)
        let slot = self.conns.slot_mut(conn);
        slot.mark = match self.config.write_timeout {
            Some(d) if slot.write_blocked => now.after(d),
            _ => Nanos::NEVER,
        };
        self.set_stage(conn, Stage::ReadingHead);
        self.notify_if_draining(conn);
        match self.config.header_timeout {
            Some(d) => self.arm(conn, Timer::Header, now.after(d)),
            None => self.arm(conn, Timer::None, Nanos::NEVER),
        }
        self.run_timers(now);
        Ok(())
    }

    /// The request head is complete: the header timeout no longer applies,
    /// and the body timeout ([`Config::body_timeout`]) starts. Idempotent
    /// while Active: it never restarts the body timeout.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, ConnState, Server};
    /// let t0 = Instant::now();
    /// let config = Config { header_timeout: Some(Duration::from_secs(1)), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, t0).unwrap();
    /// server.request_started(c, t0).unwrap();
    /// server.headers_complete(c, t0).unwrap();
    /// server.handle_timeout(t0 + Duration::from_secs(10));
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Active));
    /// ```
    pub fn headers_complete(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        match self.stage_taken_back(conn)? {
            Stage::ReadingHead => {
                self.set_stage(conn, Stage::ReadingBody);
                match self.config.body_timeout {
                    Some(d) => self.arm(conn, Timer::Body, now.after(d)),
                    None => self.arm(conn, Timer::None, Nanos::NEVER),
                }
            }
            Stage::ReadingBody | Stage::Active => {}
            stage => return Err(self.invalid(conn, stage, ConnEvent::HeadersComplete)),
        }
        self.run_timers(now);
        Ok(())
    }

    /// The request has been read completely — its body to the end — or the
    /// application is done with it (it answered without reading the rest):
    /// the body timeout ([`Config::body_timeout`]) no longer applies. Implies
    /// [`headers_complete`](Self::headers_complete) when reported before it,
    /// so a request without a body needs this one call. Idempotent while
    /// Active. An adapter that never reports it only forgoes the body
    /// timeout.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Action, CloseReason, Config, ConnState, Server};
    /// let t0 = Instant::now();
    /// let at = |ms| t0 + Duration::from_millis(ms);
    /// let config = Config { body_timeout: Some(Duration::from_secs(1)), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// let l = server.add_listener().unwrap();
    /// let upload = server.accept(l, at(0)).unwrap();
    /// server.request_started(upload, at(0)).unwrap();
    /// server.headers_complete(upload, at(10)).unwrap();
    /// assert_eq!(server.poll_timeout(), Some(at(1_010)), "the whole body by then");
    /// server.body_complete(upload, at(900)).unwrap();
    /// assert_eq!(server.poll_timeout(), None);
    ///
    /// let stuck = server.accept(l, at(1_000)).unwrap();
    /// server.request_started(stuck, at(1_000)).unwrap();
    /// server.headers_complete(stuck, at(1_000)).unwrap();
    /// server.handle_timeout(at(2_000));
    /// assert_eq!(
    ///     server.poll_action(),
    ///     Some(Action::CloseConn { conn: stuck, reason: CloseReason::BodyTimeout })
    /// );
    /// assert_eq!(server.conn_state(upload), Ok(ConnState::Active));
    /// ```
    pub fn body_complete(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        match self.stage_taken_back(conn)? {
            Stage::ReadingHead | Stage::ReadingBody => {
                self.set_stage(conn, Stage::Active);
                self.arm(conn, Timer::None, Nanos::NEVER);
            }
            Stage::Active => {}
            stage => return Err(self.invalid(conn, stage, ConnEvent::BodyComplete)),
        }
        self.run_timers(now);
        Ok(())
    }

    /// A write to the connection found its socket full: nothing more can be
    /// written until the peer reads. Report the edge only — the first write
    /// that would block, not each one — and
    /// [`write_unblocked`](Self::write_unblocked) when a write gets through
    /// again. While a request is in progress, the connection is closed by
    /// force ([`CloseReason::WriteTimeout`]) if the write stays blocked for
    /// [`Config::write_timeout`] (counted from the request's start if it
    /// blocked before). Idempotent while blocked: the stall counts from the
    /// first report. Harmless for a hijacked connection (never closed by the
    /// core).
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Action, CloseReason, Config, Server};
    /// let t0 = Instant::now();
    /// let at = |ms| t0 + Duration::from_millis(ms);
    /// let config = Config { write_timeout: Some(Duration::from_secs(1)), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, at(0)).unwrap();
    /// server.request_started(c, at(0)).unwrap();
    /// server.body_complete(c, at(0)).unwrap();
    /// // A long stream: the socket fills now and then, and drains again.
    /// server.write_blocked(c, at(5_000)).unwrap();
    /// server.write_unblocked(c, at(5_900)).unwrap();
    /// server.write_blocked(c, at(9_000)).unwrap();
    /// assert_eq!(server.poll_timeout(), Some(at(10_000)));
    /// // Then the client stops reading.
    /// server.handle_timeout(at(10_000));
    /// assert_eq!(
    ///     server.poll_action(),
    ///     Some(Action::CloseConn { conn: c, reason: CloseReason::WriteTimeout })
    /// );
    /// ```
    pub fn write_blocked(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        let stage = self.stage_taken_back(conn)?;
        let slot = self.conns.slot_mut(conn);
        if stage != Stage::Hijacked && !slot.write_blocked {
            slot.write_blocked = true;
            if let (true, Some(d)) = (stage.in_request(), self.config.write_timeout) {
                self.set_mark(conn, now.after(d));
            }
        }
        self.run_timers(now);
        Ok(())
    }

    /// A write got through after [`write_blocked`](Self::write_blocked): the
    /// peer is reading again, and the write stall ends. Idempotent.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, Server};
    /// let t0 = Instant::now();
    /// let config = Config { write_timeout: Some(Duration::from_secs(1)), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, t0).unwrap();
    /// server.request_started(c, t0).unwrap();
    /// server.write_blocked(c, t0).unwrap();
    /// assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    /// server.write_unblocked(c, t0).unwrap();
    /// assert_eq!(server.poll_timeout(), None);
    /// ```
    pub fn write_unblocked(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        let stage = self.stage_taken_back(conn)?;
        let slot = self.conns.slot_mut(conn);
        if slot.write_blocked {
            slot.write_blocked = false;
            if stage.in_request() {
                self.set_mark(conn, Nanos::NEVER);
            }
        }
        self.run_timers(now);
        Ok(())
    }

    /// The response is completely written. With keep-alive on
    /// ([`keep_alive`](Self::keep_alive)) the connection goes Idle; otherwise
    /// the core closes it ([`CloseReason::KeepAliveOff`]), and while draining
    /// that may complete the drain in this very call.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, ConnState, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// server.request_started(c, now).unwrap();
    /// server.response_done(c, now).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Idle));
    /// ```
    pub fn response_done(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        self.finish_response(conn, now, false)
    }

    /// Like [`response_done`](Self::response_done), for a response that
    /// went out **without** `Connection: close` although keep-alive is off
    /// by now (its head was written before the shutdown began, e.g. a
    /// streamed body): the client may already be sending its next request
    /// on the connection. During the lame-duck delay — or a hand-off's
    /// linger ([`hand_off`](Self::hand_off)) — the connection then goes
    /// Idle, so that request is answered (with `Connection: close`) instead
    /// of meeting a closed connection; the drain closes it if it stays
    /// idle. Otherwise it is `response_done`.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, ConnState, Server};
    /// let t0 = Instant::now();
    /// let config = Config { lame_duck: Duration::from_secs(1), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, t0).unwrap();
    /// server.request_started(c, t0).unwrap();
    /// // The head went out with keep-alive; then the shutdown began.
    /// server.shutdown(t0, None);
    /// server.response_done_kept_alive(c, t0).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Idle));
    /// ```
    pub fn response_done_kept_alive(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        self.finish_response(conn, now, true)
    }

    fn finish_response(
        &mut self,
        conn: ConnId,
        now: Instant,
        kept_alive: bool,
    ) -> Result<(), Error> {
        let now = self.enter(now);
        let stage = self.stage_taken_back(conn)?;
        if !stage.in_request() || self.conns.slot(conn).streams > 0 {
            return Err(self.invalid(conn, stage, ConnEvent::ResponseDone));
        }
        let promised = kept_alive && self.config.keep_alives && self.phase.is_delay();
        self.idle_or_close(conn, now, promised);
        self.run_timers(now);
        Ok(())
    }

    /// The connection's work is done (its response, or its last stream):
    /// Idle with keep-alive on (or `promised`), else closed.
    fn idle_or_close(&mut self, conn: ConnId, now: Nanos, promised: bool) {
        if self.keep_alive() || promised {
            self.set_stage(conn, Stage::Idle);
            // Outside a request a blocked write is not timed.
            self.conns.slot_mut(conn).mark = Nanos::NEVER;
            if !self.lend(conn, now) {
                match self.config.idle_timeout {
                    Some(d) => self.arm(conn, Timer::Idle, now.after(d)),
                    None => self.arm(conn, Timer::None, Nanos::NEVER),
                }
            }
        } else {
            self.close_conn(conn, CloseReason::KeepAliveOff);
            self.maybe_complete();
        }
    }

    /// A stream opened on a multiplexed connection (an HTTP/2 request):
    /// New or Idle → Active; on an Active multiplexed connection, one more
    /// open stream. A multiplexed connection is Active while any stream is
    /// open and Idle when none is (Go's rule for HTTP/2), so the drain
    /// treats it like any other: closed at once if idle, finished (HTTP/2:
    /// GOAWAY, then the open streams complete) if active.
    ///
    /// With keep-alive off ([`keep_alive`](Self::keep_alive) `false` when
    /// a stream opens — lame duck, a drain, or [`Config::keep_alives`]
    /// off) the adapter ends the connection the graceful way (HTTP/2:
    /// GOAWAY); the core closes it when its last stream completes.
    ///
    /// Such a connection reports its streams with `stream_opened` and
    /// [`stream_closed`](Self::stream_closed) instead of the one-request
    /// inputs (`request_started` … `response_done`); the two kinds do not
    /// mix while a request or stream is open. Per-request timers (header,
    /// body) do not apply to streams — a stream's head arrives whole; the
    /// new-connection grace, header timeout (from accept, while New: the
    /// handshake), idle timeout and write-stall timeout apply to the
    /// connection as usual. While draining a stream may still open on an
    /// Active connection (the graceful GOAWAY lets streams already on the
    /// way in complete) and on a New one; an Idle one is closed already
    /// ([`Error::ConnClosed`]).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Action, CloseReason, Config, ConnState, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// server.stream_opened(c, now).unwrap();
    /// server.stream_opened(c, now).unwrap();
    /// server.shutdown(now, None);
    /// assert!(std::iter::from_fn(|| server.poll_action()).any(|a| a == Action::FinishAndClose(c)));
    /// server.stream_closed(c, now).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Active), "one stream still open");
    /// server.stream_closed(c, now).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    /// assert!(server.is_done());
    /// ```
    pub fn stream_opened(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        let stage = self.stage_taken_back(conn)?;
        let streams = self.conns.slot(conn).streams;
        match stage {
            Stage::New | Stage::Idle => {
                let slot = self.conns.slot_mut(conn);
                // A write already blocked counts from the stream's start.
                slot.mark = match self.config.write_timeout {
                    Some(d) if slot.write_blocked => now.after(d),
                    _ => Nanos::NEVER,
                };
                slot.streams = 1;
                self.set_stage(conn, Stage::Active);
                self.notify_if_draining(conn);
                self.arm(conn, Timer::None, Nanos::NEVER);
            }
            Stage::Active if streams > 0 && streams < u16::MAX => {
                self.conns.slot_mut(conn).streams = streams + 1;
            }
            _ => return Err(self.invalid(conn, stage, ConnEvent::StreamOpened)),
        }
        self.run_timers(now);
        Ok(())
    }

    /// A stream of a multiplexed connection completed (its response was
    /// sent in full, or it was reset). The last one leaves the connection
    /// Idle — or closed, with keep-alive off, which may complete the drain
    /// in this call. See [`stream_opened`](Self::stream_opened).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, ConnState, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// server.stream_opened(c, now).unwrap();
    /// server.stream_closed(c, now).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Idle));
    /// assert!(server.stream_closed(c, now).is_err(), "no stream is open");
    /// ```
    pub fn stream_closed(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        let stage = self.stage_taken_back(conn)?;
        let streams = self.conns.slot(conn).streams;
        if stage != Stage::Active || streams == 0 {
            return Err(self.invalid(conn, stage, ConnEvent::StreamClosed));
        }
        self.conns.slot_mut(conn).streams = streams - 1;
        if streams == 1 {
            self.idle_or_close(conn, now, false);
        }
        self.run_timers(now);
        Ok(())
    }

    /// The connection was taken over by the application (e.g. an HTTP
    /// upgrade): it becomes [`ConnState::Hijacked`], no longer holds a drain
    /// (unless [`Config::wait_for_hijacked`]) and is never closed by the core.
    /// Hijacked while draining, it is told at once ([`Action::NotifyHijacked`]).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, ConnState, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// server.request_started(c, now).unwrap();
    /// server.hijack(c, now).unwrap();
    /// server.shutdown(now, None);
    /// assert!(server.is_done(), "a hijacked connection does not hold the drain");
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Hijacked));
    /// ```
    pub fn hijack(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        let stage = self.stage_taken_back(conn)?;
        if stage == Stage::Hijacked {
            return Err(self.invalid(conn, stage, ConnEvent::Hijack));
        }
        self.set_stage(conn, Stage::Hijacked);
        self.conns.slot_mut(conn).mark = Nanos::NEVER;
        self.arm(conn, Timer::None, Nanos::NEVER);
        if self.phase == Phase::Draining {
            self.actions.push_back(Action::NotifyHijacked(conn));
        }
        self.maybe_complete();
        self.run_timers(now);
        Ok(())
    }

    /// The connection closed on its own (peer gone, error, handler finished,
    /// or the caller carried out an [`Action::CloseConn`]). Idempotent: a
    /// connection already closed is `Ok`.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, ConnState, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// server.closed(c, now).unwrap();
    /// server.closed(c, now).unwrap();
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    /// ```
    pub fn closed(&mut self, conn: ConnId, now: Instant) -> Result<(), Error> {
        let now = self.enter(now);
        match self.conns.resolve(conn) {
            Resolved::Unknown => return Err(Error::UnknownConn(conn)),
            Resolved::Closed => {}
            Resolved::Live(_) => {
                self.remove(conn);
                self.maybe_complete();
            }
        }
        self.run_timers(now);
        Ok(())
    }

    // ----- lifecycle -------------------------------------------------------

    /// Begins a graceful shutdown (Go's `Server.Shutdown`), with an optional
    /// deadline by which whatever remains is closed by force.
    ///
    /// With a [`Config::lame_duck`] delay the server first enters
    /// [`Phase::LameDuck`]; then, or at once, [`Phase::Draining`]: listeners
    /// close, Idle connections close, Active ones finish their response
    /// without keep-alive, New ones get [`Config::new_conn_grace`] from their
    /// accept. The drain completes the moment the last tracked connection is
    /// gone (no polling), with [`Action::Done`].
    ///
    /// Calling it again is harmless: it can only bring the deadline earlier.
    /// After [`close`](Self::close) it does nothing.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, Phase, Server};
    /// let t0 = Instant::now();
    /// let config = Config { lame_duck: Duration::from_secs(2), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// server.shutdown(t0, Some(t0 + Duration::from_secs(30)));
    /// assert_eq!(server.phase(), Phase::LameDuck);
    /// assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    /// server.handle_timeout(t0 + Duration::from_secs(2));
    /// assert_eq!(server.phase(), Phase::Closed, "nothing to drain");
    /// ```
    pub fn shutdown(&mut self, now: Instant, deadline: Option<Instant>) {
        let lame_duck = self.config.lame_duck;
        self.begin_shutdown(now, deadline, lame_duck, Phase::LameDuck);
    }

    /// Hands the listeners to a successor (a restart's hand-off) and begins
    /// this server's shutdown — or refuses, changing nothing, with
    /// [`Error::ServerClosed`] if a shutdown (or close) has begun already.
    ///
    /// This is where "stop, or hand off?" is decided, once: whichever of
    /// `shutdown`/`close` and `hand_off` comes first wins. After a hand-off,
    /// `shutdown` only brings the deadline earlier; after a shutdown began,
    /// the successor is not wanted (kill it) — its listeners are being
    /// closed.
    ///
    /// Every open listener is released ([`Action::ReleaseListener`]): stop
    /// accepting on it without shutting the socket down (the successor
    /// accepts on it now); accepts that raced the release are still taken,
    /// and the drain does not complete before every released listener is
    /// reported closed ([`listener_closed`](Self::listener_closed)).
    /// Keep-alive goes off at once, but idle keep-alive connections stay
    /// open for `linger` ([`Phase::HandedOff`]), so that each client's next
    /// request is still answered — with `Connection: close` — instead of
    /// finding its connection closed under it; then the drain, as
    /// [`shutdown`](Self::shutdown)'s. [`Config::lame_duck`] does not apply
    /// and lame-duck hooks do not run (the service stays available, through
    /// the successor); drain hooks do.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Action, CloseReason, Config, Phase, Server};
    /// let t0 = Instant::now();
    /// let mut server = Server::new(Config::default(), t0);
    /// let l = server.add_listener().unwrap();
    /// let idle = server.accept(l, t0).unwrap();
    /// server.request_started(idle, t0).unwrap();
    /// server.response_done(idle, t0).unwrap();
    /// server.hand_off(t0, Duration::from_secs(1), None).unwrap();
    /// assert_eq!(server.poll_action(), Some(Action::ReleaseListener(l)));
    /// server.listener_closed(l).unwrap(); // its accept loop ended
    /// assert_eq!(server.phase(), Phase::HandedOff);
    /// assert!(!server.keep_alive());
    /// // The idle client's next request is answered, then its connection closes.
    /// server.request_started(idle, t0 + Duration::from_millis(10)).unwrap();
    /// server.response_done(idle, t0 + Duration::from_millis(20)).unwrap();
    /// let closes: Vec<_> = std::iter::from_fn(|| server.poll_action()).collect();
    /// assert!(closes.contains(&Action::CloseConn { conn: idle, reason: CloseReason::KeepAliveOff }));
    /// server.handle_timeout(t0 + Duration::from_secs(1));
    /// assert_eq!(server.phase(), Phase::Closed);
    /// ```
    pub fn hand_off(
        &mut self,
        now: Instant,
        linger: Duration,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        if self.phase.is_shutting_down() {
            return Err(Error::ServerClosed);
        }
        let actions = &mut self.actions;
        self.listeners
            .move_all(ListenerState::Open, ListenerState::Released, |l| {
                actions.push_back(Action::ReleaseListener(l));
            });
        self.begin_shutdown(now, deadline, linger, Phase::HandedOff);
        Ok(())
    }

    fn begin_shutdown(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
        delay: Duration,
        delay_phase: Phase,
    ) {
        let now = self.enter(now);
        self.take_back_all();
        let deadline = deadline.map_or(Nanos::NEVER, |d| self.time.nanos(d));
        match self.phase {
            Phase::Serving => {
                self.shutdown_deadline = deadline;
                if delay.is_zero() {
                    self.begin_drain(now);
                } else {
                    self.phase = delay_phase;
                    self.lame_duck_end = now.after(delay);
                    self.actions.push_back(Action::PhaseChanged(delay_phase));
                    if delay_phase == Phase::LameDuck {
                        self.start_hooks(HookStage::LameDuck);
                    }
                    self.keep_alive_turned_off();
                }
            }
            Phase::LameDuck | Phase::HandedOff | Phase::Draining => {
                self.shutdown_deadline = self.shutdown_deadline.min(deadline);
            }
            Phase::Closed => {}
        }
        self.run_timers(now);
    }

    /// Closes everything now (Go's `Server.Close`): listeners, every tracked
    /// connection whatever its state, and the shutdown if one is under way.
    /// Hijacked connections are told, not closed. Hooks not yet finished are
    /// cut off. Does nothing once [`Phase::Closed`].
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Action, Completion, Config, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// server.request_started(c, now).unwrap();
    /// server.close(now);
    /// let done = std::iter::from_fn(|| server.poll_action()).last().unwrap();
    /// let Action::Done(outcome) = done else { panic!("Done comes last") };
    /// assert_eq!((outcome.completion, outcome.forced), (Completion::Closed, 1));
    /// ```
    pub fn close(&mut self, now: Instant) {
        let now = self.enter(now);
        if self.phase == Phase::Closed {
            return;
        }
        self.take_back_all();
        let hijacked_told = self.phase == Phase::Draining;
        self.close_listeners();
        self.listeners
            .move_all(ListenerState::Released, ListenerState::Closed, |_| {});
        for index in 0..self.conns.capacity() {
            let Some(conn) = self.conns.live_id(index) else {
                continue;
            };
            if self.conns.slot(conn).stage == Stage::Hijacked {
                if !hijacked_told {
                    self.actions.push_back(Action::NotifyHijacked(conn));
                }
            } else {
                self.forced += 1;
                self.close_conn(conn, CloseReason::ServerClosed);
            }
        }
        self.finish(Completion::Closed);
        self.run_timers(now);
    }

    /// The hooks of `stage` have finished (after [`Action::RunHooks`]).
    /// Idempotent.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Action, Config, HookStage, Server};
    /// let now = Instant::now();
    /// let config = Config { shutdown_hooks: true, ..Config::default() };
    /// let mut server = Server::new(config, now);
    /// server.shutdown(now, None);
    /// assert!(std::iter::from_fn(|| server.poll_action())
    ///     .any(|a| a == Action::RunHooks(HookStage::Drain)));
    /// assert!(!server.is_done(), "waiting for the hooks");
    /// server.hooks_finished(HookStage::Drain, now);
    /// assert!(server.is_done());
    /// ```
    pub fn hooks_finished(&mut self, stage: HookStage, now: Instant) {
        let now = self.enter(now);
        self.hooks_pending &= !stage.bit();
        self.maybe_complete();
        self.run_timers(now);
    }

    // ----- time ------------------------------------------------------------

    /// When the core next needs [`handle_timeout`](Self::handle_timeout):
    /// the earliest of the connections' timers, the end of the lame-duck
    /// delay and the shutdown deadline. `None`: no timer needed.
    ///
    /// Never earlier than the latest `now` the core was given: everything due
    /// by then has already been handled. It changes only when an input
    /// changes it; re-arm the timer only when it does.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, Server};
    /// let t0 = Instant::now();
    /// let config = Config { idle_timeout: Some(Duration::from_secs(60)), ..Config::default() };
    /// let mut server = Server::new(config, t0);
    /// assert_eq!(server.poll_timeout(), None);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, t0).unwrap();
    /// server.request_started(c, t0).unwrap();
    /// server.response_done(c, t0).unwrap();
    /// assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at = self.deadlines.peek().unwrap_or(Nanos::NEVER);
        if self.phase.is_delay() {
            at = at.min(self.lame_duck_end);
        }
        if matches!(
            self.phase,
            Phase::LameDuck | Phase::HandedOff | Phase::Draining
        ) {
            at = at.min(self.shutdown_deadline);
        }
        self.time.instant(at)
    }

    /// Handles every timer due at `now`. Idempotent, and harmless when called
    /// early or twice.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use lameduck_core::{Config, ConnState, Server};
    /// let t0 = Instant::now();
    /// let mut server = Server::new(Config::default(), t0);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, t0).unwrap();
    /// server.shutdown(t0, None);
    /// server.handle_timeout(t0 + Duration::from_millis(4_999));
    /// assert_eq!(server.conn_state(c), Ok(ConnState::New));
    /// server.handle_timeout(t0 + Duration::from_millis(5_000));
    /// assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.time.advance(now);
        self.run_timers(now);
    }

    // ----- outputs and queries ---------------------------------------------

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

    /// Connections lent to their tasks now ([`lease`](crate::lease)).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// let _lease = server.lease(c).unwrap();
    /// server.request_started(c, now).unwrap();
    /// server.response_done(c, now).unwrap();
    /// assert_eq!(server.lent(), 1);
    /// server.shutdown(now, None);
    /// assert_eq!(server.lent(), 0, "a phase change takes every lease back");
    /// ```
    #[must_use]
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// The lease of a connection, for its task: from its next Idle on,
    /// and while the server serves with keep-alive, its requests (or a
    /// multiplexed connection's streams) may be recorded with
    /// [`Lease::advance`] instead of the inputs — the machine still
    /// decides everything (see [`lease`](crate::lease)). The same lease on
    /// every call. A task that never advances its lease loses nothing:
    /// every input works as before.
    ///
    /// # Errors
    ///
    /// [`Error::ConnClosed`] or [`Error::UnknownConn`].
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, ConnEvent, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// let c = server.accept(l, now).unwrap();
    /// let lease = server.lease(c).unwrap();
    /// let clock = server.lease_clock();
    /// assert!(!lease.advance(ConnEvent::RequestStarted, &clock, || now), "New: not lent");
    /// server.request_started(c, now).unwrap();
    /// ```
    pub fn lease(&mut self, conn: ConnId) -> Result<Lease, Error> {
        self.live_stage(conn)?;
        self.conns.slot_mut(conn).leased = true;
        Ok(self.words.lease(conn.index, conn.generation))
    }

    /// The clock tasks stamp lent transitions with: this machine's time
    /// origin, and which stages are timed. Once per server is enough.
    #[must_use]
    pub fn lease_clock(&self) -> LeaseClock {
        LeaseClock::new(
            self.time.origin(),
            self.config.header_timeout,
            self.config.body_timeout,
            self.config.idle_timeout,
        )
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

    // ----- internals -------------------------------------------------------

    /// Start of every input: move time forward and handle what is due.
    fn enter(&mut self, now: Instant) -> Nanos {
        let now = self.time.advance(now);
        self.run_timers(now);
        now
    }

    /// Handles everything due at or before `now`, in this order: the end of
    /// the lame-duck delay, connection timers, the shutdown deadline.
    fn run_timers(&mut self, now: Nanos) {
        if self.phase.is_delay() && self.lame_duck_end <= now {
            self.begin_drain(now);
        }
        while let Some(conn) = self.deadlines.pop_due(now, &self.conns) {
            let slot = self.conns.slot(conn);
            if slot.timer == Timer::Lease {
                // Popped: disarm first, so that the exact deadline armed
                // next is indexed even if it is the same time.
                self.arm(conn, Timer::None, Nanos::NEVER);
                self.take_back(conn);
                continue;
            }
            let reason = match slot.timer {
                _ if slot.write_stall_due() => CloseReason::WriteTimeout,
                Timer::Header => CloseReason::HeaderTimeout,
                Timer::Body => CloseReason::BodyTimeout,
                Timer::Idle => CloseReason::IdleTimeout,
                Timer::NewConnGrace => CloseReason::NewConnGrace,
                // A slot's deadline is NEVER exactly when its timer is None,
                // NEVER is never pushed nor due, and a due write stall is
                // handled above.
                Timer::None | Timer::Lease => {
                    unreachable!("a due deadline always has a closing timer here")
                }
            };
            self.close_conn(conn, reason);
            self.maybe_complete();
        }
        if matches!(
            self.phase,
            Phase::LameDuck | Phase::HandedOff | Phase::Draining
        ) && self.shutdown_deadline <= now
        {
            if !self.expired {
                self.expire(now);
            }
            // The forced-close hooks' own time limit (which may be zero).
            if self.expired && self.phase == Phase::Draining && self.shutdown_deadline <= now {
                self.finish(Completion::DeadlineExpired);
            }
        }
        // Leave a current entry on top, so that `poll_timeout(&self)` can peek.
        let _ = self.deadlines.earliest(&self.conns);
    }

    fn live_stage(&self, conn: ConnId) -> Result<Stage, Error> {
        match self.conns.resolve(conn) {
            Resolved::Live(_) => Ok(self.conns.slot(conn).stage),
            Resolved::Closed => Err(Error::ConnClosed(conn)),
            Resolved::Unknown => Err(Error::UnknownConn(conn)),
        }
    }

    /// [`live_stage`](Self::live_stage), after taking back the
    /// connection's lease if it is lent: what every input about a
    /// connection starts from.
    fn stage_taken_back(&mut self, conn: ConnId) -> Result<Stage, Error> {
        let stage = self.live_stage(conn)?;
        if self.conns.slot(conn).lent {
            self.take_back(conn);
            // The input may yet be refused, and return before its
            // `run_timers`: leave a current entry on top for `poll_timeout`.
            let _ = self.deadlines.earliest(&self.conns);
            return Ok(self.conns.slot(conn).stage);
        }
        Ok(stage)
    }

    /// Lends a connection that just went Idle, if its task holds a lease
    /// and nothing needs the machine: serving with keep-alive on, no
    /// write blocked, no stream open. Instead of its idle timer, the
    /// take-back check is armed ([`crate::lease`]). Whether it was lent.
    fn lend(&mut self, conn: ConnId, now: Nanos) -> bool {
        let slot = self.conns.slot(conn);
        if !slot.leased || !self.keep_alive() || slot.write_blocked || slot.streams > 0 || slot.lent
        {
            return false;
        }
        self.words.lend(conn.index, conn.generation);
        let check = self.lease_check.map_or(Nanos::NEVER, |d| now.after(d));
        self.update(conn, |slot| {
            slot.lent = true;
            slot.mark = now;
        });
        self.lent += 1;
        self.arm(conn, Timer::Lease, check);
        true
    }

    /// Takes a lent connection back: its recorded stage becomes the
    /// slot's, with that stage's exact timer from the time it began (not
    /// before the lend). No recorded deadline is due yet: the take-back
    /// check comes no later than any of them.
    fn take_back(&mut self, conn: ConnId) {
        if !self.conns.slot(conn).lent {
            return;
        }
        let recorded = self.words.take_back(conn.index);
        let stage = recorded.stage;
        let since = recorded.since.max(self.conns.slot(conn).mark);
        self.lent -= 1;
        self.update(conn, |slot| {
            slot.lent = false;
            // In a request, the write stall's deadline: none is blocked
            // (a blocked write is reported, which takes the lease back).
            slot.mark = Nanos::NEVER;
            slot.streams = recorded.streams;
        });
        self.set_stage(conn, stage);
        let (timer, timeout) = match stage {
            Stage::ReadingHead => (Timer::Header, self.config.header_timeout),
            Stage::ReadingBody => (Timer::Body, self.config.body_timeout),
            Stage::Idle => (Timer::Idle, self.config.idle_timeout),
            _ => (Timer::None, None),
        };
        self.arm(
            conn,
            timer,
            timeout.map_or(Nanos::NEVER, |d| since.after(d)),
        );
    }

    /// Takes back every lent connection: before a phase change, which
    /// decides by their true stages.
    fn take_back_all(&mut self) {
        if self.lent == 0 {
            return;
        }
        for index in 0..self.conns.capacity() {
            if let Some(conn) = self.conns.live_id(index)
                && self.conns.slot(conn).lent
            {
                self.take_back(conn);
            }
        }
    }

    /// The stage of a live connection as it stands, lent or not.
    fn stage_now(&self, conn: ConnId) -> Stage {
        let slot = self.conns.slot(conn);
        if slot.lent {
            self.words.peek(conn.index).stage
        } else {
            slot.stage
        }
    }

    fn invalid(&self, conn: ConnId, stage: Stage, event: ConnEvent) -> Error {
        Error::InvalidTransition {
            conn,
            state: stage.state(),
            event,
        }
    }

    /// Changes a live slot with `change`, then indexes the time it is due
    /// at if that changed. Every change to what [`Slot::due`] reads goes
    /// through here, so each live slot that is due at all has a current
    /// entry in the deadline queue.
    ///
    /// [`Slot::due`]: crate::conn::Slot::due
    fn update(&mut self, conn: ConnId, change: impl FnOnce(&mut crate::conn::Slot)) {
        let slot = self.conns.slot_mut(conn);
        let before = slot.due();
        change(slot);
        let after = slot.due();
        if after != before {
            self.deadlines.arm(conn, after, &self.conns);
        }
    }

    fn set_stage(&mut self, conn: ConnId, to: Stage) {
        let from = self.conns.slot(conn).stage;
        self.update(conn, |slot| slot.stage = to);
        if let Some(n) = self.counts.of(from) {
            *n -= 1;
        }
        if let Some(n) = self.counts.of(to) {
            *n += 1;
        }
    }

    fn arm(&mut self, conn: ConnId, timer: Timer, at: Nanos) {
        let timer = if at.is_never() { Timer::None } else { timer };
        self.update(conn, |slot| {
            slot.timer = timer;
            slot.deadline = at;
        });
    }

    /// Sets the write-stall deadline of a connection in a request.
    fn set_mark(&mut self, conn: ConnId, at: Nanos) {
        self.update(conn, |slot| slot.mark = at);
    }

    /// The timer of a New connection accepted at `accepted_at`: the header
    /// timeout, and once draining the grace, whichever comes first (the grace
    /// on a tie).
    fn new_conn_timer(&self, accepted_at: Nanos) -> (Nanos, Timer) {
        let header = self
            .config
            .header_timeout
            .map_or(Nanos::NEVER, |d| accepted_at.after(d));
        let grace = if self.phase == Phase::Draining {
            accepted_at.after(self.config.new_conn_grace)
        } else {
            Nanos::NEVER
        };
        if grace <= header {
            (grace, Timer::NewConnGrace)
        } else {
            (header, Timer::Header)
        }
    }

    /// Forgets a live connection.
    fn remove(&mut self, conn: ConnId) {
        if self.conns.slot(conn).lent {
            // Its task must not record anything more (it is not told: its
            // next input meets `ConnClosed`). What it recorded no longer
            // matters; the slot's stage (Idle) is what the counts hold.
            let _ = self.words.take_back(conn.index);
            self.lent -= 1;
        }
        let stage = self.conns.slot(conn).stage;
        if let Some(n) = self.counts.of(stage) {
            *n -= 1;
        }
        self.conns.remove(conn);
        if self.accept_paused && !self.at_capacity() && !self.listeners_closed() {
            self.accept_paused = false;
            self.actions.push_back(Action::ResumeAccepting);
        }
    }

    /// [`Config::max_connections`] connections are open.
    fn at_capacity(&self) -> bool {
        self.config
            .max_connections
            .is_some_and(|max| self.conns.live() >= max)
    }

    /// No listener is open: nothing to resume.
    fn listeners_closed(&self) -> bool {
        !self.listeners.any(ListenerState::Open)
    }

    /// The core closes a live connection: forget it and tell the caller.
    fn close_conn(&mut self, conn: ConnId, reason: CloseReason) {
        self.remove(conn);
        self.actions.push_back(Action::CloseConn { conn, reason });
    }

    /// Closes the open listeners (released ones close on their own).
    fn close_listeners(&mut self) {
        let actions = &mut self.actions;
        self.listeners
            .move_all(ListenerState::Open, ListenerState::Closed, |l| {
                actions.push_back(Action::CloseListener(l));
            });
    }

    fn start_hooks(&mut self, stage: HookStage) {
        if self.config.shutdown_hooks {
            self.hooks_pending |= stage.bit();
            self.actions.push_back(Action::RunHooks(stage));
        }
    }

    /// Keep-alive just went from on to off: every Active connection finishes
    /// its response and closes.
    fn keep_alive_turned_off(&mut self) {
        if !self.config.keep_alives {
            return;
        }
        for index in 0..self.conns.capacity() {
            let Some(conn) = self.conns.live_id(index) else {
                continue;
            };
            if self.conns.slot(conn).stage.in_request() {
                self.actions.push_back(Action::FinishAndClose(conn));
            }
        }
    }

    /// Go's `Shutdown`: close the listeners, then the idle connections; and
    /// beyond Go, arm the exact grace of every New connection.
    fn begin_drain(&mut self, now: Nanos) {
        let keep_alive_was_on = self.keep_alive();
        self.drain_started = now;
        self.tracked_at_drain = self.counts.tracked();
        self.phase = Phase::Draining;
        self.lame_duck_end = Nanos::NEVER;
        self.actions
            .push_back(Action::PhaseChanged(Phase::Draining));
        self.close_listeners();
        self.start_hooks(HookStage::Drain);
        if keep_alive_was_on {
            self.keep_alive_turned_off();
        }
        for index in 0..self.conns.capacity() {
            let Some(conn) = self.conns.live_id(index) else {
                continue;
            };
            let (stage, accepted_at) = {
                let slot = self.conns.slot(conn);
                (slot.stage, slot.mark)
            };
            match stage {
                Stage::Idle => self.close_conn(conn, CloseReason::Drain),
                Stage::New => {
                    let (at, timer) = self.new_conn_timer(accepted_at);
                    if at <= now {
                        let reason = match timer {
                            Timer::Header => CloseReason::HeaderTimeout,
                            _ => CloseReason::NewConnGrace,
                        };
                        self.close_conn(conn, reason);
                    } else {
                        self.arm(conn, timer, at);
                    }
                }
                Stage::Hijacked => self.actions.push_back(Action::NotifyHijacked(conn)),
                Stage::ReadingHead | Stage::ReadingBody | Stage::Active => {
                    self.actions.push_back(Action::NotifyActive(conn));
                }
                Stage::Vacant | Stage::Retired => {}
            }
        }
        self.maybe_complete();
    }

    /// A request (or first stream) just began on `conn`: while draining,
    /// its handlers are told at once (New → Active is the only way in
    /// then, so this is the connection's one notice).
    fn notify_if_draining(&mut self, conn: ConnId) {
        if self.phase == Phase::Draining {
            self.actions.push_back(Action::NotifyActive(conn));
        }
    }

    /// The shutdown deadline passed: close what remains by force.
    fn expire(&mut self, now: Nanos) {
        if self.phase.is_delay() {
            self.begin_drain(now);
        }
        if self.phase != Phase::Draining {
            return; // begin_drain found nothing to wait for
        }
        // Past the deadline nothing new is served, not even an accept that
        // raced a release.
        self.listeners
            .move_all(ListenerState::Released, ListenerState::Closed, |_| {});
        // Hooks still running are cut off now; the forced-close hooks get
        // their own, short, time limit.
        self.cut_off_hooks();
        if self.config.shutdown_hooks {
            self.expired = true;
            self.shutdown_deadline = now.after(self.config.forced_close_hook_timeout);
            self.start_hooks(HookStage::ForcedClose);
        }
        for index in 0..self.conns.capacity() {
            let Some(conn) = self.conns.live_id(index) else {
                continue;
            };
            if self.conns.slot(conn).stage != Stage::Hijacked {
                self.forced += 1;
                self.close_conn(conn, CloseReason::Deadline);
            }
        }
        if self.hooks_pending == 0 {
            self.finish(Completion::DeadlineExpired);
        }
    }

    /// Stops waiting for every hook stage still running, and says so.
    fn cut_off_hooks(&mut self) {
        for stage in [
            HookStage::LameDuck,
            HookStage::Drain,
            HookStage::ForcedClose,
        ] {
            if self.hooks_pending & stage.bit() != 0 {
                self.hooks_pending &= !stage.bit();
                self.hooks_cut_off = true;
                self.actions.push_back(Action::CutOffHooks(stage));
            }
        }
    }

    /// Completes the drain if nothing is left to wait for.
    fn maybe_complete(&mut self) {
        if self.expired {
            if self.phase == Phase::Draining && self.hooks_pending == 0 {
                self.finish(Completion::DeadlineExpired);
            }
        } else if self.phase == Phase::Draining
            && self.counts.tracked() == 0
            && self.hooks_pending == 0
            && (!self.config.wait_for_hijacked || self.counts.hijacked == 0)
            && !self.listeners.any(ListenerState::Released)
        {
            self.finish(Completion::Drained);
        }
    }

    fn finish(&mut self, completion: Completion) {
        self.cut_off_hooks();
        self.phase = Phase::Closed;
        self.lame_duck_end = Nanos::NEVER;
        self.shutdown_deadline = Nanos::NEVER;
        let outcome = Outcome {
            completion,
            forced: self.forced,
            hooks_cut_off: self.hooks_cut_off,
            hijacked_open: self.counts.hijacked,
        };
        self.actions.push_back(Action::PhaseChanged(Phase::Closed));
        self.actions.push_back(Action::Done(outcome));
    }
}
