//! HTTP through hyper, with lifecycle tracking.
//!
//! [`Server::serve_http`](crate::Server::serve_http) serves every accepted
//! connection with hyper, HTTP/1.1 and HTTP/2 on the same listeners; this
//! module says what the core hears from each protocol and how its orders
//! are carried out, and holds what handlers use: [`upgrade`] and
//! [`Hijacked`] for `101 Switching Protocols`, the drain
//! [`Notice`](crate::Notice) in every request and [`EndAtDrain`] for
//! long-lived responses.
//!
//! # Which protocol
//!
//! A cleartext connection that opens with the HTTP/2 connection preface
//! (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, RFC 9113 §3.3: HTTP/2 with
//! prior knowledge, "h2c") is served as HTTP/2; any other is HTTP/1.1. The
//! first bytes are read until they differ from the preface or complete it
//! (however the client splits them), then handed to the protocol as if
//! unread: an HTTP/1.1 request is told apart at its first byte, at the
//! cost of one short read per connection. Until then the connection is
//! `New` to the core (the new-connection grace and the header timeout
//! cover a client that sends a part of the preface and stops). The
//! `Upgrade: h2c` dance of HTTP/1.1 is not offered (RFC 9113 deprecates
//! it).
//!
//! Over TLS (the `tls` feature, on TCP listeners) ALPN decides instead:
//! `h2` is HTTP/2, `http/1.1` (or no ALPN) HTTP/1.1, with the same
//! tracking of the decrypted bytes; the `tls` module says what TLS adds
//! (the handshake as part of a New connection, `close_notify`).
//!
//! # HTTP/1.1
//!
//! What the core hears, and when:
//! - **`request_started`** (New/Idle → Active) when the first bytes of a
//!   request are read from the socket, or — for a pipelined request whose
//!   head hyper already buffered — when hyper hands that request to the
//!   service. Bare CRLFs do not count: HTTP/1.1 servers ignore blank lines
//!   before a request line (RFC 9112 §2.2), and so does hyper, so a
//!   connection that has sent only those is still New or Idle;
//! - **`headers_complete`** when hyper calls the service — or, for a
//!   request without a body, **`body_complete`** at once (it implies the
//!   head);
//! - **`body_complete`**, for a request with a body (only with a body
//!   timeout set), when its last byte is read from the socket: the end of a
//!   `Content-Length` body is found by counting the bytes after the head's
//!   blank line. A body of unknown length (chunked), a pipelined request's,
//!   or one the handler does not read to the end, is reported when the
//!   handler's response is ready instead (hyper's `Incoming` does not say
//!   when it ends). So [`Config::body_timeout`](lameduck_core::Config::body_timeout)
//!   bounds the time from the head to the body's last byte — including
//!   time the handler takes before reading it — and never the handler's
//!   work after it;
//! - **`write_blocked`** when a write finds the socket full, and
//!   **`write_unblocked`** when the next write gets bytes through (edges
//!   only, and only with a
//!   [`Config::write_timeout`](lameduck_core::Config::write_timeout) set);
//! - **`response_done`** (Active → Idle) when the response body has ended
//!   *and* hyper has flushed it to the socket (the first successful flush
//!   after the body's end);
//! - **`hijack`** instead, when the response was `101 Switching Protocols`
//!   and has been flushed;
//! - **`closed`** when the socket is dropped, whoever owns it (hyper, or the
//!   application after an upgrade).
//!
//! What the core asks, and how it is carried out:
//! - `CloseConn`: the connection's task drops hyper's connection (a gentle
//!   close after FIN, or at once when forced — the shutdown deadline,
//!   `close()`, a body or write timeout: the handler is dropped mid-request
//!   and no response is sent);
//! - `FinishAndClose`: responses produced from then on carry
//!   `Connection: close` (asked of [`keep_alive`](lameduck_core::Server::keep_alive)
//!   when the handler's response comes back), and a request already in the
//!   handler gets hyper's `graceful_shutdown` (keep-alive off);
//! - `NotifyActive`: the [`Notice`](crate::Notice) in the extensions of
//!   the connection's requests fires (see below);
//! - `NotifyHijacked`: the [`Notice`](crate::Notice) of the [`Hijacked`] connection fires.
//!
//! A client that half-closes its connection (`shutdown(SHUT_WR)`) after a
//! request still gets the whole response, then the server closes: hyper's
//! `half_close` is on (as in Go). A client gone altogether is noticed when
//! the response is written.
//!
//! Malformed requests are answered `400 Bad Request` by hyper itself, and the
//! connection is closed (and reported closed). Request bytes that arrive on an idle connection the
//! drain has just closed are dropped without an answer, as Go does.
//!
//! # HTTP/2
//!
//! hyper's HTTP/2 server (no framing of lameduck's own). A connection is
//! one of the core's multiplexed connections: Active while any stream is
//! open, Idle at zero (Go's rule). Each stream's task runs on the server's
//! runtime, on the connection's thread (nothing is asked to be `Send`),
//! and ends with the connection. No keep-alive PINGs are sent, so no timer
//! is needed; the idle timeout bounds an idle connection.
//!
//! What the core hears, and when:
//! - **`stream_opened`** when hyper hands a stream's request to the
//!   service (its head arrived whole: the header and body timeouts are
//!   for HTTP/1.1's requests; the new-connection grace, the header timeout
//!   while the connection is New, the idle timeout and the write-stall
//!   timeout apply to the connection);
//! - **`stream_closed`** when the stream is done: its response's end was
//!   handed to the connection (hyper then drops the body; not when it is
//!   written, which neither hyper nor `h2` makes visible: a tail still
//!   queued when the connection is then closed gently is written within
//!   that close's bound), the handler
//!   failed, or the stream was reset — by the client, or with the
//!   connection. The last one leaves the connection Idle, or closes it
//!   when keep-alive is off;
//! - **`closed`** when the socket is dropped.
//!
//! What the core asks, and how it is carried out:
//! - `FinishAndClose` (the drain, or lame duck, found the connection
//!   Active), or a stream opened while keep-alive is off: hyper's
//!   `graceful_shutdown`, RFC 9113 §6.8's two steps — a GOAWAY naming the
//!   largest stream id and a PING; when the client answers the PING, the
//!   final GOAWAY naming the last stream taken. Streams open or on their
//!   way in before it complete; a client opening a stream after it gets
//!   no answer on it, and knows from the GOAWAY that it was not processed
//!   and may be retried elsewhere. The core closes the connection when its
//!   last stream is done;
//! - `CloseConn` gently (an idle connection at the drain, the idle
//!   timeout, the last stream done with keep-alive off): the same GOAWAYs
//!   if not sent yet, then hyper writes what is still buffered and closes
//!   — no timer is waited for: a client that answers the PING sees its
//!   connection end within a round trip or two. A stream opened on it in
//!   the meantime (after the first GOAWAY, before the final one) is reset
//!   with `REFUSED_STREAM`: not processed, safe to retry. This close is a
//!   gentle close: bounded like the others (half a second for a client
//!   that never answers, and the shutdown deadline), and waited for by
//!   [`Handle::finished`](crate::Handle::finished);
//! - `CloseConn` by force (the shutdown deadline, `close()`): the
//!   connection is dropped — its socket closed, its streams' handlers
//!   dropped, no GOAWAY;
//! - `NotifyActive`: the [`Notice`](crate::Notice) in the extensions of
//!   the connection's requests fires (see below);
//! - `NotifyHijacked`: never, for HTTP/2 connections.
//!
//! Malformed frames are hyper's (the `h2` crate's) business: a stream
//! error resets the stream, a connection error sends GOAWAY with the
//! error and closes; either way the core hears the streams and the
//! connection end. Upgrades are not offered over HTTP/2 (RFC 8441's
//! extended CONNECT is not enabled): [`upgrade`] returns `None` for an
//! HTTP/2 request.
//!
//! ## Limits
//!
//! HTTP/2's are hyper's defaults: 200 concurrent streams per connection
//! (further streams are refused with `REFUSED_STREAM`), a 16 KiB header
//! list, 16 KiB frames, 400 KiB of response buffered per stream, and
//! hyper's bounds on reset floods.
//!
//! HTTP/1.1 requests beyond hyper's limits are refused the same way: a request head
//! larger than its read buffer (about 400 KiB) or with more than 100
//! headers gets `431 Request Header Fields Too Large`, a URI over 64 KiB
//! `414 URI Too Long`. lameduck sets no limit on request bodies: that is
//! the handler's call — wrap the body in `http_body_util::Limited` and
//! answer `413 Payload Too Large`, as the demo's `POST /echo` does. A
//! request head trickled in slowly is bounded by
//! [`Config::header_timeout`](lameduck_core::Config::header_timeout), a
//! body trickled in slowly by
//! [`Config::body_timeout`](lameduck_core::Config::body_timeout), an idle
//! keep-alive connection by
//! [`Config::idle_timeout`](lameduck_core::Config::idle_timeout), a client
//! that stops reading its response by
//! [`Config::write_timeout`](lameduck_core::Config::write_timeout) (a
//! stall: a slow reader that keeps reading is never cut) and by the
//! shutdown deadline; how many connections are open at once by
//! [`Config::max_connections`](lameduck_core::Config::max_connections).
//!
//! # Long-lived responses: the drain notice
//!
//! A drain waits for every response in flight; a response that never ends
//! on its own (server-sent events, a long poll, a progress stream) would
//! hold it until the shutdown deadline cuts it mid-stream. So every
//! request carries its connection's [`Notice`](crate::Notice) in its
//! extensions: it fires when the drain begins — after a lame-duck delay
//! ([`Config::lame_duck`](lameduck_core::Config::lame_duck)), or a
//! restart's linger, not at their start: the service is still meant to be
//! available then — and a request that starts after that finds it fired
//! already. [`EndAtDrain`] wraps a response body to end it cleanly at that
//! moment: a final chunk of the handler's choosing, then the end of the
//! body (the terminating chunk of HTTP/1.1, `END_STREAM` over HTTP/2). The
//! connection then closes
//! gently as usual, and the drain completes without waiting for the
//! deadline. A handler that ignores the notice is not affected by it.
//!
//! ```
//! use std::{convert::Infallible, io::{Read, Write}, time::Duration};
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
//! use hyper::{Request, Response, body::{Frame, Incoming}};
//! use lameduck::{Notice, http::EndAtDrain};
//!
//! type Body = UnsyncBoxBody<Bytes, Infallible>;
//!
//! // A tick every 10 ms until the drain, then `bye`.
//! async fn ticks(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
//!     let notice = req.extensions().get::<Notice>().cloned().expect("served by lameduck");
//!     let ticks = futures_lite::stream::unfold((), |()| async {
//!         async_io::Timer::after(Duration::from_millis(10)).await;
//!         Some((Ok(Frame::data(Bytes::from("tick\n"))), ()))
//!     });
//!     let body = EndAtDrain::new(StreamBody::new(ticks), notice)
//!         .with_final_chunk(Bytes::from("bye\n"));
//!     Ok(Response::new(body.boxed_unsync()))
//! }
//!
//! let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_http(ticks)?;
//! let mut client = std::net::TcpStream::connect(handle.local_addrs()[0].to_string())?;
//! client.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")?;
//! let mut first = [0; 256];
//! let n = client.read(&mut first)?; // the head (and maybe a tick): streaming
//! assert!(first[..n].starts_with(b"HTTP/1.1 200 OK"));
//!
//! handle.shutdown_within(Duration::from_secs(30));
//! let mut rest = Vec::new();
//! client.read_to_end(&mut rest)?; // ends: the server closed after the body
//! assert!(rest.ends_with(b"4\r\nbye\n\r\n0\r\n\r\n"), "bye, then the last chunk");
//! drop(client); // (the server's gentle close waits for this FIN)
//! let outcome = smol::block_on(handle.finished()).expect("the driver ran to its end");
//! assert_eq!(outcome.forced, 0, "nothing waited for the deadline");
//! # Ok::<(), std::io::Error>(())
//! ```

mod drain;
mod http1;
mod http2;
mod io;
mod upgrades;

use std::sync::Arc;

pub use drain::EndAtDrain;
pub(crate) use io::Handler;
pub use upgrades::{Hijacked, Upgrading, upgrade};

use crate::conn::{ConnIo, Transport};
use crate::runtime::Runtime;
use crate::worker::ServeConn;
use crate::worker::Worker;
use io::{Protocol, sniff};

/// Serves HTTP with a handler on every accepted connection: over TLS, the
/// protocol ALPN chose (`h2`: HTTP/2; `http/1.1` or none: HTTP/1.1); in
/// cleartext, HTTP/2 when it opens with the HTTP/2 preface, HTTP/1.1
/// otherwise.
pub(crate) struct Http<H> {
    pub(crate) handler: Arc<H>,
}

impl<R: Runtime, H: Handler> ServeConn<R> for Http<H> {
    fn serve(&self, worker: &Arc<Worker<R>>, io: Transport<R>) {
        let rt = worker.rt.clone();
        let handler = self.handler.clone();
        match io {
            Transport::Plain(io) => rt.spawn(serve_cleartext(io, handler, rt.clone())),
            #[cfg(feature = "tls")]
            tls if tls.alpn_h2() => rt.spawn(http2::serve(tls, handler, rt.clone())),
            #[cfg(feature = "tls")]
            tls => rt.spawn(http1::serve(tls, handler)),
        }
    }
}

async fn serve_cleartext<R: Runtime, H: Handler>(mut io: ConnIo<R>, handler: Arc<H>, rt: R) {
    match sniff(&mut io).await {
        Some(Ok(Protocol::Http2)) => http2::serve(Transport::Plain(io), handler, rt).await,
        Some(Ok(Protocol::Http1)) => http1::serve(Transport::Plain(io), handler).await,
        // Closed by the core before a protocol showed (the new-connection
        // grace, a drain), or the socket failed: dropping it closes it.
        None | Some(Err(_)) => {}
    }
}
