//! What a [`Supervisor`](super::Supervisor) reports: [`SupervisorEvent`],
//! one line each, as [`Event::Supervisor`](crate::Event::Supervisor):
//! logged, and told to the observer set with
//! [`Supervisor::on_event`](super::Supervisor::on_event).
//!
//! ```
//! use lameduck::unix::SupervisorEvent;
//! let event = SupervisorEvent::Killed { pid: 42 };
//! assert_eq!(event.to_string(), "stop deadline passed: killed generation pid 42");
//! ```

use std::fmt;
use std::process::ExitStatus;

use crate::unix::ctl::restart_requested;
use crate::unix::error::RestartError;
use crate::unix::signals::{Signal, SignalAction, SignalName};

/// Something the [`Supervisor`](super::Supervisor) did: reported as
/// [`Event::Supervisor`](crate::Event::Supervisor), logged and told to the
/// observer ([`Supervisor::on_event`](super::Supervisor::on_event)).
/// `Display` gives one line.
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
    /// The [stop deadline](super::Supervisor::stop_timeout) passed: a generation
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
            SupervisorEvent::ControlRestart { joined } => f.write_str(restart_requested(*joined)),
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
            SupervisorEvent::RestartFailed(e) => {
                e.write_event_line(f, format_args!("the serving generation goes on"))
            }
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
