//! The driver: the one place where a [`lameduck_core::Server`] meets real
//! time and real sockets.
//!
//! Every input (an accept, a connection event, a command from the handle, a
//! timer) locks the driver, reads `Instant::now()`, calls the core, drains
//! its actions and carries them out, then re-arms the timer if and only if
//! [`poll_timeout`](lameduck_core::Server::poll_timeout) changed. Carrying
//! out an action never blocks: it flips a connection's [`Control`] (the
//! connection's own task does the IO), stops a listener through its
//! [`ListenerFd`], completes the done signal, or sends an [`Order`] to the
//! [`Worker`](crate::worker::Worker) — the task on the server's runtime
//! that sleeps until the deadline and spawns what must run there (hooks,
//! handed-in connections). Observers run after the lock is released.
//!
//! The driver holds nothing of the runtime's: any thread may give it an
//! input (a handle's command, a signal handler), while tasks, timers and
//! sockets stay with the worker.
//!
//! A kept-alive connection's requests usually take no lock at all: each
//! connection holds its lease ([`lameduck_core::lease`], taken at its
//! accept), and [`Driver::report`] records a request event there while the
//! core lends the connection — one compare-and-swap — and makes it an
//! input only when the core has taken the lease back (or the event does
//! not fit). The core decides when to lend and take back; the driver only
//! offers each event to the lease first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use event_listener::Event;
use lameduck_core::lease::LeaseClock;
use lameduck_core::{
    Action, ConnEvent, ConnId, DoneSender, Drained, Error, HookStage, ListenerId, Phase, Server,
    done_signal,
};

use crate::conn::{AnyIo, GentleCloses};
use crate::control::{CLOSE, Control, FINISH};
// The server's events (the variants of `crate::event::Event` a driver emits;
// `Event` alone is `event_listener`'s wake-up here).
use crate::event::{Event as ServerEvent, Sink};
use crate::hooks::Hooks;
use crate::listener::ListenerFd;
use crate::sync::{Stop, wait_until};

/// One server's driver, shared by its tasks and handles.
pub(crate) struct Driver {
    state: Mutex<State>,
    /// Notified when the armed deadline changes (and at the end).
    timer_changed: Event,
    /// Mirror of the core's `keep_alive()`, readable without the lock.
    keep_alive: AtomicBool,
    /// What connections stamp their lent request events with.
    lease_clock: LeaseClock,
    /// What connections report beyond the basics, as the configuration asks:
    /// the request body's end (`Config::body_timeout`), write stalls
    /// (`Config::write_timeout`). Without those timeouts the reports would
    /// change nothing, so they are not made.
    pub(crate) report: Reports,
    /// Gentle closes in progress; [`Driver::finished`] waits for them.
    pub(crate) gentle_closes: Arc<GentleCloses>,
    /// Paused at the connection limit.
    pub(crate) accept_gate: AcceptGate,
    /// The listener that connections handed in through `Handle::serve_io`
    /// count as accepted on (registered with the core on first use).
    pub(crate) handed_in_listener: Mutex<Option<ListenerId>>,
    /// The server serves (its accept loops and worker run).
    pub(crate) serving: AtomicBool,
    /// To the worker; its receiver, taken once by the worker's task.
    orders: async_channel::Sender<Order>,
    pub(crate) orders_rx: async_channel::Receiver<Order>,
    drained: Drained,
    /// Told the outcome once the done signal completed (a server on
    /// several threads joins its members' signals).
    done_hook: std::sync::OnceLock<DoneHook>,
    events: Sink,
    /// Told each phase the core enters ([`Driver::watch_phases`]).
    phase_watches: Mutex<Vec<PhaseWatch>>,
    pub(crate) hooks: Hooks,
}

/// Told each phase a driver's core enters, after the lock is released and
/// before the events are observed: how the phases reach a restart machine
/// (`unix::Lifecycle`) as inputs, whoever began the change.
pub(crate) type PhaseWatch = Arc<dyn Fn(Phase) + Send + Sync>;

struct State {
    core: Server,
    conns: HashMap<ConnId, Arc<Control>>,
    listeners: HashMap<ListenerId, ListenerEntry>,
    /// The deadline the timer task waits for.
    armed: Option<Instant>,
    /// The shutdown deadline, once one was given (kept after the core's
    /// `Done`: it bounds [`Driver::finished`]).
    deadline: Option<Instant>,
    done: Option<DoneSender>,
}

/// Something for the worker to do on the server's runtime.
pub(crate) enum Order {
    /// Run the hooks of this stage (`Action::RunHooks`).
    RunHooks(HookStage),
    /// Run this task on the server's runtime (a watch that must stop when
    /// the runtime is stuck).
    Spawn(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Serve a connection handed in (`Handle::serve_io`), already
    /// registered with the core.
    ServeHandedIn {
        conn: ConnId,
        control: Arc<Control>,
        io: Box<dyn AnyIo>,
    },
}

/// A listener as the driver knows it: the socket (to stop it at once) and
/// the accept loop's stop signal.
pub(crate) struct ListenerEntry {
    pub(crate) socket: Arc<ListenerFd>,
    pub(crate) stop: Arc<Stop>,
    /// Its name for a hand-off (`LISTEN_FDNAMES`).
    pub(crate) name: Arc<str>,
}

/// Holds accept loops while the core has paused accepting (at
/// `Config::max_connections`): clients wait in the listen backlog.
#[derive(Debug, Default)]
pub(crate) struct AcceptGate {
    paused: AtomicBool,
    event: Event,
}

impl AcceptGate {
    fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    /// Resolves once accepting is not paused.
    pub(crate) async fn wait_open(&self) {
        wait_until(&self.event, || !self.paused.load(Ordering::Acquire)).await;
    }
}

/// Which optional connection events are reported to the core.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reports {
    /// `body_complete` for a request with a body.
    pub(crate) body: bool,
    /// `write_blocked` and `write_unblocked`.
    pub(crate) writes: bool,
}

/// What a joining handle is told when a driver is done.
pub(crate) type DoneHook = Box<dyn Fn(lameduck_core::Outcome) + Send + Sync>;

/// "Stop, or hand off?" for a server on several threads, decided once for
/// all of them: under every member's lock at once (taken in order; a
/// shutdown takes them one at a time, in the same order), only if every
/// member still serves and `restart_takes(serving)` agrees. Then each
/// member hands off (its listeners released, its drain begun).
pub(crate) fn hand_off_all(
    members: &[Arc<Driver>],
    restart_takes: impl FnOnce(bool) -> bool,
    linger: std::time::Duration,
    timeout: Option<std::time::Duration>,
) -> bool {
    let mut afters: Vec<AfterLock> = Vec::with_capacity(members.len());
    let handed = {
        let mut states: Vec<MutexGuard<'_, State>> = members.iter().map(|d| d.lock()).collect();
        let serving = states.iter().all(|s| !s.core.phase().is_shutting_down());
        if !restart_takes(serving) {
            return false;
        }
        let now = Instant::now();
        let deadline = timeout.and_then(|t| now.checked_add(t));
        for (driver, state) in members.iter().zip(states.iter_mut()) {
            // Cannot be refused: every member serves, under its lock.
            let _ = state.core.hand_off(now, linger, deadline);
            let mut after = AfterLock::default();
            driver.dispatch(state, &mut after);
            afters.push(after);
        }
        true
    };
    for (driver, after) in members.iter().zip(afters) {
        driver.after_lock(after);
    }
    handed
}

/// What an input left to do once the lock is released.
#[derive(Default)]
struct AfterLock {
    /// The phases entered, for the phase watches.
    phases: Vec<Phase>,
    events: Vec<ServerEvent>,
    /// Completed last, so the observer has seen every event (`Done`
    /// included) before anyone waiting on the done signal wakes.
    done: Option<(DoneSender, lameduck_core::Outcome)>,
}

impl Driver {
    /// A driver for a core built from `config` (its worker starts it).
    pub(crate) fn new(
        mut config: lameduck_core::Config,
        hooks: Hooks,
        events: Sink,
    ) -> Arc<Driver> {
        if !hooks.is_empty() {
            config.shutdown_hooks = true;
        }
        let now = Instant::now();
        let (done, drained) = done_signal();
        let core = Server::new(config, now);
        let keep_alive = core.keep_alive();
        let lease_clock = core.lease_clock();
        let report = Reports {
            body: core.config().body_timeout.is_some(),
            writes: core.config().write_timeout.is_some(),
        };
        let (orders, orders_rx) = async_channel::unbounded();
        Arc::new(Driver {
            state: Mutex::new(State {
                core,
                conns: HashMap::new(),
                listeners: HashMap::new(),
                armed: None,
                deadline: None,
                done: Some(done),
            }),
            timer_changed: Event::new(),
            keep_alive: AtomicBool::new(keep_alive),
            lease_clock,
            report,
            gentle_closes: Arc::default(),
            accept_gate: AcceptGate::default(),
            handed_in_listener: Mutex::new(None),
            serving: AtomicBool::new(false),
            orders,
            orders_rx,
            drained,
            done_hook: std::sync::OnceLock::new(),
            events,
            phase_watches: Mutex::new(Vec::new()),
            hooks,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under this lock but the core, and a core panic is a
        // bug; the state it leaves is still the best there is.
        crate::sync::lock(&self.state)
    }

    /// Feeds one input into the core and carries out what follows.
    pub(crate) fn input<T>(self: &Arc<Self>, f: impl FnOnce(&mut Server, Instant) -> T) -> T {
        self.input_with(|state, now| f(&mut state.core, now))
    }

    fn input_with<T>(self: &Arc<Self>, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        let mut after = AfterLock::default();
        let out = {
            let mut state = self.lock();
            let now = Instant::now();
            let out = f(&mut state, now);
            self.dispatch(&mut state, &mut after);
            out
        };
        self.after_lock(after);
        out
    }

    /// Drains the core's actions and carries them out; re-arms the timer.
    fn dispatch(&self, state: &mut State, after: &mut AfterLock) {
        while let Some(action) = state.core.poll_action() {
            match action {
                Action::PhaseChanged(phase) => {
                    after.phases.push(phase);
                    self.push_event(after, ServerEvent::Phase(phase));
                }
                Action::CloseListener(listener) => {
                    if let Some(entry) = state.listeners.remove(&listener) {
                        // The loop sees the stop before any accept error.
                        entry.stop.stop();
                        entry.socket.stop_accepting();
                    }
                }
                Action::ReleaseListener(listener) => match state.listeners.remove(&listener) {
                    // Its accept loop reports the end (`accept_loop_ended`).
                    Some(entry) => {
                        entry.socket.keep_file();
                        entry.stop.stop();
                    }
                    // No accept loop (the listener of `Handle::serve_io`):
                    // nothing more can arrive on it.
                    None => {
                        let _ = state.core.listener_closed(listener);
                    }
                },
                Action::CloseConn { conn, reason } => {
                    if let Some(control) = state.conns.remove(&conn) {
                        let forced = reason.is_forced();
                        // Counted before the core's `Done` (maybe queued
                        // right after) can reach `finished`.
                        let counted = !forced && self.gentle_closes.expect();
                        control.close(forced, counted);
                    }
                    self.push_event(after, ServerEvent::ConnClosed { conn, reason });
                }
                Action::FinishAndClose(conn) => {
                    if let Some(control) = state.conns.get(&conn) {
                        control.finish();
                    }
                }
                Action::NotifyActive(conn) | Action::NotifyHijacked(conn) => {
                    if let Some(control) = state.conns.get(&conn) {
                        control.notify();
                    }
                }
                // Unbounded, and the worker's task holds the receiver until
                // the core is done: the order cannot be lost.
                Action::RunHooks(stage) => {
                    let _ = self.orders.try_send(Order::RunHooks(stage));
                }
                Action::CutOffHooks(stage) => {
                    self.hooks.cut_off(stage);
                    self.push_event(after, ServerEvent::HooksCutOff(stage));
                }
                Action::PauseAccepting => {
                    self.accept_gate.set_paused(true);
                    self.push_event(after, ServerEvent::AcceptPaused);
                }
                Action::ResumeAccepting => {
                    self.accept_gate.set_paused(false);
                    self.push_event(after, ServerEvent::AcceptResumed);
                }
                Action::Done(outcome) => {
                    // Forced: gentle closes stop too (see `finished`).
                    if outcome.completion != lameduck_core::Completion::Drained {
                        self.gentle_closes.cut();
                    }
                    after.done = state.done.take().map(|done| (done, outcome));
                    self.push_event(after, ServerEvent::Done(outcome));
                }
            }
        }
        self.keep_alive
            .store(state.core.keep_alive(), Ordering::Release);
        if state.core.phase().is_shutting_down()
            && let Some(deadline) = state.core.snapshot().deadline
        {
            state.deadline = Some(deadline);
        }
        let next = state.core.poll_timeout();
        if next != state.armed || state.core.is_done() {
            state.armed = next;
            self.timer_changed.notify(1);
        }
    }

    /// Logs the event (the `log` facade, target `lameduck`) and tells the
    /// observer, if any — through the server's group if it runs on several
    /// threads (never under the lock).
    pub(crate) fn observe(&self, event: &ServerEvent) {
        self.events.observe(event);
    }

    /// Keeps `event` for [`observe`](Self::observe) once the lock is
    /// released — only if someone will see it.
    fn push_event(&self, after: &mut AfterLock, event: ServerEvent) {
        if self.events.wants(event.level()) {
            after.events.push(event);
        }
    }

    fn after_lock(self: &Arc<Self>, after: AfterLock) {
        if !after.phases.is_empty() {
            let watches = crate::sync::lock(&self.phase_watches).clone();
            for phase in &after.phases {
                for watch in &watches {
                    watch(*phase);
                }
            }
        }
        for event in &after.events {
            self.observe(event);
        }
        if let Some((done, outcome)) = after.done {
            done.complete(outcome);
            if let Some(hook) = self.done_hook.get() {
                hook(outcome);
            }
        }
    }

    /// Calls `watch` with each phase the core enters from now on (see
    /// [`PhaseWatch`]); returns the phase it is in now. A change that races
    /// the registration may be told as well as returned.
    pub(crate) fn watch_phases(&self, watch: PhaseWatch) -> Phase {
        let state = self.lock();
        crate::sync::lock(&self.phase_watches).push(watch);
        state.core.phase()
    }

    // ----- inputs --------------------------------------------------------

    /// Registers a listener with the core and the registry.
    pub(crate) fn add_listener(
        self: &Arc<Self>,
        entry: ListenerEntry,
    ) -> Result<ListenerId, Error> {
        self.input_with(|state, _| {
            let id = state.core.add_listener()?;
            state.listeners.insert(id, entry);
            Ok(id)
        })
    }

    /// The listeners still open, in the order they were added, with their
    /// names: what a successor is given at a hand-off.
    #[cfg(unix)]
    pub(crate) fn open_listeners(&self) -> Vec<(Arc<ListenerFd>, Arc<str>)> {
        let state = self.lock();
        let mut open: Vec<_> = state.listeners.iter().collect();
        open.sort_by_key(|(id, _)| **id);
        open.into_iter()
            .map(|(_, entry)| (entry.socket.clone(), entry.name.clone()))
            .collect()
    }

    /// Resolves once every open listener's accept loop is running.
    #[cfg(unix)]
    pub(crate) async fn listeners_armed(&self) {
        let stops: Vec<Arc<Stop>> = self
            .lock()
            .listeners
            .values()
            .map(|entry| entry.stop.clone())
            .collect();
        for stop in stops {
            stop.wait_armed().await;
        }
    }

    /// The accept loop of `listener` ended — stopped (a close, or a
    /// release to a successor: the core then stops waiting for accepts that
    /// raced it), or on its own (a fatal error). This process accepts no
    /// more on it.
    pub(crate) fn accept_loop_ended(self: &Arc<Self>, listener: ListenerId) {
        self.input_with(|state, _| {
            state.listeners.remove(&listener);
            // The core issued the id; closing a closed listener is harmless.
            let _ = state.core.listener_closed(listener);
        });
    }

    /// A connection was accepted: registers it with the core, with its control.
    pub(crate) fn accept(
        self: &Arc<Self>,
        listener: ListenerId,
        control: Arc<Control>,
    ) -> Result<ConnId, Error> {
        self.input_with(|state, now| {
            let conn = state.core.accept(listener, now)?;
            // Just accepted, so live: the lease cannot be refused.
            if let Ok(lease) = state.core.lease(conn) {
                let _ = control.lease.set(lease);
            }
            state.conns.insert(conn, control);
            Ok(conn)
        })
    }

    /// Reports a request event of a connection served one request at a
    /// time: recorded through its lease while the core lends it (no lock,
    /// no core call), else `input` — the same answer either way.
    pub(crate) fn report(
        self: &Arc<Self>,
        control: &Control,
        event: ConnEvent,
        input: impl FnOnce(&mut Server, Instant) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if let Some(lease) = control.lease.get()
            && lease.advance(event, &self.lease_clock, Instant::now)
        {
            return Ok(());
        }
        self.input(input)
    }

    /// The connection is gone (its socket is being dropped).
    pub(crate) fn conn_closed(self: &Arc<Self>, conn: ConnId) {
        self.input_with(|state, now| {
            state.conns.remove(&conn);
            // Only `UnknownConn` can fail, and this driver issued the id.
            let _ = state.core.closed(conn, now);
        });
    }

    // ----- lock-free queries ----------------------------------------------

    /// Whether the connection behind `control` may be kept alive after the
    /// response (or message) now being completed: the server keeps
    /// connections alive (the core's [`keep_alive`](Server::keep_alive),
    /// mirrored here) and the core has not told this one to finish or
    /// close. The one answer HTTP and raw streams both ask.
    pub(crate) fn keeps_alive(&self, control: &Control) -> bool {
        self.keep_alive.load(Ordering::Acquire) && control.cmd() & (FINISH | CLOSE) == 0
    }

    pub(crate) fn drained(&self) -> &Drained {
        &self.drained
    }

    /// Calls `hook` with the outcome once done — at once if done already.
    /// (It may be called twice when the two race: make it idempotent.)
    pub(crate) fn on_done(&self, hook: DoneHook) {
        if self.done_hook.set(hook).is_err() {
            return; // set once, by the one handle that joins
        }
        if let (Some(outcome), Some(hook)) = (self.drained.outcome(), self.done_hook.get()) {
            hook(outcome);
        }
    }

    /// Waits for the done signal, then for the gentle closes still in
    /// progress — a process exiting sooner would turn their sockets into
    /// resets (unread input at close makes the kernel send RST, which
    /// destroys response bytes the peer has not read yet). Each is bounded
    /// by the gentle close's own limit; the worker cuts them all at the
    /// shutdown deadline (the last one given), and the driver at once after
    /// a forced end.
    pub(crate) async fn finished(
        &self,
    ) -> Result<lameduck_core::Outcome, lameduck_core::Abandoned> {
        let outcome = self.drained.wait().await?;
        self.gentle_closes.ended().await;
        Ok(outcome)
    }

    /// The shutdown deadline last given, kept after the core is done: it
    /// bounds the gentle closes.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }

    /// Sends `order` to the worker. `false` once the worker has stopped
    /// taking orders (the server is done).
    pub(crate) fn order(&self, order: Order) -> bool {
        self.orders.try_send(order).is_ok()
    }

    /// The timer's state, for the worker.
    pub(crate) fn timer_listen(&self) -> event_listener::EventListener {
        self.timer_changed.listen()
    }

    // ----- queries under the lock ------------------------------------------

    pub(crate) fn snapshot(&self) -> lameduck_core::Snapshot {
        self.lock().core.snapshot()
    }

    pub(crate) fn armed(&self) -> (Option<Instant>, bool) {
        let state = self.lock();
        (state.armed, state.core.is_done())
    }
}
