//! The [`LifecycleBuilder`]: a [`Lifecycle`]'s settings — signals, the
//! successor's program, the deadlines, the pid file, systemd, what this
//! process inherited, the restart state, the control socket, the observer
//! — each a method taking and returning the builder; then
//! [`build`](LifecycleBuilder::build) makes the lifecycle, whose settings
//! no longer change.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
//! let lifecycle = lameduck::unix::Lifecycle::builder(handle)
//!     .shutdown_within(std::time::Duration::from_secs(30))
//!     .notify(false)
//!     .build();
//! # let _ = lifecycle; Ok(()) }
//! ```

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck_core::restart::RestartConfig;

use crate::event::{Event, Observer};
use crate::handle::Handle;
use crate::unix::attempt::Attempts;
use crate::unix::ctl::ControlSocket;
use crate::unix::handoff::inherit::{Inherited, OwnedFile};
use crate::unix::handoff::link::Link;
use crate::unix::handoff::ready::ReadyChannel;
use crate::unix::handoff::state::StateOffer;
use crate::unix::signals::SignalConfig;

use super::{Lifecycle, Shared};

/// [`LifecycleBuilder::handoff_linger`]'s default.
pub(super) const DEFAULT_HANDOFF_LINGER: Duration = Duration::from_secs(1);

/// What a [`Lifecycle`] was built with, fixed from then on.
pub(super) struct Settings {
    pub(super) signals: SignalConfig,
    pub(super) executable: io::Result<PathBuf>,
    pub(super) args: Vec<OsString>,
    pub(super) shutdown_within: Option<Duration>,
    pub(super) handoff_linger: Duration,
    pub(super) pid_file: Option<PathBuf>,
    pub(super) notify: bool,
    /// Builds the state offered at each restart.
    pub(super) state: Option<StateSource>,
}

pub(super) type StateSource = Arc<dyn Fn() -> io::Result<StateOffer> + Send + Sync>;

/// Sets up a [`Lifecycle`] (from [`Lifecycle::builder`]); each setting has
/// a default, and [`build`](Self::build) makes it.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
/// use lameduck::unix::Lifecycle;
/// let mut builder = Lifecycle::builder(handle).notify(false);
/// if let Some(path) = std::env::var_os("PID_FILE") {
///     builder = builder.pid_file(path);
/// }
/// let lifecycle = builder.build();
/// # let _ = lifecycle; Ok(()) }
/// ```
#[must_use = "a lifecycle is made by `build`"]
pub struct LifecycleBuilder {
    handle: Handle,
    settings: Settings,
    ready_timeout: Duration,
    /// The readiness channel to a predecessor or supervisor.
    ready: Option<ReadyChannel>,
    /// Socket files the predecessor handed over.
    owned_files: Vec<OwnedFile>,
    /// The supervisor's link and pid (a supervised generation).
    supervision: Option<(Link, u32)>,
    control: Option<ControlSocket>,
    observer: Option<Observer>,
}

impl fmt::Debug for LifecycleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleBuilder")
            .field("handle", &self.handle)
            .field("shutdown_within", &self.settings.shutdown_within)
            .field("ready_timeout", &self.ready_timeout)
            .field("pid_file", &self.settings.pid_file)
            .field("notify", &self.settings.notify)
            .field("supervised", &self.supervision.is_some())
            .finish_non_exhaustive()
    }
}

impl Lifecycle {
    /// Sets up the lifecycle of the server behind `handle` (serving or
    /// about to). Defaults: [`SignalConfig::default`], the successor is
    /// this executable (as found now) with this process's arguments, 60 s
    /// to be ready, no shutdown timeout, no pid file, systemd notifications
    /// on (sent only under systemd).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).build();
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn builder(handle: Handle) -> LifecycleBuilder {
        LifecycleBuilder {
            handle,
            settings: Settings {
                signals: SignalConfig::default(),
                executable: std::env::current_exe(),
                args: std::env::args_os().skip(1).collect(),
                shutdown_within: None,
                handoff_linger: DEFAULT_HANDOFF_LINGER,
                pid_file: None,
                notify: true,
                state: None,
            },
            ready_timeout: RestartConfig::default().ready_timeout,
            ready: None,
            owned_files: Vec::new(),
            supervision: None,
            control: None,
            observer: None,
        }
    }
}

impl LifecycleBuilder {
    /// Which signals drain, close or restart.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use lameduck::unix::{Lifecycle, Signal, SignalAction, SignalConfig};
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = Lifecycle::builder(handle)
    ///     .signals(SignalConfig::default().on(Signal::Usr1, SignalAction::Restart));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn signals(mut self, signals: SignalConfig) -> Self {
        self.settings.signals = signals;
        self
    }

    /// The successor's executable (default: this one, as found when the
    /// lifecycle was created — so an upgrade replaces the file there).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle)
    ///     .restart_executable("/usr/local/bin/server");
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn restart_executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.executable = Ok(path.into());
        self
    }

    /// The successor's arguments (default: this process's).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).restart_args(["--config", "/etc/server.toml"]);
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn restart_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.settings.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long a successor has, from the restart, to report ready (default
    /// 60 s); then it is killed and the restart rolled back.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle)
    ///     .ready_timeout(std::time::Duration::from_secs(10));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How long drains begun by [`shutdown`](Lifecycle::shutdown), a drain
    /// signal or a hand-off may take: then what remains is closed by force
    /// (default: no limit). What
    /// [`Handle::shutdown_within`](crate::Handle::shutdown_within) takes, set
    /// once for every drain the lifecycle begins (the demo's `--grace`).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle)
    ///     .shutdown_within(std::time::Duration::from_secs(30));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn shutdown_within(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_within = Some(timeout);
        self
    }

    /// After a hand-off, how long idle keep-alive connections stay open
    /// (default 1 s): a client that sends its next request meanwhile gets
    /// its answer, with `Connection: close`, and reconnects — to the
    /// successor — instead of finding its connection closed under the
    /// request (an HTTP/1.1 race no server-side close can avoid otherwise).
    /// Then the drain closes those still idle. Zero: close them at once.
    /// It counts towards the [shutdown timeout](Self::shutdown_within).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle)
    ///     .handoff_linger(std::time::Duration::from_secs(5));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn handoff_linger(mut self, linger: Duration) -> Self {
        self.settings.handoff_linger = linger;
        self
    }

    /// Writes the serving process's pid to `path` (atomically): at start,
    /// and at a hand-off the successor's, before systemd hears `MAINPID`.
    /// Removed at exit unless handed off.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).pid_file("/run/server.pid");
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.pid_file = Some(path.into());
        self
    }

    /// Whether to send systemd notifications (default `true`; nothing is
    /// sent when `NOTIFY_SOCKET` is unset).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).notify(false);
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn notify(mut self, notify: bool) -> Self {
        self.settings.notify = notify;
        self
    }

    /// What this process inherited: if a predecessor started it, readiness
    /// is reported to that predecessor (on its private channel) instead of
    /// systemd. Listeners left in `inherited` are closed.
    ///
    /// If a [`Supervisor`](crate::unix::Supervisor) started it
    /// ([`Inherited::is_supervised`]), this process is one of its
    /// generations: readiness goes to the supervisor; `HANDOFF` from the
    /// supervisor hands off (stop accepting without shutting the shared
    /// sockets down, drain, exit — as after a restart here); the end of the
    /// link (the supervisor is gone) drains for exit; restarts are refused
    /// ([`RestartError::Supervised`](crate::unix::RestartError::Supervised): the supervisor restarts); and
    /// systemd notifications and the pid file are left to the supervisor.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = lameduck::unix::Inherited::from_env()?;
    /// let handle = lameduck::Builder::new()
    ///     .inherit_or_bind(&mut inherited, "http", "127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).inherited(inherited);
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn inherited(mut self, mut inherited: Inherited) -> Self {
        self.ready = inherited.ready.take();
        self.owned_files = std::mem::take(&mut inherited.owned_files);
        if let Some(link) = inherited.link.take() {
            let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
            self.supervision = Some((link, parent.unsigned_abs()));
        }
        self
    }

    /// Restart state: `offer` is called when a restart starts, and what it
    /// returns is handed to the successor over the private channel, beside
    /// the listeners; the successor takes it with
    /// [`Inherited::take_state`] before it reports ready. The offer is a
    /// copy: if the successor refuses it, fails, is killed or is not ready
    /// in time, the restart is rolled back ([`RestartError::Failed`](crate::unix::RestartError::Failed) says
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
    /// let lifecycle = Lifecycle::builder(handle).restart_state(move || {
    ///     let mut offer = StateOffer::new(1);
    ///     offer.u64("hits", counted.load(Ordering::Relaxed))?;
    ///     Ok(offer)
    /// });
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn restart_state(
        mut self,
        offer: impl Fn() -> io::Result<StateOffer> + Send + Sync + 'static,
    ) -> Self {
        self.settings.state = Some(Arc::new(offer));
        self
    }

    /// Serves a control socket (see [`ControlSocket`]): `restart` asks for
    /// a restart and answers its outcome (joining one in flight), `status`
    /// answers a status line. Served by [`run`](Lifecycle::run) once ready; it
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
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).control(control);
    /// # let _ = lifecycle; std::fs::remove_file(&path)?; Ok(()) }
    /// ```
    pub fn control(mut self, socket: ControlSocket) -> Self {
        self.control = Some(socket);
        self
    }

    /// Observes the lifecycle's events, as
    /// [`Event::Lifecycle`](crate::Event::Lifecycle)s (a
    /// [`LifecycleEvent`](crate::unix::LifecycleEvent) each). They are
    /// logged (target `lameduck`) whether observed or not. The observer
    /// is of the same type as [`Builder::on_event`](crate::Builder::on_event)'s
    /// and [`Supervisor::on_event`](crate::unix::Supervisor::on_event)'s:
    /// one function may observe all three.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).on_event(|e| eprintln!("{e}"));
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Makes the lifecycle. From now on every phase the server enters
    /// reaches its restart machine, whoever causes it (the lifecycle, the
    /// [`Handle`], the server's own deadline); a server already stopping
    /// takes no restart.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// use lameduck::unix::RestartPhase;
    /// handle.shutdown(None);
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).notify(false).build();
    /// assert_eq!(lifecycle.restart_phase(), RestartPhase::Stopped);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn build(self) -> Lifecycle {
        let members = self.handle.members().to_vec();
        let (link, supervisor) = match self.supervision {
            Some((link, supervisor)) => (Some(link), Some(supervisor)),
            None => (None, None),
        };
        let lifecycle = Lifecycle {
            shared: Arc::new(Shared {
                handle: self.handle,
                settings: self.settings,
                attempts: Attempts::new(RestartConfig {
                    ready_timeout: self.ready_timeout,
                }),
                ready: Mutex::new(self.ready),
                link: Mutex::new(link),
                owned_files: Mutex::new(self.owned_files),
                supervisor,
                signals: Mutex::new(None),
                reported_ready: AtomicBool::new(false),
                observer: self.observer,
                control: Mutex::new(self.control),
                control_listener: Mutex::new(None),
                control_stop: event_listener::Event::new(),
                control_clients: AtomicUsize::new(0),
                current_restart: Mutex::new(None),
            }),
        };
        // Every phase each thread's server enters reaches the restart
        // machine. Weak: the server's drivers outlive a dropped lifecycle.
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
}
