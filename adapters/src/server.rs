//! Building a server: listeners, configuration, hooks; then serving HTTP/1.1
//! or raw streams.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::ToSocketAddrs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use lameduck_core::{Config, ListenerId};

use crate::driver::{Driver, ListenerEntry, Stop};
use crate::event::{Event, Observer};
use crate::handle::Handle;
use crate::hooks::{Hooks, hook};
use crate::http1::Http1;
use crate::listener::{ListenAddr, ListenSocket, ServeConn, accept_loop};
use crate::runtime::Runtime;
use crate::stream::{RawConn, Streams};
use crate::worker::Worker;

#[cfg(feature = "smol")]
use crate::runtime::Smol;

/// A listener not yet registered with the runtime, with its name for a
/// hand-off (`LISTEN_FDNAMES`).
pub(crate) enum Pending {
    /// `true`: this process bound it (see `ListenSocket::stop_accepting`).
    Tcp(std::net::TcpListener, Arc<str>, bool),
    /// With the path to remove at the end, if this process bound it.
    Unix(UnixListener, Option<PathBuf>, Arc<str>),
}

/// The name of a TCP listener that was given none.
pub(crate) const DEFAULT_TCP_NAME: &str = "tcp";
/// The name of a Unix listener that was given none.
pub(crate) const DEFAULT_UNIX_NAME: &str = "unix";

/// Configures a server: its listeners, its lifecycle [`Config`], its
/// shutdown hooks and an event observer. [`build`](Builder::build) (or one
/// of the `serve_*` shortcuts) starts it.
///
/// ```
/// use lameduck::{Builder, core::Config};
/// use std::time::Duration;
///
/// # fn main() -> std::io::Result<()> {
/// let server = Builder::new()
///     .config(Config { new_conn_grace: Duration::from_secs(2), ..Config::default() })
///     .bind("127.0.0.1:0")?
///     .build()?;
/// assert_eq!(server.handle().local_addrs().len(), 1);
/// # Ok(()) }
/// ```
pub struct Builder<R: Runtime> {
    rt: R,
    config: Config,
    pending: Vec<Pending>,
    hooks: Hooks,
    observer: Option<Observer>,
}

#[cfg(feature = "smol")]
impl Builder<Smol> {
    /// A builder for smol's global executor.
    ///
    /// ```
    /// let builder = lameduck::Builder::new();
    /// # let _ = builder;
    /// ```
    #[must_use]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Builder<Smol> {
        Builder::with_runtime(Smol::global())
    }
}

impl<R: Runtime> Builder<R> {
    /// A builder for the given runtime (e.g. `Smol::with_executor(..)`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use lameduck::{Builder, runtime::Smol};
    ///
    /// let executor = Arc::new(smol::Executor::new());
    /// let builder = Builder::with_runtime(Smol::with_executor(executor));
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn with_runtime(rt: R) -> Builder<R> {
        Builder {
            rt,
            config: Config::default(),
            pending: Vec::new(),
            hooks: Hooks::default(),
            observer: None,
        }
    }

    /// The lifecycle configuration (grace, timeouts, lame duck, ...).
    /// `shutdown_hooks` is set for you when hooks are registered.
    ///
    /// ```
    /// use lameduck::{Builder, core::Config};
    /// let builder = Builder::new().config(Config { keep_alives: false, ..Config::default() });
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Binds a TCP listener (port 0 picks a free port; see
    /// [`Handle::local_addrs`]).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let builder = lameduck::Builder::new().bind("127.0.0.1:0")?.bind("127.0.0.1:0")?;
    /// # let _ = builder; Ok(()) }
    /// ```
    pub fn bind(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        self.pending
            .push(Pending::Tcp(listener, DEFAULT_TCP_NAME.into(), true));
        Ok(self)
    }

    /// Binds a Unix stream listener at `path` (which must not exist); the
    /// file is removed when the listener closes.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let path = std::env::temp_dir().join(format!("lameduck-doc-{}.sock", std::process::id()));
    /// let server = lameduck::Builder::new().bind_unix(&path)?.build()?;
    /// assert_eq!(server.handle().local_addrs()[0].to_string(), format!("unix:{}", path.display()));
    /// # drop(server); Ok(()) }
    /// ```
    pub fn bind_unix(mut self, path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let listener = UnixListener::bind(path)?;
        self.pending.push(Pending::Unix(
            listener,
            Some(path.to_path_buf()),
            DEFAULT_UNIX_NAME.into(),
        ));
        Ok(self)
    }

    /// Serves on a TCP listener bound elsewhere (e.g. inherited). Its
    /// socket is never shut down: at the drain this process only closes
    /// its descriptor (others may hold the socket).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let builder = lameduck::Builder::new().tcp_listener(listener);
    /// # let _ = builder; Ok(()) }
    /// ```
    #[must_use]
    pub fn tcp_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.pending
            .push(Pending::Tcp(listener, DEFAULT_TCP_NAME.into(), false));
        self
    }

    /// Serves on a Unix listener bound elsewhere (its file is left alone,
    /// and its socket is never shut down: at the drain this process only
    /// closes its descriptor).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let path = std::env::temp_dir().join(format!("lameduck-doc2-{}.sock", std::process::id()));
    /// let listener = std::os::unix::net::UnixListener::bind(&path)?;
    /// let builder = lameduck::Builder::new().unix_listener(listener);
    /// # let _ = builder; std::fs::remove_file(&path)?; Ok(()) }
    /// ```
    #[must_use]
    pub fn unix_listener(mut self, listener: UnixListener) -> Self {
        self.pending
            .push(Pending::Unix(listener, None, DEFAULT_UNIX_NAME.into()));
        self
    }

    /// Adds a shutdown hook, run when the drain begins (Go's
    /// `RegisterOnShutdown`, but awaited): hooks run in registration order,
    /// one after the other, and the drain completes only after the last one
    /// — or at the shutdown deadline, which cuts them off
    /// ([`Outcome::hooks_cut_off`](lameduck_core::Outcome::hooks_cut_off)).
    ///
    /// ```
    /// let builder = lameduck::Builder::new().on_shutdown(|| async {
    ///     // e.g. deregister from service discovery, flush a log
    /// });
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn on_shutdown<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.drain.push(hook(f));
        self
    }

    /// Adds a hook run when the lame-duck delay begins
    /// ([`Config::lame_duck`]); like [`on_shutdown`](Self::on_shutdown)
    /// otherwise.
    ///
    /// ```
    /// let builder = lameduck::Builder::new().on_lame_duck(|| async {});
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn on_lame_duck<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.lame_duck.push(hook(f));
        self
    }

    /// Adds a hook run at the shutdown deadline, as the remaining
    /// connections are forced closed (e.g. log what is being cut off). It has
    /// [`Config::forced_close_hook_timeout`] (default 1 s) before the server
    /// completes anyway.
    ///
    /// ```
    /// let builder = lameduck::Builder::new().on_forced_close(|| async {
    ///     eprintln!("deadline: forcing the remaining connections closed");
    /// });
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn on_forced_close<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.forced_close.push(hook(f));
        self
    }

    /// Observes lifecycle [`Event`]s (phases, closes, accept errors, done).
    /// Called outside the server's lock; keep it quick.
    ///
    /// ```
    /// let builder = lameduck::Builder::new().on_event(|event| eprintln!("{event}"));
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Adds a listener with its name (for [`crate::unix`]'s hand-off).
    #[cfg(unix)]
    pub(crate) fn push_listener(mut self, pending: Pending) -> Self {
        self.pending.push(pending);
        self
    }

    /// Registers the listeners and starts the driver. Nothing is accepted
    /// until [`Server::serve_http`] or [`Server::serve_stream`].
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let server = lameduck::Builder::new().bind("127.0.0.1:0")?.build()?;
    /// let handle = server.handle(); // usable by handlers before serving
    /// # let _ = handle; Ok(()) }
    /// ```
    pub fn build(self) -> io::Result<Server<R>> {
        let mut sockets = Vec::with_capacity(self.pending.len());
        let mut addrs = Vec::with_capacity(self.pending.len());
        for pending in self.pending {
            match pending {
                Pending::Tcp(listener, name, bound_here) => {
                    let socket = self.rt.tcp_listener(listener)?;
                    addrs.push(ListenAddr::Tcp(R::tcp_local_addr(&socket)?));
                    sockets.push((ListenSocket::tcp(socket, bound_here)?, name));
                }
                Pending::Unix(listener, unlink, name) => {
                    let path = listener
                        .local_addr()?
                        .as_pathname()
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    let socket = self.rt.unix_listener(listener)?;
                    addrs.push(ListenAddr::Unix(path));
                    sockets.push((ListenSocket::unix(socket, unlink)?, name));
                }
            }
        }
        let driver = Driver::new(self.config, self.hooks, self.observer);
        let worker = Worker::start(self.rt, driver.clone());
        let mut listeners = Vec::with_capacity(sockets.len());
        for (socket, name) in sockets {
            let socket = Arc::new(socket);
            let stop = Arc::new(Stop::default());
            let entry = ListenerEntry {
                socket: socket.fd.clone(),
                stop: stop.clone(),
                name,
            };
            // A fresh core is Serving: adding a listener cannot be refused.
            let id = driver
                .add_listener(entry)
                .map_err(|e| io::Error::other(format!("adding a listener: {e}")))?;
            listeners.push((id, socket, stop));
        }
        Ok(Server {
            handle: Handle::new(driver, addrs),
            worker,
            listeners,
            serving: false,
        })
    }

    /// [`build`](Self::build), then [`Server::serve_http`].
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper::{Request, Response, body::Incoming};
    ///
    /// async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    ///     Ok(Response::new(Full::new(Bytes::from("hello"))))
    /// }
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_http(hello)?;
    /// handle.close();
    /// # Ok(()) }
    /// ```
    pub fn serve_http<F, Fut, B, E>(self, handler: F) -> io::Result<Handle>
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        E: Into<Box<dyn StdError + Send + Sync>> + 'static,
    {
        Ok(self.build()?.serve_http(handler))
    }

    /// [`build`](Self::build), then [`Server::serve_stream`].
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new()
    ///     .bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// handle.close();
    /// # Ok(()) }
    /// ```
    pub fn serve_stream<F, Fut>(self, handler: F) -> io::Result<Handle>
    where
        F: Fn(RawConn<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Ok(self.build()?.serve_stream(handler))
    }
}

impl<R: Runtime> fmt::Debug for Builder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("rt", &self.rt)
            .field("config", &self.config)
            .field("listeners", &self.pending.len())
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

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
    worker: Arc<Worker<R>>,
    listeners: Vec<(ListenerId, Arc<ListenSocket<R>>, Arc<Stop>)>,
    serving: bool,
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

    /// Serves HTTP/1.1 on every listener with `handler` (see
    /// [`http1`](crate::http1) for what is tracked and how). Returns the
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
        Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        E: Into<Box<dyn StdError + Send + Sync>> + 'static,
    {
        self.serve(Arc::new(Http1 {
            handler: Arc::new(handler),
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
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.serve(Arc::new(Streams {
            handler: Arc::new(handler),
        }))
    }

    fn serve(mut self, serve: Arc<dyn ServeConn<R>>) -> Handle {
        self.serving = true;
        let worker = self.worker.clone();
        worker.set_serve(serve.clone());
        for (id, socket, stop) in self.listeners.drain(..) {
            worker
                .rt
                .spawn(accept_loop(worker.clone(), id, socket, stop, serve.clone()));
        }
        self.handle.clone()
    }
}

impl<R: Runtime> Drop for Server<R> {
    fn drop(&mut self) {
        if !self.serving {
            self.handle.close();
        }
        // Listeners never served have no accept loop to report its end.
        for (_, _, stop) in &self.listeners {
            stop.exited();
        }
    }
}

impl<R: Runtime> fmt::Debug for Server<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("handle", &self.handle)
            .field("serving", &self.serving)
            .finish_non_exhaustive()
    }
}
