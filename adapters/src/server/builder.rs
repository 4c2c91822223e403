//! [`Builder`]: a server's listeners, lifecycle configuration, hooks,
//! event observer and runtime, then `build` (or a `serve_*` shortcut).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::ToSocketAddrs;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use lameduck_core::Config;

use crate::event::{Event, Observer, Sink};
use crate::handle::Handle;
use crate::hooks::{Hooks, hook};
use crate::runtime::{Launch, Runtime};
use crate::stream::RawConn;

use super::Server;
use super::threads::{DEFAULT_TCP_NAME, DEFAULT_UNIX_NAME, PendingListener, Place, Spec};

#[cfg(feature = "smol")]
use crate::runtime::{Smol, SmolLocal};

/// Configures a server: its listeners, its lifecycle [`Config`], its
/// shutdown hooks and an event observer — and where its tasks run: on
/// runtime `R`, on the current thread ([`with_runtime`](Builder::with_runtime))
/// or on a thread a [`Launch`] starts ([`new`](Builder::new),
/// [`with_launcher`](Builder::with_launcher)). [`build`](Builder::build)
/// (or one of the `serve_*` shortcuts) starts it.
///
/// ```
/// use lameduck::{Builder, Config};
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
    place: Place<R>,
    threads: usize,
    config: Config,
    pending: Vec<PendingListener>,
    hooks: Hooks,
    observer: Option<Observer>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsAcceptor>,
}

#[cfg(feature = "smol")]
impl Builder<SmolLocal> {
    /// A builder for a server on a smol thread of its own
    /// ([`Builder::with_launcher`]`(`[`Smol`]`)`): nothing for the
    /// application to run.
    ///
    /// ```
    /// let builder = lameduck::Builder::new();
    /// # let _ = builder;
    /// ```
    #[must_use]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Builder<SmolLocal> {
        Builder::with_launcher(Smol)
    }
}

impl<R: Runtime> Builder<R> {
    /// A builder for a server on the current thread's runtime `rt`: build
    /// and serve it on that thread, which must run the runtime's executor
    /// for the server to make progress (e.g.
    /// [`SmolLocal`](crate::runtime::SmolLocal) on your `LocalExecutor`).
    ///
    /// ```
    /// # #[cfg(feature = "smol")] {
    /// use std::rc::Rc;
    /// use lameduck::{Builder, runtime::SmolLocal};
    ///
    /// let executor = Rc::new(smol::LocalExecutor::new());
    /// let builder = Builder::with_runtime(SmolLocal::new(executor));
    /// # let _ = builder;
    /// # }
    /// ```
    #[must_use]
    pub fn with_runtime(rt: R) -> Builder<R> {
        Builder::at(Place::Here(rt))
    }

    /// A builder for a server on a thread that `launcher` starts, running
    /// its runtime: the server's tasks run there, and the [`Handle`] works
    /// from any thread. The thread ends once the server is finished.
    ///
    /// ```
    /// # #[cfg(feature = "smol")] {
    /// use lameduck::{Builder, runtime::Smol};
    /// let builder = Builder::with_launcher(Smol);
    /// # let _ = builder;
    /// # }
    /// ```
    #[must_use]
    pub fn with_launcher(launcher: impl Launch<Runtime = R>) -> Builder<R> {
        Builder::at(Place::Launched(Box::new(launcher)))
    }

    fn at(place: Place<R>) -> Builder<R> {
        Builder {
            place,
            config: Config::default(),
            pending: Vec::new(),
            hooks: Hooks::default(),
            observer: None,
            threads: 1,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Speaks TLS on every TCP listener — bound, inherited or taken over
    /// from a restarting predecessor — before HTTP (or the raw stream
    /// protocol); Unix listeners stay cleartext. The [`tls`](crate::tls)
    /// module says how the lifecycle goes over TLS (the handshake is part
    /// of a New connection; gentle closes send `close_notify`).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let made = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    /// # let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    /// let acceptor = lameduck::tls::TlsAcceptor::from_pem(cert.as_bytes(), key.as_bytes())?;
    /// let builder = lameduck::Builder::new().bind("127.0.0.1:0")?.tls(acceptor);
    /// # let _ = builder; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, acceptor: crate::tls::TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Serves on `threads` executor threads (default 1) — thread-per-core:
    /// each its own executor and accept loop on the same listening sockets
    /// (the kernel spreads connections among them), drained as one server
    /// by one [`Handle`]: a shutdown, close or restart reaches every
    /// thread, the done signal completes when every thread is done, counts
    /// and snapshots are summed, and each connection keeps its exact
    /// deadlines. No lock is shared between threads on the per-request
    /// path. Hooks run once (on the first thread);
    /// [`Config::max_connections`] applies per thread. The event observer
    /// and the log see one server too: each phase once (when the last
    /// thread enters it) and one [`Event::Done`] with the threads'
    /// outcomes merged; other events come from the thread they happened
    /// on, and connection ids are per thread. Each listening socket is
    /// shut down when the last thread stops accepting on it. Only with a
    /// launcher ([`Builder::new`], [`Builder::with_launcher`]): on the
    /// current thread's runtime, [`build`](Self::build) refuses more than
    /// one.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new()
    ///     .threads(2)
    ///     .bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// handle.shutdown(None);
    /// assert!(smol::block_on(handle.finished()).unwrap().is_graceful());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The lifecycle configuration (grace, timeouts, lame duck, ...).
    /// `shutdown_hooks` is set for you when hooks are registered.
    ///
    /// ```
    /// use lameduck::{Builder, Config};
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
        self.pending.push(PendingListener::Tcp(
            listener,
            DEFAULT_TCP_NAME.into(),
            true,
        ));
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
        self.pending.push(PendingListener::Unix(
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
        self.pending.push(PendingListener::Tcp(
            listener,
            DEFAULT_TCP_NAME.into(),
            false,
        ));
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
        self.pending.push(PendingListener::Unix(
            listener,
            None,
            DEFAULT_UNIX_NAME.into(),
        ));
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

    /// Observes the server's [`Event`]s (phases, closes, accept errors,
    /// done); they are logged (target `lameduck`) whether observed or not.
    /// Called outside the server's lock; keep it quick. The same observer
    /// may be given to the server's lifecycle and supervisor (see
    /// [`Event`]).
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
    pub(crate) fn push_listener(mut self, pending: PendingListener) -> Self {
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
        let spec = Spec {
            config: self.config,
            accepting: self.pending.iter().map(|_| Arc::default()).collect(),
            pending: self.pending,
            hooks: self.hooks,
            events: Sink::Server(self.observer),
        };
        let (handle, unserved) = self.place.start(spec, self.threads)?;
        Ok(Server {
            handle,
            unserved: Some(unserved),
            #[cfg(feature = "tls")]
            tls: self.tls,
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
        Fut: Future<Output = Result<Response<B>, E>> + 'static,
        B: Body + 'static,
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
        Fut: Future<Output = ()> + 'static,
    {
        Ok(self.build()?.serve_stream(handler))
    }
}

impl<R: Runtime> fmt::Debug for Builder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("listeners", &self.pending.len())
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}
