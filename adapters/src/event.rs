//! Lifecycle events, for logs and metrics.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck_core::{CloseReason, Completion, ConnId, HookStage, ListenerId, Outcome, Phase};

/// Something that happened in a server's life, reported to the observer
/// given to [`Builder::on_event`](crate::Builder::on_event). `Display` gives
/// one line, fit for a log.
///
/// ```
/// use lameduck::Event;
/// use lameduck::core::Phase;
///
/// assert_eq!(Event::Phase(Phase::Draining).to_string(), "phase: draining");
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
}

impl Event {
    /// Whether this event is a connection closed by force, before it was
    /// done: at the shutdown deadline, by `close()`, or mid-request by a
    /// body or write timeout ([`CloseReason::is_forced`]).
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::core::{CloseReason, Config, Server};
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
    /// use lameduck::core::Phase;
    /// assert!(!Event::Phase(Phase::Closed).is_forced_close());
    /// ```
    #[must_use]
    pub fn is_forced_close(&self) -> bool {
        matches!(self, Event::ConnClosed { reason, .. } if reason.is_forced())
    }

    /// The `log` level lameduck logs this event at (target `lameduck`):
    /// phases and a graceful end are `Info`; closes the application expects
    /// (idle, timeouts — the body and write timeouts too, though forced —
    /// keep-alive off) `Debug`; closes forced by the shutdown deadline or
    /// `close()`, cut-off hooks, accept back-off, the connection limit and a
    /// forced end `Warn`; a lost listener `Error`.
    ///
    /// ```
    /// use lameduck::Event;
    /// use lameduck::core::Phase;
    /// assert_eq!(Event::Phase(Phase::Draining).level(), log::Level::Info);
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
        }
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

/// The observer: called after the driver's lock is released, so it may use
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

fn emit(observer: Option<&Observer>, event: &Event) {
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
}
