//! Hostile HTTP/2 clients over real sockets: malformed frames, a SETTINGS
//! flood, a stream flood past the concurrency limit. In each, a
//! well-behaved HTTP/1.1 client ([`Checker`]) requests on fresh
//! connections throughout, and a well-behaved HTTP/2 client (hyper's) is
//! served while the attack is on; nothing panics, and once the attackers
//! are gone nothing is left tracked. Generic over the runtime binding;
//! instantiated per binding by [`adversarial_h2!`](crate::adversarial_h2!).

use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use crate::adversarial::Checker;
use crate::harness::{Binding, EVENTUALLY, TestServer, demo_server, wait_until};
use lameduck::{Completion, Config, Phase};

use crate::h2::{
    ACK, END_HEADERS, END_STREAM, Frame, H2Client, MAX_STREAM_ID, REFUSED_STREAM, RawH2, frame,
    get_block, kind,
};

/// hyper's default limit on a connection's concurrent streams.
const MAX_CONCURRENT_STREAMS: u32 = 200;

/// A fresh HTTP/2 connection gets `GET /` answered.
fn assert_h2_serves(addr: SocketAddr, what: &str) {
    let response = H2Client::connect(addr)
        .and_then(|client| client.get("/"))
        .unwrap_or_else(|e| panic!("{what}: a well-behaved HTTP/2 request failed: {e}"));
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello"),
        "{what}"
    );
}

/// Waits until the server tracks nothing, then checks it still serves.
fn assert_recovered<T: Binding>(server: &TestServer<T>, what: &str) {
    wait_until(what, EVENTUALLY, || {
        let counts = server.handle.counts();
        counts.tracked() + counts.hijacked == 0
    });
    assert_eq!(server.handle.phase(), Phase::Serving);
    assert_h2_serves(server.addr, what);
}

fn goaway_error(frames: &[Frame]) -> Option<u32> {
    frames.iter().find_map(|f| f.goaway()).map(|(_, code)| code)
}

/// Malformed frames — each a connection error of RFC 9113 — get a GOAWAY
/// with an error code and a close, one connection at a time; random bytes
/// after the preface get at most that. The server is unaffected.
pub fn h2_malformed_frames_get_goaway<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut checker = Checker::start(server.addr);
    let mut oversized = frame(kind::DATA, 0, 1, &[]);
    oversized[..3].copy_from_slice(&[0x01, 0x00, 0x00]); // 65536 > 16384
    oversized.extend(vec![0; 65536]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("DATA on stream 0", frame(kind::DATA, 0, 0, b"data")),
        (
            "HEADERS with a broken header block",
            frame(kind::HEADERS, END_STREAM | END_HEADERS, 1, &[0xff; 16]),
        ),
        (
            "HEADERS on an even (server's) stream",
            frame(kind::HEADERS, END_STREAM | END_HEADERS, 2, &get_block("/")),
        ),
        ("a frame over the size limit", oversized),
        (
            "SETTINGS of a bad length",
            frame(kind::SETTINGS, 0, 0, &[0; 5]),
        ),
        ("SETTINGS on a stream", frame(kind::SETTINGS, 0, 1, &[])),
        (
            "a SETTINGS_ENABLE_PUSH of 2",
            frame(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]),
        ),
        ("PING of a bad length", frame(kind::PING, 0, 0, &[0; 7])),
        (
            "WINDOW_UPDATE of zero on the connection",
            frame(kind::WINDOW_UPDATE, 0, 0, &[0; 4]),
        ),
        (
            "CONTINUATION without HEADERS",
            frame(kind::CONTINUATION, END_HEADERS, 1, &get_block("/")),
        ),
        (
            "a stream id going backwards",
            [
                frame(kind::HEADERS, END_STREAM | END_HEADERS, 5, &get_block("/")),
                frame(kind::HEADERS, END_STREAM | END_HEADERS, 3, &get_block("/")),
            ]
            .concat(),
        ),
        (
            "a window overflowing 2^31-1",
            [
                frame(kind::WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
                frame(kind::WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut attacker = RawH2::connect(server.addr).unwrap();
        attacker.send(&bytes).unwrap();
        let seen = attacker
            .read_to_end(true)
            .unwrap_or_else(|e| panic!("{what}: the server did not close: {e}"));
        let code = goaway_error(&seen);
        assert!(
            code.is_some_and(|code| code != 0),
            "{what}: no GOAWAY with an error: {seen:?}"
        );
        checker.wait_for_more(1);
    }
    // Random bytes after the preface: whatever they parse as, the
    // connection ends (the attacker then closes its side).
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in [9, 64, 4096] {
        let noise: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect();
        let mut attacker = RawH2::connect(server.addr).unwrap();
        attacker.send(&noise).unwrap();
        attacker.stream().shutdown(Shutdown::Write).unwrap();
        attacker
            .read_to_end_silently()
            .unwrap_or_else(|e| panic!("{len} random bytes: the server did not close: {e}"));
        checker.wait_for_more(1);
    }
    checker.finish();
    assert_recovered(&server, "after the malformed frames");
}

/// A client that sends SETTINGS frames as fast as it can and reads none
/// of the acknowledgements: the server acknowledges at its pace (or gives
/// up on the connection), and serves others meanwhile.
pub fn h2_settings_flood_does_not_stop_others<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut checker = Checker::start(server.addr);
    let attacker = RawH2::connect(server.addr).unwrap();
    let socket = attacker.stream().try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let mut attacker = attacker;
        // SETTINGS_MAX_CONCURRENT_STREAMS=100, 64 frames per write.
        let burst = frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]).repeat(64);
        let started = Instant::now();
        let mut sent = 0usize;
        // Bounded in count and time; ends early when the server stops
        // reading (the socket's write timeout) or closes.
        while sent < 200_000 && started.elapsed() < EVENTUALLY {
            if attacker.send(&burst).is_err() {
                break;
            }
            sent += 64;
        }
        sent
    });
    // Served while the flood is on (the attacker's socket stays open until
    // the end of the test).
    for i in 0..5 {
        assert_h2_serves(server.addr, &format!("HTTP/2 request {i} during the flood"));
    }
    checker.wait_for_more(5);
    let _ = socket.shutdown(Shutdown::Both);
    let sent = flood.join().expect("the flood's thread");
    eprintln!("[{}] SETTINGS frames sent: {sent}", T::NAME);
    checker.finish();
    assert_recovered(&server, "after the SETTINGS flood");
}

/// A client opening streams past the advertised limit (200): the streams
/// beyond it are refused with `REFUSED_STREAM`, those within it are served
/// (one connection, Active), and others are served meanwhile.
pub fn h2_stream_flood_past_the_limit_refused<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut checker = Checker::start(server.addr);
    let mut attacker = RawH2::connect(server.addr).unwrap();
    let streams = MAX_CONCURRENT_STREAMS + 100;
    let block = get_block("/sleep?ms=3600000");
    let flood: Vec<u8> = (0..streams)
        .flat_map(|i| frame(kind::HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, &block))
        .collect();
    attacker.send(&flood).unwrap();
    let mut refused = 0;
    let (before, _) = attacker
        .read_until(true, |f| {
            if f.reset_code() == Some(REFUSED_STREAM) {
                refused += 1;
            }
            refused == streams - MAX_CONCURRENT_STREAMS || f.goaway().is_some()
        })
        .unwrap();
    assert_eq!(
        refused,
        streams - MAX_CONCURRENT_STREAMS,
        "refused streams; other frames: {before:?}"
    );
    assert!(goaway_error(&before).is_none(), "{before:?}");
    // The streams taken are handed to the handler one after the other.
    wait_until("the flood's connection active", EVENTUALLY, || {
        let counts = server.handle.counts();
        (counts.active, counts.idle) == (1, 0)
    });
    assert_h2_serves(server.addr, "during the stream flood");
    checker.wait_for_more(3);
    // The attacker leaves: its 200 streams end with the connection.
    drop(attacker);
    checker.finish();
    assert_recovered(&server, "after the stream flood");
    // And the drain has nothing left to wait for.
    server.handle.shutdown_within(EVENTUALLY);
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::Drained, 0)
    );
}

/// A client that answers none of the server's PINGs: at the drain the
/// final GOAWAY never comes, so the connection is closed at the gentle
/// close's bound; the drain does not wait for it.
pub fn h2_silent_client_at_drain_bounded<T: Binding>() {
    let server = demo_server::<T>(Config::default());
    let mut silent = RawH2::connect(server.addr).unwrap();
    silent.send_get(1, "/").unwrap();
    silent
        .read_until(false, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .unwrap();
    wait_until("an idle HTTP/2 connection", EVENTUALLY, || {
        server.handle.counts().idle == 1
    });
    server.handle.shutdown_within(EVENTUALLY);
    let (outcome, _) = server.wait_done(EVENTUALLY);
    assert_eq!(
        (outcome.completion, outcome.forced),
        (Completion::Drained, 0)
    );
    let seen = silent.read_to_end(false).unwrap();
    assert!(
        seen.iter().any(|f| f.goaway() == Some((MAX_STREAM_ID, 0))),
        "the first GOAWAY: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|f| f.kind != kind::PING || f.flags & ACK == 0),
        "{seen:?}"
    );
    async_io::block_on(server.handle.finished()).expect("finished");
}

/// Instantiates the HTTP/2 adversarial tests for a [`Binding`].
#[macro_export]
macro_rules! adversarial_h2 {
    ($rt:ty) => {
        $crate::adversarial_h2!(@each $rt;
            h2_malformed_frames_get_goaway,
            h2_settings_flood_does_not_stop_others,
            h2_stream_flood_past_the_limit_refused,
            h2_silent_client_at_drain_bounded,
        );
    };
    (@each $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::adversarial_h2::$name::<$rt>();
            }
        )*
    };
}
