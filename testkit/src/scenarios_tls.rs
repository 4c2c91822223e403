//! The lifecycle over TLS (`Builder::tls`): scenarios over real sockets on
//! 127.0.0.1 with a real rustls client and a test CA ([`crate::tls`]),
//! generic over the runtime. Instantiated per runtime by
//! [`scenarios_tls!`](crate::scenarios_tls!), beside the cleartext suite.
//!
//! The client's reads tell a clean close from a cut one: `Ok(0)` only
//! after the server's `close_notify`; an end of stream without it is an
//! `UnexpectedEof` error. Waits are for observable conditions; timing
//! claims are generous bounds ([`PROMPT`], [`EVENTUALLY`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lameduck::tls::rustls::ClientConfig;
use lameduck::{Completion, Config, Phase};

use crate::client::{Client, Ending, Response};
use crate::harness::{Binding, EVENTUALLY, Options, PROMPT, TestServer, configure, wait_until};

use crate::h2::H2Client;
use crate::tls::{TestCa, TlsStream, client_hello, connect};

/// The testkit's demo app over TLS on one listener (a certificate from a
/// fresh test CA), and a client configuration trusting that CA, offering
/// HTTP/1.1.
fn tls_server<T: Binding>(config: Config) -> (TestServer<T>, Arc<ClientConfig>) {
    let (server, ca) = tls_server_ca::<T>(config);
    (server, ca.client_config(&[b"http/1.1"]))
}

/// [`tls_server`], with the CA (for clients offering other protocols).
fn tls_server_ca<T: Binding>(config: Config) -> (TestServer<T>, TestCa) {
    let ca = TestCa::new();
    let acceptor = ca.issue("lameduck test server").acceptor();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let (handle, ()) = T::serve_on(move |builder| {
        let server = configure(builder, config, Options::default(), &log)
            .tls(acceptor)
            .build()
            .expect("starting the server");
        let handle = server.handle();
        let handle = server.serve_http_with(move |rt| crate::routes::router(rt, handle.clone()));
        (handle, ())
    });
    (TestServer::new(handle, events), ca)
}

fn h2_connect(addr: SocketAddr, ca: &TestCa) -> H2Client {
    H2Client::connect_tls(addr, ca.client_config(&[b"h2", b"http/1.1"]))
        .expect("an HTTP/2 connection over TLS (ALPN h2)")
}

fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Client<TlsStream> {
    connect(addr, config).expect("connecting over TLS to the test server")
}

fn tcp_connect(addr: SocketAddr) -> Client {
    Client::connect(addr).expect("connecting to the test server")
}

fn assert_ok(response: &Response, body: &str) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), body);
}

/// Reads until the server ends the TLS session; asserts it ended with
/// `close_notify` (not a truncation, not a reset) and nothing came first.
fn assert_close_notify(client: &mut Client<TlsStream>, what: &str) {
    let (bytes, ending) = client.read_until_closed().unwrap_or_else(|e| {
        panic!("{what}: no clean close_notify (a truncated TLS session?): {e}")
    });
    assert_eq!(ending, Ending::Eof, "{what}: reset");
    assert!(
        bytes.is_empty(),
        "{what}: unexpected bytes before the close: {:?}",
        String::from_utf8_lossy(&bytes)
    );
}

/// Reads until the server closes the TCP connection; asserts nothing came
/// first and that it was an end of stream (a gentle close), not a reset.
fn assert_closed_silently(client: &mut Client, what: &str) {
    let (bytes, ending) = client
        .read_until_closed()
        .unwrap_or_else(|e| panic!("{what}: the server did not close: {e}"));
    assert!(bytes.is_empty(), "{what}: unexpected bytes {bytes:?}");
    assert_eq!(ending, Ending::Eof, "{what}");
}

/// An HTTPS request in flight at shutdown completes with `Connection:
/// close`, and its connection ends with `close_notify`; an idle keep-alive
/// HTTPS connection is closed at the drain's start with `close_notify`
/// too; the drain is graceful.
pub fn https_drain_ends_with_close_notify<T: Binding>() {
    let (server, client_config) = tls_server::<T>(Config::default());
    let mut idle = tls_connect(server.addr, &client_config);
    let response = idle.get("/").unwrap();
    assert_ok(&response, "hello");
    assert!(!response.connection_close(), "kept alive while serving");
    let mut busy = tls_connect(server.addr, &client_config);
    busy.send_get("/sleep?ms=300").unwrap();
    wait_until("an active and an idle connection", EVENTUALLY, || {
        let counts = server.handle.counts();
        counts.active == 1 && counts.idle == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(server.handle.phase(), Phase::Draining);
    assert_close_notify(&mut idle, "the idle connection");
    let response = busy.read_response().unwrap();
    assert_ok(&response, "slept 300");
    assert!(response.connection_close(), "{response:?}");
    assert_close_notify(&mut busy, "after the last response");
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful(), "{outcome:?}");
    assert_eq!(outcome.completion, Completion::Drained);
}

/// A connection in its TLS handshake is New: at the drain, a TCP
/// connection that never starts the handshake and one that stalls inside
/// it are both closed at the new-connection grace (measured from their
/// accept) — a FIN, without `close_notify` (there is no session yet).
pub fn tls_handshake_closed_at_grace<T: Binding>() {
    let grace = Duration::from_millis(300);
    let (server, client_config) = tls_server::<T>(Config {
        new_conn_grace: grace,
        ..Config::default()
    });
    let connected = Instant::now();
    let mut silent = tcp_connect(server.addr);
    let mut stalled = tcp_connect(server.addr);
    let hello = client_hello(&client_config);
    stalled.send(&hello[..hello.len() / 2]).unwrap();
    wait_until("two new connections", EVENTUALLY, || {
        server.handle.counts().new == 2
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(server.handle.phase(), Phase::Draining);
    assert_closed_silently(&mut silent, "silent");
    assert_closed_silently(&mut stalled, "stalled in the handshake");
    let after = connected.elapsed();
    assert!(after >= grace, "closed {after:?} after connecting");
    assert!(after < grace + PROMPT, "closed {after:?} after connecting");
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful(), "{outcome:?}");
    wait_until("the grace events", EVENTUALLY, || {
        server
            .events()
            .iter()
            .filter(|e| e.contains("new-connection grace"))
            .count()
            == 2
    });
}

/// A client that starts its TLS handshake and stalls is closed at the
/// header timeout, counted from the accept; the server goes on serving
/// HTTPS.
pub fn tls_stalled_handshake_closed_at_header_timeout<T: Binding>() {
    let timeout = Duration::from_millis(300);
    let (server, client_config) = tls_server::<T>(Config {
        header_timeout: Some(timeout),
        ..Config::default()
    });
    let connected = Instant::now();
    let mut stalled = tcp_connect(server.addr);
    let hello = client_hello(&client_config);
    stalled.send(&hello[..hello.len() / 2]).unwrap();
    assert_closed_silently(&mut stalled, "stalled in the handshake");
    let after = connected.elapsed();
    assert!(after >= timeout, "closed after {after:?}");
    assert!(after < timeout + PROMPT, "closed after {after:?}");
    wait_until("the header-timeout event", EVENTUALLY, || {
        server
            .events()
            .iter()
            .any(|e| e.contains("request header timeout"))
    });
    let mut fresh = tls_connect(server.addr, &client_config);
    assert_ok(&fresh.get("/").unwrap(), "hello");
}

/// The shutdown deadline cuts a stuck HTTPS request: the connection is
/// dropped at once, without `close_notify` (the client sees a truncation or
/// a reset), and the outcome counts it forced.
pub fn tls_deadline_drops_without_close_notify<T: Binding>() {
    let (server, client_config) = tls_server::<T>(Config::default());
    let mut stuck = tls_connect(server.addr, &client_config);
    stuck.send_get("/sleep?ms=60000").unwrap();
    wait_until("an active request", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    server.handle.shutdown_within(Duration::from_millis(300));
    match stuck.read_response_or_close() {
        Ok(Ok(response)) => panic!("a response from a stuck request: {response:?}"),
        Ok(Err(Ending::Eof)) => panic!("close_notify on a forced close"),
        Ok(Err(Ending::Reset)) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
    }
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(outcome.forced, 1, "{outcome:?}");
}

/// One TLS listener serves HTTP/2 and HTTP/1.1 by ALPN: a client offering
/// `h2` gets HTTP/2, one offering only `http/1.1` — or no ALPN at all —
/// HTTP/1.1. At the drain the idle HTTP/2 connection gets GOAWAY and a
/// clean end (hyper's client sees no error: `close_notify` came), the
/// HTTP/1.1 ones `close_notify`.
pub fn h2_and_http1_over_tls_by_alpn<T: Binding>() {
    let (server, ca) = tls_server_ca::<T>(Config::default());
    let mut h2 = h2_connect(server.addr, &ca);
    let response = h2.get("/").unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    let mut http1 = tls_connect(server.addr, &ca.client_config(&[b"http/1.1"]));
    assert_ok(&http1.get("/").unwrap(), "hello");
    let mut no_alpn = tls_connect(server.addr, &ca.client_config(&[]));
    assert_ok(&no_alpn.get("/").unwrap(), "hello");
    wait_until("three idle connections", EVENTUALLY, || {
        server.handle.counts().idle == 3
    });
    server.handle.shutdown_within(EVENTUALLY);
    let closed = h2.wait_closed().unwrap();
    assert!(
        closed.is_ok(),
        "the HTTP/2 connection ended with {closed:?}"
    );
    assert_close_notify(&mut http1, "HTTP/1.1 by ALPN");
    assert_close_notify(&mut no_alpn, "HTTP/1.1 without ALPN");
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful(), "{outcome:?}");
}

/// An HTTP/2 stream over TLS in flight when the drain begins completes
/// after the GOAWAY; the connection then ends cleanly and the drain is
/// graceful.
pub fn h2_over_tls_stream_completes_after_goaway<T: Binding>() {
    let (server, ca) = tls_server_ca::<T>(Config::default());
    let mut h2 = h2_connect(server.addr, &ca);
    let in_flight = h2.spawn("GET", "/sleep?ms=1500", b"");
    wait_until("an active HTTP/2 stream", EVENTUALLY, || {
        server.handle.counts().active == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert!(!in_flight.is_finished(), "answered before the drain began");
    let response = H2Client::wait(in_flight).unwrap();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "slept 1500")
    );
    let closed = h2.wait_closed().unwrap();
    assert!(
        closed.is_ok(),
        "the HTTP/2 connection ended with {closed:?}"
    );
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::Drained, 0)
    );
}

/// Raw streams get TLS too: a line protocol (each line answered with
/// itself) over TLS, its requests tracked on the decrypted bytes; at the
/// drain its idle connection is closed with `close_notify`.
pub fn tls_raw_stream<T: Binding>() {
    use futures_lite::{AsyncBufReadExt, AsyncWriteExt};

    let ca = TestCa::new();
    let acceptor = ca.issue("raw").acceptor();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let (handle, ()) = T::serve_on(move |builder| {
        let handle = configure(builder, Config::default(), Options::default(), &log)
            .tls(acceptor)
            .serve_stream(|conn| async move {
                let mut conn = futures_lite::io::BufReader::new(conn);
                let mut line = String::new();
                // One line per pass; ends when the peer or the server closes.
                loop {
                    line.clear();
                    match conn.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if conn.get_mut().write_all(line.as_bytes()).await.is_err()
                        || conn.get_mut().flush().await.is_err()
                        || !conn.get_mut().end()
                    {
                        return;
                    }
                }
            })
            .expect("starting the server");
        (handle, ())
    });
    let server = TestServer::<T>::new(handle, events);
    let mut client = tls_connect(server.addr, &ca.client_config(&[]));
    client.send(b"ping\n").unwrap();
    assert_eq!(client.read_exact_bytes(5).unwrap(), b"ping\n");
    wait_until("an idle raw connection", EVENTUALLY, || {
        server.handle.counts().idle == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert_close_notify(&mut client, "the idle raw stream");
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert!(outcome.is_graceful(), "{outcome:?}");
}

/// Most requests the well-behaved client makes (it stops earlier when told).
const CHECKER_MAX_REQUESTS: usize = 5_000;
/// Longest it runs.
const CHECKER_MAX_TIME: Duration = Duration::from_secs(60);

/// Garbage where a TLS ClientHello belongs — random bytes, a handshake
/// record of garbage, a corrupted ClientHello, cleartext HTTP — each gets a
/// clear close (at most rustls' alert, then end of stream), while a
/// well-behaved HTTPS client on other connections is served throughout.
pub fn tls_garbage_hello_closed_server_keeps_serving<T: Binding>() {
    let (server, client_config) = tls_server::<T>(Config {
        // A garbage record header that announces more bytes than come
        // waits for them; the timeout ends that wait.
        header_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let checker = {
        let (stop, served, config, addr) = (
            stop.clone(),
            served.clone(),
            client_config.clone(),
            server.addr,
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            // One HTTPS request on a fresh connection per pass; bounded in
            // count and time.
            for _ in 0..CHECKER_MAX_REQUESTS {
                if stop.load(Ordering::Acquire) || started.elapsed() > CHECKER_MAX_TIME {
                    return;
                }
                let response = connect(addr, &config)
                    .and_then(|mut client| client.get("/"))
                    .expect("the well-behaved HTTPS client");
                assert_ok(&response, "hello");
                served.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    let mut random = Vec::with_capacity(4096);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while random.len() < 4096 {
        // xorshift64: fixed seed, the same bytes every run.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.extend_from_slice(&x.to_le_bytes());
    }
    random[0] = 0xab; // not a TLS record type
    let mut bad_record = vec![0x16, 0x03, 0x01, 0x00, 0x80];
    bad_record.extend_from_slice(&random[1..=0x80]);
    // A real ClientHello whose cipher-suite list claims 65535 bytes: after
    // the record (5) and handshake (4) headers, the version (2), the random
    // (32) and the session id (its length byte, then that many bytes).
    let mut corrupted = client_hello(&client_config);
    let suites = 5 + 4 + 2 + 32 + 1 + usize::from(corrupted[5 + 4 + 2 + 32]);
    corrupted[suites..suites + 2].copy_from_slice(&[0xff, 0xff]);
    let cleartext = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n".to_vec();
    for (what, bytes) in [
        ("random bytes", random),
        ("a handshake record of garbage", bad_record),
        ("a ClientHello that overruns itself", corrupted),
        ("cleartext HTTP", cleartext),
    ] {
        let before = served.load(Ordering::Acquire);
        let mut attacker = tcp_connect(server.addr);
        attacker.send(&bytes).unwrap();
        let (answer, ending) = attacker
            .read_until_closed()
            .unwrap_or_else(|e| panic!("{what}: the server did not close: {e}"));
        assert_eq!(ending, Ending::Eof, "{what}");
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{what}: answered with something other than a TLS alert: {answer:?}"
        );
        wait_until(
            "the well-behaved client served after the attack",
            EVENTUALLY,
            || served.load(Ordering::Acquire) > before,
        );
    }
    stop.store(true, Ordering::Release);
    checker
        .join()
        .expect("the well-behaved client never failed");
    assert_eq!(server.handle.phase(), Phase::Serving);
    wait_until("nothing tracked", EVENTUALLY, || {
        server.handle.counts().tracked() == 0
    });
    server.handle.shutdown_within(EVENTUALLY);
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
}

/// Instantiates every TLS scenario as a `#[test]` for one
/// [`Binding`]: `lameduck_testkit::scenarios_tls!(lameduck_testkit::harness::SmolRt);`
#[macro_export]
macro_rules! scenarios_tls {
    ($rt:ty) => {
        $crate::scenarios_tls!(@each $rt;
            https_drain_ends_with_close_notify,
            tls_handshake_closed_at_grace,
            tls_stalled_handshake_closed_at_header_timeout,
            tls_deadline_drops_without_close_notify,
            tls_garbage_hello_closed_server_keeps_serving,
            h2_and_http1_over_tls_by_alpn,
            h2_over_tls_stream_completes_after_goaway,
            tls_raw_stream,
        );
    };
    (@each $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios_tls::$name::<$rt>();
            }
        )*
    };
}

/// [`scenarios_tls!`] when the testkit's feature `tls` is on (decided in
/// this crate, not in the crate invoking [`scenarios!`](crate::scenarios!)).
#[doc(hidden)]
#[macro_export]
macro_rules! __scenarios_tls_if_enabled {
    ($rt:ty) => {
        $crate::scenarios_tls!($rt);
    };
}
