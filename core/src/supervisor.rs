//! Supervisor mode as a pure state machine: a long-lived parent with a pid
//! that never changes runs the server as child **generations**, and
//! decides which generation serves, when the previous one is told to hand
//! off, when a stop escalates to `SIGKILL`, and which exit status the
//! supervisor ends with.
//!
//! - **Start.** Generation 1 is started at once ([`Supervisor::new`]).
//!   Once it reports ready it serves: the pid file is written and systemd
//!   hears `READY=1`.
//! - **Restart** ([`Supervisor::restart`]): the next generation is started
//!   with the serving one's restart state; once it is ready it serves and
//!   the previous one is told to hand off (it stops accepting, drains and
//!   exits on its own). The policy of a restart is
//!   [`Restart`]'s, which this machine drives
//!   ([`Restart::supervised`]): one
//!   attempt at a time, a readiness deadline, a generation that fails is
//!   killed and reaped and the serving one goes on, none once stopping. A
//!   failure is reported once the failed generation is reaped.
//! - **Stop.** A stop signal ([`Supervisor::stop`]) is forwarded to every
//!   generation still running (serving or draining); a generation still
//!   starting is killed. The serving generation exiting on its own stops
//!   the supervisor too. Once a stop began, an optional
//!   [stop deadline](SupervisorConfig::stop_timeout) kills (`SIGKILL`)
//!   every generation still running when it passes.
//! - **Exit.** Once stopping and no generation is left,
//!   [`SupervisorAction::Exit`] says how the supervisor ends: with the
//!   serving generation's exit status, or why no generation ever served.
//!
//! It is driven like [`Server`](crate::Server) (see the
//! [crate docs](crate#the-run-loop-contract)): every input takes `now`,
//! [`poll_timeout`](Supervisor::poll_timeout) says when to call
//! [`handle_timeout`](Supervisor::handle_timeout), and the caller drains
//! [`poll_action`](Supervisor::poll_action) after every input and carries
//! each [`SupervisorAction`] out.
//!
//! ```
//! # #[cfg(unix)] {
//! use std::os::unix::process::ExitStatusExt;
//! use std::process::ExitStatus;
//! use std::time::{Duration, Instant};
//! use lameduck_core::supervisor::*;
//!
//! let t0 = Instant::now();
//! let at = |ms: u64| t0 + Duration::from_millis(ms);
//! let config = SupervisorConfig { stop_timeout: Some(Duration::from_secs(30)), ..Default::default() };
//! let mut sup = Supervisor::new(config, t0);
//! assert_eq!(sup.poll_action(), Some(SupervisorAction::Start { generation: 1, state_from: None }));
//! sup.started(101, at(0)).unwrap();
//! sup.ready(101, at(50)).unwrap();
//! let first = Generation { number: 1, pid: 101 };
//! assert_eq!(
//!     std::iter::from_fn(|| sup.poll_action()).collect::<Vec<_>>(),
//!     [
//!         SupervisorAction::WritePidFile,
//!         SupervisorAction::Notify(Notice::Ready),
//!         SupervisorAction::Serve { generation: first, previous: None },
//!     ]
//! );
//!
//! // SIGTERM: forwarded; the generation drains, but too slowly.
//! sup.stop(at(1_000));
//! assert_eq!(sup.poll_action(), Some(SupervisorAction::Notify(Notice::Stopping)));
//! assert_eq!(sup.poll_action(), Some(SupervisorAction::Forward { pid: 101 }));
//! assert_eq!(sup.poll_timeout(), Some(at(31_000)));
//! sup.handle_timeout(at(31_000));
//! assert_eq!(
//!     sup.poll_action(),
//!     Some(SupervisorAction::Kill { pid: 101, reason: KillReason::StopDeadline })
//! );
//! let killed = ExitStatus::from_raw(9); // SIGKILL
//! assert_eq!(sup.exited(101, killed, at(31_001)), Ok(Role::Serving));
//! assert_eq!(sup.poll_action(), Some(SupervisorAction::Exit(SupervisorExit::Status(killed))));
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::handover::AbortReason;
use crate::restart::{
    Refusal, Restart, RestartAction, RestartConfig, RestartFailure, RestartPhase,
};
use crate::time::{Nanos, Timeline};

/// How a supervisor behaves.
///
/// ```
/// use std::time::Duration;
/// use lameduck_core::supervisor::SupervisorConfig;
/// let config = SupervisorConfig::default();
/// assert_eq!(config.ready_timeout, Duration::from_secs(60));
/// assert_eq!(config.stop_timeout, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// How long a generation has, from its start being asked for, to report
    /// ready. Default 60 s.
    pub ready_timeout: Duration,
    /// Once a stop began, how long generations still running have before
    /// they are killed. Default `None`: each generation's own drain
    /// deadline bounds the stop.
    pub stop_timeout: Option<Duration>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            ready_timeout: RestartConfig::default().ready_timeout,
            stop_timeout: None,
        }
    }
}

/// A generation: its number (1 for the first, then 2, …, counting those
/// that failed) and its process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Generation {
    /// 1 for the first generation, then 2, ….
    pub number: u64,
    /// Its process id.
    pub pid: u32,
}

/// What a generation was when it exited ([`Supervisor::exited`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Being started (the restart in flight): the restart fails.
    Starting,
    /// Serving: the supervisor stops, and ends with its exit status.
    Serving,
    /// Handed off and draining: nothing follows.
    Draining,
}

/// What to tell systemd (`sd_notify`), when the supervisor runs under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notice {
    /// `READY=1`: a generation serves (the first, a new one, or the old one
    /// again after a failed restart).
    Ready,
    /// `RELOADING=1` (with `MONOTONIC_USEC=`): a restart began.
    Reloading,
    /// `STOPPING=1`: the supervisor is stopping.
    Stopping,
}

/// Why a generation is to be killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KillReason {
    /// It is the restart in flight, and failed or is no longer wanted.
    Attempt,
    /// The [stop deadline](SupervisorConfig::stop_timeout) passed while it
    /// was still running.
    StopDeadline,
}

/// How the supervisor ends ([`SupervisorAction::Exit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupervisorExit {
    /// The serving generation exited with this status (and every other
    /// generation has exited too).
    Status(ExitStatus),
    /// The first generation could not be started, exited, or was not
    /// ready in time.
    FirstFailed(RestartFailure),
    /// A stop came before the first generation was ready.
    StoppedBeforeReady,
}

impl fmt::Display for SupervisorExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorExit::Status(status) => write!(f, "the serving generation exited ({status})"),
            SupervisorExit::FirstFailed(failure) => {
                write!(f, "the first generation failed: {failure}")
            }
            SupervisorExit::StoppedBeforeReady => {
                f.write_str("stopped before the first generation was ready")
            }
        }
    }
}

/// What the supervisor machine asks its caller to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupervisorAction {
    /// Start generation `generation` with the listening sockets, a
    /// readiness channel and a link; then report
    /// [`started`](Supervisor::started) or
    /// [`start_failed`](Supervisor::start_failed). `state_from`: the
    /// serving generation, to ask for its restart state first and offer it
    /// to the new one (within the readiness deadline).
    Start {
        /// Its number.
        generation: u64,
        /// The serving generation's pid, if one serves.
        state_from: Option<u32>,
    },
    /// Kill this generation (`SIGKILL`, with whatever it started) and reap
    /// it; report [`exited`](Supervisor::exited) once reaped.
    Kill {
        /// Its pid.
        pid: u32,
        /// Why.
        reason: KillReason,
    },
    /// Forward the stop signal just received ([`Supervisor::stop`]) to
    /// this generation.
    Forward {
        /// Its pid.
        pid: u32,
    },
    /// Write the pid file (the supervisor's own pid): the first generation
    /// is about to serve.
    WritePidFile,
    /// Tell systemd.
    Notify(Notice),
    /// `generation` serves now. With a `previous` generation, tell it to
    /// hand off to the new one (on its link): it stops accepting, drains
    /// and exits; without, the service is up.
    Serve {
        /// The generation that serves now.
        generation: Generation,
        /// The generation that served until now, if any: it drains.
        previous: Option<u32>,
    },
    /// A restart failed, its generation (if it was started) reaped; the
    /// serving generation goes on, unless the supervisor is stopping.
    /// Report it.
    RestartFailed(RestartFailure),
    /// No generation is left: the supervisor ends, so. Queued once, last.
    Exit(SupervisorExit),
}

/// The restart in flight, from its `Start` until it serves or is over.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    generation: u64,
    /// Set once [`Supervisor::started`] or [`Supervisor::start_failed`]
    /// reported the start: `Some(pid)` or `None`.
    start: Option<Option<u32>>,
    /// The restart machine's verdict, reported once the attempt is over.
    failure: Option<RestartFailure>,
}

/// The supervisor machine. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Supervisor {
    stop_timeout: Option<Duration>,
    time: Timeline,
    restart: Restart,
    attempt: Option<Attempt>,
    serving: Option<Generation>,
    draining: Vec<Generation>,
    generations: u64,
    served: bool,
    stopping: bool,
    stop_deadline: Nanos,
    /// The serving generation's exit status, once it exited.
    status: Option<ExitStatus>,
    /// The first generation's failure, if it never served.
    first_failure: Option<RestartFailure>,
    exited: bool,
    actions: VecDeque<SupervisorAction>,
}

impl Supervisor {
    /// A supervisor whose first action starts generation 1; `now` is the
    /// origin of its time.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), Instant::now());
    /// assert_eq!(sup.poll_action(), Some(SupervisorAction::Start { generation: 1, state_from: None }));
    /// assert_eq!(sup.generations(), 1);
    /// ```
    #[must_use]
    pub fn new(config: SupervisorConfig, now: Instant) -> Supervisor {
        let mut supervisor = Supervisor {
            stop_timeout: config.stop_timeout,
            time: Timeline::new(now),
            restart: Restart::supervised(
                RestartConfig {
                    ready_timeout: config.ready_timeout,
                },
                now,
            ),
            attempt: None,
            serving: None,
            draining: Vec::new(),
            generations: 0,
            served: false,
            stopping: false,
            stop_deadline: Nanos::NEVER,
            status: None,
            first_failure: None,
            exited: false,
            actions: VecDeque::new(),
        };
        // A fresh machine is running: the request is taken.
        let first = supervisor.begin_attempt(now);
        debug_assert_eq!(first, Ok(1));
        supervisor.settle();
        supervisor
    }

    /// A restart was asked for (`SIGHUP`, the control socket): the next
    /// generation's number, or why not — one is in flight (the first
    /// generation's start counts), or the supervisor is stopping. A refusal
    /// changes nothing.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::Refusal;
    /// use lameduck_core::supervisor::*;
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// assert_eq!(sup.restart(now), Err(Refusal::InProgress));
    /// ```
    pub fn restart(&mut self, now: Instant) -> Result<u64, Refusal> {
        self.enter(now);
        let result = if self.exited {
            Err(Refusal::Stopping)
        } else {
            self.begin_attempt(now)
        };
        self.settle();
        result
    }

    /// The generation asked for by [`SupervisorAction::Start`] was started
    /// as process `pid`. If it is no longer wanted (the readiness deadline
    /// passed, or a stop began), it is killed at once.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::Refusal;
    /// use lameduck_core::supervisor::*;
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// sup.started(101, now).unwrap();
    /// assert_eq!(sup.started(102, now), Err(Refusal::Unexpected));
    /// ```
    pub fn started(&mut self, pid: u32, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        let result = match &mut self.attempt {
            Some(attempt) if attempt.start.is_none() => {
                attempt.start = Some(Some(pid));
                self.restart.spawned(pid, now)
            }
            _ => Err(Refusal::Unexpected),
        };
        self.settle();
        result
    }

    /// The generation asked for by [`SupervisorAction::Start`] could not be
    /// started (or its predecessor's restart state could not be had).
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::RestartFailure;
    /// use lameduck_core::supervisor::*;
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// let _ = sup.poll_action();
    /// sup.start_failed(now).unwrap();
    /// assert_eq!(
    ///     sup.poll_action(),
    ///     Some(SupervisorAction::Exit(SupervisorExit::FirstFailed(RestartFailure::SpawnFailed)))
    /// );
    /// ```
    pub fn start_failed(&mut self, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        let result = match &mut self.attempt {
            Some(attempt) if attempt.start.is_none() => {
                attempt.start = Some(None);
                self.restart.spawn_failed(now)
            }
            _ => Err(Refusal::Unexpected),
        };
        self.settle();
        result
    }

    /// Generation `pid` reported ready (having taken the restart state it
    /// was offered): it serves, and the previous one hands off. Refused if
    /// it is not the generation being started (its deadline passed, or a
    /// stop began: it is being killed).
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::Refusal;
    /// use lameduck_core::supervisor::*;
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// sup.started(101, now).unwrap();
    /// assert_eq!(sup.ready(102, now), Err(Refusal::UnknownChild(102)));
    /// sup.ready(101, now).unwrap();
    /// assert_eq!(sup.serving(), Some(Generation { number: 1, pid: 101 }));
    /// ```
    pub fn ready(&mut self, pid: u32, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        let result = self.restart.child_ready(pid, now);
        self.settle();
        result
    }

    /// The restart state's hand-over to generation `pid` was aborted by its
    /// doing (see [`crate::handover`]): it is killed, and the restart fails.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::handover::AbortReason;
    /// use lameduck_core::supervisor::*;
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// let _ = sup.poll_action();
    /// sup.started(101, now).unwrap();
    /// sup.aborted(101, AbortReason::Refused, now).unwrap();
    /// assert_eq!(
    ///     sup.poll_action(),
    ///     Some(SupervisorAction::Kill { pid: 101, reason: KillReason::Attempt })
    /// );
    /// ```
    pub fn aborted(&mut self, pid: u32, reason: AbortReason, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        let result = self.restart.child_aborted(pid, reason, now);
        self.settle();
        result
    }

    /// A stop signal arrived (one that drains or closes): it is to be
    /// forwarded, as it is, to every generation still running
    /// ([`SupervisorAction::Forward`]); the first one also begins the stop
    /// (systemd hears `STOPPING=1`, a generation still starting is killed,
    /// no more restarts, the stop deadline starts). A second one is
    /// forwarded too (a second `SIGTERM` closes at once).
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// let _ = sup.poll_action();
    /// sup.started(101, now).unwrap();
    /// sup.stop(now);
    /// let actions: Vec<_> = std::iter::from_fn(|| sup.poll_action()).collect();
    /// assert_eq!(actions, [
    ///     SupervisorAction::Notify(Notice::Stopping),
    ///     SupervisorAction::Kill { pid: 101, reason: KillReason::Attempt },
    /// ]);
    /// ```
    pub fn stop(&mut self, now: Instant) {
        let at = self.enter(now);
        if !self.exited {
            self.begin_stop(at, now);
            let running: Vec<u32> = self.running().map(|g| g.pid).collect();
            for pid in running {
                self.actions.push_back(SupervisorAction::Forward { pid });
            }
        }
        self.settle();
    }

    /// Generation `pid` exited and was reaped: what it was. The serving
    /// generation's exit stops the supervisor, which will end with its
    /// `status`; a starting one's fails the restart.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::Refusal;
    /// use lameduck_core::supervisor::*;
    /// # #[cfg(unix)] {
    /// use std::os::unix::process::ExitStatusExt;
    /// let status = std::process::ExitStatus::from_raw(0);
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// sup.started(101, now).unwrap();
    /// assert_eq!(sup.exited(7, status, now), Err(Refusal::UnknownChild(7)));
    /// assert_eq!(sup.exited(101, status, now), Ok(Role::Starting));
    /// # }
    /// ```
    pub fn exited(&mut self, pid: u32, status: ExitStatus, now: Instant) -> Result<Role, Refusal> {
        let at = self.enter(now);
        let result = if self.serving.is_some_and(|g| g.pid == pid) {
            self.serving = None;
            self.status = Some(status);
            self.begin_stop(at, now);
            Ok(Role::Serving)
        } else if let Some(i) = self.draining.iter().position(|g| g.pid == pid) {
            self.draining.remove(i);
            Ok(Role::Draining)
        } else if self
            .attempt
            .is_some_and(|attempt| attempt.start == Some(Some(pid)))
        {
            self.restart.child_exited(pid, now).map(|()| Role::Starting)
        } else {
            Err(Refusal::UnknownChild(pid))
        };
        self.settle();
        result
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed: the
    /// starting generation's readiness deadline, or the stop deadline.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lameduck_core::supervisor::*;
    /// let t0 = Instant::now();
    /// let sup = Supervisor::new(SupervisorConfig::default(), t0);
    /// assert_eq!(sup.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.exited {
            return None;
        }
        let stop = self.time.instant(self.stop_deadline);
        match (self.restart.poll_timeout(), stop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles the deadlines that have passed: a generation not ready in
    /// time is killed (the restart fails); at the stop deadline every
    /// generation still running is killed. Idempotent.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lameduck_core::supervisor::*;
    /// let t0 = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), t0);
    /// let _ = sup.poll_action();
    /// sup.started(101, t0).unwrap();
    /// sup.handle_timeout(t0 + Duration::from_secs(60));
    /// assert_eq!(
    ///     sup.poll_action(),
    ///     Some(SupervisorAction::Kill { pid: 101, reason: KillReason::Attempt })
    /// );
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        self.enter(now);
        self.settle();
    }

    /// The next action to carry out; drain until `None` after every input.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), Instant::now());
    /// assert!(sup.poll_action().is_some());
    /// assert_eq!(sup.poll_action(), None);
    /// ```
    #[must_use]
    pub fn poll_action(&mut self) -> Option<SupervisorAction> {
        self.actions.pop_front()
    }

    /// The serving generation, if any.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let sup = Supervisor::new(SupervisorConfig::default(), Instant::now());
    /// assert_eq!(sup.serving(), None);
    /// ```
    #[must_use]
    pub fn serving(&self) -> Option<Generation> {
        self.serving
    }

    /// The generations that handed off and are still draining, oldest
    /// first.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let sup = Supervisor::new(SupervisorConfig::default(), Instant::now());
    /// assert!(sup.draining().is_empty());
    /// ```
    #[must_use]
    pub fn draining(&self) -> &[Generation] {
        &self.draining
    }

    /// The generation being started, once its process is: the restart in
    /// flight.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// sup.started(101, now).unwrap();
    /// assert_eq!(sup.starting(), Some(Generation { number: 1, pid: 101 }));
    /// ```
    #[must_use]
    pub fn starting(&self) -> Option<Generation> {
        let attempt = self.attempt?;
        let pid = attempt.start??;
        Some(Generation {
            number: attempt.generation,
            pid,
        })
    }

    /// Generations started (or asked for) so far, the failed ones included.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let sup = Supervisor::new(SupervisorConfig::default(), Instant::now());
    /// assert_eq!(sup.generations(), 1);
    /// ```
    #[must_use]
    pub fn generations(&self) -> u64 {
        self.generations
    }

    /// Whether a generation ever served (the service was up).
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let sup = Supervisor::new(SupervisorConfig::default(), Instant::now());
    /// assert!(!sup.has_served());
    /// ```
    #[must_use]
    pub fn has_served(&self) -> bool {
        self.served
    }

    /// Whether a stop began.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let now = Instant::now();
    /// let mut sup = Supervisor::new(SupervisorConfig::default(), now);
    /// sup.stop(now);
    /// assert!(sup.is_stopping());
    /// ```
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Whether [`SupervisorAction::Exit`] was queued: nothing follows.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::supervisor::*;
    /// let sup = Supervisor::new(SupervisorConfig::default(), Instant::now());
    /// assert!(!sup.is_exited());
    /// ```
    #[must_use]
    pub fn is_exited(&self) -> bool {
        self.exited
    }

    /// Where the restart protocol is: [`RestartPhase::Spawning`] while a
    /// generation is being started, [`RestartPhase::Reaping`] while a
    /// failed one is being killed, [`RestartPhase::Stopped`] once stopping.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::RestartPhase;
    /// use lameduck_core::supervisor::*;
    /// let sup = Supervisor::new(SupervisorConfig::default(), Instant::now());
    /// assert_eq!(sup.restart_phase(), RestartPhase::Spawning);
    /// ```
    #[must_use]
    pub fn restart_phase(&self) -> RestartPhase {
        self.restart.phase()
    }

    /// The generations still running and not being started: the serving
    /// one, then the draining ones.
    fn running(&self) -> impl Iterator<Item = &Generation> {
        self.serving.iter().chain(self.draining.iter())
    }

    /// Advances time and handles what is due; the time on this timeline.
    fn enter(&mut self, now: Instant) -> Nanos {
        let at = self.time.advance(now);
        if self.exited {
            return at;
        }
        self.restart.handle_timeout(now);
        if self.stop_deadline <= at {
            // Once: the kills are final.
            self.stop_deadline = Nanos::NEVER;
            let running: Vec<u32> = self.running().map(|g| g.pid).collect();
            for pid in running {
                self.actions.push_back(SupervisorAction::Kill {
                    pid,
                    reason: KillReason::StopDeadline,
                });
            }
        }
        at
    }

    /// Asks the restart machine for the next generation.
    fn begin_attempt(&mut self, now: Instant) -> Result<u64, Refusal> {
        self.restart.request(now)?;
        self.generations += 1;
        let generation = self.generations;
        self.attempt = Some(Attempt {
            generation,
            start: None,
            failure: None,
        });
        if self.served {
            self.actions
                .push_back(SupervisorAction::Notify(Notice::Reloading));
        }
        Ok(generation)
    }

    /// Begins the stop, once.
    fn begin_stop(&mut self, at: Nanos, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.actions
            .push_back(SupervisorAction::Notify(Notice::Stopping));
        if let Some(timeout) = self.stop_timeout {
            self.stop_deadline = at.after(timeout);
        }
        self.restart.stopping(now);
        self.carry();
    }

    /// Carries the restart machine's actions over, in order.
    fn carry(&mut self) {
        while let Some(action) = self.restart.poll_action() {
            self.take(action);
        }
    }

    /// Carries the restart machine's actions over, ends an attempt that is
    /// over, and exits once nothing is left.
    fn settle(&mut self) {
        self.carry();
        self.end_attempt();
        if !self.exited
            && self.attempt.is_none()
            && self.serving.is_none()
            && self.draining.is_empty()
            && (self.stopping || self.first_failure.is_some())
        {
            let exit = match (self.status, self.first_failure) {
                (Some(status), _) => SupervisorExit::Status(status),
                (None, Some(failure)) if failure != RestartFailure::Stopping => {
                    SupervisorExit::FirstFailed(failure)
                }
                (None, _) => SupervisorExit::StoppedBeforeReady,
            };
            self.exited = true;
            self.stop_deadline = Nanos::NEVER;
            self.actions.push_back(SupervisorAction::Exit(exit));
        }
    }

    fn take(&mut self, action: RestartAction) {
        match action {
            RestartAction::Spawn { .. } => {
                // Queued by `request`, right after `begin_attempt` set the
                // attempt: it cannot be missing.
                let generation = self.attempt.map_or(self.generations, |a| a.generation);
                self.actions.push_back(SupervisorAction::Start {
                    generation,
                    state_from: self.serving.map(|g| g.pid),
                });
            }
            RestartAction::Kill { child } => self.actions.push_back(SupervisorAction::Kill {
                pid: child,
                reason: KillReason::Attempt,
            }),
            RestartAction::HandOff { child } => {
                // The machine hands off only to the child `started`
                // reported, which is the attempt's.
                let number = self
                    .attempt
                    .take()
                    .map_or(self.generations, |a| a.generation);
                let generation = Generation { number, pid: child };
                let previous = self.serving.replace(generation);
                if let Some(previous) = previous {
                    self.draining.push(previous);
                }
                if !self.served {
                    self.served = true;
                    self.actions.push_back(SupervisorAction::WritePidFile);
                }
                self.actions
                    .push_back(SupervisorAction::Notify(Notice::Ready));
                self.actions.push_back(SupervisorAction::Serve {
                    generation,
                    previous: previous.map(|g| g.pid),
                });
            }
            RestartAction::Failed(failure) => {
                if let Some(attempt) = &mut self.attempt {
                    attempt.failure.get_or_insert(failure);
                }
            }
        }
    }

    /// A failed attempt is over once its start was reported and the restart
    /// machine has no process of it left to reap: report it.
    fn end_attempt(&mut self) {
        let Some(attempt) = self.attempt else { return };
        let over = attempt.start.is_some()
            && self.restart.child().is_none()
            && matches!(
                self.restart.phase(),
                RestartPhase::Running | RestartPhase::Stopped
            );
        if !over {
            return;
        }
        self.attempt = None;
        let failure = attempt.failure.unwrap_or(RestartFailure::Stopping);
        if self.served {
            if self.serving.is_some() && !self.stopping {
                self.actions
                    .push_back(SupervisorAction::Notify(Notice::Ready));
            }
            self.actions
                .push_back(SupervisorAction::RestartFailed(failure));
        } else {
            self.first_failure = Some(failure);
        }
    }
}
