//! What a service tells systemd beyond `READY=1`, as a pure machine:
//! `STATUS=` lines, `WATCHDOG=1` keep-alives and `EXTEND_TIMEOUT_USEC=`
//! while a long drain makes progress (`sd_notify(3)`).
//!
//! [`ServiceNotifier`] decides *what* to send *when*; it sends nothing.
//! The caller observes the server ([`Observed`], e.g. from
//! [`Server::snapshot`](crate::Server::snapshot)) and the restart
//! protocol, feeds it with the current time, sleeps until
//! [`poll_timeout`](ServiceNotifier::poll_timeout), calls
//! [`handle_timeout`](ServiceNotifier::handle_timeout) and sends every
//! [`Message`] from [`poll_message`](ServiceNotifier::poll_message) as one
//! datagram to `NOTIFY_SOCKET`. [`WatchdogEnv`] reads the watchdog
//! interval systemd passes (`WATCHDOG_USEC`, `WATCHDOG_PID`), strictly.
//!
//! # The rules
//!
//! - **`STATUS=`**: after every observation whose text differs from the
//!   last one sent: `serving`, `restarting` (a successor is starting, or a
//!   failed one is being reaped), `lame duck`, `draining: N connections
//!   left` (`draining` when the counts are unknown), `closed`. The caller
//!   observes at least every [`NotifierConfig::refresh`] (the machine's
//!   timeout says when), so a status lags the server by at most that.
//! - **`WATCHDOG=1`**: every half of the watchdog interval
//!   (`WATCHDOG_USEC / 2`, at least 1 ms; the first one half an interval
//!   after [`ServiceNotifier::new`], never earlier), but only if an observation
//!   arrived since the previous ping. So a process that stops feeding the
//!   machine stops pinging, and systemd's watchdog fires: an adapter that
//!   observes by querying the server from a task on the server's own
//!   executor turns a wedged executor or a stuck driver into missing
//!   pings. Pings go on while serving, in a lame-duck delay and while
//!   draining; they stop once the server is closed.
//! - **`EXTEND_TIMEOUT_USEC=`**: while draining with known counts, a check
//!   every [`NotifierConfig::extend_step`] after the drain was first
//!   observed. If fewer connections remain than at the previous check
//!   (the first compares with the count when the drain began), the
//!   machine asks systemd for `2 × step` more — capped so that the stop
//!   timeout never reaches past the drain's own deadline plus
//!   [`NotifierConfig::deadline_margin`], since the server force-closes
//!   there anyway. No progress within a step: no extension, and systemd's
//!   own `TimeoutStopSec=` applies. (systemd only lets an extension
//!   matter past the original timeout; extending earlier is harmless.)
//! - **Hand-off**: once the restart protocol reports
//!   [`RestartPhase::HandedOff`], the successor is systemd's main process
//!   and this one falls silent for good: queued messages are dropped and
//!   nothing more is produced.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use lameduck_core::Phase;
//! use lameduck_core::restart::RestartPhase;
//! use lameduck_core::systemd::{Message, NotifierConfig, Observed, ServiceNotifier};
//!
//! let t0 = Instant::now();
//! let at = |ms: u64| t0 + Duration::from_millis(ms);
//! let config = NotifierConfig { watchdog: Some(Duration::from_secs(2)), ..NotifierConfig::default() };
//! let mut notifier = ServiceNotifier::new(config, t0).unwrap();
//! let serving = Observed::phase(Phase::Serving, RestartPhase::Running);
//!
//! // The loop: observe, handle_timeout, send every message, sleep.
//! notifier.observe(serving, at(0));
//! notifier.handle_timeout(at(0));
//! assert_eq!(notifier.poll_message(), Some(Message::Status("serving".into())));
//! assert_eq!(notifier.poll_timeout(), Some(at(1_000))); // half the interval (and the refresh)
//! notifier.observe(serving, at(1_000));
//! notifier.handle_timeout(at(1_000));
//! assert_eq!(notifier.poll_message().unwrap().to_string(), "WATCHDOG=1");
//! assert_eq!(notifier.poll_message(), None); // the status is unchanged
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::restart::RestartPhase;
use crate::time::{Nanos, Timeline};
use crate::{DrainProgress, Phase, Snapshot};

/// The variables systemd sets for a service with `WatchdogSec=`, as read
/// from the environment (`None`: unset).
///
/// ```
/// use std::time::Duration;
/// use lameduck_core::systemd::WatchdogEnv;
/// let env = WatchdogEnv { usec: Some("2000000".into()), pid: Some("42".into()) };
/// assert_eq!(env.parse(42), Ok(Some(Duration::from_secs(2))));
/// assert_eq!(env.parse(43), Ok(None)); // meant for another process
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchdogEnv {
    /// `WATCHDOG_USEC`: the watchdog interval in microseconds.
    pub usec: Option<String>,
    /// `WATCHDOG_PID`: the process the interval is for.
    pub pid: Option<String>,
}

/// Why the watchdog variables were refused.
///
/// ```
/// use lameduck_core::systemd::{WatchdogEnv, WatchdogError};
/// let env = WatchdogEnv { usec: Some("soon".into()), pid: None };
/// assert_eq!(env.parse(1), Err(WatchdogError::InvalidUsec("soon".into())));
/// assert_eq!(
///     WatchdogError::InvalidUsec("soon".into()).to_string(),
///     "WATCHDOG_USEC=\"soon\" is not a positive number of microseconds"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchdogError {
    /// `WATCHDOG_USEC` is not a positive decimal below `u64::MAX`
    /// (systemd's infinity).
    InvalidUsec(String),
    /// `WATCHDOG_PID` is not a positive decimal process id.
    InvalidPid(String),
}

impl fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchdogError::InvalidUsec(v) => write!(
                f,
                "WATCHDOG_USEC={v:?} is not a positive number of microseconds"
            ),
            WatchdogError::InvalidPid(v) => write!(f, "WATCHDOG_PID={v:?} is not a process id"),
        }
    }
}

impl std::error::Error for WatchdogError {}

/// A strict decimal: digits only, no sign, no spaces.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl WatchdogEnv {
    /// Reads `WATCHDOG_USEC` and `WATCHDOG_PID` from the process
    /// environment.
    ///
    /// ```
    /// use lameduck_core::systemd::WatchdogEnv;
    /// # if std::env::var_os("WATCHDOG_USEC").is_none() {
    /// assert_eq!(WatchdogEnv::from_process().parse(std::process::id()), Ok(None));
    /// # }
    /// ```
    #[must_use]
    pub fn from_process() -> WatchdogEnv {
        // A non-UTF-8 value is kept (lossily) so that it is reported.
        let var = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
        WatchdogEnv {
            usec: var("WATCHDOG_USEC"),
            pid: var("WATCHDOG_PID"),
        }
    }

    /// The watchdog interval for process `own_pid`, as
    /// `sd_watchdog_enabled(3)` decides it: `Ok(None)` when
    /// `WATCHDOG_USEC` is unset, or when `WATCHDOG_PID` is set and names
    /// another process (the variables leaked to a child); the interval
    /// when `WATCHDOG_PID` is unset or names `own_pid`. A malformed value
    /// is an error (systemd's `-EINVAL`), not silence.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lameduck_core::systemd::{WatchdogEnv, WatchdogError};
    /// let unset_pid = WatchdogEnv { usec: Some("500000".into()), pid: None };
    /// assert_eq!(unset_pid.parse(7), Ok(Some(Duration::from_millis(500))));
    /// let zero = WatchdogEnv { usec: Some("0".into()), pid: None };
    /// assert_eq!(zero.parse(7), Err(WatchdogError::InvalidUsec("0".into())));
    /// let bad_pid = WatchdogEnv { usec: Some("1".into()), pid: Some("-1".into()) };
    /// assert_eq!(bad_pid.parse(7), Err(WatchdogError::InvalidPid("-1".into())));
    /// assert_eq!(WatchdogEnv::default().parse(7), Ok(None));
    /// ```
    pub fn parse(&self, own_pid: u32) -> Result<Option<Duration>, WatchdogError> {
        let Some(usec) = &self.usec else {
            return Ok(None);
        };
        let micros = decimal(usec)
            .filter(|u| *u > 0 && *u < u64::MAX)
            .ok_or_else(|| WatchdogError::InvalidUsec(usec.clone()))?;
        if let Some(pid) = &self.pid {
            let pid_n = decimal(pid)
                .filter(|p| *p > 0 && *p <= u64::from(u32::MAX))
                .ok_or_else(|| WatchdogError::InvalidPid(pid.clone()))?;
            if pid_n != u64::from(own_pid) {
                return Ok(None);
            }
        }
        Ok(Some(Duration::from_micros(micros)))
    }
}

/// How a [`ServiceNotifier`] behaves.
///
/// ```
/// use std::time::Duration;
/// use lameduck_core::systemd::NotifierConfig;
/// let config = NotifierConfig::default();
/// assert_eq!(config.watchdog, None);
/// assert_eq!(config.extend_step, Some(Duration::from_secs(5)));
/// assert_eq!(config.deadline_margin, Duration::from_secs(1));
/// assert_eq!(config.refresh, Duration::from_secs(1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierConfig {
    /// The watchdog interval (`WATCHDOG_USEC`, from
    /// [`WatchdogEnv::parse`]); `None`: no `WATCHDOG=1`.
    pub watchdog: Option<Duration>,
    /// How often a draining server's progress is checked for an
    /// extension; each extension asks for twice this. `None`: never send
    /// `EXTEND_TIMEOUT_USEC`. Default 5 s: keep it below half of
    /// `TimeoutStopSec=` (default 90 s), or the first check comes after
    /// systemd's own timeout.
    pub extend_step: Option<Duration>,
    /// How far past the drain's deadline an extension may reach (the
    /// forced close and the exit take a moment). Default 1 s.
    pub deadline_margin: Duration,
    /// The longest the caller should go without observing, so a status
    /// follows the server. Default 1 s.
    pub refresh: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            watchdog: None,
            extend_step: Some(Duration::from_secs(5)),
            deadline_margin: Duration::from_secs(1),
            refresh: Duration::from_secs(1),
        }
    }
}

/// A [`NotifierConfig`] that cannot work.
///
/// ```
/// use std::time::{Duration, Instant};
/// use lameduck_core::systemd::{NotifierConfig, NotifierError, ServiceNotifier};
/// let config = NotifierConfig { refresh: Duration::ZERO, ..NotifierConfig::default() };
/// assert_eq!(ServiceNotifier::new(config, Instant::now()).unwrap_err(), NotifierError::ZeroRefresh);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifierError {
    /// A zero watchdog interval (it would ping without pause).
    ZeroWatchdog,
    /// A zero extension step.
    ZeroExtendStep,
    /// A zero refresh period.
    ZeroRefresh,
}

impl fmt::Display for NotifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotifierError::ZeroWatchdog => "the watchdog interval is zero",
            NotifierError::ZeroExtendStep => "the extension step is zero",
            NotifierError::ZeroRefresh => "the refresh period is zero",
        })
    }
}

impl std::error::Error for NotifierError {}

/// One look at the service: the server's phase and drain, and the restart
/// protocol's phase.
///
/// ```
/// use lameduck_core::{Config, Phase, Server};
/// use lameduck_core::restart::RestartPhase;
/// use lameduck_core::systemd::Observed;
/// let server = Server::new(Config::default(), std::time::Instant::now());
/// let seen = Observed::server(&server.snapshot(), RestartPhase::Running);
/// assert_eq!(seen, Observed::phase(Phase::Serving, RestartPhase::Running));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The server's phase.
    pub phase: Phase,
    /// Its drain's progress, once draining (`None`: unknown or not
    /// draining; then no extension is asked for).
    pub drain: Option<DrainProgress>,
    /// The shutdown deadline, while shutting down.
    pub deadline: Option<Instant>,
    /// The restart protocol's phase. [`RestartPhase::HandedOff`] means a
    /// successor is systemd's main process now: the notifier falls silent.
    pub restart: RestartPhase,
}

impl Observed {
    /// From a server's [`Snapshot`].
    ///
    /// ```
    /// use lameduck_core::{Config, Phase, Server};
    /// use lameduck_core::restart::RestartPhase;
    /// use lameduck_core::systemd::Observed;
    /// let t0 = std::time::Instant::now();
    /// let mut server = Server::new(Config::default(), t0);
    /// server.shutdown(t0, None);
    /// let seen = Observed::server(&server.snapshot(), RestartPhase::Stopped);
    /// assert_eq!(seen.phase, Phase::Closed); // nothing to drain
    /// ```
    #[must_use]
    pub fn server(snapshot: &Snapshot, restart: RestartPhase) -> Observed {
        Observed {
            phase: snapshot.phase,
            drain: snapshot.drain,
            deadline: snapshot.deadline,
            restart,
        }
    }

    /// A phase alone, without counts or deadline (a supervisor's view of
    /// its generations).
    ///
    /// ```
    /// use lameduck_core::Phase;
    /// use lameduck_core::restart::RestartPhase;
    /// use lameduck_core::systemd::Observed;
    /// let seen = Observed::phase(Phase::Draining, RestartPhase::Stopped);
    /// assert_eq!(seen.drain, None);
    /// ```
    #[must_use]
    pub fn phase(phase: Phase, restart: RestartPhase) -> Observed {
        Observed {
            phase,
            drain: None,
            deadline: None,
            restart,
        }
    }

    /// The `STATUS=` text for this observation.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::{DrainProgress, Phase};
    /// use lameduck_core::restart::RestartPhase;
    /// use lameduck_core::systemd::Observed;
    /// let mut seen = Observed::phase(Phase::Serving, RestartPhase::Spawning);
    /// assert_eq!(seen.status(), "restarting");
    /// seen.phase = Phase::Draining;
    /// seen.drain = Some(DrainProgress { started: Instant::now(), connections_at_start: 5, remaining: 1 });
    /// assert_eq!(seen.status(), "draining: 1 connection left");
    /// ```
    #[must_use]
    pub fn status(&self) -> String {
        match (self.phase, self.drain) {
            (Phase::Serving, _) => match self.restart {
                RestartPhase::Spawning | RestartPhase::Reaping => "restarting".into(),
                _ => "serving".into(),
            },
            (Phase::LameDuck, _) => "lame duck".into(),
            (Phase::HandedOff, _) => "handed off".into(),
            (Phase::Draining, Some(p)) if p.remaining == 1 => "draining: 1 connection left".into(),
            (Phase::Draining, Some(p)) => format!("draining: {} connections left", p.remaining),
            (Phase::Draining, None) => "draining".into(),
            (Phase::Closed, _) => "closed".into(),
        }
    }
}

/// One notification: send its [`Display`](fmt::Display) form as one
/// datagram.
///
/// ```
/// use std::time::Duration;
/// use lameduck_core::systemd::Message;
/// assert_eq!(Message::Status("serving".into()).to_string(), "STATUS=serving");
/// assert_eq!(Message::Watchdog.to_string(), "WATCHDOG=1");
/// assert_eq!(
///     Message::ExtendTimeout(Duration::from_secs(10)).to_string(),
///     "EXTEND_TIMEOUT_USEC=10000000"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// `STATUS=<text>`: shown by `systemctl status`.
    Status(String),
    /// `WATCHDOG=1`: the service is alive.
    Watchdog,
    /// `EXTEND_TIMEOUT_USEC=<µs>`: the current (stop) timeout is at least
    /// this far from now.
    ExtendTimeout(Duration),
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Status(text) => write!(f, "STATUS={text}"),
            Message::Watchdog => f.write_str("WATCHDOG=1"),
            Message::ExtendTimeout(d) => write!(f, "EXTEND_TIMEOUT_USEC={}", d.as_micros()),
        }
    }
}

/// The shortest time between two pings: an interval under 2 ms is
/// pinged every millisecond rather than in a busy loop.
const MIN_PING_PERIOD: Duration = Duration::from_millis(1);

/// Half the watchdog interval, at least [`MIN_PING_PERIOD`].
fn ping_period(interval: Duration) -> Duration {
    (interval / 2).max(MIN_PING_PERIOD)
}

/// Where the notifier is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Active,
    /// Handed off: another process is main.
    Silent,
    /// The server is closed.
    Done,
}

/// The extension checks of one drain.
#[derive(Clone, Copy, Debug)]
struct Extend {
    next_check: Nanos,
    /// Connections at the previous check (at first: when the drain began).
    baseline: usize,
    /// Connections at the latest observation.
    remaining: usize,
    /// Deadline + margin: no extension reaches past it.
    cap: Nanos,
}

/// The machine that decides `STATUS=`, `WATCHDOG=1` and
/// `EXTEND_TIMEOUT_USEC=` (see the [module docs](self) for the rules).
/// Sans-IO: it reads no clock and sends nothing.
///
/// ```
/// use std::time::{Duration, Instant};
/// use lameduck_core::Phase;
/// use lameduck_core::restart::RestartPhase;
/// use lameduck_core::systemd::{NotifierConfig, Observed, ServiceNotifier};
///
/// let t0 = Instant::now();
/// let mut notifier = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
/// notifier.observe(Observed::phase(Phase::Serving, RestartPhase::HandedOff), t0);
/// assert!(notifier.is_finished()); // a successor speaks to systemd now
/// assert_eq!(notifier.poll_message(), None);
/// ```
#[derive(Debug)]
pub struct ServiceNotifier {
    config: NotifierConfig,
    time: Timeline,
    mode: Mode,
    /// The last status queued.
    status: Option<String>,
    /// An observation arrived since the last ping deadline.
    fed: bool,
    next_ping: Nanos,
    next_refresh: Nanos,
    extend: Option<Extend>,
    queue: VecDeque<Message>,
}

impl ServiceNotifier {
    /// A notifier starting at `now`: the first ping is due half a watchdog
    /// interval later, the first observation at once.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lameduck_core::systemd::{NotifierConfig, NotifierError, ServiceNotifier};
    /// let t0 = Instant::now();
    /// let notifier = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
    /// assert_eq!(notifier.poll_timeout(), Some(t0)); // observe now
    /// let zero = NotifierConfig { watchdog: Some(Duration::ZERO), ..NotifierConfig::default() };
    /// assert_eq!(ServiceNotifier::new(zero, t0).unwrap_err(), NotifierError::ZeroWatchdog);
    /// ```
    pub fn new(config: NotifierConfig, now: Instant) -> Result<ServiceNotifier, NotifierError> {
        if config.watchdog == Some(Duration::ZERO) {
            return Err(NotifierError::ZeroWatchdog);
        }
        if config.extend_step == Some(Duration::ZERO) {
            return Err(NotifierError::ZeroExtendStep);
        }
        if config.refresh.is_zero() {
            return Err(NotifierError::ZeroRefresh);
        }
        let time = Timeline::new(now);
        let next_ping = match config.watchdog {
            Some(interval) => Nanos(0).after(ping_period(interval)),
            None => Nanos::NEVER,
        };
        Ok(ServiceNotifier {
            config,
            time,
            mode: Mode::Active,
            status: None,
            fed: false,
            next_ping,
            next_refresh: Nanos(0),
            extend: None,
            queue: VecDeque::new(),
        })
    }

    /// Reports what the service looks like at `now`. Queues a `STATUS=`
    /// if its text changed; counts as being fed (the next ping may go
    /// out); starts or updates a drain's extension checks. Does not handle
    /// timers: call [`handle_timeout`](Self::handle_timeout) for those.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::Phase;
    /// use lameduck_core::restart::RestartPhase;
    /// use lameduck_core::systemd::{Message, NotifierConfig, Observed, ServiceNotifier};
    /// let t0 = Instant::now();
    /// let mut notifier = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
    /// notifier.observe(Observed::phase(Phase::LameDuck, RestartPhase::Stopped), t0);
    /// assert_eq!(notifier.poll_message(), Some(Message::Status("lame duck".into())));
    /// ```
    pub fn observe(&mut self, seen: Observed, now: Instant) {
        let now = self.time.advance(now);
        if self.mode != Mode::Active {
            return;
        }
        if seen.restart == RestartPhase::HandedOff {
            self.mode = Mode::Silent;
            self.queue.clear();
            self.extend = None;
            return;
        }
        self.fed = true;
        let status = seen.status();
        if self.status.as_ref() != Some(&status) {
            self.status = Some(status.clone());
            self.queue.push_back(Message::Status(status));
        }
        match (seen.phase, seen.drain, self.config.extend_step) {
            (Phase::Draining, Some(progress), Some(step)) => {
                let cap = match seen.deadline {
                    Some(deadline) => self.time.nanos(deadline).after(self.config.deadline_margin),
                    None => Nanos::NEVER,
                };
                match &mut self.extend {
                    Some(extend) => {
                        extend.remaining = progress.remaining;
                        extend.cap = extend.cap.min(cap);
                    }
                    None => {
                        self.extend = Some(Extend {
                            next_check: now.after(step),
                            baseline: progress.connections_at_start,
                            remaining: progress.remaining,
                            cap,
                        });
                    }
                }
            }
            (Phase::Closed, _, _) => {
                self.mode = Mode::Done;
                self.extend = None;
            }
            _ => {}
        }
    }

    /// Handles what is due at `now`: a ping (if fed since the last one),
    /// a drain's extension check, the next refresh. Early or repeated
    /// calls are harmless.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lameduck_core::Phase;
    /// use lameduck_core::restart::RestartPhase;
    /// use lameduck_core::systemd::{Message, NotifierConfig, Observed, ServiceNotifier};
    /// let t0 = Instant::now();
    /// let config = NotifierConfig { watchdog: Some(Duration::from_secs(4)), ..NotifierConfig::default() };
    /// let mut notifier = ServiceNotifier::new(config, t0).unwrap();
    /// notifier.observe(Observed::phase(Phase::Serving, RestartPhase::Running), t0);
    /// let _status = notifier.poll_message();
    /// notifier.handle_timeout(t0 + Duration::from_millis(1_999));
    /// assert_eq!(notifier.poll_message(), None); // not yet
    /// notifier.handle_timeout(t0 + Duration::from_secs(2));
    /// assert_eq!(notifier.poll_message(), Some(Message::Watchdog));
    /// notifier.handle_timeout(t0 + Duration::from_secs(4));
    /// assert_eq!(notifier.poll_message(), None); // not fed since: wedged
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.time.advance(now);
        if self.mode != Mode::Active {
            return;
        }
        if now >= self.next_ping
            && let Some(interval) = self.config.watchdog
        {
            if self.fed {
                self.queue.push_back(Message::Watchdog);
            }
            self.fed = false;
            self.next_ping = now.after(ping_period(interval));
        }
        if now >= self.next_refresh {
            self.next_refresh = now.after(self.config.refresh);
        }
        if let (Some(extend), Some(step)) = (&mut self.extend, self.config.extend_step)
            && now >= extend.next_check
        {
            if now >= extend.cap {
                // The deadline (and margin) has passed: the server
                // force-closes; systemd's timeout stands.
                extend.next_check = Nanos::NEVER;
            } else {
                if extend.remaining < extend.baseline {
                    let room = Duration::from_nanos(extend.cap.0 - now.0);
                    let usec = step.saturating_mul(2).min(room);
                    self.queue.push_back(Message::ExtendTimeout(usec));
                }
                extend.baseline = extend.remaining;
                extend.next_check = now.after(step);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due (observe
    /// first, then call it). `None` once the server is closed or the
    /// process handed off: nothing more will be sent.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lameduck_core::Phase;
    /// use lameduck_core::restart::RestartPhase;
    /// use lameduck_core::systemd::{NotifierConfig, Observed, ServiceNotifier};
    /// let t0 = Instant::now();
    /// let mut notifier = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
    /// notifier.observe(Observed::phase(Phase::Serving, RestartPhase::Running), t0);
    /// notifier.handle_timeout(t0);
    /// assert_eq!(notifier.poll_timeout(), Some(t0 + Duration::from_secs(1))); // the refresh
    /// notifier.observe(Observed::phase(Phase::Closed, RestartPhase::Stopped), t0);
    /// assert_eq!(notifier.poll_timeout(), None);
    /// ```
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.mode != Mode::Active {
            return None;
        }
        let check = self.extend.map_or(Nanos::NEVER, |e| e.next_check);
        let next = self.next_ping.min(self.next_refresh).min(check);
        self.time.instant(next)
    }

    /// The configuration it runs with.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::systemd::{NotifierConfig, ServiceNotifier};
    /// let notifier = ServiceNotifier::new(NotifierConfig::default(), Instant::now()).unwrap();
    /// assert_eq!(notifier.config(), &NotifierConfig::default());
    /// ```
    #[must_use]
    pub fn config(&self) -> &NotifierConfig {
        &self.config
    }

    /// The next message to send, oldest first.
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::systemd::{NotifierConfig, ServiceNotifier};
    /// let mut notifier = ServiceNotifier::new(NotifierConfig::default(), Instant::now()).unwrap();
    /// assert_eq!(notifier.poll_message(), None); // nothing observed yet
    /// ```
    pub fn poll_message(&mut self) -> Option<Message> {
        self.queue.pop_front()
    }

    /// Nothing more will be sent: the server is closed, or a successor is
    /// systemd's main process now. (Messages already queued may remain
    /// after a close.)
    ///
    /// ```
    /// use std::time::Instant;
    /// use lameduck_core::systemd::{NotifierConfig, ServiceNotifier};
    /// let notifier = ServiceNotifier::new(NotifierConfig::default(), Instant::now()).unwrap();
    /// assert!(!notifier.is_finished());
    /// ```
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.mode != Mode::Active
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the origin of virtual time in a test
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn serving() -> Observed {
        Observed::phase(Phase::Serving, RestartPhase::Running)
    }

    fn draining(t0: Instant, at_start: usize, remaining: usize, deadline: Option<u64>) -> Observed {
        Observed {
            phase: Phase::Draining,
            drain: Some(DrainProgress {
                started: t0,
                connections_at_start: at_start,
                remaining,
            }),
            deadline: deadline.map(|ms| at(t0, ms)),
            restart: RestartPhase::Stopped,
        }
    }

    fn drain(n: &mut ServiceNotifier) -> Vec<String> {
        std::iter::from_fn(|| n.poll_message())
            .map(|m| m.to_string())
            .collect()
    }

    fn watchdog(ms: u64) -> NotifierConfig {
        NotifierConfig {
            watchdog: Some(Duration::from_millis(ms)),
            ..NotifierConfig::default()
        }
    }

    #[test]
    fn ping_at_exactly_half_the_interval_not_before() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(watchdog(200), t0).unwrap();
        n.observe(serving(), t0);
        n.handle_timeout(t0);
        assert_eq!(drain(&mut n), ["STATUS=serving"]);
        assert_eq!(n.poll_timeout(), Some(at(t0, 100)));
        n.observe(serving(), at(t0, 99));
        n.handle_timeout(at(t0, 99));
        assert_eq!(drain(&mut n), Vec::<String>::new());
        n.handle_timeout(t0 + Duration::from_nanos(99_999_999));
        assert_eq!(drain(&mut n), Vec::<String>::new());
        n.handle_timeout(at(t0, 100));
        assert_eq!(drain(&mut n), ["WATCHDOG=1"]);
        // Idempotent: a repeated call at the same time sends nothing more.
        n.handle_timeout(at(t0, 100));
        assert_eq!(drain(&mut n), Vec::<String>::new());
        assert_eq!(n.poll_timeout(), Some(at(t0, 200)));
        n.observe(serving(), at(t0, 200));
        n.handle_timeout(at(t0, 200));
        assert_eq!(drain(&mut n), ["WATCHDOG=1"]);
    }

    #[test]
    fn a_late_tick_pings_once_and_counts_from_then() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(watchdog(200), t0).unwrap();
        n.observe(serving(), at(t0, 350));
        n.handle_timeout(at(t0, 350));
        assert_eq!(drain(&mut n), ["STATUS=serving", "WATCHDOG=1"]);
        assert_eq!(n.poll_timeout(), Some(at(t0, 450)));
    }

    #[test]
    fn no_ping_without_an_observation_since_the_last_one() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(watchdog(200), t0).unwrap();
        // Never fed: never pings.
        n.handle_timeout(at(t0, 100));
        assert_eq!(drain(&mut n), Vec::<String>::new());
        n.observe(serving(), at(t0, 150));
        n.handle_timeout(at(t0, 200));
        assert_eq!(drain(&mut n), ["STATUS=serving", "WATCHDOG=1"]);
        // Wedged: the caller still wakes but no longer observes.
        n.handle_timeout(at(t0, 300));
        n.handle_timeout(at(t0, 400));
        assert_eq!(drain(&mut n), Vec::<String>::new());
        // It recovers.
        n.observe(serving(), at(t0, 450));
        n.handle_timeout(at(t0, 500));
        assert_eq!(drain(&mut n), ["WATCHDOG=1"]);
    }

    #[test]
    fn no_watchdog_no_ping_and_the_refresh_still_wakes() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
        assert_eq!(n.poll_timeout(), Some(t0));
        for s in 0..5 {
            n.observe(serving(), at(t0, s * 1_000));
            n.handle_timeout(at(t0, s * 1_000));
            assert_eq!(n.poll_timeout(), Some(at(t0, (s + 1) * 1_000)));
        }
        assert_eq!(drain(&mut n), ["STATUS=serving"]);
    }

    #[test]
    fn status_on_each_phase_and_restart() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
        let mut seen = serving();
        n.observe(seen, t0);
        n.observe(seen, t0);
        seen.restart = RestartPhase::Spawning;
        n.observe(seen, t0);
        seen.restart = RestartPhase::Reaping;
        n.observe(seen, t0);
        seen.restart = RestartPhase::Running;
        n.observe(seen, t0);
        n.observe(Observed::phase(Phase::LameDuck, RestartPhase::Stopped), t0);
        n.observe(draining(t0, 3, 3, None), t0);
        n.observe(draining(t0, 3, 1, None), t0);
        n.observe(draining(t0, 3, 0, None), t0);
        n.observe(Observed::phase(Phase::Draining, RestartPhase::Stopped), t0);
        n.observe(Observed::phase(Phase::Closed, RestartPhase::Stopped), t0);
        assert_eq!(
            drain(&mut n),
            [
                "STATUS=serving",
                "STATUS=restarting",
                "STATUS=serving",
                "STATUS=lame duck",
                "STATUS=draining: 3 connections left",
                "STATUS=draining: 1 connection left",
                "STATUS=draining: 0 connections left",
                "STATUS=draining",
                "STATUS=closed",
            ]
        );
        assert!(n.is_finished());
        assert_eq!(n.poll_timeout(), None);
        n.observe(serving(), t0);
        n.handle_timeout(at(t0, 10_000));
        assert_eq!(drain(&mut n), Vec::<String>::new());
    }

    #[test]
    fn pings_go_on_while_draining_and_stop_when_closed() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(watchdog(1_000), t0).unwrap();
        n.observe(draining(t0, 2, 2, None), at(t0, 500));
        n.handle_timeout(at(t0, 500));
        assert_eq!(
            drain(&mut n),
            ["STATUS=draining: 2 connections left", "WATCHDOG=1"]
        );
        n.observe(
            Observed::phase(Phase::Closed, RestartPhase::Stopped),
            at(t0, 1_000),
        );
        n.handle_timeout(at(t0, 1_000));
        assert_eq!(drain(&mut n), ["STATUS=closed"]);
    }

    #[test]
    fn handed_off_falls_silent_and_drops_the_queue() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(watchdog(200), t0).unwrap();
        n.observe(
            Observed::phase(Phase::Serving, RestartPhase::Spawning),
            at(t0, 100),
        );
        n.handle_timeout(at(t0, 100));
        n.observe(
            Observed::phase(Phase::Draining, RestartPhase::HandedOff),
            at(t0, 150),
        );
        assert_eq!(drain(&mut n), Vec::<String>::new());
        assert!(n.is_finished());
        assert_eq!(n.poll_timeout(), None);
        n.observe(serving(), at(t0, 200));
        n.handle_timeout(at(t0, 200));
        assert_eq!(drain(&mut n), Vec::<String>::new());
    }

    #[test]
    fn extends_every_step_while_the_drain_makes_progress() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
        n.observe(draining(t0, 10, 9, None), t0);
        n.handle_timeout(t0);
        let _ = drain(&mut n);
        // The first check is one step after the drain was observed.
        assert_eq!(n.poll_timeout(), Some(at(t0, 1_000))); // (the refresh first)
        for s in 1..5 {
            n.observe(draining(t0, 10, 9, None), at(t0, s * 1_000));
            n.handle_timeout(at(t0, s * 1_000));
        }
        assert_eq!(drain(&mut n), Vec::<String>::new());
        n.observe(draining(t0, 10, 8, None), at(t0, 4_999));
        n.handle_timeout(at(t0, 4_999));
        assert_eq!(drain(&mut n), ["STATUS=draining: 8 connections left"]);
        n.handle_timeout(at(t0, 5_000));
        // 10 at the start, 8 now: progress; twice the step.
        assert_eq!(drain(&mut n), ["EXTEND_TIMEOUT_USEC=10000000"]);
        assert_eq!(n.poll_timeout(), Some(at(t0, 6_000)));
        n.observe(draining(t0, 10, 7, None), at(t0, 9_000));
        n.handle_timeout(at(t0, 9_999));
        assert_eq!(drain(&mut n), ["STATUS=draining: 7 connections left"]);
        n.handle_timeout(at(t0, 10_000));
        assert_eq!(drain(&mut n), ["EXTEND_TIMEOUT_USEC=10000000"]);
    }

    #[test]
    fn no_extension_without_progress() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
        n.observe(draining(t0, 4, 4, None), t0);
        let _ = drain(&mut n);
        n.handle_timeout(at(t0, 5_000));
        assert_eq!(drain(&mut n), Vec::<String>::new());
        // Progress in the next step: an extension at its end.
        n.observe(draining(t0, 4, 3, None), at(t0, 7_000));
        let _ = drain(&mut n);
        n.handle_timeout(at(t0, 10_000));
        assert_eq!(drain(&mut n), ["EXTEND_TIMEOUT_USEC=10000000"]);
        // Stuck again: none.
        n.observe(draining(t0, 4, 3, None), at(t0, 12_000));
        n.handle_timeout(at(t0, 15_000));
        assert_eq!(drain(&mut n), Vec::<String>::new());
    }

    #[test]
    fn extensions_stop_at_the_deadline_plus_the_margin() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
        // Deadline 12 s: cap at 13 s.
        n.observe(draining(t0, 10, 10, Some(12_000)), t0);
        let _ = drain(&mut n);
        n.observe(draining(t0, 10, 9, Some(12_000)), at(t0, 5_000));
        n.handle_timeout(at(t0, 5_000));
        let _status = n.poll_message();
        // 5 s + 10 s would pass 13 s: 8 s.
        assert_eq!(drain(&mut n), ["EXTEND_TIMEOUT_USEC=8000000"]);
        n.observe(draining(t0, 10, 8, Some(12_000)), at(t0, 10_000));
        n.handle_timeout(at(t0, 10_000));
        let _status = n.poll_message();
        assert_eq!(drain(&mut n), ["EXTEND_TIMEOUT_USEC=3000000"]);
        // At the cap: nothing more, and no more checks.
        n.observe(draining(t0, 10, 7, Some(12_000)), at(t0, 15_000));
        n.handle_timeout(at(t0, 15_000));
        let _status = n.poll_message();
        assert_eq!(drain(&mut n), Vec::<String>::new());
        assert_eq!(n.poll_timeout(), Some(at(t0, 16_000))); // the refresh only
    }

    #[test]
    fn an_extension_exactly_reaching_the_cap_and_none_at_it() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(config_margin0(), t0).unwrap();
        n.observe(draining(t0, 2, 2, Some(5_001)), t0);
        n.observe(draining(t0, 2, 1, Some(5_001)), at(t0, 1));
        n.handle_timeout(at(t0, 5_000));
        let _ = n.poll_message();
        let _ = n.poll_message();
        assert_eq!(drain(&mut n), ["EXTEND_TIMEOUT_USEC=1000"]);
        let mut n = ServiceNotifier::new(config_margin0(), t0).unwrap();
        n.observe(draining(t0, 2, 1, Some(5_000)), t0);
        n.handle_timeout(at(t0, 5_000));
        let _status = n.poll_message();
        assert_eq!(drain(&mut n), Vec::<String>::new());
    }

    fn config_margin0() -> NotifierConfig {
        NotifierConfig {
            deadline_margin: Duration::ZERO,
            ..NotifierConfig::default()
        }
    }

    #[test]
    fn an_earlier_deadline_lowers_the_cap_and_no_step_means_no_extension() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
        n.observe(draining(t0, 3, 3, Some(60_000)), t0);
        n.observe(draining(t0, 3, 2, Some(6_000)), at(t0, 1_000));
        n.handle_timeout(at(t0, 5_000));
        let _ = n.poll_message();
        let _ = n.poll_message();
        assert_eq!(drain(&mut n), ["EXTEND_TIMEOUT_USEC=2000000"]);

        let config = NotifierConfig {
            extend_step: None,
            ..NotifierConfig::default()
        };
        let mut n = ServiceNotifier::new(config, t0).unwrap();
        n.observe(draining(t0, 3, 1, None), t0);
        n.handle_timeout(at(t0, 60_000));
        assert_eq!(drain(&mut n), ["STATUS=draining: 1 connection left"]);
    }

    #[test]
    fn no_extension_without_counts_or_outside_a_drain() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(NotifierConfig::default(), t0).unwrap();
        n.observe(Observed::phase(Phase::Draining, RestartPhase::Stopped), t0);
        n.observe(Observed::phase(Phase::LameDuck, RestartPhase::Stopped), t0);
        n.handle_timeout(at(t0, 30_000));
        assert_eq!(drain(&mut n), ["STATUS=draining", "STATUS=lame duck"]);
    }

    #[test]
    fn time_never_goes_backwards() {
        let t0 = Instant::now();
        let mut n = ServiceNotifier::new(watchdog(200), t0).unwrap();
        n.observe(serving(), at(t0, 100));
        n.handle_timeout(at(t0, 100));
        n.observe(serving(), at(t0, 50));
        n.handle_timeout(at(t0, 50)); // taken as 100: not due again
        assert_eq!(drain(&mut n), ["STATUS=serving", "WATCHDOG=1"]);
        assert_eq!(n.poll_timeout(), Some(at(t0, 200)));
    }

    #[test]
    fn watchdog_env_follows_sd_watchdog_enabled() {
        let env = |usec: Option<&str>, pid: Option<&str>| WatchdogEnv {
            usec: usec.map(Into::into),
            pid: pid.map(Into::into),
        };
        assert_eq!(env(None, None).parse(5), Ok(None));
        assert_eq!(env(None, Some("5")).parse(5), Ok(None));
        assert_eq!(env(None, Some("x")).parse(5), Ok(None));
        assert_eq!(
            env(Some("200000"), None).parse(5),
            Ok(Some(Duration::from_millis(200)))
        );
        assert_eq!(
            env(Some("1"), Some("5")).parse(5),
            Ok(Some(Duration::from_micros(1)))
        );
        assert_eq!(env(Some("200000"), Some("6")).parse(5), Ok(None));
        for bad in [
            "",
            "0",
            "-1",
            "+5",
            " 5",
            "5s",
            "1e6",
            "18446744073709551615",
        ] {
            assert_eq!(
                env(Some(bad), None).parse(5),
                Err(WatchdogError::InvalidUsec(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(
            env(Some("18446744073709551614"), None).parse(5),
            Ok(Some(Duration::from_micros(u64::MAX - 1)))
        );
        for bad in ["", "0", "-5", "x", "4294967296", " 5"] {
            assert_eq!(
                env(Some("1"), Some(bad)).parse(5),
                Err(WatchdogError::InvalidPid(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn config_errors() {
        let t0 = Instant::now();
        let bad = |config: NotifierConfig| ServiceNotifier::new(config, t0).unwrap_err();
        assert_eq!(bad(watchdog(0)), NotifierError::ZeroWatchdog);
        assert_eq!(
            bad(NotifierConfig {
                extend_step: Some(Duration::ZERO),
                ..NotifierConfig::default()
            }),
            NotifierError::ZeroExtendStep
        );
        assert_eq!(
            bad(NotifierConfig {
                refresh: Duration::ZERO,
                ..NotifierConfig::default()
            }),
            NotifierError::ZeroRefresh
        );
        // A 1 µs interval: pinged every millisecond, not in a busy loop.
        let mut n = ServiceNotifier::new(
            NotifierConfig {
                watchdog: Some(Duration::from_micros(1)),
                ..NotifierConfig::default()
            },
            t0,
        )
        .unwrap();
        assert_eq!(n.poll_timeout(), Some(t0));
        n.observe(serving(), t0);
        n.handle_timeout(t0);
        assert_eq!(drain(&mut n), ["STATUS=serving"]);
        assert_eq!(n.poll_timeout(), Some(at(t0, 1)));
        n.observe(serving(), at(t0, 1));
        n.handle_timeout(at(t0, 1));
        assert_eq!(drain(&mut n), ["WATCHDOG=1"]);
        assert_eq!(n.poll_timeout(), Some(at(t0, 2)));
    }
}
