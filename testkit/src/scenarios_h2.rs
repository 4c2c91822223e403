//! The drain over HTTP/2 (h2c with prior knowledge, next to HTTP/1.1 on
//! the same port), each scenario over real sockets with a real client
//! (hyper's) or exact frames ([`RawH2`]), generic over the runtime binding.
//! Instantiated per runtime by [`scenarios_h2!`](crate::scenarios_h2!).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lameduck::{Completion, Config, Phase};

use crate::client::Client;
use crate::h2::{
    END_STREAM, Frame, H2Client, H2Response, MAX_STREAM_ID, REFUSED_STREAM, RawH2, kind,
};
use crate::harness::{
    Binding, EVENTUALLY, PROMPT, TestServer, demo_server, http_server, wait_until,
};

/// A demo server with one more route, `GET /gate`: the handler waits until
/// the test opens the gate for it (one request per [`Gate::open`]), then
/// answers `through`.
fn gated_server<T: Binding>(config: Config) -> (TestServer<T>, Gate) {
    let (open, opened) = async_channel::unbounded::<()>();
    let waiting = Arc::new(AtomicUsize::new(0));
    let gate = Gate {
        open,
        waiting: waiting.clone(),
    };
    let server = http_server::<T, _, _>(config, move |rt, handle| {
        let router = crate::routes::router(rt, handle);
        let (opened, waiting) = (opened.clone(), waiting.clone());
        move |req: hyper::Request<hyper::body::Incoming>| -> crate::routes::Reply {
            if req.uri().path() != "/gate" {
                return router(req);
            }
            let (opened, waiting) = (opened.clone(), waiting.clone());
            Box::pin(async move {
                waiting.fetch_add(1, Ordering::AcqRel);
                let _ = opened.recv().await;
                waiting.fetch_sub(1, Ordering::AcqRel);
                let body = http_body_util::BodyExt::boxed_unsync(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"through"),
                ));
                Ok(hyper::Response::new(body))
            })
        }
    });
    (server, gate)
}

/// The test's side of `GET /gate`.
struct Gate {
    open: async_channel::Sender<()>,
    waiting: Arc<AtomicUsize>,
}

impl Gate {
    /// Waits until `n` requests wait at the gate.
    fn wait_for(&self, n: usize) {
        wait_until(&format!("{n} requests at the gate"), EVENTUALLY, || {
            self.waiting.load(Ordering::Acquire) == n
        });
    }

    /// Lets one request through.
    fn open(&self) {
        self.open.try_send(()).expect("the gate's channel is open");
    }
}

fn h2(server_addr: std::net::SocketAddr) -> H2Client {
    H2Client::connect(server_addr).expect("an HTTP/2 connection to the test server")
}

fn raw(server_addr: std::net::SocketAddr) -> RawH2 {
    RawH2::connect(server_addr).expect("connecting to the test server")
}

fn assert_ok(response: &H2Response, body: &str) {
    assert_eq!((response.status, response.text().as_str()), (200, body));
}

fn wait_streams<T: Binding>(server: &TestServer<T>, what: &str, active: usize, idle: usize) {
    wait_until(what, EVENTUALLY, || {
        let counts = server.handle.counts();
        (counts.active, counts.idle) == (active, idle)
    });
}

/// Whether `frames` hold stream `id`'s `200` response, ended.
fn answered(frames: &[Frame], id: u32) -> bool {
    let headers = frames
        .iter()
        .position(|f| f.stream == id && f.is_ok_headers());
    let end = frames
        .iter()
        .rposition(|f| f.stream == id && f.flags & END_STREAM != 0);
    matches!((headers, end), (Some(h), Some(e)) if h <= e)
}

/// Every demo route but the upgrade answers over HTTP/2 as over HTTP/1.1;
/// HTTP/1.1 still works on the same port, and so does a preface that
/// arrives a byte at a time.
pub fn h2c_and_http1_share_the_port<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let client = h2(server.addr);
    assert_ok(&client.get("/").unwrap(), "hello");
    assert_ok(&client.get("/healthz").unwrap(), "ok");
    assert_ok(
        &client.get("/pid").unwrap(),
        &std::process::id().to_string(),
    );
    assert_ok(&client.get("/sleep?ms=10").unwrap(), "slept 10");
    assert_ok(
        &client.get("/stream?chunks=3&ms=5").unwrap(),
        "chunk 0\nchunk 1\nchunk 2\n",
    );
    let echo = H2Client::wait(client.spawn("POST", "/echo", b"over h2")).unwrap();
    assert_ok(&echo, "over h2");
    let hits = client.get("/hits").unwrap();
    assert_eq!(hits.status, 200);
    assert!(hits.text().parse::<u64>().is_ok(), "{hits:?}");
    assert_eq!(client.get("/nowhere").unwrap().status, 404);
    // HTTP/1.1 beside it, on the same port.
    let mut http1 = Client::connect(server.addr).unwrap();
    let response = http1.get("/").unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    // A preface split over many reads.
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut split = RawH2::from_stream(stream).unwrap();
    for byte in crate::h2::PREFACE {
        split.send(&[*byte]).unwrap();
    }
    split
        .send(&crate::h2::frame(kind::SETTINGS, 0, 0, &[]))
        .unwrap();
    split.send_get(1, "/").unwrap();
    let (before, end) = split
        .read_until(true, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .unwrap();
    let mut frames = before;
    frames.extend(end);
    assert!(answered(&frames, 1), "a split preface: {frames:?}");
    server.handle.shutdown_within(EVENTUALLY);
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
}

/// A stream in flight when the drain begins completes after the GOAWAY
/// (the graceful two-step: first GOAWAY with the largest id, a PING, then
/// the final one naming the last stream processed), then the connection
/// closes and the drain completes.
pub fn h2_in_flight_stream_completes_after_goaway<T: Binding>() {
    let (server, gate) = gated_server::<T>(Config::default());
    // hyper's client: the response arrives whole, the connection ends cleanly.
    let mut client = h2(server.addr);
    let in_flight = client.spawn("GET", "/gate", b"");
    // Frames: the same, seen exactly.
    let mut frames = raw(server.addr);
    frames.send_get(1, "/gate").unwrap();
    gate.wait_for(2);
    wait_streams(&server, "two active HTTP/2 connections", 2, 0);
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(server.handle.phase(), Phase::Draining);
    // The first GOAWAY is out before the streams are let through.
    let (mut seen, first) = frames.read_until(true, |f| f.goaway().is_some()).unwrap();
    seen.extend(first);
    gate.open();
    gate.open();
    assert_ok(&H2Client::wait(in_flight).unwrap(), "through");
    let closed = client.wait_closed().unwrap();
    assert!(
        closed.is_ok(),
        "the client's connection ended with {closed:?}"
    );
    seen.extend(frames.read_to_end(true).unwrap());
    let goaways: Vec<(usize, (u32, u32))> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.goaway().map(|g| (i, g)))
        .collect();
    assert_eq!(
        goaways.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
        [(MAX_STREAM_ID, 0), (1, 0)],
        "two graceful GOAWAYs: {seen:?}"
    );
    assert!(answered(&seen, 1), "stream 1 answered: {seen:?}");
    let response_end = seen
        .iter()
        .position(|f| f.stream == 1 && f.flags & END_STREAM != 0)
        .unwrap();
    assert!(
        goaways[0].0 < response_end,
        "the GOAWAY came before the response's end: {seen:?}"
    );
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::Drained, 0)
    );
}

/// A stream the client opens after the final GOAWAY (last stream 1) is
/// not processed: no answer, while stream 1 completes — the client may
/// retry it elsewhere (RFC 9113 §6.8). One opened between the two GOAWAYs
/// on a connection the drain already closed (idle) is refused with
/// `REFUSED_STREAM`, retry-safe too.
pub fn h2_stream_after_goaway_refused<T: Binding>() {
    let (server, gate) = gated_server::<T>(Config::default());
    // Busy: stream 1 in flight; stream 3 after the final GOAWAY.
    let mut busy = raw(server.addr);
    busy.send_get(1, "/gate").unwrap();
    gate.wait_for(1);
    // Idle: one request answered, then idle.
    let mut idle = raw(server.addr);
    idle.send_get(1, "/").unwrap();
    idle.read_until(true, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .unwrap();
    wait_streams(&server, "one active, one idle", 1, 1);
    server.handle.shutdown_within(EVENTUALLY);
    // The idle one: its first GOAWAY and PING; a stream sent before the
    // PING is answered is refused; then the final GOAWAY and the close.
    let (_, first) = idle.read_until(false, |f| f.goaway().is_some()).unwrap();
    assert_eq!(first.and_then(|f| f.goaway()), Some((MAX_STREAM_ID, 0)));
    idle.send_get(3, "/").unwrap();
    let (before, reset) = idle.read_until(false, |f| f.stream == 3).unwrap();
    let reset = reset.expect("an answer on stream 3");
    assert_eq!(
        reset.reset_code(),
        Some(REFUSED_STREAM),
        "stream 3 on the closed idle connection: {reset:?}"
    );
    // Now the PING is answered: the final GOAWAY follows.
    let mut rest = before;
    if let Some(ping) = rest.iter().find(|f| f.kind == kind::PING) {
        idle.answer(&ping.clone(), true).unwrap();
    } else {
        let (_, ping) = idle.read_until(true, |f| f.kind == kind::PING).unwrap();
        assert!(ping.is_some(), "the GOAWAY's PING");
    }
    rest.extend(idle.read_to_end(true).unwrap());
    assert!(
        rest.iter()
            .any(|f| f.goaway() == Some((3, 0)) || f.goaway() == Some((1, 0))),
        "a final GOAWAY: {rest:?}"
    );
    // The busy one: the final GOAWAY names stream 1; stream 3 is ignored.
    let (before, last) = busy
        .read_until(true, |f| {
            f.goaway().is_some_and(|(id, _)| id != MAX_STREAM_ID)
        })
        .unwrap();
    assert_eq!(last.and_then(|f| f.goaway()), Some((1, 0)), "{before:?}");
    busy.send_get(3, "/").unwrap();
    gate.open();
    let mut seen = before;
    seen.extend(busy.read_to_end(true).unwrap());
    assert!(answered(&seen, 1), "stream 1 completes: {seen:?}");
    assert!(
        seen.iter().all(|f| f.stream != 3),
        "stream 3 got an answer: {seen:?}"
    );
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::Drained, 0)
    );
}

/// An idle HTTP/2 connection is sent GOAWAY and closed when the drain
/// begins: the drain completes at once, long before any timer (the
/// new-connection grace, the deadline), and hyper's client sees a clean end.
pub fn h2_idle_connection_goaway_at_drain<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut client = h2(server.addr);
    assert_ok(&client.get("/").unwrap(), "hello");
    let mut frames = raw(server.addr);
    frames.send_get(1, "/").unwrap();
    frames
        .read_until(true, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .unwrap();
    wait_streams(&server, "two idle HTTP/2 connections", 0, 2);
    let t0 = Instant::now();
    server.handle.shutdown_within(EVENTUALLY);
    let (outcome, done) = server.wait_done(EVENTUALLY);
    let took = done - t0;
    eprintln!(
        "[{}] drain of two idle HTTP/2 connections took {took:?}",
        T::NAME
    );
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::Drained, 0)
    );
    assert!(took < PROMPT, "the drain took {took:?}");
    let seen = frames.read_to_end(true).unwrap();
    assert!(
        seen.iter().any(|f| f.goaway() == Some((1, 0))),
        "a final GOAWAY naming stream 1: {seen:?}"
    );
    let closed = client.wait_closed().unwrap();
    assert!(
        closed.is_ok(),
        "the client's connection ended with {closed:?}"
    );
    async_io::block_on(server.handle.finished()).expect("finished");
}

/// The deadline cuts a stuck stream: the connection is dropped, and the
/// outcome counts it forced.
pub fn h2_deadline_cuts_stuck_stream<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let client = h2(server.addr);
    let stuck = client.spawn("GET", "/sleep?ms=60000", b"");
    wait_streams(&server, "an active HTTP/2 connection", 1, 0);
    let deadline = Duration::from_millis(300);
    server.handle.shutdown_within(deadline);
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::DeadlineExpired, 1)
    );
    assert!(
        H2Client::wait(stuck).is_err(),
        "the stuck stream got a response"
    );
}

/// Several streams at once keep one connection Active (one connection in
/// the counts, not three) until the last completes; then the drain ends.
pub fn h2_concurrent_streams_keep_connection_active<T: Binding>() {
    let (server, gate) = gated_server::<T>(Config::default());
    let client = h2(server.addr);
    let streams: Vec<_> = (0..3).map(|_| client.spawn("GET", "/gate", b"")).collect();
    gate.wait_for(3);
    let snapshot = server.handle.snapshot();
    assert_eq!(
        (snapshot.counts.tracked(), snapshot.counts.active),
        (1, 1),
        "three streams, one connection: {snapshot:?}"
    );
    server.handle.shutdown_within(EVENTUALLY);
    for left in [2, 1] {
        gate.open();
        gate.wait_for(left);
        let counts = server.handle.counts();
        assert!(
            !server.handle.drained().is_done(),
            "done with {left} streams open: {counts:?}"
        );
        assert_eq!((counts.active, counts.idle), (1, 0), "{counts:?}");
    }
    gate.open();
    for stream in streams {
        assert_ok(&H2Client::wait(stream).unwrap(), "through");
    }
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::Drained, 0)
    );
}

/// Lame duck over HTTP/2: `/healthz` says draining while listeners still
/// accept; a stream opened in the delay is answered, then its connection
/// is sent GOAWAY and closed once the stream is done (keep-alive is off);
/// a connection made in the delay is served the same way.
pub fn h2_lame_duck_answers_then_goes_away<T: Binding>() {
    let server = demo_server::<T>(Config {
        lame_duck: Duration::from_millis(1500),
        ..Config::default()
    });
    let mut client = h2(server.addr);
    assert_ok(&client.get("/healthz").unwrap(), "ok");
    wait_streams(&server, "an idle HTTP/2 connection", 0, 1);
    server.handle.shutdown_within(EVENTUALLY);
    assert_eq!(server.handle.phase(), Phase::LameDuck);
    let health = client.get("/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (503, "draining"));
    let closed = client.wait_closed().unwrap();
    assert!(
        closed.is_ok(),
        "the client's connection ended with {closed:?}"
    );
    let mut late = h2(server.addr); // still accepted
    assert_ok(&late.get("/").unwrap(), "hello");
    let closed = late.wait_closed().unwrap();
    assert!(closed.is_ok(), "the late connection ended with {closed:?}");
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::Drained, 0)
    );
}

/// Instantiates the HTTP/2 scenarios for a [`Binding`].
#[macro_export]
macro_rules! scenarios_h2 {
    ($rt:ty) => {
        $crate::scenarios_h2!(@each $rt;
            h2c_and_http1_share_the_port,
            h2_in_flight_stream_completes_after_goaway,
            h2_stream_after_goaway_refused,
            h2_idle_connection_goaway_at_drain,
            h2_deadline_cuts_stuck_stream,
            h2_concurrent_streams_keep_connection_active,
            h2_lame_duck_answers_then_goes_away,
        );
    };
    (@each $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios_h2::$name::<$rt>();
            }
        )*
    };
}
