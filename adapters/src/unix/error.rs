//! Why a restart did not happen ([`RestartError`]): the one error type of
//! both restart modes, a [`Lifecycle`](super::Lifecycle)'s and a
//! [`Supervisor`](super::Supervisor)'s.
//!
//! ```
//! use lameduck::unix::RestartError;
//! assert_eq!(RestartError::Stopping.to_string(), "the server is stopping");
//! ```

use std::fmt;

use lameduck_core::restart::{Refusal, RestartFailure};

use super::handoff::READY_FD_VAR;

/// Why a restart did not happen. After any of these the server goes on
/// serving, unchanged.
///
/// ```
/// use lameduck::unix::RestartError;
/// use lameduck::unix::RestartFailure;
///
/// let e = RestartError::Failed {
///     failure: RestartFailure::ChildExited { child: 42 },
///     detail: Some("exit status: 3".into()),
/// };
/// assert_eq!(e.to_string(), "the successor (pid 42) exited before it was ready (exit status: 3)");
/// assert_eq!(RestartError::InProgress.to_string(), "a restart is already in progress");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartError {
    /// Refused: a restart is already in flight (repeated requests are
    /// debounced).
    InProgress,
    /// Refused: the server is stopping, or already handed off.
    Stopping,
    /// Refused: this process is a generation run by a
    /// [`Supervisor`](super::Supervisor), which does the restarts (send it
    /// `SIGHUP`).
    Supervised {
        /// The supervisor's pid (this process's parent).
        supervisor: u32,
    },
    /// The restart was tried and rolled back: the successor was killed and
    /// reaped (if it was started at all).
    Failed {
        /// What went wrong.
        failure: RestartFailure,
        /// More about it: the spawn error, the exit status, ….
        detail: Option<String>,
    },
}

impl fmt::Display for RestartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartError::InProgress => f.write_str("a restart is already in progress"),
            RestartError::Stopping => f.write_str("the server is stopping"),
            RestartError::Supervised { supervisor } => write!(
                f,
                "this process is a supervised generation: restarts are its supervisor's \
                 (send SIGHUP to pid {supervisor})"
            ),
            RestartError::Failed {
                failure,
                detail: Some(detail),
            } => write!(f, "{failure} ({detail})"),
            RestartError::Failed {
                failure,
                detail: None,
            } => write!(f, "{failure}"),
        }
    }
}

impl std::error::Error for RestartError {}

impl RestartError {
    /// A request the core's restart machine refused: one in flight, or
    /// none while stopping (its other errors are about reports, not
    /// requests).
    pub(crate) fn refused(e: &Refusal) -> RestartError {
        match e {
            Refusal::InProgress => RestartError::InProgress,
            _ => RestartError::Stopping,
        }
    }

    /// An event's one line for this error, the same in both restart
    /// modes: `restart refused: …`, `restart failed: …; <goes_on>` (what
    /// serves on), or `restart abandoned: the server is stopping`.
    pub(crate) fn write_event_line(
        &self,
        f: &mut fmt::Formatter<'_>,
        goes_on: fmt::Arguments<'_>,
    ) -> fmt::Result {
        match self {
            RestartError::Failed {
                failure: RestartFailure::Stopping,
                ..
            } => f.write_str("restart abandoned: the server is stopping"),
            RestartError::Failed { .. } => write!(f, "restart failed: {self}; {goes_on}"),
            _ => write!(f, "restart refused: {self}"),
        }
    }

    /// What a restart whose new process was not ready in time says beyond
    /// [`RestartFailure::NotReady`].
    pub(crate) fn not_ready_detail() -> String {
        format!("no READY on {READY_FD_VAR} within the readiness deadline")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unix::{LifecycleEvent, SupervisorEvent};

    /// Both restart modes report a restart's end in the same words; only
    /// what serves on after a failure differs.
    #[test]
    fn both_modes_say_the_same() {
        let lines = |e: RestartError| {
            (
                LifecycleEvent::RestartFailed(e.clone()).to_string(),
                SupervisorEvent::RestartFailed(e).to_string(),
            )
        };
        let abandoned = RestartError::Failed {
            failure: RestartFailure::Stopping,
            detail: None,
        };
        let (lifecycle, supervisor) = lines(abandoned);
        assert_eq!(lifecycle, "restart abandoned: the server is stopping");
        assert_eq!(supervisor, lifecycle);
        let (lifecycle, supervisor) = lines(RestartError::InProgress);
        assert_eq!(
            lifecycle,
            "restart refused: a restart is already in progress"
        );
        assert_eq!(supervisor, lifecycle);
        let failed = RestartError::Failed {
            failure: RestartFailure::ChildExited { child: 42 },
            detail: Some("exit status: 3".into()),
        };
        let (lifecycle, supervisor) = lines(failed);
        let failed = "restart failed: the successor (pid 42) exited before it was ready \
                      (exit status: 3); ";
        assert_eq!(
            lifecycle,
            format!("{failed}still serving (pid {})", std::process::id())
        );
        assert_eq!(
            supervisor,
            format!("{failed}the serving generation goes on")
        );
    }
}
