//! The drain notice ([`Action::NotifyActive`]): when the handlers of a
//! connection's requests are told that the drain began, under virtual time.
//! It comes when the drain begins — not at a lame duck's or a hand-off's
//! start — to every connection in a request, and at once to one whose
//! request (or first stream) starts while draining; once per connection.

use std::time::{Duration, Instant};

use lameduck_core::{Action, CloseReason, Config, ConnId, Phase, Server};

struct Clock {
    t0: Instant,
}

impl Clock {
    #[allow(clippy::disallowed_methods)] // the one clock read: the origin of virtual time
    fn new() -> Self {
        Clock { t0: Instant::now() }
    }

    fn ms(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
}

fn drain(server: &mut Server) -> Vec<Action> {
    std::iter::from_fn(|| server.poll_action()).collect()
}

fn notified(actions: &[Action]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::NotifyActive(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn server(config: Config) -> (Clock, Server, lameduck_core::ListenerId) {
    let clock = Clock::new();
    let mut server = Server::new(config, clock.t0);
    let l = server.add_listener().unwrap();
    (clock, server, l)
}

#[test]
fn the_drain_tells_every_connection_in_a_request_and_no_other() {
    let (clock, mut server, l) = server(Config::default());
    let t = clock.ms(0);
    let new = server.accept(l, t).unwrap();
    let idle = server.accept(l, t).unwrap();
    server.request_started(idle, t).unwrap();
    server.response_done(idle, t).unwrap();
    let head = server.accept(l, t).unwrap();
    server.request_started(head, t).unwrap();
    let body = server.accept(l, t).unwrap();
    server.request_started(body, t).unwrap();
    server.headers_complete(body, t).unwrap();
    let answering = server.accept(l, t).unwrap();
    server.request_started(answering, t).unwrap();
    server.body_complete(answering, t).unwrap();
    let streams = server.accept(l, t).unwrap();
    server.stream_opened(streams, t).unwrap();
    server.stream_opened(streams, t).unwrap();
    let hijacked = server.accept(l, t).unwrap();
    server.request_started(hijacked, t).unwrap();
    server.hijack(hijacked, t).unwrap();
    drain(&mut server);

    server.shutdown(clock.ms(10), None);
    let actions = drain(&mut server);
    let mut told = notified(&actions);
    told.sort();
    assert_eq!(told, vec![head, body, answering, streams]);
    assert!(actions.contains(&Action::NotifyHijacked(hijacked)));
    assert!(actions.contains(&Action::CloseConn {
        conn: idle,
        reason: CloseReason::Drain
    }));
    assert!(!notified(&actions).contains(&new));
}

#[test]
fn a_lame_duck_keeps_serving_and_the_notice_waits_for_the_drain() {
    let config = Config {
        lame_duck: Duration::from_secs(2),
        ..Config::default()
    };
    let (clock, mut server, l) = server(config);
    let early = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(early, clock.ms(0)).unwrap();
    let late = server.accept(l, clock.ms(0)).unwrap();

    server.shutdown(clock.ms(100), None);
    let actions = drain(&mut server);
    assert!(
        actions.contains(&Action::FinishAndClose(early)),
        "keep-alive goes off at once"
    );
    assert_eq!(notified(&actions), vec![], "no notice in the lame duck");
    // A request that starts in the lame duck is not told either.
    server.request_started(late, clock.ms(500)).unwrap();
    assert_eq!(notified(&drain(&mut server)), vec![]);
    server.handle_timeout(clock.ms(2_099));
    assert_eq!(server.phase(), Phase::LameDuck);
    assert_eq!(notified(&drain(&mut server)), vec![]);

    server.handle_timeout(clock.ms(2_100));
    assert_eq!(server.phase(), Phase::Draining);
    let mut told = notified(&drain(&mut server));
    told.sort();
    assert_eq!(told, vec![early, late], "both told as the drain begins");
}

#[test]
fn a_request_that_starts_while_draining_is_told_before_the_call_returns() {
    let (clock, mut server, l) = server(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(10), None);
    assert_eq!(
        notified(&drain(&mut server)),
        vec![],
        "New: nothing to tell"
    );

    server.request_started(c, clock.ms(20)).unwrap();
    assert_eq!(drain(&mut server), vec![Action::NotifyActive(c)]);
    // Once per connection: the rest of its request adds nothing.
    server.headers_complete(c, clock.ms(21)).unwrap();
    server.body_complete(c, clock.ms(22)).unwrap();
    assert_eq!(notified(&drain(&mut server)), vec![]);
    server.response_done(c, clock.ms(30)).unwrap();
    let actions = drain(&mut server);
    assert_eq!(notified(&actions), vec![]);
    assert!(matches!(actions.last(), Some(Action::Done(_))));
}

#[test]
fn a_first_stream_while_draining_is_told_and_later_streams_share_it() {
    let (clock, mut server, l) = server(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(10), None);
    drain(&mut server);
    server.stream_opened(c, clock.ms(20)).unwrap();
    assert_eq!(drain(&mut server), vec![Action::NotifyActive(c)]);
    server.stream_opened(c, clock.ms(21)).unwrap();
    assert_eq!(drain(&mut server), vec![]);
}

#[test]
fn the_notice_does_not_depend_on_keep_alive() {
    let config = Config {
        keep_alives: false,
        ..Config::default()
    };
    let (clock, mut server, l) = server(config);
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(c, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(10), None);
    let actions = drain(&mut server);
    assert!(!actions.contains(&Action::FinishAndClose(c)));
    assert_eq!(notified(&actions), vec![c]);
}

#[test]
fn a_hand_off_tells_its_requests_when_its_linger_ends() {
    let (clock, mut server, l) = server(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(c, clock.ms(0)).unwrap();
    server
        .hand_off(clock.ms(10), Duration::from_secs(1), None)
        .unwrap();
    server.listener_closed(l).unwrap();
    assert_eq!(notified(&drain(&mut server)), vec![]);
    server.handle_timeout(clock.ms(1_010));
    assert_eq!(server.phase(), Phase::Draining);
    assert_eq!(notified(&drain(&mut server)), vec![c]);
}

#[test]
fn close_closes_without_a_notice() {
    let (clock, mut server, l) = server(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(c, clock.ms(0)).unwrap();
    server.close(clock.ms(10));
    let actions = drain(&mut server);
    assert_eq!(notified(&actions), vec![]);
    assert!(actions.contains(&Action::CloseConn {
        conn: c,
        reason: CloseReason::ServerClosed
    }));
}
