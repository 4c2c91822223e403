//! Building a server ([`Builder`]) and serving it ([`Server`]): HTTP (1.1
//! and 2) or raw streams; where its parts run is `threads`' job.

mod builder;
mod threads;

pub use builder::Builder;
pub(crate) use threads::PendingListener;
use threads::{ServeMaker, Unserved};

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};

use crate::handle::Handle;
use crate::http::Http;
use crate::runtime::Runtime;
use crate::stream::{RawConn, Streams};
use crate::worker::ServeConn;

/// A built server, listening but not yet accepting. Serve it with
/// [`serve_http`](Self::serve_http) or [`serve_stream`](Self::serve_stream);
/// dropping it unserved closes it.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let server = lameduck::Builder::new().bind("127.0.0.1:0")?.build()?;
/// let handle = server.handle();
/// drop(server);
/// assert!(handle.drained().is_done());
/// # Ok(()) }
/// ```
pub struct Server<R: Runtime> {
    handle: Handle,
    /// Until it serves.
    unserved: Option<Unserved<R>>,
    /// TLS on the TCP listeners ([`Builder::tls`]).
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsAcceptor>,
}

impl<R: Runtime> Server<R> {
    /// The server's handle (shutdown, close, done signal, counts).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let server = lameduck::Builder::new().bind("127.0.0.1:0")?.build()?;
    /// assert!(server.handle().phase().is_ready());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Serves HTTP/1.1 and HTTP/2 (h2c, with prior knowledge) on every
    /// listener with `handler` (see
    /// [`http`](crate::http) for what is tracked and how). Returns the
    /// handle; the server runs until it is shut down or closed.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper::{Request, Response, body::Incoming};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let server = lameduck::Builder::new().bind("127.0.0.1:0")?.build()?;
    /// let status = server.handle();
    /// let handle = server.serve_http(move |_: Request<Incoming>| {
    ///     let ready = status.phase().is_ready();
    ///     async move {
    ///         let body = if ready { "ok" } else { "draining" };
    ///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    ///     }
    /// });
    /// handle.close();
    /// # Ok(()) }
    /// ```
    pub fn serve_http<F, Fut, B, E>(self, handler: F) -> Handle
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, E>> + 'static,
        B: Body + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        E: Into<Box<dyn StdError + Send + Sync>> + 'static,
    {
        let handler = Arc::new(handler);
        self.serve_http_with(move |_: &R| {
            let handler = handler.clone();
            move |req| handler(req)
        })
    }

    /// Like [`serve_http`](Self::serve_http), with a handler made on the
    /// server's thread by `make`, from that thread's runtime: it may hold
    /// `!Send` state and spawn on the runtime (e.g. an upgraded
    /// connection's task). `make` is called on each of the server's threads.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::rc::Rc;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper::{Request, Response, body::Incoming};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let server = lameduck::Builder::new().bind("127.0.0.1:0")?.build()?;
    /// let handle = server.serve_http_with(|_rt| {
    ///     let greeting = Rc::new(String::from("hello")); // per thread, !Send
    ///     move |_: Request<Incoming>| {
    ///         let body = Bytes::from(greeting.to_string());
    ///         async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
    ///     }
    /// });
    /// handle.close();
    /// # Ok(()) }
    /// ```
    pub fn serve_http_with<M, F, Fut, B, E>(self, make: M) -> Handle
    where
        M: Fn(&R) -> F + Send + Sync + 'static,
        F: Fn(Request<Incoming>) -> Fut + 'static,
        Fut: Future<Output = Result<Response<B>, E>> + 'static,
        B: Body + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        E: Into<Box<dyn StdError + Send + Sync>> + 'static,
    {
        self.serve(Arc::new(move |rt: &R| {
            Arc::new(Http {
                handler: Arc::new(make(rt)),
            }) as Arc<dyn ServeConn<R>>
        }))
    }

    /// Serves raw streams on every listener with `handler`, one call per
    /// connection (see [`RawConn`]).
    ///
    /// ```
    /// use futures_lite::AsyncWriteExt;
    /// # fn main() -> std::io::Result<()> {
    /// let server = lameduck::Builder::new().bind("127.0.0.1:0")?.build()?;
    /// let handle = server.serve_stream(|mut conn| async move {
    ///     conn.begin();
    ///     let _ = conn.write_all(b"hello\n").await;
    ///     conn.end();
    /// });
    /// handle.close();
    /// # Ok(()) }
    /// ```
    pub fn serve_stream<F, Fut>(self, handler: F) -> Handle
    where
        F: Fn(RawConn<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let handler = Arc::new(handler);
        self.serve(Arc::new(move |_: &R| {
            Arc::new(Streams {
                handler: handler.clone(),
            }) as Arc<dyn ServeConn<R>>
        }))
    }

    fn serve(mut self, make: ServeMaker<R>) -> Handle {
        #[cfg(feature = "tls")]
        let make: ServeMaker<R> = match self.tls.clone() {
            Some(acceptor) => Arc::new(move |rt: &R| {
                Arc::new(crate::tls::Secured {
                    acceptor: acceptor.clone(),
                    inner: make(rt),
                }) as Arc<dyn ServeConn<R>>
            }),
            None => make,
        };
        if let Some(unserved) = self.unserved.take() {
            unserved.serve(make);
        }
        self.handle.clone()
    }
}

impl<R: Runtime> Drop for Server<R> {
    /// Dropped unserved: closed (its thread, if any, then ends).
    fn drop(&mut self) {
        if self.unserved.take().is_some() {
            self.handle.close();
        }
    }
}

impl<R: Runtime> fmt::Debug for Server<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("handle", &self.handle)
            .field("serving", &self.unserved.is_none())
            .finish_non_exhaustive()
    }
}
