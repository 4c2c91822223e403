//! `Server::hand_off`: the shutdown of a process whose listeners a
//! restart's successor took over.

#![allow(clippy::disallowed_methods)] // Instant::now() as the origin of virtual time

use std::time::{Duration, Instant};

use lameduck_core::{Action, CloseReason, Config, Error, HookStage, Phase, Server};

fn drain(server: &mut Server) -> Vec<Action> {
    std::iter::from_fn(|| server.poll_action()).collect()
}

#[test]
fn idle_connections_linger_then_the_drain_closes_them() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    let (a, b) = (
        server.accept(l, at(0)).unwrap(),
        server.accept(l, at(0)).unwrap(),
    );
    for conn in [a, b] {
        server.request_started(conn, at(1)).unwrap();
        server.response_done(conn, at(2)).unwrap();
    }
    drain(&mut server);
    server
        .hand_off(at(10), Duration::from_millis(500), Some(at(30_000)))
        .unwrap();
    assert_eq!(
        drain(&mut server),
        vec![
            Action::ReleaseListener(l),
            Action::PhaseChanged(Phase::HandedOff)
        ]
    );
    server.listener_closed(l).unwrap();
    assert_eq!(server.poll_timeout(), Some(at(510)));
    // `a` sends its next request during the linger: answered, then closed.
    server.request_started(a, at(100)).unwrap();
    server.response_done(a, at(101)).unwrap();
    assert_eq!(
        drain(&mut server),
        vec![Action::CloseConn {
            conn: a,
            reason: CloseReason::KeepAliveOff
        }]
    );
    // `b` stays idle: closed when the linger ends, and the drain completes.
    server.handle_timeout(at(509));
    assert!(drain(&mut server).is_empty());
    server.handle_timeout(at(510));
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: b,
        reason: CloseReason::Drain
    }));
    assert!(matches!(actions.last(), Some(Action::Done(o)) if o.is_graceful()));
}

#[test]
fn no_linger_drains_at_once_and_config_lame_duck_does_not_apply() {
    let t0 = Instant::now();
    let config = Config {
        lame_duck: Duration::from_secs(10),
        ..Config::default()
    };
    let mut server = Server::new(config, t0);
    server.hand_off(t0, Duration::ZERO, None).unwrap();
    assert_eq!(server.phase(), Phase::Closed);
}

#[test]
fn lame_duck_hooks_do_not_run_drain_hooks_do() {
    let t0 = Instant::now();
    let config = Config {
        shutdown_hooks: true,
        ..Config::default()
    };
    let mut server = Server::new(config, t0);
    server.hand_off(t0, Duration::from_secs(1), None).unwrap();
    let actions = drain(&mut server);
    assert!(
        !actions.contains(&Action::RunHooks(HookStage::LameDuck)),
        "{actions:?}"
    );
    server.handle_timeout(t0 + Duration::from_secs(1));
    let actions = drain(&mut server);
    assert!(
        actions.contains(&Action::RunHooks(HookStage::Drain)),
        "{actions:?}"
    );
}

#[test]
fn after_a_shutdown_began_the_hand_off_is_refused_and_changes_nothing() {
    let t0 = Instant::now();
    let config = Config {
        lame_duck: Duration::from_secs(1),
        ..Config::default()
    };
    for shutdown_first in [true, false] {
        let mut server = Server::new(config.clone(), t0);
        let l = server.add_listener().unwrap();
        let c = server.accept(l, t0).unwrap();
        server.request_started(c, t0).unwrap();
        if shutdown_first {
            server.shutdown(t0, Some(t0 + Duration::from_secs(30)));
        } else {
            server.close(t0);
        }
        let before = drain(&mut server);
        let phase = server.phase();
        assert_eq!(
            server.hand_off(
                t0,
                Duration::from_secs(5),
                Some(t0 + Duration::from_secs(2))
            ),
            Err(Error::ServerClosed)
        );
        assert!(drain(&mut server).is_empty(), "after {before:?}");
        assert_eq!(server.phase(), phase);
        if shutdown_first {
            assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        }
    }
}

#[test]
fn a_shutdown_after_the_hand_off_closes_no_listener_and_only_brings_the_deadline_earlier() {
    let t0 = Instant::now();
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    let c = server.accept(l, t0).unwrap();
    server.request_started(c, t0).unwrap();
    server
        .hand_off(
            t0,
            Duration::from_secs(1),
            Some(t0 + Duration::from_secs(30)),
        )
        .unwrap();
    drain(&mut server);
    server.shutdown(t0, Some(t0 + Duration::from_secs(2)));
    assert!(drain(&mut server).is_empty());
    assert_eq!(server.phase(), Phase::HandedOff);
    // The linger still ends the hand-off's delay; the deadline is earlier.
    server.handle_timeout(t0 + Duration::from_secs(1));
    let actions = drain(&mut server);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::CloseListener(_))),
        "a released listener is never closed by the drain: {actions:?}"
    );
    assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(2)));
}

#[test]
fn an_accept_that_raced_the_release_is_served_and_the_drain_waits_for_the_listener() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    // No linger: draining at once, with nothing tracked — yet not done,
    // because the released listener's accept loop may still hand in a
    // connection.
    server.hand_off(at(0), Duration::ZERO, None).unwrap();
    drain(&mut server);
    assert_eq!(server.phase(), Phase::Draining);
    assert!(!server.is_done());
    let raced = server.accept(l, at(1)).unwrap();
    server.listener_closed(l).unwrap();
    assert!(!server.is_done(), "the raced connection is tracked");
    assert_eq!(server.accept(l, at(2)), Err(Error::ServerClosed));
    server.request_started(raced, at(3)).unwrap();
    server.response_done(raced, at(4)).unwrap();
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: raced,
        reason: CloseReason::KeepAliveOff
    }));
    assert!(matches!(actions.last(), Some(Action::Done(o)) if o.is_graceful()));
}

#[test]
fn a_released_listener_reported_closed_completes_an_empty_drain_in_that_call() {
    let t0 = Instant::now();
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    server.hand_off(t0, Duration::ZERO, None).unwrap();
    drain(&mut server);
    server.listener_closed(l).unwrap();
    assert!(matches!(drain(&mut server).last(), Some(Action::Done(_))));
    assert!(server.is_done());
}

#[test]
fn a_kept_alive_response_closes_once_draining_and_idles_while_serving() {
    let t0 = Instant::now();
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    let serving = server.accept(l, t0).unwrap();
    server.request_started(serving, t0).unwrap();
    server.response_done_kept_alive(serving, t0).unwrap();
    assert_eq!(
        server.conn_state(serving),
        Ok(lameduck_core::ConnState::Idle)
    );
    let draining = server.accept(l, t0).unwrap();
    server.request_started(draining, t0).unwrap();
    server.shutdown(t0, None);
    drain(&mut server);
    // No lame-duck delay: draining at once, so the promise cannot be kept.
    server.response_done_kept_alive(draining, t0).unwrap();
    assert_eq!(
        drain(&mut server).first(),
        Some(&Action::CloseConn {
            conn: draining,
            reason: CloseReason::KeepAliveOff
        })
    );
    assert!(server.is_done());
}
