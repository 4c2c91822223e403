//! HTTP/1.1 upgrades (`101 Switching Protocols`): a handler takes the
//! connection over ([`upgrade`]), and it stays tracked as Hijacked
//! ([`Hijacked`]) until it is dropped.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::Request;
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBuf, Write};
use lameduck_core::ConnId;

use crate::conn::Notice;

/// Put in the extensions of upgrade requests.
#[derive(Clone)]
pub(super) struct UpgradeCtx {
    pub(super) id: ConnId,
    pub(super) notice: Notice,
}

/// Takes over an HTTP upgrade request's connection: call it in the handler,
/// answer `101 Switching Protocols`, and await the returned future (in a task
/// of your own) for the [`Hijacked`] connection.
///
/// `None` when the request carries no upgrade or was not served by lameduck.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use hyper::{Request, Response, StatusCode, body::Incoming};
///
/// async fn handle(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, hyper::Error> {
///     let Some(upgrading) = lameduck::http::upgrade(&mut req) else {
///         return Ok(Response::builder().status(400).body(Empty::new()).unwrap());
///     };
///     smol::spawn(async move {
///         let Ok(conn) = upgrading.await else { return };
///         conn.notice().notified().await; // ... speak the new protocol meanwhile
///     })
///     .detach();
///     Ok(Response::builder()
///         .status(StatusCode::SWITCHING_PROTOCOLS)
///         .header("connection", "upgrade")
///         .header("upgrade", "echo")
///         .body(Empty::new())
///         .unwrap())
/// }
/// ```
pub fn upgrade(req: &mut Request<Incoming>) -> Option<Upgrading> {
    let ctx = req.extensions_mut().remove::<UpgradeCtx>()?;
    let on_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>()?;
    Some(Upgrading { on_upgrade, ctx })
}

/// Resolves to the [`Hijacked`] connection once the `101` response is out.
/// See [`upgrade`].
///
/// ```
/// fn is_future<F: std::future::Future>() {}
/// is_future::<lameduck::http::Upgrading>();
/// ```
pub struct Upgrading {
    on_upgrade: hyper::upgrade::OnUpgrade,
    ctx: UpgradeCtx,
}

impl fmt::Debug for Upgrading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrading")
            .field("conn", &self.ctx.id)
            .finish()
    }
}

impl Future for Upgrading {
    type Output = Result<Hijacked, hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let io = ready!(Pin::new(&mut this.on_upgrade).poll(cx))?;
        Poll::Ready(Ok(Hijacked {
            io,
            ctx: this.ctx.clone(),
        }))
    }
}

/// An upgraded (hijacked) HTTP connection: `futures-io` `AsyncRead` +
/// `AsyncWrite`. The server no longer tracks it for its drain (unless
/// `Config::wait_for_hijacked`), never closes it, and tells it when shutdown
/// begins through its [`notice`](Hijacked::notice). Dropping it closes the
/// connection and reports it closed.
///
/// ```
/// use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
///
/// async fn echo(mut conn: lameduck::http::Hijacked) -> std::io::Result<()> {
///     let notice = conn.notice();
///     let mut buf = [0u8; 1024];
///     loop {
///         let read = async { Some(conn.read(&mut buf).await) };
///         let shutdown = async { notice.notified().await; None };
///         match read.or(shutdown).await {
///             Some(Ok(0)) => return Ok(()),
///             Some(Ok(n)) => conn.write_all(&buf[..n]).await?,
///             Some(Err(e)) => return Err(e),
///             None => return conn.write_all(b"bye\n").await,
///         }
///     }
/// }
/// ```
pub struct Hijacked {
    io: hyper::upgrade::Upgraded,
    ctx: UpgradeCtx,
}

impl Hijacked {
    /// The shutdown notification for this connection.
    #[must_use]
    pub fn notice(&self) -> Notice {
        self.ctx.notice.clone()
    }

    /// The connection's id in the core.
    #[must_use]
    pub fn id(&self) -> ConnId {
        self.ctx.id
    }
}

impl fmt::Debug for Hijacked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hijacked")
            .field("conn", &self.ctx.id)
            .field("notice", &self.ctx.notice)
            .finish()
    }
}

impl futures_lite::io::AsyncRead for Hijacked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.get_mut().io).poll_read(cx, read.unfilled()))?;
        Poll::Ready(Ok(read.filled().len()))
    }
}

impl futures_lite::io::AsyncWrite for Hijacked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
