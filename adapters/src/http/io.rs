//! What HTTP/1.1 and HTTP/2 share: the handler, the bridge from a
//! connection's `futures-io` socket to hyper's IO traits, and the look at
//! a connection's first bytes that tells the two apart.

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::body::{Body, Incoming};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::{Request, Response};

use crate::conn::{ConnIo, Transport};
use crate::control::CLOSE;
use crate::runtime::Runtime;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// An HTTP handler, as [`Server::serve_http`](crate::Server::serve_http)
/// takes it: an async function from a request to a response. (Named once
/// here so that each protocol does not spell out the bounds again.)
pub(crate) trait Handler: 'static {
    type Body: Body<Error: Into<BoxError>> + 'static;
    type Error: Into<BoxError> + 'static;
    type Future: Future<Output = Result<Response<Self::Body>, Self::Error>> + 'static;
    fn call(&self, req: Request<Incoming>) -> Self::Future;
}

impl<F, Fut, B, E> Handler for F
where
    F: Fn(Request<Incoming>) -> Fut + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + 'static,
{
    type Body = B;
    type Error = E;
    type Future = Fut;

    fn call(&self, req: Request<Incoming>) -> Fut {
        self(req)
    }
}

/// The error a connection's IO gives hyper once the core closed it.
pub(crate) fn closed_by_server() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by the server (shutdown)",
    )
}

// ----- the bridge ------------------------------------------------------------

/// What a protocol watches in the bytes crossing the bridge.
pub(crate) trait Tap<R: Runtime> {
    /// `bytes` were just read, before hyper sees them; an error fails the
    /// read.
    fn read(&mut self, io: &ConnIo<R>, bytes: &[u8]) -> io::Result<()>;
    /// A flush succeeded.
    fn flushed(&mut self, io: &ConnIo<R>);
}

/// Watches nothing.
impl<R: Runtime> Tap<R> for () {
    fn read(&mut self, _: &ConnIo<R>, _: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn flushed(&mut self, _: &ConnIo<R>) {}
}

/// A connection's socket as hyper sees it (`hyper::rt::Read` + `Write`),
/// with the protocol's [`Tap`] on it.
pub(crate) struct HyperIo<R: Runtime, T> {
    pub(crate) io: Transport<R>,
    pub(crate) tap: T,
}

/// Bytes read per call. hyper asks for more when its buffer grows; reading
/// into this (initialized) scratch and copying keeps the bridge free of
/// `unsafe` for the price of a short copy.
const READ_CHUNK: usize = 8 * 1024;

impl<R: Runtime, T: Tap<R> + Unpin> Read for HyperIo<R, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut scratch = [0u8; READ_CHUNK];
        let want = buf.remaining().min(READ_CHUNK);
        let n = ready!(this.io.poll_read(cx, &mut scratch[..want]))?;
        this.tap.read(this.io.conn(), &scratch[..n])?;
        buf.put_slice(&scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

impl<R: Runtime, T: Tap<R> + Unpin> Write for HyperIo<R, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.io.poll_flush(cx))?;
        this.tap.flushed(this.io.conn());
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.poll_close(cx)
    }
}

// ----- which protocol ----------------------------------------------------------

/// The HTTP/2 connection preface (RFC 9113 §3.4): a client speaking HTTP/2
/// with prior knowledge starts with it.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// Which protocol the input on `bytes` so far is: `None` while it could
/// still be the HTTP/2 preface (a proper prefix of it).
pub(crate) fn protocol_of(bytes: &[u8]) -> Option<Protocol> {
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        Some(Protocol::Http1)
    } else if n == PREFACE.len() {
        Some(Protocol::Http2)
    } else {
        None
    }
}

/// Reads a new connection's first bytes until they show which protocol it
/// speaks, however the preface is split across reads, and puts them back
/// for the protocol to read. At most 24 bytes are read: an HTTP/1.1
/// request is told apart at its first byte unlike the preface's. The end
/// of input before that says HTTP/1.1 (which then sees it). `None` when the
/// core closes the connection meanwhile (the new-connection grace, a
/// drain): drop it.
pub(crate) async fn sniff<R: Runtime>(io: &mut ConnIo<R>) -> Option<io::Result<Protocol>> {
    let mut first = [0u8; PREFACE.len()];
    let mut n = 0;
    // Each pass reads at least one byte of the 24, or ends.
    loop {
        let read = poll_fn(|cx| {
            io.control.reader.register(cx.waker());
            if io.control.cmd() & CLOSE != 0 {
                return Poll::Ready(None);
            }
            io.poll_read(cx, &mut first[n..]).map(Some)
        })
        .await?;
        let read = match read {
            Ok(read) => read,
            Err(e) => return Some(Err(e)),
        };
        n += read;
        let protocol = match protocol_of(&first[..n]) {
            Some(protocol) => protocol,
            None if read == 0 => Protocol::Http1,
            None => continue,
        };
        io.unread(&first[..n]);
        return Some(Ok(protocol));
    }
}

#[cfg(test)]
mod tests {
    use super::{PREFACE, Protocol, protocol_of};

    #[test]
    fn the_preface_is_told_apart_at_the_first_byte_that_differs() {
        assert_eq!(protocol_of(b""), None);
        assert_eq!(protocol_of(b"P"), None);
        assert_eq!(protocol_of(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(protocol_of(PREFACE), Some(Protocol::Http2));
        assert_eq!(protocol_of(b"POST / HTTP/1.1"), Some(Protocol::Http1));
        assert_eq!(protocol_of(b"\r\n"), Some(Protocol::Http1));
        assert_eq!(protocol_of(b"PRI * HTTP/1.1\r\n"), Some(Protocol::Http1));
    }
}
