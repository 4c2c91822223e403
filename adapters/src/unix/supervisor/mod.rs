//! Supervisor mode: zero-downtime restarts with a process id that never
//! changes. See [`Supervisor`]: its settings and start are here; what
//! it reports is [`SupervisorEvent`] (`event.rs`), its run loop carrying
//! out the core machine's actions is `supervision.rs`, and starting a
//! generation is `generation.rs`.

mod event;
mod generation;
mod supervision;

use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_signal::Signals;
use lameduck_core::restart::RestartConfig;
use lameduck_core::supervisor::{Supervisor as Machine, SupervisorConfig};

pub use event::SupervisorEvent;
use supervision::Supervision;

use super::child::on_orphan_reaped;
use super::ctl::ControlSocket;
use super::handoff::inherit::Inherited;
use super::handoff::inherit_or_bind::{take_or_bind, take_or_bind_unix};
use super::pidfile;
use super::signals::SignalConfig;
use crate::event::{Event, Observer, emit};
use crate::listener::ListenAddr;
use crate::server::PendingListener;
use crate::sync::lock;

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
///   [`LifecycleBuilder::inherited`](super::LifecycleBuilder::inherited), which also
///   routes its readiness to the supervisor, refuses restarts of the
///   generation itself ([`RestartError::Supervised`](super::RestartError::Supervised)), and leaves systemd
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
///     // ... otherwise serve, with `Lifecycle::builder(handle).inherited(inherited)`:
///     // under the supervisor, `inherited` carries the sockets and the link.
///     ExitCode::SUCCESS
/// }
/// ```
pub struct Supervisor {
    listeners: Vec<PendingListener>,
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
                PendingListener::Tcp(l, ..) => l.local_addr().ok().map(ListenAddr::Tcp),
                PendingListener::Unix(l, _, _) => l.local_addr().ok().map(|a| {
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

    /// Which signals restart ([`SignalAction::Restart`](super::SignalAction::Restart)) and which are
    /// forwarded to the generations ([`SignalAction::Drain`](super::SignalAction::Drain) and
    /// [`SignalAction::Close`](super::SignalAction::Close): the generations decide what they do).
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

    /// Observes the supervisor's events, as
    /// [`Event::Supervisor`](crate::Event::Supervisor)s (a
    /// [`SupervisorEvent`] each). Called from the supervisor's thread, and
    /// from its reaper's for [`SupervisorEvent::OrphanReaped`]. They are
    /// logged (target `lameduck`) whether observed or not. The observer
    /// is of the same type as [`Builder::on_event`](crate::Builder::on_event)'s
    /// and [`LifecycleBuilder::on_event`](super::LifecycleBuilder::on_event)'s:
    /// one function may observe all three.
    ///
    /// ```
    /// let supervisor = lameduck::unix::Supervisor::new().on_event(|e| eprintln!("supervisor: {e}"));
    /// # let _ = supervisor;
    /// ```
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Reports `event`: logged, and told to the observer.
    pub(crate) fn report(&self, event: SupervisorEvent) {
        emit(self.observer.as_ref(), &Event::Supervisor(event));
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
        // Registered even unobserved: orphans reaped are logged.
        let observer = self.observer.clone();
        on_orphan_reaped(Arc::new(move |pid, status| {
            let event = Event::Supervisor(SupervisorEvent::OrphanReaped { pid, status });
            emit(observer.as_ref(), &event);
        }))?;
        let machine = RefCell::new(Machine::new(
            SupervisorConfig {
                ready_timeout: self.ready_timeout,
                stop_timeout: self.stop_timeout,
            },
            Instant::now(),
        ));
        let mut supervision = Supervision::new(&self, &machine);
        let result = supervision.run(&mut signals).await;
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
            if let PendingListener::Unix(_, Some(path), _) = pending {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
