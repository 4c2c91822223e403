//! A reference model of the lifecycle core, the [`Op`] decoder shared by the
//! property tests and the fuzz targets, and a [`Harness`] that runs a sequence
//! of ops against both and checks that they agree and that the lifecycle's
//! invariants hold.
//!
//! The model is written for obviousness, not speed: it keeps every connection
//! ever accepted in a vector and recomputes each connection's due time from
//! first principles on every look, where the core keeps a heap of deadlines
//! with lazy deletion, a slab with generations and incremental counters.
//! Agreement between the two is the test.
//!
//! [`Harness::check_leased`] runs the same scenarios with every connection
//! holding a [`Lease`]: requests recorded
//! through it whenever it takes them, against the same model — the lease
//! must change nothing a caller can see but the extra take-back wake-ups.

use std::collections::BTreeMap;
use std::time::Duration;

use lameduck_core::lease::{Lease, LeaseClock};

use lameduck_core::{
    Action, CloseReason, Completion, Config, ConnEvent, ConnId, ConnState, Counts, Error,
    HookStage, ListenerId, Outcome, Phase, Server,
};

use crate::clock::VirtualClock;

// ----- ops and their decoder ---------------------------------------------------

/// One input to the machine. Connection and listener operands are indices
/// into the ids issued so far (taken modulo their number), so sequences reach
/// live, closed and stale ids alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// [`Server::add_listener`]
    AddListener,
    /// [`Server::listener_closed`]
    ListenerClosed(u8),
    /// [`Server::accept`]
    Accept(u8),
    /// [`Server::request_started`]
    RequestStarted(u8),
    /// [`Server::headers_complete`]
    HeadersComplete(u8),
    /// [`Server::body_complete`]
    BodyComplete(u8),
    /// [`Server::write_blocked`]
    WriteBlocked(u8),
    /// [`Server::write_unblocked`]
    WriteUnblocked(u8),
    /// [`Server::response_done`]
    ResponseDone(u8),
    /// [`Server::response_done_kept_alive`]
    ResponseDoneKeptAlive(u8),
    /// [`Server::hijack`]
    Hijack(u8),
    /// [`Server::stream_opened`]
    StreamOpened(u8),
    /// [`Server::stream_closed`]
    StreamClosed(u8),
    /// [`Server::closed`]
    Closed(u8),
    /// [`Server::shutdown`] with a deadline this many ms from now, or none.
    Shutdown(Option<u16>),
    /// [`Server::hand_off`] with a linger of this many ms and a deadline
    /// this many ms from now, or none.
    HandOff(u16, Option<u16>),
    /// [`Server::close`]
    Close,
    /// [`Server::hooks_finished`]
    HooksFinished(HookStage),
    /// Let this many ms pass, waking at every [`Server::poll_timeout`] on the
    /// way, as a driver's timer does.
    Advance(u16),
    /// A late timer: [`Server::handle_timeout`] this many ms from now, with
    /// no wake-up on the way.
    Jump(u16),
}

/// A [`Config`] and ops decoded from bytes.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The server's configuration.
    pub config: Config,
    /// The inputs, in order.
    pub ops: Vec<Op>,
}

/// Reads bytes; past the end, every read is zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// `None` when the low bit of a byte is clear, else `Some(ms)` from the rest.
    fn opt_ms(&mut self, unit: u64) -> Option<Duration> {
        let b = self.u8();
        (b & 1 == 1).then(|| Duration::from_millis(u64::from(b >> 1) * unit))
    }
}

/// Decodes a scenario: eight bytes of configuration, then ops until the input
/// ends. Every byte string is a valid scenario (the fuzz targets rely on it).
///
/// Ops added later take codes no earlier op had, so saved inputs keep their
/// meaning as far as possible: an op byte is taken modulo 35, except the
/// eleven values above the last whole multiple (245–255), which now decode
/// the body and write ops (and every older op keeps exactly seven values).
/// The stream ops (multiplexed connections) took one of the five codes of
/// `RequestStarted` and of `ResponseDone` each.
/// The body and write timeouts come from the last two configuration bytes,
/// unused before.
///
/// ```
/// use lameduck_testkit::model::{decode, Op};
/// let scenario = decode(&[0; 8]);
/// assert_eq!(scenario.ops, vec![Op::AddListener], "a listener from the start");
/// assert_eq!(decode(&[0, 0, 0, 0, 0, 0, 0, 0, 2, 0]).ops, vec![Op::AddListener, Op::Accept(0)]);
/// ```
#[must_use]
pub fn decode(bytes: &[u8]) -> Scenario {
    let (head, body) = bytes.split_at(bytes.len().min(8));
    let mut h = Bytes(head);
    let flags = h.u8();
    let config = Config {
        // 0–5.1 s in 20 ms steps: around the default's 5 s and down to zero.
        new_conn_grace: Duration::from_millis(u64::from(h.u8()) * 20),
        idle_timeout: h.opt_ms(40),
        header_timeout: h.opt_ms(40),
        lame_duck: h.opt_ms(40).unwrap_or_default(),
        keep_alives: flags & 1 == 0,
        wait_for_hijacked: flags & 2 != 0,
        shutdown_hooks: flags & 4 != 0,
        // Small limits, so that scenarios reach them.
        max_connections: (flags & 8 != 0).then_some(usize::from(flags >> 4) + 1),
        forced_close_hook_timeout: Duration::from_millis(u64::from(h.u8()) * 20),
        body_timeout: h.opt_ms(40),
        write_timeout: h.opt_ms(40),
    };
    Scenario {
        config,
        ops: decode_ops(body),
    }
}

/// Decodes ops (the part of a scenario after its eight bytes of
/// configuration): an [`Op::AddListener`], then an op per few bytes until
/// the input ends.
#[must_use]
pub fn decode_ops(body: &[u8]) -> Vec<Op> {
    let mut b = Bytes(body);
    // Most scenarios want a listener from the start.
    let mut ops = vec![Op::AddListener];
    while !b.0.is_empty() {
        // Weighted so that scenarios live long enough to reach every
        // behaviour: ending ops (shutdown, close) are rare, traffic common.
        let op = match b.u8() {
            245..=248 => Op::BodyComplete(b.u8()),
            249..=252 => Op::WriteBlocked(b.u8()),
            253..=255 => Op::WriteUnblocked(b.u8()),
            code => match code % 35 {
                0 => Op::AddListener,
                1 => Op::ListenerClosed(b.u8()),
                2..=6 => Op::Accept(b.u8()),
                7..=10 => Op::RequestStarted(b.u8()),
                11 => Op::StreamOpened(b.u8()),
                12 | 13 => Op::HeadersComplete(b.u8()),
                14..=17 => Op::ResponseDone(b.u8()),
                18 => Op::StreamClosed(b.u8()),
                19 => Op::Hijack(b.u8()),
                20 | 21 => Op::Closed(b.u8()),
                22 => {
                    let d = b.u16();
                    Op::Shutdown((d & 1 == 1).then_some((d >> 1) % 8_000))
                }
                23 => match b.u8() {
                    0..=63 => Op::Close,
                    n => Op::Jump(u16::from(n) * 20),
                },
                24 => Op::HooksFinished(match b.u8() % 3 {
                    0 => HookStage::Drain,
                    1 => HookStage::LameDuck,
                    _ => HookStage::ForcedClose,
                }),
                25..=29 => Op::Advance(b.u16() % 6_000),
                30 | 31 => Op::Jump(b.u16() % 6_000),
                32 | 33 => Op::ResponseDoneKeptAlive(b.u8()),
                _ => {
                    let linger = u16::from(b.u8()) * 10;
                    let d = b.u16();
                    Op::HandOff(linger, (d & 1 == 1).then_some((d >> 1) % 8_000))
                }
            },
        };
        ops.push(op);
    }
    ops
}

// ----- the reference model -----------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    New,
    /// Active, head not complete.
    Head,
    /// Active, head complete, body not (reported) complete.
    Body,
    /// Active, the whole request read.
    Active,
    Idle,
    Hijacked,
    Closed,
}

impl St {
    fn public(self) -> ConnState {
        match self {
            St::New => ConnState::New,
            St::Head | St::Body | St::Active => ConnState::Active,
            St::Idle => ConnState::Idle,
            St::Hijacked => ConnState::Hijacked,
            St::Closed => ConnState::Closed,
        }
    }

    fn tracked(self) -> bool {
        matches!(self, St::New | St::Head | St::Body | St::Active | St::Idle)
    }

    fn in_request(self) -> bool {
        matches!(self, St::Head | St::Body | St::Active)
    }
}

#[derive(Clone, Debug)]
struct MConn {
    id: ConnId,
    st: St,
    accepted_at: Duration,
    /// When the current request began (Head, Body, Active) or the idle
    /// period began (Idle).
    since: Duration,
    /// When the current request's head completed (Body).
    head_at: Duration,
    /// When a write blocked, while it is reported blocked.
    blocked_at: Option<Duration>,
    /// Streams open on a multiplexed connection (Active while any is).
    streams: u16,
}

impl MConn {
    /// When its blocked write times out: only in a request, counted from
    /// the later of the block and the request's start.
    fn write_due(&self, cfg: &Config) -> Option<Duration> {
        if !self.st.in_request() {
            return None;
        }
        Some(self.blocked_at?.max(self.since) + cfg.write_timeout?)
    }
}

/// A listener's state in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L {
    Open,
    /// Handed to a successor: accepts that raced the release are taken,
    /// even while draining; the drain waits until it is reported closed.
    Released,
    Closed,
}

/// The reference model: the semantics of Go's shutdown model, spelled out plainly.
#[derive(Clone, Debug)]
struct Model {
    cfg: Config,
    now: Duration,
    phase: Phase,
    listeners: Vec<(ListenerId, L)>,
    conns: Vec<MConn>,
    lame_duck_end: Option<Duration>,
    deadline: Option<Duration>,
    hooks: Vec<HookStage>,
    forced: usize,
    paused: bool,
    /// Past the shutdown deadline, waiting only for forced-close hooks
    /// (until `deadline`, now their time limit).
    expired: bool,
    hooks_cut_off: bool,
    actions: Vec<Action>,
}

impl Model {
    fn new(cfg: Config) -> Model {
        Model {
            cfg,
            now: Duration::ZERO,
            phase: Phase::Serving,
            listeners: Vec::new(),
            conns: Vec::new(),
            lame_duck_end: None,
            deadline: None,
            hooks: Vec::new(),
            forced: 0,
            paused: false,
            expired: false,
            hooks_cut_off: false,
            actions: Vec::new(),
        }
    }

    fn keep_alive(&self) -> bool {
        self.phase == Phase::Serving && self.cfg.keep_alives
    }

    fn conn(&mut self, id: ConnId) -> &mut MConn {
        // The harness registers every id the core issues, before using it.
        self.conns
            .iter_mut()
            .find(|c| c.id == id)
            .expect("ids come from the core")
    }

    /// When a connection's timer fires, and why; from first principles.
    fn due(&self, c: &MConn) -> Option<(Duration, CloseReason)> {
        let stage = self.stage_due(c);
        match (stage, c.write_due(&self.cfg)) {
            (Some((s, _)), Some(w)) if w < s => Some((w, CloseReason::WriteTimeout)),
            (None, Some(w)) => Some((w, CloseReason::WriteTimeout)),
            (stage, _) => stage,
        }
    }

    /// The stage's own timer: header, body, idle or grace.
    fn stage_due(&self, c: &MConn) -> Option<(Duration, CloseReason)> {
        match c.st {
            St::New => {
                let header = self.cfg.header_timeout.map(|h| c.accepted_at + h);
                let grace = (self.phase == Phase::Draining)
                    .then(|| c.accepted_at + self.cfg.new_conn_grace);
                match (grace, header) {
                    (Some(g), Some(h)) if h < g => Some((h, CloseReason::HeaderTimeout)),
                    (Some(g), _) => Some((g, CloseReason::NewConnGrace)),
                    (None, Some(h)) => Some((h, CloseReason::HeaderTimeout)),
                    (None, None) => None,
                }
            }
            St::Head => self
                .cfg
                .header_timeout
                .map(|h| (c.since + h, CloseReason::HeaderTimeout)),
            St::Body => self
                .cfg
                .body_timeout
                .map(|b| (c.head_at + b, CloseReason::BodyTimeout)),
            St::Idle => self
                .cfg
                .idle_timeout
                .map(|i| (c.since + i, CloseReason::IdleTimeout)),
            St::Active | St::Hijacked | St::Closed => None,
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        let conns = self
            .conns
            .iter()
            .filter_map(|c| self.due(c).map(|(at, _)| at));
        let ld = if matches!(self.phase, Phase::LameDuck | Phase::HandedOff) {
            self.lame_duck_end
        } else {
            None
        };
        let dl = if matches!(
            self.phase,
            Phase::LameDuck | Phase::HandedOff | Phase::Draining
        ) {
            self.deadline
        } else {
            None
        };
        conns.chain(ld).chain(dl).min()
    }

    fn counts(&self) -> Counts {
        let n = |f: fn(St) -> bool| self.conns.iter().filter(|c| f(c.st)).count();
        Counts {
            new: n(|s| s == St::New),
            active: n(|s| s.in_request()),
            idle: n(|s| s == St::Idle),
            hijacked: n(|s| s == St::Hijacked),
        }
    }

    fn close_conn(&mut self, id: ConnId, reason: CloseReason) {
        self.conn(id).st = St::Closed;
        self.actions.push(Action::CloseConn { conn: id, reason });
        self.after_removal();
    }

    fn open_count(&self) -> usize {
        self.conns.iter().filter(|c| c.st != St::Closed).count()
    }

    fn at_capacity(&self) -> bool {
        self.cfg
            .max_connections
            .is_some_and(|max| self.open_count() >= max)
    }

    /// A connection went away: below the limit with a listener open, resume.
    fn after_removal(&mut self) {
        if self.paused && !self.at_capacity() && self.listeners.iter().any(|(_, st)| *st == L::Open)
        {
            self.paused = false;
            self.actions.push(Action::ResumeAccepting);
        }
    }

    fn close_listeners(&mut self) {
        for (l, st) in &mut self.listeners {
            if *st == L::Open {
                *st = L::Closed;
                self.actions.push(Action::CloseListener(*l));
            }
        }
    }

    /// Past the deadline, or closed: nothing more is accepted, not even
    /// on a released listener.
    fn forget_released(&mut self) {
        for (_, st) in &mut self.listeners {
            if *st == L::Released {
                *st = L::Closed;
            }
        }
    }

    fn start_hooks(&mut self, stage: HookStage) {
        if self.cfg.shutdown_hooks {
            self.hooks.push(stage);
            self.actions.push(Action::RunHooks(stage));
        }
    }

    fn finish_and_close_active(&mut self) {
        if !self.cfg.keep_alives {
            return;
        }
        for c in &self.conns {
            if c.st.in_request() {
                self.actions.push(Action::FinishAndClose(c.id));
            }
        }
    }

    fn maybe_complete(&mut self) {
        let c = self.counts();
        if self.expired {
            if self.phase == Phase::Draining && self.hooks.is_empty() {
                self.finish(Completion::DeadlineExpired);
            }
        } else if self.phase == Phase::Draining
            && c.tracked() == 0
            && self.hooks.is_empty()
            && (!self.cfg.wait_for_hijacked || c.hijacked == 0)
            && !self.listeners.iter().any(|(_, st)| *st == L::Released)
        {
            self.finish(Completion::Drained);
        }
    }

    fn finish(&mut self, completion: Completion) {
        self.cut_off_hooks();
        self.phase = Phase::Closed;
        self.lame_duck_end = None;
        self.deadline = None;
        let outcome = Outcome {
            completion,
            forced: self.forced,
            hooks_cut_off: self.hooks_cut_off,
            hijacked_open: self.counts().hijacked,
        };
        self.actions.push(Action::PhaseChanged(Phase::Closed));
        self.actions.push(Action::Done(outcome));
    }

    fn begin_drain(&mut self) {
        let keep_alive_was_on = self.keep_alive();
        self.phase = Phase::Draining;
        self.lame_duck_end = None;
        self.actions.push(Action::PhaseChanged(Phase::Draining));
        self.close_listeners();
        self.start_hooks(HookStage::Drain);
        if keep_alive_was_on {
            self.finish_and_close_active();
        }
        for i in 0..self.conns.len() {
            let c = self.conns[i].clone();
            match c.st {
                St::Idle => self.close_conn(c.id, CloseReason::Drain),
                St::New => {
                    if let Some((at, reason)) = self.due(&c)
                        && at <= self.now
                    {
                        self.close_conn(c.id, reason);
                    }
                }
                St::Hijacked => self.actions.push(Action::NotifyHijacked(c.id)),
                St::Head | St::Body | St::Active => self.actions.push(Action::NotifyActive(c.id)),
                St::Closed => {}
            }
        }
        self.maybe_complete();
    }

    fn expire(&mut self) {
        if matches!(self.phase, Phase::LameDuck | Phase::HandedOff) {
            self.begin_drain();
        }
        if self.phase != Phase::Draining {
            return;
        }
        self.forget_released();
        self.cut_off_hooks();
        if self.cfg.shutdown_hooks {
            self.expired = true;
            self.deadline = Some(self.now + self.cfg.forced_close_hook_timeout);
            self.start_hooks(HookStage::ForcedClose);
        }
        for i in 0..self.conns.len() {
            let c = self.conns[i].clone();
            if c.st.tracked() {
                self.forced += 1;
                self.close_conn(c.id, CloseReason::Deadline);
            }
        }
        if self.hooks.is_empty() {
            self.finish(Completion::DeadlineExpired);
        }
    }

    fn cut_off_hooks(&mut self) {
        for stage in [
            HookStage::LameDuck,
            HookStage::Drain,
            HookStage::ForcedClose,
        ] {
            if self.hooks.contains(&stage) {
                self.hooks.retain(|s| *s != stage);
                self.hooks_cut_off = true;
                self.actions.push(Action::CutOffHooks(stage));
            }
        }
    }

    fn run_timers(&mut self) {
        if matches!(self.phase, Phase::LameDuck | Phase::HandedOff)
            && self.lame_duck_end.is_some_and(|t| t <= self.now)
        {
            self.begin_drain();
        }
        loop {
            let next = self
                .conns
                .iter()
                .filter_map(|c| self.due(c).map(|(at, reason)| (at, c.id, reason)))
                .filter(|(at, _, _)| *at <= self.now)
                .min_by_key(|(at, id, _)| (*at, *id));
            let Some((_, id, reason)) = next else { break };
            self.close_conn(id, reason);
            self.maybe_complete();
        }
        if matches!(
            self.phase,
            Phase::LameDuck | Phase::HandedOff | Phase::Draining
        ) && self.deadline.is_some_and(|d| d <= self.now)
        {
            if !self.expired {
                self.expire();
            }
            if self.expired
                && self.phase == Phase::Draining
                && self.deadline.is_some_and(|d| d <= self.now)
            {
                self.finish(Completion::DeadlineExpired);
            }
        }
    }

    fn live(&mut self, id: ConnId) -> Result<St, Error> {
        match self.conn(id).st {
            St::Closed => Err(Error::ConnClosed(id)),
            st => Ok(st),
        }
    }

    fn invalid(id: ConnId, st: St, event: ConnEvent) -> Error {
        Error::InvalidTransition {
            conn: id,
            state: st.public(),
            event,
        }
    }

    // The inputs, mirroring Server's; `run_timers` before and after each.

    fn accept(&mut self, l: ListenerId, id: Option<ConnId>) -> Result<(), Error> {
        let st = self
            .listeners
            .iter()
            .find(|(id, _)| *id == l)
            .map(|(_, st)| *st);
        if self.phase == Phase::Closed || (self.phase == Phase::Draining && st != Some(L::Released))
        {
            return Err(Error::ServerClosed);
        }
        match st {
            None => return Err(Error::UnknownListener(l)),
            Some(L::Closed) => return Err(Error::ListenerClosed(l)),
            Some(L::Open | L::Released) => {}
        }
        if self.at_capacity() {
            return Err(Error::AtCapacity);
        }
        let id = id.expect("the core accepted when the model does");
        self.conns.push(MConn {
            id,
            st: St::New,
            accepted_at: self.now,
            since: self.now,
            head_at: self.now,
            streams: 0,
            blocked_at: None,
        });
        if self.at_capacity() && !self.paused {
            self.paused = true;
            self.actions.push(Action::PauseAccepting);
        }
        Ok(())
    }

    fn request_started(&mut self, id: ConnId) -> Result<(), Error> {
        match self.live(id)? {
            St::New | St::Idle => {
                let now = self.now;
                let c = self.conn(id);
                c.st = St::Head;
                c.since = now;
                self.notify_if_draining(id);
                Ok(())
            }
            st => Err(Model::invalid(id, st, ConnEvent::RequestStarted)),
        }
    }

    fn headers_complete(&mut self, id: ConnId) -> Result<(), Error> {
        match self.live(id)? {
            St::Head => {
                let now = self.now;
                let c = self.conn(id);
                c.st = St::Body;
                c.head_at = now;
                Ok(())
            }
            St::Body | St::Active => Ok(()),
            st => Err(Model::invalid(id, st, ConnEvent::HeadersComplete)),
        }
    }

    fn body_complete(&mut self, id: ConnId) -> Result<(), Error> {
        match self.live(id)? {
            St::Head | St::Body | St::Active => {
                self.conn(id).st = St::Active;
                Ok(())
            }
            st => Err(Model::invalid(id, st, ConnEvent::BodyComplete)),
        }
    }

    /// A blocked write is remembered in any state but hijacked, and timed
    /// only in a request.
    fn write_blocked(&mut self, id: ConnId) -> Result<(), Error> {
        let st = self.live(id)?;
        let now = self.now;
        let c = self.conn(id);
        if st != St::Hijacked && c.blocked_at.is_none() {
            c.blocked_at = Some(now);
        }
        Ok(())
    }

    fn write_unblocked(&mut self, id: ConnId) -> Result<(), Error> {
        self.live(id)?;
        self.conn(id).blocked_at = None;
        Ok(())
    }

    /// `kept_alive`: the response's head promised keep-alive (written
    /// before the shutdown); during a lame-duck delay or a hand-off's linger
    /// the connection then stays, idle.
    /// New or Idle → Active with one stream; Active with streams → one more.
    fn stream_opened(&mut self, id: ConnId) -> Result<(), Error> {
        let st = self.live(id)?;
        let now = self.now;
        let c = self.conn(id);
        match st {
            St::New | St::Idle => {
                c.st = St::Active;
                c.streams = 1;
                c.since = now;
                self.notify_if_draining(id);
                Ok(())
            }
            St::Active if c.streams > 0 && c.streams < u16::MAX => {
                c.streams += 1;
                Ok(())
            }
            st => Err(Model::invalid(id, st, ConnEvent::StreamOpened)),
        }
    }

    /// Work began on a connection while draining: its handlers hear of
    /// the drain at once.
    fn notify_if_draining(&mut self, id: ConnId) {
        if self.phase == Phase::Draining {
            self.actions.push(Action::NotifyActive(id));
        }
    }

    /// One stream fewer; the last one ends like a response.
    fn stream_closed(&mut self, id: ConnId) -> Result<(), Error> {
        let st = self.live(id)?;
        let c = self.conn(id);
        if st != St::Active || c.streams == 0 {
            return Err(Model::invalid(id, st, ConnEvent::StreamClosed));
        }
        c.streams -= 1;
        if c.streams == 0 {
            self.idle_or_close(id, false);
        }
        Ok(())
    }

    /// The connection's work is done (a response, or its last stream):
    /// Idle with keep-alive on (or `promised`), else closed.
    fn idle_or_close(&mut self, id: ConnId, promised: bool) {
        if self.keep_alive() || promised {
            let now = self.now;
            let c = self.conn(id);
            c.st = St::Idle;
            c.since = now;
        } else {
            self.close_conn(id, CloseReason::KeepAliveOff);
            self.maybe_complete();
        }
    }

    fn response_done(&mut self, id: ConnId, kept_alive: bool) -> Result<(), Error> {
        match self.live(id)? {
            St::Active if self.conn(id).streams > 0 => {
                Err(Model::invalid(id, St::Active, ConnEvent::ResponseDone))
            }
            St::Head | St::Body | St::Active => {
                let promised = kept_alive
                    && self.cfg.keep_alives
                    && matches!(self.phase, Phase::LameDuck | Phase::HandedOff);
                self.idle_or_close(id, promised);
                Ok(())
            }
            st => Err(Model::invalid(id, st, ConnEvent::ResponseDone)),
        }
    }

    fn hijack(&mut self, id: ConnId) -> Result<(), Error> {
        match self.live(id)? {
            St::Hijacked => Err(Model::invalid(id, St::Hijacked, ConnEvent::Hijack)),
            _ => {
                self.conn(id).st = St::Hijacked;
                if self.phase == Phase::Draining {
                    self.actions.push(Action::NotifyHijacked(id));
                }
                self.maybe_complete();
                Ok(())
            }
        }
    }

    fn closed(&mut self, id: ConnId) {
        if self.conn(id).st != St::Closed {
            self.conn(id).st = St::Closed;
            self.after_removal();
            self.maybe_complete();
        }
    }

    fn shutdown(&mut self, deadline: Option<Duration>) {
        self.begin_shutdown(deadline, self.cfg.lame_duck, Phase::LameDuck);
    }

    /// Refused once shutting down; otherwise every open listener is
    /// released and the shutdown begins with the linger as its delay.
    fn hand_off(&mut self, deadline: Option<Duration>, linger: Duration) -> Result<(), Error> {
        if self.phase != Phase::Serving {
            return Err(Error::ServerClosed);
        }
        for (l, st) in &mut self.listeners {
            if *st == L::Open {
                *st = L::Released;
                self.actions.push(Action::ReleaseListener(*l));
            }
        }
        self.begin_shutdown(deadline, linger, Phase::HandedOff);
        Ok(())
    }

    fn listener_closed(&mut self, l: ListenerId) {
        for (id, st) in &mut self.listeners {
            if *id == l {
                *st = L::Closed;
            }
        }
        self.maybe_complete();
    }

    /// `delay`: the lame-duck delay (a hand-off's linger), spent in
    /// `delay_phase` (the lame-duck hooks run only for `LameDuck`).
    fn begin_shutdown(&mut self, deadline: Option<Duration>, delay: Duration, delay_phase: Phase) {
        match self.phase {
            Phase::Serving => {
                self.deadline = deadline;
                if delay.is_zero() {
                    self.begin_drain();
                } else {
                    self.phase = delay_phase;
                    self.lame_duck_end = Some(self.now + delay);
                    self.actions.push(Action::PhaseChanged(delay_phase));
                    if delay_phase == Phase::LameDuck {
                        self.start_hooks(HookStage::LameDuck);
                    }
                    self.finish_and_close_active();
                }
            }
            Phase::LameDuck | Phase::HandedOff | Phase::Draining => {
                self.deadline = match (self.deadline, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Phase::Closed => {}
        }
    }

    fn close(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        let told = self.phase == Phase::Draining;
        self.close_listeners();
        self.forget_released();
        for i in 0..self.conns.len() {
            let c = self.conns[i].clone();
            if c.st == St::Hijacked {
                if !told {
                    self.actions.push(Action::NotifyHijacked(c.id));
                }
            } else if c.st.tracked() {
                self.forced += 1;
                self.close_conn(c.id, CloseReason::ServerClosed);
            }
        }
        self.finish(Completion::Closed);
    }

    fn hooks_finished(&mut self, stage: HookStage) {
        self.hooks.retain(|s| *s != stage);
        self.maybe_complete();
    }
}

// ----- the harness ------------------------------------------------------------

/// Runs a [`Scenario`] against the core and the model in lock step.
#[derive(Debug)]
pub struct Harness {
    clock: VirtualClock,
    server: Server,
    model: Model,
    conns: Vec<ConnId>,
    listeners: Vec<ListenerId>,
    done: usize,
    observed: BTreeMap<String, usize>,
    /// The earliest shutdown deadline ever given.
    deadline: Option<Duration>,
    /// The actions of the op being applied, in the core's order.
    last_actions: Vec<Action>,
    /// What the core returned for the op being applied.
    last_result: Option<Result<(), Error>>,
    /// Connections named in an `Action::NotifyActive` so far.
    notified_active: Vec<ConnId>,
    /// With leases: each connection's, by its index in `conns`.
    leases: Option<(LeaseClock, Vec<Option<Lease>>)>,
    /// Connections whose last request event their lease recorded.
    recorded_last: Vec<ConnId>,
}

/// What one op did, as the core reported it (and the model agreed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What the core's call returned; `None` when the op named a connection
    /// or a listener before any existed, so nothing was called.
    pub result: Option<Result<(), Error>>,
    /// The actions the core queued, in order (for [`Op::Advance`], those of
    /// every wake-up on the way).
    pub actions: Vec<Action>,
}

impl Harness {
    /// A harness for `config`, at virtual time zero.
    #[must_use]
    pub fn new(config: Config) -> Harness {
        let clock = VirtualClock::new();
        Harness {
            clock,
            server: Server::new(config.clone(), clock.now()),
            model: Model::new(config),
            conns: Vec::new(),
            listeners: Vec::new(),
            done: 0,
            observed: BTreeMap::new(),
            deadline: None,
            last_actions: Vec::new(),
            last_result: None,
            notified_active: Vec::new(),
            leases: None,
            recorded_last: Vec::new(),
        }
    }

    /// A harness for `config` in which every connection takes a lease at
    /// its accept, and every request event is first offered to it
    /// ([`Lease::advance`]); only the events it refuses are inputs.
    #[must_use]
    pub fn new_leased(config: Config) -> Harness {
        let mut h = Harness::new(config);
        h.leases = Some((h.server.lease_clock(), Vec::new()));
        h
    }

    /// [`check`](Harness::check) with leases ([`new_leased`](Harness::new_leased)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use lameduck_core::Config;
    /// use lameduck_testkit::model::{Harness, Op, Scenario};
    ///
    /// let config = Config { idle_timeout: Some(Duration::from_secs(1)), ..Config::default() };
    /// let ops = vec![
    ///     Op::AddListener, Op::Accept(0),
    ///     Op::RequestStarted(0), Op::ResponseDone(0), // through the machine: lent at its end
    ///     Op::RequestStarted(0), Op::ResponseDone(0), // through the lease
    ///     Op::Advance(2_000),
    /// ];
    /// let observed = Harness::check_leased(&Scenario { config, ops });
    /// assert_eq!(observed["Lease(recorded)"], 2);
    /// assert_eq!(observed["CloseConn(IdleTimeout)"], 1);
    /// ```
    #[must_use = "what was observed; ignore with `let _`"]
    pub fn check_leased(scenario: &Scenario) -> BTreeMap<String, usize> {
        let mut h = Harness::new_leased(scenario.config.clone());
        for (step, op) in scenario.ops.iter().enumerate() {
            if let Err(msg) = h.step(*op) {
                panic!(
                    "step {step} ({op:?}), leased: {msg}\nops: {:?}",
                    scenario.ops
                );
            }
        }
        h.observed
    }

    /// A connection event: offered to the connection's lease first (with
    /// leases), else `input` to the core.
    fn input(
        &mut self,
        conn: ConnId,
        event: ConnEvent,
        input: fn(&mut Server, ConnId, std::time::Instant) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.offer(conn, event) {
            Ok(())
        } else {
            input(&mut self.server, conn, self.clock.now())
        }
    }

    /// Offers a request event to the connection's lease: `true` if it took it.
    fn offer(&mut self, conn: ConnId, event: ConnEvent) -> bool {
        let Some((clock, leases)) = &self.leases else {
            return false;
        };
        let Some(i) = self.conns.iter().position(|c| *c == conn) else {
            return false;
        };
        let now = self.clock.now();
        let taken = leases[i]
            .as_ref()
            .is_some_and(|lease| lease.advance(event, clock, || now));
        self.recorded_last.retain(|c| *c != conn);
        if taken {
            *self.observed.entry("Lease(recorded)".into()).or_default() += 1;
            if matches!(event, ConnEvent::StreamOpened | ConnEvent::StreamClosed) {
                *self.observed.entry("Lease(stream)".into()).or_default() += 1;
            }
            self.recorded_last.push(conn);
        }
        taken
    }

    /// Decodes `bytes` and runs them: the entry point of property tests and
    /// fuzz targets. Panics, with the step, on any disagreement or broken
    /// invariant. Returns what was observed (see [`Harness::observed`]).
    #[must_use = "what was observed; ignore with `let _`"]
    pub fn run_bytes(bytes: &[u8]) -> BTreeMap<String, usize> {
        Harness::check(&decode(bytes))
    }

    /// Runs `scenario` from the start. Panics, with the step, on any
    /// disagreement or broken invariant. Returns what was observed (see
    /// [`Harness::observed`]).
    ///
    /// ```
    /// use lameduck_core::Config;
    /// use lameduck_testkit::model::{Harness, Op, Scenario};
    ///
    /// let ops = vec![Op::AddListener, Op::Accept(0), Op::Shutdown(None), Op::Advance(5_000)];
    /// let observed = Harness::check(&Scenario { config: Config::default(), ops });
    /// assert_eq!(observed["CloseConn(NewConnGrace)"], 1);
    /// assert_eq!(observed["Done(Drained)"], 1);
    /// ```
    #[must_use = "what was observed; ignore with `let _`"]
    pub fn check(scenario: &Scenario) -> BTreeMap<String, usize> {
        let mut h = Harness::new(scenario.config.clone());
        for (step, op) in scenario.ops.iter().enumerate() {
            if let Err(msg) = h.step(*op) {
                panic!("step {step} ({op:?}): {msg}\nops: {:?}", scenario.ops);
            }
        }
        h.observed
    }

    /// The core under test, as the last step left it (its counts, phase,
    /// connection states).
    #[must_use]
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// How often each kind of action (with its reason or completion) was
    /// seen: evidence that random scenarios reach every behaviour.
    #[must_use]
    pub fn observed(&self) -> &BTreeMap<String, usize> {
        &self.observed
    }

    /// The harness's virtual clock: the time the core was last told.
    #[must_use]
    pub fn clock(&self) -> VirtualClock {
        self.clock
    }

    fn conn(&self, i: u8) -> Option<ConnId> {
        (!self.conns.is_empty()).then(|| self.conns[usize::from(i) % self.conns.len()])
    }

    fn listener(&self, i: u8) -> Option<ListenerId> {
        (!self.listeners.is_empty()).then(|| self.listeners[usize::from(i) % self.listeners.len()])
    }

    /// Applies one op to both, then compares them and checks the invariants:
    /// what the op did (they agreed on it), or what differed or broke.
    ///
    /// # Errors
    ///
    /// A disagreement between the core and the model, or a broken invariant,
    /// in words.
    pub fn step(&mut self, op: Op) -> Result<Step, String> {
        self.last_actions.clear();
        self.last_result = None;
        self.apply(op)?;
        Ok(Step {
            result: self.last_result.take(),
            actions: std::mem::take(&mut self.last_actions),
        })
    }

    /// [`step`](Harness::step), leaving what the op did in `last_*`.
    fn apply(&mut self, op: Op) -> Result<(), String> {
        // Operands first: ops naming an id before any exists do nothing.
        let conn = match op {
            Op::RequestStarted(i)
            | Op::HeadersComplete(i)
            | Op::BodyComplete(i)
            | Op::WriteBlocked(i)
            | Op::WriteUnblocked(i)
            | Op::ResponseDone(i)
            | Op::ResponseDoneKeptAlive(i)
            | Op::Hijack(i)
            | Op::StreamOpened(i)
            | Op::StreamClosed(i)
            | Op::Closed(i) => match self.conn(i) {
                Some(c) => Some(c),
                None => return Ok(()),
            },
            _ => None,
        };
        let listener = match op {
            Op::Accept(i) | Op::ListenerClosed(i) => match self.listener(i) {
                Some(l) => Some(l),
                None => return Ok(()),
            },
            _ => None,
        };
        // Every id below was checked to exist just above.
        let c = || conn.expect("operand resolved above");
        let l = || listener.expect("operand resolved above");

        let before = self.model.clone();
        let now = self.clock.now();
        let (server, m) = (&mut self.server, &mut self.model);
        m.run_timers();
        let (got, want) = match op {
            Op::AddListener => {
                let got = server.add_listener();
                let want = if m.phase.is_shutting_down() {
                    Err(Error::ServerClosed)
                } else {
                    Ok(())
                };
                if let Ok(id) = got {
                    if self.listeners.contains(&id) {
                        return Err(format!("{id} issued twice"));
                    }
                    self.listeners.push(id);
                    m.listeners.push((id, L::Open));
                }
                (got.map(|_| ()), want)
            }
            Op::ListenerClosed(_) => {
                let got = server.listener_closed(l());
                m.listener_closed(l());
                (got, Ok(()))
            }
            Op::Accept(_) => {
                let got = server.accept(l(), now);
                if let Ok(id) = got {
                    if self.conns.contains(&id) {
                        return Err(format!("{id:?} issued twice"));
                    }
                    self.conns.push(id);
                    if let Some((_, leases)) = &mut self.leases {
                        match server.lease(id) {
                            Ok(lease) => leases.push(Some(lease)),
                            // Closed as it was accepted (a zero grace).
                            Err(Error::ConnClosed(_)) => leases.push(None),
                            Err(e) => return Err(format!("no lease for {id:?}: {e}")),
                        }
                    }
                    let released = before.listeners.contains(&(l(), L::Released));
                    let accepting = match before.phase {
                        Phase::Serving | Phase::LameDuck | Phase::HandedOff => true,
                        Phase::Draining => released,
                        Phase::Closed => false,
                    };
                    if !accepting {
                        return Err(format!("accepted while {:?}", before.phase));
                    }
                }
                let want = m.accept(l(), got.ok());
                (got.map(|_| ()), want)
            }
            Op::RequestStarted(_) => {
                let want = m.request_started(c());
                (
                    self.input(c(), ConnEvent::RequestStarted, Server::request_started),
                    want,
                )
            }
            Op::HeadersComplete(_) => {
                let want = m.headers_complete(c());
                (
                    self.input(c(), ConnEvent::HeadersComplete, Server::headers_complete),
                    want,
                )
            }
            Op::BodyComplete(_) => {
                let want = m.body_complete(c());
                (
                    self.input(c(), ConnEvent::BodyComplete, Server::body_complete),
                    want,
                )
            }
            Op::WriteBlocked(_) => (server.write_blocked(c(), now), m.write_blocked(c())),
            Op::WriteUnblocked(_) => (server.write_unblocked(c(), now), m.write_unblocked(c())),
            Op::ResponseDone(_) => {
                let want = m.response_done(c(), false);
                (
                    self.input(c(), ConnEvent::ResponseDone, Server::response_done),
                    want,
                )
            }
            Op::ResponseDoneKeptAlive(_) => (
                server.response_done_kept_alive(c(), now),
                m.response_done(c(), true),
            ),
            Op::Hijack(_) => (server.hijack(c(), now), m.hijack(c())),
            Op::StreamOpened(_) => {
                let want = m.stream_opened(c());
                (
                    self.input(c(), ConnEvent::StreamOpened, Server::stream_opened),
                    want,
                )
            }
            Op::StreamClosed(_) => {
                let want = m.stream_closed(c());
                (
                    self.input(c(), ConnEvent::StreamClosed, Server::stream_closed),
                    want,
                )
            }
            Op::Closed(_) => {
                m.closed(c());
                (server.closed(c(), now), Ok(()))
            }
            Op::Shutdown(ms) => {
                let d = ms.map(|ms| Duration::from_millis(u64::from(ms)));
                if let Some(d) = d {
                    let at = m.now + d;
                    self.deadline = Some(self.deadline.map_or(at, |old| old.min(at)));
                }
                server.shutdown(now, d.map(|d| now + d));
                m.shutdown(d.map(|d| m.now + d));
                (Ok(()), Ok(()))
            }
            Op::HandOff(linger, ms) => {
                let linger = Duration::from_millis(u64::from(linger));
                let d = ms.map(|ms| Duration::from_millis(u64::from(ms)));
                if let Some(d) = d {
                    let at = m.now + d;
                    self.deadline = Some(self.deadline.map_or(at, |old| old.min(at)));
                }
                let got = server.hand_off(now, linger, d.map(|d| now + d));
                let want = m.hand_off(d.map(|d| m.now + d), linger);
                (got, want)
            }
            Op::Close => {
                server.close(now);
                m.close();
                (Ok(()), Ok(()))
            }
            Op::HooksFinished(stage) => {
                server.hooks_finished(stage, now);
                m.hooks_finished(stage);
                (Ok(()), Ok(()))
            }
            Op::Advance(ms) => {
                let target = m.now + Duration::from_millis(u64::from(ms));
                // Wake at every deadline on the way, as a driver does. Each
                // wake-up closes something or ends a phase, so wake-ups are
                // bounded by the ops so far; 100 000 is far beyond any scenario.
                for _ in 0..100_000 {
                    let Some(t) = self.server.poll_timeout() else {
                        break;
                    };
                    if t > self.clock.origin() + target {
                        break;
                    }
                    let before = self.model.clone();
                    self.clock.advance_to(t);
                    self.model.now = self.clock.elapsed();
                    self.server.handle_timeout(t);
                    self.model.run_timers();
                    self.compare(&before, Ok(()), Ok(()))?;
                }
                self.clock.advance_to(self.clock.origin() + target);
                self.model.now = self.clock.elapsed();
                return self.compare(&before, Ok(()), Ok(()));
            }
            Op::Jump(ms) => {
                self.clock.advance(Duration::from_millis(u64::from(ms)));
                m.now = self.clock.elapsed();
                server.handle_timeout(self.clock.now());
                (Ok(()), Ok(()))
            }
        };
        self.model.run_timers();
        // Within this call the connection went through the state the op
        // names, and a zero timeout may have closed it as such: a request
        // just started, a response just completed (Idle), a head (its body
        // now timed), a write blocked.
        // Streams beside other streams, and the last one closing: the
        // multiplexed behaviours the coverage test asks for.
        if let (Some(c), Ok(())) = (conn, &got) {
            let streams = before
                .conns
                .iter()
                .find(|mc| mc.id == c)
                .map_or(0, |mc| mc.streams);
            let kind = match op {
                Op::StreamOpened(_) if streams > 0 => Some("StreamOpened(beside another)"),
                Op::StreamClosed(_) if streams == 1 => Some("StreamClosed(last)"),
                _ => None,
            };
            if let Some(kind) = kind {
                *self.observed.entry(kind.into()).or_default() += 1;
            }
        }
        let mut before = before;
        if let Some(c) = conn {
            let now = self.model.now;
            for mc in before.conns.iter_mut().filter(|mc| mc.id == c) {
                match op {
                    Op::ResponseDone(_) | Op::ResponseDoneKeptAlive(_)
                        if mc.st.in_request() && mc.streams == 0 =>
                    {
                        mc.st = St::Idle;
                    }
                    Op::RequestStarted(_) if matches!(mc.st, St::New | St::Idle) => {
                        mc.st = St::Head;
                        mc.since = now;
                    }
                    Op::StreamOpened(_) if matches!(mc.st, St::New | St::Idle) => {
                        mc.st = St::Active;
                        mc.since = now;
                    }
                    Op::StreamClosed(_) if mc.st == St::Active && mc.streams == 1 => {
                        mc.st = St::Idle;
                    }
                    Op::HeadersComplete(_) if mc.st == St::Head => {
                        mc.st = St::Body;
                        mc.head_at = now;
                    }
                    Op::WriteBlocked(_) if mc.st != St::Hijacked => {
                        mc.blocked_at = mc.blocked_at.or(Some(now));
                    }
                    _ => {}
                }
            }
        }
        self.compare(&before, got, want)
    }

    /// Compares core and model after an input and checks the invariants.
    fn compare(
        &mut self,
        before: &Model,
        got: Result<(), Error>,
        want: Result<(), Error>,
    ) -> Result<(), String> {
        if got != want {
            return Err(format!("core returned {got:?}, model {want:?}"));
        }
        let mut actions: Vec<Action> = std::iter::from_fn(|| self.server.poll_action()).collect();
        self.last_actions.extend(actions.iter().copied());
        self.last_result = Some(got);
        let mut expected = std::mem::take(&mut self.model.actions);
        let now = self.model.now;

        for a in &actions {
            let kind = match a {
                Action::CloseConn { conn, reason } if self.recorded_last.contains(conn) => {
                    // Closed with its last request event recorded by its lease.
                    *self
                        .observed
                        .entry(format!("Lease→CloseConn({reason:?})"))
                        .or_default() += 1;
                    format!("CloseConn({reason:?})")
                }
                Action::CloseConn { reason, .. } => format!("CloseConn({reason:?})"),
                Action::Done(o) => format!("Done({:?})", o.completion),
                Action::CloseListener(_) => "CloseListener".into(),
                Action::ReleaseListener(_) => "ReleaseListener".into(),
                Action::FinishAndClose(conn) => {
                    if self.recorded_last.contains(conn) {
                        // Active through its lease when the drain began.
                        *self
                            .observed
                            .entry("Lease→FinishAndClose".into())
                            .or_default() += 1;
                    }
                    "FinishAndClose".into()
                }
                Action::NotifyHijacked(_) => "NotifyHijacked".into(),
                Action::NotifyActive(_) => "NotifyActive".into(),
                other => format!("{other:?}"),
            };
            *self.observed.entry(kind).or_default() += 1;
        }

        // Invariants, independent of the model.
        for (i, a) in actions.iter().enumerate() {
            match *a {
                Action::Done(outcome) => {
                    self.done += 1;
                    if self.done > 1 {
                        return Err("Done emitted twice".into());
                    }
                    if i + 1 != actions.len() {
                        return Err(format!("Done is not last: {actions:?}"));
                    }
                    if self.server.counts().tracked() != 0 {
                        return Err(format!(
                            "Done with connections tracked: {:?}",
                            self.server.counts()
                        ));
                    }
                    if outcome.completion == Completion::Drained
                        && self.model.cfg.wait_for_hijacked
                        && self.server.counts().hijacked != 0
                    {
                        return Err("Drained while waiting for hijacked connections".into());
                    }
                }
                Action::NotifyActive(conn) => {
                    // Once per connection, only from the drain on, and only
                    // to one with a request (or stream) before or after.
                    if self.notified_active.contains(&conn) {
                        return Err(format!("{conn:?} notified twice"));
                    }
                    self.notified_active.push(conn);
                    if !matches!(self.server.phase(), Phase::Draining | Phase::Closed) {
                        return Err(format!("{conn:?} notified while {:?}", self.server.phase()));
                    }
                    let in_request =
                        |m: &Model| m.conns.iter().any(|c| c.id == conn && c.st.in_request());
                    if !in_request(before) && !in_request(&self.model) {
                        return Err(format!("{conn:?} notified without a request"));
                    }
                }
                Action::CloseConn { conn, reason } => {
                    let prior = before.conns.iter().find(|c| c.id == conn);
                    let deadline_passed = self.deadline.is_some_and(|d| d <= now);
                    let cfg = &self.model.cfg;
                    // A request is cut by a timeout only once it has run out.
                    let stalled = prior
                        .and_then(|c| c.write_due(cfg))
                        .is_some_and(|at| at <= now);
                    let body_late = prior.is_some_and(|c| {
                        c.st == St::Body && cfg.body_timeout.is_some_and(|b| c.head_at + b <= now)
                    });
                    let ok = match prior.map(|c| c.st) {
                        Some(St::Hijacked) => false,
                        Some(st @ (St::Head | St::Body | St::Active)) => match reason {
                            CloseReason::Deadline => deadline_passed,
                            CloseReason::ServerClosed | CloseReason::KeepAliveOff => true,
                            CloseReason::HeaderTimeout => st == St::Head,
                            CloseReason::BodyTimeout => body_late,
                            CloseReason::WriteTimeout => stalled,
                            _ => false,
                        },
                        _ => {
                            reason != CloseReason::WriteTimeout
                                && reason != CloseReason::BodyTimeout
                        }
                    };
                    if !ok {
                        return Err(format!(
                            "{conn:?} closed for {reason:?} while {:?} at {now:?}",
                            prior.map(|c| c.st)
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(t) = self.server.poll_timeout()
            && t <= self.clock.origin() + now
        {
            return Err(format!(
                "poll_timeout {:?} not after now {now:?}",
                t - self.clock.origin()
            ));
        }
        if self.server.phase() == Phase::Draining {
            for c in &self.model.conns {
                if c.st == St::New && c.accepted_at + self.model.cfg.new_conn_grace <= now {
                    return Err(format!(
                        "{:?} still New past its grace while draining",
                        c.id
                    ));
                }
            }
        }

        // Agreement with the model.
        let key = |a: &Action| format!("{a:?}");
        actions.sort_by_key(key);
        expected.sort_by_key(key);
        if actions != expected {
            return Err(format!(
                "actions differ\n core: {actions:?}\nmodel: {expected:?}"
            ));
        }
        if self.server.phase() != self.model.phase {
            return Err(format!(
                "phase: core {:?}, model {:?}",
                self.server.phase(),
                self.model.phase
            ));
        }
        if self.server.counts() != self.model.counts() {
            return Err(format!(
                "counts: core {:?}, model {:?}",
                self.server.counts(),
                self.model.counts()
            ));
        }
        for c in &self.model.conns {
            let got = self.server.conn_state(c.id);
            if got != Ok(c.st.public()) {
                return Err(format!("{:?}: core {got:?}, model {:?}", c.id, c.st));
            }
        }
        let want = self.model.next_deadline().map(|d| self.clock.origin() + d);
        let got = self.server.poll_timeout();
        // A lent connection's take-back may come first; it closes nothing.
        let early_take_back =
            self.server.lent() > 0 && got.is_some_and(|g| want.is_none_or(|w| g < w));
        if got != want && !early_take_back {
            return Err(format!("poll_timeout: core {got:?}, model {want:?}"));
        }
        if self.leases.is_some() && self.server.lent() > 0 {
            *self.observed.entry("Lease(lent)".into()).or_default() += 1;
        }
        if self.server.keep_alive() != self.model.keep_alive() {
            return Err("keep_alive differs".into());
        }
        Ok(())
    }
}
