//! The [`Lifecycle`]: a server's life on Unix around its
//! [`Handle`](crate::Handle) — signals, readiness, restarts (carrying out
//! [`lameduck_core::restart::Restart`]'s actions), systemd notifications,
//! the pid file and the control socket. This file holds the type, what it
//! shares between its clones, its queries and its stops; the rest, by job:
//!
//! - `builder`: the settings ([`LifecycleBuilder`]);
//! - `run`: the run loop — readiness, signals, the supervisor's link;
//! - `restart`: restarts carried out (the successor, the hand-off);
//! - `control`: the control socket's requests;
//! - `event`: what it reports.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
//! let lifecycle = lameduck::unix::Lifecycle::builder(handle).notify(false).build();
//! lifecycle.close(); // normally: a signal, later
//! let ended = smol::block_on(lifecycle.run())?;
//! assert_eq!(ended.successor, None);
//! # Ok(()) }
//! ```

mod builder;
mod control;
mod event;
mod restart;
mod run;

pub use builder::LifecycleBuilder;
pub use event::{Ended, LifecycleEvent, LifecycleSnapshot};

use std::fmt;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_io::Async;
use async_signal::Signals;
use lameduck_core::Phase;
use lameduck_core::restart::RestartPhase;

use crate::event::{Event, Observer, emit};
use crate::handle::Handle;
use crate::unix::attempt::Attempts;
use crate::unix::ctl::ControlSocket;
use crate::unix::handoff::generation;
use crate::unix::handoff::inherit::OwnedFile;
use crate::unix::handoff::link::Link;
use crate::unix::handoff::ready::ReadyChannel;
use crate::unix::notify::notify_or_report;

use builder::Settings;
use restart::RestartSlot;

/// What a [`Lifecycle`]'s clones share.
struct Shared {
    handle: Handle,
    settings: Settings,
    /// The restart machine and the attempt in flight.
    attempts: Attempts,
    ready: Mutex<Option<ReadyChannel>>,
    /// The supervisor's link, until `run` reads it.
    link: Mutex<Option<Link>>,
    /// Socket files the predecessor handed over, taken up once ready.
    owned_files: Mutex<Vec<OwnedFile>>,
    /// This process is a supervised generation: its supervisor's pid (its
    /// parent's when it was adopted; 0 if the parent is outside this
    /// process's pid namespace).
    supervisor: Option<u32>,
    signals: Mutex<Option<Signals>>,
    /// Readiness was reported.
    reported_ready: AtomicBool,
    observer: Option<Observer>,
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

/// A server's life on Unix: readiness, signals, restarts, systemd and the
/// pid file, around a [`Handle`]. Set up with [`Lifecycle::builder`]
/// (its settings are then fixed). Cheap to clone; every method may be
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
/// let lifecycle = Lifecycle::builder(handle)
///     .signals(SignalConfig::none()) // methods only, in this example
///     .shutdown_within(Duration::from_secs(5))
///     .notify(false)
///     .build();
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
    /// The server entered `phase` (on one of its threads): the restart
    /// machine's input. The first phase of a stop (not after a hand-off:
    /// the successor is systemd's main process then) tells systemd
    /// `STOPPING=1`.
    fn server_phase(&self, phase: Phase) {
        if self.shared.attempts.server_phase(phase) {
            self.send_notify("STOPPING=1");
        }
    }

    /// The supervisor's pid, if this process is a supervised generation
    /// (see [`inherited`](LifecycleBuilder::inherited)): its parent when it started (0
    /// if that is outside this process's pid namespace).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).build();
    /// assert_eq!(lifecycle.supervisor(), None);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn supervisor(&self) -> Option<u32> {
        self.shared.supervisor
    }

    /// What it was built with.
    fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Where the restart protocol is.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// use lameduck::unix::RestartPhase;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).build();
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
    /// use lameduck::Phase;
    /// use lameduck::unix::RestartPhase;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).build();
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

    /// Reports `event`: logged, and told to the observer.
    pub(super) fn event(&self, event: LifecycleEvent) {
        emit(self.shared.observer.as_ref(), &Event::Lifecycle(event));
    }

    pub(super) fn send_notify(&self, state: &str) {
        // A supervised generation leaves systemd to its supervisor.
        if !self.settings().notify || self.supervisor().is_some() {
            return;
        }
        notify_or_report(state, |problem| {
            self.event(LifecycleEvent::Problem(problem));
        });
    }

    pub(super) fn shutdown_within(&self) -> Option<Duration> {
        self.settings().shutdown_within
    }

    /// Drains for exit (as `SIGTERM` does): the server shuts down with the
    /// [shutdown timeout](LifecycleBuilder::shutdown_within); as for any stop of the
    /// server's (a [`Handle::shutdown`] too), systemd hears `STOPPING=1`
    /// and no restart starts from now on (one in flight is rolled back).
    /// Harmless to repeat.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle.clone()).notify(false).build();
    /// lifecycle.shutdown();
    /// assert!(handle.phase().is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub fn shutdown(&self) {
        match self.shutdown_within() {
            Some(timeout) => self.shared.handle.shutdown_within(timeout),
            None => self.shared.handle.shutdown(None),
        }
    }

    /// Closes everything now (as a second `SIGTERM`, or `SIGUSR2`):
    /// systemd hears `STOPPING=1`; a restart in flight is rolled back.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle.clone()).notify(false).build();
    /// lifecycle.close();
    /// assert!(handle.drained().is_done());
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.shared.handle.close();
    }
}
