//! HTTP/1.1 through hyper: the tracked IO, service and body (the `http`
//! module docs say what is tracked); upgrades are `upgrades.rs`'s.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};
use lameduck_core::ConnEvent;
use lameduck_core::ConnId;

use crate::conn::{ConnIo, Notice, Transport};
use crate::control::{CLOSE, Control, FINISH};
use crate::driver::Driver;
use crate::http::io::{BoxError, Handler, HyperIo, Tap, closed_by_server};
use crate::runtime::Runtime;
use crate::sync::lock;

use super::upgrades::UpgradeCtx;

// Tracking bits in `Control::track`.
/// The core has the connection Active (a request is in progress).
const IN_REQUEST: u8 = 1;
/// hyper called the service for the current request.
const IN_SERVICE: u8 = 2;
/// The current response's body ended; the next flush completes it.
const RESP_END: u8 = 4;
/// The current response is `101 Switching Protocols`.
const UPGRADING: u8 = 8;
/// Reported hijacked: no more tracking.
const HIJACKED: u8 = 16;
/// The current response's head goes out without `Connection: close`: the
/// client may send another request on the connection.
const KEPT_ALIVE: u8 = 32;
/// The current request's body was reported complete.
const BODY_DONE: u8 = 64;

fn track(control: &Control) -> u8 {
    control.track.load(Ordering::Acquire)
}

fn set_track(control: &Control, bits: u8) {
    control.track.fetch_or(bits, Ordering::AcqRel);
}

fn clear_track(control: &Control, bits: u8) {
    control.track.fetch_and(!bits, Ordering::AcqRel);
}

// ----- serving -------------------------------------------------------------

/// Serves HTTP/1.1 on `io` with `handler` until the connection ends.
pub(crate) async fn serve<R: Runtime, H: Handler>(io: Transport<R>, handler: Arc<H>) {
    let control = io.conn().control.clone();
    let driver = io.conn().driver.clone();
    let id = io.conn().id;
    let watch = driver
        .report
        .body
        .then(|| Arc::new(Mutex::new(BodyWatch::default())));
    let service = TrackedService {
        handler,
        driver: driver.clone(),
        control: control.clone(),
        id,
        watch: watch.clone(),
    };
    let conn = http1::Builder::new()
        .half_close(true)
        .serve_connection(
            HyperIo {
                io,
                tap: Http1Tap { watch },
            },
            service,
        )
        .with_upgrades();
    let mut conn = pin!(conn);
    let mut graceful = false;
    poll_fn(|cx| {
        control.reader.register(cx.waker());
        let cmd = control.cmd();
        if cmd & CLOSE != 0 {
            return Poll::Ready(()); // dropping hyper's connection closes the socket
        }
        let bits = track(&control);
        // A response whose head already went out with keep-alive completes
        // as promised: the core then keeps or closes the connection
        // (`response_done_kept_alive`).
        if cmd & FINISH != 0 && !graceful && bits & IN_SERVICE != 0 && bits & KEPT_ALIVE == 0 {
            // The request is in the handler: keep-alive off, close after the
            // response. (Before the service is called hyper would take this
            // as "idle" and close at once; then the response's own
            // `Connection: close` does the job.)
            conn.as_mut().graceful_shutdown();
            graceful = true;
        }
        conn.as_mut().poll(cx).map(|_| ())
    })
    .await;
    // A 101 whose flush hyper skipped before handing the socket over.
    let bits = track(&control);
    if bits & UPGRADING != 0 && bits & HIJACKED == 0 {
        set_track(&control, HIJACKED);
        let _ = driver.input(|core, now| core.hijack(id, now));
    }
}

// ----- the socket, seen by hyper -------------------------------------------

/// Finds where a request's body ends in the bytes read, so that its end is
/// reported when it is read (`Config::body_timeout`), not when the handler
/// answers (which may be much later). The socket counts bytes and finds the
/// blank line that ends the head of a request begun by a read; the service
/// adds the body's `Content-Length`. A body of unknown length (chunked) or
/// a pipelined request (its head read with the previous request) is
/// reported when the handler's response is ready instead.
#[derive(Debug, Default)]
struct BodyWatch {
    /// Bytes read from the socket so far.
    read: u64,
    /// Scanning the current request's head for its end: whether the line
    /// being read has anything in it.
    scanning: Option<bool>,
    /// Just past the current request's head, once found.
    head_end: Option<u64>,
    /// Just past the current request's body, while waiting for it.
    body_end: Option<u64>,
}

impl BodyWatch {
    /// Takes in `bytes` read; `begins` is the offset in them where a new
    /// request begins. Returns whether the awaited body end was reached.
    fn read(&mut self, bytes: &[u8], begins: Option<usize>) -> bool {
        let start = self.read;
        self.read += bytes.len() as u64;
        if let Some(at) = begins {
            self.scanning = Some(false);
            self.head_end = None;
            self.body_end = None;
            self.scan(&bytes[at..], start + at as u64);
        } else if self.scanning.is_some() {
            self.scan(bytes, start);
        }
        match self.body_end {
            Some(end) if self.read >= end => {
                self.body_end = None;
                true
            }
            _ => false,
        }
    }

    /// Looks for the empty line that ends a head (`\r\n` or a bare `\n`,
    /// as hyper accepts).
    fn scan(&mut self, bytes: &[u8], offset: u64) {
        let Some(mut filled) = self.scanning else {
            return;
        };
        for (i, b) in bytes.iter().enumerate() {
            match b {
                b'\n' if !filled => {
                    self.head_end = Some(offset + i as u64 + 1);
                    self.scanning = None;
                    return;
                }
                b'\n' => filled = false,
                b'\r' => {}
                _ => filled = true,
            }
        }
        self.scanning = Some(filled);
    }

    /// The service has the head, and the body's exact length if known:
    /// whether the body is in already; otherwise its end is awaited (or,
    /// unknown, left to the response).
    fn head(&mut self, length: Option<u64>) -> bool {
        self.scanning = None;
        match (self.head_end.take(), length) {
            (Some(head_end), Some(length)) => {
                let end = head_end.saturating_add(length);
                if self.read >= end {
                    true
                } else {
                    self.body_end = Some(end);
                    false
                }
            }
            _ => false,
        }
    }
}

/// HTTP/1.1's watch on the bridge: reads start requests (and find where a
/// body ends), the flush after a response's end completes it.
struct Http1Tap {
    /// With a body timeout: where the current request's body ends.
    watch: Option<Arc<Mutex<BodyWatch>>>,
}

impl<R: Runtime> Tap<R> for Http1Tap {
    fn read(&mut self, io: &ConnIo<R>, bytes: &[u8]) -> io::Result<()> {
        // Blank lines before a request line are not a request (hyper skips them).
        let first = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n'));
        let mut begun = None;
        if first.is_some() && track(&io.control) & (IN_REQUEST | HIJACKED) == 0 {
            let id = io.id;
            let started = io
                .driver
                .report(&io.control, ConnEvent::RequestStarted, |core, now| {
                    core.request_started(id, now)
                });
            match started {
                Ok(()) => set_track(&io.control, IN_REQUEST),
                // The drain closed this idle connection as the request
                // arrived: drop it unanswered (Go does the same).
                Err(_) => return Err(closed_by_server()),
            }
            begun = first;
        }
        if let Some(watch) = &self.watch
            && lock(watch).read(bytes, begun)
        {
            set_track(&io.control, BODY_DONE);
            let id = io.id;
            // An error: the core closed it meanwhile (the task sees it).
            let _ = io
                .driver
                .report(&io.control, ConnEvent::BodyComplete, |core, now| {
                    core.body_complete(id, now)
                });
        }
        Ok(())
    }

    fn flushed(&mut self, io: &ConnIo<R>) {
        let control = &io.control;
        let bits = track(control);
        if bits & RESP_END != 0 && bits & HIJACKED == 0 {
            let id = io.id;
            if bits & UPGRADING != 0 {
                set_track(control, HIJACKED);
                let _ = io.driver.input(|core, now| core.hijack(id, now));
            } else {
                clear_track(
                    control,
                    IN_REQUEST | IN_SERVICE | RESP_END | KEPT_ALIVE | BODY_DONE,
                );
                // An error means the core closed it already (a deadline).
                // (A lent connection is one kept alive while serving, where
                // the two inputs are the same.)
                let _ = io
                    .driver
                    .report(control, ConnEvent::ResponseDone, |core, now| {
                        if bits & KEPT_ALIVE != 0 {
                            core.response_done_kept_alive(id, now)
                        } else {
                            core.response_done(id, now)
                        }
                    });
            }
        }
    }
}

// ----- the service ---------------------------------------------------------

struct TrackedService<H> {
    handler: Arc<H>,
    driver: Arc<Driver>,
    control: Arc<Control>,
    id: ConnId,
    watch: Option<Arc<Mutex<BodyWatch>>>,
}

impl<H: Handler> Service<Request<Incoming>> for TrackedService<H> {
    type Response = Response<TrackedBody<H::Body>>;
    type Error = BoxError;
    type Future = TrackedResponse<H::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let id = self.id;
        // A pipelined request whose head was already buffered has not been
        // reported started yet: both events go in one input.
        let started = track(&self.control) & IN_REQUEST != 0;
        // Without a body, or with all of it read already, the whole request
        // is in: one report for both.
        let length = req.body().size_hint().exact();
        let bodiless = req.body().is_end_stream()
            || (started && self.watch.as_deref().is_some_and(|w| lock(w).head(length)));
        let driver = &self.driver;
        let control = &self.control;
        let reported = (|| {
            if !started {
                driver.report(control, ConnEvent::RequestStarted, |core, now| {
                    core.request_started(id, now)
                })?;
            }
            if bodiless {
                driver.report(control, ConnEvent::BodyComplete, |core, now| {
                    core.body_complete(id, now)
                })
            } else {
                driver.report(control, ConnEvent::HeadersComplete, |core, now| {
                    core.headers_complete(id, now)
                })
            }
        })();
        let handler = if reported.is_ok() {
            set_track(&self.control, IN_REQUEST | IN_SERVICE);
            if bodiless {
                set_track(&self.control, BODY_DONE);
            }
            let notice = Notice {
                control: self.control.clone(),
            };
            if req
                .extensions()
                .get::<hyper::upgrade::OnUpgrade>()
                .is_some()
            {
                req.extensions_mut().insert(UpgradeCtx {
                    id,
                    notice: notice.clone(),
                });
            }
            // Fired already if the drain began before this request did: the
            // core told the connection as the request started, before now.
            req.extensions_mut().insert(notice);
            Some(self.handler.call(req))
        } else {
            // The core closed it meanwhile (e.g. the header timeout, or a
            // drain that found it idle): no handler runs.
            None
        };
        TrackedResponse {
            handler,
            driver: self.driver.clone(),
            control: self.control.clone(),
            watch: self.watch.clone(),
            id,
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future: the handler's, then the response's tracking —
    /// a named type rather than a boxed `async` block (no allocation per
    /// request).
    pub(crate) struct TrackedResponse<F> {
        // `None`: the core closed the connection before the handler ran.
        #[pin]
        handler: Option<F>,
        driver: Arc<Driver>,
        control: Arc<Control>,
        watch: Option<Arc<Mutex<BodyWatch>>>,
        id: ConnId,
    }
}

impl<F, B, E> Future for TrackedResponse<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<TrackedBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(handler) = this.handler.as_pin_mut() else {
            return Poll::Ready(Err(closed_by_server().into()));
        };
        let mut response = ready!(handler.poll(cx)).map_err(Into::into)?;
        let (driver, control, id) = (this.driver, this.control, *this.id);
        if let Some(watch) = this
            .watch
            .take()
            .filter(|_| track(control) & BODY_DONE == 0)
        {
            // Not seen to end (a chunked body, a pipelined request, or
            // one the handler did not read to the end): the handler is
            // done with it, and the body timeout ends before the
            // response (which may take long) is written. An error: the
            // core closed it meanwhile; the connection's task sees it.
            lock(&watch).body_end = None;
            set_track(control, BODY_DONE);
            let _ = driver.report(control, ConnEvent::BodyComplete, |core, now| {
                core.body_complete(id, now)
            });
        }
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            set_track(control, UPGRADING);
        } else if !driver.keeps_alive(control) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        } else {
            set_track(control, KEPT_ALIVE);
        }
        Poll::Ready(Ok(response.map(|body| TrackedBody {
            inner: body,
            end: EndGuard {
                control: control.clone(),
                marked: std::cell::Cell::new(false),
            },
        })))
    }
}

// ----- the response body -----------------------------------------------------

pin_project_lite::pin_project! {
    /// A response body that tells the connection when it has ended: built
    /// by lameduck around the handler's body, seen only by hyper.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        end: EndGuard,
    }
}

/// Marks the response's end once: when the body says so, or when hyper drops
/// it (a `HEAD` response, an aborted one).
struct EndGuard {
    control: Arc<Control>,
    marked: std::cell::Cell<bool>,
}

impl EndGuard {
    fn mark(&self) {
        if !self.marked.replace(true) {
            set_track(&self.control, RESP_END);
        }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.mark();
    }
}

impl<B: fmt::Debug> fmt::Debug for TrackedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.end.mark();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.end.mark();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::BodyWatch;

    #[test]
    fn a_content_length_body_ends_where_its_bytes_do() {
        let mut w = BodyWatch::default();
        // Blank lines, then a head split across reads, ending in a bare LF.
        assert!(!w.read(b"\r\nPOST / HTTP/1.1\r\nhost: t\r", Some(2)));
        assert!(!w.read(b"\ncontent-length: 5\n\nab", None));
        assert!(!w.head(Some(5)), "two of five body bytes are in");
        assert!(!w.read(b"cd", None));
        assert!(w.read(b"eGET", None), "the last byte, and more after it");
        // A body read with its head is in at once.
        let mut w = BodyWatch::default();
        assert!(!w.read(b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\nhi", Some(0)));
        assert!(w.head(Some(2)));
        // Unknown length: left to the response.
        let mut w = BodyWatch::default();
        assert!(!w.read(b"POST / HTTP/1.1\r\n\r\n5\r\nhello", Some(0)));
        assert!(!w.head(None));
        assert!(!w.read(b"\r\n0\r\n\r\n", None));
    }
}
