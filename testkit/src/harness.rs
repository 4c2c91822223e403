//! The runtime-generic harness of the scenario suite: every scenario is a
//! function generic over [`Binding`], instantiated once per runtime by
//! [`scenarios!`](crate::scenarios!). Adding a runtime means implementing
//! [`Binding`] for it and invoking the macro once more.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use lameduck::runtime::Runtime;
use lameduck::{Abandoned, Config, HookStage, Outcome};
use lameduck::{Builder, Event, Handle, ListenAddr};

/// A runtime the scenarios run on.
pub trait Binding: 'static {
    /// The lameduck runtime binding (the runtime of the server's thread).
    type Runtime: Runtime;
    /// A name for messages.
    const NAME: &'static str;
    /// Builds and serves a server with `build`, where this binding runs
    /// it: `build` gets a builder for this runtime (on the server's thread
    /// for a runtime you run yourself) and returns the served handle and
    /// whatever else the test wants back.
    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Self::Runtime>) -> (Handle, O) + Send + 'static;
    /// Runs a future to completion on the calling thread.
    fn block_on<F: Future>(future: F) -> F::Output {
        futures_lite::future::block_on(future)
    }
}

#[cfg(feature = "smol")]
/// smol, on a thread of the server's own (the default binding).
#[derive(Debug)]
pub struct SmolRt;

#[cfg(feature = "smol")]
impl Binding for SmolRt {
    type Runtime = lameduck::runtime::SmolLocal;
    const NAME: &'static str = "smol";

    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Self::Runtime>) -> (Handle, O) + Send + 'static,
    {
        build(Builder::new())
    }
}

#[cfg(feature = "smol")]
/// smol on two threads of the server's own (`Builder::threads(2)`): one
/// server, thread-per-core, drained as one.
#[derive(Debug)]
pub struct SmolThreadsRt;

#[cfg(feature = "smol")]
impl Binding for SmolThreadsRt {
    type Runtime = lameduck::runtime::SmolLocal;
    const NAME: &'static str = "smol, 2 threads";

    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Self::Runtime>) -> (Handle, O) + Send + 'static,
    {
        build(Builder::new().threads(2))
    }
}

#[cfg(feature = "smol")]
/// smol's `LocalExecutor`, run by the test on a thread of its own: the
/// server is built and served there (`Builder::with_runtime`), and the
/// executor runs until the server is finished and its tasks are done.
#[derive(Debug)]
pub struct SmolLocalRt;

#[cfg(feature = "smol")]
impl Binding for SmolLocalRt {
    type Runtime = lameduck::runtime::SmolLocal;
    const NAME: &'static str = "smol-local";

    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Self::Runtime>) -> (Handle, O) + Send + 'static,
    {
        let (built, on_built) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("smol-local".into())
            .spawn(move || {
                let executor = std::rc::Rc::new(smol::LocalExecutor::new());
                let rt = lameduck::runtime::SmolLocal::new(executor.clone());
                let (handle, out) = build(Builder::with_runtime(rt));
                let _ = built.send((handle.clone(), out));
                smol::block_on(executor.run(async {
                    let _ = handle.finished().await;
                    // Each pass runs a task step; ends when none is left.
                    while !executor.is_empty() {
                        executor.tick().await;
                    }
                }));
            })
            .expect("spawning the executor's thread");
        on_built.recv().expect("the server was built")
    }
}

/// tokio, on a thread of the server's own (a current-thread runtime with a
/// `LocalSet`).
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct TokioRt;

#[cfg(feature = "tokio")]
impl Binding for TokioRt {
    type Runtime = lameduck::runtime::TokioLocal;
    const NAME: &'static str = "tokio";

    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Self::Runtime>) -> (Handle, O) + Send + 'static,
    {
        build(Builder::with_launcher(lameduck::runtime::Tokio))
    }
}

/// compio on a thread of the server's own: io_uring where the kernel
/// allows it, polling otherwise.
#[cfg(feature = "compio")]
#[derive(Debug)]
pub struct CompioRt;

#[cfg(feature = "compio")]
impl Binding for CompioRt {
    type Runtime = lameduck::runtime::CompioLocal;
    const NAME: &'static str = "compio";

    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Self::Runtime>) -> (Handle, O) + Send + 'static,
    {
        build(Builder::with_launcher(lameduck::runtime::Compio::new()))
    }
}

/// compio with its polling driver (the fallback where io_uring is
/// unavailable), on a thread of the server's own.
#[cfg(feature = "compio")]
#[derive(Debug)]
pub struct CompioPollRt;

#[cfg(feature = "compio")]
impl Binding for CompioPollRt {
    type Runtime = lameduck::runtime::CompioLocal;
    const NAME: &'static str = "compio (polling)";

    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Self::Runtime>) -> (Handle, O) + Send + 'static,
    {
        let polling = lameduck::runtime::Compio::with_driver(compio::driver::DriverType::Poll);
        build(Builder::with_launcher(polling))
    }
}

/// async-std, on a thread of the server's own.
#[cfg(feature = "async-std")]
#[derive(Debug)]
pub struct AsyncStdRt;

#[cfg(feature = "async-std")]
impl Binding for AsyncStdRt {
    type Runtime = lameduck::runtime::AsyncStdThread;
    const NAME: &'static str = "async-std";

    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Self::Runtime>) -> (Handle, O) + Send + 'static,
    {
        build(Builder::with_launcher(lameduck::runtime::AsyncStd))
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        async_std::task::block_on(future)
    }
}

/// A demo server (the routes of `examples/serve`) on 127.0.0.1, port 0.
#[derive(Debug)]
pub struct TestServer<T: Binding> {
    /// Its handle.
    pub handle: Handle,
    /// Its first TCP address.
    pub addr: SocketAddr,
    /// Every event, as its `Display` line.
    pub events: Arc<Mutex<Vec<String>>>,
    runtime: std::marker::PhantomData<fn() -> T>,
}

/// A shutdown hook for [`Options::on_shutdown`].
pub type Hook = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Options of a [`TestServer`] beyond the core's [`Config`].
#[derive(Default)]
pub struct Options {
    /// Extra TCP listeners (besides the first).
    pub extra_tcp: usize,
    /// A Unix listener at this path.
    pub unix: Option<std::path::PathBuf>,
    /// A shutdown hook.
    pub on_shutdown: Option<Hook>,
    /// Hooks by stage, registered in this order.
    pub hooks: Vec<(HookStage, Hook)>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("extra_tcp", &self.extra_tcp)
            .field("unix", &self.unix)
            .finish_non_exhaustive()
    }
}

/// Applies `config`, `options` and an event log (`events`, each event's
/// `Display` line) to `builder`, binding 127.0.0.1 port 0 (and what
/// `options` asks for): how every server of the suite is set up, for a
/// scenario that builds its server itself with [`Binding::serve_on`].
pub fn configure<R: Runtime>(
    builder: Builder<R>,
    config: Config,
    options: Options,
    events: &Arc<Mutex<Vec<String>>>,
) -> Builder<R> {
    let log = events.clone();
    let mut builder = builder
        .config(config)
        .on_event(move |e: &Event| log.lock().unwrap().push(e.to_string()));
    for _ in 0..=options.extra_tcp {
        builder = builder.bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    }
    if let Some(path) = &options.unix {
        builder = builder.bind_unix(path).expect("binding a unix socket");
    }
    if let Some(hook) = options.on_shutdown {
        let hook = Arc::new(hook);
        builder = builder.on_shutdown(move || hook());
    }
    for (stage, hook) in options.hooks {
        let hook = Arc::new(hook);
        builder = match stage {
            HookStage::LameDuck => builder.on_lame_duck(move || hook()),
            HookStage::Drain => builder.on_shutdown(move || hook()),
            HookStage::ForcedClose => builder.on_forced_close(move || hook()),
        };
    }
    builder
}

fn first_tcp(addrs: &[ListenAddr]) -> SocketAddr {
    match addrs.first() {
        Some(ListenAddr::Tcp(addr)) => *addr,
        other => panic!("expected a TCP listener first, got {other:?}"),
    }
}

/// Starts the demo routes with `config` on a fresh runtime.
#[must_use]
pub fn demo_server<T: Binding>(config: Config) -> TestServer<T> {
    demo_server_with::<T>(config, Options::default())
}

/// [`demo_server`] with [`Options`].
#[must_use]
pub fn demo_server_with<T: Binding>(config: Config, options: Options) -> TestServer<T> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let (handle, ()) = T::serve_on(move |builder| {
        let server = configure(builder, config, options, &log)
            .build()
            .expect("starting the server");
        let handle = server.handle();
        let handle = server.serve_http_with(move |rt| crate::routes::router(rt, handle.clone()));
        (handle, ())
    });
    TestServer::new(handle, events)
}

/// A raw-stream server with `handler`, on a fresh runtime.
pub fn stream_server<T, F, Fut>(config: Config, handler: F) -> TestServer<T>
where
    T: Binding,
    F: Fn(lameduck::RawConn<T::Runtime>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let (handle, ()) = T::serve_on(move |builder| {
        let handle = configure(builder, config, Options::default(), &log)
            .serve_stream(handler)
            .expect("starting the server");
        (handle, ())
    });
    TestServer::new(handle, events)
}

/// An HTTP server with the handler `make` builds from the runtime and the
/// server's handle (e.g. the demo routes plus a route of the test's own),
/// on a fresh runtime.
pub fn http_server<T, M, F>(config: Config, make: M) -> TestServer<T>
where
    T: Binding,
    M: Fn(&T::Runtime, Handle) -> F + Send + Sync + 'static,
    F: Fn(hyper::Request<hyper::body::Incoming>) -> crate::routes::Reply + 'static,
{
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let (handle, ()) = T::serve_on(move |builder| {
        let server = configure(builder, config, Options::default(), &log)
            .build()
            .expect("starting the server");
        let handle = server.handle();
        let handle = server.serve_http_with(move |rt| make(rt, handle.clone()));
        (handle, ())
    });
    TestServer::new(handle, events)
}

/// Closes the server, so that its thread ends; harmless when it is done.
impl<T: Binding> Drop for TestServer<T> {
    fn drop(&mut self) {
        self.handle.close();
    }
}

impl<T: Binding> TestServer<T> {
    /// A test server for a served `handle` (whose first listener is TCP) and
    /// the event log [`configure`] fills: for a scenario that serves with
    /// [`Binding::serve_on`] itself.
    #[must_use]
    pub fn new(handle: Handle, events: Arc<Mutex<Vec<String>>>) -> TestServer<T> {
        TestServer {
            addr: first_tcp(handle.local_addrs()),
            handle,
            events,
            runtime: std::marker::PhantomData,
        }
    }

    /// Waits (at most `timeout`) for the server to be done; returns the
    /// outcome and when the done signal was seen.
    #[must_use]
    pub fn wait_done(&self, timeout: Duration) -> (Outcome, Instant) {
        let drained = self.handle.drained();
        let deadline = Instant::now() + timeout;
        let result: Option<Result<Outcome, Abandoned>> =
            T::block_on(async { Some(drained.wait().await) }.or(async {
                async_io::Timer::at(deadline).await;
                None
            }));
        let seen = Instant::now();
        match result {
            Some(Ok(outcome)) => (outcome, seen),
            Some(Err(e)) => panic!("[{}] done signal: {e}", T::NAME),
            None => panic!(
                "[{}] not done within {timeout:?}: phase {:?}, counts {:?}",
                T::NAME,
                self.handle.phase(),
                self.handle.counts()
            ),
        }
    }

    /// The events so far.
    #[must_use]
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

/// Polls `condition` (every millisecond) until it holds; panics after
/// `timeout` with `what`. For conditions that are observable but have no
/// event to await (e.g. the server's connection counts).
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline.
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A generous bound for "at once" on a shared, noisy 2-core machine.
pub const PROMPT: Duration = Duration::from_millis(500);
/// A generous bound for anything that must eventually happen.
pub const EVENTUALLY: Duration = Duration::from_secs(10);
