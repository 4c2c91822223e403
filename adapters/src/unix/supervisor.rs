//! Supervisor mode: zero-downtime restarts with a process id that never
//! changes. See [`Supervisor`].

use std::cell::RefCell;
use std::collections::HashMap;
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
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_signal::Signals;
use futures_lite::{FutureExt, StreamExt};
use lameduck_core::restart::{RestartConfig, RestartFailure, RestartPhase};
use lameduck_core::supervisor::{
    Generation, KillReason, Notice, Role, Supervisor as Machine, SupervisorAction,
    SupervisorConfig, SupervisorExit,
};

use super::attempt::{Launched, Mode, Spawn, program};
use super::child::{ChildWatch, on_orphan_reaped};
use super::ctl::{Ask, ControlSocket, one_line, serve_on_threads};
use super::error::RestartError;
use super::inherit::{Inherited, take_or_bind, take_or_bind_unix};
use super::link::{LinkWriter, link_pipe};
use super::notify::{monotonic_usec, notify_or_report};
use super::pidfile;
use super::ready::{Heard, Offer, ReadyReader};
use super::signals::{Signal, SignalAction, SignalConfig, SignalName};
use crate::listener::ListenAddr;
use crate::server::Pending;
use crate::sync::lock;

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
/// Every decision here — which generation serves, when the previous one
/// hands off, when a stop escalates to `SIGKILL`, which exit status the
/// supervisor ends with — is the core's pure
/// [`supervisor`](lameduck_core::supervisor) machine's; this type carries
/// it out on processes, pipes and signals.
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
///   unchanged. systemd hears `RELOADING=1` and then `READY=1`; the main
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
        let machine = RefCell::new(Machine::new(
            SupervisorConfig {
                ready_timeout: self.ready_timeout,
                stop_timeout: self.stop_timeout,
            },
            Instant::now(),
        ));
        let mut run = Run {
            settings: &self,
            machine: &machine,
            processes: HashMap::new(),
            launching: None,
            conversation: None,
            detail: None,
            waiters: Vec::new(),
            exit: None,
        };
        let result = run.run(&mut signals).await;
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

/// A generation's process and the supervisor's ends of its channels: what
/// the supervisor holds for it while it runs. What becomes of it is the
/// core machine's decision ([`Machine`]).
struct Process {
    watch: Arc<ChildWatch>,
    /// Kept until it exits: its end of file would tell it the supervisor
    /// is gone.
    link: LinkWriter,
    /// Its hand-off channel while it serves: asked for its restart state
    /// when the next generation starts. Dropped once it hands off.
    channel: Option<ReadyReader>,
}

/// A start being carried out: the serving generation's state asked for,
/// then the launch.
type Launch<'a> = Pin<Box<dyn Future<Output = io::Result<(Launched, LinkWriter)>> + 'a>>;

/// The readiness conversation with the generation starting.
type Conversation = Pin<Box<dyn Future<Output = io::Result<Heard>>>>;

/// The supervisor while it runs: it feeds the core machine what happened
/// and carries out what it asks.
struct Run<'a> {
    settings: &'a Supervisor,
    /// Shared with the systemd watch, which reads it between inputs.
    machine: &'a RefCell<Machine>,
    processes: HashMap<u32, Process>,
    /// The start being carried out, and its generation's number.
    launching: Option<(u64, Launch<'a>)>,
    conversation: Option<(u32, Conversation)>,
    /// What the failure of the restart in flight says beyond its kind: why
    /// the start failed, how it exited, why the state was refused.
    detail: Option<String>,
    /// Control clients waiting for the outcome of the restart in flight.
    waiters: Vec<async_channel::Sender<String>>,
    /// Set by [`SupervisorAction::Exit`]: what `run` returns.
    exit: Option<io::Result<ExitStatus>>,
}

impl<'a> Run<'a> {
    fn event(&self, event: SupervisorEvent) {
        if let Some(observer) = &self.settings.observer {
            observer(&event);
        }
    }

    fn send_notify(&self, state: &str) {
        if !self.settings.notify {
            return;
        }
        notify_or_report(state, |problem| {
            self.event(SupervisorEvent::Problem(problem));
        });
    }

    fn answer_waiters(&mut self, reply: &str) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.try_send(reply.to_owned());
        }
    }

    /// Carries out what the machine asks, in order. `signal`: the stop
    /// signal being forwarded, if any; the pids it was forwarded to.
    fn carry_out(&mut self, signal: Option<Signal>) -> Vec<u32> {
        let mut forwarded = Vec::new();
        loop {
            let Some(action) = self.machine.borrow_mut().poll_action() else {
                return forwarded;
            };
            match action {
                SupervisorAction::Start {
                    generation,
                    state_from,
                } => {
                    self.detail = None;
                    let channel = state_from
                        .and_then(|pid| self.processes.get(&pid))
                        .and_then(|p| p.channel.clone());
                    let settings = self.settings;
                    let launch: Launch<'a> = Box::pin(async move {
                        let offer = serving_state(settings, channel).await?;
                        launch_generation(settings, generation, offer)
                    });
                    self.launching = Some((generation, launch));
                }
                SupervisorAction::Kill { pid, reason } => {
                    if let Some(process) = self.processes.get(&pid) {
                        // With its process group: what it started would
                        // hold the listening sockets on otherwise.
                        let killed = process.watch.kill();
                        if killed && reason == KillReason::StopDeadline {
                            self.event(SupervisorEvent::Killed { pid });
                        }
                    }
                    if self.conversation.as_ref().is_some_and(|(p, _)| *p == pid) {
                        self.conversation = None;
                    }
                }
                SupervisorAction::Forward { pid } => {
                    let signal =
                        signal.and_then(|s| rustix::process::Signal::from_named_raw(s as i32));
                    if let (Some(signal), Some(process)) = (signal, self.processes.get(&pid))
                        && process.watch.signal(signal)
                    {
                        forwarded.push(pid);
                    }
                }
                SupervisorAction::WritePidFile => {
                    if let Some(path) = &self.settings.pid_file {
                        pidfile::write_or_report(path, std::process::id(), |problem| {
                            self.event(SupervisorEvent::Problem(problem));
                        });
                    }
                }
                SupervisorAction::Notify(notice) => match notice {
                    Notice::Ready => self.send_notify("READY=1"),
                    Notice::Reloading => self
                        .send_notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec())),
                    Notice::Stopping => self.send_notify("STOPPING=1"),
                },
                SupervisorAction::Serve {
                    generation,
                    previous,
                } => self.serve(generation, previous),
                SupervisorAction::RestartFailed(failure) => {
                    let error = self.failed(failure);
                    self.answer_waiters(&format!("error {}", one_line(&error.to_string())));
                    self.event(SupervisorEvent::RestartFailed(error));
                }
                SupervisorAction::Exit(exit) => {
                    let result = match exit {
                        SupervisorExit::Status(status) => Ok(status),
                        SupervisorExit::FirstFailed(failure) => Err(io::Error::other(format!(
                            "the first generation failed: {}",
                            self.failed(failure)
                        ))),
                        SupervisorExit::StoppedBeforeReady => Err(io::Error::other(
                            SupervisorExit::StoppedBeforeReady.to_string(),
                        )),
                    };
                    let reply = match &result {
                        Ok(_) => "error the supervisor is stopping".to_owned(),
                        Err(e) => format!("error {}", one_line(&e.to_string())),
                    };
                    self.answer_waiters(&reply);
                    self.exit = Some(result);
                }
            }
        }
    }

    /// `generation` serves: the previous one (if any) is told to hand off;
    /// the readiness channel stays, to ask for the state later.
    fn serve(&mut self, generation: Generation, previous: Option<u32>) {
        let Generation { number, pid } = generation;
        if let Some(process) = self.processes.get(&pid) {
            // It serves now: its group no longer goes with it.
            process.watch.keep_group();
        }
        self.answer_waiters(&format!("ok restarted pid={pid} generation={number}"));
        match previous {
            Some(old) => {
                let told = self.processes.get_mut(&old).map(|previous| {
                    // Its state is the new generation's now: no more asking.
                    previous.channel = None;
                    previous.link.hand_off(pid)
                });
                if let Some(Err(e)) = told {
                    self.event(SupervisorEvent::Problem(format!(
                        "cannot tell generation pid {old} to hand off: {e}"
                    )));
                }
                self.event(SupervisorEvent::HandedOff {
                    generation: number,
                    pid,
                    previous: old,
                });
            }
            None => self.event(SupervisorEvent::Ready {
                pid: std::process::id(),
                generation_pid: pid,
            }),
        }
    }

    /// The error for a failed restart, with what is known beyond its kind.
    fn failed(&mut self, failure: RestartFailure) -> RestartError {
        let detail = match failure {
            RestartFailure::NotReady { .. } => Some(RestartError::not_ready_detail()),
            RestartFailure::Stopping => None,
            _ => self.detail.take(),
        };
        RestartError::Failed { failure, detail }
    }

    /// A restart asked for: refusals are reported.
    fn restart(&self, now: Instant) -> Result<u64, RestartError> {
        let refused = self.machine.borrow_mut().restart(now);
        refused.map_err(|e| {
            let e = RestartError::refused(&e);
            self.event(SupervisorEvent::RestartFailed(e.clone()));
            e
        })
    }

    /// The status line for the control socket.
    fn status_line(&self) -> String {
        let machine = self.machine.borrow();
        let phase = if machine.is_stopping() {
            "draining"
        } else {
            "serving"
        };
        let restart = format!("{:?}", machine.restart_phase()).to_lowercase();
        let (pid, generation) = machine.serving().map_or((0, 0), |g| (g.pid, g.number));
        format!(
            "phase={phase} restart={restart} pid={pid} generation={generation} supervisor={} \
             restarts={}",
            std::process::id(),
            machine.generations().saturating_sub(1)
        )
    }

    /// A signal arrived.
    fn on_signal(&mut self, signal: Signal, now: Instant) {
        let Some(action) = self.settings.signals.action(signal) else {
            return;
        };
        match action {
            SignalAction::Restart => {
                self.event(SupervisorEvent::Signal {
                    signal,
                    action,
                    forwarded_to: Vec::new(),
                });
                let _ = self.restart(now);
            }
            SignalAction::Drain | SignalAction::Close => {
                self.machine.borrow_mut().stop(now);
                let forwarded_to = self.carry_out(Some(signal));
                self.event(SupervisorEvent::Signal {
                    signal,
                    action,
                    forwarded_to,
                });
            }
        }
    }

    async fn run(&mut self, signals: &mut Option<Signals>) -> io::Result<ExitStatus> {
        // systemd beyond READY (STATUS=, WATCHDOG=1): see `observed`. Polled
        // by this loop, so its pings say the loop is alive.
        let machine = self.machine;
        let settings = self.settings;
        let problem = |p| {
            if let Some(observer) = &settings.observer {
                observer(&SupervisorEvent::Problem(p));
            }
        };
        let systemd = super::notify::supervisor_watch(
            settings.notify,
            || observed(&machine.borrow()),
            problem,
            async_io::Timer::at,
        );
        let mut systemd = std::pin::pin!(systemd);
        // The control socket, served on threads; their requests come here.
        let (asks_tx, asks) = async_channel::unbounded();
        let control = lock(&settings.control).take();
        let _served = match control {
            Some(socket) => Some(serve_on_threads(socket, asks_tx)?),
            None => None,
        };
        enum Woke {
            Control(Ask),
            Signal(Option<io::Result<Signal>>),
            Launched(u64, io::Result<(Launched, LinkWriter)>),
            Heard(u32, io::Result<Heard>),
            Exited(u32, io::Result<ExitStatus>),
            Timeout,
        }
        // One event per pass, fed to the machine, whose actions are then
        // carried out. Ends with its Exit: once stopping with no
        // generation left (each is bounded by its own drain deadline, or
        // the stop deadline's kill), or when the first generation failed.
        loop {
            self.carry_out(None);
            if let Some(result) = self.exit.take() {
                return result;
            }
            let deadline = machine.borrow().poll_timeout();
            let watches: Vec<Arc<ChildWatch>> =
                self.processes.values().map(|p| p.watch.clone()).collect();
            let woke = {
                let signal = async {
                    match signals {
                        Some(signals) => Woke::Signal(signals.next().await),
                        None => pending().await,
                    }
                };
                let control = async {
                    match asks.recv().await {
                        Ok(ask) => Woke::Control(ask),
                        Err(_) => pending().await,
                    }
                };
                let launching = &mut self.launching;
                let launched = async {
                    match launching {
                        Some((generation, f)) => Woke::Launched(*generation, f.await),
                        None => pending().await,
                    }
                };
                let conversation = &mut self.conversation;
                let heard = async {
                    match conversation {
                        Some((pid, f)) => Woke::Heard(*pid, f.await),
                        None => pending().await,
                    }
                };
                let mut waits: Vec<_> = watches
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
                let timeout = async {
                    match deadline {
                        Some(at) => {
                            async_io::Timer::at(at).await;
                            Woke::Timeout
                        }
                        None => pending().await,
                    }
                };
                signal
                    .or(control)
                    .or(launched)
                    .or(heard)
                    .or(exited)
                    .or(timeout)
                    .or(systemd.as_mut())
                    .await
            };
            let now = Instant::now();
            match woke {
                Woke::Control(Ask::Status(reply)) => {
                    let _ = reply.try_send(format!("ok status {}", self.status_line()));
                }
                Woke::Control(Ask::Restart(reply)) => {
                    let joined = matches!(
                        machine.borrow().restart_phase(),
                        RestartPhase::Spawning | RestartPhase::Reaping
                    );
                    self.event(SupervisorEvent::ControlRestart { joined });
                    if joined {
                        self.waiters.push(reply);
                    } else {
                        match self.restart(now) {
                            Ok(_) => self.waiters.push(reply),
                            Err(e) => {
                                let _ =
                                    reply.try_send(format!("error {}", one_line(&e.to_string())));
                            }
                        }
                    }
                }
                Woke::Signal(Some(Ok(signal))) => self.on_signal(signal, now),
                Woke::Signal(Some(Err(e))) => return Err(e),
                Woke::Signal(None) => return Err(io::Error::other("signal handling stopped")),
                Woke::Launched(generation, launched) => {
                    self.launching = None;
                    match launched {
                        Ok((launched, link)) => {
                            let Launched {
                                watch,
                                reader,
                                offer,
                            } = launched;
                            let pid = watch.pid();
                            self.event(SupervisorEvent::GenerationStarted { generation, pid });
                            self.processes.insert(
                                pid,
                                Process {
                                    watch,
                                    link,
                                    channel: Some(reader.clone()),
                                },
                            );
                            self.conversation = Some((pid, Box::pin(reader.converse(offer))));
                            let _ = machine.borrow_mut().started(pid, now);
                        }
                        Err(e) => {
                            self.detail = Some(e.to_string());
                            let _ = machine.borrow_mut().start_failed(now);
                        }
                    }
                }
                Woke::Heard(pid, heard) => {
                    self.conversation = None;
                    match heard {
                        Ok(Heard::Ready) => {
                            // Refused only if it is no longer wanted (the
                            // deadline passed, or a stop began): it is
                            // being killed.
                            let _ = machine.borrow_mut().ready(pid, now);
                        }
                        Ok(Heard::Aborted { reason, detail }) => {
                            self.detail = detail;
                            let _ = machine.borrow_mut().aborted(pid, reason, now);
                        }
                        // End of file without READY: its exit, or the
                        // deadline, says how it failed.
                        Ok(Heard::Eof) | Err(_) => {}
                    }
                }
                Woke::Exited(pid, status) => {
                    // A status lost (reaped elsewhere: cannot happen)
                    // counts as a failure.
                    let status = status.unwrap_or_else(|_| ExitStatus::from_raw(1 << 8));
                    // Its link and channel go with it.
                    self.processes.remove(&pid);
                    if self.conversation.as_ref().is_some_and(|(p, _)| *p == pid) {
                        self.conversation = None;
                    }
                    let role = machine.borrow_mut().exited(pid, status, now);
                    if role == Ok(Role::Starting) && self.detail.is_none() {
                        self.detail = Some(status.to_string());
                    }
                    self.event(SupervisorEvent::GenerationExited {
                        pid,
                        status,
                        serving: role == Ok(Role::Serving),
                    });
                }
                Woke::Timeout => machine.borrow_mut().handle_timeout(now),
            }
        }
    }
}

/// The serving generation's restart state, asked on its `channel`: nothing
/// if none serves (the first), or within the readiness deadline, or the
/// error.
async fn serving_state(settings: &Supervisor, channel: Option<ReadyReader>) -> io::Result<Offer> {
    let Some(channel) = channel else {
        return Ok(Offer::empty());
    };
    let limits = lameduck_core::handover::Limits::default();
    let asked = async { Some(channel.request_state(limits).await) };
    let timeout = async {
        async_io::Timer::after(settings.ready_timeout).await;
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

/// Starts generation `generation` with the listeners, a readiness channel
/// (on which `offer` is sent) and a link.
fn launch_generation(
    settings: &Supervisor,
    generation: u64,
    offer: Offer,
) -> io::Result<(Launched, LinkWriter)> {
    let program = program(&settings.executable)?;
    let fds: Vec<(BorrowedFd<'_>, &str)> = settings
        .listeners
        .iter()
        .map(|pending| match pending {
            Pending::Tcp(l, name, _) => (l.as_fd(), &**name),
            Pending::Unix(l, _, name) => (l.as_fd(), &**name),
        })
        .collect();
    let (writer, read): (LinkWriter, OwnedFd) = link_pipe()?;
    // The supervisor owns the socket files: no generation takes them over.
    let launched = Spawn {
        program: &program,
        args: &settings.args,
        listeners: &fds,
        mode: Mode::Supervised { link: read.as_fd() },
        generation,
        offer,
    }
    .launch()?;
    // Only the generation holds the read end now.
    drop(read);
    Ok((launched, writer))
}

/// What systemd's watch reports (STATUS=, WATCHDOG=1; notify.rs): nothing
/// before the first generation is ready; then serving (or restarting),
/// and draining once stopping.
fn observed(machine: &Machine) -> Option<lameduck_core::systemd::Observed> {
    use lameduck_core::Phase;
    if !machine.has_served() {
        return None;
    }
    let phase = if machine.is_stopping() {
        Phase::Draining
    } else {
        Phase::Serving
    };
    Some(lameduck_core::systemd::Observed::phase(
        phase,
        machine.restart_phase(),
    ))
}
