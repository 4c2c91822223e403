//! The bodies of the fuzz targets, as plain functions: `fuzz/` calls them
//! under libFuzzer, and `tests/tests/fuzz_corpus.rs` replays the saved corpus
//! through them on stable Rust. Each panics on a broken invariant.

use std::time::{Duration, Instant};

use lameduck_core::Phase;
use lameduck_core::activation::{Activation, FIRST_FD, ListenEnv};
use lameduck_core::handover::AbortReason;
use lameduck_core::restart::{Restart, RestartAction, RestartConfig, RestartPhase};

use crate::model::Harness;

/// Target `core_ops`: random op sequences against the lifecycle core and the
/// reference model (the same decoder as the property tests), once through
/// the inputs only and once with every connection holding a lease.
pub fn core_ops(data: &[u8]) {
    let _observed = Harness::run_bytes(data);
    let _observed = Harness::check_leased(&crate::model::decode(data));
}

/// Target `activation_env`: arbitrary `LISTEN_*` values never panic;
/// variables for another process are ignored exactly when `LISTEN_PID` is a
/// valid pid other than ours; whatever parses is consistent and
/// round-trips.
pub fn activation_env(data: &[u8]) {
    // Fields separated by 0xFF: pid, fds, names, own pid (decimal digits).
    let mut parts = data
        .split(|b| *b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let field = |p: Option<String>| p.filter(|s| s != "-");
    let env = ListenEnv {
        pid: field(parts.next()),
        fds: field(parts.next()),
        fdnames: field(parts.next()),
    };
    let own_pid = parts
        .next()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    let fds = match env.parse(own_pid) {
        Ok(Activation::Sockets(fds)) => fds,
        Ok(Activation::NotForUs {
            listen_pid,
            own_pid: own,
        }) => {
            assert_eq!(own, own_pid);
            assert_ne!(listen_pid, own_pid, "ignored, so not ours");
            assert!(listen_pid > 0);
            assert_eq!(
                env.pid.as_deref().and_then(|p| p.parse::<u32>().ok()),
                Some(listen_pid),
                "LISTEN_PID is that pid"
            );
            assert!(env.fds.is_some(), "LISTEN_FDS is set");
            return;
        }
        Ok(Activation::Nothing) => {
            assert!(env.pid.is_none() && env.fds.is_none());
            return;
        }
        Ok(other) => panic!("an answer the target does not know: {other:?}"),
        Err(_) => return,
    };
    let n: usize = env
        .fds
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("parsed, so LISTEN_FDS is a count");
    assert_eq!(fds.len(), n);
    for (i, fd) in fds.iter().enumerate() {
        assert_eq!(
            fd.fd,
            FIRST_FD + i as i32,
            "descriptors are consecutive from 3"
        );
    }
    let names: Vec<&str> = fds.iter().map(|f| f.name.as_str()).collect();
    let again = ListenEnv::for_successor(own_pid, &names).expect("parsed names are valid names");
    assert_eq!(
        again.parse(own_pid).expect("round trip"),
        Activation::Sockets(fds.clone())
    );
}

/// Target `supervisor_events`: random op sequences against the supervisor
/// machine and its reference model (the same decoder as the property
/// test; see [`crate::supervisor_model`]).
#[cfg(unix)]
pub fn supervisor_events(data: &[u8]) {
    let _observed = crate::supervisor_model::run_bytes(data);
}

/// Target `restart_events`: random reports to the restart machine (a
/// successor's readiness, or its abort of the state hand-over; the server's
/// phases; a hand-off decided elsewhere; drain signals). Checks: at
/// most one successor in flight; every started successor that was not handed
/// off is killed or seen to exit; every spawn ends in exactly one hand-off or
/// failure; the deadline is never in the past; a drain signal is a repeat
/// exactly when one came before or the server stops.
pub fn restart_events(data: &[u8]) {
    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    let t0 = Instant::now();
    let mut now = t0;
    let mut r = Restart::new(
        RestartConfig {
            ready_timeout: Duration::from_millis(500),
        },
        t0,
    );
    let mut next_pid = 100u32;
    // Spawns asked for and not yet ended by a hand-off or a failure.
    let mut open_spawns = 0u32;
    // Children started and neither exited nor handed off.
    let mut alive: Vec<u32> = Vec::new();
    let mut killed: Vec<u32> = Vec::new();
    let mut handed_off = false;
    // A drain signal came.
    let mut signalled = false;
    for chunk in data.chunks(2) {
        let (op, arg) = (chunk[0], chunk.get(1).copied().unwrap_or(0));
        // The pid an op refers to: a live child, or a made-up one.
        let pick = |alive: &[u32]| {
            alive
                .get(usize::from(arg) % (alive.len() + 1))
                .copied()
                .unwrap_or(9_999)
        };
        match op % 8 {
            0 | 1 => {
                let _ = r.request(now);
            }
            2 => {
                next_pid += 1;
                if r.spawned(next_pid, now).is_ok() {
                    alive.push(next_pid);
                }
            }
            3 if arg & 0x80 != 0 => {
                // A drain signal: a repeat once one came or the server stops.
                let stopped = r.phase() == RestartPhase::Stopped;
                assert_eq!(r.drain_signal(), signalled || stopped, "drain signal");
                signalled = true;
            }
            3 => {
                let _ = r.spawn_failed(now);
            }
            4 if arg & 0x80 != 0 => {
                // The state hand-over aborted by the successor's doing.
                let _ = r.child_aborted(pick(&alive), AbortReason::Refused, now);
            }
            4 => {
                let _ = r.child_ready(pick(&alive), now);
            }
            5 => {
                let pid = pick(&alive);
                if r.child_exited(pid, now).is_ok() {
                    alive.retain(|p| *p != pid);
                    killed.retain(|p| *p != pid);
                }
            }
            6 if arg & 0x80 != 0 => {
                // A hand-off decided elsewhere (a supervisor's generation).
                if r.handed_off_to(9_000 + u32::from(arg), now).is_ok() {
                    handed_off = true;
                }
            }
            6 => {
                // The server's phase: a stop, or the drain after a hand-off.
                const PHASES: [Phase; 5] = [
                    Phase::Serving,
                    Phase::LameDuck,
                    Phase::HandedOff,
                    Phase::Draining,
                    Phase::Closed,
                ];
                r.server_phase(PHASES[usize::from(arg) % PHASES.len()], now);
            }
            _ => {
                now += Duration::from_millis(u64::from(arg) * 4);
                r.handle_timeout(now);
            }
        }
        while let Some(action) = r.poll_action() {
            match action {
                RestartAction::Spawn { .. } => {
                    open_spawns += 1;
                    assert_eq!(open_spawns, 1, "two restarts in flight");
                    assert!(
                        alive.is_empty(),
                        "a spawn while a successor lives: {alive:?}"
                    );
                }
                RestartAction::Failed(_) => {
                    assert_eq!(open_spawns, 1, "a failure with no restart in flight");
                    open_spawns -= 1;
                }
                RestartAction::HandOff { child } => {
                    assert_eq!(open_spawns, 1, "a hand-off with no restart in flight");
                    open_spawns -= 1;
                    assert!(alive.contains(&child) && !killed.contains(&child));
                    handed_off = true;
                }
                RestartAction::Kill { child } => {
                    assert!(alive.contains(&child), "kill of a process not started");
                    killed.push(child);
                }
            }
        }
        if let Some(t) = r.poll_timeout() {
            assert!(t > now, "deadline in the past");
        }
        if handed_off {
            assert_eq!(r.phase(), RestartPhase::HandedOff);
        }
    }
    // Every successor not handed off was killed (or is still starting).
    let starting = if r.phase() == RestartPhase::Spawning {
        r.child()
    } else {
        None
    };
    for pid in &alive {
        let ours = r.phase() == RestartPhase::HandedOff && r.child() == Some(*pid);
        assert!(
            ours || killed.contains(pid) || starting == Some(*pid),
            "pid {pid} left running"
        );
    }
}

// ----- handover_state ---------------------------------------------------------

/// Target `handover_state`: the restart state's wire format, replies and
/// commit/abort decision on arbitrary input.
///
/// Input: `[limits, split, bytes...]`. `limits` picks small or default
/// [`Limits`]; `bytes` go to a [`Decoder`] in pieces of `split % 7 + 1`
/// bytes. Checks: no panic; the decoder never takes more than the frame;
/// a frame that decodes is within the limits, and encoding it gives back
/// exactly the bytes taken (one encoding per frame); once an error is
/// returned, every later call returns it. The same bytes go to a
/// [`ReplyDecoder`], and the replies to a [`Transfer`]: it decides at most
/// once, commits only on `READY=1` after `TAKEN` (or with nothing
/// offered), and refuses every input after deciding.
///
/// [`Limits`]: lameduck_core::handover::Limits
/// [`Decoder`]: lameduck_core::handover::Decoder
/// [`ReplyDecoder`]: lameduck_core::handover::ReplyDecoder
/// [`Transfer`]: lameduck_core::handover::Transfer
pub fn handover_state(data: &[u8]) {
    use lameduck_core::handover::{
        Decision, Decoder, Limits, Reply, ReplyDecoder, Transfer, TransferState,
    };
    let (Some(&mode), Some(&split)) = (data.first(), data.get(1)) else {
        return;
    };
    let bytes = &data[2..];
    let limits = if mode & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_items: 3,
            max_name: 4,
            max_bytes: 64,
            max_fds: 2,
        }
    };
    let mut decoder = Decoder::new(limits);
    let mut taken = 0usize;
    let mut error = None;
    for piece in bytes.chunks(usize::from(split % 7) + 1) {
        match decoder.feed(piece) {
            Ok(n) => {
                assert!(n <= piece.len());
                assert!(error.is_none(), "an error is sticky");
                taken += n;
                if n < piece.len() {
                    assert!(decoder.is_complete(), "bytes left over before the end");
                }
            }
            Err(e) => match &error {
                None => error = Some(e),
                Some(first) => assert_eq!(first, &e, "an error is sticky"),
            },
        }
    }
    if error.is_none() {
        let complete = decoder.is_complete();
        if let Ok(frame) = decoder.finish() {
            assert!(complete);
            frame
                .check(&limits)
                .expect("a decoded frame is within its limits");
            let again = frame.encode(&limits).expect("re-encodes");
            assert_eq!(again, &bytes[..taken], "one encoding per frame");
        }
    }

    let items = usize::from(mode >> 1) % 3;
    let mut transfer = Transfer::offered(items);
    let mut replies = ReplyDecoder::new();
    let mut taken_seen = false;
    let mut decided: Option<Decision> = None;
    let inputs = replies.feed(bytes).unwrap_or_default();
    for reply in &inputs {
        let before = transfer.state();
        let result = transfer.reply(reply);
        match (decided, result) {
            (Some(_), Err(_)) => assert_eq!(transfer.state(), before, "a refusal changes nothing"),
            (Some(_), Ok(_)) => panic!("decided twice"),
            (None, Err(e)) => panic!("refused before deciding: {e}"),
            (None, Ok(decision)) => {
                if decision == Some(Decision::Commit) {
                    assert_eq!(reply, &Reply::Ready);
                    assert!(taken_seen || items == 0, "committed without taking");
                }
                if *reply == Reply::Taken && decision.is_none() {
                    taken_seen = true;
                }
                decided = decision;
            }
        }
    }
    match decided {
        Some(_) => assert!(transfer.failed().is_err(), "decided once"),
        None => {
            assert!(matches!(
                transfer.state(),
                TransferState::Offered | TransferState::Taken
            ));
            assert!(transfer.failed().is_ok());
        }
    }
}

// ----- http_frontend -----------------------------------------------------------

#[cfg(feature = "smol")]
/// Target `http_frontend`: arbitrary bytes into the adapter's HTTP/1.1 front
/// end, through an in-memory stream handed to the same code path as an
/// accepted socket ([`Handle::serve_io`](lameduck::Handle::serve_io)).
///
/// Input: `[flags, separator, bytes...]`.
/// - `flags & 1`: split `bytes` at each `separator` byte (dropped) and let
///   the server run between the pieces (partial heads, split bodies).
/// - `(flags >> 1) & 3`: when to call `shutdown(None)`: never, before the
///   first piece, after the first piece, after the last one.
/// - `flags & 8`: the ending. Unset: the client half-closes after the last
///   piece, and the server must then close the connection **by itself and
///   promptly** (its timeouts are long enough never to fire). Set: the
///   client keeps the connection open, the server has 10 ms header and idle
///   timeouts, and a `shutdown_within(30 ms)` must complete the drain in
///   time.
///
/// Checks: no panic (in any task); everything the server wrote parses as a
/// sequence of complete HTTP/1.x responses with expected statuses (until a
/// `101`); the connection ends up closed, nothing left tracked; a fresh
/// connection still gets `200` for `GET /` (unless shut down, when it is
/// refused); the drain completes, gracefully unless forced by the deadline.
pub fn http_frontend(data: &[u8]) {
    let (flags, separator, bytes) = match data {
        [flags, separator, bytes @ ..] => (*flags, *separator, bytes),
        _ => return,
    };
    let pieces: Vec<&[u8]> = if flags & 1 != 0 {
        bytes.split(|b| *b == separator).collect()
    } else {
        vec![bytes]
    };
    let shutdown_at = (flags >> 1) & 3;
    let keep_open = flags & 8 != 0;
    let executor = std::rc::Rc::new(smol::LocalExecutor::new());
    let runner = executor.clone();
    // An input that opens with the HTTP/2 preface is served as HTTP/2.
    let first: Vec<u8> = pieces
        .iter()
        .flat_map(|p| p.iter())
        .take(24)
        .copied()
        .collect();
    let h2 = first == http_fuzz::PREFACE;
    futures_lite::future::block_on(runner.run(http_frontend_run(
        executor,
        &pieces,
        shutdown_at,
        keep_open,
        h2,
    )));
}

#[cfg(feature = "smol")]
/// Target `http2_frontend`: arbitrary frames into the adapter's HTTP/2
/// front end (h2c, prior knowledge), the way [`http_frontend`] feeds
/// HTTP/1.1: the client sends the connection preface, then the input.
///
/// Input: `[flags, separator, bytes...]`, as for [`http_frontend`].
///
/// Checks: no panic (in any task); everything the server wrote is whole
/// HTTP/2 frames (its SETTINGS first, responses only on client-opened
/// streams), unless the connection was cut; the connection ends up
/// closed, nothing left tracked; a fresh HTTP/2 connection still gets
/// `200` for `GET /` (unless shut down, when it is refused); the drain
/// completes, gracefully unless forced by the deadline; no task is left.
pub fn http2_frontend(data: &[u8]) {
    let (flags, separator, bytes) = match data {
        [flags, separator, bytes @ ..] => (*flags, *separator, bytes),
        _ => return,
    };
    let mut pieces: Vec<&[u8]> = vec![http_fuzz::PREFACE];
    if flags & 1 != 0 {
        pieces.extend(bytes.split(|b| *b == separator));
    } else {
        pieces.push(bytes);
    }
    let executor = std::rc::Rc::new(smol::LocalExecutor::new());
    let runner = executor.clone();
    futures_lite::future::block_on(runner.run(http_frontend_run(
        executor,
        &pieces,
        (flags >> 1) & 3,
        flags & 8 != 0,
        true,
    )));
}

#[cfg(feature = "smol")]
mod http_fuzz {
    //! The server and the response checker of [`http_frontend`](super::http_frontend).

    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use futures_lite::FutureExt;
    use http_body_util::{BodyExt, Full, Limited};
    use hyper::body::Incoming;
    use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
    use hyper::{Method, Request, Response, StatusCode};
    use lameduck::runtime::{Runtime, SmolLocal};

    /// What the handler answers with.
    pub(super) type Reply =
        Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

    /// Largest request body the handler reads.
    const BODY_LIMIT: usize = 64 * 1024;

    /// `/upgrade` (with an `Upgrade` header): `101`, then echo on the hijacked
    /// connection until the peer's end (or `bye` at shutdown). Anything
    /// else: read the body (at most 64 KiB) and answer `200 got N bytes`, or
    /// `413`. Every answer carries `x-method` so the checker knows which
    /// responses are to `HEAD`.
    pub(super) fn handler(rt: &SmolLocal) -> impl Fn(Request<Incoming>) -> Reply + use<> {
        let rt = rt.clone();
        move |mut req: Request<Incoming>| -> Reply {
            let method = HeaderValue::from_str(req.method().as_str())
                .unwrap_or(HeaderValue::from_static("?"));
            let reply = move |status: StatusCode, body: String| {
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                response.headers_mut().insert("x-method", method.clone());
                response
            };
            if req.uri().path() == "/upgrade"
                && req.method() == Method::GET
                && let Some(upgrading) = lameduck::http::upgrade(&mut req)
            {
                rt.spawn(async move {
                    if let Ok(conn) = upgrading.await {
                        let _ = crate::routes::echo(conn).await;
                    }
                });
                let mut response = reply(StatusCode::SWITCHING_PROTOCOLS, String::new());
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("upgrade"));
                response
                    .headers_mut()
                    .insert(UPGRADE, HeaderValue::from_static("echo"));
                return Box::pin(async move { Ok(response) });
            }
            Box::pin(async move {
                Ok(
                    match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
                        Ok(body) => reply(
                            StatusCode::OK,
                            format!("got {} bytes", body.to_bytes().len()),
                        ),
                        Err(_) => {
                            reply(StatusCode::PAYLOAD_TOO_LARGE, "too large or broken".into())
                        }
                    },
                )
            })
        }
    }

    /// Resolves with `future`'s output, or `None` after `timeout`.
    pub(super) async fn within<T>(timeout: Duration, future: impl Future<Output = T>) -> Option<T> {
        async { Some(future.await) }
            .or(async {
                smol::Timer::after(timeout).await;
                None
            })
            .await
    }

    /// Polls `condition` between the executor's other tasks until it holds
    /// or `timeout` passes; whether it held.
    pub(super) async fn settle(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        // Each pass lets every runnable task run once; bounded by the deadline.
        loop {
            if condition() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            futures_lite::future::yield_now().await;
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// What is wrong with the server's output.
    #[derive(Debug)]
    pub(super) enum Bad {
        /// It ends inside a response (fine only after a forced close).
        Truncated(&'static str),
        /// It is not what an HTTP/1.1 server may send.
        Malformed(String),
    }

    impl std::fmt::Display for Bad {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Bad::Truncated(where_) => write!(f, "truncated {where_}"),
                Bad::Malformed(what) => f.write_str(what),
            }
        }
    }

    impl From<String> for Bad {
        fn from(e: String) -> Bad {
            Bad::Malformed(e)
        }
    }

    impl From<&str> for Bad {
        fn from(e: &str) -> Bad {
            Bad::Malformed(e.to_owned())
        }
    }

    /// Splits one CRLF-terminated line off `rest`.
    fn line<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], Bad> {
        let at = find(rest, b"\r\n").ok_or(Bad::Truncated("inside a line"))?;
        let (line, tail) = rest.split_at(at);
        *rest = &tail[2..];
        Ok(line)
    }

    /// The HTTP/2 client connection preface.
    pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    /// An HTTP/2 frame as read: type, flags, stream, payload.
    pub(super) type RawFrame<'a> = (u8, u8, u32, &'a [u8]);

    /// Checks that `out` is a sequence of whole HTTP/2 frames as a server
    /// may send them: its SETTINGS first, known frame types, HEADERS and
    /// DATA only on client-opened (odd) streams. Returns the frames (type,
    /// flags, stream, payload).
    pub(super) fn check_frames(out: &[u8]) -> Result<Vec<RawFrame<'_>>, Bad> {
        let mut rest = out;
        let mut frames = Vec::new();
        // Each pass consumes one whole frame; bounded by `out`'s length.
        while !rest.is_empty() {
            if rest.len() < 9 {
                return Err(Bad::Truncated("inside a frame header"));
            }
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
            if rest.len() < 9 + len {
                return Err(Bad::Truncated("inside a frame"));
            }
            if frames.is_empty() && kind != 4 {
                return Err(
                    format!("the server's first frame is of type {kind}, not SETTINGS").into(),
                );
            }
            if kind > 9 {
                return Err(format!("a frame of unknown type {kind}").into());
            }
            if matches!(kind, 0 | 1) && stream.is_multiple_of(2) {
                return Err(format!("a frame of type {kind} on stream {stream}").into());
            }
            frames.push((kind, flags, stream, &rest[9..9 + len]));
            rest = &rest[9 + len..];
        }
        Ok(frames)
    }

    /// `GET /` on stream 1 of a new HTTP/2 connection: the preface, empty
    /// SETTINGS, and HEADERS (HPACK: static-table entries, literals
    /// without Huffman coding).
    pub(super) fn h2_get() -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let block = [0x82, 0x86, 0x84, 0x01, 4, b'f', b'u', b'z', b'z'];
        bytes.extend([0, 0, block.len() as u8, 1, 5, 0, 0, 0, 1]);
        bytes.extend(block);
        bytes
    }

    /// Statuses the handler or hyper itself may send.
    const EXPECTED: [u16; 8] = [100, 101, 200, 400, 413, 414, 431, 505];

    /// Checks that `out` is a sequence of complete HTTP/1.x responses (the
    /// last one may be a `101`, after which anything goes). Returns the
    /// statuses.
    pub(super) fn check_responses(out: &[u8]) -> Result<Vec<u16>, Bad> {
        let mut rest = out;
        let mut statuses = Vec::new();
        // Each pass consumes one whole response; bounded by `out`'s length.
        while !rest.is_empty() {
            let status_line = line(&mut rest)?;
            let text = std::str::from_utf8(status_line).map_err(|_| "a non-UTF-8 status line")?;
            let mut parts = text.splitn(3, ' ');
            let version = parts.next().unwrap_or("");
            let code = parts.next().unwrap_or("");
            let reason = parts.next().unwrap_or("");
            if version != "HTTP/1.1" && version != "HTTP/1.0" {
                return Err(format!("bad version in {text:?}").into());
            }
            let status: u16 = code
                .parse()
                .ok()
                .filter(|_| code.len() == 3)
                .ok_or_else(|| format!("bad status in {text:?}"))?;
            if !EXPECTED.contains(&status) || reason.is_empty() {
                return Err(format!("unexpected status line {text:?}").into());
            }
            statuses.push(status);
            let mut length = None;
            let mut chunked = false;
            let mut head = false;
            // One header per pass; bounded by `out`'s length.
            loop {
                let header = line(&mut rest)?;
                if header.is_empty() {
                    break;
                }
                let header = std::str::from_utf8(header).map_err(|_| "a non-UTF-8 header")?;
                let (name, value) = header
                    .split_once(": ")
                    .ok_or_else(|| format!("bad header {header:?}"))?;
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                    return Err(format!("bad header name {header:?}").into());
                }
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => {
                        let n: usize = value
                            .parse()
                            .map_err(|_| format!("bad content-length {value:?}"))?;
                        if length.replace(n).is_some() {
                            return Err("two content-lengths".into());
                        }
                    }
                    "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                    "x-method" => head = value == "HEAD",
                    _ => {}
                }
            }
            if chunked && length.is_some() {
                return Err("both chunked and content-length".into());
            }
            match status {
                101 => return Ok(statuses),
                100..=199 => continue,
                _ => {}
            }
            if head {
                continue;
            }
            if chunked {
                // One chunk per pass; bounded by `out`'s length.
                loop {
                    let size = line(&mut rest)?;
                    let size = std::str::from_utf8(size)
                        .ok()
                        .and_then(|s| usize::from_str_radix(s, 16).ok())
                        .ok_or("bad chunk size")?;
                    if rest.len() < size + 2 {
                        return Err(Bad::Truncated("inside a chunk"));
                    }
                    if &rest[size..size + 2] != b"\r\n" {
                        return Err("a chunk without its CRLF".into());
                    }
                    rest = &rest[size + 2..];
                    if size == 0 {
                        break;
                    }
                }
            } else {
                let n = length.ok_or_else(|| format!("{status} without a length"))?;
                if rest.len() < n {
                    return Err(Bad::Truncated("inside a body"));
                }
                rest = &rest[n..];
            }
        }
        Ok(statuses)
    }
}

#[cfg(feature = "smol")]
async fn http_frontend_run(
    executor: std::rc::Rc<smol::LocalExecutor<'static>>,
    pieces: &[&[u8]],
    shutdown_at: u8,
    keep_open: bool,
    h2: bool,
) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use http_fuzz::{check_frames, check_responses, h2_get, settle, within};
    use lameduck::{Completion, Config};

    /// Long enough never to fire while an input runs.
    const LONG: Duration = Duration::from_secs(10);
    /// Short enough to fire in every input that keeps its connection open.
    const SHORT: Duration = Duration::from_millis(5);
    /// A generous bound for "promptly" (the machine may be busy).
    const PROMPT: Duration = Duration::from_secs(2);
    const FRESH_GET: &[u8] = b"GET / HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n\r\n";

    let rt = lameduck::runtime::SmolLocal::new(executor.clone());
    let timeout = if keep_open { SHORT } else { LONG };
    let config = Config {
        header_timeout: Some(timeout),
        idle_timeout: Some(timeout),
        new_conn_grace: timeout,
        ..Config::default()
    };
    let handle = lameduck::Builder::with_runtime(rt.clone())
        .config(config)
        .build()
        .expect("a server without listeners")
        .serve_http_with(http_fuzz::handler);

    let (mut client, server_end) = crate::duplex::duplex();
    handle
        .serve_io(server_end)
        .expect("serving a handed-in stream");
    let mut shut_down = false;
    if shutdown_at == 1 {
        handle.shutdown(None);
        shut_down = true;
    }
    for (i, piece) in pieces.iter().enumerate() {
        // A write fails only once the server has dropped the connection.
        if client.write_all(piece).await.is_err() {
            break;
        }
        // Let the server take in this piece before the next one.
        settle(PROMPT, || {
            client.unread_by_peer() == 0 || client.peer_gone()
        })
        .await;
        for _ in 0..8 {
            futures_lite::future::yield_now().await;
        }
        if (shutdown_at == 2 && i == 0) || (shutdown_at == 3 && i + 1 == pieces.len()) {
            handle.shutdown(None);
            shut_down = true;
        }
    }
    let mut out = Vec::new();
    if !keep_open {
        // Half-close: the server must finish up and close on its own.
        client.close().await.expect("half-closing the client");
        let read = within(PROMPT, client.read_to_end(&mut out)).await;
        assert!(
            read.is_some(),
            "the server never closed a half-closed connection: counts {:?}, output {:?}",
            handle.counts(),
            String::from_utf8_lossy(&out)
        );
        let gone = settle(PROMPT, || {
            let counts = handle.counts();
            counts.tracked() + counts.hijacked == 0
        })
        .await;
        assert!(gone, "still tracked after its end: {:?}", handle.counts());
    }

    // A fresh, well-formed request on a new connection (written before it
    // is handed in, so the short timeouts cannot beat it).
    let (mut fresh, server_end) = crate::duplex::duplex();
    let fresh_get = if h2 { h2_get() } else { FRESH_GET.to_vec() };
    fresh
        .write_all(&fresh_get)
        .await
        .expect("buffering a request");
    match handle.serve_io(server_end) {
        Ok(_) if h2 => {
            assert!(!shut_down, "a connection accepted while draining");
            // The connection stays open after the answer: read frames
            // until stream 1 ends (or the connection does).
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            let answered = |answer: &[u8]| {
                check_frames(answer).is_ok_and(|frames| {
                    frames.iter().any(|(kind, flags, stream, _)| {
                        *stream == 1 && *kind <= 1 && flags & 1 != 0
                    })
                })
            };
            // Each pass reads some bytes, or ends; bounded by PROMPT each.
            while !answered(&answer) {
                match within(PROMPT, fresh.read(&mut buf)).await {
                    Some(Ok(n)) if n > 0 => answer.extend(&buf[..n]),
                    _ => break,
                }
            }
            let frames = check_frames(&answer).unwrap_or_else(|e| panic!("a fresh GET /: {e}"));
            let ok = frames.iter().any(|(kind, _, stream, payload)| {
                *kind == 1 && *stream == 1 && payload.first() == Some(&0x88)
            });
            // With 5 ms timeouts, a busy machine may let a timeout close it
            // first: then without an answer on stream 1, or with stream 1
            // refused (RST_STREAM REFUSED_STREAM: the core closed the
            // connection while the request was on its way in, so it was
            // not processed and may be retried, RFC 9113 §8.7).
            let on_stream_1: Vec<_> = frames.iter().filter(|f| f.2 == 1).collect();
            let refused = matches!(
                on_stream_1.as_slice(),
                [(3, _, 1, payload)] if *payload == [0, 0, 0, 7]
            );
            let timed_out = keep_open && (on_stream_1.is_empty() || refused);
            assert!(
                timed_out || ok && answered(&answer),
                "a fresh HTTP/2 GET / got {frames:?}"
            );
        }
        Ok(_) => {
            assert!(!shut_down, "a connection accepted while draining");
            let mut answer = Vec::new();
            let read = within(PROMPT, fresh.read_to_end(&mut answer)).await;
            assert!(read.is_some(), "no answer to a fresh GET /");
            let answer = String::from_utf8_lossy(&answer);
            // With 5 ms timeouts, a busy machine may let the header timeout
            // close it first: then without a byte of answer.
            let timed_out = keep_open && answer.is_empty();
            assert!(
                timed_out
                    || answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("got 0 bytes"),
                "a fresh GET / got {answer:?}"
            );
        }
        Err(e) => {
            assert!(shut_down, "a fresh connection refused while serving: {e}");
            assert_eq!(
                e.get_ref()
                    .and_then(|e| e.downcast_ref::<lameduck::Error>()),
                Some(&lameduck::Error::ServerClosed)
            );
        }
    }
    drop(fresh);

    // The drain completes: at once when nothing is left; with the input's
    // connection kept open, by its timeouts or the deadline.
    let deadline = if keep_open { SHORT * 2 } else { PROMPT };
    handle.shutdown_within(deadline);
    let outcome = within(deadline + PROMPT, handle.drained().wait())
        .await
        .expect("the drain completes by its deadline")
        .expect("the driver ran to its end");
    if keep_open {
        assert!(outcome.forced <= 1, "{outcome:?}");
        // The server has let go of the connection (closed, forced, or an
        // upgraded one said bye): read the rest.
        let read = within(PROMPT, client.read_to_end(&mut out)).await;
        assert!(read.is_some(), "the connection outlived the drain");
    } else {
        assert_eq!(outcome.completion, Completion::Drained, "{outcome:?}");
        assert_eq!(outcome.forced, 0, "{outcome:?}");
    }
    let clear = settle(PROMPT, || handle.counts() == lameduck::Counts::default()).await;
    assert!(clear, "left after the drain: {:?}", handle.counts());
    let checked = if h2 {
        check_frames(&out).map(|_| ())
    } else {
        check_responses(&out).map(|_| ())
    };
    match checked {
        Ok(()) => {}
        // Cut: forced, or (HTTP/2) a gentle close cut at the deadline.
        Err(http_fuzz::Bad::Truncated(_)) if outcome.forced > 0 || (h2 && keep_open) => {}
        Err(e) => panic!("{e}: {:?}", String::from_utf8_lossy(&out)),
    }
    // With the peers gone, every task of the server ends (gentle closes
    // included): none is left behind.
    drop(client);
    let ended = settle(PROMPT, || executor.is_empty()).await;
    assert!(ended, "tasks left behind after the drain");
}
