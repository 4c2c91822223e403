//! The lease side of the machine ([`crate::lease`]): handing out a
//! connection's [`Lease`] and the [`LeaseClock`], lending an Idle
//! connection to its task, and taking lent connections back — one at its
//! next input or timer check, all of them before a phase change — so that
//! every decision is made on a connection's true stage.

use crate::conn::{ConnId, Stage, Timer};
use crate::error::Error;
use crate::lease::{Lease, LeaseClock};
use crate::time::Nanos;

use super::Server;

impl Server {
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

    /// [`live_stage`](Self::live_stage), after taking back the
    /// connection's lease if it is lent: what every input about a
    /// connection starts from.
    pub(super) fn stage_taken_back(&mut self, conn: ConnId) -> Result<Stage, Error> {
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
    pub(super) fn lend(&mut self, conn: ConnId, now: Nanos) -> bool {
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
    pub(super) fn take_back(&mut self, conn: ConnId) {
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
    pub(super) fn take_back_all(&mut self) {
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
    pub(super) fn stage_now(&self, conn: ConnId) -> Stage {
        let slot = self.conns.slot(conn);
        if slot.lent {
            self.words.peek(conn.index).stage
        } else {
            slot.stage
        }
    }
}
