//! The [`Lifecycle`]: signals, readiness, restarts (carrying out
//! [`lameduck_core::restart::Restart`]'s actions), systemd notifications
//! and the pid file.

use std::ffi::OsString;
use std::fmt;
use std::future::{Future, pending};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_io::Async;
use async_signal::Signals;
use futures_lite::{FutureExt, StreamExt};
use lameduck_core::restart::{
    RestartConfig, RestartError as CoreError, RestartFailure, RestartPhase,
};
use lameduck_core::{Outcome, Phase};

use super::attempt::{Attempts, Carrier, Launched, Mode, Spawn, program};
use super::ctl::{
    CONTROL_NAME, ControlSocket, MAX_CLIENTS, MAX_REQUEST, REQUEST_TIMEOUT, Request, one_line,
    parse_request,
};
use super::error::RestartError;
use super::handoff::generation;
use super::handoff::inherit::{Inherited, OwnedFile, socket_identity};
use super::handoff::link::{Link, LinkMessage};
use super::handoff::ready::{Offer, ReadyChannel, answer_state_requests};
use super::handoff::state::StateOffer;
use super::notify::{monotonic_usec, notify_or_report};
use super::pidfile;
use super::signals::{Signal, SignalAction, SignalConfig, SignalName};
use super::tasks::Tasks;
use crate::driver::{Order, hand_off_all};
use crate::handle::Handle;
use crate::sync::{lock, wait_for};

/// Something the [`Lifecycle`] did, for logs ([`Lifecycle::on_event`]).
/// `Display` gives one line.
///
/// ```
/// use lameduck::unix::{LifecycleEvent, Signal, SignalAction};
/// let event = LifecycleEvent::Signal {
///     signal: Signal::Hup,
///     action: SignalAction::Restart,
///     repeated: false,
///     deadline: None,
/// };
/// assert_eq!(event.to_string(), "SIGHUP: restarting");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LifecycleEvent {
    /// Serving, every accept loop running; reported to systemd (first
    /// start) or to the predecessor (a restart's successor).
    Ready {
        /// This process.
        pid: u32,
        /// Reported to a predecessor (or supervisor), not systemd.
        successor: bool,
        /// Reported to a [`Supervisor`](super::Supervisor).
        supervised: bool,
    },
    /// A signal arrived.
    Signal {
        /// Which.
        signal: Signal,
        /// What it does.
        action: SignalAction,
        /// A drain signal while already draining.
        repeated: bool,
        /// The drain's deadline, from now.
        deadline: Option<Duration>,
    },
    /// A restart began.
    RestartStarted {
        /// 1 for this process's first.
        attempt: u64,
        /// The generation the successor would be (this process's + 1):
        /// with `attempt`, unique across the server's life, whereas
        /// `attempt` alone starts again in every generation.
        generation: u64,
    },
    /// The successor was started; it has until the readiness deadline.
    SuccessorStarted {
        /// Its pid.
        pid: u32,
    },
    /// The successor is ready and serving: this process stopped accepting
    /// and drains.
    HandedOff {
        /// This process.
        pid: u32,
        /// The successor.
        successor: u32,
    },
    /// A restart was refused or rolled back.
    RestartFailed(RestartError),
    /// Something went wrong that does not stop the server (a pid file
    /// that cannot be written, a notification that cannot be sent).
    Problem(String),
    /// A restart was asked on the control socket; `joined`: one was in
    /// flight, whose outcome is the answer.
    ControlRestart {
        /// A restart was already in flight.
        joined: bool,
    },
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LifecycleEvent::Ready {
                pid,
                supervised: true,
                ..
            } => write!(f, "ready (pid {pid}); told the supervisor"),
            LifecycleEvent::Ready {
                pid,
                successor: false,
                ..
            } => write!(f, "ready (pid {pid})"),
            LifecycleEvent::Ready {
                pid,
                successor: true,
                ..
            } => write!(f, "ready (pid {pid}); told the predecessor"),
            LifecycleEvent::Signal {
                signal,
                action,
                repeated,
                deadline,
            } => {
                let name = SignalName(*signal);
                match (action, repeated) {
                    (SignalAction::Drain, false) => match deadline {
                        Some(d) => write!(
                            f,
                            "{name}: draining (deadline {:.3} s; again to close at once)",
                            d.as_secs_f64()
                        ),
                        None => write!(f, "{name}: draining (no deadline; again to close at once)"),
                    },
                    // Not "again": the drain may have begun with another
                    // signal, or with no signal at all.
                    (SignalAction::Drain, true) => {
                        write!(f, "{name} while draining: draining goes on")
                    }
                    (SignalAction::Close, true) => write!(f, "{name} while draining: closing now"),
                    (SignalAction::Close, false) => write!(f, "{name}: closing now"),
                    (SignalAction::Restart, _) => write!(f, "{name}: restarting"),
                }
            }
            LifecycleEvent::RestartStarted {
                attempt,
                generation,
            } => write!(
                f,
                "restart to generation {generation} (attempt {attempt} of this process): \
                 starting a successor"
            ),
            LifecycleEvent::SuccessorStarted { pid } => {
                write!(
                    f,
                    "restart: successor pid {pid} started; waiting until it is ready"
                )
            }
            LifecycleEvent::HandedOff { pid, successor } => {
                write!(
                    f,
                    "restart: pid {pid} handed off to pid {successor}; draining"
                )
            }
            LifecycleEvent::RestartFailed(RestartError::Failed {
                failure: RestartFailure::Stopping,
                ..
            }) => f.write_str("restart abandoned: the server is stopping"),
            LifecycleEvent::RestartFailed(e @ RestartError::Failed { .. }) => {
                write!(
                    f,
                    "restart failed: {e}; still serving (pid {})",
                    std::process::id()
                )
            }
            LifecycleEvent::RestartFailed(e) => write!(f, "restart refused: {e}"),
            LifecycleEvent::Problem(message) => f.write_str(message),
            LifecycleEvent::ControlRestart { joined: false } => {
                f.write_str("control: restart requested")
            }
            LifecycleEvent::ControlRestart { joined: true } => {
                f.write_str("control: restart requested; joining the restart in flight")
            }
        }
    }
}

/// How [`Lifecycle::run`] ended.
///
/// ```
/// # fn demo(ended: lameduck::unix::Ended) {
/// match ended.successor {
///     Some(pid) => println!("handed off to {pid}; drained: {}", ended.outcome.is_graceful()),
///     None => println!("stopped; drained: {}", ended.outcome.is_graceful()),
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Ended {
    /// How the drain ended.
    pub outcome: Outcome,
    /// The successor this process handed off to, if it did.
    pub successor: Option<u32>,
}

type Observer = Arc<dyn Fn(&LifecycleEvent) + Send + Sync>;

/// [`Lifecycle::handoff_linger`]'s default.
const DEFAULT_HANDOFF_LINGER: Duration = Duration::from_secs(1);

struct Settings {
    signals: SignalConfig,
    executable: io::Result<PathBuf>,
    args: Vec<OsString>,
    drain_timeout: Option<Duration>,
    handoff_linger: Duration,
    pid_file: Option<PathBuf>,
    notify: bool,
    /// Builds the state offered at each restart.
    state: Option<StateSource>,
}

type StateSource = Arc<dyn Fn() -> io::Result<StateOffer> + Send + Sync>;

struct Shared {
    handle: Handle,
    settings: Mutex<Settings>,
    /// The restart machine and the attempt in flight.
    attempts: Attempts,
    ready: Mutex<Option<ReadyChannel>>,
    /// The supervisor's link, until `run` reads it.
    link: Mutex<Option<Link>>,
    /// Socket files the predecessor handed over, taken up once ready.
    owned_files: Mutex<Vec<OwnedFile>>,
    /// This process is a supervised generation.
    supervised: AtomicBool,
    /// Its supervisor's pid (its parent's when it was adopted; 0 if the
    /// parent is outside this process's pid namespace).
    supervisor: AtomicU32,
    signals: Mutex<Option<Signals>>,
    /// Readiness was reported.
    reported_ready: AtomicBool,
    observer: Mutex<Option<Observer>>,
    /// A drain or close was asked of this lifecycle (its methods, its
    /// signals): a drain signal after it is a repeat — after a hand-off
    /// too, where the server's phases do not show a stop. (Whether the
    /// server is stopping is the restart machine's to know: every phase
    /// the server enters is its input.)
    drain_asked: AtomicBool,
    /// The control socket, until `run` serves it.
    control: Mutex<Option<ControlSocket>>,
    /// The control socket being served: passed to a successor.
    control_listener: Mutex<Option<Arc<Async<UnixListener>>>>,
    /// Notified on a hand-off: this process stops accepting on the control
    /// socket (the successor does).
    control_stop: event_listener::Event,
    /// Control connections being served.
    control_clients: AtomicUsize,
    /// The outcome of the restart in flight, for requests that join it.
    current_restart: Mutex<Option<Arc<RestartSlot>>>,
}

/// A restart's outcome, once known: the new pid and generation, or why not.
type RestartOutcome = Result<(u32, u64), RestartError>;

/// Where those who join a restart in flight wait for its outcome.
#[derive(Default)]
struct RestartSlot {
    result: Mutex<Option<RestartOutcome>>,
    known: event_listener::Event,
}

impl RestartSlot {
    fn set(&self, result: RestartOutcome) {
        *lock(&self.result) = Some(result);
        self.known.notify(usize::MAX);
    }

    async fn wait(&self) -> RestartOutcome {
        // The outcome comes once the attempt (bounded by its deadline) ends.
        wait_for(&self.known, || lock(&self.result).clone()).await
    }
}

/// A [`Lifecycle`]'s state, read at once ([`Lifecycle::snapshot`]).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
/// let snapshot = lameduck::unix::Lifecycle::new(handle).snapshot();
/// assert!(snapshot.generation >= 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifecycleSnapshot {
    /// Phase, connection counts, deadline and drain progress.
    pub server: lameduck_core::Snapshot,
    /// Where the restart protocol is.
    pub restart: RestartPhase,
    /// This process's generation: 1 for a process started by hand (or by
    /// systemd), one more for each successor started by a restart, the
    /// supervisor's count for its generations (`LAMEDUCK_GENERATION`).
    pub generation: u64,
    /// Restarts this process has started (successful or not).
    pub restarts_attempted: u64,
}

/// A server's life on Unix: readiness, signals, restarts, systemd and the
/// pid file, around a [`Handle`]. Cheap to clone; every method may be
/// called from any thread.
///
/// See the [module docs](super) for the restart protocol.
///
/// A drain may begin through the lifecycle ([`shutdown`](Self::shutdown),
/// [`close`](Self::close), its signals) or the [`Handle`]'s own methods:
/// either way the restart machine hears the server's phase, so a restart
/// in flight is called off (its successor killed) and none starts after.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use lameduck::unix::{Lifecycle, SignalConfig};
///
/// let handle = lameduck::Builder::new()
///     .bind("127.0.0.1:0")?
///     .serve_stream(|conn| async move { drop(conn) })?;
/// let lifecycle = Lifecycle::new(handle)
///     .signals(SignalConfig::none()) // methods only, in this example
///     .drain_timeout(Duration::from_secs(5))
///     .notify(false);
/// let stopper = lifecycle.clone();
/// let ended = smol::block_on(async {
///     smol::spawn(async move { stopper.shutdown() }).detach();
///     lifecycle.run().await
/// })?;
/// assert!(ended.outcome.is_graceful());
/// assert_eq!(ended.successor, None);
/// # Ok(()) }
/// ```
pub struct Lifecycle {
    shared: Arc<Shared>,
}

impl Clone for Lifecycle {
    fn clone(&self) -> Self {
        Lifecycle {
            shared: self.shared.clone(),
        }
    }
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("handle", &self.shared.handle)
            .field("restart", &self.restart_phase())
            .finish_non_exhaustive()
    }
}

impl Lifecycle {
    /// The lifecycle of the server behind `handle` (serving or about to).
    /// Defaults: [`SignalConfig::default`], the successor is this
    /// executable (as found now) with this process's arguments, 60 s to be
    /// ready, no drain deadline, no pid file, systemd notifications on
    /// (sent only under systemd).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle);
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn new(handle: Handle) -> Lifecycle {
        let settings = Settings {
            signals: SignalConfig::default(),
            executable: std::env::current_exe(),
            args: std::env::args_os().skip(1).collect(),
            drain_timeout: None,
            handoff_linger: DEFAULT_HANDOFF_LINGER,
            pid_file: None,
            notify: true,
            state: None,
        };
        let members = handle.members().to_vec();
        let lifecycle = Lifecycle {
            shared: Arc::new(Shared {
                handle,
                settings: Mutex::new(settings),
                attempts: Attempts::new(RestartConfig::default()),
                ready: Mutex::new(None),
                link: Mutex::new(None),
                owned_files: Mutex::new(Vec::new()),
                supervised: AtomicBool::new(false),
                supervisor: AtomicU32::new(0),
                signals: Mutex::new(None),
                reported_ready: AtomicBool::new(false),
                observer: Mutex::new(None),
                drain_asked: AtomicBool::new(false),
                control: Mutex::new(None),
                control_listener: Mutex::new(None),
                control_stop: event_listener::Event::new(),
                control_clients: AtomicUsize::new(0),
                current_restart: Mutex::new(None),
            }),
        };
        // Every phase each thread's server enters reaches the restart
        // machine, whoever caused it (this lifecycle, the handle, the
        // server's own deadline). Weak: the server's drivers outlive a
        // dropped lifecycle.
        let shared = Arc::downgrade(&lifecycle.shared);
        for driver in members {
            let shared = shared.clone();
            let now = driver.watch_phases(Arc::new(move |phase| {
                if let Some(shared) = shared.upgrade() {
                    Lifecycle { shared }.server_phase(phase);
                }
            }));
            // A server already stopping: no restart. (Not announced:
            // systemd heard of that stop from whoever began it.)
            lifecycle.shared.attempts.server_phase(now);
        }
        lifecycle
    }

    /// The server entered `phase` (on one of its threads): the restart
    /// machine's input. The first phase of a stop (not after a hand-off:
    /// the successor is systemd's main process then) tells systemd
    /// `STOPPING=1`.
    fn server_phase(&self, phase: Phase) {
        if self.shared.attempts.server_phase(phase) {
            self.send_notify("STOPPING=1");
        }
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.shared.settings)
    }

    /// Which signals drain, close or restart.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use lameduck::unix::{Lifecycle, Signal, SignalAction, SignalConfig};
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = Lifecycle::new(handle)
    ///     .signals(SignalConfig::default().on(Signal::Usr1, SignalAction::Restart));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn signals(self, signals: SignalConfig) -> Self {
        self.settings().signals = signals;
        self
    }

    /// The successor's executable (default: this one, as found when the
    /// lifecycle was created — so an upgrade replaces the file there).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle)
    ///     .restart_executable("/usr/local/bin/server");
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn restart_executable(self, path: impl Into<PathBuf>) -> Self {
        self.settings().executable = Ok(path.into());
        self
    }

    /// The successor's arguments (default: this process's).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle).restart_args(["--config", "/etc/server.toml"]);
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn restart_args<I, S>(self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.settings().args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long a successor has, from the restart, to report ready (default
    /// 60 s); then it is killed and the restart rolled back.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle)
    ///     .ready_timeout(std::time::Duration::from_secs(10));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn ready_timeout(self, timeout: Duration) -> Self {
        self.shared.attempts.set_ready_timeout(timeout);
        self
    }

    /// The deadline of drains begun by [`shutdown`](Self::shutdown), a
    /// drain signal or a hand-off: then what remains is closed by force
    /// (default: none).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle)
    ///     .drain_timeout(std::time::Duration::from_secs(30));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn drain_timeout(self, timeout: Duration) -> Self {
        self.settings().drain_timeout = Some(timeout);
        self
    }

    /// After a hand-off, how long idle keep-alive connections stay open
    /// (default 1 s): a client that sends its next request meanwhile gets
    /// its answer, with `Connection: close`, and reconnects — to the
    /// successor — instead of finding its connection closed under the
    /// request (an HTTP/1.1 race no server-side close can avoid otherwise).
    /// Then the drain closes those still idle. Zero: close them at once.
    /// It counts towards the [drain deadline](Self::drain_timeout).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle)
    ///     .handoff_linger(std::time::Duration::from_secs(5));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn handoff_linger(self, linger: Duration) -> Self {
        self.settings().handoff_linger = linger;
        self
    }

    /// Writes the serving process's pid to `path` (atomically): at start,
    /// and at a hand-off the successor's, before systemd hears `MAINPID`.
    /// Removed at exit unless handed off.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle).pid_file("/run/server.pid");
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn pid_file(self, path: impl Into<PathBuf>) -> Self {
        self.settings().pid_file = Some(path.into());
        self
    }

    /// Whether to send systemd notifications (default `true`; nothing is
    /// sent when `NOTIFY_SOCKET` is unset).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle).notify(false);
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn notify(self, notify: bool) -> Self {
        self.settings().notify = notify;
        self
    }

    /// What this process inherited: if a predecessor started it, readiness
    /// is reported to that predecessor (on its private channel) instead of
    /// systemd. Listeners left in `inherited` are closed.
    ///
    /// If a [`Supervisor`](super::Supervisor) started it
    /// ([`Inherited::is_supervised`]), this process is one of its
    /// generations: readiness goes to the supervisor; `HANDOFF` from the
    /// supervisor hands off (stop accepting without shutting the shared
    /// sockets down, drain, exit — as after a restart here); the end of the
    /// link (the supervisor is gone) drains for exit; restarts are refused
    /// ([`RestartError::Supervised`]: the supervisor restarts); and
    /// systemd notifications and the pid file are left to the supervisor.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = lameduck::unix::Inherited::from_env()?;
    /// let handle = lameduck::Builder::new()
    ///     .inherit_or_bind(&mut inherited, "http", "127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle).inherited(inherited);
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn inherited(self, mut inherited: Inherited) -> Self {
        *lock(&self.shared.ready) = inherited.ready.take();
        *lock(&self.shared.owned_files) = std::mem::take(&mut inherited.owned_files);
        if let Some(link) = inherited.link.take() {
            let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
            self.shared
                .supervisor
                .store(parent.unsigned_abs(), Ordering::Release);
            self.shared.supervised.store(true, Ordering::Release);
            *lock(&self.shared.link) = Some(link);
        }
        self
    }

    /// The supervisor's pid, if this process is a supervised generation
    /// (see [`inherited`](Self::inherited)): its parent when it started (0
    /// if that is outside this process's pid namespace).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle);
    /// assert_eq!(lifecycle.supervisor(), None);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn supervisor(&self) -> Option<u32> {
        self.shared
            .supervised
            .load(Ordering::Acquire)
            .then(|| self.shared.supervisor.load(Ordering::Acquire))
    }

    /// Restart state: `offer` is called when a restart starts, and what it
    /// returns is handed to the successor over the private channel, beside
    /// the listeners; the successor takes it with
    /// [`Inherited::take_state`] before it reports ready. The offer is a
    /// copy: if the successor refuses it, fails, is killed or is not ready
    /// in time, the restart is rolled back ([`RestartError::Failed`] says
    /// why) and this process keeps serving with its own state. If `offer`
    /// fails, the restart does not start a successor and fails. In a
    /// supervised generation the supervisor asks for it when it starts the
    /// next generation (over the same channel, kept open), and passes it
    /// on: the state travels between generations the same way.
    ///
    /// What this process does after a hand-off is still its own: a
    /// counter it keeps counting while it drains is not seen by the
    /// successor; a socket it passed is shared until it exits.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use lameduck::unix::{Lifecycle, StateOffer};
    ///
    /// let hits = Arc::new(AtomicU64::new(0));
    /// let counted = hits.clone();
    /// let lifecycle = Lifecycle::new(handle).restart_state(move || {
    ///     let mut offer = StateOffer::new(1);
    ///     offer.u64("hits", counted.load(Ordering::Relaxed))?;
    ///     Ok(offer)
    /// });
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn restart_state(
        self,
        offer: impl Fn() -> io::Result<StateOffer> + Send + Sync + 'static,
    ) -> Self {
        self.settings().state = Some(Arc::new(offer));
        self
    }

    /// Serves a control socket (see [`ControlSocket`]): `restart` asks for
    /// a restart and answers its outcome (joining one in flight), `status`
    /// answers a status line. Served by [`run`](Self::run) once ready; it
    /// goes to a restart's successor with the listeners, and only the
    /// successor accepts on it after the hand-off. The last process
    /// serving it removes its file. Not for supervised generations.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let path = std::env::temp_dir().join(format!("lifecycle-ctl-{}.sock", std::process::id()));
    /// let mut inherited = lameduck::unix::Inherited::default();
    /// let control = lameduck::unix::ControlSocket::inherit_or_bind(&mut inherited, &path)?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle).control(control);
    /// # let _ = lifecycle; std::fs::remove_file(&path)?; Ok(()) }
    /// ```
    #[must_use]
    pub fn control(self, socket: ControlSocket) -> Self {
        *lock(&self.shared.control) = Some(socket);
        self
    }

    /// Observes [`LifecycleEvent`]s (e.g. to log them).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle).on_event(|e| eprintln!("{e}"));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn on_event(self, f: impl Fn(&LifecycleEvent) + Send + Sync + 'static) -> Self {
        *lock(&self.shared.observer) = Some(Arc::new(f));
        self
    }

    /// Installs the signal handlers now ([`run`](Self::run) does it
    /// otherwise): call it before announcing the server, so that a signal
    /// sent right after is handled rather than killing the process.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle);
    /// lifecycle.handle_signals()?;
    /// println!("listening");
    /// # Ok(()) }
    /// ```
    pub fn handle_signals(&self) -> io::Result<()> {
        let wanted = self.settings().signals.signals();
        let mut signals = lock(&self.shared.signals);
        if signals.is_none() && !wanted.is_empty() {
            *signals = Some(Signals::new(wanted)?);
        }
        Ok(())
    }

    /// Where the restart protocol is.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// use lameduck::core::restart::RestartPhase;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle);
    /// assert_eq!(lifecycle.restart_phase(), RestartPhase::Running);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn restart_phase(&self) -> RestartPhase {
        self.shared.attempts.phase()
    }

    /// The server's [`snapshot`](Handle::snapshot) with the restart state:
    /// one read for a status page or metrics.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// use lameduck::core::{Phase, restart::RestartPhase};
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle);
    /// let snapshot = lifecycle.snapshot();
    /// assert_eq!(snapshot.server.phase, Phase::Serving);
    /// assert_eq!(snapshot.restart, RestartPhase::Running);
    /// assert_eq!(snapshot.restarts_attempted, 0);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> LifecycleSnapshot {
        LifecycleSnapshot {
            server: self.shared.handle.snapshot(),
            restart: self.shared.attempts.phase(),
            generation: generation(),
            restarts_attempted: self.shared.attempts.attempted(),
        }
    }

    fn event(&self, event: LifecycleEvent) {
        let observer = lock(&self.shared.observer).clone();
        if let Some(observer) = observer {
            observer(&event);
        }
    }

    fn send_notify(&self, state: &str) {
        // A supervised generation leaves systemd to its supervisor.
        if !self.settings().notify || self.supervisor().is_some() {
            return;
        }
        notify_or_report(state, |problem| {
            self.event(LifecycleEvent::Problem(problem));
        });
    }

    fn drain_deadline(&self) -> Option<Duration> {
        self.settings().drain_timeout
    }

    /// Serves until the server is done: reports readiness (to systemd, the
    /// pid file, or a predecessor) once every accept loop runs, then
    /// handles signals until the drain completes — after a shutdown, a
    /// close, or a hand-off to a successor — and the gentle closes in
    /// progress have ended ([`Handle::finished`]): the process may exit
    /// when it returns.
    ///
    /// Errors only if the signal handlers cannot be installed.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle).notify(false);
    /// lifecycle.close(); // (normally: a signal, later)
    /// let ended = smol::block_on(lifecycle.run())?;
    /// assert_eq!(ended.successor, None);
    /// # Ok(()) }
    /// ```
    pub async fn run(&self) -> io::Result<Ended> {
        self.handle_signals()?;
        let mut signals = lock(&self.shared.signals).take();
        let config = self.settings().signals.clone();
        self.ready().await;
        self.watch_systemd();
        // A restart in flight, an announcement, the control socket: driven
        // here, beside the signals.
        let mut tasks = Tasks::default();
        let control_path = self.serve_control(&mut tasks);
        let handle = &self.shared.handle;
        let link = lock(&self.shared.link).take();
        let mut link = match link.map(Link::into_reader).transpose() {
            Ok(link) => link,
            Err(e) => {
                // Cannot happen short of the reactor failing; without the
                // link this generation would never hear of a hand-off.
                self.event(LifecycleEvent::Problem(format!(
                    "cannot read the supervisor's link: {e}; draining"
                )));
                self.shutdown();
                None
            }
        };
        enum Woke {
            Signal(Option<io::Result<Signal>>),
            Link(LinkMessage),
            Done(Result<Outcome, lameduck_core::Abandoned>),
        }
        // One signal or supervisor message per pass; ends when the server
        // is done (a second drain signal closes it, which completes it at
        // once).
        let outcome = loop {
            let woke = async {
                match &mut signals {
                    Some(signals) => Woke::Signal(signals.next().await),
                    None => pending().await,
                }
            }
            .or(async {
                match &mut link {
                    Some(link) => Woke::Link(link.next().await),
                    None => pending().await,
                }
            })
            // Done, and no gentle close left to cut by exiting.
            .or(async { Woke::Done(handle.finished().await) })
            .or(async {
                tasks.run().await;
                unreachable!("Tasks::run never completes")
            })
            .await;
            match woke {
                Woke::Done(outcome) => break outcome.map_err(io::Error::other)?,
                Woke::Signal(Some(Ok(signal))) => self.on_signal(signal, &config, &mut tasks),
                Woke::Signal(Some(Err(e))) => return Err(e),
                Woke::Signal(None) => return Err(io::Error::other("signal handling stopped")),
                Woke::Link(message) => {
                    if self.on_supervisor(message, &mut tasks) {
                        link = None;
                    }
                }
            }
        };
        // No successor is left behind half-started: the server's end
        // (a phase of its stop) called off a restart in flight; wait until
        // its child is reaped.
        self.shared
            .attempts
            .finished()
            .or(async {
                tasks.run().await;
                unreachable!("Tasks::run never completes")
            })
            .await;
        let successor = self.shared.attempts.successor();
        if successor.is_none() {
            if let Some(path) = &self.settings().pid_file {
                pidfile::remove_if(path, std::process::id());
            }
            // The last process serving the control socket removes it.
            if let Some(path) = control_path.filter(|p| !p.as_os_str().is_empty()) {
                let _ = std::fs::remove_file(path);
            }
        }
        self.shared.control_stop.notify(usize::MAX);
        Ok(Ended { outcome, successor })
    }

    /// Reports readiness once every accept loop runs ([`run`](Self::run)
    /// does it otherwise): the pid file and systemd's `READY=1` on a first
    /// start; `READY=1` on the private channel to the predecessor after a
    /// restart. Call it before announcing the server if whoever reads the
    /// announcement may look at the pid file. Only the first call reports.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle).notify(false);
    /// smol::block_on(lifecycle.ready());
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self) {
        for driver in self.shared.handle.members() {
            driver.listeners_armed().await;
        }
        if self.shared.reported_ready.swap(true, Ordering::AcqRel) {
            return;
        }
        let pid = std::process::id();
        let channel = lock(&self.shared.ready).take();
        if let Some(channel) = channel {
            let supervised = self.supervisor().is_some();
            let reported = if supervised {
                // The channel stays open: the supervisor asks it for this
                // generation's state when it starts the next one.
                channel.report_and_keep().map(|kept| {
                    if let Some(kept) = kept {
                        self.answer_state_requests(kept);
                    }
                })
            } else {
                channel.report()
            };
            match reported {
                Ok(()) => {
                    self.take_over_files();
                    self.event(LifecycleEvent::Ready {
                        pid,
                        successor: true,
                        supervised,
                    });
                }
                Err(e) => self.event(LifecycleEvent::Problem(format!(
                    "cannot report ready to the {}: {e}",
                    if supervised {
                        "supervisor"
                    } else {
                        "predecessor"
                    }
                ))),
            }
            return;
        }
        let pid_file = self.settings().pid_file.clone();
        if let Some(path) = pid_file {
            pidfile::write_or_report(&path, pid, |problem| {
                self.event(LifecycleEvent::Problem(problem));
            });
        }
        self.send_notify("READY=1");
        self.event(LifecycleEvent::Ready {
            pid,
            successor: false,
            supervised: false,
        });
    }

    /// A supervised generation: answers its supervisor's state requests
    /// with what [`restart_state`](Self::restart_state) builds (nothing
    /// without it).
    fn answer_state_requests(&self, channel: ReadyChannel) {
        let this = self.clone();
        // On the server's runtime, while it serves.
        let driver = self.shared.handle.driver();
        driver.order(Order::Spawn(Box::pin(async move {
            let offer = || this.offer();
            if let Err(e) = answer_state_requests(channel, offer).await {
                this.event(LifecycleEvent::Problem(format!(
                    "restart state for the supervisor: {e}; no more restarts with this \
                     generation's state"
                )));
            }
        })));
    }

    /// What this process offers a successor now.
    fn offer(&self) -> io::Result<Offer> {
        let source = self.settings().state.clone();
        match source {
            None => Ok(Offer::empty()),
            Some(source) => {
                let state = source()
                    .map_err(|e| io::Error::new(e.kind(), format!("the restart state: {e}")))?;
                Ok(state.into_offer()?)
            }
        }
    }

    /// Reported ready to the predecessor: the socket files it handed over
    /// (`LAMEDUCK_OWNED_FDS`) are this process's to remove from now on. Not
    /// before: a successor that fails before it is ready leaves them to
    /// the predecessor, which goes on serving; one that is ready is handed
    /// off to or killed (`SIGKILL`: nothing is removed).
    fn take_over_files(&self) {
        let owned = std::mem::take(&mut *lock(&self.shared.owned_files));
        if owned.is_empty() {
            return;
        }
        for (socket, _) in self.shared.handle.driver().open_listeners() {
            let Ok(identity) = socket_identity(socket.as_fd()) else {
                continue;
            };
            if let Some(file) = owned.iter().find(|f| f.socket == identity) {
                socket.own_file(file.path.clone());
            }
        }
    }

    /// Obeys the supervisor; says whether the link is done with (after a
    /// hand-off, or its end).
    fn on_supervisor(&self, message: LinkMessage, tasks: &mut Tasks) -> bool {
        match message {
            LinkMessage::HandOff(successor) => {
                // The restart machine records the hand-off (no restart of
                // this generation from now on) unless a stop came first.
                let attempts = &self.shared.attempts;
                if !self.hand_off(|serving| serving && attempts.handed_off_to(successor)) {
                    // Already stopping for exit: nothing to hand off.
                    return true;
                }
                let this = self.clone();
                tasks.push(async move {
                    this.announce_hand_off(successor).await;
                });
                true
            }
            LinkMessage::Gone => {
                let phase = self.restart_phase();
                if phase != RestartPhase::Stopped && phase != RestartPhase::HandedOff {
                    self.event(LifecycleEvent::Problem(
                        "the supervisor is gone: draining".into(),
                    ));
                    self.shutdown();
                }
                true
            }
            LinkMessage::Unknown(line) => {
                self.event(LifecycleEvent::Problem(format!(
                    "ignored an unknown message from the supervisor: {line:?}"
                )));
                false
            }
        }
    }

    fn on_signal(&self, signal: Signal, config: &SignalConfig, tasks: &mut Tasks) {
        let Some(action) = config.action(signal) else {
            return;
        };
        let deadline = self.drain_deadline();
        match action {
            SignalAction::Drain
                if self.shared.drain_asked.load(Ordering::Acquire)
                    || self.restart_phase() == RestartPhase::Stopped =>
            {
                let action = if config.closes_on_repeat() {
                    SignalAction::Close
                } else {
                    SignalAction::Drain
                };
                self.event(LifecycleEvent::Signal {
                    signal,
                    action,
                    repeated: true,
                    deadline,
                });
                if action == SignalAction::Close {
                    self.close();
                }
            }
            SignalAction::Drain => {
                self.event(LifecycleEvent::Signal {
                    signal,
                    action,
                    repeated: false,
                    deadline,
                });
                self.shutdown();
            }
            SignalAction::Close => {
                self.event(LifecycleEvent::Signal {
                    signal,
                    action,
                    repeated: false,
                    deadline,
                });
                self.close();
            }
            SignalAction::Restart => {
                self.event(LifecycleEvent::Signal {
                    signal,
                    action,
                    repeated: false,
                    deadline,
                });
                let this = self.clone();
                // Reported through events; the signal loop goes on meanwhile.
                tasks.push(async move {
                    let _ = this.restart().await;
                });
            }
        }
    }

    /// Drains for exit (as `SIGTERM` does): the server shuts down with the
    /// [drain deadline](Self::drain_timeout); as for any stop of the
    /// server's (a [`Handle::shutdown`] too), systemd hears `STOPPING=1`
    /// and no restart starts from now on (one in flight is rolled back).
    /// Harmless to repeat.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle.clone()).notify(false);
    /// lifecycle.shutdown();
    /// assert!(handle.phase().is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub fn shutdown(&self) {
        match self.drain_deadline() {
            Some(timeout) => self.shared.handle.shutdown_within(timeout),
            None => self.shared.handle.shutdown(None),
        }
        self.shared.drain_asked.store(true, Ordering::Release);
    }

    /// Closes everything now (as a second `SIGTERM`, or `SIGUSR2`):
    /// systemd hears `STOPPING=1`; a restart in flight is rolled back.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle.clone()).notify(false);
    /// lifecycle.close();
    /// assert!(handle.drained().is_done());
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.shared.handle.close();
        self.shared.drain_asked.store(true, Ordering::Release);
    }

    /// Restarts (as `SIGHUP` does): starts the successor, waits until it is
    /// ready, hands off and begins this process's drain. Resolves to the
    /// successor's pid, or why not — then this process goes on serving.
    /// Every step is also reported as a [`LifecycleEvent`].
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::new(handle);
    /// match smol::block_on(lifecycle.restart()) {
    ///     Ok(pid) => println!("pid {pid} serves now; this process drains"),
    ///     Err(e) => println!("not restarted: {e}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn restart(&self) -> Result<u32, RestartError> {
        self.restart_or_join(false).await.map(|(pid, _)| pid)
    }

    /// [`restart`](Self::restart); with `join`, a restart already in flight
    /// is not refused: its outcome is the answer. The new pid and its
    /// generation.
    async fn restart_or_join(&self, join: bool) -> RestartOutcome {
        if let Some(supervisor) = self.supervisor() {
            let e = RestartError::Supervised { supervisor };
            self.event(LifecycleEvent::RestartFailed(e.clone()));
            return Err(e);
        }
        enum Begun {
            Started(u64, Arc<RestartSlot>),
            Joined(Arc<RestartSlot>),
            Refused(CoreError),
        }
        let begun = {
            // Under this lock, an attempt begins and its outcome slot is
            // set: one who finds it in progress finds its slot.
            let mut current = lock(&self.shared.current_restart);
            match self.shared.attempts.begin() {
                Ok(attempt) => {
                    let slot = Arc::new(RestartSlot::default());
                    *current = Some(slot.clone());
                    Begun::Started(attempt, slot)
                }
                Err(CoreError::InProgress) if join => match current.clone() {
                    Some(slot) => Begun::Joined(slot),
                    None => Begun::Refused(CoreError::InProgress),
                },
                Err(e) => Begun::Refused(e),
            }
        };
        if join {
            self.event(LifecycleEvent::ControlRestart {
                joined: matches!(begun, Begun::Joined(_)),
            });
        }
        let (attempt, outcome) = match begun {
            Begun::Started(attempt, slot) => (attempt, slot),
            Begun::Joined(slot) => return slot.wait().await,
            Begun::Refused(e) => {
                let e = RestartError::refused(&e);
                self.event(LifecycleEvent::RestartFailed(e.clone()));
                return Err(e);
            }
        };
        self.event(LifecycleEvent::RestartStarted {
            attempt,
            generation: generation() + 1,
        });
        self.send_notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        let launched = self.start_successor();
        if let Ok(launched) = &launched {
            self.event(LifecycleEvent::SuccessorStarted {
                pid: launched.watch.pid(),
            });
        }
        let result = self
            .shared
            .attempts
            .run(launched, self)
            .await
            .map(|pid| (pid, generation() + 1));
        outcome.set(result.clone());
        {
            let mut current = lock(&self.shared.current_restart);
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &outcome)) {
                *current = None;
            }
        }
        result
    }

    /// Starts the successor with the listeners and the hand-off channel,
    /// on which the state goes.
    fn start_successor(&self) -> io::Result<Launched> {
        let source = self.settings().state.clone();
        let offer = match source {
            None => Offer::empty(),
            Some(source) => {
                let state = source()
                    .map_err(|e| io::Error::new(e.kind(), format!("the restart state: {e}")))?;
                state.into_offer().map_err(io::Error::from)?
            }
        };
        let (program, args) = {
            let settings = self.settings();
            (program(&settings.executable)?, settings.args.clone())
        };
        let listeners = self.shared.handle.driver().open_listeners();
        let mut fds: Vec<_> = listeners
            .iter()
            .map(|(socket, name)| (socket.as_fd(), &**name))
            .collect();
        // The control socket travels with them (after them: the indices of
        // `owned_files` stay the listeners').
        let control = lock(&self.shared.control_listener).clone();
        if let Some(control) = &control {
            fds.push((control.as_fd(), CONTROL_NAME));
        }
        // The files this process would remove at its end go to the
        // successor (see `handoff::OWNED_FDS_VAR`).
        let owned_files: Vec<usize> = listeners
            .iter()
            .enumerate()
            .filter(|(_, (socket, _))| socket.owns_file())
            .map(|(i, _)| i)
            .collect();
        Spawn {
            program: &program,
            args: &args,
            listeners: &fds,
            mode: Mode::Direct {
                owned_files: &owned_files,
            },
            generation: generation() + 1,
            offer,
        }
        .launch()
    }

    /// "Stop, or hand off?", decided once, under the drivers' locks
    /// (which a shutdown or close takes too, one at a time in the same
    /// order): only while every thread's core is still serving, and only
    /// if `restart_takes(serving)` agrees — it records the hand-off in the
    /// restart machine. Then
    /// [`Server::hand_off`](lameduck_core::Server::hand_off) releases the
    /// listeners to the successor (never shut down) and this server's drain
    /// begins, on every thread. Returns whether it handed off.
    fn hand_off(&self, restart_takes: impl FnOnce(bool) -> bool) -> bool {
        let (linger, timeout) = {
            let settings = self.settings();
            (settings.handoff_linger, settings.drain_timeout)
        };
        hand_off_all(self.shared.handle.members(), restart_takes, linger, timeout)
    }

    /// The successor took over: the pid file and systemd hear of it. (A
    /// supervised generation: its supervisor said so; the supervisor keeps
    /// the pid file and speaks to systemd.)
    async fn announce_hand_off(&self, successor: u32) {
        let pid_file = match self.supervisor() {
            Some(_) => None,
            None => self.settings().pid_file.clone(),
        };
        if let Some(path) = pid_file {
            pidfile::write_or_report(&path, successor, |problem| {
                self.event(LifecycleEvent::Problem(problem));
            });
        }
        self.send_notify(&format!("MAINPID={successor}\nREADY=1"));
        // The successor accepts on the control socket from now on.
        self.shared.control_stop.notify(usize::MAX);
        *lock(&self.shared.control_listener) = None;
        self.event(LifecycleEvent::HandedOff {
            pid: std::process::id(),
            successor,
        });
    }
}

/// The lifecycle carries out restart attempts: the successor replaces
/// this process.
impl Carrier for Lifecycle {
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send {
        let timer = async_io::Timer::at(at);
        async move {
            timer.await;
        }
    }

    fn decide_hand_off(&self, _child: u32, restart_takes: impl FnOnce(bool) -> bool) -> bool {
        self.hand_off(restart_takes)
    }

    fn handed_off(&self, child: u32) -> impl Future<Output = ()> + Send {
        self.announce_hand_off(child)
    }

    /// systemd hears `READY=1` (the reload is over; same main process)
    /// unless the server is stopping, and the failure is reported.
    fn rolled_back(&self, failure: Option<RestartError>) -> RestartError {
        let error = failure.unwrap_or(RestartError::Failed {
            failure: RestartFailure::Stopping,
            detail: None,
        });
        let stopping = matches!(
            error,
            RestartError::Failed {
                failure: RestartFailure::Stopping,
                ..
            }
        );
        if !stopping {
            self.send_notify("READY=1");
        }
        self.event(LifecycleEvent::RestartFailed(error.clone()));
        error
    }
}

// systemd beyond READY (STATUS=, WATCHDOG=1, EXTEND_TIMEOUT_USEC=): the
// core's ServiceNotifier, carried out by notify.rs.
impl Lifecycle {
    fn watch_systemd(&self) {
        if !self.settings().notify || self.supervisor().is_some() {
            return;
        }
        let (this, problem) = (self.clone(), self.clone());
        let observe = move || {
            let seen = this.snapshot();
            lameduck_core::systemd::Observed::server(&seen.server, seen.restart)
        };
        let problem = move |p| problem.event(LifecycleEvent::Problem(p));
        super::notify::spawn_watch(self.shared.handle.driver(), observe, problem);
    }
}

// The control socket (ctl.rs has the protocol and the client side).
impl Lifecycle {
    /// Starts accepting on the control socket, if one was given (a task of
    /// the run loop's): its path, removed at the end if no successor took
    /// it over.
    fn serve_control(&self, tasks: &mut Tasks) -> Option<PathBuf> {
        let socket = lock(&self.shared.control).take()?;
        if self.supervisor().is_some() {
            self.event(LifecycleEvent::Problem(
                "a supervised generation serves no control socket (the supervisor restarts)".into(),
            ));
            return None;
        }
        let listener = match Async::new(socket.listener) {
            Ok(listener) => Arc::new(listener),
            Err(e) => {
                self.event(LifecycleEvent::Problem(format!(
                    "cannot serve the control socket {}: {e}",
                    socket.path.display()
                )));
                return None;
            }
        };
        *lock(&self.shared.control_listener) = Some(listener.clone());
        let this = self.clone();
        tasks.push(async move {
            // Its clients, driven beside the accept loop.
            let mut clients = Tasks::default();
            // One connection per pass; ends at a hand-off or the end of
            // `run` (a listener that fails stops it too).
            loop {
                let stopped = this.shared.control_stop.listen();
                if this.shared.attempts.successor().is_some() {
                    break;
                }
                // The stop is polled first: once a hand-off notified it, no
                // further connection is accepted here (the successor's).
                let accepted = async {
                    stopped.await;
                    None
                }
                .or(async { Some(listener.accept().await) })
                .or(async {
                    clients.run().await;
                    unreachable!("Tasks::run never completes")
                })
                .await;
                let stream = match accepted {
                    None => break,
                    Some(Ok((stream, _))) => stream,
                    Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                    Some(Err(e)) => {
                        this.event(LifecycleEvent::Problem(format!(
                            "control socket: accept failed: {e}; no longer served here"
                        )));
                        break;
                    }
                };
                if this.shared.control_clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    this.shared.control_clients.fetch_sub(1, Ordering::AcqRel);
                    continue; // closed unanswered
                }
                let client = this.clone();
                clients.push(async move {
                    client.control_client(stream).await;
                    client.shared.control_clients.fetch_sub(1, Ordering::AcqRel);
                });
            }
            // No more accepted here; those accepted get their answers
            // (e.g. the outcome of the restart that ended the loop).
            clients.finish().await;
        });
        Some(socket.path)
    }

    /// One control connection: a request line (bounded in size and time),
    /// one reply line.
    async fn control_client(&self, stream: Async<UnixStream>) {
        let line = async { Some(read_request(&stream).await) }
            .or(async {
                async_io::Timer::after(REQUEST_TIMEOUT).await;
                None
            })
            .await;
        let reply = match line {
            None => return, // no request in time: closed
            Some(Err(why)) => format!("error {why}"),
            Some(Ok(line)) => match parse_request(&line) {
                Err(why) => format!("error {why}"),
                Ok(Request::Status) => format!("ok status {}", self.status_line()),
                Ok(Request::Restart) => match self.restart_or_join(true).await {
                    Ok((pid, generation)) => {
                        format!("ok restarted pid={pid} generation={generation}")
                    }
                    Err(e) => format!("error {}", one_line(&e.to_string())),
                },
            },
        };
        let reply = format!("{reply}\n");
        let _ = async {
            let mut left = reply.as_bytes();
            // Each pass writes at least one byte or ends; bounded by the
            // reply's length (and the timeout below).
            while !left.is_empty() {
                match stream
                    .write_with(|s| {
                        rustix::net::send(s, left, rustix::net::SendFlags::NOSIGNAL)
                            .map_err(io::Error::from)
                    })
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = &left[n..],
                }
            }
        }
        .or(async {
            async_io::Timer::after(REQUEST_TIMEOUT).await;
        })
        .await;
    }

    /// `phase=… restart=… pid=… generation=… new=… active=… idle=…
    /// hijacked=… restarts=…`.
    fn status_line(&self) -> String {
        let s = self.snapshot();
        let c = s.server.counts;
        format!(
            "phase={} restart={} pid={} generation={} new={} active={} idle={} hijacked={} restarts={}",
            format!("{:?}", s.server.phase).to_lowercase(),
            format!("{:?}", s.restart).to_lowercase(),
            std::process::id(),
            s.generation,
            c.new,
            c.active,
            c.idle,
            c.hijacked,
            s.restarts_attempted
        )
    }
}

/// Reads one request line (without its newline), at most [`MAX_REQUEST`]
/// bytes; an end of file first, or a longer line, is the error.
async fn read_request(stream: &Async<UnixStream>) -> Result<Vec<u8>, String> {
    let mut line = Vec::with_capacity(MAX_REQUEST);
    // Each pass reads at least one byte or ends; bounded by MAX_REQUEST.
    loop {
        let mut buf = [0u8; MAX_REQUEST];
        let room = MAX_REQUEST - line.len();
        let n = stream
            .read_with(|s| rustix::io::read(s, &mut buf[..room]).map_err(io::Error::from))
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("no request line".into());
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            return Ok(line);
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() >= MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
    }
}
