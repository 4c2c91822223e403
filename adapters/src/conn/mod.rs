//! An accepted connection's socket, tied to the driver: when it is dropped
//! the core hears `closed`, and the socket is closed the right way.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use lameduck_core::ConnId;

use crate::control::{ABORT, CLOSE_COUNTED, Control};
use crate::driver::Driver;
use crate::runtime::Runtime;

mod gentle_close;
mod notice;
#[cfg(feature = "tls")]
mod tls;

pub(crate) use gentle_close::{ClosingSocket, GENTLE_CLOSE_WAIT, GentleClose, GentleCloses};
pub use notice::Notice;
#[cfg(feature = "tls")]
pub(crate) use tls::handshake;

/// An accepted socket: TCP or Unix, or a stream accepted elsewhere and
/// handed in ([`Handle::serve_io`](crate::Handle::serve_io)).
pub(crate) enum Socket<R: Runtime> {
    Tcp(R::TcpStream),
    Unix(R::UnixStream),
    /// Only ever used through `&mut` (`Mutex::get_mut`, never locked): the
    /// mutex makes the connection `Sync` without asking it of the stream.
    Io(Mutex<Box<dyn AnyIo>>),
}

/// A stream handed in by the application.
pub(crate) trait AnyIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AnyIo for S {}

/// The handed-in stream, pinned for a call (it is `Unpin`).
fn handed_in(io: &mut Mutex<Box<dyn AnyIo>>) -> Pin<&mut dyn AnyIo> {
    Pin::new(&mut **io.get_mut().unwrap_or_else(PoisonError::into_inner))
}

impl<R: Runtime> Socket<R> {
    /// Sends our end of stream (FIN), keeping the read half open.
    async fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => R::tcp_shutdown_write(s),
            Socket::Unix(s) => R::unix_shutdown_write(s),
            // `futures-io`'s close is the write half's shutdown.
            Socket::Io(s) => handed_in(s).close().await,
        }
    }
}

impl<R: Runtime> AsyncRead for Socket<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Io(s) => handed_in(s).poll_read(cx, buf),
        }
    }
}

impl<R: Runtime> AsyncWrite for Socket<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Io(s) => handed_in(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Io(s) => handed_in(s).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Io(s) => handed_in(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_close(cx),
            Socket::Unix(s) => Pin::new(s).poll_close(cx),
            Socket::Io(s) => handed_in(s).poll_close(cx),
        }
    }
}

/// A connection's socket and its link to the driver. Dropping it reports
/// `closed` to the core and closes the socket: at once after a forced close
/// or the peer's end of stream, otherwise gently (see [`GENTLE_CLOSE_WAIT`]).
pub(crate) struct ConnIo<R: Runtime> {
    socket: Option<Socket<R>>,
    pub(crate) driver: Arc<Driver>,
    /// Where a gentle close goes: to the worker, which runs it on the
    /// runtime. (Not the worker itself: the runtime handle may be bound to
    /// its thread, while hyper asks a connection to be `Send`.)
    closing: async_channel::Sender<ClosingSocket<R>>,
    pub(crate) id: ConnId,
    pub(crate) control: Arc<Control>,
    read_eof: bool,
    /// The core was told a write is blocked, and not yet that one got through.
    write_blocked: bool,
    /// Bytes a gentle close writes before its FIN: a TLS connection's
    /// `close_notify` (and whatever TLS records were still unsent).
    farewell: Vec<u8>,
    /// Bytes read ahead (to tell HTTP/2 from HTTP/1.1) and put back: the
    /// next reads return them first.
    unread: Unread,
}

/// Up to [`Unread::CAP`] bytes put back into a connection's input.
#[derive(Debug, Default)]
struct Unread {
    buf: [u8; Unread::CAP],
    at: u8,
    end: u8,
}

impl Unread {
    /// As long as the HTTP/2 connection preface.
    const CAP: usize = 24;

    /// Copies what is left into `out`; how many bytes.
    fn take(&mut self, out: &mut [u8]) -> usize {
        let left = &self.buf[usize::from(self.at)..usize::from(self.end)];
        let n = left.len().min(out.len());
        out[..n].copy_from_slice(&left[..n]);
        // n <= CAP, which fits in a u8.
        self.at += n as u8;
        n
    }
}

impl<R: Runtime> ConnIo<R> {
    /// `socket`, the core's connection `id`, tied to `driver`; its gentle
    /// close goes to `closing`.
    pub(crate) fn new(
        driver: Arc<Driver>,
        closing: async_channel::Sender<ClosingSocket<R>>,
        id: ConnId,
        control: Arc<Control>,
        socket: Socket<R>,
    ) -> Self {
        ConnIo {
            socket: Some(socket),
            driver,
            closing,
            id,
            control,
            read_eof: false,
            write_blocked: false,
            farewell: Vec::new(),
            unread: Unread::default(),
        }
    }

    /// Puts `bytes` (at most 24, nothing else pending) back: the next
    /// reads return them before reading the socket again.
    pub(crate) fn unread(&mut self, bytes: &[u8]) {
        debug_assert!(self.unread.at == self.unread.end && bytes.len() <= Unread::CAP);
        let n = bytes.len().min(Unread::CAP);
        self.unread.buf[..n].copy_from_slice(&bytes[..n]);
        self.unread.at = 0;
        // n <= CAP, which fits in a u8.
        self.unread.end = n as u8;
    }

    /// Whether the connection came in on a TCP listener.
    #[cfg(feature = "tls")]
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self.socket, Some(Socket::Tcp(_)))
    }

    /// `bytes` go out first when the connection closes gently, before the
    /// FIN (a TLS `close_notify`); a forced close drops them.
    #[cfg(feature = "tls")]
    pub(crate) fn set_farewell(&mut self, bytes: Vec<u8>) {
        self.farewell = bytes;
    }

    fn socket(&mut self) -> io::Result<&mut Socket<R>> {
        self.socket
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection closed"))
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.unread.at < self.unread.end && !buf.is_empty() {
            return Poll::Ready(Ok(self.unread.take(buf)));
        }
        let n = std::task::ready!(Pin::new(self.socket()?).poll_read(cx, buf))?;
        if n == 0 && !buf.is_empty() {
            self.read_eof = true;
        }
        Poll::Ready(Ok(n))
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(self.socket()?).poll_write(cx, buf);
        self.track_write(&polled, |n| *n > 0);
        polled
    }

    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(self.socket()?).poll_write_vectored(cx, bufs);
        self.track_write(&polled, |n| *n > 0);
        polled
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(self.socket()?).poll_flush(cx);
        self.track_write(&polled, |()| true);
        polled
    }

    /// Tells the core the edges of a write stall (`Config::write_timeout`):
    /// the first write that finds the socket full (`Pending`), and the next
    /// that gets bytes through. Writes in between, and every write while
    /// the socket has room, cost a branch and no driver call.
    fn track_write<T>(&mut self, polled: &Poll<io::Result<T>>, progress: impl FnOnce(&T) -> bool) {
        if !self.driver.report.writes {
            return;
        }
        let blocked = match polled {
            Poll::Pending => true,
            Poll::Ready(Ok(done)) if progress(done) => false,
            // An error ends the connection; a zero-length write says nothing.
            Poll::Ready(_) => return,
        };
        if blocked == self.write_blocked {
            return;
        }
        self.write_blocked = blocked;
        let id = self.id;
        // An error means the core closed the connection meanwhile; its
        // task hears of it through the control.
        let _ = self.driver.input(|core, now| {
            if blocked {
                core.write_blocked(id, now)
            } else {
                core.write_unblocked(id, now)
            }
        });
    }

    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.socket()?).poll_close(cx)
    }
}

/// The connection's socket as `futures-io`, for the layers above it (TLS,
/// hyper's bridge).
impl<R: Runtime> AsyncRead for ConnIo<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        ConnIo::poll_read(self.get_mut(), cx, buf)
    }
}

impl<R: Runtime> AsyncWrite for ConnIo<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ConnIo::poll_write(self.get_mut(), cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ConnIo::poll_write_vectored(self.get_mut(), cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ConnIo::poll_flush(self.get_mut(), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ConnIo::poll_close(self.get_mut(), cx)
    }
}

impl<R: Runtime> Drop for ConnIo<R> {
    fn drop(&mut self) {
        let socket = self.socket.take();
        let closes = &self.driver.gentle_closes;
        // After the peer's end of stream a gentle close has nothing to wait
        // for, unless there are bytes to say first (the peer may still read).
        let gentle = |cmd: u8| {
            socket.is_some() && (!self.read_eof || !self.farewell.is_empty()) && cmd & ABORT == 0
        };
        // Counted before the core hears `closed`: a drain that completes in
        // that call already sees this close in progress.
        let ours = if gentle(self.control.cmd()) {
            closes.begin()
        } else {
            None
        };
        self.driver.conn_closed(self.id);
        // Settled now: the driver no longer knows this connection. If the
        // core closed it, the driver counted its gentle close in too.
        let cmd = self.control.cmd();
        let drivers = (cmd & CLOSE_COUNTED != 0).then(|| GentleClose(closes.clone()));
        // One count stays with a gentle close; dropping the others ends them.
        let closing = if gentle(cmd) { ours.or(drivers) } else { None };
        if let (Some(socket), Some(closing)) = (socket, closing) {
            let farewell = std::mem::take(&mut self.farewell);
            // Refused once the worker stopped taking them (the server is
            // finished): the socket then closes now, with the count.
            let _ = self.closing.try_send(ClosingSocket {
                socket,
                closing,
                farewell,
            });
        }
        // Otherwise dropping `socket` closes it now.
    }
}

/// A connection's bytes as its protocol sees them: the socket itself, or
/// TLS over it ([`crate::tls`]). Either way the [`ConnIo`] underneath
/// links it to the driver and closes it the right way.
pub(crate) enum Transport<R: Runtime> {
    Plain(ConnIo<R>),
    /// Boxed: a TLS session is large, a plain connection small.
    #[cfg(feature = "tls")]
    Tls(Box<tls::TlsIo<R>>),
}

impl<R: Runtime> Transport<R> {
    /// The connection underneath (its id, control and driver).
    pub(crate) fn conn(&self) -> &ConnIo<R> {
        match self {
            Transport::Plain(io) => io,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.conn(),
        }
    }

    /// Whether TLS negotiated HTTP/2 (ALPN `h2`).
    #[cfg(feature = "tls")]
    pub(crate) fn alpn_h2(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls) => tls.alpn_h2(),
        }
    }

    fn pinned(&mut self) -> Pin<&mut dyn AnyTransport> {
        match self {
            Transport::Plain(io) => Pin::new(io),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => Pin::new(&mut **tls),
        }
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.pinned().poll_read(cx, buf)
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pinned().poll_write(cx, buf)
    }

    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.pinned().poll_write_vectored(cx, bufs)
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pinned().poll_flush(cx)
    }

    /// Ends the write half: a TLS `close_notify`, then FIN.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pinned().poll_close(cx)
    }
}

/// What [`Transport`]'s variants have in common.
trait AnyTransport: AsyncRead + AsyncWrite + Unpin {}

impl<S: AsyncRead + AsyncWrite + Unpin> AnyTransport for S {}
