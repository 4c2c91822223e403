//! TLS over a connection's socket: the handshake, inside the connection's
//! tracking, and the session, whose `close_notify` goes out first at a
//! gentle close.

use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::rustls::ServerConfig;
use futures_rustls::server::TlsStream;

use super::ConnIo;
use crate::control::CLOSE;
use crate::runtime::Runtime;

/// Runs the TLS handshake on `conn`, in the connection's tracking: it ends
/// when the core closes the connection (the grace, the header timeout, a
/// forced close — dropping `conn` closes it gently or not, as the core
/// said). A failed handshake is logged (debug) and closes the connection.
pub(crate) async fn handshake<R: Runtime>(
    config: Arc<ServerConfig>,
    conn: ConnIo<R>,
) -> Option<TlsIo<R>> {
    let control = conn.control.clone();
    let id = conn.id;
    let mut accept = pin!(
        futures_rustls::TlsAcceptor::from(config)
            .accept(conn)
            .into_fallible()
    );
    let done = std::future::poll_fn(|cx| {
        control.reader.register(cx.waker());
        if control.cmd() & CLOSE != 0 {
            return Poll::Ready(None);
        }
        accept.as_mut().poll(cx).map(Some)
    })
    .await;
    match done {
        Some(Ok(stream)) => Some(TlsIo { stream }),
        Some(Err((error, _conn))) => {
            log::debug!("{id:?}: TLS handshake failed: {error}");
            None
        }
        None => None,
    }
}

/// A connection speaking TLS over its socket. Dropped, it hands its
/// `close_notify` to the socket's gentle close ([`ConnIo::set_farewell`]).
pub(crate) struct TlsIo<R: Runtime> {
    stream: TlsStream<ConnIo<R>>,
}

impl<R: Runtime> TlsIo<R> {
    pub(crate) fn conn(&self) -> &ConnIo<R> {
        self.stream.get_ref().0
    }

    pub(crate) fn alpn_h2(&self) -> bool {
        self.stream.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}

/// Most chunks of TLS records taken out of rustls at the close (one call
/// takes them all; the bound keeps the loop finite whatever happens).
const MAX_FAREWELL_WRITES: usize = 16;

impl<R: Runtime> Drop for TlsIo<R> {
    fn drop(&mut self) {
        let (conn, session) = self.stream.get_mut();
        // A no-op when already sent (the HTTP layer shut the stream down).
        session.send_close_notify();
        let mut bytes = Vec::new();
        for _ in 0..MAX_FAREWELL_WRITES {
            if !session.wants_write() || session.write_tls(&mut bytes).is_err() {
                break;
            }
        }
        // Written before the FIN by a gentle close; dropped by a forced one.
        conn.set_farewell(bytes);
    }
}

impl<R: Runtime> AsyncRead for TlsIo<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<R: Runtime> AsyncWrite for TlsIo<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}
