//! Go's `net/http` shutdown behaviours, each as a scenario over real
//! sockets on 127.0.0.1 with a real client, generic over the runtime.
//! Instantiated per runtime by [`scenarios!`](crate::scenarios!).
//!
//! Timing claims are generous bounds ([`PROMPT`], [`EVENTUALLY`]); every
//! wait is for an observable condition (a response, an end of stream, the
//! done signal, the server's connection counts).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use lameduck::{Completion, Config, Phase};

use crate::client::{Client, Ending, Response};
use crate::harness::{
    Binding, EVENTUALLY, Options, PROMPT, TestServer, demo_server, demo_server_with, stream_server,
    wait_until,
};

fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr).expect("connecting to the test server")
}

fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, EVENTUALLY) {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "connect after shutdown: {e}"
        ),
        Ok(_) => panic!("a connect after shutdown began was accepted"),
    }
}

/// Reads until the server closes; asserts nothing came first.
fn assert_closed_silently(client: &mut Client, what: &str) -> Ending {
    let (bytes, ending) = client
        .read_until_closed()
        .unwrap_or_else(|e| panic!("{what}: the server did not close: {e}"));
    assert!(
        bytes.is_empty(),
        "{what}: unexpected bytes before the close: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    ending
}

fn upgrade<T: Binding>(server: &TestServer<T>) -> Client {
    let mut client = connect(server.addr);
    client
        .send(b"GET /upgrade HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .unwrap();
    let response = client.read_response().unwrap();
    assert_eq!(response.status, 101, "upgrade answered {response:?}");
    client.send(b"ping").unwrap();
    assert_eq!(
        client.read_exact_bytes(4).unwrap(),
        b"ping",
        "echo before shutdown"
    );
    client
}

fn assert_ok(response: &Response, body: &str) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), body);
}

/// An in-flight request started before shutdown completes with 200 and
/// `Connection: close`; the drain completes right after the last response.
pub fn in_flight_request_completes<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut clients: Vec<Client> = [150, 300, 450]
        .iter()
        .map(|ms| {
            let mut c = connect(server.addr);
            c.send_get(&format!("/sleep?ms={ms}")).unwrap();
            c
        })
        .collect();
    wait_until("three active requests", EVENTUALLY, || {
        server.handle.counts().active == 3
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(server.handle.phase(), Phase::Draining);
    let mut last_response = Instant::now();
    for (client, ms) in clients.iter_mut().zip([150, 300, 450]) {
        let response = client.read_response().unwrap();
        last_response = Instant::now();
        assert_ok(&response, &format!("slept {ms}"));
        assert!(
            response.connection_close(),
            "no Connection: close: {response:?}"
        );
        assert_eq!(
            assert_closed_silently(client, "after the response"),
            Ending::Eof
        );
    }
    let (outcome, done_seen) = server.wait_done(EVENTUALLY);
    let tail = done_seen.saturating_duration_since(last_response);
    eprintln!("[{}] drain tail after the last response: {tail:?}", T::NAME);
    assert!(outcome.is_graceful(), "{outcome:?}");
    assert_eq!(outcome.completion, Completion::Drained);
    assert!(
        tail < PROMPT,
        "the drain completed {tail:?} after the last response"
    );
}

/// A connect after shutdown began is refused (while a request still drains).
pub fn connect_after_shutdown_refused<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut busy = connect(server.addr);
    busy.send_get("/sleep?ms=400").unwrap();
    wait_until("an active request", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_refused(server.addr);
    assert_eq!(server.handle.phase(), Phase::Draining, "still draining");
    let response = busy.read_response().unwrap();
    assert_ok(&response, "slept 400");
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
}

/// An idle keep-alive connection is closed by the server at once when the
/// drain begins, while an active request still runs.
pub fn idle_keepalive_closed_at_once<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut idle = connect(server.addr);
    let response = idle.get("/").unwrap();
    assert_ok(&response, "hello");
    assert!(!response.connection_close(), "kept alive while serving");
    wait_until("an idle connection", EVENTUALLY, || {
        server.handle.counts().idle == 1
    });
    let mut busy = connect(server.addr);
    busy.send_get("/sleep?ms=2000").unwrap();
    wait_until("an active request", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    let t0 = Instant::now();
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(assert_closed_silently(&mut idle, "idle"), Ending::Eof);
    let closed_after = t0.elapsed();
    assert!(closed_after < PROMPT, "idle closed after {closed_after:?}");
    assert!(
        !server.handle.drained().is_done(),
        "the busy request holds the drain"
    );
    assert_ok(&busy.read_response().unwrap(), "slept 2000");
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
}

/// An idle keep-alive connection does not delay the drain: with only idle
/// connections (whose clients keep them open), the drain completes at once.
pub fn idle_keepalive_does_not_delay_drain<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut idle: Vec<Client> = (0..3).map(|_| connect(server.addr)).collect();
    for client in &mut idle {
        assert_ok(&client.get("/").unwrap(), "hello");
    }
    wait_until("three idle connections", EVENTUALLY, || {
        server.handle.counts().idle == 3
    });
    let t0 = Instant::now();
    server.handle.shutdown_within(EVENTUALLY);
    let (outcome, done_seen) = server.wait_done(EVENTUALLY);
    let took = done_seen - t0;
    eprintln!("[{}] drain with 3 idle connections took {took:?}", T::NAME);
    assert!(took < PROMPT, "drain took {took:?}");
    assert!(outcome.is_graceful(), "{outcome:?}");
    for client in &mut idle {
        assert_eq!(assert_closed_silently(client, "idle"), Ending::Eof);
    }
}

/// A connection that never sends is closed at the grace (measured from its
/// accept), and the drain completes right after.
pub fn silent_connection_closed_at_grace<T: Binding>() {
    let grace = Duration::from_millis(300);
    let server = demo_server::<T>(Config {
        new_conn_grace: grace,
        ..Config::default()
    });
    let connected = Instant::now();
    let mut silent = connect(server.addr);
    wait_until("a new connection", EVENTUALLY, || {
        server.handle.counts().new == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(server.handle.phase(), Phase::Draining);
    assert_eq!(assert_closed_silently(&mut silent, "silent"), Ending::Eof);
    let closed = Instant::now();
    let after = closed - connected;
    assert!(
        after >= grace,
        "closed {after:?} after connecting, before the grace"
    );
    assert!(after < grace + PROMPT, "closed {after:?} after connecting");
    let (outcome, done_seen) = server.wait_done(EVENTUALLY);
    assert!(done_seen.saturating_duration_since(closed) < PROMPT);
    assert!(outcome.is_graceful(), "{outcome:?}");
    assert!(
        server
            .events()
            .iter()
            .any(|e| e.contains("new-connection grace")),
        "{:?}",
        server.events()
    );
}

/// A request on an idle connection racing the shutdown gets a complete
/// response or a close before any byte of one — never a reset or an end of
/// stream in the middle of a response. Repeated with varied timing.
pub fn idle_request_racing_shutdown<T: Binding>() {
    let mut answered = 0;
    let mut closed = 0;
    for round in 0..24u32 {
        let server = demo_server::<T>(Config::default());
        let mut client = connect(server.addr);
        assert_ok(&client.get("/").unwrap(), "hello");
        wait_until("an idle connection", EVENTUALLY, || {
            server.handle.counts().idle == 1
        });
        let barrier = Arc::new(Barrier::new(2));
        let handle = server.handle.clone();
        let go = barrier.clone();
        let shutdown = std::thread::spawn(move || {
            go.wait();
            // Vary who goes first: spin a round-dependent while.
            for _ in 0..(round % 6) * 2_000 {
                std::hint::spin_loop();
            }
            handle.shutdown_within(EVENTUALLY);
        });
        barrier.wait();
        if round % 3 == 0 {
            for _ in 0..(round % 5) * 2_000 {
                std::hint::spin_loop();
            }
        }
        // The write itself may fail if the close won by far.
        let sent = client.send_get("/");
        match client.read_response_or_close() {
            Ok(Ok(response)) => {
                sent.unwrap();
                assert_ok(&response, "hello");
                // With or without `Connection: close` (that depends on
                // whether its head was written before the drain began), the
                // connection then ends cleanly.
                assert_closed_silently(&mut client, "after the racing response");
                answered += 1;
            }
            Ok(Err(_ending)) => closed += 1,
            Err(e) => panic!("round {round}: the connection broke inside a response: {e}"),
        }
        shutdown.join().unwrap();
        let (outcome, _) = server.wait_done(EVENTUALLY);
        assert!(outcome.is_graceful(), "round {round}: {outcome:?}");
    }
    eprintln!(
        "[{}] racing requests: {answered} answered, {closed} closed before a response",
        T::NAME
    );
}

/// The deadline force-closes a stuck request, and the outcome counts it.
pub fn deadline_force_closes_stuck_request<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut stuck = connect(server.addr);
    stuck.send_get("/sleep?ms=60000").unwrap();
    wait_until("an active request", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    let deadline = Duration::from_millis(300);
    let t0 = Instant::now();
    server.handle.shutdown_within(deadline);
    assert_closed_silently(&mut stuck, "stuck");
    let after = t0.elapsed();
    assert!(
        after >= deadline,
        "closed {after:?} after shutdown, before the deadline"
    );
    assert!(after < deadline + PROMPT, "closed {after:?} after shutdown");
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(outcome.completion, Completion::DeadlineExpired);
    assert_eq!(outcome.forced, 1);
    assert!(!outcome.is_graceful());
    assert!(
        server
            .events()
            .iter()
            .any(|e| e.contains("forced at the shutdown deadline")),
        "{:?}",
        server.events()
    );
}

/// An upgraded (hijacked) connection does not hold the drain, and receives
/// its shutdown notification (the demo's echo says `bye` and closes).
pub fn upgraded_connection_notified_not_waited<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut upgraded = upgrade(&server);
    wait_until("a hijacked connection", EVENTUALLY, || {
        server.handle.counts().hijacked == 1 && server.handle.counts().tracked() == 0
    });
    server.handle.shutdown_within(EVENTUALLY);
    let (outcome, _) = server.wait_done(PROMPT);
    assert_eq!(outcome.completion, Completion::Drained);
    assert_eq!(outcome.hijacked_open, 1, "done without waiting for it");
    assert!(outcome.is_graceful());
    let (bytes, ending) = upgraded.read_until_closed().unwrap();
    assert_eq!(bytes, b"bye\n");
    assert_eq!(ending, Ending::Eof);
    wait_until(
        "the hijacked connection reported closed",
        EVENTUALLY,
        || server.handle.counts().hijacked == 0,
    );
}

/// Opted in (`wait_for_hijacked`), the drain waits for the upgraded
/// connection to close.
pub fn upgraded_connection_waited_when_opted_in<T: Binding>() {
    let server = demo_server::<T>(Config {
        wait_for_hijacked: true,
        ..Config::default()
    });
    let mut upgraded = upgrade(&server);
    wait_until("a hijacked connection", EVENTUALLY, || {
        server.handle.counts().hijacked == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    let (bytes, ending) = upgraded.read_until_closed().unwrap();
    assert_eq!(bytes, b"bye\n");
    assert_eq!(ending, Ending::Eof);
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(outcome.completion, Completion::Drained);
    assert_eq!(outcome.hijacked_open, 0, "the drain waited for it");
    assert!(outcome.is_graceful());
}

/// `close()` drops everything at once: new, active and idle connections are
/// closed (forced), the upgraded one is notified, listeners refuse.
pub fn close_drops_everything<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut idle = connect(server.addr);
    assert_ok(&idle.get("/").unwrap(), "hello");
    let mut busy = connect(server.addr);
    busy.send_get("/sleep?ms=60000").unwrap();
    let mut upgraded = upgrade(&server);
    let mut silent = connect(server.addr);
    wait_until("one connection in each state", EVENTUALLY, || {
        let c = server.handle.counts();
        (c.new, c.active, c.idle, c.hijacked) == (1, 1, 1, 1)
    });
    let t0 = Instant::now();
    server.handle.close();
    let outcome = server
        .handle
        .drained()
        .outcome()
        .expect("done within close()");
    assert_eq!(outcome.completion, Completion::Closed);
    assert_eq!(outcome.forced, 3);
    assert_eq!(outcome.hijacked_open, 1);
    assert_refused(server.addr);
    for (client, what) in [
        (&mut idle, "idle"),
        (&mut busy, "busy"),
        (&mut silent, "silent"),
    ] {
        assert_closed_silently(client, what);
    }
    let (bytes, _) = upgraded.read_until_closed().unwrap();
    assert_eq!(bytes, b"bye\n");
    assert!(t0.elapsed() < PROMPT, "closing took {:?}", t0.elapsed());
}

/// A second `shutdown()` is harmless (a later deadline does not extend the
/// first), and so are shutdown and close after the end.
pub fn second_shutdown_harmless<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut busy = connect(server.addr);
    busy.send_get("/sleep?ms=300").unwrap();
    wait_until("an active request", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    server.handle.shutdown_within(EVENTUALLY * 2);
    server.handle.shutdown(None);
    let response = busy.read_response().unwrap();
    assert_ok(&response, "slept 300");
    assert!(response.connection_close());
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful(), "{outcome:?}");
    server.handle.shutdown(None);
    server.handle.close();
    assert_eq!(server.handle.phase(), Phase::Closed);
    assert_eq!(server.handle.drained().outcome(), Some(outcome));
}

/// A second `shutdown()` with an earlier deadline brings it forward.
pub fn second_shutdown_brings_deadline_forward<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut stuck = connect(server.addr);
    stuck.send_get("/sleep?ms=60000").unwrap();
    wait_until("an active request", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    server.handle.shutdown(None);
    let t0 = Instant::now();
    server.handle.shutdown_within(Duration::from_millis(200));
    assert_closed_silently(&mut stuck, "stuck");
    assert!(t0.elapsed() < Duration::from_millis(200) + PROMPT);
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::DeadlineExpired, 1)
    );
}

/// A malformed request is answered 400 and its connection closed; the
/// server is unaffected.
pub fn malformed_request_gets_400<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        b"GET / HTTP/1.1\r\ncontent-length: nope\r\n\r\n",
    ] {
        let mut client = connect(server.addr);
        client.send(garbage).unwrap();
        let response = client.read_response().unwrap();
        assert_eq!(
            response.status,
            400,
            "{:?} got {response:?}",
            String::from_utf8_lossy(garbage)
        );
        assert_closed_silently(&mut client, "after 400");
    }
    wait_until("no tracked connection", EVENTUALLY, || {
        server.handle.counts().tracked() == 0
    });
    assert_eq!(server.handle.phase(), Phase::Serving);
    let mut client = connect(server.addr);
    assert_ok(&client.get("/").unwrap(), "hello");
    assert_ok(&client.get("/healthz").unwrap(), "ok");
    server.handle.shutdown_within(EVENTUALLY);
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
}

/// Keep-alive and pipelining are tracked request by request: two pipelined
/// requests both answered, the connection idle after them.
pub fn pipelined_requests_tracked<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut client = connect(server.addr);
    client
        .send(b"GET /sleep?ms=100 HTTP/1.1\r\nhost: t\r\n\r\nGET /pid HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    assert_ok(&client.read_response().unwrap(), "slept 100");
    assert_ok(
        &client.read_response().unwrap(),
        &std::process::id().to_string(),
    );
    wait_until("the connection idle", EVENTUALLY, || {
        let c = server.handle.counts();
        (c.idle, c.active) == (1, 0)
    });
    // A pipelined pair racing the drain: the first is in flight, the second
    // is buffered; both are answered or the second is dropped unanswered,
    // never cut.
    client
        .send(b"GET /sleep?ms=200 HTTP/1.1\r\nhost: t\r\n\r\nGET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    wait_until("an active request", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    let first = client.read_response().unwrap();
    assert_ok(&first, "slept 200");
    assert!(first.connection_close());
    assert_closed_silently(&mut client, "after the last response");
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
}

/// A response without a body on the wire (`HEAD`) still completes its
/// request: the connection goes idle and the drain does not wait for it.
pub fn head_request_tracked<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut client = connect(server.addr);
    client.send(b"HEAD / HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    client.read_until_contains(b"\r\n\r\n").unwrap();
    wait_until("the connection idle after HEAD", EVENTUALLY, || {
        let c = server.handle.counts();
        (c.idle, c.active) == (1, 0)
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert!(server.wait_done(PROMPT).0.is_graceful());
}

/// The lame-duck phase: readiness says draining and responses stop
/// keep-alive while the listener still accepts; then the drain.
pub fn lame_duck_reports_draining<T: Binding>() {
    let server = demo_server::<T>(Config {
        lame_duck: Duration::from_millis(1500),
        ..Config::default()
    });
    let mut client = connect(server.addr);
    assert_ok(&client.get("/healthz").unwrap(), "ok");
    // The client can read a response a moment before the server has marked
    // it done; a shutdown in that moment rightly closes the connection after
    // it (keep-alive off). Wait until it is idle.
    wait_until("an idle connection", EVENTUALLY, || {
        server.handle.counts().idle == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(server.handle.phase(), Phase::LameDuck);
    let health = client.get("/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (503, "draining"));
    assert!(health.connection_close());
    let mut late = connect(server.addr); // still accepted
    let hello = late.get("/").unwrap();
    assert_ok(&hello, "hello");
    assert!(hello.connection_close());
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful());
    assert_refused(server.addr);
}

/// Shutdown hooks are awaited: the drain completes only after them.
pub fn shutdown_hooks_awaited<T: Binding>() {
    let (release, gate) = async_channel::bounded::<()>(1);
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (s, f) = (started.clone(), finished.clone());
    let server = demo_server_with::<T>(
        Config::default(),
        Options {
            on_shutdown: Some(Box::new(move || {
                let (gate, s, f) = (gate.clone(), s.clone(), f.clone());
                Box::pin(async move {
                    s.store(true, Ordering::SeqCst);
                    let _ = gate.recv().await;
                    f.store(true, Ordering::SeqCst);
                })
            })),
            ..Options::default()
        },
    );
    server.handle.shutdown_within(EVENTUALLY);
    wait_until("the hook to start", EVENTUALLY, || {
        started.load(Ordering::SeqCst)
    });
    assert!(
        !server.handle.drained().is_done(),
        "the drain waits for the hook"
    );
    assert_refused(server.addr);
    release.send_blocking(()).unwrap();
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(finished.load(Ordering::SeqCst));
    assert!(outcome.is_graceful(), "{outcome:?}");
}

/// A hook still running at the deadline is cut off; the outcome says so.
pub fn shutdown_hooks_cut_off_at_deadline<T: Binding>() {
    let (_never, gate) = async_channel::bounded::<()>(1);
    let server = demo_server_with::<T>(
        Config::default(),
        Options {
            on_shutdown: Some(Box::new(move || {
                let gate = gate.clone();
                Box::pin(async move {
                    let _ = gate.recv().await;
                })
            })),
            ..Options::default()
        },
    );
    server.handle.shutdown_within(Duration::from_millis(200));
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.hooks_cut_off, "{outcome:?}");
    assert!(!outcome.is_graceful());
}

/// Several listeners, TCP and Unix: all serve; shutdown stops them all and
/// removes the Unix socket's file.
pub fn several_listeners_tcp_and_unix<T: Binding>() {
    use std::io::{Read, Write};
    let path = std::env::temp_dir().join(format!(
        "lameduck-test-{}-{}.sock",
        std::process::id(),
        T::NAME
    ));
    let _ = std::fs::remove_file(&path);
    let server = demo_server_with::<T>(
        Config::default(),
        Options {
            extra_tcp: 1,
            unix: Some(path.clone()),
            ..Options::default()
        },
    );
    let addrs = server.handle.local_addrs().to_vec();
    assert_eq!(addrs.len(), 3);
    let tcp: Vec<SocketAddr> = addrs
        .iter()
        .filter_map(|a| match a {
            lameduck::ListenAddr::Tcp(addr) => Some(*addr),
            lameduck::ListenAddr::Unix(_) => None,
        })
        .collect();
    for addr in &tcp {
        assert_ok(&connect(*addr).get("/").unwrap(), "hello");
    }
    let mut unix = std::os::unix::net::UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(EVENTUALLY)).unwrap();
    unix.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    unix.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        raw.starts_with("HTTP/1.1 200 OK\r\n") && raw.ends_with("hello"),
        "{raw}"
    );
    server.handle.shutdown_within(EVENTUALLY);
    for addr in &tcp {
        assert_refused(*addr);
    }
    assert!(std::os::unix::net::UnixStream::connect(&path).is_err());
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
    wait_until("the unix socket file removed", EVENTUALLY, || {
        !path.exists()
    });
}

/// Raw streams: the first byte read marks a request begun, `end()` marks it
/// done; at the drain idle streams end at once and an active one finishes
/// its request, learns it was the last, and closes.
pub fn raw_stream_tracking<T: Binding>() {
    use futures_lite::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let server = stream_server::<T, _, _>(Config::default(), |conn| async move {
        let mut conn = BufReader::new(conn);
        let mut line = String::new();
        // One request (line) per pass; ends when either side closes.
        loop {
            line.clear();
            match conn.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let last = !conn.get_ref().keep_alive();
            let answer = format!(
                "{} {}\n",
                line.trim_end().len(),
                if last { "last" } else { "more" }
            );
            if conn.get_mut().write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            if !conn.get_mut().end() {
                return;
            }
        }
    });
    let mut idle = connect(server.addr);
    idle.send(b"hello\n").unwrap();
    assert_eq!(idle.read_exact_bytes(7).unwrap(), b"5 more\n");
    wait_until("an idle stream", EVENTUALLY, || {
        server.handle.counts().idle == 1
    });
    let mut active = connect(server.addr);
    active.send(b"abc").unwrap(); // a request begun, not finished
    wait_until("an active stream", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(
        assert_closed_silently(&mut idle, "idle stream"),
        Ending::Eof
    );
    assert!(
        !server.handle.drained().is_done(),
        "the active stream holds the drain"
    );
    active.send(b"\n").unwrap();
    assert_eq!(active.read_exact_bytes(7).unwrap(), b"3 last\n");
    assert_closed_silently(&mut active, "after the last answer");
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful(), "{outcome:?}");
}

/// Raw streams: a handler stuck inside a request is dropped at the shutdown
/// deadline, which closes its connection; the outcome counts it.
pub fn raw_stream_forced_at_deadline<T: Binding>() {
    let server = stream_server::<T, _, _>(Config::default(), |mut conn| async move {
        assert!(conn.begin());
        futures_lite::future::pending::<()>().await; // never ends its request
        drop(conn);
    });
    let mut client = connect(server.addr);
    wait_until("an active stream", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    server.handle.shutdown_within(Duration::from_millis(300));
    assert_closed_silently(&mut client, "stuck stream");
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::DeadlineExpired, 1)
    );
}

/// A request head that does not complete within `header_timeout` (counted
/// from the accept for the first request) gets its connection closed; the
/// server goes on.
pub fn header_timeout_closes_slow_head<T: Binding>() {
    let timeout = Duration::from_millis(300);
    let server = demo_server::<T>(Config {
        header_timeout: Some(timeout),
        ..Config::default()
    });
    let connected = Instant::now();
    let mut slow = connect(server.addr);
    slow.send(b"GET / HTTP/1.1\r\nhost: t\r\n").unwrap(); // no blank line
    wait_until("an active request", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    assert_closed_silently(&mut slow, "slow head");
    let after = connected.elapsed();
    assert!(after >= timeout, "closed after {after:?}");
    assert!(after < timeout + PROMPT, "closed after {after:?}");
    // The observer hears of the close once the driver's lock is released,
    // which can be a moment after the client sees it.
    wait_until("the header-timeout event", EVENTUALLY, || {
        server
            .events()
            .iter()
            .any(|e| e.contains("request header timeout"))
    });
    assert_ok(&connect(server.addr).get("/").unwrap(), "hello");
}

/// A keep-alive connection idle longer than `idle_timeout` is closed.
pub fn idle_timeout_closes_idle_connection<T: Binding>() {
    let timeout = Duration::from_millis(300);
    let server = demo_server::<T>(Config {
        idle_timeout: Some(timeout),
        ..Config::default()
    });
    let mut client = connect(server.addr);
    let sent = Instant::now();
    assert_ok(&client.get("/").unwrap(), "hello");
    assert_eq!(assert_closed_silently(&mut client, "idle"), Ending::Eof);
    let after = sent.elapsed();
    assert!(after >= timeout, "closed {after:?} after the request");
    assert!(
        after < timeout + PROMPT,
        "closed {after:?} after the request"
    );
    wait_until("no tracked connection", EVENTUALLY, || {
        server.handle.counts().tracked() == 0
    });
}

/// A kept-alive connection's later requests are tracked as exactly as its
/// first, though the core lends them to the connection's own task
/// (`lameduck_core::lease`): the counts follow a later request in flight,
/// the header timeout cuts a later request's slow head on time, and the
/// drain closes an idle kept-alive connection at once and lets a later
/// request in flight finish with `Connection: close`.
pub fn kept_alive_requests_tracked_like_the_first<T: Binding>() {
    let timeout = Duration::from_millis(300);
    let server = demo_server::<T>(Config {
        header_timeout: Some(timeout),
        ..Config::default()
    });
    let counts = |active, idle| lameduck::Counts {
        active,
        idle,
        ..lameduck::Counts::default()
    };
    // A few requests, then a slow one, in flight at the drain.
    let mut busy = connect(server.addr);
    for _ in 0..3 {
        assert_ok(&busy.get("/").unwrap(), "hello");
    }
    wait_until("one idle connection", EVENTUALLY, || {
        server.handle.counts() == counts(0, 1)
    });
    busy.send_get("/sleep?ms=2000").unwrap();
    wait_until("the later request active", EVENTUALLY, || {
        server.handle.counts() == counts(1, 0)
    });
    // A later request's head never ends.
    let mut slow = connect(server.addr);
    assert_ok(&slow.get("/").unwrap(), "hello");
    assert_ok(&slow.get("/").unwrap(), "hello");
    let sent = Instant::now();
    slow.send(b"GET / HTTP/1.1\r\nhost: t\r\n").unwrap(); // no blank line
    assert_closed_silently(&mut slow, "a later request's slow head");
    let after = sent.elapsed();
    assert!(after >= timeout, "closed {after:?} after the head began");
    assert!(
        after < timeout + PROMPT,
        "closed {after:?} after the head began"
    );
    // Idle after a few requests: closed as the drain begins.
    let mut idle = connect(server.addr);
    for _ in 0..3 {
        assert_ok(&idle.get("/").unwrap(), "hello");
    }
    wait_until("one active, one idle", EVENTUALLY, || {
        server.handle.counts() == counts(1, 1)
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_closed_silently(&mut idle, "an idle kept-alive connection at the drain");
    let response = busy.read_response().unwrap();
    assert_ok(&response, "slept 2000");
    assert!(
        response.connection_close(),
        "no Connection: close: {response:?}"
    );
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(outcome.completion, Completion::Drained, "{outcome:?}");
}

// ----- lame duck, hooks and observability (issue 8) ----------------------------

/// A client polling `/healthz` on new connections while the server is told
/// to stop sees 200, then 503 for the lame-duck delay (new connections still
/// accepted and served), then refused connections — and no response is ever
/// cut. (A connection still in the listen backlog when the listener closes
/// is reset before the server read anything: a refusal, at that moment only.)
pub fn healthz_sequence_through_lame_duck<T: Binding>() {
    let lame_duck = Duration::from_millis(600);
    let server = demo_server::<T>(Config {
        lame_duck,
        ..Config::default()
    });
    let addr = server.addr;
    let (seen_ok, ok_seen) = std::sync::mpsc::channel::<()>();
    let poller = std::thread::spawn(move || {
        // Bounded: at most 5 000 polls or 20 s, ending at the first refusal.
        let started = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..5_000 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "polling too long: {seen:?}"
            );
            let mut client = match Client::connect(addr) {
                Ok(client) => client,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    seen.push(0);
                    return seen;
                }
                Err(e) => panic!("connect failed other than by refusal: {e}"),
            };
            // A connection the kernel completed into the listen backlog just
            // before the listener closed is reset unread: to the client that
            // is a refusal (nothing was processed), at the transition only.
            if let Err(e) = client.send_get("/healthz") {
                assert!(!seen.is_empty(), "the first request failed to send: {e}");
                seen.push(0);
                return seen;
            }
            let response = match client.read_response_or_close() {
                Ok(Ok(response)) => response,
                Ok(Err(_ended_before_any_byte)) => {
                    seen.push(0);
                    return seen;
                }
                Err(e) => panic!("a /healthz response was cut: {e} after {seen:?}"),
            };
            let want = if response.status == 200 {
                "ok"
            } else {
                "draining"
            };
            assert_eq!(response.text(), want, "{response:?}");
            if response.status == 200 && seen.is_empty() {
                let _ = seen_ok.send(());
            }
            seen.push(response.status);
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("never refused: {seen:?}");
    });
    ok_seen.recv_timeout(EVENTUALLY).expect("a first 200");
    server.handle.shutdown_within(EVENTUALLY);
    let shutdown_at = Instant::now();
    let seen = poller.join().expect("the poller");
    let refused_after = shutdown_at.elapsed();
    // The sequence is 200…, 503…, refused; nothing else, in that order.
    let first_503 = seen
        .iter()
        .position(|s| *s == 503)
        .expect("503 during the lame duck");
    assert!(seen[..first_503].iter().all(|s| *s == 200), "{seen:?}");
    let refused = seen.len() - 1;
    assert_eq!(seen[refused], 0, "{seen:?}");
    assert!(
        seen[first_503..refused].iter().all(|s| *s == 503),
        "{seen:?}"
    );
    assert!(
        refused - first_503 >= 3,
        "several new connections served while lame: {seen:?}"
    );
    assert!(
        refused_after >= lame_duck,
        "refused only after the delay: {refused_after:?}"
    );
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful(), "{outcome:?}");
}

/// Hooks run in stage order and registration order, each awaited; one that
/// hangs is cut off at the deadline, the forced-close hooks still run, and
/// the drain ends without waiting for the hung hook.
pub fn hooks_run_in_order_and_a_hung_hook_is_cut_off<T: Binding>() {
    let log = Arc::new(std::sync::Mutex::new(Vec::<&'static str>::new()));
    let record = |name: &'static str, hang: bool| -> crate::harness::Hook {
        let log = log.clone();
        Box::new(move || {
            let log = log.clone();
            Box::pin(async move {
                log.lock().unwrap().push(name);
                if hang {
                    std::future::pending::<()>().await;
                }
            })
        })
    };
    let deadline = Duration::from_millis(800);
    let server = demo_server_with::<T>(
        Config {
            lame_duck: Duration::from_millis(100),
            ..Config::default()
        },
        Options {
            hooks: vec![
                (lameduck::HookStage::Drain, record("drain 1", false)),
                (
                    lameduck::HookStage::ForcedClose,
                    record("forced close", false),
                ),
                (lameduck::HookStage::LameDuck, record("lame duck", false)),
                (lameduck::HookStage::Drain, record("drain 2 (hangs)", true)),
            ],
            ..Options::default()
        },
    );
    let started = Instant::now();
    server.handle.shutdown_within(deadline);
    let (outcome, done_at) = server.wait_done(EVENTUALLY);
    assert_eq!(
        *log.lock().unwrap(),
        ["lame duck", "drain 1", "drain 2 (hangs)", "forced close"]
    );
    assert_eq!(outcome.completion, Completion::DeadlineExpired);
    assert!(outcome.hooks_cut_off);
    assert_eq!(outcome.forced, 0);
    let took = done_at - started;
    assert!(
        took >= deadline && took < deadline + PROMPT,
        "done after {took:?}"
    );
    assert!(
        server.events().iter().any(|e| e == "Drain hooks cut off"),
        "{:?}",
        server.events()
    );
}

/// The snapshot's counts match the real connections: N idle, M active, K
/// upgraded; once draining, its progress counts down.
pub fn snapshot_matches_real_connections<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let (n, m, k) = (3, 2, 2);
    let mut idle: Vec<Client> = (0..n).map(|_| connect(server.addr)).collect();
    for client in &mut idle {
        assert_ok(&client.get("/").unwrap(), "hello");
    }
    let mut active: Vec<Client> = (0..m).map(|_| connect(server.addr)).collect();
    for client in &mut active {
        client.send_get("/sleep?ms=1500").unwrap();
    }
    let upgraded: Vec<Client> = (0..k).map(|_| upgrade(&server)).collect();
    let want = lameduck::Counts {
        new: 0,
        active: m,
        idle: n,
        hijacked: k,
    };
    wait_until("the counts to match", EVENTUALLY, || {
        server.handle.snapshot().counts == want
    });
    let before = server.handle.snapshot();
    assert_eq!(
        (before.phase, before.drain, before.deadline),
        (Phase::Serving, None, None)
    );

    server.handle.shutdown_within(EVENTUALLY);
    let snap = server.handle.snapshot();
    assert_eq!(snap.phase, Phase::Draining);
    assert!(snap.deadline.is_some());
    let progress = snap.drain.expect("draining");
    assert_eq!(progress.connections_at_start, n + m);
    assert!(
        progress.remaining <= m,
        "idle ones closed at once: {progress:?}"
    );
    for client in &mut active {
        let response = client.read_response().unwrap();
        assert_eq!(response.status, 200);
    }
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful(), "{outcome:?}");
    // The upgraded connections were told, said goodbye and closed.
    for mut client in upgraded {
        let (bytes, _) = client.read_until_closed().unwrap();
        assert_eq!(bytes, b"bye\n");
    }
    assert_eq!(server.handle.counts(), lameduck::Counts::default());
}

/// Instantiates every scenario (with the HTTP/2 ones,
/// [`scenarios_h2!`](crate::scenarios_h2!), and the drain notice's,
/// [`drain_notice_scenarios!`](crate::drain_notice_scenarios!), and with
/// the feature `tls` the TLS ones, `scenarios_tls!`), and every
/// check of the runtime seam's promises ([`seam`](crate::seam)), as a
/// `#[test]` for one [`Binding`]:
/// `lameduck_testkit::scenarios!(lameduck_testkit::harness::SmolRt);`
#[macro_export]
macro_rules! scenarios {
    ($rt:ty) => {
        $crate::drain_notice_scenarios!($rt);
        $crate::scenarios_h2!($rt);
        $crate::__scenarios_tls_if_enabled!($rt);
        $crate::scenarios!(@each $rt; seam;
            sleep_until_is_never_early,
            tcp_shutdown_write_sends_fin,
            unix_shutdown_write_sends_fin,
            accept_tcp_is_cancel_safe,
        );
        $crate::scenarios!(@each $rt; scenarios;
            in_flight_request_completes,
            connect_after_shutdown_refused,
            idle_keepalive_closed_at_once,
            idle_keepalive_does_not_delay_drain,
            silent_connection_closed_at_grace,
            idle_request_racing_shutdown,
            deadline_force_closes_stuck_request,
            upgraded_connection_notified_not_waited,
            upgraded_connection_waited_when_opted_in,
            close_drops_everything,
            second_shutdown_harmless,
            second_shutdown_brings_deadline_forward,
            malformed_request_gets_400,
            pipelined_requests_tracked,
            head_request_tracked,
            lame_duck_reports_draining,
            shutdown_hooks_awaited,
            shutdown_hooks_cut_off_at_deadline,
            several_listeners_tcp_and_unix,
            raw_stream_tracking,
            raw_stream_forced_at_deadline,
            header_timeout_closes_slow_head,
            idle_timeout_closes_idle_connection,
            kept_alive_requests_tracked_like_the_first,
            healthz_sequence_through_lame_duck,
            hooks_run_in_order_and_a_hung_hook_is_cut_off,
            snapshot_matches_real_connections,
        );
    };
    (@each $rt:ty; $module:ident; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::$module::$name::<$rt>();
            }
        )*
    };
}
