//! The restart (binary upgrade) protocol, as a pure state machine.
//!
//! `Running` → `Spawning` (a successor is started with the listening sockets
//! and has until a deadline to report ready) → `HandedOff` (the successor
//! serves; this process drains, then exits). If the successor cannot be
//! started, exits, or is not ready in time, this process kills and reaps it
//! and goes back to `Running`: a rollback, with the failure reported. At most
//! one restart is in flight; requests meanwhile are refused (debounced); none
//! once the server is stopping.
//!
//! The server's side reaches it as typed inputs: each phase the server
//! enters ([`Restart::server_phase`]: a stop, however it began, calls off
//! the restart in flight), and a hand-off decided elsewhere
//! ([`Restart::handed_off_to`]); its carrier keeps no copy of either.
//!
//! Like [`Server`](crate::Server), it takes `now` on every input, reports
//! [`poll_timeout`](Restart::poll_timeout), and queues [`RestartAction`]s
//! that the caller carries out, draining [`poll_action`](Restart::poll_action)
//! after every input.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use lameduck_core::restart::{Restart, RestartAction, RestartConfig, RestartPhase};
//!
//! let t0 = Instant::now();
//! let mut restart = Restart::new(RestartConfig::default(), t0);
//! restart.request(t0).unwrap(); // SIGHUP
//! assert_eq!(restart.poll_action(), Some(RestartAction::Spawn { attempt: 1 }));
//! restart.spawned(4242, t0).unwrap(); // the caller started the successor
//! restart.child_ready(4242, t0 + Duration::from_millis(80)).unwrap();
//! assert_eq!(restart.poll_action(), Some(RestartAction::HandOff { child: 4242 }));
//! assert_eq!(restart.phase(), RestartPhase::HandedOff);
//! ```
//!
//! A carrier that stays after a hand-off (a supervisor, whose next
//! generation replaces the previous one) uses [`Restart::supervised`]: the
//! same policy, and a hand-off returns it to `Running`, ready for the next
//! restart (see [`crate::supervisor`]).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::Phase;
use crate::handover::AbortReason;
use crate::time::{Nanos, Timeline};

/// How restarts behave.
///
/// ```
/// use std::time::Duration;
/// use lameduck_core::restart::RestartConfig;
/// let config = RestartConfig { ready_timeout: Duration::from_secs(10) };
/// assert_eq!(RestartConfig::default().ready_timeout, Duration::from_secs(60));
/// # let _ = config;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartConfig {
    /// How long a successor has, from the restart request, to report ready.
    /// Default 60 s.
    pub ready_timeout: Duration,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// Where the restart protocol is.
///
/// ```
/// use std::time::Instant;
/// use lameduck_core::restart::{Restart, RestartConfig, RestartPhase};
/// let restart = Restart::new(RestartConfig::default(), Instant::now());
/// assert_eq!(restart.phase(), RestartPhase::Running);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestartPhase {
    /// Serving; no restart in flight.
    Running,
    /// A successor is being started and has until the deadline to be ready.
    Spawning,
    /// A failed successor was killed; waiting to reap it before another try.
    Reaping,
    /// The successor is ready and serving; this process drains and exits.
    HandedOff,
    /// The server is stopping: no more restarts.
    Stopped,
}

/// What the restart machine asks its caller to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestartAction {
    /// Start the successor with the listening sockets at descriptors 3, …
    /// and a private readiness channel; then report
    /// [`Restart::spawned`] or [`Restart::spawn_failed`]. (systemd: send
    /// `RELOADING=1`.)
    Spawn {
        /// 1 for the first restart of this process, then 2, ….
        attempt: u64,
    },
    /// Kill this successor (it failed or is no longer wanted) and reap it;
    /// report [`Restart::child_exited`] once reaped.
    Kill {
        /// Its process id.
        child: u32,
    },
    /// The successor is ready and has the sockets: announce it (systemd:
    /// `MAINPID=<child>`, `READY=1`), stop accepting, drain, and exit.
    HandOff {
        /// Its process id.
        child: u32,
    },
    /// The restart failed and this process keeps serving (systemd: `READY=1`
    /// again). Report it.
    Failed(RestartFailure),
}

/// Why a restart failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestartFailure {
    /// The successor could not be started (not executable, say).
    SpawnFailed,
    /// The successor exited before it was ready.
    ChildExited {
        /// Its process id.
        child: u32,
    },
    /// The successor was not ready by the deadline.
    NotReady {
        /// Its process id, if it was started at all.
        child: Option<u32>,
    },
    /// The server began stopping while the successor was starting.
    Stopping,
    /// The restart state was not handed over (see [`crate::handover`]):
    /// the successor refused it, reported ready without taking it, or broke
    /// the protocol. It was killed.
    State {
        /// Its process id.
        child: u32,
        /// What went wrong.
        reason: AbortReason,
    },
}

impl fmt::Display for RestartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartFailure::SpawnFailed => f.write_str("the successor could not be started"),
            RestartFailure::ChildExited { child } => {
                write!(f, "the successor (pid {child}) exited before it was ready")
            }
            RestartFailure::NotReady { child: Some(c) } => {
                write!(f, "the successor (pid {c}) was not ready in time")
            }
            RestartFailure::NotReady { child: None } => {
                f.write_str("the successor was not started in time")
            }
            RestartFailure::Stopping => f.write_str("the server began stopping during the restart"),
            RestartFailure::State { child, reason } => {
                write!(f, "the successor (pid {child}) {reason}")
            }
        }
    }
}

/// Why the restart machine refused an input. Refusals change nothing.
///
/// ```
/// use std::time::Instant;
/// use lameduck_core::restart::{Restart, RestartConfig, Refusal};
/// let now = Instant::now();
/// let mut restart = Restart::new(RestartConfig::default(), now);
/// restart.request(now).unwrap();
/// assert_eq!(restart.request(now), Err(Refusal::InProgress));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// A restart is already in flight (repeated signals are debounced).
    InProgress,
    /// The server is stopping or has handed off: no restart.
    Stopping,
    /// Not expecting this report now (e.g. `spawned` with no spawn asked).
    Unexpected,
    /// A report about a process that is not the current successor.
    UnknownChild(u32),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::InProgress => f.write_str("a restart is already in progress"),
            Refusal::Stopping => f.write_str("the server is stopping"),
            Refusal::Unexpected => f.write_str("no restart step expects this report now"),
            Refusal::UnknownChild(pid) => write!(f, "pid {pid} is not the current successor"),
        }
    }
}

impl std::error::Error for Refusal {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Spawning {
        child: Option<u32>,
        deadline: Nanos,
    },
    Reaping {
        child: u32,
    },
    /// The deadline passed before the spawn was reported: whatever
    /// [`Restart::spawned`] reports is killed.
    Abandoned,
    HandedOff {
        child: u32,
    },
    /// `reaping`: a killed successor still to be reaped.
    Stopped {
        reaping: Option<u32>,
    },
}

/// The restart protocol machine. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Restart {
    config: RestartConfig,
    time: Timeline,
    state: State,
    attempts: u64,
    /// The carrier stays after a hand-off ([`Restart::supervised`]).
    stays: bool,
    /// A drain signal came ([`Restart::drain_signal`]).
    drain_signalled: bool,
    actions: VecDeque<RestartAction>,
}

impl Restart {
    /// A machine in [`RestartPhase::Running`]; `now` is the origin of its time.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::{Restart, RestartConfig};
    /// let restart = Restart::new(RestartConfig::default(), Instant::now());
    /// assert_eq!(restart.attempts(), 0);
    /// ```
    #[must_use]
    pub fn new(config: RestartConfig, now: Instant) -> Restart {
        Restart {
            config,
            time: Timeline::new(now),
            state: State::Running,
            attempts: 0,
            stays: false,
            drain_signalled: false,
            actions: VecDeque::new(),
        }
    }

    /// A machine for a carrier that stays after a hand-off: a supervisor,
    /// whose successor is its next generation. The same policy as
    /// [`new`](Self::new)'s, except that [`child_ready`](Self::child_ready)
    /// hands off and returns to [`RestartPhase::Running`] (never
    /// [`RestartPhase::HandedOff`]): the successor is then the carrier's
    /// to watch, not this machine's, and the next restart may begin.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::supervised(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// restart.spawned(7, now).unwrap();
    /// let _ = restart.poll_action();
    /// restart.child_ready(7, now).unwrap();
    /// assert_eq!(restart.poll_action(), Some(RestartAction::HandOff { child: 7 }));
    /// assert_eq!(restart.phase(), RestartPhase::Running);
    /// restart.request(now).unwrap();
    /// assert_eq!(restart.poll_action(), Some(RestartAction::Spawn { attempt: 2 }));
    /// ```
    #[must_use]
    pub fn supervised(config: RestartConfig, now: Instant) -> Restart {
        Restart {
            stays: true,
            ..Restart::new(config, now)
        }
    }

    /// A restart was asked for (`SIGHUP`, or a handle). Starts one if none is
    /// in flight; otherwise refused, changing nothing.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::{Restart, RestartAction, RestartConfig};
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// assert_eq!(restart.poll_action(), Some(RestartAction::Spawn { attempt: 1 }));
    /// ```
    pub fn request(&mut self, now: Instant) -> Result<(), Refusal> {
        let now = self.enter(now);
        match self.state {
            State::Running => {
                self.attempts += 1;
                let deadline = now.after(self.config.ready_timeout);
                self.state = State::Spawning {
                    child: None,
                    deadline,
                };
                self.actions.push_back(RestartAction::Spawn {
                    attempt: self.attempts,
                });
                Ok(())
            }
            State::Spawning { .. } | State::Reaping { .. } | State::Abandoned => {
                Err(Refusal::InProgress)
            }
            State::HandedOff { .. } | State::Stopped { .. } => Err(Refusal::Stopping),
        }
    }

    /// The successor asked for by [`RestartAction::Spawn`] was started as
    /// process `child`. If the spawn is no longer wanted (its deadline passed,
    /// or the server is stopping), it is killed at once.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::{Restart, RestartConfig, Refusal};
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// assert_eq!(restart.spawned(9, now), Err(Refusal::Unexpected));
    /// ```
    pub fn spawned(&mut self, child: u32, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        match self.state {
            State::Spawning {
                child: None,
                deadline,
            } => {
                self.state = State::Spawning {
                    child: Some(child),
                    deadline,
                };
                Ok(())
            }
            State::Abandoned => {
                self.state = State::Reaping { child };
                self.actions.push_back(RestartAction::Kill { child });
                Ok(())
            }
            State::Stopped { reaping: None } => {
                self.state = State::Stopped {
                    reaping: Some(child),
                };
                self.actions.push_back(RestartAction::Kill { child });
                Ok(())
            }
            _ => Err(Refusal::Unexpected),
        }
    }

    /// The successor could not be started: roll back.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// let _ = restart.poll_action();
    /// restart.spawn_failed(now).unwrap();
    /// assert_eq!(restart.poll_action(), Some(RestartAction::Failed(RestartFailure::SpawnFailed)));
    /// assert_eq!(restart.phase(), RestartPhase::Running);
    /// ```
    pub fn spawn_failed(&mut self, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        match self.state {
            State::Spawning { child: None, .. } => {
                self.state = State::Running;
                self.actions
                    .push_back(RestartAction::Failed(RestartFailure::SpawnFailed));
                Ok(())
            }
            // The failure was already reported (deadline, or stopping).
            State::Abandoned => {
                self.state = State::Running;
                Ok(())
            }
            State::Stopped { reaping: None } => Ok(()),
            _ => Err(Refusal::Unexpected),
        }
    }

    /// The successor reported ready on its private channel: hand off.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// restart.spawned(7, now).unwrap();
    /// assert_eq!(restart.child_ready(8, now), Err(Refusal::UnknownChild(8)));
    /// restart.child_ready(7, now).unwrap();
    /// assert_eq!(restart.phase(), RestartPhase::HandedOff);
    /// ```
    pub fn child_ready(&mut self, child: u32, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        match self.state {
            State::Spawning { child: Some(c), .. } if c == child => {
                self.state = if self.stays {
                    State::Running
                } else {
                    State::HandedOff { child }
                };
                self.actions.push_back(RestartAction::HandOff { child });
                Ok(())
            }
            _ => Err(Refusal::UnknownChild(child)),
        }
    }

    /// The state hand-over with the successor was aborted by the
    /// successor's doing ([`handover::Transfer`](crate::handover::Transfer)
    /// decided [`Abort`](crate::handover::Decision::Abort): a refusal, a
    /// ready without taking, a protocol error, a failed send): it is
    /// killed and the restart rolled back, as for a deadline.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::handover::AbortReason;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// restart.spawned(7, now).unwrap();
    /// let _ = restart.poll_action();
    /// restart.child_aborted(7, AbortReason::Refused, now).unwrap();
    /// assert_eq!(restart.poll_action(), Some(RestartAction::Kill { child: 7 }));
    /// assert_eq!(
    ///     restart.poll_action(),
    ///     Some(RestartAction::Failed(RestartFailure::State { child: 7, reason: AbortReason::Refused }))
    /// );
    /// assert_eq!(restart.phase(), RestartPhase::Reaping);
    /// ```
    pub fn child_aborted(
        &mut self,
        child: u32,
        reason: AbortReason,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.enter(now);
        match self.state {
            State::Spawning { child: Some(c), .. } if c == child => {
                self.state = State::Reaping { child };
                self.actions.push_back(RestartAction::Kill { child });
                self.actions
                    .push_back(RestartAction::Failed(RestartFailure::State {
                        child,
                        reason,
                    }));
                Ok(())
            }
            _ => Err(Refusal::UnknownChild(child)),
        }
    }

    /// A successor exited and was reaped. Before it was ready, that is a
    /// failed restart (rolled back); after a kill, the rollback completes.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// restart.spawned(7, now).unwrap();
    /// let _ = restart.poll_action();
    /// restart.child_exited(7, now).unwrap();
    /// assert_eq!(
    ///     restart.poll_action(),
    ///     Some(RestartAction::Failed(RestartFailure::ChildExited { child: 7 }))
    /// );
    /// assert_eq!(restart.phase(), RestartPhase::Running);
    /// ```
    pub fn child_exited(&mut self, child: u32, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        match self.state {
            State::Spawning { child: Some(c), .. } if c == child => {
                self.state = State::Running;
                self.actions
                    .push_back(RestartAction::Failed(RestartFailure::ChildExited { child }));
                Ok(())
            }
            State::Reaping { child: c } if c == child => {
                self.state = State::Running;
                Ok(())
            }
            State::Stopped { reaping: Some(c) } if c == child => {
                self.state = State::Stopped { reaping: None };
                Ok(())
            }
            // The successor we handed off to is not ours to watch any more.
            State::HandedOff { child: c } if c == child => Ok(()),
            _ => Err(Refusal::UnknownChild(child)),
        }
    }

    /// The server is stopping (a drain for exit began): no more restarts; a
    /// successor still starting is killed.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.stopping(now);
    /// assert_eq!(restart.request(now), Err(Refusal::Stopping));
    /// ```
    pub fn stopping(&mut self, now: Instant) {
        self.enter(now);
        match self.state {
            State::Running => self.state = State::Stopped { reaping: None },
            State::Spawning { child, .. } => {
                self.state = State::Stopped { reaping: child };
                if let Some(child) = child {
                    self.actions.push_back(RestartAction::Kill { child });
                }
                self.actions
                    .push_back(RestartAction::Failed(RestartFailure::Stopping));
            }
            State::Reaping { child } => {
                self.state = State::Stopped {
                    reaping: Some(child),
                }
            }
            State::Abandoned => self.state = State::Stopped { reaping: None },
            State::HandedOff { .. } | State::Stopped { .. } => {}
        }
    }

    /// The server this machine restarts entered `phase` (its driver reports
    /// each change): the server's side of the protocol, as a typed input,
    /// so that however a stop begins — through the lifecycle, the server's
    /// own handle, a signal — the restart policy hears it.
    ///
    /// - `Serving`: nothing.
    /// - `LameDuck`, `Draining`, `Closed`: the server began stopping: as
    ///   [`stopping`](Self::stopping) (no more restarts; a successor still
    ///   starting is killed).
    /// - `HandedOff`: the hand-off itself is this machine's
    ///   decision ([`child_ready`](Self::child_ready), or
    ///   [`handed_off_to`](Self::handed_off_to)), taken before the server
    ///   hands off; once recorded, the phase changes nothing. A hand-off
    ///   this machine did not record ends its restarts, as a stop does.
    ///
    /// Every later phase after a hand-off changes nothing either: the
    /// drain that follows a hand-off is not a stop.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::Phase;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// restart.spawned(7, now).unwrap();
    /// let _ = restart.poll_action();
    /// restart.server_phase(Phase::Draining, now); // e.g. `Handle::shutdown`
    /// assert_eq!(restart.poll_action(), Some(RestartAction::Kill { child: 7 }));
    /// assert_eq!(restart.poll_action(), Some(RestartAction::Failed(RestartFailure::Stopping)));
    /// assert_eq!(restart.request(now), Err(Refusal::Stopping));
    /// ```
    pub fn server_phase(&mut self, phase: Phase, now: Instant) {
        match phase {
            Phase::Serving => {
                self.enter(now);
            }
            Phase::HandedOff | Phase::LameDuck | Phase::Draining | Phase::Closed => {
                self.stopping(now);
            }
        }
    }

    /// A drain signal arrived (`SIGTERM`, `SIGINT`): whether it repeats
    /// one — then a carrier that closes on repeats closes now — or is the
    /// first, which drains. A repeat: the server stops already (a stop this
    /// machine heard through [`server_phase`](Self::server_phase), however
    /// it began: a signal, a call, another thread), or a drain signal came
    /// before — which matters after a hand-off, where the server drains
    /// without a stop of its own (systemd's stop signals every process of
    /// the unit: the old process's first signal must not cut its
    /// requests).
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::Phase;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.handed_off_to(31, now).unwrap();
    /// restart.server_phase(Phase::HandedOff, now); // the hand-off's own drain
    /// assert!(!restart.drain_signal(), "the first signal after a hand-off drains");
    /// assert!(restart.drain_signal(), "the second closes");
    ///
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.server_phase(Phase::Draining, now); // e.g. `Handle::shutdown`
    /// assert!(restart.drain_signal(), "the server stops already");
    /// ```
    pub fn drain_signal(&mut self) -> bool {
        let repeat = self.drain_signalled || self.phase() == RestartPhase::Stopped;
        self.drain_signalled = true;
        repeat
    }

    /// The carrier was told to hand the server off to `successor`, a
    /// process this machine did not start (a supervisor's next generation,
    /// whose readiness the supervisor awaited). Accepted only while
    /// [`RestartPhase::Running`]: then the phase is
    /// [`RestartPhase::HandedOff`], with `successor` as its
    /// [`child`](Self::child), and the carrier hands off. Refused (nothing
    /// changes, the carrier does not hand off) once stopping or handed off
    /// ([`Refusal::Stopping`]), or while a restart of this machine's
    /// own is in flight ([`Refusal::InProgress`]).
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.handed_off_to(31, now).unwrap();
    /// assert_eq!(restart.phase(), RestartPhase::HandedOff);
    /// assert_eq!(restart.child(), Some(31));
    /// assert_eq!(restart.poll_action(), None, "the carrier hands off already");
    /// assert_eq!(restart.handed_off_to(32, now), Err(Refusal::Stopping));
    /// ```
    pub fn handed_off_to(&mut self, successor: u32, now: Instant) -> Result<(), Refusal> {
        self.enter(now);
        match self.state {
            State::Running => {
                self.state = State::HandedOff { child: successor };
                Ok(())
            }
            State::Spawning { .. } | State::Reaping { .. } | State::Abandoned => {
                Err(Refusal::InProgress)
            }
            State::HandedOff { .. } | State::Stopped { .. } => Err(Refusal::Stopping),
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed: the
    /// successor's readiness deadline while spawning.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lameduck_core::restart::*;
    /// let t0 = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), t0);
    /// assert_eq!(restart.poll_timeout(), None);
    /// restart.request(t0).unwrap();
    /// assert_eq!(restart.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Spawning { deadline, .. } => self.time.instant(deadline),
            _ => None,
        }
    }

    /// Handles the readiness deadline if it has passed: the successor is
    /// killed and the restart rolled back. Idempotent.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lameduck_core::restart::*;
    /// let t0 = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), t0);
    /// restart.request(t0).unwrap();
    /// restart.spawned(7, t0).unwrap();
    /// let _ = restart.poll_action();
    /// restart.handle_timeout(t0 + Duration::from_secs(60));
    /// assert_eq!(restart.poll_action(), Some(RestartAction::Kill { child: 7 }));
    /// assert_eq!(restart.phase(), RestartPhase::Reaping);
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        self.enter(now);
    }

    /// The next action to carry out; drain until `None` after every input.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::{Restart, RestartConfig};
    /// let mut restart = Restart::new(RestartConfig::default(), Instant::now());
    /// assert_eq!(restart.poll_action(), None);
    /// ```
    #[must_use]
    pub fn poll_action(&mut self) -> Option<RestartAction> {
        self.actions.pop_front()
    }

    /// The phase.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// assert_eq!(restart.phase(), RestartPhase::Spawning);
    /// ```
    #[must_use]
    pub fn phase(&self) -> RestartPhase {
        match self.state {
            State::Running => RestartPhase::Running,
            State::Spawning { .. } => RestartPhase::Spawning,
            State::Reaping { .. } | State::Abandoned => RestartPhase::Reaping,
            State::HandedOff { .. } => RestartPhase::HandedOff,
            State::Stopped { .. } => RestartPhase::Stopped,
        }
    }

    /// Restarts started by this process so far.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// assert_eq!(restart.attempts(), 1);
    /// ```
    #[must_use]
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// The successor being started, killed or handed off to, if any.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::restart::*;
    /// let now = Instant::now();
    /// let mut restart = Restart::new(RestartConfig::default(), now);
    /// restart.request(now).unwrap();
    /// restart.spawned(5, now).unwrap();
    /// assert_eq!(restart.child(), Some(5));
    /// ```
    #[must_use]
    pub fn child(&self) -> Option<u32> {
        match self.state {
            State::Spawning { child, .. } | State::Stopped { reaping: child } => child,
            State::Reaping { child } | State::HandedOff { child } => Some(child),
            State::Running | State::Abandoned => None,
        }
    }

    fn enter(&mut self, now: Instant) -> Nanos {
        let now = self.time.advance(now);
        if let State::Spawning { child, deadline } = self.state
            && deadline <= now
        {
            match child {
                Some(child) => {
                    self.actions.push_back(RestartAction::Kill { child });
                    self.state = State::Reaping { child };
                }
                None => self.state = State::Abandoned,
            }
            self.actions
                .push_back(RestartAction::Failed(RestartFailure::NotReady { child }));
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn setup() -> (Instant, Restart) {
        let t0 = Instant::now();
        (
            t0,
            Restart::new(
                RestartConfig {
                    ready_timeout: Duration::from_secs(10),
                },
                t0,
            ),
        )
    }

    fn drain(r: &mut Restart) -> Vec<RestartAction> {
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    #[test]
    fn a_burst_of_requests_gives_one_successor() {
        let (t0, mut r) = setup();
        for _ in 0..100 {
            let _ = r.request(t0);
        }
        assert_eq!(drain(&mut r), vec![RestartAction::Spawn { attempt: 1 }]);
    }

    #[test]
    fn not_ready_by_the_deadline_kills_reaps_and_rolls_back() {
        let (t0, mut r) = setup();
        r.request(t0).unwrap();
        r.spawned(11, t0).unwrap();
        drain(&mut r);
        r.handle_timeout(t0 + Duration::from_millis(9_999));
        assert!(drain(&mut r).is_empty());
        r.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(
            drain(&mut r),
            vec![
                RestartAction::Kill { child: 11 },
                RestartAction::Failed(RestartFailure::NotReady { child: Some(11) })
            ]
        );
        assert_eq!(
            r.request(t0),
            Err(Refusal::InProgress),
            "not until it is reaped"
        );
        assert_eq!(
            r.child_ready(11, t0 + Duration::from_secs(11)),
            Err(Refusal::UnknownChild(11))
        );
        r.child_exited(11, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(r.phase(), RestartPhase::Running);
        r.request(t0 + Duration::from_secs(12)).unwrap();
        assert_eq!(drain(&mut r), vec![RestartAction::Spawn { attempt: 2 }]);
    }

    #[test]
    fn a_spawn_reported_after_its_deadline_is_killed() {
        let (t0, mut r) = setup();
        r.request(t0).unwrap();
        drain(&mut r);
        r.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(
            drain(&mut r),
            vec![RestartAction::Failed(RestartFailure::NotReady {
                child: None
            })]
        );
        assert_eq!(
            r.request(t0 + Duration::from_secs(11)),
            Err(Refusal::InProgress)
        );
        r.spawned(12, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(drain(&mut r), vec![RestartAction::Kill { child: 12 }]);
        r.child_exited(12, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(r.phase(), RestartPhase::Running);
    }

    #[test]
    fn stopping_kills_a_starting_successor_and_refuses_restarts() {
        let (t0, mut r) = setup();
        r.request(t0).unwrap();
        r.spawned(13, t0).unwrap();
        drain(&mut r);
        r.stopping(t0);
        assert_eq!(
            drain(&mut r),
            vec![
                RestartAction::Kill { child: 13 },
                RestartAction::Failed(RestartFailure::Stopping)
            ]
        );
        assert_eq!(r.request(t0), Err(Refusal::Stopping));
        r.child_exited(13, t0).unwrap();
    }

    #[test]
    fn after_hand_off_no_restart() {
        let (t0, mut r) = setup();
        r.request(t0).unwrap();
        r.spawned(14, t0).unwrap();
        r.child_ready(14, t0).unwrap();
        assert_eq!(r.request(t0), Err(Refusal::Stopping));
        assert_eq!(r.poll_timeout(), None);
        r.child_exited(14, t0).unwrap();
        assert_eq!(r.phase(), RestartPhase::HandedOff);
    }

    /// Every phase of a stop, told while a successor is starting: it is
    /// killed, the restart fails as "stopping", and no restart follows —
    /// the same as `stopping`, whoever began the stop.
    #[test]
    fn a_stopping_server_phase_calls_off_the_restart_in_flight() {
        for phase in [Phase::LameDuck, Phase::Draining, Phase::Closed] {
            let (t0, mut r) = setup();
            r.request(t0).unwrap();
            r.spawned(15, t0).unwrap();
            drain(&mut r);
            let t1 = t0 + Duration::from_secs(3);
            r.server_phase(phase, t1);
            assert_eq!(
                drain(&mut r),
                vec![
                    RestartAction::Kill { child: 15 },
                    RestartAction::Failed(RestartFailure::Stopping)
                ],
                "{phase:?}"
            );
            assert_eq!(r.phase(), RestartPhase::Stopped);
            assert_eq!(
                r.poll_timeout(),
                None,
                "no readiness deadline once stopping"
            );
            assert_eq!(r.request(t1), Err(Refusal::Stopping));
            // Later phases of the same stop change nothing.
            r.server_phase(Phase::Closed, t1);
            assert!(drain(&mut r).is_empty());
            r.child_exited(15, t1).unwrap();
            assert_eq!(r.phase(), RestartPhase::Stopped);
            assert_eq!(r.child(), None);
        }
    }

    #[test]
    fn serving_changes_nothing_and_a_stop_while_idle_refuses_restarts() {
        let (t0, mut r) = setup();
        r.server_phase(Phase::Serving, t0);
        assert_eq!(r.phase(), RestartPhase::Running);
        r.server_phase(Phase::LameDuck, t0 + Duration::from_secs(1));
        assert!(drain(&mut r).is_empty(), "nothing in flight: nothing to do");
        assert_eq!(r.phase(), RestartPhase::Stopped);
        assert_eq!(
            r.request(t0 + Duration::from_secs(2)),
            Err(Refusal::Stopping)
        );
    }

    /// The phase is told only after the hand-off was decided (the carrier
    /// feeds `child_ready` under the server's lock, the phase after it):
    /// the drain that follows a hand-off is not a stop, and the successor
    /// stays the one handed off to.
    #[test]
    fn the_phases_after_a_hand_off_change_nothing() {
        let (t0, mut r) = setup();
        r.request(t0).unwrap();
        r.spawned(16, t0).unwrap();
        r.child_ready(16, t0 + Duration::from_millis(80)).unwrap();
        drain(&mut r);
        for phase in [Phase::HandedOff, Phase::Draining, Phase::Closed] {
            r.server_phase(phase, t0 + Duration::from_secs(1));
            assert!(drain(&mut r).is_empty(), "{phase:?}");
            assert_eq!(r.phase(), RestartPhase::HandedOff);
            assert_eq!(r.child(), Some(16));
        }
    }

    /// A hand-off no restart of this machine's asked for (a supervisor's
    /// next generation): recorded while running, refused while stopping or
    /// while a restart of its own is in flight.
    #[test]
    fn a_hand_off_to_another_successor_only_while_running() {
        let (t0, mut r) = setup();
        r.handed_off_to(40, t0).unwrap();
        assert_eq!(r.phase(), RestartPhase::HandedOff);
        assert_eq!(r.child(), Some(40));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.request(t0), Err(Refusal::Stopping));
        r.server_phase(Phase::HandedOff, t0);
        r.server_phase(Phase::Draining, t0 + Duration::from_secs(1));
        assert_eq!(r.phase(), RestartPhase::HandedOff);
        assert_eq!(r.child(), Some(40), "the drain keeps the successor");

        let (t0, mut r) = setup();
        r.server_phase(Phase::Draining, t0);
        assert_eq!(r.handed_off_to(41, t0), Err(Refusal::Stopping));
        assert_eq!(r.phase(), RestartPhase::Stopped);
        assert_eq!(r.child(), None);

        let (t0, mut r) = setup();
        r.request(t0).unwrap();
        r.spawned(17, t0).unwrap();
        drain(&mut r);
        assert_eq!(r.handed_off_to(42, t0), Err(Refusal::InProgress));
        assert_eq!(r.child(), Some(17), "its own attempt goes on");
        // Past the readiness deadline the input still runs the clock: the
        // attempt is over (killed), and the hand-off still refused.
        assert_eq!(
            r.handed_off_to(42, t0 + Duration::from_secs(10)),
            Err(Refusal::InProgress)
        );
        assert_eq!(
            drain(&mut r),
            vec![
                RestartAction::Kill { child: 17 },
                RestartAction::Failed(RestartFailure::NotReady { child: Some(17) })
            ]
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn a_supervised_machine_goes_on_after_each_hand_off() {
        let t0 = Instant::now();
        let mut r = Restart::supervised(
            RestartConfig {
                ready_timeout: Duration::from_secs(10),
            },
            t0,
        );
        for (attempt, child) in [(1, 21), (2, 22), (3, 23)] {
            r.request(t0).unwrap();
            assert_eq!(drain(&mut r), vec![RestartAction::Spawn { attempt }]);
            r.spawned(child, t0).unwrap();
            r.child_ready(child, t0).unwrap();
            assert_eq!(drain(&mut r), vec![RestartAction::HandOff { child }]);
            assert_eq!(r.phase(), RestartPhase::Running);
            assert_eq!(r.child(), None);
            assert_eq!(r.poll_timeout(), None, "no deadline once handed off");
            // The generation serving now is the supervisor's to watch.
            assert_eq!(r.child_exited(child, t0), Err(Refusal::UnknownChild(child)));
        }
        // The same policy otherwise: a stop ends restarts.
        r.stopping(t0);
        assert_eq!(r.request(t0), Err(Refusal::Stopping));
    }

    /// The first drain signal drains: it shuts the server down, whose
    /// stop this machine hears; every later one repeats.
    #[test]
    fn a_drain_signal_repeats_once_the_server_stops_or_one_came() {
        let (t0, mut restart) = setup();
        assert!(!restart.drain_signal());
        restart.server_phase(Phase::Draining, t0);
        assert!(restart.drain_signal());
        assert!(restart.drain_signal());
        // A stop begun elsewhere makes the first signal a repeat too.
        let (t0, mut restart) = setup();
        restart.server_phase(Phase::LameDuck, t0);
        assert!(restart.drain_signal());
        // A signal changes nothing else: no action, the same phase.
        let (_, mut restart) = setup();
        assert!(!restart.drain_signal());
        assert_eq!(restart.poll_action(), None);
        assert_eq!(restart.phase(), RestartPhase::Running);
    }
}
