//! Building a server: listeners, configuration, hooks; then serving HTTP (1.1 and 2)
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

use crate::accept::{ListenSocket, accept_loop};
use crate::driver::{Driver, ListenerEntry};
use crate::event::{Event, Group, Observer, Sink};
use crate::handle::Handle;
use crate::hooks::{Hooks, hook};
use crate::http::Http;
use crate::listener::{Accepting, ListenAddr};
use crate::runtime::{Launch, Runtime, ThreadMain};
use crate::stream::{RawConn, Streams};
use crate::sync::Stop;
use crate::worker::ServeConn;
use crate::worker::Worker;

#[cfg(feature = "smol")]
use crate::runtime::{Smol, SmolLocal};

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

/// Where a server's tasks run: on the current thread's runtime
/// ([`Builder::with_runtime`]), or on a thread a [`Launch`] starts
/// ([`Builder::new`], [`Builder::with_launcher`]).
enum Place<R: Runtime> {
    Here(R),
    Launched(Box<dyn Launch<Runtime = R>>),
}

/// What every thread of a server is built from.
struct Spec {
    config: Config,
    pending: Vec<Pending>,
    /// For each pending listener, the threads accepting on it (shared by
    /// every thread's part).
    accepting: Vec<Arc<Accepting>>,
    hooks: Hooks,
    /// Where its driver's events go.
    events: Sink,
}

/// One thread's part of a built server, not yet serving: its worker and
/// its listeners, registered with the runtime.
struct Member<R: Runtime> {
    worker: Arc<Worker<R>>,
    listeners: Vec<(ListenerId, Arc<ListenSocket<R>>, Arc<Stop>)>,
}

/// How each thread's part starts serving: makes the connection server on
/// that thread (the handler travels to every one).
type ServeMaker<R> = Arc<dyn Fn(&R) -> Arc<dyn ServeConn<R>> + Send + Sync>;

/// What a server's thread is sent to start serving: the maker, and where
/// to say that it serves.
type ServeOrder<R> = (ServeMaker<R>, std::sync::mpsc::Sender<()>);

/// What a built server keeps until it serves.
enum Unserved<R: Runtime> {
    /// Its part on this thread.
    Here(Member<R>),
    /// Its threads, each waiting for the handler (and saying when it
    /// serves).
    Launched(Vec<async_channel::Sender<ServeOrder<R>>>),
}

impl Spec {
    /// The part of the server thread `index` of `group` builds: the same
    /// listening sockets (new descriptors), the same configuration, events
    /// reported through the group; the hooks run once, on the first; a Unix socket's file is
    /// the first's to remove.
    fn for_thread(&mut self, index: usize, group: &Arc<Group>) -> io::Result<Spec> {
        let pending = self
            .pending
            .iter()
            .map(|pending| {
                Ok(match pending {
                    Pending::Tcp(l, name, bound) => {
                        Pending::Tcp(l.try_clone()?, name.clone(), *bound)
                    }
                    Pending::Unix(l, unlink, name) => Pending::Unix(
                        l.try_clone()?,
                        unlink.clone().filter(|_| index == 0),
                        name.clone(),
                    ),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Spec {
            config: self.config.clone(),
            pending,
            accepting: self.accepting.clone(),
            hooks: if index == 0 {
                std::mem::take(&mut self.hooks)
            } else {
                Hooks::default()
            },
            events: Sink::Thread {
                group: group.clone(),
                index,
            },
        })
    }
}

impl<R: Runtime> Place<R> {
    /// Builds the server's parts where they run: on `threads` threads.
    fn start(self, mut spec: Spec, threads: usize) -> io::Result<(Handle, Unserved<R>)> {
        match self {
            Place::Here(rt) => {
                if threads != 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a server on the current thread's runtime runs on that thread only: \
                         use a launcher (Builder::with_launcher) for several threads",
                    ));
                }
                let (member, driver, addrs) = Member::build(rt, spec)?;
                Ok((Handle::new(vec![driver], addrs), Unserved::Here(member)))
            }
            Place::Launched(launcher) => {
                let mut drivers = Vec::with_capacity(threads);
                let mut serves = Vec::with_capacity(threads);
                let mut addrs = Vec::new();
                let group = Group::new(threads.max(1), spec.events.observer());
                for index in 0..threads.max(1) {
                    let mut part = spec.for_thread(index, &group)?;
                    if threads <= 1 {
                        // One thread: the server's own events, no group.
                        part.events = spec.events.clone();
                    }
                    let name = if threads > 1 {
                        format!("lameduck-{index}")
                    } else {
                        "lameduck".into()
                    };
                    let (driver, thread_addrs, serve) = launch(&*launcher, part, name)?;
                    drivers.push(driver);
                    serves.push(serve);
                    addrs = thread_addrs;
                }
                // The originals close: each thread has its own descriptors.
                drop(spec);
                Ok((Handle::new(drivers, addrs), Unserved::Launched(serves)))
            }
        }
    }
}

/// Builds one thread's part of the server on a thread `launcher` starts,
/// and waits until it is built; the thread then waits for the handler,
/// serves, and ends once its part is finished.
#[allow(clippy::type_complexity)]
fn launch<R: Runtime>(
    launcher: &dyn Launch<Runtime = R>,
    spec: Spec,
    name: String,
) -> io::Result<(
    Arc<Driver>,
    Vec<ListenAddr>,
    async_channel::Sender<ServeOrder<R>>,
)> {
    let (built_tx, built_rx) = std::sync::mpsc::channel();
    let (serve_tx, serve_rx) = async_channel::bounded::<ServeOrder<R>>(1);
    let main: ThreadMain<R> = Box::new(move |rt| {
        Box::pin(async move {
            let (member, driver, addrs) = match Member::build(rt, spec) {
                Ok(built) => built,
                Err(e) => {
                    let _ = built_tx.send(Err(e));
                    return;
                }
            };
            let _ = built_tx.send(Ok((driver.clone(), addrs)));
            // Closed unsent: the server was dropped unserved.
            let Ok((make, serving)) = serve_rx.recv().await else {
                return;
            };
            let serve = make(&member.worker.rt);
            member.serve(serve);
            let _ = serving.send(());
            let _ = driver.finished().await;
        })
    });
    launcher.launch(name, main)?;
    let (driver, addrs) = built_rx
        .recv()
        .map_err(|_| io::Error::other("the server's thread ended before the server was built"))??;
    Ok((driver, addrs, serve_tx))
}

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
    pending: Vec<Pending>,
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
        match self.unserved.take() {
            Some(Unserved::Here(member)) => {
                let serve = make(&member.worker.rt);
                member.serve(serve);
            }
            // Each thread waits for it (bounded 1, sent once) and says when
            // it serves: once this returns, the server serves (a handed-in
            // connection, say, is taken).
            Some(Unserved::Launched(threads)) => {
                let (serving, on_serving) = std::sync::mpsc::channel();
                let mut sent = 0;
                for thread in threads {
                    if thread.try_send((make.clone(), serving.clone())).is_ok() {
                        sent += 1;
                    }
                }
                drop(serving);
                for _ in 0..sent {
                    // Ends early only if a thread ended (its part is done).
                    if on_serving.recv().is_err() {
                        break;
                    }
                }
            }
            None => {}
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

impl<R: Runtime> Member<R> {
    /// Registers `spec`'s listeners with `rt` and starts a worker for a
    /// new driver, on the current thread (`rt`'s).
    fn build(rt: R, spec: Spec) -> io::Result<(Member<R>, Arc<Driver>, Vec<ListenAddr>)> {
        let mut sockets = Vec::with_capacity(spec.pending.len());
        let mut addrs = Vec::with_capacity(spec.pending.len());
        for (pending, accepting) in spec.pending.into_iter().zip(spec.accepting) {
            match pending {
                Pending::Tcp(listener, name, bound_here) => {
                    let socket = rt.tcp_listener(listener)?;
                    addrs.push(ListenAddr::Tcp(R::tcp_local_addr(&socket)?));
                    let accepting = bound_here.then_some(accepting);
                    sockets.push((ListenSocket::tcp(socket, accepting)?, name));
                }
                Pending::Unix(listener, unlink, name) => {
                    let path = listener
                        .local_addr()?
                        .as_pathname()
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    let socket = rt.unix_listener(listener)?;
                    addrs.push(ListenAddr::Unix(path));
                    sockets.push((ListenSocket::unix(socket, unlink)?, name));
                }
            }
        }
        let driver = Driver::new(spec.config, spec.hooks, spec.events);
        let worker = Worker::start(rt, driver.clone());
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
        let member = Member { worker, listeners };
        Ok((member, driver, addrs))
    }

    /// Starts serving: an accept loop per listener.
    fn serve(mut self, serve: Arc<dyn ServeConn<R>>) {
        let worker = self.worker.clone();
        worker.set_serve(serve.clone());
        for (id, socket, stop) in self.listeners.drain(..) {
            worker
                .rt
                .spawn(accept_loop(worker.clone(), id, socket, stop, serve.clone()));
        }
    }
}

impl<R: Runtime> Drop for Member<R> {
    fn drop(&mut self) {
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
            .field("serving", &self.unserved.is_none())
            .finish_non_exhaustive()
    }
}
