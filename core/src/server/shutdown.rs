//! Phase changes: [`shutdown`](Server::shutdown) and
//! [`hand_off`](Server::hand_off) (the lame-duck or linger delay, then the
//! drain), [`close`](Server::close), hooks starting, finishing and cut off,
//! the shutdown deadline's forced close, and completion ([`Action::Done`])
//! the moment nothing is left to wait for.

use std::time::{Duration, Instant};

use crate::action::{Action, CloseReason, Completion, HookStage, Outcome};
use crate::conn::{Stage, Timer};
use crate::error::Error;
use crate::listener::ListenerState;
use crate::phase::Phase;
use crate::time::Nanos;

use super::Server;

// Named in doc links only.
#[cfg(doc)]
use crate::config::Config;

impl Server {
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
    pub(super) fn begin_drain(&mut self, now: Nanos) {
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

    /// The shutdown deadline passed: close what remains by force.
    pub(super) fn expire(&mut self, now: Nanos) {
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
    pub(super) fn maybe_complete(&mut self) {
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

    pub(super) fn finish(&mut self, completion: Completion) {
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
