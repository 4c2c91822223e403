//! The demo server's routes, generic over the runtime. Shared,
//! word for word, with the conformance suite (`lameduck-testkit` includes this
//! file), so the tests exercise exactly what the demo serves.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_io::Timer;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use lameduck::Handle;
use lameduck::http::EndAtDrain;
use lameduck::runtime::Runtime;

/// The response body of every route.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;
/// What a route returns.
pub type Reply = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Largest `POST /echo` body.
const ECHO_LIMIT: usize = 16 * 1024 * 1024;
/// Largest `ms` a route accepts (an hour).
const MAX_MS: u64 = 3_600_000;
/// Largest `chunks` for `/stream`.
const MAX_CHUNKS: u64 = 100_000;

/// Requests this server has received, across restarts: each generation
/// starts from its predecessor's count (restart state) and counts every
/// request it routes (`GET /hits` included).
pub static HITS: AtomicU64 = AtomicU64::new(0);

/// The demo's handler: `GET /`, `/sleep?ms=N`, `/stream?chunks=N&ms=M`,
/// `/events?ms=M`, `/pid`, `/healthz`, `/hits`, `POST /echo`, `GET /upgrade` (echo
/// protocol). Every response carries `X-Pid`: the process that served it
/// (across restarts, a request is answered by the process it reached).
///
/// Made on each server thread from its runtime `rt` (which runs upgraded
/// connections); timers are `async-io`'s, the same on every runtime.
pub fn router<R: Runtime>(rt: &R, handle: Handle) -> impl Fn(Request<Incoming>) -> Reply + use<R> {
    let rt = rt.clone();
    move |req| {
        let hits = HITS.fetch_add(1, Ordering::Relaxed) + 1;
        let reply = if req.method() == Method::GET && req.uri().path() == "/hits" {
            ready(text(StatusCode::OK, hits.to_string()))
        } else {
            route(&rt, &handle, req)
        };
        Box::pin(async move {
            let mut response = reply.await?;
            response.headers_mut().insert(
                "x-pid",
                hyper::header::HeaderValue::from(std::process::id()),
            );
            Ok(response)
        })
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response
}

/// `key=value` from a query string, as a bounded number.
fn query_u64(req: &Request<Incoming>, key: &str, max: u64) -> Result<u64, String> {
    let query = req.uri().query().unwrap_or("");
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("missing query parameter {key}"))?;
    match value.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("{key} must be a whole number from 0 to {max}")),
    }
}

fn route<R: Runtime>(rt: &R, handle: &Handle, mut req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") => ready(text(StatusCode::OK, "hello")),
        (Method::GET, "/pid") => ready(text(StatusCode::OK, std::process::id().to_string())),
        (Method::GET, "/healthz") => {
            if handle.phase().is_ready() {
                ready(text(StatusCode::OK, "ok"))
            } else {
                ready(text(StatusCode::SERVICE_UNAVAILABLE, "draining"))
            }
        }
        (Method::GET, "/sleep") => match query_u64(&req, "ms", MAX_MS) {
            Err(e) => ready(text(StatusCode::BAD_REQUEST, e)),
            Ok(ms) => Box::pin(async move {
                Timer::after(Duration::from_millis(ms)).await;
                Ok(text(StatusCode::OK, format!("slept {ms}")))
            }),
        },
        (Method::GET, "/stream") => {
            let params = query_u64(&req, "chunks", MAX_CHUNKS)
                .and_then(|chunks| Ok((chunks, query_u64(&req, "ms", MAX_MS)?)));
            match params {
                Err(e) => ready(text(StatusCode::BAD_REQUEST, e)),
                Ok((chunks, ms)) => ready(Response::new(stream_body(chunks, ms))),
            }
        }
        (Method::GET, "/events") => match query_u64(&req, "ms", MAX_MS) {
            Ok(0) => ready(text(
                StatusCode::BAD_REQUEST,
                format!("ms must be a whole number from 1 to {MAX_MS}"),
            )),
            Err(e) => ready(text(StatusCode::BAD_REQUEST, e)),
            Ok(ms) => ready(events(&req, ms)),
        },
        (Method::POST, "/echo") => Box::pin(async move {
            match Limited::new(req.into_body(), ECHO_LIMIT).collect().await {
                Ok(body) => Ok(text(StatusCode::OK, body.to_bytes())),
                Err(_) => Ok(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body too large or broken",
                )),
            }
        }),
        (Method::GET, "/upgrade") => ready(upgrade(rt.clone(), &mut req)),
        (
            _,
            "/" | "/pid" | "/healthz" | "/hits" | "/sleep" | "/stream" | "/events" | "/echo"
            | "/upgrade",
        ) => ready(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")),
        _ => ready(text(StatusCode::NOT_FOUND, "not found")),
    }
}

fn ready(response: Response<Body>) -> Reply {
    Box::pin(async move { Ok(response) })
}

/// `chunks` chunks (`chunk 0\n`, ...), the first at once, then `ms` apart.
fn stream_body(chunks: u64, ms: u64) -> Body {
    let stream = futures_lite::stream::unfold(0u64, move |i| async move {
        if i >= chunks {
            return None;
        }
        if i > 0 {
            Timer::after(Duration::from_millis(ms)).await;
        }
        let frame = Frame::data(Bytes::from(format!("chunk {i}\n")));
        Some((Ok::<_, Infallible>(frame), i + 1))
    });
    StreamBody::new(stream).boxed_unsync()
}

/// `GET /events?ms=M`: server-sent events, `data: <n>` (from 0, the first
/// at once) every `ms` ms until the drain reaches the connection, then one
/// `event: drain` / `data: bye` event and the end of the body.
fn events(req: &Request<Incoming>, ms: u64) -> Response<Body> {
    let ticks = futures_lite::stream::unfold(0u64, move |n| async move {
        if n > 0 {
            Timer::after(Duration::from_millis(ms)).await;
        }
        let frame = Frame::data(Bytes::from(format!("data: {n}\n\n")));
        Some((Ok::<_, Infallible>(frame), n + 1))
    });
    let body = StreamBody::new(ticks);
    let body = match req.extensions().get::<lameduck::Notice>() {
        Some(notice) => EndAtDrain::new(body, notice.clone())
            .with_final_chunk(Bytes::from_static(b"event: drain\ndata: bye\n\n"))
            .boxed_unsync(),
        // Not served by lameduck: no drain to end at.
        None => body.boxed_unsync(),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    response
}

fn has_token(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|value| {
        value
            .to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// `GET /upgrade` with `Connection: upgrade` and `Upgrade: echo`: 101, then
/// echo every byte; when shutdown begins, write `bye\n` and close.
fn upgrade<R: Runtime>(rt: R, req: &mut Request<Incoming>) -> Response<Body> {
    if !has_token(req, CONNECTION, "upgrade") || !has_token(req, UPGRADE, "echo") {
        return text(
            StatusCode::BAD_REQUEST,
            "expected Connection: upgrade and Upgrade: echo",
        );
    }
    let Some(upgrading) = lameduck::http::upgrade(req) else {
        return text(StatusCode::BAD_REQUEST, "no upgrade on this connection");
    };
    rt.spawn(async move {
        if let Ok(conn) = upgrading.await {
            let _ = echo(conn).await;
        }
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    response.headers_mut().insert(
        CONNECTION,
        hyper::header::HeaderValue::from_static("upgrade"),
    );
    response
        .headers_mut()
        .insert(UPGRADE, hyper::header::HeaderValue::from_static("echo"));
    response
}

/// Echoes until the peer closes, or says `bye` when shutdown begins.
pub async fn echo(mut conn: lameduck::http::Hijacked) -> std::io::Result<()> {
    let notice = conn.notice();
    let mut buf = vec![0u8; 16 * 1024];
    // One read per pass; ends at the peer's end of stream, an error, or the
    // shutdown notice.
    loop {
        let read = async { Some(conn.read(&mut buf).await) };
        let shutdown = async {
            notice.notified().await;
            None
        };
        match read.or(shutdown).await {
            Some(Ok(0)) => return Ok(()),
            Some(Ok(n)) => conn.write_all(&buf[..n]).await?,
            Some(Err(e)) => return Err(e),
            None => {
                conn.write_all(b"bye\n").await?;
                conn.flush().await?;
                return conn.close().await;
            }
        }
    }
}
