//! `Server::hand_off`: the shutdown of a process whose listeners a
//! restart's successor took over.

#![allow(clippy::disallowed_methods)] // Instant::now() as the origin of virtual time

use std::time::{Duration, Instant};

use lameduck_core::{Action, CloseReason, Config, HookStage, Phase, Server};

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
    server.listener_closed(l).unwrap();
    drain(&mut server);
    server.hand_off(at(10), Duration::from_millis(500), Some(at(30_000)));
    assert_eq!(
        drain(&mut server),
        vec![Action::PhaseChanged(Phase::LameDuck)]
    );
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
    server.hand_off(t0, Duration::ZERO, None);
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
    server.hand_off(t0, Duration::from_secs(1), None);
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
fn after_a_shutdown_it_only_brings_the_deadline_earlier() {
    let t0 = Instant::now();
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    let c = server.accept(l, t0).unwrap();
    server.request_started(c, t0).unwrap();
    server.shutdown(t0, Some(t0 + Duration::from_secs(30)));
    server.hand_off(
        t0,
        Duration::from_secs(5),
        Some(t0 + Duration::from_secs(2)),
    );
    assert_eq!(server.phase(), Phase::Draining);
    assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(2)));
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
