//! systemd beyond `READY=1`, as process tests of the demo server with a
//! fake `NOTIFY_SOCKET`: `STATUS=` lines for the phases, `WATCHDOG=1` at
//! half of `WATCHDOG_USEC` (never when `WATCHDOG_PID` names another
//! process), from the right process across a restart and in supervisor
//! mode. Every wait is bounded; no assertion is about timing beyond
//! "eventually".

use std::process::Command;
use std::time::{Duration, Instant};

use lameduck_testkit::client::Client;
use lameduck_tests::load::scratch_dir;
use lameduck_tests::process::{
    Demo, EVENTUALLY, NotifySocket, Signal, send_signal, serve_binary, start_environment,
    wait_exited,
};

/// Datagrams (sender, text) read until `done` holds of all read so far.
///
/// # Panics
/// If that takes longer than [`EVENTUALLY`].
fn read_until(
    notify: &NotifySocket,
    mut done: impl FnMut(&[(u32, String)]) -> bool,
) -> Vec<(u32, String)> {
    let deadline = Instant::now() + EVENTUALLY;
    let mut seen = Vec::new();
    // One datagram per pass; bounded by the deadline.
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match notify.next_within(left.max(Duration::from_millis(1))) {
            Some(message) => seen.push(message),
            None => panic!("not in time; seen: {seen:?}"),
        }
    }
    seen
}

/// Datagrams arriving within `window`.
fn read_for(notify: &NotifySocket, window: Duration) -> Vec<(u32, String)> {
    let end = Instant::now() + window;
    let mut seen = Vec::new();
    // One datagram per pass; bounded by the window.
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match notify.next_within(left.max(Duration::from_millis(1))) {
            Some(message) => seen.push(message),
            None => break,
        }
    }
    seen
}

fn pings_from(seen: &[(u32, String)], pid: u32) -> usize {
    seen.iter()
        .filter(|(from, m)| *from == pid && m == "WATCHDOG=1")
        .count()
}

fn has(seen: &[(u32, String)], pid: u32, message: &str) -> bool {
    seen.iter().any(|(from, m)| *from == pid && m == message)
}

/// `WATCHDOG_USEC=200000` without `WATCHDOG_PID`: `READY=1`, then
/// `STATUS=serving` and pings, again and again; a `SIGTERM` with a
/// streamed response in flight: `STOPPING=1`, `STATUS=draining: 1
/// connection left`, pings go on while it drains; the response completes
/// and the server exits 0. Everything from the server's pid.
#[test]
fn watchdog_and_status_while_serving_and_draining() {
    let dir = scratch_dir("systemd-watchdog");
    let notify = NotifySocket::bind(&dir);
    let mut command = Command::new(serve_binary());
    command
        .args(["--listen", "127.0.0.1:0", "--grace", "30"])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut demo = Demo::spawn(command);
    let pid = demo.pid();
    let addr = demo.tcp_addrs()[0];

    let seen = read_until(&notify, |seen| {
        pings_from(seen, pid) >= 3 && has(seen, pid, "STATUS=serving")
    });
    assert_eq!(seen[0], (pid, "READY=1".to_owned()), "{seen:?}");
    assert!(seen.iter().all(|(from, _)| *from == pid), "{seen:?}");

    // A response in flight: its first chunk is proof.
    let mut client = Client::connect(addr).unwrap();
    client.send_get("/stream?chunks=30&ms=100").unwrap();
    client.read_until_contains(b"chunk 0\n").unwrap();
    send_signal(pid, Signal::TERM);
    let draining = "STATUS=draining: 1 connection left";
    let seen = read_until(&notify, |seen| {
        seen.iter()
            .position(|(_, m)| m == draining)
            .is_some_and(|at| pings_from(&seen[at..], pid) >= 1)
    });
    assert!(has(&seen, pid, "STOPPING=1"), "{seen:?}");
    assert!(has(&seen, pid, draining), "{seen:?}");
    assert!(seen.iter().all(|(from, _)| *from == pid), "{seen:?}");

    let response = client.read_response().unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("chunk 29\n"),
        "{}",
        response.text()
    );
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `WATCHDOG_PID` naming another process: the interval is not ours, no
/// pings — while `STATUS=` still comes.
#[test]
fn no_pings_when_watchdog_pid_names_another_process() {
    let dir = scratch_dir("systemd-watchdog-pid");
    let notify = NotifySocket::bind(&dir);
    let mut command = Command::new(serve_binary());
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1");
    let mut demo = Demo::spawn(command);
    let pid = demo.pid();
    assert_ne!(pid, 1);
    let mut seen = read_until(&notify, |seen| has(seen, pid, "STATUS=serving"));
    // Fifteen ping periods' worth of silence.
    seen.extend(read_for(&notify, Duration::from_millis(1_500)));
    assert_eq!(pings_from(&seen, pid), 0, "{seen:?}");
    send_signal(pid, Signal::TERM);
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(!notify.rest().iter().any(|m| m == "WATCHDOG=1"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A malformed `WATCHDOG_USEC` is reported, and there are no pings.
#[test]
fn a_malformed_watchdog_usec_is_reported() {
    let dir = scratch_dir("systemd-watchdog-bad");
    let notify = NotifySocket::bind(&dir);
    let mut command = Command::new(serve_binary());
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "2s")
        .env_remove("WATCHDOG_PID");
    let mut demo = Demo::spawn(command);
    let pid = demo.pid();
    demo.wait_stderr("WATCHDOG_USEC=\"2s\" is not a positive number of microseconds");
    let seen = read_until(&notify, |seen| has(seen, pid, "STATUS=serving"));
    assert_eq!(pings_from(&seen, pid), 0, "{seen:?}");
    send_signal(pid, Signal::TERM);
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(!notify.rest().iter().any(|m| m == "WATCHDOG=1"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restart with `WATCHDOG_PID` naming the first process: the successor
/// starts without `WATCHDOG_PID` (unset: "yours") and pings once it is
/// main; the first process pings until its `MAINPID=` and never after.
#[test]
fn the_watchdog_moves_to_the_successor() {
    let dir = scratch_dir("systemd-watchdog-restart");
    let notify = NotifySocket::bind(&dir);
    // `exec` keeps the shell's pid: WATCHDOG_PID names the server.
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
        .arg(serve_binary())
        .args(["--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000");
    let mut demo = Demo::spawn(command);
    let pid = demo.pid();
    let seen = read_until(&notify, |seen| pings_from(seen, pid) >= 2);
    assert!(seen.iter().all(|(from, _)| *from == pid), "{seen:?}");

    send_signal(pid, Signal::HUP);
    let (from, reloading) = notify.next_protocol();
    assert_eq!(from, pid);
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
    let (from, handed) = notify.next_protocol();
    assert_eq!(from, pid);
    let new: u32 = handed
        .strip_prefix("MAINPID=")
        .and_then(|rest| rest.strip_suffix("\nREADY=1"))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{handed:?}"));
    let _ = notify.take_skipped();
    assert!(
        !start_environment(new)
            .iter()
            .any(|e| e.starts_with("WATCHDOG_PID=")),
        "the successor's environment has no WATCHDOG_PID"
    );
    let seen = read_until(&notify, |seen| {
        pings_from(seen, new) >= 3 && has(seen, new, "STATUS=serving")
    });
    assert!(seen.iter().all(|(from, _)| *from == new), "{seen:?}");

    wait_exited(pid);
    send_signal(new, Signal::TERM);
    let seen = read_until(&notify, |seen| has(seen, new, "STOPPING=1"));
    assert!(seen.iter().all(|(from, _)| *from == new), "{seen:?}");
    wait_exited(new);
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Supervisor mode: the supervisor pings and reports `STATUS=`; the
/// generations send nothing; a stop with a response in flight shows
/// `STATUS=draining` (no counts: the connections are the generation's)
/// while the supervisor goes on pinging.
#[test]
fn the_supervisor_pings_for_the_service() {
    let dir = scratch_dir("systemd-watchdog-supervise");
    let notify = NotifySocket::bind(&dir);
    let mut command = Command::new(serve_binary());
    command
        .args(["--supervise", "--listen", "127.0.0.1:0", "--grace", "30"])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut demo = Demo::spawn(command);
    let supervisor = demo.pid();
    let addr = demo.tcp_addrs()[0];
    let seen = read_until(&notify, |seen| {
        pings_from(seen, supervisor) >= 3 && has(seen, supervisor, "STATUS=serving")
    });
    assert_eq!(seen[0], (supervisor, "READY=1".to_owned()), "{seen:?}");
    assert!(seen.iter().all(|(from, _)| *from == supervisor), "{seen:?}");

    let mut client = Client::connect(addr).unwrap();
    client.send_get("/stream?chunks=30&ms=100").unwrap();
    client.read_until_contains(b"chunk 0\n").unwrap();
    send_signal(supervisor, Signal::TERM);
    let seen = read_until(&notify, |seen| {
        seen.iter()
            .position(|(_, m)| m == "STATUS=draining")
            .is_some_and(|at| pings_from(&seen[at..], supervisor) >= 1)
    });
    assert!(has(&seen, supervisor, "STOPPING=1"), "{seen:?}");
    assert!(seen.iter().all(|(from, _)| *from == supervisor), "{seen:?}");
    let response = client.read_response().unwrap();
    assert!(
        response.text().contains("chunk 29\n"),
        "{}",
        response.text()
    );
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
