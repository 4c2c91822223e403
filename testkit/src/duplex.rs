//! An in-memory duplex byte stream (`futures-io`), for feeding a server
//! through [`Handle::serve_io`](lameduck::Handle::serve_io) without sockets:
//! the HTTP front end's fuzz target uses it.
//!
//! Each direction is an unbounded buffer: writes never wait. Closing an end
//! ([`AsyncWrite::poll_close`]) is a half-close: the peer reads what was
//! written, then end of stream. Dropping an end closes both of its halves:
//! the peer reads end of stream, and its writes fail with `BrokenPipe`.
//!
//! ```
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//!
//! let (mut a, mut b) = lameduck_testkit::duplex::duplex();
//! futures_lite::future::block_on(async {
//!     a.write_all(b"ping").await.unwrap();
//!     a.close().await.unwrap(); // half-close: b reads "ping", then the end
//!     let mut got = Vec::new();
//!     b.read_to_end(&mut got).await.unwrap();
//!     assert_eq!(got, b"ping");
//!     b.write_all(b"pong").await.unwrap(); // the other direction still works
//! });
//! ```

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// One direction's state.
#[derive(Debug, Default)]
struct Pipe {
    buf: VecDeque<u8>,
    /// The writer closed (or dropped) its end: reads end once `buf` is empty.
    write_closed: bool,
    /// The reader dropped its end: writes fail.
    read_closed: bool,
    /// The reader waiting for bytes or the end.
    reader: Option<Waker>,
}

type Shared = Arc<Mutex<Pipe>>;

fn lock(pipe: &Shared) -> std::sync::MutexGuard<'_, Pipe> {
    pipe.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One end of an in-memory duplex stream; see [`duplex`].
///
/// ```
/// let (a, b) = lameduck_testkit::duplex::duplex();
/// assert_eq!(a.unread_by_peer(), 0);
/// # drop(b);
/// ```
#[derive(Debug)]
pub struct Duplex {
    /// What the peer writes and we read.
    incoming: Shared,
    /// What we write and the peer reads.
    outgoing: Shared,
}

/// A connected pair of in-memory streams: what one writes, the other reads.
///
/// ```
/// let (client, server) = lameduck_testkit::duplex::duplex();
/// # drop((client, server));
/// ```
#[must_use]
pub fn duplex() -> (Duplex, Duplex) {
    let ab = Shared::default();
    let ba = Shared::default();
    (
        Duplex {
            incoming: ba.clone(),
            outgoing: ab.clone(),
        },
        Duplex {
            incoming: ab,
            outgoing: ba,
        },
    )
}

impl Duplex {
    /// Bytes written by this end that the peer has not read yet.
    ///
    /// ```
    /// use futures_lite::AsyncWriteExt;
    /// let (mut a, _b) = lameduck_testkit::duplex::duplex();
    /// futures_lite::future::block_on(a.write_all(b"abc")).unwrap();
    /// assert_eq!(a.unread_by_peer(), 3);
    /// ```
    #[must_use]
    pub fn unread_by_peer(&self) -> usize {
        lock(&self.outgoing).buf.len()
    }

    /// Whether the peer has dropped its end (it reads no more).
    ///
    /// ```
    /// let (a, b) = lameduck_testkit::duplex::duplex();
    /// assert!(!a.peer_gone());
    /// drop(b);
    /// assert!(a.peer_gone());
    /// ```
    #[must_use]
    pub fn peer_gone(&self) -> bool {
        lock(&self.outgoing).read_closed
    }

    fn close_write(&self) {
        let mut pipe = lock(&self.outgoing);
        pipe.write_closed = true;
        if let Some(waker) = pipe.reader.take() {
            waker.wake();
        }
    }
}

impl AsyncRead for Duplex {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = lock(&self.incoming);
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if pipe.buf.is_empty() {
            if pipe.write_closed {
                return Poll::Ready(Ok(0));
            }
            pipe.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(pipe.buf.len());
        for (dst, src) in buf.iter_mut().zip(pipe.buf.drain(..n)) {
            *dst = src;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = lock(&self.outgoing);
        if pipe.read_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if pipe.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after close",
            )));
        }
        pipe.buf.extend(buf);
        if let Some(waker) = pipe.reader.take() {
            waker.wake();
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_write();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Duplex {
    fn drop(&mut self) {
        self.close_write();
        let mut incoming = lock(&self.incoming);
        incoming.read_closed = true;
        incoming.buf.clear();
    }
}
