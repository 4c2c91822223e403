//! A [`Lifecycle`]'s restarts carried out: the successor started with the
//! listeners and the restart state, requests that join a restart in
//! flight, the hand-off and its announcement, the rollback reported. The
//! attempt itself (readiness, exit, deadline) is `unix::attempt`'s; the
//! decisions are [`lameduck_core::restart::Restart`]'s.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
//! let lifecycle = lameduck::unix::Lifecycle::builder(handle).build();
//! match smol::block_on(lifecycle.restart()) {
//!     Ok(pid) => println!("pid {pid} serves now; this process drains"),
//!     Err(e) => println!("not restarted: {e}"),
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lameduck_core::restart::{Refusal, RestartFailure};

use crate::driver::hand_off_all;
use crate::sync::{lock, wait_for};
use crate::unix::attempt::{Carrier, Launched, Mode, Spawn, program};
use crate::unix::ctl::CONTROL_NAME;
use crate::unix::error::RestartError;
use crate::unix::handoff::generation;
use crate::unix::handoff::ready::Offer;
use crate::unix::notify::monotonic_usec;
use crate::unix::pidfile;

use super::Lifecycle;
use super::event::LifecycleEvent;

/// A restart's outcome, once known: the new pid and generation, or why not.
pub(super) type RestartOutcome = Result<(u32, u64), RestartError>;

/// Where those who join a restart in flight wait for its outcome.
#[derive(Default)]
pub(super) struct RestartSlot {
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

impl Lifecycle {
    /// Restarts (as `SIGHUP` does): starts the successor, waits until it is
    /// ready, hands off and begins this process's drain. Resolves to the
    /// successor's pid, or why not — then this process goes on serving.
    /// Every step is also reported as a [`LifecycleEvent`].
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
    /// let lifecycle = lameduck::unix::Lifecycle::builder(handle).build();
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
    pub(super) async fn restart_or_join(&self, join: bool) -> RestartOutcome {
        if let Some(supervisor) = self.supervisor() {
            let e = RestartError::Supervised { supervisor };
            self.event(LifecycleEvent::RestartFailed(e.clone()));
            return Err(e);
        }
        enum Begun {
            Started(u64, Arc<RestartSlot>),
            Joined(Arc<RestartSlot>),
            Refused(Refusal),
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
                Err(Refusal::InProgress) if join => match current.clone() {
                    Some(slot) => Begun::Joined(slot),
                    None => Begun::Refused(Refusal::InProgress),
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

    /// What this process offers a successor now (also what a supervised
    /// generation answers its supervisor).
    pub(super) fn offer(&self) -> io::Result<Offer> {
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

    /// Starts the successor with the listeners and the hand-off channel,
    /// on which the state goes.
    fn start_successor(&self) -> io::Result<Launched> {
        let offer = self.offer()?;
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
    pub(super) fn hand_off(&self, restart_takes: impl FnOnce(bool) -> bool) -> bool {
        let (linger, timeout) = {
            let settings = self.settings();
            (settings.handoff_linger, settings.shutdown_within)
        };
        hand_off_all(self.shared.handle.members(), restart_takes, linger, timeout)
    }

    /// The successor took over: the pid file and systemd hear of it. (A
    /// supervised generation: its supervisor said so; the supervisor keeps
    /// the pid file and speaks to systemd.)
    pub(super) async fn announce_hand_off(&self, successor: u32) {
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

    fn decide_hand_off(&self, restart_takes: impl FnOnce(bool) -> bool) -> bool {
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
