//! A [`Lifecycle`]'s settings: signals, the successor's program, the
//! deadlines, the pid file, systemd, the restart state, the control
//! socket, the observer. Each is a method taking and returning the
//! lifecycle, set before it runs.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
//! let lifecycle = lameduck::unix::Lifecycle::new(handle)
//!     .drain_timeout(std::time::Duration::from_secs(30))
//!     .notify(false);
//! # let _ = lifecycle; Ok(()) }
//! ```

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crate::sync::lock;
use crate::unix::ctl::ControlSocket;
use crate::unix::handoff::inherit::Inherited;
use crate::unix::handoff::state::StateOffer;
use crate::unix::signals::SignalConfig;

use super::Lifecycle;
use super::event::LifecycleEvent;

/// [`Lifecycle::handoff_linger`]'s default.
pub(super) const DEFAULT_HANDOFF_LINGER: Duration = Duration::from_secs(1);

pub(super) struct Settings {
    pub(super) signals: SignalConfig,
    pub(super) executable: io::Result<PathBuf>,
    pub(super) args: Vec<OsString>,
    pub(super) drain_timeout: Option<Duration>,
    pub(super) handoff_linger: Duration,
    pub(super) pid_file: Option<PathBuf>,
    pub(super) notify: bool,
    /// Builds the state offered at each restart.
    pub(super) state: Option<StateSource>,
}

pub(super) type StateSource = Arc<dyn Fn() -> io::Result<StateOffer> + Send + Sync>;

impl Lifecycle {
    pub(super) fn settings(&self) -> MutexGuard<'_, Settings> {
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
}
