//! Multiplexed connections (HTTP/2): Active while any stream is open, Idle
//! at zero streams (Go's rule), and the drain treating them like any other
//! connection — in virtual time.

#![allow(clippy::disallowed_methods)] // Instant::now() as the origin of virtual time

use std::time::{Duration, Instant};

use lameduck_core::{
    Action, CloseReason, Completion, Config, ConnEvent, ConnState, Error, Phase, Server,
};

fn drain(server: &mut Server) -> Vec<Action> {
    std::iter::from_fn(|| server.poll_action()).collect()
}

#[test]
fn active_while_any_stream_is_open_idle_at_zero() {
    let t0 = Instant::now();
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    let c = server.accept(l, t0).unwrap();
    for _ in 0..3 {
        server.stream_opened(c, t0).unwrap();
    }
    assert_eq!(server.counts().active, 1, "one connection, three streams");
    for left in [2, 1] {
        server.stream_closed(c, t0).unwrap();
        assert_eq!(server.conn_state(c), Ok(ConnState::Active), "{left} open");
    }
    server.stream_closed(c, t0).unwrap();
    assert_eq!(server.conn_state(c), Ok(ConnState::Idle));
    assert_eq!(server.counts().idle, 1);
    // Idle again, a new stream makes it Active again.
    server.stream_opened(c, t0).unwrap();
    assert_eq!(server.conn_state(c), Ok(ConnState::Active));
}

#[test]
fn one_request_inputs_and_streams_do_not_mix_while_open() {
    let t0 = Instant::now();
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    let streams = server.accept(l, t0).unwrap();
    server.stream_opened(streams, t0).unwrap();
    let invalid = |event| Error::InvalidTransition {
        conn: streams,
        state: ConnState::Active,
        event,
    };
    assert_eq!(
        server.response_done(streams, t0),
        Err(invalid(ConnEvent::ResponseDone))
    );
    assert_eq!(
        server.request_started(streams, t0),
        Err(invalid(ConnEvent::RequestStarted))
    );
    let request = server.accept(l, t0).unwrap();
    server.request_started(request, t0).unwrap();
    assert_eq!(
        server.stream_opened(request, t0),
        Err(Error::InvalidTransition {
            conn: request,
            state: ConnState::Active,
            event: ConnEvent::StreamOpened
        })
    );
    let idle = server.accept(l, t0).unwrap();
    assert_eq!(
        server.stream_closed(idle, t0),
        Err(Error::InvalidTransition {
            conn: idle,
            state: ConnState::New,
            event: ConnEvent::StreamClosed
        })
    );
}

/// At the drain: an idle multiplexed connection is closed at once (the
/// adapter sends GOAWAY and closes); an active one is told to finish
/// (GOAWAY, the graceful two-step), may still get a stream that was on
/// its way in, and closes — completing the drain — when its last stream
/// completes.
#[test]
fn the_drain_closes_idle_ones_and_finishes_active_ones() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    let (idle, busy) = (
        server.accept(l, at(0)).unwrap(),
        server.accept(l, at(0)).unwrap(),
    );
    server.stream_opened(idle, at(1)).unwrap();
    server.stream_closed(idle, at(2)).unwrap();
    server.stream_opened(busy, at(3)).unwrap();
    server.shutdown(at(10), Some(at(30_000)));
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: idle,
        reason: CloseReason::Drain
    }));
    assert!(actions.contains(&Action::FinishAndClose(busy)));
    assert!(!server.keep_alive());
    // A stream already on its way in when GOAWAY went out.
    server.stream_opened(busy, at(11)).unwrap();
    // The idle one is gone: a stream there finds it closed.
    assert_eq!(
        server.stream_opened(idle, at(11)),
        Err(Error::ConnClosed(idle))
    );
    server.stream_closed(busy, at(20)).unwrap();
    assert!(!server.is_done(), "one stream still open");
    server.stream_closed(busy, at(25)).unwrap();
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: busy,
        reason: CloseReason::KeepAliveOff
    }));
    assert!(matches!(actions.last(), Some(Action::Done(o)) if o.completion == Completion::Drained));
}

/// The deadline force-closes a connection with a stuck stream, and the
/// outcome counts it.
#[test]
fn the_deadline_cuts_a_stuck_stream() {
    let t0 = Instant::now();
    let mut server = Server::new(Config::default(), t0);
    let l = server.add_listener().unwrap();
    let c = server.accept(l, t0).unwrap();
    server.stream_opened(c, t0).unwrap();
    server.stream_opened(c, t0).unwrap();
    server.stream_closed(c, t0).unwrap();
    let deadline = t0 + Duration::from_secs(2);
    server.shutdown(t0, Some(deadline));
    drain(&mut server);
    server.handle_timeout(deadline - Duration::from_nanos(1));
    assert!(drain(&mut server).is_empty());
    server.handle_timeout(deadline);
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: c,
        reason: CloseReason::Deadline
    }));
    let Some(Action::Done(outcome)) = actions.last() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::DeadlineExpired, 1)
    );
}

/// Lame duck over a multiplexed connection: keep-alive goes off and the
/// active connection is told to finish; an idle one stays until the drain.
#[test]
fn lame_duck_finishes_active_ones_and_keeps_idle_ones_until_the_drain() {
    let t0 = Instant::now();
    let config = Config {
        lame_duck: Duration::from_secs(1),
        ..Config::default()
    };
    let mut server = Server::new(config, t0);
    let l = server.add_listener().unwrap();
    let (idle, busy) = (server.accept(l, t0).unwrap(), server.accept(l, t0).unwrap());
    server.stream_opened(idle, t0).unwrap();
    server.stream_closed(idle, t0).unwrap();
    server.stream_opened(busy, t0).unwrap();
    server.shutdown(t0, None);
    let actions = drain(&mut server);
    assert_eq!(server.phase(), Phase::LameDuck);
    assert!(actions.contains(&Action::FinishAndClose(busy)));
    assert_eq!(server.conn_state(idle), Ok(ConnState::Idle));
    // The idle one still gets a stream in the delay; with keep-alive off it
    // closes once that stream completes.
    server.stream_opened(idle, t0).unwrap();
    server
        .stream_closed(idle, t0 + Duration::from_millis(5))
        .unwrap();
    assert_eq!(server.conn_state(idle), Ok(ConnState::Closed));
    server
        .stream_closed(busy, t0 + Duration::from_millis(10))
        .unwrap();
    server.handle_timeout(t0 + Duration::from_secs(1));
    assert!(server.is_done());
}

/// The idle timeout applies to a multiplexed connection at zero streams,
/// measured from its last stream's end; none applies while a stream is open.
#[test]
fn the_idle_timeout_counts_from_the_last_stream() {
    let t0 = Instant::now();
    let config = Config {
        idle_timeout: Some(Duration::from_secs(5)),
        header_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    };
    let mut server = Server::new(config, t0);
    let l = server.add_listener().unwrap();
    let c = server.accept(l, t0).unwrap();
    server.stream_opened(c, t0).unwrap();
    // No header timeout on a stream: its head arrives whole.
    server.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(server.conn_state(c), Ok(ConnState::Active));
    let end = t0 + Duration::from_secs(31);
    server.stream_closed(c, end).unwrap();
    assert_eq!(server.poll_timeout(), Some(end + Duration::from_secs(5)));
    server.handle_timeout(end + Duration::from_secs(5) - Duration::from_nanos(1));
    assert_eq!(server.conn_state(c), Ok(ConnState::Idle));
    server.handle_timeout(end + Duration::from_secs(5));
    assert!(drain(&mut server).contains(&Action::CloseConn {
        conn: c,
        reason: CloseReason::IdleTimeout
    }));
}
