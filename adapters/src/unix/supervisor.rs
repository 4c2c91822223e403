//! Supervisor mode: zero-downtime restarts with a process id that never
//! changes. See [`Supervisor`].

use std::ffi::OsString;
use std::fmt;
use std::future::{Future, pending, poll_fn};
use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_signal::Signals;
use futures_lite::{FutureExt, StreamExt};
use lameduck_core::restart::{RestartConfig, RestartError as CoreError, RestartFailure};

use super::attempt::{Attempts, Carrier, Launched, launch};
use super::child::{ChildWatch, on_orphan_reaped};
use super::ctl::{Ask, ControlSocket, one_line, serve_on_threads};
use super::inherit::{Inherited, take_or_bind, take_or_bind_unix};
use super::link::{LinkWriter, link_pipe};
use super::notify::{monotonic_usec, notify};
use super::pidfile;
use super::ready::{Offer, ReadyReader};
use super::restart::RestartError;
use super::signals::{Signal, SignalAction, SignalConfig, SignalName};
use crate::listener::ListenAddr;
use crate::server::Pending;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks panics; the state is still the best there is.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Something the [`Supervisor`] did, for logs
/// ([`Supervisor::on_event`]). `Display` gives one line.
///
/// ```
/// use lameduck::unix::SupervisorEvent;
/// let event = SupervisorEvent::GenerationStarted { generation: 2, pid: 4242 };
/// assert_eq!(event.to_string(), "generation 2: pid 4242 started; waiting until it is ready");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A generation was started; it has until the readiness deadline.
    GenerationStarted {
        /// 1 for the first, then 2, ….
        generation: u64,
        /// Its pid.
        pid: u32,
    },
    /// The first generation is ready: the service is up (the pid file is
    /// written and systemd told `READY=1` before this is reported).
    Ready {
        /// The supervisor's pid: the service's, for its whole life.
        pid: u32,
        /// The generation's pid.
        generation_pid: u32,
    },
    /// A new generation is ready and serves; the previous one was told to
    /// hand off (it stops accepting, drains and exits).
    HandedOff {
        /// The new generation's number.
        generation: u64,
        /// Its pid.
        pid: u32,
        /// The previous generation's pid.
        previous: u32,
    },
    /// A restart was refused or rolled back; the serving generation goes
    /// on.
    RestartFailed(RestartError),
    /// A signal arrived.
    Signal {
        /// Which.
        signal: Signal,
        /// What it does: [`SignalAction::Restart`] starts a generation;
        /// the others are forwarded.
        action: SignalAction,
        /// The generations it was forwarded to.
        forwarded_to: Vec<u32>,
    },
    /// A generation exited and was reaped.
    GenerationExited {
        /// Its pid.
        pid: u32,
        /// How it exited.
        status: ExitStatus,
        /// It was the serving generation: the supervisor stops, and exits
        /// with this status once no generation is left.
        serving: bool,
    },
    /// A process that was not a generation (an orphan re-parented to the
    /// supervisor, which is PID 1 say) exited and was reaped.
    OrphanReaped {
        /// Its pid.
        pid: u32,
        /// How it exited.
        status: ExitStatus,
    },
    /// The [stop deadline](Supervisor::stop_timeout) passed: a generation
    /// still running was killed.
    Killed {
        /// Its pid.
        pid: u32,
    },
    /// Something went wrong that does not stop the supervisor (a pid file
    /// that cannot be written, a notification that cannot be sent).
    Problem(String),
    /// A restart was asked on the control socket; `joined`: one was in
    /// flight, whose outcome is the answer.
    ControlRestart {
        /// A restart was already in flight.
        joined: bool,
    },
}

impl fmt::Display for SupervisorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorEvent::ControlRestart { joined: false } => {
                f.write_str("control: restart requested")
            }
            SupervisorEvent::ControlRestart { joined: true } => {
                f.write_str("control: restart requested; joining the restart in flight")
            }
            SupervisorEvent::GenerationStarted { generation, pid } => write!(
                f,
                "generation {generation}: pid {pid} started; waiting until it is ready"
            ),
            SupervisorEvent::Ready {
                pid,
                generation_pid,
            } => write!(
                f,
                "generation 1: pid {generation_pid} ready; serving (supervisor pid {pid})"
            ),
            SupervisorEvent::HandedOff {
                generation,
                pid,
                previous,
            } => write!(
                f,
                "generation {generation}: pid {pid} ready; pid {previous} hands off and drains"
            ),
            SupervisorEvent::RestartFailed(
                e @ RestartError::Failed {
                    failure: RestartFailure::Stopping,
                    ..
                },
            ) => write!(f, "restart abandoned: {e}"),
            SupervisorEvent::RestartFailed(e @ RestartError::Failed { .. }) => {
                write!(f, "restart failed: {e}; the serving generation goes on")
            }
            SupervisorEvent::RestartFailed(e) => write!(f, "restart refused: {e}"),
            SupervisorEvent::Signal {
                signal,
                action,
                forwarded_to,
            } => {
                let name = SignalName(*signal);
                match action {
                    SignalAction::Restart => write!(f, "{name}: starting the next generation"),
                    _ => {
                        let pids: Vec<String> =
                            forwarded_to.iter().map(ToString::to_string).collect();
                        if pids.is_empty() {
                            write!(f, "{name}: stopping (no generation to forward it to)")
                        } else {
                            write!(f, "{name}: forwarded to pid {}", pids.join(", "))
                        }
                    }
                }
            }
            SupervisorEvent::GenerationExited {
                pid,
                status,
                serving,
            } => {
                write!(f, "generation pid {pid} exited ({status})")?;
                if *serving {
                    f.write_str("; it was serving: the supervisor exits with it")?;
                }
                Ok(())
            }
            SupervisorEvent::OrphanReaped { pid, status } => {
                write!(f, "reaped orphan pid {pid} ({status})")
            }
            SupervisorEvent::Killed { pid } => {
                write!(f, "stop deadline passed: killed generation pid {pid}")
            }
            SupervisorEvent::Problem(message) => f.write_str(message),
        }
    }
}

type Observer = Arc<dyn Fn(&SupervisorEvent) + Send + Sync>;

/// Zero-downtime restarts with a stable process id, for process managers
/// that cannot follow a new main pid: supervisord, a container whose PID 1
/// is the server (`docker stop` signals PID 1), anything that tracks the
/// pid it started. (Under systemd, prefer [`Lifecycle`](super::Lifecycle)'s
/// own restarts: `MAINPID` follows the new process.)
///
/// A small long-lived parent: it binds (or adopts) the listening sockets
/// once, and runs the server as a child **generation** — the same
/// executable by default, in its normal serving mode — over the same
/// hand-off protocol as a restart. It does not serve itself.
///
/// - **Start**: generation 1 gets the sockets at descriptors 3, 4, …
///   (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`), a readiness pipe
///   (`LAMEDUCK_READY_FD`), and a link (`LAMEDUCK_SUPERVISOR_FD`, below).
///   Once it reports ready, the supervisor writes its pid file (its own
///   pid), tells systemd `READY=1`, and reports
///   [`SupervisorEvent::Ready`].
/// - **`SIGHUP`** (by default): the next generation is started the same
///   way (the executable as it is on disk now), and once it is ready, the
///   previous one is told `HANDOFF <pid>` on its link: it stops accepting
///   without shutting the shared sockets down (nor removing a Unix
///   socket's file), finishes its in-flight requests, and exits. A
///   generation that cannot be started, exits, or is not ready by the
///   deadline is killed and reaped, and the serving one goes on — the
///   rollback of [`lameduck_core::restart::Restart`], whose policy (one
///   attempt at a time, debouncing, none while stopping) applies
///   unchanged: the supervisor carries out one machine per serving
///   generation. systemd hears `RELOADING=1` and then `READY=1`; the main
///   pid stays the supervisor's.
/// - **`SIGTERM`, `SIGINT`, `SIGUSR2`** (the signals
///   [configured](Self::signals) to drain or close): forwarded, as they
///   are, to every generation still running (a draining one too), and
///   systemd hears `STOPPING=1`. The supervisor exits once every
///   generation has exited and been reaped, with the serving generation's
///   exit status — so `docker stop` drains. A generation still starting is
///   killed.
/// - **The serving generation exits** on its own (it crashed, or was
///   signalled directly): the supervisor stops too, with its status,
///   after the draining generations finish.
/// - **Reaping**: one reaper thread reaps every child of the supervisor's
///   process, as it exits — the generations, and any orphan re-parented to
///   it when it is PID 1 (a container's init, a new pid namespace): no
///   zombie is ever left. So run nothing else that starts children in the
///   supervisor's process.
/// - **The link** (`LAMEDUCK_SUPERVISOR_FD`): the read end of a pipe each
///   generation gets, whose write end only the supervisor holds. It
///   carries `HANDOFF <pid>`; its end of file (the supervisor died) makes
///   the generation drain and exit rather than serve on unwatched. A
///   generation adopts it with [`Inherited::from_env`] and obeys it through
///   [`Lifecycle::inherited`](super::Lifecycle::inherited), which also
///   routes its readiness to the supervisor, refuses restarts of the
///   generation itself ([`RestartError::Supervised`]), and leaves systemd
///   and the pid file to the supervisor.
///
/// ```no_run
/// use std::process::ExitCode;
/// use lameduck::unix::{Inherited, Supervisor};
///
/// fn main() -> ExitCode {
///     // First thing: adopt what systemd passed, if anything.
///     let mut inherited = Inherited::from_env().expect("valid LISTEN_* variables");
///     if std::env::args().any(|a| a == "--supervise") {
///         let supervisor = Supervisor::new()
///             .inherit_or_bind(&mut inherited, "http", "127.0.0.1:8080")
///             .expect("bound")
///             // The generations: this executable, without `--supervise`.
///             .args(std::env::args_os().skip(1).filter(|a| a != "--supervise"))
///             .pid_file("/run/server.pid")
///             .on_event(|e| eprintln!("supervisor: {e}"));
///         return match supervisor.run() {
///             Ok(status) => ExitCode::from(status.code().unwrap_or(1) as u8),
///             Err(e) => {
///                 eprintln!("supervisor: {e}");
///                 ExitCode::FAILURE
///             }
///         };
///     }
///     // ... otherwise serve, with `Lifecycle::new(handle).inherited(inherited)`:
///     // under the supervisor, `inherited` carries the sockets and the link.
///     ExitCode::SUCCESS
/// }
/// ```
pub struct Supervisor {
    listeners: Vec<Pending>,
    executable: io::Result<PathBuf>,
    args: Vec<OsString>,
    ready_timeout: Duration,
    signals: SignalConfig,
    pid_file: Option<PathBuf>,
    notify: bool,
    stop_timeout: Option<Duration>,
    observer: Option<Observer>,
    control: Mutex<Option<ControlSocket>>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("listeners", &self.local_addrs())
            .field("executable", &self.executable)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    /// A supervisor with no listener yet. Defaults: the generations are
    /// this executable (as found now) with this process's arguments,
    /// [`SignalConfig::default`] (`SIGHUP` restarts; `SIGTERM`/`SIGINT`
    /// and `SIGUSR2` are forwarded), 60 s to be ready, no pid file, systemd
    /// notifications on (sent only under systemd), no stop deadline.
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new();
    /// assert!(supervisor.local_addrs().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Supervisor {
        Supervisor {
            listeners: Vec::new(),
            executable: std::env::current_exe(),
            args: std::env::args_os().skip(1).collect(),
            ready_timeout: RestartConfig::default().ready_timeout,
            signals: SignalConfig::default(),
            pid_file: None,
            notify: true,
            stop_timeout: None,
            observer: None,
            control: Mutex::new(None),
        }
    }

    /// Serves a control socket (see [`ControlSocket`]): in supervisor mode
    /// it is the supervisor's (the generations never see it). `restart`
    /// starts the next generation (or joins the restart in flight) and
    /// answers the outcome — the new generation's pid and number;
    /// `status` answers `phase=… restart=… pid=<serving generation>
    /// generation=… supervisor=<pid> restarts=…` (connection counts are
    /// the generations'). Its file is removed when the supervisor ends.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let path = std::env::temp_dir().join(format!("sup-ctl-{}.sock", std::process::id()));
    /// let mut inherited = lameduck::unix::Inherited::default();
    /// let control = lameduck::unix::ControlSocket::inherit_or_bind(&mut inherited, &path)?;
    /// let supervisor = lameduck::unix::Supervisor::new().control(control);
    /// # drop(supervisor); std::fs::remove_file(&path)?; Ok(()) }
    /// ```
    #[must_use]
    pub fn control(self, socket: ControlSocket) -> Self {
        *lock(&self.control) = Some(socket);
        self
    }

    /// Passes the inherited TCP socket named `name` on to the generations,
    /// or binds `addr` and passes that under the name — as
    /// [`Builder::inherit_or_bind`](crate::Builder::inherit_or_bind) does,
    /// which is how a generation finds it again.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = lameduck::unix::Inherited::default();
    /// let supervisor = lameduck::unix::Supervisor::new()
    ///     .inherit_or_bind(&mut inherited, "http", "127.0.0.1:0")?;
    /// assert_eq!(supervisor.local_addrs().len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn inherit_or_bind(
        mut self,
        inherited: &mut Inherited,
        name: &str,
        addr: impl ToSocketAddrs,
    ) -> io::Result<Self> {
        self.listeners.push(take_or_bind(inherited, name, addr)?);
        Ok(self)
    }

    /// Like [`inherit_or_bind`](Self::inherit_or_bind), for a Unix stream
    /// socket at `path`. A socket the supervisor binds has its file removed
    /// when the supervisor exits (the generations leave it alone); an
    /// inherited one's is left in place.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = std::env::temp_dir().join(format!("lameduck-doc-sup-{}.sock", std::process::id()));
    /// let mut inherited = lameduck::unix::Inherited::default();
    /// let supervisor = lameduck::unix::Supervisor::new()
    ///     .inherit_or_bind_unix(&mut inherited, "local", &path)?;
    /// drop(supervisor);
    /// assert!(!path.exists());
    /// # Ok(()) }
    /// ```
    pub fn inherit_or_bind_unix(
        mut self,
        inherited: &mut Inherited,
        name: &str,
        path: impl AsRef<Path>,
    ) -> io::Result<Self> {
        self.listeners
            .push(take_or_bind_unix(inherited, name, path.as_ref())?);
        Ok(self)
    }

    /// Passes on every inherited socket not taken yet (e.g. all of a
    /// systemd `.socket` unit's), in descriptor order, under their names.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = lameduck::unix::Inherited::from_env()?;
    /// let supervisor = lameduck::unix::Supervisor::new().inherit_rest(&mut inherited);
    /// # let _ = supervisor; Ok(()) }
    /// ```
    #[must_use]
    pub fn inherit_rest(mut self, inherited: &mut Inherited) -> Self {
        for listener in inherited.take_all() {
            self.listeners.push(listener.into_pending());
        }
        self
    }

    /// The addresses of the listeners, in order (a TCP port 0 resolved).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut inherited = lameduck::unix::Inherited::default();
    /// let supervisor = lameduck::unix::Supervisor::new()
    ///     .inherit_or_bind(&mut inherited, "http", "127.0.0.1:0")?;
    /// let lameduck::ListenAddr::Tcp(addr) = &supervisor.local_addrs()[0] else { unreachable!() };
    /// assert_ne!(addr.port(), 0);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn local_addrs(&self) -> Vec<ListenAddr> {
        self.listeners
            .iter()
            .filter_map(|pending| match pending {
                Pending::Tcp(l, ..) => l.local_addr().ok().map(ListenAddr::Tcp),
                Pending::Unix(l, _, _) => l.local_addr().ok().map(|a| {
                    ListenAddr::Unix(a.as_pathname().map(Path::to_path_buf).unwrap_or_default())
                }),
            })
            .collect()
    }

    /// The generations' executable (default: this one, as found when the
    /// supervisor was created — so an upgrade replaces the file there, and
    /// the next generation runs it).
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new().executable("/usr/local/bin/server");
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.executable = Ok(path.into());
        self
    }

    /// The generations' arguments (default: this process's).
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new().args(["--listen", "127.0.0.1:8080"]);
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long a generation has, from its start, to report ready (default
    /// 60 s); then it is killed, and the restart rolled back (or, for the
    /// first generation, [`run`](Self::run) fails).
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new()
    ///     .ready_timeout(std::time::Duration::from_secs(10));
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Which signals restart ([`SignalAction::Restart`]) and which are
    /// forwarded to the generations ([`SignalAction::Drain`] and
    /// [`SignalAction::Close`]: the generations decide what they do).
    ///
    /// ```
    /// use lameduck::unix::{Signal, SignalAction, SignalConfig, Supervisor};
    /// let supervisor = Supervisor::new()
    ///     .signals(SignalConfig::default().on(Signal::Usr1, SignalAction::Restart));
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn signals(mut self, signals: SignalConfig) -> Self {
        self.signals = signals;
        self
    }

    /// Writes the supervisor's pid — the service's, for its whole life — to
    /// `path` (atomically) once the first generation is ready; removed at
    /// exit.
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new().pid_file("/run/server.pid");
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Whether to send systemd notifications (default `true`; nothing is
    /// sent when `NOTIFY_SOCKET` is unset). The supervisor is the main
    /// process: `READY=1` once the first generation is ready,
    /// `RELOADING=1` and `READY=1` around each restart, `STOPPING=1`.
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new().notify(false);
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// Once a stop began (a forwarded drain signal, or the serving
    /// generation exited), how long generations still running have before
    /// they are killed (`SIGKILL`) and reaped. Default: no deadline here —
    /// each generation's own drain deadline bounds it.
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new()
    ///     .stop_timeout(std::time::Duration::from_secs(35));
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = Some(timeout);
        self
    }

    /// Observes [`SupervisorEvent`]s (e.g. to log them). Called from the
    /// supervisor's thread, and from its reaper's for
    /// [`SupervisorEvent::OrphanReaped`].
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new().on_event(|e| eprintln!("supervisor: {e}"));
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&SupervisorEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Supervises until the service stops: starts generation 1, restarts
    /// on the restart signal, forwards the others, and returns the serving
    /// generation's exit status once every generation has exited. Blocks
    /// the calling thread (it runs its own small event loop); call it from
    /// `main`, in a process that does nothing else.
    ///
    /// Errors: no listener; the signal handlers cannot be installed; the
    /// first generation could not be started, exited, or was not ready in
    /// time (it is killed and reaped), or a stop came first.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut inherited = lameduck::unix::Inherited::default();
    /// let status = lameduck::unix::Supervisor::new()
    ///     .inherit_or_bind(&mut inherited, "http", "127.0.0.1:8080")?
    ///     .run()?;
    /// std::process::exit(status.code().unwrap_or(1));
    /// # }
    /// ```
    pub fn run(self) -> io::Result<ExitStatus> {
        async_io::block_on(self.supervise())
    }

    async fn supervise(self) -> io::Result<ExitStatus> {
        if self.listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the supervisor has no listener to pass on",
            ));
        }
        let wanted = self.signals.signals();
        let mut signals = if wanted.is_empty() {
            None
        } else {
            Some(Signals::new(wanted)?)
        };
        if let Some(observer) = self.observer.clone() {
            on_orphan_reaped(Arc::new(move |pid, status| {
                observer(&SupervisorEvent::OrphanReaped { pid, status });
            }))?;
        }
        let core = Core {
            settings: &self,
            attempts: Attempts::new(RestartConfig {
                ready_timeout: self.ready_timeout,
            }),
            gens: Mutex::new(Gens::default()),
            stopping: AtomicBool::new(false),
            generations: AtomicU64::new(0),
        };
        let result = core.run(&mut signals).await;
        if let Some(path) = &self.pid_file {
            pidfile::remove_if(path, std::process::id());
        }
        result
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The supervisor bound these: their files go with it.
        for pending in &self.listeners {
            if let Pending::Unix(_, Some(path), _) = pending {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A running generation.
struct Gen {
    generation: u64,
    watch: Arc<ChildWatch>,
    /// Kept until it exits: its end of file would tell it the supervisor
    /// is gone.
    link: LinkWriter,
    /// Its hand-off channel, once it serves: asked for its restart state
    /// when the next generation starts.
    channel: Option<ReadyReader>,
}

#[derive(Default)]
struct Gens {
    /// Being started (the attempt in flight), with its link.
    starting: Option<Gen>,
    /// Serving.
    serving: Option<Gen>,
    /// Handed off, draining.
    draining: Vec<Gen>,
    /// The serving generation's exit status, once it exited.
    exit: Option<ExitStatus>,
}

impl Gens {
    fn running(&self) -> impl Iterator<Item = &Gen> {
        self.serving.iter().chain(self.draining.iter())
    }
}

/// The supervisor while it runs: the carrier of the restart machine.
struct Core<'a> {
    settings: &'a Supervisor,
    attempts: Attempts,
    gens: Mutex<Gens>,
    stopping: AtomicBool,
    /// Generations started so far.
    generations: AtomicU64,
}

type AttemptFuture<'a> = Pin<Box<dyn Future<Output = Result<u32, RestartError>> + 'a>>;

impl Core<'_> {
    fn event(&self, event: SupervisorEvent) {
        if let Some(observer) = &self.settings.observer {
            observer(&event);
        }
    }

    fn send_notify(&self, state: &str) {
        if !self.settings.notify {
            return;
        }
        if let Err(e) = notify(state) {
            let first = state.lines().next().unwrap_or("");
            self.event(SupervisorEvent::Problem(format!("sd_notify {first}: {e}")));
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Starts the next generation, as the machine's `Spawn` asks: the
    /// attempt to carry out. The serving generation's restart state (asked
    /// for on its channel) is offered to the new one: it passes between
    /// generations as between a process and its successor.
    fn start_generation(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
            let offer = self.serving_state().await;
            let launched = offer.and_then(|offer| self.launch(generation, offer));
            self.carry_out_generation(generation, launched).await
        })
    }

    /// The serving generation's state: nothing if none serves (the
    /// first), or within the readiness deadline, or the error.
    async fn serving_state(&self) -> io::Result<Offer> {
        let channel = lock(&self.gens)
            .serving
            .as_ref()
            .and_then(|g| g.channel.clone());
        let Some(channel) = channel else {
            return Ok(Offer::empty());
        };
        let limits = lameduck_core::handover::Limits::default();
        let asked = async { Some(channel.request_state(limits).await) };
        let deadline = Instant::now() + self.settings.ready_timeout;
        let timeout = async {
            self.sleep_until(deadline).await;
            None
        };
        match asked.or(timeout).await {
            Some(Ok(offer)) => Ok(offer),
            Some(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("the serving generation's restart state: {e}"),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the serving generation did not give its restart state in time",
            )),
        }
    }

    async fn carry_out_generation(
        &self,
        generation: u64,
        launched: io::Result<(Launched, LinkWriter)>,
    ) -> Result<u32, RestartError> {
        if let Ok(launched) = &launched {
            self.event(SupervisorEvent::GenerationStarted {
                generation,
                pid: launched.0.watch.pid(),
            });
        }
        let launched = launched.map(|(launched, link)| {
            lock(&self.gens).starting = Some(Gen {
                generation,
                watch: launched.watch.clone(),
                link,
                channel: None,
            });
            launched
        });
        self.attempts.run(launched, self).await
    }

    /// Starts a generation with the listeners, a readiness pipe and a link.
    fn launch(&self, generation: u64, offer: Offer) -> io::Result<(Launched, LinkWriter)> {
        let program = match &self.settings.executable {
            Ok(path) => path.clone(),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("this executable's path is unknown: {e}"),
                ));
            }
        };
        let fds: Vec<(BorrowedFd<'_>, &str)> = self
            .settings
            .listeners
            .iter()
            .map(|pending| match pending {
                Pending::Tcp(l, name, _) => (l.as_fd(), &**name),
                Pending::Unix(l, _, name) => (l.as_fd(), &**name),
            })
            .collect();
        let (writer, read): (LinkWriter, OwnedFd) = link_pipe()?;
        let launched = launch(
            &program,
            &self.settings.args,
            &fds,
            // The supervisor owns the socket files: no generation does.
            &[],
            Some(read.as_fd()),
            true,
            generation,
            offer,
        )?;
        // Only the generation holds the read end now.
        drop(read);
        Ok((launched, writer))
    }

    /// A stop begins (once): no more restarts (one starting is killed),
    /// systemd hears `STOPPING=1`, and the stop deadline starts.
    fn begin_stop(&self, stop_deadline: &mut Option<Instant>) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.attempts.stop();
        self.send_notify("STOPPING=1");
        *stop_deadline = self
            .settings
            .stop_timeout
            .and_then(|t| Instant::now().checked_add(t));
    }

    /// Sends `signal` to every generation still running; their pids.
    fn forward(&self, signal: Signal) -> Vec<u32> {
        let Some(signal) = rustix::process::Signal::from_named_raw(signal as i32) else {
            return Vec::new();
        };
        let gens = lock(&self.gens);
        gens.running()
            .filter(|g| g.watch.signal(signal))
            .map(|g| g.watch.pid())
            .collect()
    }

    /// Begins a restart: its attempt to carry out, or why not (reported).
    fn begin_restart(&self) -> Result<AttemptFuture<'_>, RestartError> {
        // The machine refuses while one is in flight or stopping.
        match self.attempts.begin() {
            Ok(_) => {
                self.send_notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
                Ok(self.start_generation())
            }
            Err(e) => {
                let e = match e {
                    CoreError::InProgress => RestartError::InProgress,
                    _ => RestartError::Stopping,
                };
                self.event(SupervisorEvent::RestartFailed(e.clone()));
                Err(e)
            }
        }
    }

    /// The status line for the control socket.
    fn status_line(&self) -> String {
        let gens = lock(&self.gens);
        let phase = if self.stopping() {
            "draining"
        } else {
            "serving"
        };
        let restart = format!("{:?}", self.attempts.phase()).to_lowercase();
        let (pid, generation) = gens
            .serving
            .as_ref()
            .map_or((0, 0), |g| (g.watch.pid(), g.generation));
        format!(
            "phase={phase} restart={restart} pid={pid} generation={generation} supervisor={} \
             restarts={}",
            std::process::id(),
            self.generations.load(Ordering::Acquire).saturating_sub(1)
        )
    }

    /// Obeys a signal; a restart's attempt to carry out, if it starts one.
    fn on_signal(
        &self,
        signal: Signal,
        stop_deadline: &mut Option<Instant>,
    ) -> Option<AttemptFuture<'_>> {
        let action = self.settings.signals.action(signal)?;
        match action {
            SignalAction::Restart => {
                self.event(SupervisorEvent::Signal {
                    signal,
                    action,
                    forwarded_to: Vec::new(),
                });
                self.begin_restart().ok()
            }
            SignalAction::Drain | SignalAction::Close => {
                self.begin_stop(stop_deadline);
                let forwarded_to = self.forward(signal);
                self.event(SupervisorEvent::Signal {
                    signal,
                    action,
                    forwarded_to,
                });
                None
            }
        }
    }

    async fn run(&self, signals: &mut Option<Signals>) -> io::Result<ExitStatus> {
        // Generation 1, through the machine like every other.
        if self.attempts.begin().is_err() {
            // A fresh machine is Running: cannot happen.
            return Err(io::Error::other("the restart machine refused to start"));
        }
        let mut attempt: Option<AttemptFuture<'_>> = Some(self.start_generation());
        let mut stop_deadline: Option<Instant> = None;
        // systemd beyond READY (STATUS=, WATCHDOG=1): see `observed`.
        let problem = |p| self.event(SupervisorEvent::Problem(p));
        let systemd = super::notify::supervisor_watch(
            self.settings.notify,
            || self.observed(),
            problem,
            async_io::Timer::at,
        );
        let mut systemd = std::pin::pin!(systemd);
        // The control socket, served on threads; their requests come here.
        let (asks_tx, asks) = async_channel::unbounded();
        let control = lock(&self.settings.control).take();
        let _served = match control {
            Some(socket) => Some(serve_on_threads(socket, asks_tx)?),
            None => None,
        };
        // Control clients waiting for the attempt in flight.
        let mut waiters: Vec<async_channel::Sender<String>> = Vec::new();
        enum Woke {
            Control(Ask),
            Signal(Option<io::Result<Signal>>),
            Attempt(Result<u32, RestartError>),
            Exited(u32, io::Result<ExitStatus>),
            StopDeadline,
        }
        // One event per pass: a signal, the attempt's end, a generation's
        // exit, or the stop deadline. Ends once stopping with no
        // generation left (each is bounded by its own drain deadline, or
        // the stop deadline's kill).
        loop {
            let (done, exits) = {
                let gens = lock(&self.gens);
                let done = attempt.is_none()
                    && gens.serving.is_none()
                    && gens.draining.is_empty()
                    && gens.starting.is_none();
                let exits: Vec<Arc<ChildWatch>> = gens.running().map(|g| g.watch.clone()).collect();
                (done, exits)
            };
            if done {
                let exit = lock(&self.gens).exit;
                return exit.ok_or_else(|| {
                    io::Error::other(if self.stopping() {
                        "stopped before the first generation was ready"
                    } else {
                        "no generation is serving"
                    })
                });
            }
            let woke = {
                let signal = async {
                    match signals {
                        Some(signals) => Woke::Signal(signals.next().await),
                        None => pending().await,
                    }
                };
                let attempt_done = async {
                    match &mut attempt {
                        Some(f) => Woke::Attempt(f.await),
                        None => pending().await,
                    }
                };
                let mut waits: Vec<_> = exits
                    .iter()
                    .map(|w| {
                        let pid = w.pid();
                        Box::pin(async move { (pid, w.exited().await) })
                    })
                    .collect();
                let exited = poll_fn(|cx| {
                    for wait in &mut waits {
                        if let Poll::Ready((pid, status)) = wait.as_mut().poll(cx) {
                            return Poll::Ready(Woke::Exited(pid, status));
                        }
                    }
                    Poll::Pending
                });
                let deadline = async {
                    match stop_deadline {
                        Some(at) => {
                            async_io::Timer::at(at).await;
                            Woke::StopDeadline
                        }
                        None => pending().await,
                    }
                };
                let systemd = systemd.as_mut();
                let control = async {
                    match asks.recv().await {
                        Ok(ask) => Woke::Control(ask),
                        Err(_) => pending().await,
                    }
                };
                signal
                    .or(control)
                    .or(attempt_done)
                    .or(exited)
                    .or(deadline)
                    .or(systemd)
                    .await
            };
            match woke {
                Woke::Control(Ask::Status(reply)) => {
                    let _ = reply.try_send(format!("ok status {}", self.status_line()));
                }
                Woke::Control(Ask::Restart(reply)) => {
                    let joined = attempt.is_some();
                    self.event(SupervisorEvent::ControlRestart { joined });
                    if joined {
                        waiters.push(reply);
                    } else {
                        match self.begin_restart() {
                            Ok(started) => {
                                attempt = Some(started);
                                waiters.push(reply);
                            }
                            Err(e) => {
                                let _ =
                                    reply.try_send(format!("error {}", one_line(&e.to_string())));
                            }
                        }
                    }
                }
                Woke::Signal(Some(Ok(signal))) => {
                    if let Some(started) = self.on_signal(signal, &mut stop_deadline) {
                        attempt = Some(started);
                    }
                }
                Woke::Signal(Some(Err(e))) => return Err(e),
                Woke::Signal(None) => return Err(io::Error::other("signal handling stopped")),
                Woke::Attempt(result) => {
                    attempt = None;
                    self.attempts.renew();
                    let mut gens = lock(&self.gens);
                    let reply = match &result {
                        Ok(pid) => format!(
                            "ok restarted pid={pid} generation={}",
                            gens.serving.as_ref().map_or(0, |g| g.generation)
                        ),
                        Err(e) => format!("error {}", one_line(&e.to_string())),
                    };
                    for waiter in waiters.drain(..) {
                        let _ = waiter.try_send(reply.clone());
                    }
                    // Handed off to (now serving), or killed and reaped.
                    gens.starting = None;
                    if gens.serving.is_none()
                        && gens.exit.is_none()
                        && let Err(e) = result
                    {
                        drop(gens);
                        return Err(io::Error::other(if self.stopping() {
                            "stopped before the first generation was ready".to_owned()
                        } else {
                            format!("the first generation failed: {e}")
                        }));
                    }
                }
                Woke::Exited(pid, status) => self.exited(pid, status, &mut stop_deadline),
                Woke::StopDeadline => {
                    stop_deadline = None;
                    let gens = lock(&self.gens);
                    for g in gens.running() {
                        // With its process group: what it started would
                        // hold the listening sockets on otherwise.
                        if g.watch.kill() {
                            self.event(SupervisorEvent::Killed { pid: g.watch.pid() });
                        }
                    }
                }
            }
        }
    }

    /// A generation exited (and was reaped).
    fn exited(
        &self,
        pid: u32,
        status: io::Result<ExitStatus>,
        stop_deadline: &mut Option<Instant>,
    ) {
        // A status lost (reaped elsewhere: cannot happen) counts as a failure.
        let status = status.unwrap_or_else(|_| ExitStatus::from_raw(1 << 8));
        let serving = {
            let mut gens = lock(&self.gens);
            if gens.serving.as_ref().is_some_and(|g| g.watch.pid() == pid) {
                gens.serving = None;
                gens.exit = Some(status);
                true
            } else {
                gens.draining.retain(|g| g.watch.pid() != pid);
                false
            }
        };
        self.event(SupervisorEvent::GenerationExited {
            pid,
            status,
            serving,
        });
        if serving {
            self.begin_stop(stop_deadline);
        }
    }
}

/// The supervisor carries out restart attempts: the next generation
/// replaces the serving one; the supervisor stays.
impl Carrier for Core<'_> {
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send {
        let timer = async_io::Timer::at(at);
        async move {
            timer.await;
        }
    }

    /// The restart machine decides: `begin_stop` sets the stopping flag
    /// before it tells the machine, so a stop that began first is seen
    /// either here or by the machine (which then refuses `child_ready`).
    fn decide_hand_off(&self, _child: u32, restart_takes: impl FnOnce(bool) -> bool) -> bool {
        restart_takes(!self.stopping())
    }

    fn keep_channel(&self, _child: u32, channel: ReadyReader) {
        if let Some(starting) = lock(&self.gens).starting.as_mut() {
            starting.channel = Some(channel);
        }
    }

    /// The new generation serves: the previous one (if any) is told to hand
    /// off; systemd hears `READY=1` (after a restart: the reload is over).
    fn handed_off(&self, child: u32) -> impl Future<Output = ()> + Send {
        let mut gens = lock(&self.gens);
        let new = gens.starting.take();
        let generation = new.as_ref().map_or(0, |g| g.generation);
        let previous = match new {
            Some(new) => gens.serving.replace(new),
            // The machine hands off to the process this attempt started.
            None => None,
        };
        match previous {
            Some(previous) => {
                let old = previous.watch.pid();
                if let Err(e) = previous.link.hand_off(child) {
                    self.event(SupervisorEvent::Problem(format!(
                        "cannot tell generation pid {old} to hand off: {e}"
                    )));
                }
                // Its state is the new generation's now: no more asking.
                let mut previous = previous;
                previous.channel = None;
                gens.draining.push(previous);
                drop(gens);
                self.send_notify("READY=1");
                self.event(SupervisorEvent::HandedOff {
                    generation,
                    pid: child,
                    previous: old,
                });
            }
            None => {
                drop(gens);
                let pid = std::process::id();
                if let Some(path) = &self.settings.pid_file
                    && let Err(e) = pidfile::write(path, pid)
                {
                    self.event(SupervisorEvent::Problem(format!(
                        "cannot write the pid file {}: {e}",
                        path.display()
                    )));
                }
                self.send_notify("READY=1");
                self.event(SupervisorEvent::Ready {
                    pid,
                    generation_pid: child,
                });
            }
        }
        std::future::ready(())
    }

    /// The failed generation was reaped: systemd hears `READY=1` (the
    /// reload is over) unless stopping, and the failure is reported.
    fn rolled_back(&self, failure: Option<RestartError>) -> RestartError {
        let error = failure.unwrap_or(RestartError::Failed {
            failure: RestartFailure::Stopping,
            detail: None,
        });
        let (serving, served) = {
            let gens = lock(&self.gens);
            (
                gens.serving.is_some(),
                gens.serving.is_some() || gens.exit.is_some(),
            )
        };
        if serving && !self.stopping() {
            self.send_notify("READY=1");
        }
        // The first generation's failure is `run`'s error instead.
        if served {
            self.event(SupervisorEvent::RestartFailed(error.clone()));
        }
        error
    }
}

// systemd beyond READY (STATUS=, WATCHDOG=1; notify.rs): polled by the
// supervisor's own loop, so its pings say that loop is alive.
impl Core<'_> {
    /// Nothing before the first generation is ready; then serving (or
    /// restarting), and draining once stopping.
    fn observed(&self) -> Option<lameduck_core::systemd::Observed> {
        use lameduck_core::{Phase, restart::RestartPhase};
        let gens = lock(&self.gens);
        if gens.serving.is_none() && gens.exit.is_none() {
            return None;
        }
        let phase = if self.stopping() {
            Phase::Draining
        } else {
            Phase::Serving
        };
        // A hand-off between generations leaves the supervisor main.
        let restart = match self.attempts.phase() {
            RestartPhase::HandedOff => RestartPhase::Running,
            phase => phase,
        };
        Some(lameduck_core::systemd::Observed::phase(phase, restart))
    }
}
