//! Ending a long-lived response body when the drain begins.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};

use crate::conn::Notice;

pin_project_lite::pin_project! {
    /// A response body that ends cleanly when the drain reaches its
    /// connection: it passes the inner body's frames through until the
    /// [`Notice`] fires, then sends one final chunk of your choosing (if
    /// any) and ends — over HTTP/1.1 with the terminating chunk, over
    /// HTTP/2 with `END_STREAM`. The connection then closes the usual
    /// gentle way, and the drain completes without waiting for its
    /// deadline. If the inner body ends first, so does this one (without
    /// the final chunk).
    ///
    /// For server-sent events, long polls, progress streams: anything
    /// that would otherwise hold the drain until the deadline cuts it
    /// mid-stream. The notice comes from the request's extensions (see
    /// [the module docs](crate::http#long-lived-responses-the-drain-notice)).
    /// The frames the inner body has not produced yet when the notice
    /// fires are never asked for, and the inner body is dropped with the
    /// response. Its length is never announced (no `Content-Length`):
    /// it may end early.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
    /// use hyper::{Request, Response, body::{Frame, Incoming}};
    /// use lameduck::{Notice, http::EndAtDrain};
    ///
    /// // Server-sent events until the drain, then a goodbye event.
    /// async fn events(
    ///     req: Request<Incoming>,
    /// ) -> Result<Response<UnsyncBoxBody<Bytes, Infallible>>, Infallible> {
    ///     let ticks = futures_lite::stream::unfold(0u64, |n| async move {
    ///         async_io::Timer::after(std::time::Duration::from_millis(100)).await;
    ///         let frame = Frame::data(Bytes::from(format!("data: {n}\n\n")));
    ///         Some((Ok::<_, Infallible>(frame), n + 1))
    ///     });
    ///     let body = StreamBody::new(ticks);
    ///     let notice = req.extensions().get::<Notice>().cloned();
    ///     let body = match notice {
    ///         Some(notice) => EndAtDrain::new(body, notice)
    ///             .with_final_chunk(Bytes::from("event: drain\ndata: bye\n\n"))
    ///             .boxed_unsync(),
    ///         None => body.boxed_unsync(), // not served by lameduck
    ///     };
    ///     Ok(Response::builder()
    ///         .header("content-type", "text/event-stream")
    ///         .body(body)
    ///         .unwrap())
    /// }
    /// ```
    pub struct EndAtDrain<B: Body> {
        #[pin]
        inner: B,
        notice: Notice,
        wait: Option<event_listener::EventListener>,
        final_chunk: Option<B::Data>,
        state: State,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Passing the inner body's frames through.
    Streaming,
    /// The notice fired: the final chunk, if any, goes next.
    Ending,
    /// Nothing more: the body has ended.
    Ended,
}

impl<B: Body> EndAtDrain<B> {
    /// Wraps `inner`, to end when `notice` fires (at once, without polling
    /// `inner`, if it has fired already).
    pub fn new(inner: B, notice: Notice) -> Self {
        EndAtDrain {
            inner,
            notice,
            wait: None,
            final_chunk: None,
            state: State::Streaming,
        }
    }

    /// The last chunk sent when the notice ends the body (e.g. an
    /// `event: drain` for server-sent events). None by default.
    #[must_use]
    pub fn with_final_chunk(mut self, chunk: B::Data) -> Self {
        self.final_chunk = Some(chunk);
        self
    }
}

impl<B: Body> Body for EndAtDrain<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        // The notice is looked at before the inner body each time: once it
        // has fired, nothing more of the inner body goes out.
        if *this.state == State::Streaming && this.notice.poll_notified(this.wait, cx).is_ready() {
            *this.state = State::Ending;
        }
        match *this.state {
            State::Streaming => {
                let frame = std::task::ready!(this.inner.poll_frame(cx));
                if frame.is_none() {
                    *this.state = State::Ended;
                    *this.wait = None;
                }
                // `Pending` from the inner body leaves the notice's
                // listener registered: either wakes this body.
                Poll::Ready(frame)
            }
            State::Ending => {
                *this.state = State::Ended;
                Poll::Ready(this.final_chunk.take().map(|chunk| Ok(Frame::data(chunk))))
            }
            State::Ended => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.state {
            State::Streaming => self.inner.is_end_stream(),
            State::Ending => self.final_chunk.is_none(),
            State::Ended => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        // It may end early, or send one more chunk: no exact length.
        match self.state {
            State::Ended => SizeHint::with_exact(0),
            State::Streaming | State::Ending => SizeHint::default(),
        }
    }
}

impl<B: Body + fmt::Debug> fmt::Debug for EndAtDrain<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndAtDrain")
            .field("inner", &self.inner)
            .field("notice", &self.notice)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
