//! A drain begun on the server's own [`Handle`] while a [`Lifecycle`]
//! runs it is the same stop as [`Lifecycle::shutdown`]'s: the restart
//! machine hears the server's phase whoever began it, so a restart in
//! flight is called off at once (its successor killed and reaped), no
//! restart starts after, and `run` ends once the server drained.
//!
//! In-process: the successor is a shell that never reports ready, so
//! only the stop can end the restart before its (long) readiness deadline.
//! And systemd hears `STOPPING=1` whoever began the drain: a process test,
//! this binary running its own child half under a fake `NOTIFY_SOCKET`.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use lameduck::unix::{Ended, Lifecycle, LifecycleEvent, RestartError, SignalConfig};
use lameduck::unix::{RestartFailure, RestartPhase};
use lameduck::{Event, Handle};
use lameduck_testkit::harness::EVENTUALLY;
use lameduck_tests::load::scratch_dir;
use lameduck_tests::process::{NotifySocket, wait_exited};

/// Who begins the drain.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// [`Handle::shutdown_within`], past the lifecycle.
    Handle,
    /// [`Lifecycle::shutdown`].
    Lifecycle,
}

fn server(threads: usize) -> Handle {
    lameduck::Builder::new()
        .threads(threads)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve_stream(|conn| async move { drop(conn) })
        .unwrap()
}

/// A lifecycle whose successor never reports ready (and whose readiness
/// deadline is far beyond the test's bounds), its events
/// ([`Event::Lifecycle`]) sent to the receiver.
fn lifecycle(handle: Handle) -> (Lifecycle, mpsc::Receiver<LifecycleEvent>) {
    let (events, received) = mpsc::channel();
    let events = std::sync::Mutex::new(events);
    let lifecycle = Lifecycle::builder(handle)
        .signals(SignalConfig::none())
        .notify(false)
        .restart_executable("/bin/sh")
        .restart_args(["-c", "exec sleep 600"])
        .ready_timeout(6 * EVENTUALLY)
        .on_event(move |event| {
            if let Event::Lifecycle(event) = event {
                let _ = events.lock().unwrap().send(event.clone());
            }
        })
        .build();
    (lifecycle, received)
}

/// The next event `pick` takes, within [`EVENTUALLY`].
fn wait_event<T>(
    events: &mpsc::Receiver<LifecycleEvent>,
    what: &str,
    mut pick: impl FnMut(&LifecycleEvent) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + EVENTUALLY;
    // One event per pass; bounded by the deadline.
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = events
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no {what} event: {e}"));
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

fn run_in_thread(lifecycle: &Lifecycle) -> JoinHandle<std::io::Result<Ended>> {
    let runner = lifecycle.clone();
    std::thread::spawn(move || smol::block_on(runner.run()))
}

fn drain_during_a_restart(stop: Stop, threads: usize) {
    let handle = server(threads);
    let (lifecycle, events) = lifecycle(handle.clone());
    let run = run_in_thread(&lifecycle);
    let restarter = lifecycle.clone();
    let restart = std::thread::spawn(move || smol::block_on(restarter.restart()));
    let child = wait_event(&events, "SuccessorStarted", |e| match e {
        LifecycleEvent::SuccessorStarted { pid } => Some(*pid),
        _ => None,
    });
    assert_eq!(lifecycle.restart_phase(), RestartPhase::Spawning);

    match stop {
        Stop::Handle => handle.shutdown_within(EVENTUALLY),
        Stop::Lifecycle => lifecycle.shutdown(),
    }
    // Told before the stop returned, whoever began it.
    assert_eq!(
        lifecycle.restart_phase(),
        RestartPhase::Stopped,
        "{stop:?}, {threads} thread(s): the restart machine heard the stop"
    );
    // Called off, not left to its readiness deadline: killed and reaped.
    let failed = restart.join().unwrap();
    assert_eq!(
        failed,
        Err(RestartError::Failed {
            failure: RestartFailure::Stopping,
            detail: None
        }),
        "{stop:?}, {threads} thread(s)"
    );
    wait_exited(child);
    wait_event(&events, "the abandoned restart", |e| {
        (e.to_string() == "restart abandoned: the server is stopping").then_some(())
    });
    // No restart after (as SIGHUP would ask).
    assert_eq!(
        smol::block_on(lifecycle.restart()),
        Err(RestartError::Stopping),
        "{stop:?}, {threads} thread(s)"
    );
    let ended = run.join().unwrap().unwrap();
    assert_eq!(ended.successor, None);
    assert!(ended.outcome.is_graceful(), "{:?}", ended.outcome);
    assert_eq!(lifecycle.snapshot().restarts_attempted, 1);
}

#[test]
fn a_drain_through_the_handle_calls_off_a_restart_in_flight() {
    drain_during_a_restart(Stop::Handle, 1);
}

#[test]
fn a_drain_through_the_handle_of_a_server_on_two_threads_calls_off_a_restart() {
    drain_during_a_restart(Stop::Handle, 2);
}

/// The reference: the same, through the lifecycle.
#[test]
fn a_drain_through_the_lifecycle_calls_off_a_restart_in_flight() {
    drain_during_a_restart(Stop::Lifecycle, 1);
}

/// A close through the handle stops restarts too; `run` ends at once.
#[test]
fn a_close_through_the_handle_refuses_restarts() {
    let handle = server(1);
    let (lifecycle, _events) = lifecycle(handle.clone());
    let run = run_in_thread(&lifecycle);
    handle.close();
    assert_eq!(lifecycle.restart_phase(), RestartPhase::Stopped);
    assert_eq!(
        smol::block_on(lifecycle.restart()),
        Err(RestartError::Stopping)
    );
    let ended = run.join().unwrap().unwrap();
    assert_eq!(ended.successor, None);
    assert_eq!(lifecycle.snapshot().restarts_attempted, 0);
}

/// A lifecycle made for a server already stopping knows it from the
/// start.
#[test]
fn a_lifecycle_of_a_stopping_server_refuses_restarts() {
    let handle = server(1);
    handle.shutdown_within(Duration::from_secs(60));
    let (lifecycle, _events) = lifecycle(handle);
    assert_eq!(lifecycle.restart_phase(), RestartPhase::Stopped);
    assert_eq!(
        smol::block_on(lifecycle.restart()),
        Err(RestartError::Stopping)
    );
    let ended = smol::block_on(lifecycle.run()).unwrap();
    assert_eq!(ended.successor, None);
    assert!(ended.outcome.is_graceful());
}

/// Set in [`stop_child`]'s environment by [`stopping_is_told_to_systemd`]:
/// who begins its drain (`handle` or `lifecycle`).
const STOP_BY_VAR: &str = "LAMEDUCK_TEST_STOP_BY";

/// The child half of [`stopping_is_told_to_systemd`] (ignored in a plain
/// run: without its parent's `NOTIFY_SOCKET` it would test nothing). A
/// server and its lifecycle (systemd notifications on, the default) report
/// ready, then the drain begins as the parent asked; the child exits 0
/// once the lifecycle ended drained.
#[test]
#[ignore = "the child half of stopping_is_told_to_systemd, run by it"]
fn stop_child() {
    let stop = match std::env::var(STOP_BY_VAR).as_deref() {
        Ok("handle") => Stop::Handle,
        Ok("lifecycle") => Stop::Lifecycle,
        // Not run by its parent (`--include-ignored`): nothing to test.
        Err(std::env::VarError::NotPresent) => return,
        other => panic!("{STOP_BY_VAR} is {other:?}"),
    };
    assert!(std::env::var_os("NOTIFY_SOCKET").is_some());
    let handle = server(1);
    let lifecycle = Lifecycle::builder(handle.clone())
        .signals(SignalConfig::none())
        .build();
    smol::block_on(lifecycle.ready());
    let run = run_in_thread(&lifecycle);
    match stop {
        Stop::Handle => handle.shutdown_within(EVENTUALLY),
        Stop::Lifecycle => lifecycle.shutdown(),
    }
    let ended = run.join().unwrap().unwrap();
    assert!(ended.outcome.is_graceful(), "{:?}", ended.outcome);
}

/// Runs [`stop_child`] with `stop` under a fake `NOTIFY_SOCKET`: the
/// child says `READY=1`, then `STOPPING=1`, and exits 0.
fn stopping_is_told_to_systemd(stop: Stop) {
    let by = match stop {
        Stop::Handle => "handle",
        Stop::Lifecycle => "lifecycle",
    };
    let dir = scratch_dir(&format!("lifecycle-stopping-{by}"));
    let notify = NotifySocket::bind(&dir);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["stop_child", "--exact", "--ignored", "--test-threads=1"])
        .env("NOTIFY_SOCKET", &notify.path)
        .env(STOP_BY_VAR, by)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // `STATUS=` lines (beyond the protocol's steps) are skipped.
    assert_eq!(
        notify.next_protocol(),
        (pid, "READY=1".to_owned()),
        "{stop:?}"
    );
    assert_eq!(
        notify.next_protocol(),
        (pid, "STOPPING=1".to_owned()),
        "{stop:?}"
    );
    wait_exited(pid);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{stop:?}: the child half failed: {status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A drain begun on the `Handle`, past the lifecycle: systemd hears
/// `STOPPING=1` all the same.
#[test]
fn a_drain_through_the_handle_tells_systemd_stopping() {
    stopping_is_told_to_systemd(Stop::Handle);
}

/// The reference: the same, through the lifecycle.
#[test]
fn a_drain_through_the_lifecycle_tells_systemd_stopping() {
    stopping_is_told_to_systemd(Stop::Lifecycle);
}
