//! Each behaviour of Go's `net/http` shutdown model, and each
//! place lameduck deliberately differs, as a test through the public API under
//! virtual time. Nothing here sleeps: time is an origin plus offsets.

use std::time::{Duration, Instant};

use lameduck_core::{
    Action, CloseReason, Completion, Config, ConnEvent, ConnId, ConnState, Counts, Error,
    HookStage, ListenerId, Outcome, Phase, Server,
};

/// Virtual time: the origin and a way to name an offset from it.
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

fn done_outcome(actions: &[Action]) -> Option<Outcome> {
    let dones: Vec<Outcome> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Done(o) => Some(*o),
            _ => None,
        })
        .collect();
    assert!(dones.len() <= 1, "Done at most once per drain: {actions:?}");
    dones.first().copied()
}

fn setup(config: Config) -> (Clock, Server, ListenerId) {
    let clock = Clock::new();
    let mut server = Server::new(config, clock.t0);
    let l = server.add_listener().unwrap();
    (clock, server, l)
}

/// accept → request → response: an Idle keep-alive connection.
fn idle_conn(server: &mut Server, l: ListenerId, at: Instant) -> ConnId {
    let c = server.accept(l, at).unwrap();
    server.request_started(c, at).unwrap();
    server.headers_complete(c, at).unwrap();
    server.response_done(c, at).unwrap();
    c
}

fn active_conn(server: &mut Server, l: ListenerId, at: Instant) -> ConnId {
    let c = server.accept(l, at).unwrap();
    server.request_started(c, at).unwrap();
    server.headers_complete(c, at).unwrap();
    c
}

// ----- states -----------------------------------------------------------------

#[test]
fn connection_states_follow_go() {
    let (clock, mut server, l) = setup(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    assert_eq!(server.conn_state(c), Ok(ConnState::New));
    server.request_started(c, clock.ms(1)).unwrap();
    assert_eq!(server.conn_state(c), Ok(ConnState::Active));
    server.headers_complete(c, clock.ms(2)).unwrap();
    assert_eq!(
        server.conn_state(c),
        Ok(ConnState::Active),
        "Active until the response is done"
    );
    server.response_done(c, clock.ms(3)).unwrap();
    assert_eq!(server.conn_state(c), Ok(ConnState::Idle));
    server.request_started(c, clock.ms(4)).unwrap();
    assert_eq!(
        server.conn_state(c),
        Ok(ConnState::Active),
        "Idle → Active on the next request"
    );
    server.hijack(c, clock.ms(5)).unwrap();
    assert_eq!(server.conn_state(c), Ok(ConnState::Hijacked));
    assert_eq!(
        server.counts(),
        Counts {
            hijacked: 1,
            ..Counts::default()
        }
    );
    server.closed(c, clock.ms(6)).unwrap();
    assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    assert_eq!(server.counts(), Counts::default());
    assert!(
        drain(&mut server).is_empty(),
        "no action while serving normally"
    );
}

#[test]
fn invalid_transitions_are_errors_that_change_nothing() {
    let (clock, mut server, l) = setup(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    let err = server.response_done(c, clock.ms(0)).unwrap_err();
    assert_eq!(
        err,
        Error::InvalidTransition {
            conn: c,
            state: ConnState::New,
            event: ConnEvent::ResponseDone
        }
    );
    server.request_started(c, clock.ms(0)).unwrap();
    assert!(matches!(
        server.request_started(c, clock.ms(0)),
        Err(Error::InvalidTransition {
            event: ConnEvent::RequestStarted,
            ..
        })
    ));
    server.hijack(c, clock.ms(0)).unwrap();
    assert!(matches!(
        server.hijack(c, clock.ms(0)),
        Err(Error::InvalidTransition { .. })
    ));
    assert_eq!(server.conn_state(c), Ok(ConnState::Hijacked));
}

#[test]
fn ids_are_never_reused_and_stale_ids_are_closed() {
    let (clock, mut server, l) = setup(Config::default());
    let a = server.accept(l, clock.ms(0)).unwrap();
    server.closed(a, clock.ms(1)).unwrap();
    let b = server.accept(l, clock.ms(2)).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        server.request_started(a, clock.ms(3)),
        Err(Error::ConnClosed(a))
    );
    assert_eq!(
        server.conn_state(b),
        Ok(ConnState::New),
        "the stale id did not reach b"
    );
    // An id from another server, at a slot this one never filled.
    let mut other = Server::new(Config::default(), clock.t0);
    let l2 = other.add_listener().unwrap();
    let foreign = (0..6)
        .map(|_| other.accept(l2, clock.ms(0)).unwrap())
        .last()
        .unwrap();
    assert_eq!(server.conn_state(foreign), Err(Error::UnknownConn(foreign)));
    assert_eq!(
        server.closed(foreign, clock.ms(4)),
        Err(Error::UnknownConn(foreign))
    );
}

// ----- inShutdown / ErrServerClosed ------------------------------------------

#[test]
fn no_listener_and_no_accept_after_shutdown() {
    let (clock, mut server, l) = setup(Config::default());
    let _busy = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(10), None);
    assert_eq!(server.add_listener(), Err(Error::ServerClosed));
    assert_eq!(server.accept(l, clock.ms(11)), Err(Error::ServerClosed));
    assert_eq!(
        server.counts().tracked(),
        1,
        "the refused accept tracked nothing"
    );
}

#[test]
fn shutdown_closes_every_listener() {
    let (clock, mut server, l) = setup(Config::default());
    let l2 = server.add_listener().unwrap();
    server.shutdown(clock.ms(0), None);
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseListener(l)));
    assert!(actions.contains(&Action::CloseListener(l2)));
}

// ----- Shutdown: idle closed, active finishes, event-driven completion --------

#[test]
fn idle_connections_close_at_once_and_active_ones_finish_without_keep_alive() {
    let (clock, mut server, l) = setup(Config::default());
    let idle = idle_conn(&mut server, l, clock.ms(0));
    let busy = active_conn(&mut server, l, clock.ms(0));
    assert!(server.keep_alive());
    server.shutdown(clock.ms(100), None);
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: idle,
        reason: CloseReason::Drain
    }));
    assert!(actions.contains(&Action::FinishAndClose(busy)));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::CloseConn { conn, .. } if *conn == busy)),
        "an Active connection is not closed"
    );
    assert!(
        !server.keep_alive(),
        "Go's doKeepAlives is false once shutting down"
    );
    assert_eq!(server.conn_state(idle), Ok(ConnState::Closed));
    assert_eq!(server.conn_state(busy), Ok(ConnState::Active));
    assert_eq!(server.phase(), Phase::Draining);
}

#[test]
fn drain_completes_in_the_same_call_that_closes_the_last_connection() {
    let (clock, mut server, l) = setup(Config::default());
    let a = active_conn(&mut server, l, clock.ms(0));
    let b = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(1), None);
    drain(&mut server);
    server.response_done(a, clock.ms(2)).unwrap();
    let actions = drain(&mut server);
    assert_eq!(
        actions,
        vec![Action::CloseConn {
            conn: a,
            reason: CloseReason::KeepAliveOff
        }]
    );
    assert!(!server.is_done());
    server.closed(b, clock.ms(3)).unwrap(); // the peer went away mid-request
    let actions = drain(&mut server);
    let outcome = done_outcome(&actions).expect("done in the call that removed the last conn");
    assert_eq!(
        outcome,
        Outcome {
            completion: Completion::Drained,
            forced: 0,
            hooks_cut_off: false,
            hijacked_open: 0
        }
    );
    assert!(outcome.is_graceful());
    assert!(server.is_done());
    assert_eq!(
        server.poll_timeout(),
        None,
        "nothing left to wake up for: no polling"
    );
}

#[test]
fn shutdown_with_nothing_to_drain_is_done_at_once() {
    let (clock, mut server, _l) = setup(Config::default());
    server.shutdown(clock.ms(0), Some(clock.ms(1000)));
    let actions = drain(&mut server);
    assert_eq!(
        done_outcome(&actions).map(|o| o.completion),
        Some(Completion::Drained)
    );
}

#[test]
fn request_bytes_on_an_idle_conn_after_shutdown_began_are_refused() {
    // Go closes idle connections at shutdown and does not answer bytes that
    // race it; the core reports ConnClosed so the adapter closes unanswered.
    let (clock, mut server, l) = setup(Config::default());
    let idle = idle_conn(&mut server, l, clock.ms(0));
    let _busy = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(5), None);
    assert_eq!(
        server.request_started(idle, clock.ms(6)),
        Err(Error::ConnClosed(idle))
    );
}

#[test]
fn a_new_conn_may_start_its_request_while_draining_and_is_answered_without_keep_alive() {
    let (clock, mut server, l) = setup(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(1000), None);
    drain(&mut server);
    server.request_started(c, clock.ms(2000)).unwrap();
    assert!(!server.keep_alive());
    server.response_done(c, clock.ms(2500)).unwrap();
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: c,
        reason: CloseReason::KeepAliveOff
    }));
    assert_eq!(
        done_outcome(&actions).map(|o| o.completion),
        Some(Completion::Drained)
    );
}

// ----- the 5-second rule for New connections ---------------------------------

#[test]
fn new_conn_grace_boundary_is_exact() {
    let (clock, mut server, l) = setup(Config::default());
    let c = server.accept(l, clock.ms(1_000)).unwrap();
    server.shutdown(clock.ms(2_000), None);
    drain(&mut server);
    assert_eq!(
        server.poll_timeout(),
        Some(clock.ms(6_000)),
        "accept + 5 s, not truncated"
    );
    server.handle_timeout(clock.ms(5_999)); // accept + 4.999 s
    assert_eq!(server.conn_state(c), Ok(ConnState::New));
    assert!(drain(&mut server).is_empty());
    server.handle_timeout(clock.ms(6_000)); // accept + 5.000 s
    assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    let actions = drain(&mut server);
    assert_eq!(
        actions[0],
        Action::CloseConn {
            conn: c,
            reason: CloseReason::NewConnGrace
        }
    );
    assert_eq!(
        done_outcome(&actions).map(|o| o.completion),
        Some(Completion::Drained)
    );
}

#[test]
fn new_conns_older_than_the_grace_close_when_the_drain_begins() {
    let (clock, mut server, l) = setup(Config::default());
    let old = server.accept(l, clock.ms(0)).unwrap();
    let young = server.accept(l, clock.ms(4_000)).unwrap();
    server.shutdown(clock.ms(5_000), None);
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: old,
        reason: CloseReason::NewConnGrace
    }));
    assert_eq!(server.conn_state(young), Ok(ConnState::New));
    assert_eq!(server.poll_timeout(), Some(clock.ms(9_000)));
}

#[test]
fn the_grace_does_not_apply_while_serving() {
    let (clock, mut server, l) = setup(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    assert_eq!(server.poll_timeout(), None);
    server.handle_timeout(clock.ms(60_000));
    assert_eq!(server.conn_state(c), Ok(ConnState::New));
}

#[test]
fn new_conn_grace_is_configurable() {
    let config = Config {
        new_conn_grace: Duration::from_millis(250),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(0), None);
    assert_eq!(server.poll_timeout(), Some(clock.ms(250)));
    server.handle_timeout(clock.ms(250));
    assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    assert!(server.is_done());
}

// ----- deadlines: force-close instead of leaving conns open -------------------

#[test]
fn the_deadline_force_closes_what_remains_and_counts_it() {
    let (clock, mut server, l) = setup(Config::default());
    let stuck = active_conn(&mut server, l, clock.ms(0));
    let silent = server.accept(l, clock.ms(0)).unwrap(); // its 5 s grace ends after the deadline
    server.shutdown(clock.ms(0), Some(clock.ms(2_000)));
    drain(&mut server);
    assert_eq!(server.poll_timeout(), Some(clock.ms(2_000)));
    server.handle_timeout(clock.ms(1_999));
    assert_eq!(
        server.conn_state(stuck),
        Ok(ConnState::Active),
        "not before the deadline"
    );
    server.handle_timeout(clock.ms(2_000));
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: stuck,
        reason: CloseReason::Deadline
    }));
    assert!(actions.contains(&Action::CloseConn {
        conn: silent,
        reason: CloseReason::Deadline
    }));
    let outcome = done_outcome(&actions).unwrap();
    assert_eq!(outcome.completion, Completion::DeadlineExpired);
    assert_eq!(outcome.forced, 2);
    assert!(!outcome.is_graceful());
}

#[test]
fn a_second_shutdown_is_harmless_and_can_only_bring_the_deadline_earlier() {
    let (clock, mut server, l) = setup(Config::default());
    let _busy = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(0), Some(clock.ms(10_000)));
    drain(&mut server);
    server.shutdown(clock.ms(1), Some(clock.ms(20_000)));
    assert!(drain(&mut server).is_empty());
    assert_eq!(server.poll_timeout(), Some(clock.ms(10_000)));
    server.shutdown(clock.ms(2), Some(clock.ms(3_000)));
    assert_eq!(server.poll_timeout(), Some(clock.ms(3_000)));
    server.shutdown(clock.ms(3), None);
    assert_eq!(server.poll_timeout(), Some(clock.ms(3_000)));
}

#[test]
fn a_deadline_already_past_closes_at_once() {
    let (clock, mut server, l) = setup(Config::default());
    let busy = active_conn(&mut server, l, clock.ms(10));
    server.shutdown(clock.ms(10), Some(clock.ms(5)));
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: busy,
        reason: CloseReason::Deadline
    }));
    assert_eq!(done_outcome(&actions).unwrap().forced, 1);
}

// ----- Close ------------------------------------------------------------------

#[test]
fn close_drops_everything_at_once_but_not_hijacked_conns() {
    let (clock, mut server, l) = setup(Config::default());
    let idle = idle_conn(&mut server, l, clock.ms(0));
    let busy = active_conn(&mut server, l, clock.ms(0));
    let new = server.accept(l, clock.ms(0)).unwrap();
    let ws = active_conn(&mut server, l, clock.ms(0));
    server.hijack(ws, clock.ms(0)).unwrap();
    server.close(clock.ms(1));
    let actions = drain(&mut server);
    for c in [idle, busy, new] {
        assert!(actions.contains(&Action::CloseConn {
            conn: c,
            reason: CloseReason::ServerClosed
        }));
    }
    assert!(actions.contains(&Action::CloseListener(l)));
    assert!(actions.contains(&Action::NotifyHijacked(ws)));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::CloseConn { conn, .. } if *conn == ws))
    );
    let outcome = done_outcome(&actions).unwrap();
    assert_eq!(
        outcome,
        Outcome {
            completion: Completion::Closed,
            forced: 3,
            hooks_cut_off: false,
            hijacked_open: 1
        }
    );
    server.close(clock.ms(2));
    server.shutdown(clock.ms(2), None);
    assert!(
        drain(&mut server).is_empty(),
        "Done is emitted exactly once"
    );
}

#[test]
fn close_during_a_drain_forces_the_rest() {
    let (clock, mut server, l) = setup(Config::default());
    let busy = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(0), None);
    drain(&mut server);
    server.close(clock.ms(1));
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseConn {
        conn: busy,
        reason: CloseReason::ServerClosed
    }));
    assert_eq!(
        done_outcome(&actions).unwrap().completion,
        Completion::Closed
    );
}

// ----- hijacked connections ----------------------------------------------------

#[test]
fn hijacked_conns_are_told_and_do_not_hold_the_drain() {
    let (clock, mut server, l) = setup(Config::default());
    let ws = active_conn(&mut server, l, clock.ms(0));
    server.hijack(ws, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(1), None);
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::NotifyHijacked(ws)));
    let outcome = done_outcome(&actions).unwrap();
    assert_eq!(outcome.completion, Completion::Drained);
    assert_eq!(outcome.hijacked_open, 1);
    assert_eq!(
        server.conn_state(ws),
        Ok(ConnState::Hijacked),
        "never closed by the core"
    );
    server.closed(ws, clock.ms(2)).unwrap();
    assert_eq!(server.counts().hijacked, 0);
}

#[test]
fn a_conn_hijacked_while_draining_is_told_at_once() {
    let (clock, mut server, l) = setup(Config::default());
    let a = active_conn(&mut server, l, clock.ms(0));
    let b = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(1), None);
    drain(&mut server);
    server.hijack(a, clock.ms(2)).unwrap();
    assert_eq!(drain(&mut server), vec![Action::NotifyHijacked(a)]);
    server.hijack(b, clock.ms(3)).unwrap();
    let actions = drain(&mut server);
    assert_eq!(actions[0], Action::NotifyHijacked(b));
    assert_eq!(done_outcome(&actions).unwrap().hijacked_open, 2);
}

#[test]
fn opt_in_the_drain_waits_for_hijacked_conns_up_to_the_deadline() {
    let config = Config {
        wait_for_hijacked: true,
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config.clone());
    let ws = active_conn(&mut server, l, clock.ms(0));
    server.hijack(ws, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(1), Some(clock.ms(1_000)));
    assert!(!server.is_done());
    server.closed(ws, clock.ms(500)).unwrap();
    assert_eq!(
        done_outcome(&drain(&mut server)).unwrap().completion,
        Completion::Drained
    );

    let (clock, mut server, l) = setup(config);
    let ws = active_conn(&mut server, l, clock.ms(0));
    server.hijack(ws, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(1), Some(clock.ms(1_000)));
    server.handle_timeout(clock.ms(1_000));
    let outcome = done_outcome(&drain(&mut server)).unwrap();
    assert_eq!(outcome.completion, Completion::DeadlineExpired);
    assert_eq!(
        (outcome.forced, outcome.hijacked_open),
        (0, 1),
        "told, never closed"
    );
    assert_eq!(server.conn_state(ws), Ok(ConnState::Hijacked));
}

// ----- hooks: awaited, bounded ------------------------------------------------

#[test]
fn hooks_are_awaited_before_done() {
    let config = Config {
        shutdown_hooks: true,
        ..Config::default()
    };
    let (clock, mut server, _l) = setup(config);
    server.shutdown(clock.ms(0), Some(clock.ms(1_000)));
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::RunHooks(HookStage::Drain)));
    assert!(
        !server.is_done(),
        "Go runs hooks as `go f()`; here the drain waits"
    );
    server.hooks_finished(HookStage::Drain, clock.ms(10));
    assert!(done_outcome(&drain(&mut server)).unwrap().is_graceful());
}

#[test]
fn hooks_that_hang_are_cut_off_at_the_deadline_and_forced_close_hooks_run() {
    let config = Config {
        shutdown_hooks: true,
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let stuck = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(0), Some(clock.ms(1_000)));
    drain(&mut server);
    server.handle_timeout(clock.ms(1_000));
    let actions = drain(&mut server);
    assert_eq!(
        &actions[..3],
        &[
            Action::CutOffHooks(HookStage::Drain),
            Action::RunHooks(HookStage::ForcedClose),
            Action::CloseConn {
                conn: stuck,
                reason: CloseReason::Deadline
            },
        ]
    );
    assert!(!server.is_done(), "the forced-close hooks are awaited");
    server.hooks_finished(HookStage::Drain, clock.ms(1_001)); // late: harmless
    assert!(drain(&mut server).is_empty());
    server.hooks_finished(HookStage::ForcedClose, clock.ms(1_002));
    let outcome = done_outcome(&drain(&mut server)).unwrap();
    assert_eq!(outcome.completion, Completion::DeadlineExpired);
    assert_eq!(outcome.forced, 1);
    assert!(outcome.hooks_cut_off, "the drain hooks were cut off");
}

#[test]
fn forced_close_hooks_are_bounded_too() {
    let config = Config {
        shutdown_hooks: true,
        forced_close_hook_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let _stuck = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(0), Some(clock.ms(1_000)));
    server.hooks_finished(HookStage::Drain, clock.ms(10));
    server.handle_timeout(clock.ms(1_000));
    drain(&mut server);
    assert_eq!(
        server.poll_timeout(),
        Some(clock.ms(1_300)),
        "the forced-close hooks' limit"
    );
    server.handle_timeout(clock.ms(1_300));
    let actions = drain(&mut server);
    assert_eq!(actions[0], Action::CutOffHooks(HookStage::ForcedClose));
    let outcome = done_outcome(&actions).unwrap();
    assert!(outcome.hooks_cut_off);
    assert_eq!(outcome.completion, Completion::DeadlineExpired);
}

#[test]
fn snapshot_reports_drain_progress() {
    let (clock, mut server, l) = setup(Config::default());
    let a = active_conn(&mut server, l, clock.ms(0));
    let _b = active_conn(&mut server, l, clock.ms(0));
    let _idle = idle_conn(&mut server, l, clock.ms(0));
    assert_eq!(server.snapshot().drain, None);
    server.shutdown(clock.ms(100), Some(clock.ms(9_000)));
    server.response_done(a, clock.ms(200)).unwrap();
    let snap = server.snapshot();
    assert_eq!(snap.deadline, Some(clock.ms(9_000)));
    let progress = snap.drain.unwrap();
    assert_eq!(progress.started, clock.ms(100));
    assert_eq!((progress.connections_at_start, progress.remaining), (3, 1));
    assert_eq!(progress.finished(), 2);
}

// ----- IdleTimeout and ReadHeaderTimeout ---------------------------------------

#[test]
fn idle_timeout_closes_idle_conns() {
    let config = Config {
        idle_timeout: Some(Duration::from_secs(30)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = idle_conn(&mut server, l, clock.ms(0));
    assert_eq!(server.poll_timeout(), Some(clock.ms(30_000)));
    // A new request resets it.
    server.request_started(c, clock.ms(10_000)).unwrap();
    assert_eq!(server.poll_timeout(), None, "no idle timer while Active");
    server.response_done(c, clock.ms(10_001)).unwrap();
    server.handle_timeout(clock.ms(40_000));
    assert_eq!(server.conn_state(c), Ok(ConnState::Idle));
    server.handle_timeout(clock.ms(40_001));
    assert_eq!(
        drain(&mut server),
        vec![Action::CloseConn {
            conn: c,
            reason: CloseReason::IdleTimeout
        }]
    );
}

#[test]
fn header_timeout_covers_the_first_request_from_accept_and_later_ones_from_their_first_byte() {
    let config = Config {
        header_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let silent = server.accept(l, clock.ms(0)).unwrap();
    let slow = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(slow, clock.ms(1_000)).unwrap(); // slowloris: never completes its head
    let fine = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(fine, clock.ms(1_000)).unwrap();
    server.headers_complete(fine, clock.ms(1_500)).unwrap();
    server.handle_timeout(clock.ms(2_000));
    assert_eq!(
        drain(&mut server),
        vec![Action::CloseConn {
            conn: silent,
            reason: CloseReason::HeaderTimeout
        }]
    );
    server.handle_timeout(clock.ms(3_000));
    assert_eq!(
        drain(&mut server),
        vec![Action::CloseConn {
            conn: slow,
            reason: CloseReason::HeaderTimeout
        }]
    );
    server.handle_timeout(clock.ms(60_000));
    assert_eq!(
        server.conn_state(fine),
        Ok(ConnState::Active),
        "a slow body is not a slow head"
    );
}

#[test]
fn a_request_racing_its_idle_timeout_finds_the_conn_closed() {
    let config = Config {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = idle_conn(&mut server, l, clock.ms(0));
    // The adapter's timer has not fired yet, but the input is late: the timer
    // is handled first.
    assert_eq!(
        server.request_started(c, clock.ms(1_000)),
        Err(Error::ConnClosed(c))
    );
}

// ----- body and write timeouts (Go's ReadTimeout and WriteTimeout, reshaped) ------

/// One nanosecond before `t`: every deadline is checked on both sides of it.
fn just_before(t: Instant) -> Instant {
    t - Duration::from_nanos(1)
}

fn closes(conn: ConnId, reason: CloseReason) -> Vec<Action> {
    vec![Action::CloseConn { conn, reason }]
}

#[test]
fn body_timeout_boundary_is_exact_and_counts_from_the_head() {
    let config = Config {
        header_timeout: Some(Duration::from_secs(1)),
        body_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(c, clock.ms(100)).unwrap();
    assert_eq!(server.poll_timeout(), Some(clock.ms(1_100)), "the head's");
    server.headers_complete(c, clock.ms(900)).unwrap();
    assert_eq!(server.poll_timeout(), Some(clock.ms(2_900)), "the body's");
    // A repeated head report does not restart it.
    server.headers_complete(c, clock.ms(1_000)).unwrap();
    assert_eq!(server.poll_timeout(), Some(clock.ms(2_900)));
    server.handle_timeout(just_before(clock.ms(2_900)));
    assert_eq!(server.conn_state(c), Ok(ConnState::Active));
    assert!(drain(&mut server).is_empty());
    server.handle_timeout(clock.ms(2_900));
    assert_eq!(drain(&mut server), closes(c, CloseReason::BodyTimeout));
    assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    assert!(CloseReason::BodyTimeout.is_forced());
}

#[test]
fn a_complete_body_stops_the_body_timeout_and_a_bodiless_request_never_starts_it() {
    let config = Config {
        header_timeout: Some(Duration::from_secs(1)),
        body_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let upload = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(upload, clock.ms(0)).unwrap();
    server.headers_complete(upload, clock.ms(0)).unwrap();
    server
        .body_complete(upload, just_before(clock.ms(2_000)))
        .unwrap();
    // Reported once more, and a late head report: neither restarts a timer.
    server.body_complete(upload, clock.ms(2_000)).unwrap();
    server.headers_complete(upload, clock.ms(2_000)).unwrap();
    // A request without a body: one report for head and body.
    let get = server.accept(l, clock.ms(0)).unwrap();
    server.request_started(get, clock.ms(0)).unwrap();
    server.body_complete(get, clock.ms(10)).unwrap();
    assert_eq!(server.poll_timeout(), None, "neither head nor body timed");
    server.handle_timeout(clock.ms(60_000));
    assert_eq!(server.conn_state(upload), Ok(ConnState::Active));
    assert_eq!(server.conn_state(get), Ok(ConnState::Active));
    assert!(drain(&mut server).is_empty());
    // Outside a request it is a caller mistake.
    server.response_done(get, clock.ms(60_000)).unwrap();
    assert_eq!(
        server.body_complete(get, clock.ms(60_000)),
        Err(Error::InvalidTransition {
            conn: get,
            state: ConnState::Idle,
            event: ConnEvent::BodyComplete
        })
    );
    let fresh = server.accept(l, clock.ms(60_000)).unwrap();
    assert!(matches!(
        server.body_complete(fresh, clock.ms(60_000)),
        Err(Error::InvalidTransition {
            event: ConnEvent::BodyComplete,
            ..
        })
    ));
}

#[test]
fn without_a_body_timeout_a_slow_body_is_bounded_only_by_shutdown() {
    let (clock, mut server, l) = setup(Config::default());
    let c = active_conn(&mut server, l, clock.ms(0));
    assert_eq!(server.poll_timeout(), None);
    server.handle_timeout(clock.ms(3_600_000));
    assert_eq!(server.conn_state(c), Ok(ConnState::Active));
}

#[test]
fn write_timeout_boundary_is_exact_and_counts_from_the_block() {
    let config = Config {
        write_timeout: Some(Duration::from_secs(3)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = active_conn(&mut server, l, clock.ms(0));
    server.body_complete(c, clock.ms(0)).unwrap();
    assert_eq!(server.poll_timeout(), None, "writing freely is not timed");
    server.write_blocked(c, clock.ms(1_000)).unwrap();
    assert_eq!(server.poll_timeout(), Some(clock.ms(4_000)));
    // Idempotent while blocked: the stall counts from the first report.
    server.write_blocked(c, clock.ms(2_000)).unwrap();
    assert_eq!(server.poll_timeout(), Some(clock.ms(4_000)));
    server.handle_timeout(just_before(clock.ms(4_000)));
    assert_eq!(server.conn_state(c), Ok(ConnState::Active));
    assert!(drain(&mut server).is_empty());
    server.handle_timeout(clock.ms(4_000));
    assert_eq!(drain(&mut server), closes(c, CloseReason::WriteTimeout));
    assert!(CloseReason::WriteTimeout.is_forced());
    assert_eq!(
        server.write_unblocked(c, clock.ms(4_000)),
        Err(Error::ConnClosed(c)),
        "a write that got through too late"
    );
}

#[test]
fn a_slow_but_progressing_response_is_never_cut() {
    let config = Config {
        write_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = active_conn(&mut server, l, clock.ms(0));
    // An hour-long stream whose socket fills every second and drains a
    // nanosecond before the stall would count.
    for second in 0..3_600u64 {
        let blocked = clock.ms(second * 1_000);
        server.write_blocked(c, blocked).unwrap();
        let progress = just_before(blocked + Duration::from_secs(1));
        server.handle_timeout(progress);
        server.write_unblocked(c, progress).unwrap();
    }
    assert!(drain(&mut server).is_empty());
    assert_eq!(server.poll_timeout(), None);
    server.response_done(c, clock.ms(3_600_000)).unwrap();
    assert_eq!(server.conn_state(c), Ok(ConnState::Idle));
}

#[test]
fn a_write_blocked_outside_a_request_counts_from_the_next_request() {
    let config = Config {
        write_timeout: Some(Duration::from_secs(1)),
        idle_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = idle_conn(&mut server, l, clock.ms(0));
    // Blocked while Idle (a raw protocol's own write): only the idle timer.
    server.write_blocked(c, clock.ms(1_000)).unwrap();
    assert_eq!(server.poll_timeout(), Some(clock.ms(10_000)));
    server.request_started(c, clock.ms(5_000)).unwrap();
    assert_eq!(server.poll_timeout(), Some(clock.ms(6_000)));
    // The response completes while a write is still reported blocked: the
    // stall no longer counts, the idle timer does.
    server.response_done(c, clock.ms(5_500)).unwrap();
    assert_eq!(server.poll_timeout(), Some(clock.ms(15_500)));
    server.write_unblocked(c, clock.ms(5_600)).unwrap();
    server.request_started(c, clock.ms(7_000)).unwrap();
    assert_eq!(server.poll_timeout(), None, "unblocked: nothing timed");
    // And a New connection, blocked before its first request.
    let early = server.accept(l, clock.ms(7_000)).unwrap();
    server.write_blocked(early, clock.ms(7_000)).unwrap();
    assert_eq!(server.poll_timeout(), None);
    server.request_started(early, clock.ms(8_000)).unwrap();
    server.handle_timeout(just_before(clock.ms(9_000)));
    assert!(drain(&mut server).is_empty());
    server.handle_timeout(clock.ms(9_000));
    assert_eq!(drain(&mut server), closes(early, CloseReason::WriteTimeout));
}

#[test]
fn body_and_write_timeouts_together_the_earlier_fires_and_each_survives_the_other() {
    let config = Config {
        body_timeout: Some(Duration::from_secs(10)),
        write_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    // A response written while the body is still read (an early answer).
    let a = active_conn(&mut server, l, clock.ms(0));
    assert_eq!(server.poll_timeout(), Some(clock.ms(10_000)));
    server.write_blocked(a, clock.ms(1_000)).unwrap();
    assert_eq!(
        server.poll_timeout(),
        Some(clock.ms(3_000)),
        "the stall first"
    );
    server.write_unblocked(a, clock.ms(2_000)).unwrap();
    assert_eq!(
        server.poll_timeout(),
        Some(clock.ms(10_000)),
        "the body again"
    );
    server.write_blocked(a, clock.ms(5_000)).unwrap();
    server.body_complete(a, clock.ms(6_000)).unwrap();
    assert_eq!(
        server.poll_timeout(),
        Some(clock.ms(7_000)),
        "the stall still"
    );
    server.handle_timeout(clock.ms(7_000));
    assert_eq!(drain(&mut server), closes(a, CloseReason::WriteTimeout));
    // Both due at once: the body's timeout is the reason.
    let b = active_conn(&mut server, l, clock.ms(10_000));
    server.write_blocked(b, clock.ms(18_000)).unwrap();
    server.handle_timeout(clock.ms(20_000));
    assert_eq!(drain(&mut server), closes(b, CloseReason::BodyTimeout));
}

#[test]
fn the_write_timeout_runs_on_while_draining_and_its_close_completes_the_drain() {
    let config = Config {
        write_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = active_conn(&mut server, l, clock.ms(0));
    server.write_blocked(c, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(1_000), Some(clock.ms(30_000)));
    assert!(drain(&mut server).contains(&Action::FinishAndClose(c)));
    server.handle_timeout(clock.ms(2_000));
    let actions = drain(&mut server);
    assert_eq!(
        actions[0],
        Action::CloseConn {
            conn: c,
            reason: CloseReason::WriteTimeout
        }
    );
    let outcome = done_outcome(&actions).expect("the last connection went");
    assert_eq!(outcome.completion, Completion::Drained);
    assert_eq!(outcome.forced, 0, "a timeout is not the shutdown's doing");
}

#[test]
fn hijacked_connections_are_never_timed_for_writes() {
    let config = Config {
        write_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = active_conn(&mut server, l, clock.ms(0));
    server.write_blocked(c, clock.ms(0)).unwrap();
    server.hijack(c, clock.ms(500)).unwrap();
    assert_eq!(server.poll_timeout(), None);
    server.write_blocked(c, clock.ms(600)).unwrap();
    server.write_unblocked(c, clock.ms(700)).unwrap();
    server.handle_timeout(clock.ms(60_000));
    assert_eq!(server.conn_state(c), Ok(ConnState::Hijacked));
    assert!(drain(&mut server).is_empty());
}

// ----- lame duck (beyond Go) --------------------------------------------------

#[test]
fn lame_duck_keeps_accepting_with_keep_alive_off_then_drains() {
    let config = Config {
        lame_duck: Duration::from_secs(5),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let idle = idle_conn(&mut server, l, clock.ms(0));
    let busy = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(1_000), Some(clock.ms(30_000)));
    let actions = drain(&mut server);
    assert_eq!(actions[0], Action::PhaseChanged(Phase::LameDuck));
    assert!(actions.contains(&Action::FinishAndClose(busy)));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::CloseListener(_))),
        "still accepting"
    );
    assert!(!server.phase().is_ready());
    assert!(!server.keep_alive());
    let late = server.accept(l, clock.ms(2_000)).unwrap();
    assert_eq!(
        server.conn_state(idle),
        Ok(ConnState::Idle),
        "idle conns wait for the drain"
    );
    assert_eq!(server.poll_timeout(), Some(clock.ms(6_000)));
    server.handle_timeout(clock.ms(6_000));
    let actions = drain(&mut server);
    assert_eq!(actions[0], Action::PhaseChanged(Phase::Draining));
    assert!(actions.contains(&Action::CloseListener(l)));
    assert!(actions.contains(&Action::CloseConn {
        conn: idle,
        reason: CloseReason::Drain
    }));
    assert_eq!(
        server.conn_state(late),
        Ok(ConnState::New),
        "within its grace (accepted at 2 s)"
    );
    assert_eq!(server.poll_timeout(), Some(clock.ms(7_000)));
}

#[test]
fn a_deadline_inside_the_lame_duck_delay_still_drains_and_forces() {
    let config = Config {
        lame_duck: Duration::from_secs(10),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let busy = active_conn(&mut server, l, clock.ms(0));
    server.shutdown(clock.ms(0), Some(clock.ms(3_000)));
    server.handle_timeout(clock.ms(3_000));
    let actions = drain(&mut server);
    assert!(actions.contains(&Action::CloseListener(l)));
    assert!(actions.contains(&Action::CloseConn {
        conn: busy,
        reason: CloseReason::Deadline
    }));
    assert_eq!(
        done_outcome(&actions).unwrap().completion,
        Completion::DeadlineExpired
    );
}

// ----- keep-alives disabled -----------------------------------------------------

#[test]
fn with_keep_alives_off_every_response_closes() {
    let config = Config {
        keep_alives: false,
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let c = active_conn(&mut server, l, clock.ms(0));
    assert!(!server.keep_alive());
    server.response_done(c, clock.ms(1)).unwrap();
    assert_eq!(
        drain(&mut server),
        vec![Action::CloseConn {
            conn: c,
            reason: CloseReason::KeepAliveOff
        }]
    );
}

// ----- time -------------------------------------------------------------------

#[test]
fn handle_timeout_is_idempotent_and_early_calls_are_harmless() {
    let (clock, mut server, l) = setup(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(0), None);
    drain(&mut server);
    for _ in 0..3 {
        server.handle_timeout(clock.ms(1));
    }
    assert!(drain(&mut server).is_empty());
    server.handle_timeout(clock.ms(5_000));
    server.handle_timeout(clock.ms(5_000));
    let actions = drain(&mut server);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::CloseConn { .. }))
            .count(),
        1
    );
    assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
}

#[test]
fn time_going_backwards_counts_as_the_latest_time() {
    let (clock, mut server, l) = setup(Config::default());
    let c = server.accept(l, clock.ms(0)).unwrap();
    server.shutdown(clock.ms(0), None);
    server.handle_timeout(clock.ms(5_000));
    assert_eq!(server.conn_state(c), Ok(ConnState::Closed));
    // An input stamped earlier changes nothing about what already happened.
    server.handle_timeout(clock.ms(1));
    assert!(server.is_done());
}

// ----- connection limit (beyond Go; like x/net/netutil.LimitListener) -----------

#[test]
fn at_the_connection_limit_accepting_pauses_and_resumes_below_it() {
    let config = Config {
        max_connections: Some(2),
        ..Config::default()
    };
    let (clock, mut server, l) = setup(config);
    let a = server.accept(l, clock.ms(0)).unwrap();
    assert!(drain(&mut server).is_empty());
    let b = server.accept(l, clock.ms(0)).unwrap();
    assert_eq!(drain(&mut server), vec![Action::PauseAccepting]);
    assert_eq!(
        server.accept(l, clock.ms(1)),
        Err(Error::AtCapacity),
        "a racing accept"
    );
    server.request_started(b, clock.ms(1)).unwrap();
    server.hijack(b, clock.ms(1)).unwrap();
    assert!(
        drain(&mut server).is_empty(),
        "a hijacked connection still holds a descriptor"
    );
    server.closed(a, clock.ms(2)).unwrap();
    assert_eq!(drain(&mut server), vec![Action::ResumeAccepting]);
    assert!(!server.is_accepting_paused());
    let c = server.accept(l, clock.ms(3)).unwrap();
    assert_eq!(drain(&mut server), vec![Action::PauseAccepting]);
    // Once draining, freed slots do not resume accepting: listeners are closed.
    server.shutdown(clock.ms(4), None);
    server.closed(b, clock.ms(4)).unwrap();
    server.closed(c, clock.ms(4)).unwrap();
    let actions = drain(&mut server);
    assert!(!actions.contains(&Action::ResumeAccepting), "{actions:?}");
    assert!(server.is_done());
}
