//! HTTP through hyper, with lifecycle tracking.
//!
//! [`Server::serve_http`](crate::Server::serve_http) serves every accepted
//! connection with hyper; this module says what the core hears from each
//! protocol and how its orders are carried out, and holds what handlers
//! use: [`upgrade`] and [`Hijacked`] for `101 Switching Protocols`.
//!
//! # HTTP/1.1
//!
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
//! - `NotifyHijacked`: the [`Notice`](crate::Notice) of the [`Hijacked`] connection fires.
//!
//! A client that half-closes its connection (`shutdown(SHUT_WR)`) after a
//! request still gets the whole response, then the server closes: hyper's
//! `half_close` is on (as in Go). A client gone altogether is noticed when
//! the response is written.
//!
//! Malformed requests are answered `400 Bad Request` by hyper itself, and the
//! connection is closed (and reported closed); an HTTP/2 preface is closed
//! without an answer. Request bytes that arrive on an idle connection the
//! drain has just closed are dropped without an answer, as Go does.
//!
//! ## Limits
//!
//! Requests beyond hyper's limits are refused the same way: a request head
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

mod http1;

pub(crate) use http1::Http1;
pub use http1::{Hijacked, TrackedBody, Upgrading, upgrade};
