//! The supervisor machine in virtual time: which generation serves, the
//! hand-off order, stop escalation at the exact deadline, the exit status,
//! generations dying mid-hand-off, restarts asked during a stop.

#![cfg(unix)]
#![allow(clippy::disallowed_methods)] // Instant::now() as the origin of virtual time

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use lameduck_core::handover::AbortReason;
use lameduck_core::restart::{Refusal, RestartFailure, RestartPhase};
use lameduck_core::supervisor::{
    Generation, KillReason, Notice, Role, Supervisor, SupervisorAction as A, SupervisorConfig,
    SupervisorExit,
};

const READY: Duration = Duration::from_secs(10);
const STOP: Duration = Duration::from_secs(30);

fn code(code: i32) -> ExitStatus {
    ExitStatus::from_raw(code << 8)
}

fn killed() -> ExitStatus {
    ExitStatus::from_raw(9)
}

fn drain(sup: &mut Supervisor) -> Vec<A> {
    std::iter::from_fn(|| sup.poll_action()).collect()
}

struct Clock(Instant);

impl Clock {
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn supervisor(stop_timeout: Option<Duration>) -> (Clock, Supervisor) {
    let t0 = Instant::now();
    let config = SupervisorConfig {
        ready_timeout: READY,
        stop_timeout,
    };
    (Clock(t0), Supervisor::new(config, t0))
}

/// A supervisor whose generation 1 (pid 101) serves.
fn serving(stop_timeout: Option<Duration>) -> (Clock, Supervisor) {
    let (clock, mut sup) = supervisor(stop_timeout);
    assert_eq!(
        drain(&mut sup),
        [A::Start {
            generation: 1,
            state_from: None
        }]
    );
    sup.started(101, clock.at(0)).unwrap();
    sup.ready(101, clock.at(10)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [
            A::WritePidFile,
            A::Notify(Notice::Ready),
            A::Serve {
                generation: Generation {
                    number: 1,
                    pid: 101
                },
                previous: None
            },
        ]
    );
    (clock, sup)
}

/// From `serving`: generation 2 (pid 102) serves, 101 drains.
fn handed_off(stop_timeout: Option<Duration>) -> (Clock, Supervisor) {
    let (clock, mut sup) = serving(stop_timeout);
    assert_eq!(sup.restart(clock.at(100)), Ok(2));
    sup.started(102, clock.at(100)).unwrap();
    sup.ready(102, clock.at(200)).unwrap();
    drain(&mut sup);
    (clock, sup)
}

#[test]
fn a_restart_hands_off_in_order() {
    let (clock, mut sup) = serving(None);
    assert_eq!(sup.restart(clock.at(100)), Ok(2));
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Reloading),
            A::Start {
                generation: 2,
                state_from: Some(101)
            },
        ]
    );
    sup.started(102, clock.at(110)).unwrap();
    assert_eq!(
        sup.starting(),
        Some(Generation {
            number: 2,
            pid: 102
        })
    );
    assert!(drain(&mut sup).is_empty());
    sup.ready(102, clock.at(200)).unwrap();
    let second = Generation {
        number: 2,
        pid: 102,
    };
    // No second pid file: the supervisor's pid did not change.
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Ready),
            A::Serve {
                generation: second,
                previous: Some(101)
            },
        ]
    );
    assert_eq!(sup.serving(), Some(second));
    assert_eq!(
        sup.draining(),
        [Generation {
            number: 1,
            pid: 101
        }]
    );
    assert_eq!(sup.restart_phase(), RestartPhase::Running);
    assert_eq!(sup.poll_timeout(), None);
    // The drained generation exits: nothing follows.
    assert_eq!(sup.exited(101, code(0), clock.at(300)), Ok(Role::Draining));
    assert!(drain(&mut sup).is_empty());
    assert!(sup.draining().is_empty());
    // And the next restart asks the new one for the state.
    assert_eq!(sup.restart(clock.at(400)), Ok(3));
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Reloading),
            A::Start {
                generation: 3,
                state_from: Some(102)
            },
        ]
    );
}

#[test]
fn a_burst_of_restarts_gives_one_generation() {
    let (clock, mut sup) = serving(None);
    assert_eq!(sup.restart(clock.at(100)), Ok(2));
    for _ in 0..50 {
        assert_eq!(sup.restart(clock.at(101)), Err(Refusal::InProgress));
    }
    let starts = drain(&mut sup)
        .into_iter()
        .filter(|a| matches!(a, A::Start { .. }))
        .count();
    assert_eq!(starts, 1);
    assert_eq!(sup.generations(), 2);
}

#[test]
fn no_restart_before_the_first_generation_serves() {
    let (clock, mut sup) = supervisor(None);
    drain(&mut sup);
    assert_eq!(sup.restart(clock.at(0)), Err(Refusal::InProgress));
    sup.started(101, clock.at(1)).unwrap();
    assert_eq!(sup.restart(clock.at(2)), Err(Refusal::InProgress));
    assert!(drain(&mut sup).is_empty());
}

#[test]
fn stop_escalates_to_kill_at_the_exact_deadline() {
    let (clock, mut sup) = handed_off(Some(STOP));
    sup.stop(clock.at(1_000));
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Stopping),
            A::Forward { pid: 102 },
            A::Forward { pid: 101 },
        ]
    );
    let deadline = clock.at(31_000);
    assert_eq!(sup.poll_timeout(), Some(deadline));
    // One nanosecond early: nothing.
    sup.handle_timeout(deadline - Duration::from_nanos(1));
    assert!(drain(&mut sup).is_empty());
    sup.handle_timeout(deadline);
    assert_eq!(
        drain(&mut sup),
        [
            A::Kill {
                pid: 102,
                reason: KillReason::StopDeadline
            },
            A::Kill {
                pid: 101,
                reason: KillReason::StopDeadline
            },
        ]
    );
    // Once: the kills are final.
    assert_eq!(sup.poll_timeout(), None);
    sup.handle_timeout(clock.at(60_000));
    assert!(drain(&mut sup).is_empty());
    assert_eq!(
        sup.exited(101, killed(), clock.at(31_001)),
        Ok(Role::Draining)
    );
    assert!(drain(&mut sup).is_empty(), "the serving one still runs");
    assert_eq!(
        sup.exited(102, killed(), clock.at(31_002)),
        Ok(Role::Serving)
    );
    assert_eq!(drain(&mut sup), [A::Exit(SupervisorExit::Status(killed()))]);
}

#[test]
fn without_a_stop_deadline_nothing_is_killed() {
    let (clock, mut sup) = serving(None);
    sup.stop(clock.at(1_000));
    drain(&mut sup);
    assert_eq!(sup.poll_timeout(), None);
    sup.handle_timeout(clock.at(10_000_000));
    assert!(drain(&mut sup).is_empty());
    assert_eq!(
        sup.exited(101, code(0), clock.at(10_000_001)),
        Ok(Role::Serving)
    );
    assert_eq!(drain(&mut sup), [A::Exit(SupervisorExit::Status(code(0)))]);
}

#[test]
fn a_generation_gone_before_the_deadline_is_not_killed() {
    let (clock, mut sup) = handed_off(Some(STOP));
    sup.stop(clock.at(1_000));
    drain(&mut sup);
    sup.exited(101, code(0), clock.at(2_000)).unwrap();
    sup.handle_timeout(clock.at(31_000));
    assert_eq!(
        drain(&mut sup),
        [A::Kill {
            pid: 102,
            reason: KillReason::StopDeadline
        }]
    );
}

#[test]
fn the_serving_generations_exit_stops_the_supervisor_with_its_status() {
    let (clock, mut sup) = handed_off(Some(STOP));
    // The serving generation crashes; the draining one still drains.
    assert_eq!(sup.exited(102, code(3), clock.at(1_000)), Ok(Role::Serving));
    // Nothing forwarded: no signal came; the draining one ends on its own.
    assert_eq!(drain(&mut sup), [A::Notify(Notice::Stopping)]);
    assert!(sup.is_stopping());
    assert_eq!(sup.serving(), None);
    // The stop deadline runs from the exit.
    assert_eq!(sup.poll_timeout(), Some(clock.at(31_000)));
    // The draining one's status does not count.
    assert_eq!(
        sup.exited(101, code(0), clock.at(2_000)),
        Ok(Role::Draining)
    );
    assert_eq!(drain(&mut sup), [A::Exit(SupervisorExit::Status(code(3)))]);
    assert!(sup.is_exited());
    assert_eq!(sup.poll_timeout(), None);
}

#[test]
fn a_stop_signals_every_time_but_stops_once() {
    let (clock, mut sup) = serving(Some(STOP));
    sup.stop(clock.at(1_000));
    assert_eq!(
        drain(&mut sup),
        [A::Notify(Notice::Stopping), A::Forward { pid: 101 }]
    );
    // A second SIGTERM: forwarded (the generation closes at once); the
    // deadline stays the first stop's.
    sup.stop(clock.at(5_000));
    assert_eq!(drain(&mut sup), [A::Forward { pid: 101 }]);
    assert_eq!(sup.poll_timeout(), Some(clock.at(31_000)));
}

#[test]
fn a_restart_asked_during_a_stop_is_refused() {
    let (clock, mut sup) = serving(Some(STOP));
    sup.stop(clock.at(1_000));
    drain(&mut sup);
    assert_eq!(sup.restart(clock.at(1_001)), Err(Refusal::Stopping));
    assert!(drain(&mut sup).is_empty());
    sup.exited(101, code(0), clock.at(2_000)).unwrap();
    assert_eq!(drain(&mut sup), [A::Exit(SupervisorExit::Status(code(0)))]);
    assert_eq!(sup.restart(clock.at(3_000)), Err(Refusal::Stopping));
}

#[test]
fn a_stop_during_a_restart_kills_the_starting_generation() {
    let (clock, mut sup) = serving(Some(STOP));
    sup.restart(clock.at(100)).unwrap();
    sup.started(102, clock.at(100)).unwrap();
    drain(&mut sup);
    sup.stop(clock.at(200));
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Stopping),
            A::Kill {
                pid: 102,
                reason: KillReason::Attempt
            },
            A::Forward { pid: 101 },
        ]
    );
    // Its readiness, had it come meanwhile, is refused.
    assert_eq!(
        sup.ready(102, clock.at(201)),
        Err(Refusal::UnknownChild(102))
    );
    // The failure is reported once it is reaped; no READY=1 while stopping.
    assert_eq!(sup.exited(102, killed(), clock.at(300)), Ok(Role::Starting));
    assert_eq!(
        drain(&mut sup),
        [A::RestartFailed(RestartFailure::Stopping)]
    );
    sup.exited(101, code(0), clock.at(400)).unwrap();
    assert_eq!(drain(&mut sup), [A::Exit(SupervisorExit::Status(code(0)))]);
}

#[test]
fn the_serving_generation_dying_mid_restart_stops_and_kills_the_new_one() {
    let (clock, mut sup) = serving(Some(STOP));
    sup.restart(clock.at(100)).unwrap();
    sup.started(102, clock.at(100)).unwrap();
    drain(&mut sup);
    assert_eq!(sup.exited(101, code(1), clock.at(150)), Ok(Role::Serving));
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Stopping),
            A::Kill {
                pid: 102,
                reason: KillReason::Attempt
            },
        ]
    );
    // Not handed off to: the new one is not wanted any more.
    assert_eq!(
        sup.ready(102, clock.at(160)),
        Err(Refusal::UnknownChild(102))
    );
    sup.exited(102, killed(), clock.at(170)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [
            A::RestartFailed(RestartFailure::Stopping),
            A::Exit(SupervisorExit::Status(code(1))),
        ]
    );
}

#[test]
fn the_new_generation_dying_right_after_the_hand_off_stops_with_its_status() {
    let (clock, mut sup) = handed_off(Some(STOP));
    // 102 serves, 101 was told to hand off and drains.
    assert_eq!(sup.exited(102, code(2), clock.at(250)), Ok(Role::Serving));
    assert_eq!(drain(&mut sup), [A::Notify(Notice::Stopping)]);
    assert_eq!(sup.restart(clock.at(260)), Err(Refusal::Stopping));
    sup.exited(101, code(0), clock.at(3_000)).unwrap();
    assert_eq!(drain(&mut sup), [A::Exit(SupervisorExit::Status(code(2)))]);
}

#[test]
fn a_new_generation_exiting_before_ready_rolls_back() {
    let (clock, mut sup) = serving(None);
    sup.restart(clock.at(100)).unwrap();
    sup.started(102, clock.at(100)).unwrap();
    drain(&mut sup);
    assert_eq!(sup.exited(102, code(1), clock.at(150)), Ok(Role::Starting));
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Ready),
            A::RestartFailed(RestartFailure::ChildExited { child: 102 }),
        ]
    );
    assert_eq!(sup.serving().map(|g| g.pid), Some(101));
    assert_eq!(sup.restart(clock.at(200)), Ok(3));
}

#[test]
fn not_ready_in_time_is_killed_and_reported_once_reaped() {
    let (clock, mut sup) = serving(None);
    sup.restart(clock.at(100)).unwrap();
    sup.started(102, clock.at(100)).unwrap();
    drain(&mut sup);
    let deadline = clock.at(100) + READY;
    assert_eq!(sup.poll_timeout(), Some(deadline));
    sup.handle_timeout(deadline - Duration::from_nanos(1));
    assert!(drain(&mut sup).is_empty());
    sup.handle_timeout(deadline);
    assert_eq!(
        drain(&mut sup),
        [A::Kill {
            pid: 102,
            reason: KillReason::Attempt
        }]
    );
    // Not over until reaped: no new restart yet, and its late readiness
    // is refused.
    assert_eq!(sup.restart(deadline), Err(Refusal::InProgress));
    assert_eq!(sup.ready(102, deadline), Err(Refusal::UnknownChild(102)));
    sup.exited(102, killed(), clock.at(10_200)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Ready),
            A::RestartFailed(RestartFailure::NotReady { child: Some(102) }),
        ]
    );
    assert_eq!(sup.restart(clock.at(10_300)), Ok(3));
}

#[test]
fn a_refused_state_kills_the_new_generation() {
    let (clock, mut sup) = serving(None);
    sup.restart(clock.at(100)).unwrap();
    sup.started(102, clock.at(100)).unwrap();
    drain(&mut sup);
    sup.aborted(102, AbortReason::Refused, clock.at(150))
        .unwrap();
    assert_eq!(
        drain(&mut sup),
        [A::Kill {
            pid: 102,
            reason: KillReason::Attempt
        }]
    );
    sup.exited(102, killed(), clock.at(160)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Ready),
            A::RestartFailed(RestartFailure::State {
                child: 102,
                reason: AbortReason::Refused
            }),
        ]
    );
}

#[test]
fn a_start_that_fails_rolls_back_at_once() {
    let (clock, mut sup) = serving(None);
    sup.restart(clock.at(100)).unwrap();
    drain(&mut sup);
    sup.start_failed(clock.at(100)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Ready),
            A::RestartFailed(RestartFailure::SpawnFailed),
        ]
    );
    assert_eq!(sup.start_failed(clock.at(101)), Err(Refusal::Unexpected));
}

#[test]
fn a_start_reported_after_its_deadline_is_killed() {
    let (clock, mut sup) = serving(None);
    sup.restart(clock.at(100)).unwrap();
    drain(&mut sup);
    sup.handle_timeout(clock.at(100) + READY);
    assert!(drain(&mut sup).is_empty(), "reported once it is over");
    sup.started(102, clock.at(20_000)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [A::Kill {
            pid: 102,
            reason: KillReason::Attempt
        }]
    );
    sup.exited(102, killed(), clock.at(20_001)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [
            A::Notify(Notice::Ready),
            A::RestartFailed(RestartFailure::NotReady { child: None }),
        ]
    );
}

#[test]
fn the_first_generations_failure_ends_the_supervisor() {
    let (clock, mut sup) = supervisor(None);
    drain(&mut sup);
    sup.started(101, clock.at(0)).unwrap();
    assert_eq!(sup.exited(101, code(1), clock.at(5)), Ok(Role::Starting));
    assert_eq!(
        drain(&mut sup),
        [A::Exit(SupervisorExit::FirstFailed(
            RestartFailure::ChildExited { child: 101 }
        ))]
    );
    assert!(!sup.has_served());
}

#[test]
fn the_first_generation_not_ready_in_time_ends_the_supervisor_once_reaped() {
    let (clock, mut sup) = supervisor(None);
    drain(&mut sup);
    sup.started(101, clock.at(0)).unwrap();
    sup.handle_timeout(clock.at(0) + READY);
    assert_eq!(
        drain(&mut sup),
        [A::Kill {
            pid: 101,
            reason: KillReason::Attempt
        }]
    );
    sup.exited(101, killed(), clock.at(10_001)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [A::Exit(SupervisorExit::FirstFailed(
            RestartFailure::NotReady { child: Some(101) }
        ))]
    );
}

#[test]
fn a_stop_before_the_first_generation_is_ready() {
    let (clock, mut sup) = supervisor(Some(STOP));
    drain(&mut sup);
    // Before its start is even reported.
    sup.stop(clock.at(1));
    assert_eq!(drain(&mut sup), [A::Notify(Notice::Stopping)]);
    sup.started(101, clock.at(2)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [A::Kill {
            pid: 101,
            reason: KillReason::Attempt
        }]
    );
    sup.exited(101, killed(), clock.at(3)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [A::Exit(SupervisorExit::StoppedBeforeReady)]
    );
}

#[test]
fn a_stop_before_a_failed_first_start_is_reported() {
    let (clock, mut sup) = supervisor(None);
    drain(&mut sup);
    sup.stop(clock.at(1));
    drain(&mut sup);
    sup.start_failed(clock.at(2)).unwrap();
    assert_eq!(
        drain(&mut sup),
        [A::Exit(SupervisorExit::StoppedBeforeReady)]
    );
}

#[test]
fn after_the_exit_everything_is_refused() {
    let (clock, mut sup) = serving(Some(STOP));
    sup.exited(101, code(0), clock.at(1)).unwrap();
    drain(&mut sup);
    assert!(sup.is_exited());
    sup.stop(clock.at(2));
    sup.handle_timeout(clock.at(100_000));
    assert_eq!(sup.restart(clock.at(3)), Err(Refusal::Stopping));
    assert_eq!(
        sup.exited(101, code(0), clock.at(4)),
        Err(Refusal::UnknownChild(101))
    );
    assert_eq!(sup.started(5, clock.at(5)), Err(Refusal::Unexpected));
    assert!(drain(&mut sup).is_empty());
    assert_eq!(sup.poll_timeout(), None);
}

#[test]
fn time_never_goes_backwards() {
    let (clock, mut sup) = serving(Some(STOP));
    sup.stop(clock.at(1_000));
    drain(&mut sup);
    sup.handle_timeout(clock.at(31_000));
    assert_eq!(drain(&mut sup).len(), 1);
    // An earlier `now` counts as the latest seen: no second kill, no panic.
    sup.handle_timeout(clock.at(0));
    assert!(drain(&mut sup).is_empty());
}
