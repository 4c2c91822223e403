//! Connection inputs: what the caller reports about one connection —
//! accepted, a request's start, head and body, a write blocked and
//! unblocked, the response done, a multiplexed connection's streams, a
//! hijack, closed — each a checked move through the connection's states
//! (New, Active, Idle, Hijacked, Closed), with the timer its new state
//! needs and, where it ends the connection's work, idle or closed.

use std::time::Instant;

use crate::action::{Action, CloseReason};
use crate::conn::{ConnId, Resolved, Stage, Timer};
use crate::error::{ConnEvent, Error};
use crate::listener::{ListenerId, ListenerState};
use crate::phase::Phase;
use crate::time::Nanos;

use super::Server;

// Named in doc links only.
#[cfg(doc)]
use crate::{config::Config, conn::ConnState};

impl Server {
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

    /// A request (or first stream) just began on `conn`: while draining,
    /// its handlers are told at once (New → Active is the only way in
    /// then, so this is the connection's one notice).
    fn notify_if_draining(&mut self, conn: ConnId) {
        if self.phase == Phase::Draining {
            self.actions.push_back(Action::NotifyActive(conn));
        }
    }
}
