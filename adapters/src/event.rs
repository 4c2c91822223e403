//! Events, for logs and metrics: the one [`Event`] type of everything
//! lameduck reports (a server's, a lifecycle's, a supervisor's), the one
//! way each goes ([`emit`]: logged, then observed), and a server on
//! several threads reported as one ([`Sink`], [`Group`]).
//!
//! The design, decided once for all three sources: the server's variants
//! are flat, as they are the events of every platform; a lifecycle's and
//! a supervisor's come nested, one variant each (`Event::Lifecycle`,
//! `Event::Supervisor`), because the two share names of different meaning
//! (each has a `Ready`, a `HandedOff`, a `Signal`: a generation's and the
//! supervisor's) and both are Unix only. One `Display` (the log line), one
//! [`Event::level`], one logging path (target `lameduck`, from this
//! module) and one observer type ([`Observer`]) for all three; the nested
//! types keep their own lines next to their variants' docs.
//!
//! ```
//! use lameduck::Event;
//! use lameduck::unix::SupervisorEvent;
//! let event = Event::Supervisor(SupervisorEvent::Killed { pid: 42 });
//! assert_eq!(event.to_string(), "supervisor: stop deadline passed: killed generation pid 42");
//! assert_eq!(event.level(), log::Level::Warn);
//! ```

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck_core::{CloseReason, Completion, ConnId, HookStage, ListenerId, Outcome, Phase};

#[cfg(unix)]
use crate::unix::{LifecycleEvent, RestartError, SupervisorEvent};

/// Something that happened: in a server's life (its phases, forced
/// closes, accept trouble, its end), in its
/// [`Lifecycle`](crate::unix::Lifecycle)'s ([`Event::Lifecycle`]: signals,
/// readiness, restarts) or in a [`Supervisor`](crate::unix::Supervisor)'s
/// ([`Event::Supervisor`]: generations started, handed off, exited,
/// killed). `Display` gives one line, fit for a log (a supervisor's
/// begins with `supervisor: `).
///
/// Every event goes one way: logged through the `log` facade (target
/// `lameduck`, at [`level`](Event::level), its `Display` the line), then
/// told to the observer, if one was given. The observer is of one type,
/// `Fn(&Event) + Send + Sync + 'static`, taken alike by
/// [`Builder::on_event`](crate::Builder::on_event),
/// [`LifecycleBuilder::on_event`](crate::unix::LifecycleBuilder::on_event)
/// and [`Supervisor::on_event`](crate::unix::Supervisor::on_event): one
/// function may observe all three.
///
/// ```
/// use lameduck::Event;
/// use lameduck::Phase;
/// use lameduck::unix::{LifecycleEvent, SupervisorEvent};
///
/// // One observer for the server, its lifecycle and a supervisor.
/// fn observe(event: &Event) {
///     match event {
///         Event::Supervisor(SupervisorEvent::Killed { pid }) => eprintln!("killed {pid}"),
///         Event::Lifecycle(LifecycleEvent::HandedOff { successor, .. }) => {
///             eprintln!("{successor} serves now")
///         }
///         _ => eprintln!("{event}"),
///     }
/// }
/// # fn main() -> std::io::Result<()> {
/// assert_eq!(Event::Phase(Phase::Draining).to_string(), "phase: draining");
/// let handle = lameduck::Builder::new()
///     .on_event(observe)
///     .bind("127.0.0.1:0")?
///     .serve_stream(|conn| async move { drop(conn) })?;
/// let lifecycle = lameduck::unix::Lifecycle::builder(handle).on_event(observe);
/// let supervisor = lameduck::unix::Supervisor::new().on_event(observe);
/// # let _ = (lifecycle, supervisor); Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The server entered a phase.
    Phase(Phase),
    /// The core closed a connection (whatever the reason; a connection
    /// that ends on its own is not reported).
    ConnClosed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// An accept failed. With `retry_in` the listener backs off and retries
    /// (Go: 5 ms doubling to 1 s, e.g. on `EMFILE`); without, the listener
    /// is lost.
    AcceptError {
        /// The listener.
        listener: ListenerId,
        /// The error.
        error: io::Error,
        /// When it retries; `None`: it stopped.
        retry_in: Option<Duration>,
    },
    /// `Config::max_connections` are open: accepting paused (new clients
    /// wait in the listen backlog).
    AcceptPaused,
    /// Below the connection limit again: accepting resumed.
    AcceptResumed,
    /// Hooks of this stage were still running when the core stopped waiting
    /// (the shutdown deadline, or `close()`): they were dropped.
    HooksCutOff(HookStage),
    /// The server is done; how it ended.
    Done(Outcome),
    /// A [`Lifecycle`](crate::unix::Lifecycle)'s event: a signal,
    /// readiness, a restart's steps.
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::unix::LifecycleEvent;
    /// let event = Event::Lifecycle(LifecycleEvent::SuccessorStarted { pid: 42 });
    /// assert_eq!(event.to_string(), "restart: successor pid 42 started; waiting until it is ready");
    /// assert_eq!(event.level(), log::Level::Info);
    /// ```
    #[cfg(unix)]
    Lifecycle(LifecycleEvent),
    /// A [`Supervisor`](crate::unix::Supervisor)'s event: its generations
    /// started, ready, exited, killed.
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::unix::SupervisorEvent;
    /// // Its lines say whose they are.
    /// let event = Event::Supervisor(SupervisorEvent::Problem("no pid file".into()));
    /// assert_eq!(event.to_string(), "supervisor: no pid file");
    /// assert_eq!(event.level(), log::Level::Warn);
    /// ```
    #[cfg(unix)]
    Supervisor(SupervisorEvent),
}

impl Event {
    /// Whether this event is a connection closed by force, before it was
    /// done: at the shutdown deadline, by `close()`, or mid-request by a
    /// body or write timeout ([`CloseReason::is_forced`]).
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck_core::Server;
    /// use lameduck::{CloseReason, Config};
    /// # let now = std::time::Instant::now();
    /// # let mut server = Server::new(Config::default(), now);
    /// # let l = server.add_listener().unwrap();
    /// # let conn = server.accept(l, now).unwrap();
    /// let cut = Event::ConnClosed { conn, reason: CloseReason::WriteTimeout };
    /// assert!(cut.is_forced_close());
    /// assert_eq!(cut.level(), log::Level::Debug, "a slow client is no news");
    /// ```
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::Phase;
    /// assert!(!Event::Phase(Phase::Closed).is_forced_close());
    /// ```
    #[must_use]
    pub fn is_forced_close(&self) -> bool {
        matches!(self, Event::ConnClosed { reason, .. } if reason.is_forced())
    }

    /// The `log` level lameduck logs this event at (target `lameduck`).
    ///
    /// A server's: phases and a graceful end are `Info`; closes the
    /// application expects (idle, timeouts — the body and write timeouts
    /// too, though forced — keep-alive off) `Debug`; closes forced by the
    /// shutdown deadline or `close()`, cut-off hooks, accept back-off, the
    /// connection limit and a forced end `Warn`; a lost listener `Error`.
    ///
    /// A lifecycle's and a supervisor's: their steps (ready, signals,
    /// restarts started, successors and generations started, hand-offs,
    /// control-socket requests, a generation's successful exit, a restart
    /// abandoned because the server stops) are `Info`; an orphan reaped
    /// `Debug`; a restart refused, a problem that does not stop the
    /// server (pid file, notification), a generation killed at the stop
    /// deadline or exiting unsuccessfully `Warn`; a restart tried and
    /// rolled back `Error`.
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::Phase;
    /// use lameduck::unix::{LifecycleEvent, RestartError, SupervisorEvent};
    /// assert_eq!(Event::Phase(Phase::Draining).level(), log::Level::Info);
    /// let refused = LifecycleEvent::RestartFailed(RestartError::InProgress);
    /// assert_eq!(Event::Lifecycle(refused).level(), log::Level::Warn);
    /// let orphan = SupervisorEvent::OrphanReaped { pid: 7, status: Default::default() };
    /// assert_eq!(Event::Supervisor(orphan).level(), log::Level::Debug);
    /// ```
    #[must_use]
    pub fn level(&self) -> log::Level {
        match self {
            Event::Phase(_) => log::Level::Info,
            Event::ConnClosed {
                reason: CloseReason::Deadline | CloseReason::ServerClosed,
                ..
            } => log::Level::Warn,
            Event::ConnClosed { .. } => log::Level::Debug,
            Event::AcceptError {
                retry_in: Some(_), ..
            } => log::Level::Warn,
            Event::AcceptError { retry_in: None, .. } => log::Level::Error,
            Event::AcceptPaused | Event::AcceptResumed | Event::HooksCutOff(_) => log::Level::Warn,
            Event::Done(outcome) if outcome.is_graceful() => log::Level::Info,
            Event::Done(_) => log::Level::Warn,
            #[cfg(unix)]
            Event::Lifecycle(event) => lifecycle_level(event),
            #[cfg(unix)]
            Event::Supervisor(event) => supervisor_level(event),
        }
    }
}

#[cfg(unix)]
fn lifecycle_level(event: &LifecycleEvent) -> log::Level {
    match event {
        LifecycleEvent::RestartFailed(e) => restart_failed_level(e),
        LifecycleEvent::Problem(_) => log::Level::Warn,
        _ => log::Level::Info,
    }
}

#[cfg(unix)]
fn supervisor_level(event: &SupervisorEvent) -> log::Level {
    match event {
        SupervisorEvent::RestartFailed(e) => restart_failed_level(e),
        SupervisorEvent::GenerationExited { status, .. } if !status.success() => log::Level::Warn,
        SupervisorEvent::Killed { .. } | SupervisorEvent::Problem(_) => log::Level::Warn,
        SupervisorEvent::OrphanReaped { .. } => log::Level::Debug,
        _ => log::Level::Info,
    }
}

/// Abandoned (the server stops, as asked): `Info`; refused: `Warn`; tried
/// and rolled back: `Error`.
#[cfg(unix)]
fn restart_failed_level(error: &RestartError) -> log::Level {
    match error {
        RestartError::Failed {
            failure: lameduck_core::restart::RestartFailure::Stopping,
            ..
        } => log::Level::Info,
        RestartError::Failed { .. } => log::Level::Error,
        _ => log::Level::Warn,
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Serving => "serving",
        Phase::LameDuck => "lame duck",
        Phase::HandedOff => "handed off",
        Phase::Draining => "draining",
        Phase::Closed => "closed",
    }
}

fn reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Drain => "idle at drain",
        CloseReason::KeepAliveOff => "response done, keep-alive off",
        CloseReason::NewConnGrace => "no request within the new-connection grace",
        CloseReason::IdleTimeout => "idle timeout",
        CloseReason::HeaderTimeout => "request header timeout",
        CloseReason::BodyTimeout => "request body timeout",
        CloseReason::WriteTimeout => "write timeout (the client stopped reading)",
        CloseReason::Deadline => "forced at the shutdown deadline",
        CloseReason::ServerClosed => "forced by close",
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Phase(phase) => write!(f, "phase: {}", phase_name(*phase)),
            Event::ConnClosed { conn, reason } => {
                write!(f, "closed {conn}: {}", reason_name(*reason))
            }
            Event::AcceptError {
                listener,
                error,
                retry_in: Some(delay),
            } => write!(
                f,
                "accept on {listener} failed: {error}; retrying in {} ms",
                delay.as_millis()
            ),
            Event::AcceptError {
                listener, error, ..
            } => write!(f, "accept on {listener} failed: {error}; listener stopped"),
            Event::AcceptPaused => f.write_str("at the connection limit: accepting paused"),
            Event::AcceptResumed => f.write_str("below the connection limit: accepting resumed"),
            Event::HooksCutOff(stage) => write!(f, "{stage:?} hooks cut off"),
            #[cfg(unix)]
            Event::Lifecycle(event) => fmt::Display::fmt(event, f),
            #[cfg(unix)]
            // A supervisor's lines say so: its `Problem`s and a lifecycle's
            // read alike otherwise, in one log.
            Event::Supervisor(event) => write!(f, "supervisor: {event}"),
            Event::Done(outcome) => {
                let how = match outcome.completion {
                    Completion::Drained => "drained",
                    Completion::DeadlineExpired => "deadline expired",
                    Completion::Closed => "closed",
                };
                write!(
                    f,
                    "done: {how}, forced={}, hooks_cut_off={}, hijacked_open={}",
                    outcome.forced, outcome.hooks_cut_off, outcome.hijacked_open
                )
            }
        }
    }
}

/// The observer, whoever reports to it (a driver, a lifecycle, a
/// supervisor): a driver calls it after its lock is released, so it may use
/// the [`Handle`](crate::Handle).
pub(crate) type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Where a driver's events go: logged (the `log` facade, target
/// `lameduck`) and told to the observer. A server on several threads
/// ([`Builder::threads`](crate::Builder::threads)) is one server to its
/// observer and its log: each thread's driver reports through the
/// [`Group`], which reports a phase when the server as a whole enters it
/// (the least advanced thread's, as [`Snapshot::merge`] reads it) and
/// one [`Event::Done`] when every thread is done, with the outcomes
/// merged. Other events pass straight through: connection ids are per
/// thread.
///
/// [`Snapshot::merge`]: lameduck_core::Snapshot::merge
#[derive(Clone)]
pub(crate) enum Sink {
    /// The one driver of a server.
    Server(Option<Observer>),
    /// Thread `index` of a server on several.
    Thread { group: Arc<Group>, index: usize },
}

impl Sink {
    /// Whether an event of `level` would be seen at all: collected only
    /// then.
    pub(crate) fn wants(&self, level: log::Level) -> bool {
        let observed = match self {
            Sink::Server(observer) => observer.is_some(),
            Sink::Thread { group, .. } => group.observer.is_some(),
        };
        // Phases and the end are always collected for a group: it must
        // see every thread's to report the server's.
        observed
            || matches!(self, Sink::Thread { .. })
            || log::log_enabled!(target: "lameduck", level)
    }

    /// The application's observer, if any.
    pub(crate) fn observer(&self) -> Option<Observer> {
        match self {
            Sink::Server(observer) => observer.clone(),
            Sink::Thread { group, .. } => group.observer.clone(),
        }
    }

    /// Reports `event` (never under a driver's lock).
    pub(crate) fn observe(&self, event: &Event) {
        match self {
            Sink::Server(observer) => emit(observer.as_ref(), event),
            Sink::Thread { group, index } => group.observe(*index, event),
        }
    }
}

/// Reports `event` the one way every event goes: logged (target
/// `lameduck`, at its [level](Event::level), its `Display` the line), then
/// told to `observer`.
pub(crate) fn emit(observer: Option<&Observer>, event: &Event) {
    log::log!(target: "lameduck", event.level(), "{event}");
    if let Some(observer) = observer {
        observer(event);
    }
}

/// The threads of one server, reporting as one (see [`Sink`]). Its lock is
/// taken for phase changes and ends only, never per connection.
pub(crate) struct Group {
    observer: Option<Observer>,
    state: Mutex<GroupState>,
}

struct GroupState {
    /// Each thread's phase.
    phases: Vec<Phase>,
    /// The server's phase last reported.
    reported: Phase,
    /// Each thread's outcome, once done.
    outcomes: Vec<Option<Outcome>>,
}

impl Group {
    /// A group of `threads` threads, all serving.
    pub(crate) fn new(threads: usize, observer: Option<Observer>) -> Arc<Group> {
        Arc::new(Group {
            observer,
            state: Mutex::new(GroupState {
                phases: vec![Phase::Serving; threads],
                reported: Phase::Serving,
                outcomes: vec![None; threads],
            }),
        })
    }

    fn observe(&self, index: usize, event: &Event) {
        let merged = {
            let mut state = crate::sync::lock(&self.state);
            match event {
                Event::Phase(phase) => {
                    state.phases[index] = *phase;
                    let server = state.phases.iter().copied().min().unwrap_or(*phase);
                    if server == state.reported {
                        return;
                    }
                    state.reported = server;
                    Event::Phase(server)
                }
                Event::Done(outcome) => {
                    state.outcomes[index] = Some(*outcome);
                    let Some(all) = state
                        .outcomes
                        .iter()
                        .copied()
                        .collect::<Option<Vec<Outcome>>>()
                    else {
                        return;
                    };
                    let merged = all.into_iter().reduce(Outcome::merge).unwrap_or(*outcome);
                    Event::Done(merged)
                }
                _ => {
                    drop(state);
                    return emit(self.observer.as_ref(), event);
                }
            }
        };
        // Told without the lock: the observer may use the handle, which
        // may report another event through this group.
        emit(self.observer.as_ref(), &merged);
    }
}

#[cfg(all(test, feature = "smol"))]
mod tests {
    use std::sync::{Arc, Mutex};

    use lameduck_core::{Completion, Phase};

    use super::Event;

    /// A server on several threads is one server to its observer: each
    /// phase once, one end with the threads' outcomes merged.
    #[test]
    fn a_server_on_several_threads_reports_as_one() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let handle = crate::Builder::new()
            .threads(3)
            .on_event(move |event| record.lock().unwrap().push(event.to_string()))
            .bind("127.0.0.1:0")
            .unwrap()
            .serve_stream(|conn| async move { drop(conn) })
            .unwrap();
        handle.shutdown(None);
        let outcome = futures_lite::future::block_on(handle.finished()).unwrap();
        assert_eq!(outcome.completion, Completion::Drained);
        let seen = seen.lock().unwrap().clone();
        let done = Event::Done(outcome).to_string();
        assert_eq!(
            seen,
            [
                Event::Phase(Phase::Draining).to_string(),
                Event::Phase(Phase::Closed).to_string(),
                done,
            ],
            "one server's events"
        );
    }

    /// Every `log` record of target `lameduck`: its level and line.
    #[cfg(unix)]
    struct Capture(Mutex<Vec<(log::Level, String)>>);

    #[cfg(unix)]
    impl log::Log for Capture {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.target() == "lameduck"
        }

        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                let line = record.args().to_string();
                self.0.lock().unwrap().push((record.level(), line));
            }
        }

        fn flush(&self) {}
    }

    /// A server's, a lifecycle's and a supervisor's events go the same
    /// way: to one observer (the same closure, given to all three), and
    /// to the log, each at its level with its `Display` as the line.
    #[cfg(unix)]
    #[test]
    fn server_lifecycle_and_supervisor_events_are_observed_and_logged_alike() {
        use crate::unix::SupervisorEvent;
        use crate::unix::{Lifecycle, LifecycleEvent, RestartError, SignalConfig, Supervisor};

        static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));
        log::set_logger(&CAPTURE).expect("the only logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);

        let seen = Arc::new(Mutex::new(Vec::new()));
        let observer = {
            let seen = seen.clone();
            move |event: &Event| {
                seen.lock()
                    .unwrap()
                    .push((event.level(), event.to_string()))
            }
        };
        let handle = crate::Builder::new()
            .on_event(observer.clone())
            .bind("127.0.0.1:0")
            .unwrap()
            .serve_stream(|conn| async move { drop(conn) })
            .unwrap();
        let lifecycle = Lifecycle::builder(handle.clone())
            .signals(SignalConfig::none())
            .notify(false)
            .on_event(observer.clone())
            .build();
        let supervisor = Supervisor::new().on_event(observer);

        // The server's: its phases and end.
        handle.shutdown(None);
        futures_lite::future::block_on(handle.finished()).unwrap();
        // The lifecycle's: a restart refused, the server having stopped.
        let refused = futures_lite::future::block_on(lifecycle.restart());
        assert_eq!(refused, Err(RestartError::Stopping));
        // The supervisor's, reported the way its run loop reports them.
        supervisor.report(SupervisorEvent::Killed { pid: 42 });

        let server = Event::Phase(Phase::Closed);
        let restart = Event::Lifecycle(LifecycleEvent::RestartFailed(RestartError::Stopping));
        let supervised = Event::Supervisor(SupervisorEvent::Killed { pid: 42 });
        let want = [
            (log::Level::Info, server.to_string()),
            (log::Level::Warn, restart.to_string()),
            (log::Level::Warn, supervised.to_string()),
        ];
        assert_eq!(want[0].1, "phase: closed");
        assert_eq!(want[1].1, "restart refused: the server is stopping");
        assert_eq!(
            want[2].1,
            "supervisor: stop deadline passed: killed generation pid 42"
        );
        // A supervisor's problem and a lifecycle's are told apart in the log.
        let problem = || "the pid file cannot be written".to_string();
        assert_ne!(
            Event::Supervisor(SupervisorEvent::Problem(problem())).to_string(),
            Event::Lifecycle(LifecycleEvent::Problem(problem())).to_string()
        );
        let seen = seen.lock().unwrap().clone();
        // Other tests log through the same logger: only these are
        // certainly this test's.
        let logged = CAPTURE.0.lock().unwrap().clone();
        for line in &want {
            assert!(seen.contains(line), "observed {line:?}: {seen:?}");
            assert!(logged.contains(line), "logged {line:?}: {logged:?}");
        }
        // In the order they happened, through the one observer.
        let at = |line: &(log::Level, String)| seen.iter().position(|l| l == line);
        assert!(
            at(&want[0]) < at(&want[1]) && at(&want[1]) < at(&want[2]),
            "{seen:?}"
        );
        // Every event observed at a level the logger takes was logged, at
        // that level, the same line.
        for line in seen.iter().filter(|(level, _)| *level <= log::Level::Info) {
            assert!(
                logged.contains(line),
                "{line:?} observed, not logged: {logged:?}"
            );
        }
    }
}
