//! Adversarial clients over real sockets: slowloris, clients
//! that never read, a connection flood past `max_connections`, half-closed
//! connections, requests larger than the limits, garbage bytes. Generic
//! over the runtime; instantiated per runtime by
//! [`adversarial!`](crate::adversarial!).
//!
//! In every attack a well-behaved client ([`Checker`]) requests `GET /` on
//! fresh connections, over and over, while the attack goes on; each of its
//! requests must succeed, and some must be served while the attack is in
//! progress. (The last test checks the seam the HTTP fuzz target feeds,
//! [`Handle::serve_io`](lameduck::Handle::serve_io), on each runtime.) Waits are for observable conditions (a response, an end of
//! stream, the server's counts, the done signal), bounded by generous
//! timeouts; loops are bounded in count and time.

use std::convert::Infallible;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use lameduck::{Completion, Config, Phase};

use crate::client::{Client, Ending, Response};
use crate::harness::{
    Binding, EVENTUALLY, PROMPT, TestServer, demo_server, http_server, wait_until,
};

fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr).expect("connecting to the test server")
}

fn assert_hello(response: &Response) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "hello", "{response:?}");
}

/// Reads until the server ends the connection; returns what came first.
fn read_to_close(client: &mut Client, what: &str) -> (Vec<u8>, Ending) {
    client
        .read_until_closed()
        .unwrap_or_else(|e| panic!("{what}: the server did not close: {e}"))
}

/// Waits until the server tracks nothing (the checker stopped first).
fn assert_nothing_tracked<T: Binding>(server: &TestServer<T>, what: &str) {
    wait_until(what, EVENTUALLY, || {
        let counts = server.handle.counts();
        counts.tracked() + counts.hijacked == 0
    });
}

/// Still serving: phase `Serving`, and a fresh `GET /` answered.
fn assert_still_serving<T: Binding>(server: &TestServer<T>) {
    assert_eq!(server.handle.phase(), Phase::Serving);
    assert_hello(
        &connect(server.addr)
            .get("/")
            .expect("a GET / after the attack"),
    );
}

// ----- the well-behaved client --------------------------------------------------

/// Most requests a checker makes (it stops earlier when told).
const CHECKER_MAX_REQUESTS: usize = 20_000;
/// Longest a checker runs.
const CHECKER_MAX_TIME: Duration = Duration::from_secs(60);

/// A well-behaved client on a thread of its own: `GET /` on a fresh
/// connection, again and again (a millisecond apart), until stopped. Every
/// request must get `200 hello`; the first failure panics its thread, and
/// [`finish`](Checker::finish) re-raises it.
#[derive(Debug)]
pub struct Checker {
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checker {
    /// Starts requesting from `addr`.
    #[must_use]
    pub fn start(addr: SocketAddr) -> Checker {
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (served, stop) = (served.clone(), stop.clone());
            std::thread::Builder::new()
                .name("checker".into())
                .spawn(move || {
                    let started = Instant::now();
                    // Bounded in count and in time.
                    for i in 0..CHECKER_MAX_REQUESTS {
                        if stop.load(Ordering::Acquire) || started.elapsed() > CHECKER_MAX_TIME {
                            return;
                        }
                        let response = Client::connect(addr)
                            .and_then(|mut client| client.get("/"))
                            .unwrap_or_else(|e| {
                                panic!("the well-behaved client's request {i} failed: {e}")
                            });
                        assert_eq!(
                            (response.status, response.text().as_str()),
                            (200, "hello"),
                            "the well-behaved client's request {i}: {response:?}"
                        );
                        served.fetch_add(1, Ordering::AcqRel);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
                .expect("spawning the checker")
        };
        Checker {
            served,
            stop,
            thread: Some(thread),
        }
    }

    /// Requests answered so far.
    #[must_use]
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Acquire)
    }

    /// Waits until `n` more requests than now have been answered: proof
    /// that the server serves others at this point of the attack.
    pub fn wait_for_more(&mut self, n: usize) {
        let target = self.served() + n;
        let deadline = Instant::now() + EVENTUALLY;
        // Bounded by the deadline.
        while self.served() < target {
            if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                self.join(); // re-raises its failure
                panic!("the well-behaved client stopped early");
            }
            assert!(
                Instant::now() < deadline,
                "the well-behaved client got no answers for {EVENTUALLY:?}: {} served",
                self.served()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
    }

    /// Stops it and re-raises any failure.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Release);
        self.join();
        eprintln!(
            "the well-behaved client: {} requests answered",
            self.served()
        );
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if !std::thread::panicking() {
            self.join();
        }
    }
}

// ----- a client that sends a byte at a time ---------------------------------------

/// Writes `bytes` to a clone of `client`'s socket one byte every `every`,
/// on a thread, until they run out, a write fails, or it is stopped.
struct Trickle {
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    fn start(client: &Client, bytes: Vec<u8>, every: Duration) -> Trickle {
        let mut stream = client.stream().try_clone().expect("cloning the socket");
        let sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (sent, stop) = (sent.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded by the length of `bytes`.
                for byte in bytes {
                    if stop.load(Ordering::Acquire) || stream.write_all(&[byte]).is_err() {
                        return;
                    }
                    sent.fetch_add(1, Ordering::AcqRel);
                    std::thread::sleep(every);
                }
            })
        };
        Trickle {
            sent,
            stop,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::Acquire)
    }

    /// Stops it; returns how many bytes it sent.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the trickling thread");
        }
        self.sent()
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// A request head that never ends (no blank line), long enough to trickle
/// for longer than any test waits.
fn endless_head() -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nhost: t\r\nx-slow: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 400));
    head
}

/// How often a slowloris client sends a byte.
const TRICKLE: Duration = Duration::from_millis(50);

// ----- the tests -------------------------------------------------------------------

/// Slowloris: a request head sent a byte every 50 ms is closed by the
/// 300 ms header timeout — after at least 300 ms, well before 1 s — however
/// steadily bytes arrive; others are served meanwhile.
pub fn slowloris_closed_by_header_timeout<T: Binding>() {
    let timeout = Duration::from_millis(300);
    let server = demo_server::<T>(Config {
        header_timeout: Some(timeout),
        ..Config::default()
    });
    let mut checker = Checker::start(server.addr);
    let connected = Instant::now();
    let mut slow = connect(server.addr);
    let trickle = Trickle::start(&slow, endless_head(), TRICKLE);
    checker.wait_for_more(3);
    let (bytes, _) = read_to_close(&mut slow, "slowloris");
    let after = connected.elapsed();
    assert!(
        bytes.is_empty(),
        "answered {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(after >= timeout, "closed after {after:?}");
    assert!(after < timeout + PROMPT, "closed after {after:?}");
    let sent = trickle.finish();
    assert!(
        sent >= 3 && sent < endless_head().len(),
        "trickled {sent} bytes"
    );
    checker.wait_for_more(3);
    checker.finish();
    eprintln!(
        "[{}] slowloris closed after {after:?} ({sent} bytes)",
        T::NAME
    );
    // The observer hears of the close just after the lock that decided it
    // is released: possibly after the client saw it.
    wait_until("the header timeout's close event", EVENTUALLY, || {
        server
            .events()
            .iter()
            .any(|e| e.contains("request header timeout"))
    });
    assert_nothing_tracked(&server, "the slowloris connection gone");
    assert_still_serving(&server);
}

/// A slowloris connection present at shutdown (no header timeout to stop
/// it) does not hold the drain past the deadline: it is forced closed at the
/// deadline, and the server is done right then.
pub fn slowloris_does_not_hold_drain<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut checker = Checker::start(server.addr);
    let mut slow = connect(server.addr);
    let trickle = Trickle::start(&slow, endless_head(), TRICKLE);
    checker.wait_for_more(3);
    checker.finish();
    wait_until("only the slowloris request left", EVENTUALLY, || {
        let counts = server.handle.counts();
        (counts.active, counts.tracked()) == (1, 1)
    });
    let deadline = Duration::from_millis(600);
    let t0 = Instant::now();
    server.handle.shutdown_within(deadline);
    let (outcome, done_at) = server.wait_done(EVENTUALLY);
    let took = done_at - t0;
    assert_eq!(
        outcome.completion,
        Completion::DeadlineExpired,
        "{outcome:?}"
    );
    assert_eq!(outcome.forced, 1, "{outcome:?}");
    assert!(took >= deadline, "done after {took:?}");
    assert!(took < deadline + PROMPT, "done after {took:?}");
    let (bytes, _) = read_to_close(&mut slow, "slowloris at the deadline");
    assert!(
        bytes.is_empty(),
        "answered {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let sent = trickle.finish();
    eprintln!(
        "[{}] drain with a slowloris client done after {took:?} ({sent} bytes trickled)",
        T::NAME
    );
}

/// The never-reading client's response: 256 MiB, far beyond what socket
/// buffers hold.
const BIG_CHUNK: usize = 64 * 1024;
const BIG_CHUNKS: usize = 4096;
static CHUNK: [u8; BIG_CHUNK] = [b'x'; BIG_CHUNK];

/// A client that asks for a large response and never reads it fills the
/// socket buffers and stalls its response; others are served meanwhile;
/// shutdown's deadline bounds the drain (forced at the deadline).
pub fn never_reading_client_bounded_by_deadline<T: Binding>() {
    let produced = Arc::new(AtomicUsize::new(0));
    let server = {
        let produced = produced.clone();
        http_server::<T, _, _>(Config::default(), move |rt, handle| {
            let demo = crate::routes::router(rt, handle);
            let produced = produced.clone();
            move |req: hyper::Request<hyper::body::Incoming>| -> crate::routes::Reply {
                if req.uri().path() != "/big" {
                    return demo(req);
                }
                let produced = produced.clone();
                let chunks = futures_lite::stream::iter(0..BIG_CHUNKS).map(move |_| {
                    produced.fetch_add(BIG_CHUNK, Ordering::AcqRel);
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK)))
                });
                let body = StreamBody::new(chunks).boxed_unsync();
                Box::pin(async move { Ok(hyper::Response::new(body)) })
            }
        })
    };
    let mut checker = Checker::start(server.addr);
    let mut lazy = connect(server.addr);
    lazy.send_get("/big").unwrap();
    wait_until("the big response under way", EVENTUALLY, || {
        produced.load(Ordering::Acquire) >= 1024 * 1024
    });
    checker.wait_for_more(5);
    checker.finish();
    wait_until("only the never-reading request left", EVENTUALLY, || {
        let counts = server.handle.counts();
        (counts.active, counts.tracked()) == (1, 1)
    });
    let deadline = Duration::from_millis(600);
    let t0 = Instant::now();
    server.handle.shutdown_within(deadline);
    let (outcome, done_at) = server.wait_done(EVENTUALLY);
    let took = done_at - t0;
    assert_eq!(
        outcome.completion,
        Completion::DeadlineExpired,
        "{outcome:?}"
    );
    assert!(outcome.forced >= 1, "{outcome:?}");
    assert!(took >= deadline, "done after {took:?}");
    assert!(took < deadline + PROMPT, "done after {took:?}");
    let stalled_at = produced.load(Ordering::Acquire);
    assert!(
        stalled_at < BIG_CHUNK * BIG_CHUNKS,
        "the whole response was written to a client that never read"
    );
    eprintln!(
        "[{}] never-reading client: {} KiB written before the stall; done after {took:?}",
        T::NAME,
        stalled_at / 1024
    );
    lazy.stream()
        .shutdown(Shutdown::Both)
        .expect("closing the lazy client");
}

/// A flood of connections past `max_connections`: the excess wait in the
/// listen backlog (their connects succeed; nothing is refused) and are all
/// answered once earlier connections close; the server never holds more
/// than the limit and stays up.
pub fn connection_flood_past_max_connections<T: Binding>() {
    const MAX: usize = 8;
    const EXCESS: usize = 3 * MAX;
    let server = demo_server::<T>(Config {
        max_connections: Some(MAX),
        ..Config::default()
    });
    let monitor = CountsMonitor::start(&server);
    // MAX keep-alive connections, idle, hold every slot.
    let mut holders: Vec<Client> = (0..MAX).map(|_| connect(server.addr)).collect();
    for holder in &mut holders {
        assert_hello(&holder.get("/").unwrap());
    }
    wait_until("every slot held by an idle connection", EVENTUALLY, || {
        server.handle.counts().idle == MAX
    });
    let mut checker = Checker::start(server.addr);
    // The flood: each connect completes (the kernel's backlog), each sends
    // its request and waits.
    let mut flood: Vec<Client> = (0..EXCESS)
        .map(|_| {
            let mut client = connect(server.addr);
            client
                .send(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                .unwrap();
            client
        })
        .collect();
    assert_eq!(server.handle.counts().tracked(), MAX);
    assert_eq!(server.handle.phase(), Phase::Serving);
    // Free the slots: the queued clients are accepted and answered, one
    // slot at a time (each closes after its answer).
    drop(holders);
    for (i, client) in flood.iter_mut().enumerate() {
        let response = client
            .read_response()
            .unwrap_or_else(|e| panic!("flood client {i} was not answered: {e}"));
        assert_hello(&response);
        assert!(response.connection_close());
    }
    checker.wait_for_more(3);
    checker.finish();
    let max_seen = monitor.finish();
    eprintln!(
        "[{}] flood of {EXCESS} past {MAX}: all answered; at most {max_seen} open",
        T::NAME
    );
    // The limit was reached (asserted exactly above, before the slots
    // were freed); the monitor samples, so it checks the bound only.
    assert!(max_seen <= MAX, "at most the limit open: {max_seen}");
    assert_nothing_tracked(&server, "the flood gone");
    assert_still_serving(&server);
}

/// A flood of silent connections holding every slot does not lock the
/// server out: the header timeout closes them, and the clients queued in
/// the backlog (the well-behaved one included) are served.
pub fn silent_flood_cleared_by_header_timeout<T: Binding>() {
    const MAX: usize = 4;
    let timeout = Duration::from_millis(300);
    let server = demo_server::<T>(Config {
        max_connections: Some(MAX),
        header_timeout: Some(timeout),
        ..Config::default()
    });
    let monitor = CountsMonitor::start(&server);
    let mut silent: Vec<Client> = (0..MAX).map(|_| connect(server.addr)).collect();
    wait_until("every slot held by a silent connection", EVENTUALLY, || {
        server.handle.counts().new == MAX
    });
    let held_at = Instant::now();
    let mut checker = Checker::start(server.addr);
    checker.wait_for_more(3);
    let first_answers = held_at.elapsed();
    for client in &mut silent {
        let (bytes, _) = read_to_close(client, "silent");
        assert!(bytes.is_empty());
    }
    checker.wait_for_more(3);
    checker.finish();
    let max_seen = monitor.finish();
    eprintln!(
        "[{}] silent flood: others answered after {first_answers:?}; at most {max_seen} open",
        T::NAME
    );
    assert!(max_seen <= MAX, "{max_seen} open");
    assert_nothing_tracked(&server, "the silent connections gone");
    assert_still_serving(&server);
}

/// Samples the server's open connections every millisecond on a thread;
/// reports the most it saw.
struct CountsMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl CountsMonitor {
    fn start<T: Binding>(server: &TestServer<T>) -> CountsMonitor {
        let handle = server.handle.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut max = 0;
                // Bounded by the stop flag and by a minute.
                while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(60) {
                    let counts = handle.counts();
                    max = max.max(counts.tracked() + counts.hijacked);
                    std::thread::sleep(Duration::from_millis(1));
                }
                max
            })
        };
        CountsMonitor {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the monitor")
    }
}

impl Drop for CountsMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Half-closed after a full request (`shutdown(Write)`): the client still
/// gets its whole response — short, streamed, or after a handler's wait —
/// then the server's clean close; nothing is left tracked.
pub fn half_closed_after_request_gets_full_response<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut checker = Checker::start(server.addr);
    let streamed: String = (0..20).map(|i| format!("chunk {i}\n")).collect();
    let cases: [(&[u8], &str); 4] = [
        (b"GET / HTTP/1.1\r\nhost: t\r\n\r\n", "hello"),
        (
            b"GET /stream?chunks=20&ms=5 HTTP/1.1\r\nhost: t\r\n\r\n",
            &streamed,
        ),
        (
            b"GET /sleep?ms=200 HTTP/1.1\r\nhost: t\r\n\r\n",
            "slept 200",
        ),
        (
            b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nabcde",
            "abcde",
        ),
    ];
    for (request, body) in cases {
        let what = String::from_utf8_lossy(request).into_owned();
        let mut client = connect(server.addr);
        client.send(request).unwrap();
        client.stream().shutdown(Shutdown::Write).unwrap();
        let response = client
            .read_response()
            .unwrap_or_else(|e| panic!("{what:?} half-closed: no full response: {e}"));
        assert_eq!(response.status, 200, "{what:?}: {response:?}");
        assert_eq!(response.text(), body, "{what:?}");
        let (rest, ending) = read_to_close(&mut client, &what);
        assert!(rest.is_empty(), "{what:?}: then {rest:?}");
        assert_eq!(ending, Ending::Eof, "{what:?}");
        checker.wait_for_more(1);
    }
    checker.finish();
    assert_nothing_tracked(&server, "the half-closed connections gone");
    assert_still_serving(&server);
}

/// Half-closed in the middle of a request (its head, or its body): the
/// server closes the connection cleanly — no response to a head it never
/// got, at most an error response to a broken body — and tracks nothing,
/// without waiting for any timeout.
pub fn half_closed_mid_request_closed_cleanly<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut checker = Checker::start(server.addr);
    for (request, answer) in [
        (&b"GET / HTTP/1.1\r\nhost: t\r\nx-partial"[..], None),
        (b"GET / HT", None),
        (
            b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nonly this",
            Some(413),
        ),
    ] {
        let what = String::from_utf8_lossy(request).into_owned();
        let mut client = connect(server.addr);
        client.send(request).unwrap();
        client.stream().shutdown(Shutdown::Write).unwrap();
        let t0 = Instant::now();
        let (bytes, ending) = read_to_close(&mut client, &what);
        let took = t0.elapsed();
        assert!(took < PROMPT, "{what:?}: closed after {took:?}");
        assert_eq!(ending, Ending::Eof, "{what:?}");
        match answer {
            None => assert!(
                bytes.is_empty(),
                "{what:?}: answered {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            Some(status) => {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    bytes.is_empty() || text.starts_with(&format!("HTTP/1.1 {status} ")),
                    "{what:?}: answered {text:?}"
                );
            }
        }
        checker.wait_for_more(1);
    }
    checker.finish();
    assert_nothing_tracked(&server, "the half-closed connections gone");
    assert_still_serving(&server);
}

/// Writes `bytes` on a clone of the client's socket from a thread (the
/// server may answer and close before reading them all; write errors then
/// are expected and ignored).
fn send_in_background(client: &Client, bytes: Vec<u8>) -> JoinHandle<()> {
    let mut stream = client.stream().try_clone().expect("cloning the socket");
    std::thread::spawn(move || {
        let _ = stream.write_all(&bytes);
    })
}

/// Requests larger than the limits get a clear 4xx and a close: a header
/// block over hyper's buffer limit (431), more than 100 headers (431), a
/// URI over 64 KiB (414), a body over the route's limit (413, from the
/// demo's `POST /echo` through `http_body_util::Limited`: lameduck itself
/// sets no body limit).
pub fn oversized_requests_get_4xx<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut checker = Checker::start(server.addr);
    let mut huge_header = b"GET / HTTP/1.1\r\nhost: t\r\nx-big: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    let mut many_headers = b"GET / HTTP/1.1\r\nhost: t\r\n".to_vec();
    for i in 0..150 {
        many_headers.extend(format!("x-h{i}: v\r\n").bytes());
    }
    many_headers.extend(b"\r\n");
    let mut long_uri = b"GET /".to_vec();
    long_uri.extend(std::iter::repeat_n(b'a', 70 * 1024));
    long_uri.extend(b" HTTP/1.1\r\nhost: t\r\n\r\n");
    let body_len = 16 * 1024 * 1024 + 1;
    let mut big_body =
        format!("POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: {body_len}\r\n\r\n")
            .into_bytes();
    big_body.extend(std::iter::repeat_n(b'b', body_len));
    for (what, request, status) in [
        ("a 1 MiB header", huge_header, 431),
        ("150 headers", many_headers, 431),
        ("a 70 KiB URI", long_uri, 414),
        ("a 16 MiB + 1 body", big_body, 413),
    ] {
        let mut client = connect(server.addr);
        let writer = send_in_background(&client, request);
        let response = client
            .read_response()
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        assert_eq!(response.status, status, "{what}: {response:?}");
        if status != 413 {
            // hyper's own answer to a head it refused: then it closes.
            let (rest, _) = read_to_close(&mut client, what);
            assert!(rest.is_empty(), "{what}: then {rest:?}");
        }
        drop(client);
        writer.join().expect("the writer");
        checker.wait_for_more(1);
    }
    checker.finish();
    assert_nothing_tracked(&server, "the oversized requests' connections gone");
    assert_still_serving(&server);
}

/// A fixed pseudo-random byte string (xorshift), the same on every run.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[0]
        })
        .collect()
}

/// The start of a TLS 1.2/1.3 ClientHello record.
const CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x5a, 0x1b, 0x9c, 0x33, 0x00,
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0x00, 0x00, 0x20,
    0xcc, 0xa8, 0xcc, 0xa9, 0xc0, 0x2f, 0xc0, 0x30, 0xc0, 0x2b, 0xc0, 0x2c, 0x00, 0x0d, 0x00, 0x0a,
    0x00, 0x08, 0x00, 0x00, 0x05, 0x6c, 0x6f, 0x63, 0x61, 0x6c,
];

/// Garbage — random bytes, a TLS ClientHello, most of the HTTP/2 preface, NULs, a
/// valid request followed by garbage — gets `400` or a clean close, never
/// anything else; the server is unaffected.
pub fn garbage_bytes_get_400_or_close<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut checker = Checker::start(server.addr);
    let mut valid_then_garbage = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n".to_vec();
    valid_then_garbage.extend(noise(512, 7));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", noise(4096, 0x9e37_79b9_7f4a_7c15)),
        ("more random bytes", noise(64, 42)),
        ("a TLS ClientHello", CLIENT_HELLO.to_vec()),
        (
            "a preface that turns out not to be HTTP/2's",
            b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec(),
        ),
        ("NUL bytes", vec![0; 1024]),
        ("blank lines, then garbage", {
            let mut bytes = b"\r\n".repeat(32);
            bytes.extend(noise(256, 3));
            bytes
        }),
        ("a request, then garbage", valid_then_garbage),
    ];
    let mut seen = Vec::new();
    for (what, bytes) in cases {
        let mut client = connect(server.addr);
        let writer = send_in_background(&client, bytes);
        let (answer, ending) = read_to_close(&mut client, what);
        writer.join().expect("the writer");
        assert_eq!(ending, Ending::Eof, "{what}: not a clean close");
        let text = String::from_utf8_lossy(&answer).into_owned();
        let rest = match text.strip_prefix("HTTP/1.1 200 OK\r\n") {
            Some(_) if what == "a request, then garbage" => {
                &text[text.find("hello").expect("the first answer's body") + 5..]
            }
            _ => text.as_str(),
        };
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{what}: answered {text:?}"
        );
        assert_eq!(
            rest.matches("HTTP/1.1").count(),
            usize::from(!rest.is_empty()),
            "{what}: one answer at most: {text:?}"
        );
        seen.push((what, rest.is_empty()));
        checker.wait_for_more(1);
    }
    checker.finish();
    eprintln!(
        "[{}] garbage (what, closed without an answer): {:?}",
        T::NAME,
        seen
    );
    assert_nothing_tracked(&server, "the garbage connections gone");
    assert_still_serving(&server);
}

/// Blank lines (bare CRLFs), which HTTP/1.1 servers ignore before a request
/// line, do not make a request: sent after a response, the connection is
/// still idle (closed by the idle timeout, not held as a request in
/// progress); sent on a new connection, it is still new (closed at the
/// grace when the drain begins, not waited for until the deadline).
pub fn blank_lines_are_not_a_request<T: Binding>() {
    let timeout = Duration::from_millis(300);
    let server = demo_server::<T>(Config {
        idle_timeout: Some(timeout),
        new_conn_grace: timeout,
        ..Config::default()
    });
    let mut checker = Checker::start(server.addr);
    let mut after_response = connect(server.addr);
    assert_hello(&after_response.get("/").unwrap());
    let sent = Instant::now();
    after_response.send(b"\r\n\r\n").unwrap();
    let (bytes, ending) = read_to_close(&mut after_response, "blank lines after a response");
    let after = sent.elapsed();
    assert!(
        bytes.is_empty(),
        "answered {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(ending, Ending::Eof);
    assert!(after < timeout + PROMPT, "closed after {after:?}");
    wait_until("the idle timeout's close event", EVENTUALLY, || {
        server.events().iter().any(|e| e.contains("idle timeout"))
    });
    let mut blank = connect(server.addr);
    blank.send(&b"\r\n".repeat(16)).unwrap();
    checker.wait_for_more(3);
    checker.finish();
    assert_still_serving(&server);
    let t0 = Instant::now();
    server.handle.shutdown_within(EVENTUALLY);
    let (outcome, done_at) = server.wait_done(EVENTUALLY);
    let took = done_at - t0;
    assert_eq!(outcome.completion, Completion::Drained, "{outcome:?}");
    assert_eq!(outcome.forced, 0, "{outcome:?}");
    assert!(took < timeout + PROMPT, "done after {took:?}");
    let (bytes, _) = read_to_close(&mut blank, "blank lines only");
    assert!(
        bytes.is_empty(),
        "answered {:?}",
        String::from_utf8_lossy(&bytes)
    );
}

/// Runs `future` on the test's runtime for at most [`EVENTUALLY`].
fn run_bounded<T: Binding, O>(
    server: &TestServer<T>,
    what: &str,
    future: impl Future<Output = O>,
) -> O {
    use futures_lite::FutureExt;
    let deadline = Instant::now() + EVENTUALLY;
    let _ = server;
    T::block_on(async { Some(future.await) }.or(async {
        async_io::Timer::at(deadline).await;
        None
    }))
    .unwrap_or_else(|| panic!("{what}: not within {EVENTUALLY:?}"))
}

fn core_error(e: &std::io::Error) -> Option<lameduck::Error> {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<lameduck::Error>())
        .copied()
}

/// Streams handed in with [`Handle::serve_io`](lameduck::Handle::serve_io)
/// (here in-memory pipes: the fuzz target's way in) are served like the
/// server's own accepted sockets: answered, tracked, closed at the peer's
/// end, counted against `max_connections` (refused at the limit), refused
/// once draining; and refused before the server serves at all.
pub fn handed_in_streams_served_like_accepted<T: Binding>() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    // Refused before the server serves (checked where it is built).
    let (_, early) = T::serve_on(|builder| {
        let unserved = builder.build().expect("a server without listeners");
        let handle = unserved.handle();
        let early = handle.serve_io(crate::duplex::duplex().1).unwrap_err();
        drop(unserved);
        (handle, early)
    });
    assert_eq!(early.kind(), std::io::ErrorKind::NotConnected, "{early}");

    let server = demo_server::<T>(Config {
        max_connections: Some(2),
        ..Config::default()
    });
    let mut tcp = connect(server.addr);
    assert_hello(&tcp.get("/").unwrap());
    let (mut piped, end) = crate::duplex::duplex();
    server.handle.serve_io(end).expect("a free slot");
    let answer = run_bounded(&server, "a piped GET /", async {
        piped
            .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        // Each pass reads at least a byte; bounded by run_bounded's timeout.
        while !answer.ends_with(b"hello") {
            let n = piped.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer: {answer:?}");
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(answer).unwrap()
    });
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    wait_until("both connections idle", EVENTUALLY, || {
        server.handle.counts().idle == 2
    });
    // At the limit (one socket, one pipe): a third is refused.
    let refused = server
        .handle
        .serve_io(crate::duplex::duplex().1)
        .unwrap_err();
    assert_eq!(
        core_error(&refused),
        Some(lameduck::Error::AtCapacity),
        "{refused}"
    );
    // The pipe's end of stream closes it, freeing the slot.
    run_bounded(&server, "the piped connection's close", async {
        piped.close().await.unwrap();
        let mut rest = Vec::new();
        piped.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    });
    wait_until("one connection left", EVENTUALLY, || {
        server.handle.counts().tracked() == 1
    });
    assert_hello(&connect(server.addr).get("/").unwrap());
    server.handle.shutdown_within(EVENTUALLY);
    let draining = server
        .handle
        .serve_io(crate::duplex::duplex().1)
        .unwrap_err();
    assert_eq!(
        core_error(&draining),
        Some(lameduck::Error::ServerClosed),
        "{draining}"
    );
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
}

// ----- body and write timeouts -------------------------------------------------------

/// A server with the demo routes plus `GET /big?chunks=N` (N chunks of 64
/// KiB, counted as produced) and `POST /slow-echo` (reads the body, waits
/// 600 ms, answers with it).
fn timeouts_server<T: Binding>(config: Config) -> (TestServer<T>, Arc<AtomicUsize>) {
    let produced = Arc::new(AtomicUsize::new(0));
    let server = {
        let produced = produced.clone();
        http_server::<T, _, _>(config, move |rt, handle| {
            let demo = crate::routes::router(rt, handle);
            let produced = produced.clone();
            move |req: hyper::Request<hyper::body::Incoming>| -> crate::routes::Reply {
                match req.uri().path() {
                    "/big" => {
                        let chunks: usize = req
                            .uri()
                            .query()
                            .and_then(|q| q.strip_prefix("chunks="))
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(BIG_CHUNKS);
                        let produced = produced.clone();
                        let body =
                            StreamBody::new(futures_lite::stream::iter(0..chunks).map(move |_| {
                                produced.fetch_add(BIG_CHUNK, Ordering::AcqRel);
                                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK)))
                            }))
                            .boxed_unsync();
                        Box::pin(async move { Ok(hyper::Response::new(body)) })
                    }
                    "/slow-echo" => Box::pin(async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        async_io::Timer::after(Duration::from_millis(600)).await;
                        let body = http_body_util::Full::new(body.unwrap_or_default());
                        Ok(hyper::Response::new(body.boxed_unsync()))
                    }),
                    _ => demo(req),
                }
            }
        })
    };
    (server, produced)
}

/// A body sent a byte every 50 ms after a complete head is closed by the
/// 300 ms body timeout — not before 250 ms, within 5 s — unanswered,
/// however steadily bytes arrive; others are served meanwhile.
pub fn slow_body_closed_by_body_timeout<T: Binding>() {
    let timeout = Duration::from_millis(300);
    let server = demo_server::<T>(Config {
        header_timeout: Some(timeout),
        body_timeout: Some(timeout),
        ..Config::default()
    });
    let mut checker = Checker::start(server.addr);
    let mut slow = connect(server.addr);
    let sent = Instant::now();
    slow.send(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\npart")
        .unwrap();
    let trickle = Trickle::start(&slow, vec![b'b'; 996], TRICKLE);
    checker.wait_for_more(3);
    let (bytes, _) = read_to_close(&mut slow, "slow body");
    let after = sent.elapsed();
    assert!(
        bytes.is_empty(),
        "answered {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
    let trickled = trickle.finish();
    assert!(trickled >= 2, "trickled {trickled} bytes");
    checker.wait_for_more(3);
    checker.finish();
    eprintln!(
        "[{}] slow body closed after {after:?} ({trickled} bytes trickled)",
        T::NAME
    );
    wait_until("the body timeout's close event", EVENTUALLY, || {
        server
            .events()
            .iter()
            .any(|e| e.contains("request body timeout"))
    });
    assert_nothing_tracked(&server, "the slow body's connection gone");
    assert_still_serving(&server);
}

/// A client that asks for a large response and never reads it is closed
/// by the 300 ms write timeout (a stall: its socket filled) — not before
/// 250 ms, within 5 s, long before the response is produced; others are
/// served meanwhile, and the server tracks nothing after.
pub fn never_reading_client_closed_by_write_timeout<T: Binding>() {
    let timeout = Duration::from_millis(300);
    let (server, produced) = timeouts_server::<T>(Config {
        write_timeout: Some(timeout),
        ..Config::default()
    });
    let mut checker = Checker::start(server.addr);
    let mut lazy = connect(server.addr);
    let sent = Instant::now();
    lazy.send_get("/big").unwrap();
    wait_until(
        "the write timeout's close event",
        Duration::from_secs(5),
        || server.events().iter().any(|e| e.contains("write timeout")),
    );
    let after = sent.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );
    checker.wait_for_more(3);
    checker.finish();
    let stalled_at = produced.load(Ordering::Acquire);
    assert!(
        stalled_at < BIG_CHUNK * BIG_CHUNKS,
        "the whole response was written to a client that never read"
    );
    eprintln!(
        "[{}] never-reading client closed after {after:?} ({} KiB produced)",
        T::NAME,
        stalled_at / 1024
    );
    assert_nothing_tracked(&server, "the never-reading connection gone");
    // What the kernel had buffered arrives, then the end: no more.
    let (bytes, _) = read_to_close(&mut lazy, "the never-reading client");
    assert!(
        bytes.len() < BIG_CHUNK * BIG_CHUNKS,
        "{} bytes",
        bytes.len()
    );
    assert_still_serving(&server);
}

/// Slow clients that keep going are not cut: a body trickled in within the
/// body timeout and a handler that works past it after reading the body
/// are answered; a 32 MiB response read a megabyte at a time with pauses
/// (its socket full most of the time, each stall far shorter than the
/// write timeout) is delivered whole though it takes longer than the write
/// timeout.
pub fn slow_but_progressing_clients_are_not_cut<T: Binding>() {
    use std::io::Read;
    const WRITE_TIMEOUT: Duration = Duration::from_millis(1500);
    let (server, _) = timeouts_server::<T>(Config {
        body_timeout: Some(Duration::from_millis(300)),
        // Far longer than the reader's pauses (60 ms), so that a reader
        // thread starved on a loaded machine is not taken for a stalled
        // client; shorter than the reading takes (31 pauses or more:
        // 1.86 s).
        write_timeout: Some(WRITE_TIMEOUT),
        ..Config::default()
    });
    let mut checker = Checker::start(server.addr);
    // A body over ~100 ms, then 600 ms of the handler's own work.
    let mut uploader = connect(server.addr);
    uploader
        .send(b"POST /slow-echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\n")
        .unwrap();
    for byte in b"abcde" {
        std::thread::sleep(Duration::from_millis(20));
        uploader.send(&[*byte]).unwrap();
    }
    let response = uploader.read_response().expect("the slow upload's answer");
    assert_eq!((response.status, response.text().as_str()), (200, "abcde"));
    // A large download, read slowly.
    let mut reader = connect(server.addr);
    let started = Instant::now();
    reader.send_get("/big?chunks=512").unwrap();
    let mut stream = reader.stream();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let mut tail = Vec::new();
    // Each pass reads about a megabyte; bounded by the response's end (or
    // a read error, which fails the test) and the 64 MiB cap.
    while !tail.ends_with(b"\r\n0\r\n\r\n") && total < 64 * 1024 * 1024 {
        let mut this_round = 0;
        while this_round < 1024 * 1024 {
            let n = stream.read(&mut buf).expect("reading the big response");
            assert!(n > 0, "closed after {total} bytes");
            this_round += n;
            tail.extend_from_slice(&buf[..n]);
            let keep = tail.len().saturating_sub(16);
            tail.drain(..keep);
            if tail.ends_with(b"\r\n0\r\n\r\n") {
                break;
            }
        }
        total += this_round;
        std::thread::sleep(Duration::from_millis(60));
    }
    let took = started.elapsed();
    assert!(total >= 512 * BIG_CHUNK, "{total} bytes");
    assert!(tail.ends_with(b"\r\n0\r\n\r\n"), "the response ended");
    assert!(took > WRITE_TIMEOUT, "read in {took:?}");
    checker.wait_for_more(3);
    checker.finish();
    eprintln!(
        "[{}] slow reader: {} MiB in {took:?}, not cut",
        T::NAME,
        total / (1024 * 1024)
    );
    let events = server.events();
    assert!(!events.iter().any(|e| e.contains("timeout")), "{events:?}");
    assert_still_serving(&server);
}

/// Instantiates every adversarial test (with the HTTP/2 ones,
/// [`adversarial_h2!`](crate::adversarial_h2!)) as a `#[test]` for one
/// [`Binding`]: `lameduck_testkit::adversarial!(lameduck_testkit::harness::SmolRt);`
#[macro_export]
macro_rules! adversarial {
    ($rt:ty) => {
        $crate::adversarial_h2!($rt);
        $crate::adversarial!(@each $rt;
            slowloris_closed_by_header_timeout,
            slowloris_does_not_hold_drain,
            never_reading_client_bounded_by_deadline,
            connection_flood_past_max_connections,
            silent_flood_cleared_by_header_timeout,
            half_closed_after_request_gets_full_response,
            half_closed_mid_request_closed_cleanly,
            oversized_requests_get_4xx,
            garbage_bytes_get_400_or_close,
            blank_lines_are_not_a_request,
            handed_in_streams_served_like_accepted,
            slow_body_closed_by_body_timeout,
            never_reading_client_closed_by_write_timeout,
            slow_but_progressing_clients_are_not_cut,
        );
    };
    (@each $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::adversarial::$name::<$rt>();
            }
        )*
    };
}
