//! Raw streams: custom protocols with the same lifecycle tracking as HTTP.
//!
//! The handler gets a [`RawConn`] per connection and marks where requests
//! begin and end; the first bytes read while the connection is New or Idle
//! mark the begin on their own (turn that off with
//! [`RawConn::set_auto_begin`]); [`RawConn::headers_complete`] and
//! [`RawConn::body_complete`] mark how far the request has been read, for
//! the header and body timeouts. Write stalls are seen on their own: a
//! write that finds the socket full, and the next that gets through, are
//! reported for [`Config::write_timeout`](lameduck_core::Config::write_timeout).
//! The core's decisions reach the handler as:
//! reads that return end-of-stream and writes that fail once the server has
//! closed the connection (idle at the drain, never sent within the grace,
//! timeouts), [`RawConn::keep_alive`] turning `false` when the current
//! request must be the last, and the [`Notice`] firing when the drain
//! reaches the connection (a long-lived request should end then). At the
//! shutdown deadline, on `close()`, or at a body or write timeout, the
//! handler's future is dropped.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_lite::FutureExt;
use futures_lite::io::{AsyncRead, AsyncWrite};
use std::time::Instant;

use lameduck_core::{ConnEvent, ConnId, Error, Server};

use crate::conn::{Notice, Transport};
use crate::control::{ABORT, CLOSE, Control};
use crate::runtime::Runtime;
use crate::sync::wait_until;
use crate::worker::ServeConn;
use crate::worker::Worker;

/// One accepted connection of a raw-stream server
/// ([`Server::serve_stream`](crate::Server::serve_stream)): `futures-io`
/// `AsyncRead` + `AsyncWrite`, plus the lifecycle marks.
///
/// Dropping it closes the connection and reports it closed.
///
/// ```
/// use futures_lite::{AsyncBufReadExt, AsyncWriteExt, io::BufReader};
/// use lameduck::{RawConn, runtime::SmolLocal};
///
/// // A line protocol: each line is a request, answered with its length.
/// async fn serve(conn: RawConn<SmolLocal>) {
///     let mut conn = BufReader::new(conn);
///     let mut line = String::new();
///     // One request per pass; ends when the peer or the server closes.
///     loop {
///         line.clear();
///         match conn.read_line(&mut line).await {
///             Ok(0) | Err(_) => return,
///             Ok(_) => {} // the first byte read marked the request begun
///         }
///         let answer = format!("{}\n", line.trim_end().len());
///         if conn.get_mut().write_all(answer.as_bytes()).await.is_err() {
///             return;
///         }
///         if !conn.get_mut().end() {
///             return; // draining: that was the last request
///         }
///     }
/// }
/// ```
pub struct RawConn<R: Runtime> {
    io: Transport<R>,
    auto_begin: bool,
    in_request: bool,
    hijacked: bool,
}

impl<R: Runtime> RawConn<R> {
    /// The connection's id in the core.
    #[must_use]
    pub fn id(&self) -> ConnId {
        self.io.conn().id
    }

    /// The drain notice: fires when the drain begins while a request is
    /// in progress (or the connection is hijacked), or once a request
    /// starts after that.
    #[must_use]
    pub fn notice(&self) -> Notice {
        Notice {
            control: self.io.conn().control.clone(),
        }
    }

    /// Whether the response being written now may keep the connection open
    /// for another request. `false` once shutdown has begun: tell the peer
    /// if the protocol can.
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.io.conn().driver.keeps_alive(&self.io.conn().control)
    }

    /// Whether the server has closed this connection (reads now end, writes
    /// fail).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.io.conn().control.cmd() & CLOSE != 0
    }

    /// Whether reading the first bytes of a request marks it begun (default
    /// `true`).
    pub fn set_auto_begin(&mut self, on: bool) {
        self.auto_begin = on;
    }

    /// Marks a request begun (New or Idle → Active). Harmless when one is
    /// already in progress. `false`: the server has closed the connection
    /// (a drain raced the request): drop it without answering.
    pub fn begin(&mut self) -> bool {
        if self.hijacked {
            return false;
        }
        if self.in_request {
            return true;
        }
        let conn = self.io.conn();
        let id = conn.id;
        let ok = conn
            .driver
            .report(&conn.control, ConnEvent::RequestStarted, |core, now| {
                core.request_started(id, now)
            })
            .is_ok();
        self.in_request = ok;
        ok
    }

    /// Marks the current request's head read; its body, if any, follows.
    /// The header timeout ends and the body timeout
    /// ([`Config::body_timeout`](lameduck_core::Config::body_timeout))
    /// starts. Harmless outside a request. `false`: the server has closed
    /// the connection.
    pub fn headers_complete(&mut self) -> bool {
        self.report(ConnEvent::HeadersComplete, Server::headers_complete)
    }

    /// Marks the current request read completely (head and body): neither
    /// the header nor the body timeout applies any more. Without
    /// [`headers_complete`](Self::headers_complete) before, it marks both at
    /// once. Harmless outside a request. `false`: the server has closed the
    /// connection.
    pub fn body_complete(&mut self) -> bool {
        self.report(ConnEvent::BodyComplete, Server::body_complete)
    }

    fn report(
        &mut self,
        event: ConnEvent,
        input: fn(&mut Server, ConnId, Instant) -> Result<(), Error>,
    ) -> bool {
        if self.hijacked || !self.in_request {
            return !self.hijacked && !self.is_closed();
        }
        let conn = self.io.conn();
        let id = conn.id;
        conn.driver
            .report(&conn.control, event, |core, now| input(core, id, now))
            .is_ok()
    }

    /// Marks the current request's response completely written (Active →
    /// Idle). Flush before. Returns whether the connection stays open for
    /// another request; `false` when shutting down (the server closes it:
    /// return from the handler).
    pub fn end(&mut self) -> bool {
        if !self.in_request {
            return !self.is_closed();
        }
        self.in_request = false;
        let conn = self.io.conn();
        let id = conn.id;
        let _ = conn
            .driver
            .report(&conn.control, ConnEvent::ResponseDone, |core, now| {
                core.response_done(id, now)
            });
        !self.is_closed()
    }

    /// Takes the connection out of the drain's tracking (like an HTTP
    /// upgrade): the core never closes it, and its [`notice`](Self::notice)
    /// fires when the drain begins. `false` if it was already closed.
    pub fn hijack(&mut self) -> bool {
        if self.hijacked {
            return true;
        }
        let id = self.io.conn().id;
        let ok = self
            .io
            .conn()
            .driver
            .input(|core, now| core.hijack(id, now))
            .is_ok();
        self.hijacked = ok;
        ok
    }
}

impl<R: Runtime> fmt::Debug for RawConn<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawConn")
            .field("id", &self.io.conn().id)
            .field("in_request", &self.in_request)
            .field("hijacked", &self.hijacked)
            .finish()
    }
}

impl<R: Runtime> AsyncRead for RawConn<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.io.conn().control.reader.register(cx.waker());
        if this.io.conn().control.cmd() & CLOSE != 0 {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(this.io.poll_read(cx, buf))?;
        if n > 0 && this.auto_begin && !this.in_request && !this.hijacked && !this.begin() {
            return Poll::Ready(Ok(0)); // closed by the drain as the request arrived
        }
        Poll::Ready(Ok(n))
    }
}

fn closed_by_server() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by the server (shutdown)",
    )
}

impl<R: Runtime> AsyncWrite for RawConn<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.io.conn().control.writer.register(cx.waker());
        if this.io.conn().control.cmd() & CLOSE != 0 {
            return Poll::Ready(Err(closed_by_server()));
        }
        this.io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.io.conn().control.writer.register(cx.waker());
        if this.io.conn().control.cmd() & CLOSE != 0 {
            return Poll::Ready(Err(closed_by_server()));
        }
        this.io.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.poll_close(cx)
    }
}

/// Serves raw streams with `handler`.
pub(crate) struct Streams<F> {
    pub(crate) handler: Arc<F>,
}

impl<R, F, Fut> ServeConn<R> for Streams<F>
where
    R: Runtime,
    F: Fn(RawConn<R>) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn serve(&self, worker: &Arc<Worker<R>>, io: Transport<R>) {
        let control = io.conn().control.clone();
        let rt = worker.rt.clone();
        let conn = RawConn {
            io,
            auto_begin: true,
            in_request: false,
            hijacked: false,
        };
        let handler = (self.handler)(conn);
        // The handler's future (and with it the connection) is dropped when
        // the server forces the connection closed.
        rt.spawn(handler.or(forced(control)));
    }
}

/// Resolves once the connection is forced closed.
async fn forced(control: Arc<Control>) {
    // This connection's control is notified a few times at most (finish,
    // notify, close).
    wait_until(&control.notice, || control.cmd() & ABORT != 0).await;
}
