//! The drain notice in every request, and long-lived responses that end
//! cleanly when the drain begins ([`lameduck::http::EndAtDrain`], the
//! demo's `GET /events`), as scenarios over real sockets generic over the
//! runtime binding (the testkit's [`Binding`]) like the testkit's own
//! suite. Instantiated per binding by
//! [`drain_notice_scenarios!`](crate::drain_notice_scenarios!).
//!
//! Timing claims are generous bounds: a stream that the drain did not end
//! would hold it until the 30 s deadline, so "ended long before that, with
//! nothing forced" is the claim, not a number of milliseconds.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use lameduck::{Completion, Config, Phase};

use crate::client::{Client, Ending, Response as ClientResponse};
use crate::harness::{Binding, EVENTUALLY, TestServer, demo_server, http_server, wait_until};
use crate::routes::Reply;

use crate::h2::{END_STREAM, Frame, RawH2, kind};

/// The shutdown deadline in these scenarios: far beyond any wait here, so
/// that a drain completing within [`EVENTUALLY`] was not cut by it.
const DEADLINE: Duration = Duration::from_secs(30);

fn connect(addr: std::net::SocketAddr) -> Client {
    Client::connect(addr).expect("connecting to the test server")
}

/// The demo routes plus `GET /notified`: `true` or `false`, whether the
/// request's drain notice had fired when its handler began.
fn notice_server<T: Binding>(config: Config) -> TestServer<T> {
    http_server::<T, _, _>(config, |rt, handle| {
        let demo = crate::routes::router(rt, handle);
        move |req| -> Reply {
            if req.uri().path() != "/notified" {
                return demo(req);
            }
            let fired = req
                .extensions()
                .get::<lameduck::Notice>()
                .map(lameduck::Notice::is_notified);
            let body = match fired {
                Some(fired) => fired.to_string(),
                None => "no notice".to_owned(),
            };
            Box::pin(async move { Ok(Response::new(Full::new(Bytes::from(body)).boxed_unsync())) })
        }
    })
}

/// The events of a server-sent event stream's body, split at blank lines.
fn events(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut events: Vec<String> = text.split("\n\n").map(str::to_owned).collect();
    assert_eq!(
        events.pop().as_deref(),
        Some(""),
        "the body ends with a whole event: {text:?}"
    );
    events
}

/// Checks an `/events` response: the event-stream type, `data: 0`,
/// `data: 1`, ... in order, then exactly one `event: drain` / `data: bye`,
/// last. Returns how many data events came first.
fn assert_sse_ended_at_drain(response: &ClientResponse) -> usize {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("text/event-stream"),
        "{response:?}"
    );
    assert_events_end_at_drain(&response.body)
}

/// The events of `body`: `data: 0`, `data: 1`, ... in order, then exactly
/// one `event: drain` / `data: bye`, last. Returns how many data events
/// came first.
fn assert_events_end_at_drain(body: &[u8]) -> usize {
    let events = events(body);
    let (last, data) = events.split_last().expect("at least the drain event");
    assert_eq!(
        last, "event: drain\ndata: bye",
        "the drain event comes last"
    );
    for (n, event) in data.iter().enumerate() {
        assert_eq!(event, &format!("data: {n}"), "events in order: {events:?}");
    }
    data.len()
}

/// An SSE stream in flight when the drain begins gets its drain event and
/// a clean end of its body (the terminating chunk, then the server's FIN)
/// at once — not at the deadline — and the drain completes with nothing
/// forced.
pub fn sse_stream_ends_cleanly_at_drain<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut client = connect(server.addr);
    client.send_get("/events?ms=50").unwrap();
    client.read_until_contains(b"data: 1\n\n").unwrap();
    assert_eq!(server.handle.counts().active, 1);

    let shutdown = Instant::now();
    server.handle.shutdown_within(DEADLINE);
    // `read_response` returns only once the terminating chunk has arrived.
    let response = client.read_response().expect("a complete response");
    let ended = shutdown.elapsed();
    let data = assert_sse_ended_at_drain(&response);
    assert!(data >= 2, "data: 0 and data: 1 came before the shutdown");
    assert_eq!(
        client.read_until_closed().unwrap(),
        (Vec::new(), Ending::Eof),
        "then the connection closes cleanly, with nothing more"
    );
    let (outcome, done) = server.wait_done(EVENTUALLY);
    eprintln!(
        "[{}] SSE body ended {ended:?} after the shutdown, drain done after {:?}",
        T::NAME,
        done.saturating_duration_since(shutdown)
    );
    assert_eq!(outcome.completion, Completion::Drained, "{outcome:?}");
    assert_eq!(outcome.forced, 0, "{outcome:?}");
    assert!(
        ended < EVENTUALLY,
        "the stream ended {ended:?} after the shutdown"
    );
}

/// The same over HTTP/2 (h2c, exact frames): the stream gets its drain
/// event and `END_STREAM` — not a reset — beside the graceful GOAWAYs,
/// then the connection closes and the drain completes, nothing forced.
pub fn sse_stream_ends_cleanly_at_drain_over_h2<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut frames = RawH2::connect(server.addr).expect("connecting");
    frames.send_get(1, "/events?ms=50").unwrap();
    let mut body = Vec::new();
    let data_of = |f: &Frame, body: &mut Vec<u8>| {
        if f.kind == kind::DATA && f.stream == 1 {
            body.extend_from_slice(&f.payload);
        }
    };
    let (mut seen, first) = frames
        .read_until(true, |f| {
            data_of(f, &mut body);
            body.windows(9).any(|w| {
                w == b"data: 1

"
            })
        })
        .unwrap();
    seen.extend(first);
    assert!(
        !seen
            .iter()
            .any(|f| f.stream == 1 && f.flags & END_STREAM != 0),
        "still streaming: {seen:?}"
    );
    assert_eq!(server.handle.counts().active, 1);

    let shutdown = Instant::now();
    server.handle.shutdown_within(DEADLINE);
    let rest = frames.read_to_end(true).unwrap();
    let closed = shutdown.elapsed();
    for f in &rest {
        data_of(f, &mut body);
    }
    let data = assert_events_end_at_drain(&body);
    assert!(data >= 2, "data: 0 and data: 1 came before the shutdown");
    let end = rest
        .iter()
        .position(|f| f.stream == 1 && f.flags & END_STREAM != 0)
        .unwrap_or_else(|| panic!("no END_STREAM on the stream: {rest:?}"));
    assert_eq!(rest[end].kind, kind::DATA, "{rest:?}");
    assert!(
        !rest
            .iter()
            .any(|f| f.stream == 1 && f.reset_code().is_some()),
        "the stream was not reset: {rest:?}"
    );
    assert!(
        rest.iter().any(|f| f.goaway().is_some()),
        "the drain sent GOAWAY: {rest:?}"
    );
    let (outcome, done) = server.wait_done(EVENTUALLY);
    eprintln!(
        "[{}] HTTP/2: SSE stream and connection ended {closed:?} after the shutdown, drain done after {:?}",
        T::NAME,
        done.saturating_duration_since(shutdown)
    );
    assert_eq!(outcome.completion, Completion::Drained, "{outcome:?}");
    assert_eq!(outcome.forced, 0, "{outcome:?}");
    assert!(
        closed < EVENTUALLY,
        "the connection ended {closed:?} after the shutdown"
    );
}

/// A request that starts after the drain began (on a connection accepted
/// before it) finds its notice fired already: its handler sees it at once,
/// and an SSE stream sends only its drain event and ends.
pub fn request_after_drain_began_sees_notice_fired<T: Binding>() {
    let server = notice_server::<T>(Config::default());
    let mut asks = connect(server.addr);
    let mut streams = connect(server.addr);
    // Before the drain, the notice has not fired.
    assert_eq!(asks.get("/notified").unwrap().text(), "false");
    wait_until("one idle and one new connection", EVENTUALLY, || {
        let counts = server.handle.counts();
        (counts.idle, counts.new) == (1, 1)
    });

    let shutdown = Instant::now();
    server.handle.shutdown_within(DEADLINE);
    assert_eq!(server.handle.phase(), Phase::Draining);
    // The idle one was closed by the drain; the new one may still ask.
    assert_eq!(
        asks.read_until_closed().unwrap(),
        (Vec::new(), Ending::Eof),
        "the idle connection closes at the drain"
    );
    streams.send_get("/events?ms=50").unwrap();
    let response = streams.read_response().expect("a complete response");
    assert_eq!(
        assert_sse_ended_at_drain(&response),
        0,
        "no data event: the notice had fired before the handler ran"
    );
    assert!(response.connection_close(), "{response:?}");
    assert_eq!(
        streams.read_until_closed().unwrap(),
        (Vec::new(), Ending::Eof)
    );
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(outcome.completion, Completion::Drained, "{outcome:?}");
    assert_eq!(outcome.forced, 0, "{outcome:?}");
    assert!(shutdown.elapsed() < EVENTUALLY);

    // And the handler itself sees it, on a fresh server.
    let server = notice_server::<T>(Config::default());
    let mut late = connect(server.addr);
    wait_until("a new connection", EVENTUALLY, || {
        server.handle.counts().new == 1
    });
    server.handle.shutdown_within(DEADLINE);
    let response = late.get("/notified").unwrap();
    assert_eq!(response.text(), "true", "{response:?}");
    assert!(response.connection_close());
    assert!(server.wait_done(EVENTUALLY).0.is_graceful());
}

/// A lame-duck delay is still service: an SSE stream goes on through it,
/// and a request that starts in it finds its notice not fired; the drain
/// event comes when the drain begins, at the delay's end.
pub fn sse_stream_goes_on_through_lame_duck<T: Binding>() {
    let lame_duck = Duration::from_millis(1500);
    let server = notice_server::<T>(Config {
        lame_duck,
        ..Config::default()
    });
    let mut client = connect(server.addr);
    client.send_get("/events?ms=20").unwrap();
    client.read_until_contains(b"data: 0\n\n").unwrap();
    let shutdown = Instant::now();
    server.handle.shutdown_within(DEADLINE);
    assert_eq!(server.handle.phase(), Phase::LameDuck);

    let mut during = connect(server.addr); // still accepted
    let response = during.get("/notified").unwrap();
    let still_lame_duck = server.handle.phase() == Phase::LameDuck;
    assert!(
        still_lame_duck,
        "answered within the lame duck ({:?})",
        shutdown.elapsed()
    );
    assert_eq!(response.text(), "false", "the notice waits for the drain");

    let response = client.read_response().expect("a complete response");
    let ended = shutdown.elapsed();
    let data = assert_sse_ended_at_drain(&response);
    assert!(
        ended >= lame_duck,
        "the stream ended {ended:?} after the shutdown, inside the lame duck"
    );
    eprintln!(
        "[{}] {data} events, ended {ended:?} after the shutdown (lame duck {lame_duck:?})",
        T::NAME
    );
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(outcome.completion, Completion::Drained, "{outcome:?}");
    assert_eq!(outcome.forced, 0, "{outcome:?}");
}

/// Handlers that do not look at the notice are not affected by it: a slow
/// request and a finite stream in flight, and a request that starts after
/// the drain began, all complete in full.
pub fn handler_ignoring_notice_unaffected<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut sleeper = connect(server.addr);
    sleeper.send_get("/sleep?ms=300").unwrap();
    let mut streamer = connect(server.addr);
    streamer.send_get("/stream?chunks=5&ms=60").unwrap();
    streamer.read_until_contains(b"chunk 0\n").unwrap();
    let mut late = connect(server.addr);
    wait_until(
        "two requests in flight and a new connection",
        EVENTUALLY,
        || {
            let counts = server.handle.counts();
            (counts.active, counts.new) == (2, 1)
        },
    );

    server.handle.shutdown_within(DEADLINE);
    late.send_get("/sleep?ms=50").unwrap();
    let slept = sleeper.read_response().unwrap();
    assert_eq!((slept.status, slept.text().as_str()), (200, "slept 300"));
    let stream = streamer.read_response().unwrap();
    assert_eq!(
        stream.text(),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n",
        "every chunk, not cut at the drain"
    );
    let late = late.read_response().unwrap();
    assert_eq!((late.status, late.text().as_str()), (200, "slept 50"));
    assert!(late.connection_close());
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(outcome.completion, Completion::Drained, "{outcome:?}");
    assert_eq!(outcome.forced, 0, "{outcome:?}");
}

/// Instantiates every drain-notice scenario as a `#[test]` for the
/// [`Binding`](crate::harness::Binding) `$rt`.
#[macro_export]
macro_rules! drain_notice_scenarios {
    ($rt:ty) => {
        $crate::drain_notice_scenarios!(@each $rt;
            sse_stream_ends_cleanly_at_drain,
            sse_stream_ends_cleanly_at_drain_over_h2,
            request_after_drain_began_sees_notice_fired,
            sse_stream_goes_on_through_lame_duck,
            handler_ignoring_notice_unaffected,
        );
    };
    (@each $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios_drain_notice::$name::<$rt>();
            }
        )*
    };
}
