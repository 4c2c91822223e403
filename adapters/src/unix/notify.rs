//! systemd's notification protocol (`sd_notify(3)`): one datagram of
//! `KEY=value` lines to the socket named by `NOTIFY_SOCKET`.
//!
//! `NOTIFY_SOCKET` is left in the environment: a successor talks to
//! systemd itself once it is the main process.
//!
//! # Beyond `READY=1`
//!
//! [`Lifecycle::run`](super::Lifecycle::run) and
//! [`Supervisor::run`](super::Supervisor::run) also carry out
//! [`ServiceNotifier`], the core's machine for `STATUS=`, `WATCHDOG=1` and
//! `EXTEND_TIMEOUT_USEC=` (its module docs state the rules). This file only
//! reads the environment, feeds the machine and sends what it asks:
//!
//! - Under systemd only (`NOTIFY_SOCKET` set), and only in the process
//!   that speaks to systemd: never in a supervised generation.
//! - The watchdog interval is `WATCHDOG_USEC`, honoured when
//!   `WATCHDOG_PID` is unset or names this process
//!   ([`WatchdogEnv::parse`]); a malformed value is reported as a problem
//!   and the watchdog stays off. A direct restart's successor becomes the
//!   main process, so when the watchdog was this process's, `WATCHDOG_PID`
//!   is removed from the successor's environment (its pid is not known
//!   before it exists; unset means "yours").
//! - **What "wedged" means.** A [`Lifecycle`](super::Lifecycle) drives the
//!   machine from a task on the server's own runtime, sleeping with the
//!   runtime's timer; each tick it observes the server through
//!   [`Handle::snapshot`](crate::Handle::snapshot), which takes the
//!   driver's lock. An executor that no longer runs tasks, or a driver
//!   stuck holding its lock, therefore stops the pings, and systemd's
//!   watchdog fires. A slow handler alone does not (its connection's task
//!   is one of many).
//! - **Supervisor mode.** Only the supervisor speaks to systemd. Its
//!   machine runs inside the supervisor's own event loop, so the pings
//!   say that loop is alive and a generation is serving (or the service
//!   is stopping); a generation's own executor is not watched — a wedged
//!   generation is not detected in supervisor mode. Its statuses are
//!   `serving`, `restarting` and `draining` (no counts: the generations'
//!   connections are theirs), and it never extends the stop timeout (its
//!   own [`stop_timeout`](super::Supervisor::stop_timeout) applies).
//! - Once this process has announced another `MAINPID=` (a hand-off), it
//!   is no longer the main process and sends none of these again: the
//!   announcement and that decision are made under one lock, so a late
//!   `STATUS=` cannot slip out after it. With the watchdog on, a
//!   `WATCHDOG=1` goes just before the announcement, so the successor has
//!   a whole interval for its first ping (due half an interval after it
//!   starts watching).
//! - A successor is not main until that announcement, which its
//!   predecessor makes as soon as it reads the successor's readiness; so
//!   a successor (generation > 1) sends nothing for its first tick (the
//!   refresh period or half the watchdog interval, whichever is shorter),
//!   lest systemd drop its first `STATUS=`. Nothing tells the successor
//!   the announcement was made: a predecessor slower than that makes
//!   systemd drop (and log) the successor's first `STATUS=` until the
//!   status next changes.

use std::future::{Future, pending};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lameduck_core::systemd::{NotifierConfig, Observed, ServiceNotifier, WatchdogEnv};

use crate::driver::{Driver, Order};

/// This process is (as far as it knows) systemd's main process: it has
/// not announced another `MAINPID=`. Held while sending.
static MAIN: Mutex<bool> = Mutex::new(true);

/// This process sends `WATCHDOG=1`.
static WATCHDOG: AtomicBool = AtomicBool::new(false);

/// Sends `state` (e.g. `"READY=1"`, or several lines) to systemd.
/// `Ok(false)`: `NOTIFY_SOCKET` is not set (not run by systemd), nothing
/// sent. A path starting with `@` is an abstract socket (Linux).
///
/// Private: [`Lifecycle`](super::Lifecycle) and
/// [`Supervisor`](super::Supervisor) send every message themselves, and a
/// `MAINPID=` sent behind their back would move "main" without them.
fn notify(state: &str) -> io::Result<bool> {
    let mut main = crate::sync::lock(&MAIN);
    let own = std::process::id().to_string();
    let hands_over = state
        .lines()
        .filter_map(|line| line.strip_prefix("MAINPID="))
        .any(|pid| pid != own);
    if hands_over && *main && WATCHDOG.load(Ordering::Acquire) {
        // A last ping as main: the successor gets a whole interval for its
        // first one.
        send("WATCHDOG=1", true)?;
    }
    let sent = send(state, true)?;
    if sent && hands_over {
        *main = false;
    }
    Ok(sent)
}

/// [`notify`]; a failure goes to `problem` as one line
/// (`sd_notify READY=1: …`).
pub(crate) fn notify_or_report(state: &str, problem: impl FnOnce(String)) {
    if let Err(e) = notify(state) {
        let first = state.lines().next().unwrap_or("");
        problem(format!("sd_notify {first}: {e}"));
    }
}

/// [`notify`], unless this process handed "main" to another; never
/// waits for a full receiver (it runs on the server's executor): the
/// message is dropped with a `WouldBlock` error instead.
fn notify_while_main(state: &str) -> io::Result<bool> {
    let main = crate::sync::lock(&MAIN);
    if !*main {
        return Ok(false);
    }
    send(state, false)
}

/// Sends `state`; `blocking: false` gives up at once (`WouldBlock`) when
/// the receiver's queue is full rather than wait.
fn send(state: &str, blocking: bool) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(!blocking)?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.split_first() {
        Some((b'@', name)) => send_abstract(&socket, name, state.as_bytes())?,
        Some((b'/', _)) => socket.send_to(state.as_bytes(), &path)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET={path:?} is neither a path nor @abstract"),
            ));
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was truncated",
        ));
    }
    Ok(true)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

/// `CLOCK_MONOTONIC` in microseconds, for `MONOTONIC_USEC=` (systemd
/// matches a reload to the signal that asked for it by this time).
pub(crate) fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // A monotonic clock is never negative.
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

/// The core's [`ServiceNotifier`] and what reports a problem.
struct Watch<P> {
    machine: ServiceNotifier,
    problem: P,
    /// A send failed already (reported once, not at every ping).
    failed: bool,
}

impl<P: Fn(String)> Watch<P> {
    /// `None` when not run by systemd (`NOTIFY_SOCKET` unset).
    fn from_env(problem: P) -> Option<Watch<P>> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = match WatchdogEnv::from_process().parse(std::process::id()) {
            Ok(watchdog) => watchdog,
            Err(e) => {
                problem(format!("{e}: the watchdog is off"));
                None
            }
        };
        WATCHDOG.store(watchdog.is_some(), Ordering::Release);
        let config = NotifierConfig {
            watchdog,
            ..NotifierConfig::default()
        };
        // A parsed interval is never zero, nor are the defaults: no error.
        let machine = ServiceNotifier::new(config, Instant::now()).ok()?;
        Some(Watch {
            machine,
            problem,
            failed: false,
        })
    }

    /// One tick: observe (when there is something to see), handle what is
    /// due, send what the machine asks. The next tick, if any.
    fn tick(&mut self, seen: Option<Observed>) -> Option<Instant> {
        let now = Instant::now();
        if let Some(seen) = seen {
            self.machine.observe(seen, now);
        }
        self.machine.handle_timeout(now);
        while let Some(message) = self.machine.poll_message() {
            let text = message.to_string();
            if let Err(e) = notify_while_main(&text)
                && !std::mem::replace(&mut self.failed, true)
            {
                (self.problem)(format!("sd_notify {text}: {e}"));
            }
        }
        self.machine.poll_timeout()
    }

    /// Ticks until the machine has nothing more to send.
    async fn run<S, F>(mut self, mut observe: impl FnMut() -> Option<Observed>, sleep: S)
    where
        S: Fn(Instant) -> F,
        F: Future,
    {
        while let Some(at) = self.tick(observe()) {
            sleep(at).await;
        }
    }
}

/// A [`Lifecycle`](super::Lifecycle)'s watch: a task on the server's
/// runtime, observing with `observe` (the server's snapshot and the
/// restart phase). Nothing when not run by systemd.
pub(crate) fn spawn_watch(
    driver: &Driver,
    observe: impl Fn() -> Observed + Send + 'static,
    problem: impl Fn(String) + Send + 'static,
) {
    let Some(mut watch) = Watch::from_env(problem) else {
        return;
    };
    // A restart's successor is not main until its predecessor announces
    // it (`MAINPID=`, as soon as it reads the successor's readiness):
    // what it sent before would be dropped. It starts one tick later.
    let quiet = if super::handoff::generation() > 1 {
        let ping = watch
            .machine
            .config()
            .watchdog
            .map_or(Duration::MAX, |w| w / 2);
        Some(Instant::now() + watch.machine.config().refresh.min(ping))
    } else {
        None
    };
    // On the server's runtime (the worker spawns it): a stuck executor
    // stops the pings. Its timer is `async-io`'s, which runs anywhere.
    driver.order(Order::Spawn(Box::pin(async move {
        if let Some(at) = quiet {
            async_io::Timer::at(at).await;
        }
        while let Some(at) = watch.tick(Some(observe())) {
            async_io::Timer::at(at).await;
        }
    })));
}

/// A [`Supervisor`](super::Supervisor)'s watch, to be polled by its own
/// event loop: never completes (pending forever once done, or when not
/// run by systemd or `enabled` is false). `observe` is `None` until there
/// is something to report.
pub(crate) async fn supervisor_watch<T, F: Future>(
    enabled: bool,
    observe: impl FnMut() -> Option<Observed>,
    problem: impl Fn(String),
    sleep: impl Fn(Instant) -> F,
) -> T {
    if enabled && let Some(watch) = Watch::from_env(problem) {
        watch.run(observe, sleep).await;
    }
    pending().await
}

/// The environment of a direct restart's successor, which becomes the
/// main process: if the watchdog is this process's (`WATCHDOG_PID` names
/// it), the successor's too — `WATCHDOG_PID` is removed.
pub(crate) fn watchdog_for_successor(command: &mut Command) {
    let env = WatchdogEnv::from_process();
    if env.pid.is_some() && matches!(env.parse(std::process::id()), Ok(Some(_))) {
        command.env_remove("WATCHDOG_PID");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_moves_forward() {
        let a = super::monotonic_usec();
        let b = super::monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
