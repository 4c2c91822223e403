//! The run loop of a [`Lifecycle`]: readiness (to systemd, the pid file,
//! a predecessor or a supervisor), then signals and the supervisor's link
//! until the server is done; and the systemd watch beside it.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
//! let lifecycle = lameduck::unix::Lifecycle::builder(handle).notify(false).build();
//! smol::block_on(lifecycle.ready()); // reported once every accept loop runs
//! # Ok(()) }
//! ```

use std::future::pending;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use async_signal::Signals;
use futures_lite::{FutureExt, StreamExt};
use lameduck_core::Outcome;
use lameduck_core::restart::RestartPhase;

use crate::driver::Order;
use crate::sync::lock;
use crate::unix::handoff::inherit::socket_identity;
use crate::unix::handoff::link::{Link, LinkMessage};
use crate::unix::handoff::ready::{ReadyChannel, answer_state_requests};
use crate::unix::pidfile;
use crate::unix::signals::{Signal, SignalAction, SignalConfig};
use crate::unix::tasks::Tasks;

use super::Lifecycle;
use super::event::{Ended, LifecycleEvent};

impl Lifecycle {
    /// Installs the signal handlers now ([`run`](Self::run) does it
    /// otherwise): call it before announcing the server, so that a signal
    /// sent right after is handled rather than killing the process.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).build();
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

    /// Serves until the server is done: reports readiness (to systemd, the
    /// pid file, or a predecessor) once every accept loop runs, then
    /// handles signals until the drain completes — after a shutdown, a
    /// close, or a hand-off to a successor — and the gentle closes in
    /// progress have ended ([`Handle::finished`](crate::Handle::finished)): the process may exit
    /// when it returns.
    ///
    /// Errors only if the signal handlers cannot be installed.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).notify(false).build();
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
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).notify(false).build();
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
    /// with what [`restart_state`](super::LifecycleBuilder::restart_state) builds (nothing
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
        let deadline = self.shutdown_within();
        match action {
            SignalAction::Drain => {
                // The first drains; a repeat closes (as configured). Which
                // one it is, the restart machine says.
                let repeated = self.shared.attempts.drain_signal();
                let action = if repeated && config.closes_on_repeat() {
                    SignalAction::Close
                } else {
                    SignalAction::Drain
                };
                self.event(LifecycleEvent::Signal {
                    signal,
                    action,
                    repeated,
                    deadline,
                });
                if action == SignalAction::Close {
                    self.close();
                } else if !repeated {
                    self.shutdown();
                }
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
        crate::unix::notify::spawn_watch(self.shared.handle.driver(), observe, problem);
    }
}
