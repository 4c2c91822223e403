//! What a [`Lifecycle`] tells: its events ([`LifecycleEvent`], one log
//! line each, reported as [`Event::Lifecycle`](crate::Event::Lifecycle)),
//! how its [`run`](crate::unix::Lifecycle::run) ended ([`Ended`]), and its
//! state read at once ([`LifecycleSnapshot`]).
//!
//! [`Lifecycle`]: crate::unix::Lifecycle
//!
//! ```
//! use lameduck::unix::LifecycleEvent;
//! assert_eq!(LifecycleEvent::Problem("no pid file".into()).to_string(), "no pid file");
//! ```

use std::fmt;
use std::time::Duration;

use lameduck_core::Outcome;
use lameduck_core::restart::RestartPhase;

use crate::unix::ctl::restart_requested;
use crate::unix::error::RestartError;
use crate::unix::signals::{Signal, SignalAction, SignalName};

/// Something the [`Lifecycle`] did: reported as
/// [`Event::Lifecycle`](crate::Event::Lifecycle), logged and told to the
/// observer ([`LifecycleBuilder::on_event`]). `Display` gives one line.
///
/// [`Lifecycle`]: crate::unix::Lifecycle
/// [`LifecycleBuilder::on_event`]: crate::unix::LifecycleBuilder::on_event
///
/// ```
/// use lameduck::unix::{LifecycleEvent, Signal, SignalAction};
/// let event = LifecycleEvent::Signal {
///     signal: Signal::Hup,
///     action: SignalAction::Restart,
///     repeated: false,
///     deadline: None,
/// };
/// assert_eq!(event.to_string(), "SIGHUP: restarting");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LifecycleEvent {
    /// Serving, every accept loop running; reported to systemd (first
    /// start) or to the predecessor (a restart's successor).
    Ready {
        /// This process.
        pid: u32,
        /// Reported to a predecessor (or supervisor), not systemd.
        successor: bool,
        /// Reported to a [`Supervisor`](crate::unix::Supervisor).
        supervised: bool,
    },
    /// A signal arrived.
    Signal {
        /// Which.
        signal: Signal,
        /// What it does.
        action: SignalAction,
        /// A drain signal while already draining.
        repeated: bool,
        /// The drain's deadline, from now.
        deadline: Option<Duration>,
    },
    /// A restart began.
    RestartStarted {
        /// 1 for this process's first.
        attempt: u64,
        /// The generation the successor would be (this process's + 1):
        /// with `attempt`, unique across the server's life, whereas
        /// `attempt` alone starts again in every generation.
        generation: u64,
    },
    /// The successor was started; it has until the readiness deadline.
    SuccessorStarted {
        /// Its pid.
        pid: u32,
    },
    /// The successor is ready and serving: this process stopped accepting
    /// and drains.
    HandedOff {
        /// This process.
        pid: u32,
        /// The successor.
        successor: u32,
    },
    /// A restart was refused or rolled back.
    RestartFailed(RestartError),
    /// Something went wrong that does not stop the server (a pid file
    /// that cannot be written, a notification that cannot be sent).
    Problem(String),
    /// A restart was asked on the control socket; `joined`: one was in
    /// flight, whose outcome is the answer.
    ControlRestart {
        /// A restart was already in flight.
        joined: bool,
    },
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LifecycleEvent::Ready {
                pid,
                supervised: true,
                ..
            } => write!(f, "ready (pid {pid}); told the supervisor"),
            LifecycleEvent::Ready {
                pid,
                successor: false,
                ..
            } => write!(f, "ready (pid {pid})"),
            LifecycleEvent::Ready {
                pid,
                successor: true,
                ..
            } => write!(f, "ready (pid {pid}); told the predecessor"),
            LifecycleEvent::Signal {
                signal,
                action,
                repeated,
                deadline,
            } => {
                let name = SignalName(*signal);
                match (action, repeated) {
                    (SignalAction::Drain, false) => match deadline {
                        Some(d) => write!(
                            f,
                            "{name}: draining (deadline {:.3} s; again to close at once)",
                            d.as_secs_f64()
                        ),
                        None => write!(f, "{name}: draining (no deadline; again to close at once)"),
                    },
                    // Not "again": the drain may have begun with another
                    // signal, or with no signal at all.
                    (SignalAction::Drain, true) => {
                        write!(f, "{name} while draining: draining goes on")
                    }
                    (SignalAction::Close, true) => write!(f, "{name} while draining: closing now"),
                    (SignalAction::Close, false) => write!(f, "{name}: closing now"),
                    (SignalAction::Restart, _) => write!(f, "{name}: restarting"),
                }
            }
            LifecycleEvent::RestartStarted {
                attempt,
                generation,
            } => write!(
                f,
                "restart to generation {generation} (attempt {attempt} of this process): \
                 starting a successor"
            ),
            LifecycleEvent::SuccessorStarted { pid } => {
                write!(
                    f,
                    "restart: successor pid {pid} started; waiting until it is ready"
                )
            }
            LifecycleEvent::HandedOff { pid, successor } => {
                write!(
                    f,
                    "restart: pid {pid} handed off to pid {successor}; draining"
                )
            }
            LifecycleEvent::RestartFailed(e) => e.write_event_line(
                f,
                format_args!("still serving (pid {})", std::process::id()),
            ),
            LifecycleEvent::Problem(message) => f.write_str(message),
            LifecycleEvent::ControlRestart { joined } => f.write_str(restart_requested(*joined)),
        }
    }
}

/// How [`Lifecycle::run`](crate::unix::Lifecycle::run) ended.
///
/// ```
/// # fn demo(ended: lameduck::unix::Ended) {
/// match ended.successor {
///     Some(pid) => println!("handed off to {pid}; drained: {}", ended.outcome.is_graceful()),
///     None => println!("stopped; drained: {}", ended.outcome.is_graceful()),
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Ended {
    /// How the drain ended.
    pub outcome: Outcome,
    /// The successor this process handed off to, if it did.
    pub successor: Option<u32>,
}

/// A [`Lifecycle`]'s state, read at once ([`Lifecycle::snapshot`]).
///
/// [`Lifecycle`]: crate::unix::Lifecycle
/// [`Lifecycle::snapshot`]: crate::unix::Lifecycle::snapshot
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// # let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_stream(|c| async move { drop(c) })?;
/// let snapshot = lameduck::unix::Lifecycle::builder(handle).build().snapshot();
/// assert!(snapshot.generation >= 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifecycleSnapshot {
    /// Phase, connection counts, deadline and drain progress.
    pub server: lameduck_core::Snapshot,
    /// Where the restart protocol is.
    pub restart: RestartPhase,
    /// This process's generation: 1 for a process started by hand (or by
    /// systemd), one more for each successor started by a restart, the
    /// supervisor's count for its generations (`LAMEDUCK_GENERATION`).
    pub generation: u64,
    /// Restarts this process has started (successful or not).
    pub restarts_attempted: u64,
}
