//! Time: [`poll_timeout`](Server::poll_timeout) and
//! [`handle_timeout`](Server::handle_timeout), the start of every input
//! (time moves forward, what is due is handled), the one place due timers
//! run — the end of a delay, each connection's timer, the shutdown
//! deadline — and arming a connection's timer, including a New
//! connection's header timeout or drain grace.

use std::time::Instant;

use crate::action::{CloseReason, Completion};
use crate::conn::{ConnId, Timer};
use crate::phase::Phase;
use crate::time::Nanos;

use super::Server;

impl Server {
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

    /// Start of every input: move time forward and handle what is due.
    pub(super) fn enter(&mut self, now: Instant) -> Nanos {
        let now = self.time.advance(now);
        self.run_timers(now);
        now
    }

    /// Handles everything due at or before `now`, in this order: the end of
    /// the lame-duck delay, connection timers, the shutdown deadline.
    pub(super) fn run_timers(&mut self, now: Nanos) {
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

    pub(super) fn arm(&mut self, conn: ConnId, timer: Timer, at: Nanos) {
        let timer = if at.is_never() { Timer::None } else { timer };
        self.update(conn, |slot| {
            slot.timer = timer;
            slot.deadline = at;
        });
    }

    /// Sets the write-stall deadline of a connection in a request.
    pub(super) fn set_mark(&mut self, conn: ConnId, at: Nanos) {
        self.update(conn, |slot| slot.mark = at);
    }

    /// The timer of a New connection accepted at `accepted_at`: the header
    /// timeout, and once draining the grace, whichever comes first (the grace
    /// on a tie).
    pub(super) fn new_conn_timer(&self, accepted_at: Nanos) -> (Nanos, Timer) {
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
}
