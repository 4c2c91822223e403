//! HTTP/2 through hyper: each stream is reported to the core as one of a
//! multiplexed connection's, and the drain is carried out with GOAWAY (the
//! `http` module docs say what is tracked and how).
//!
//! ```text
//! serve(io, handler, rt).await   // hyper's http2 connection, StreamService per stream
//! ```
//!
//! # Why a stream is reported closed when its end is handed over, not flushed
//!
//! `stream_closed` goes to the core when hyper drops the response body
//! ([`StreamBody`], through its [`OpenStream`]): right after hyper's last
//! `send_data(.., end_of_stream = true)` on the stream (or the headers
//! with END_STREAM for an empty body), which only *queues* the frame in
//! the `h2` crate's send buffer. Hyper waits for the stream to be granted
//! some flow-control capacity before that call, but a chunk larger than
//! the capacity is queued whole, its tail (and the END_STREAM flag) sent
//! as the client's WINDOW_UPDATEs come; and even a frame within the window
//! reaches the socket only when the connection's task next writes and
//! flushes. The point where the stream's end is actually written is not
//! observable: hyper's service sees only the body it hands over, and the
//! `h2` crate's `SendStream` (which hyper keeps to itself) has no
//! completion for a queued frame — only capacity, `send_data`, and resets.
//! A report at the connection's next flush would be wrong in the other
//! direction (a flush may carry none of a stream whose tail waits for its
//! window). So the hand-off is the last point lameduck can see, and it is
//! the point used.
//!
//! What it means for the drain: the core may count a connection Idle while
//! its last stream's final frames are still in `h2`'s buffer. If the drain
//! (or the idle timeout) then closes it, the close is gentle (see
//! [`serve`]): hyper's `graceful_shutdown`, then hyper's connection is
//! driven on — writing what is queued, and reading the client's
//! WINDOW_UPDATEs and PING answer — until it ends, bounded by [`GENTLE_CLOSE_WAIT`]
//! and cut by the shutdown deadline. A client that reads its response
//! gets all of it. One that keeps its flow-control window shut for longer
//! than the gentle close's bound loses the tail of its response, and the
//! drain's outcome does not count that stream as forced (the core saw it
//! done). HTTP/1.1 differs here: its `response_done` waits for hyper's
//! flush of the response's end to the socket, which its bridge sees.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::FutureExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http2;
use hyper::service::Service;
use hyper::{Request, Response};
use lameduck_core::{ConnEvent, ConnId};

use crate::conn::{GENTLE_CLOSE_WAIT, Notice, Transport};
use crate::control::{ABORT, CLOSE, Control, FINISH};
use crate::driver::Driver;
use crate::http::io::{BoxError, Handler, HyperIo};
use crate::runtime::Runtime;
use crate::sync::Stop;

/// In `Control::track`: a stream opened with keep-alive off (lame duck,
/// a drain, keep-alives disabled) — the connection is to go away once its
/// streams are done. Set by the service, read by the connection's task.
const GO_AWAY: u8 = 1;

/// Serves HTTP/2 on `io` with `handler` until the connection ends; the
/// streams' tasks run on `rt`. `io` is read from its first byte: the
/// client's connection preface comes first (a cleartext connection's
/// preface, read to tell HTTP/2 apart, is put back on `io` beforehand).
pub(crate) async fn serve<R: Runtime, H: Handler>(io: Transport<R>, handler: Arc<H>, rt: R) {
    let control = io.conn().control.clone();
    let driver = io.conn().driver.clone();
    // Ends the streams' tasks with the connection.
    let ended = Arc::new(Stop::default());
    let tasks = StreamTasks {
        rt: rt.clone(),
        ended: ended.clone(),
    };
    let service = StreamService {
        handler,
        driver: driver.clone(),
        control: control.clone(),
        id: io.conn().id,
    };
    let conn = http2::Builder::new(tasks).serve_connection(HyperIo { io, tap: () }, service);
    let mut conn = pin!(conn);
    let mut going_away = false;
    // Serves until the connection ends, or the core closes it: `true` for
    // a gentle close.
    let gentle = poll_fn(|cx| {
        control.reader.register(cx.waker());
        let cmd = control.cmd();
        if cmd & CLOSE != 0 {
            return Poll::Ready(cmd & ABORT == 0);
        }
        if !going_away && (cmd & FINISH != 0 || control.track.load(Acquire) & GO_AWAY != 0) {
            // GOAWAY, the graceful way: streams open (or on their way in)
            // complete, later ones are refused; hyper closes the connection
            // once the last one is done.
            conn.as_mut().graceful_shutdown();
            going_away = true;
        }
        conn.as_mut().poll(cx).map(|_| false)
    })
    .await;
    if gentle {
        // Closed by the core with no stream open (idle at the drain, the
        // idle timeout, its last stream done with keep-alive off): GOAWAY
        // if not sent yet, then hyper writes what is still buffered and
        // ends the connection — within the gentle close's bound, and cut
        // with the gentle closes (a shutdown deadline, `close()`).
        conn.as_mut().graceful_shutdown();
        let done = async {
            let _ = conn.as_mut().await;
        };
        let bound = rt.sleep_until(Instant::now() + GENTLE_CLOSE_WAIT);
        let cut = driver.gentle_closes.cut_notified();
        done.or(bound).or(cut).await;
    }
    // Otherwise forced (or over): dropping hyper's connection drops the
    // socket, and every stream's task ends with it.
    ended.stop();
}

// ----- stream tasks ----------------------------------------------------------

/// hyper's executor for a connection's streams: each stream's task runs on
/// the server's runtime (on its thread: nothing needs to be `Send`), and
/// ends when the connection does.
#[derive(Clone)]
struct StreamTasks<R> {
    rt: R,
    ended: Arc<Stop>,
}

impl<R: Runtime, F: Future<Output = ()> + 'static> hyper::rt::Executor<F> for StreamTasks<R> {
    fn execute(&self, task: F) {
        let ended = self.ended.clone();
        self.rt.spawn(task.or(async move { ended.wait().await }));
    }
}

// ----- the service -------------------------------------------------------------

/// Opens a stream in the core for each request; the response's body closes
/// it when the stream is done.
struct StreamService<H> {
    handler: Arc<H>,
    driver: Arc<Driver>,
    control: Arc<Control>,
    id: ConnId,
}

type ResponseFuture<B> = Pin<Box<dyn Future<Output = Result<Response<StreamBody<B>>, BoxError>>>>;

impl<H: Handler> Service<Request<Incoming>> for StreamService<H> {
    type Response = Response<StreamBody<H::Body>>;
    type Error = BoxError;
    type Future = ResponseFuture<H::Body>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let id = self.id;
        if self
            .driver
            .report(&self.control, ConnEvent::StreamOpened, |core, now| {
                core.stream_opened(id, now)
            })
            .is_err()
        {
            // The core closed the connection (idle at the drain) while the
            // stream was on its way in, before the final GOAWAY: refused,
            // which tells the client it was not processed and may be
            // retried (RFC 9113 §8.7).
            let refused: BoxError = Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM));
            return Box::pin(async move { Err(refused) });
        }
        let open = OpenStream {
            driver: self.driver.clone(),
            control: self.control.clone(),
            id,
        };
        if !self.driver.keeps_alive(&self.control) {
            self.control.track.fetch_or(GO_AWAY, AcqRel);
            self.control.reader.wake();
        }
        // Fired already if the drain began before this stream opened: the
        // core told the connection when the drain began (it had streams
        // open), or in this `stream_opened` (its first).
        req.extensions_mut().insert(Notice {
            control: self.control.clone(),
        });
        let response = self.handler.call(req);
        Box::pin(async move {
            // An error drops `open` here: the stream is reset, and done.
            let response = response.await.map_err(Into::into)?;
            Ok(response.map(|inner| StreamBody { inner, _open: open }))
        })
    }
}

/// A stream the core counts open; dropping it reports it closed.
struct OpenStream {
    driver: Arc<Driver>,
    control: Arc<Control>,
    id: ConnId,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let id = self.id;
        // An error: the core closed the connection already (a deadline).
        let _ = self
            .driver
            .report(&self.control, ConnEvent::StreamClosed, |core, now| {
                core.stream_closed(id, now)
            });
    }
}

pin_project_lite::pin_project! {
    /// A stream's response body: hyper drops it when the stream is done
    /// (its end handed to the connection, or the stream reset), which
    /// reports the stream closed.
    pub(crate) struct StreamBody<B> {
        #[pin]
        inner: B,
        _open: OpenStream,
    }
}

impl<B: Body> Body for StreamBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
