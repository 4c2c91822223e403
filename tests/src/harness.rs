//! The runtime-generic harness of the scenario suite: every scenario is a
//! function generic over [`TestRuntime`], instantiated once per runtime by
//! [`scenarios!`](crate::scenarios!). Adding a runtime means implementing
//! [`TestRuntime`] for it and invoking the macro once more.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use lameduck::core::{Abandoned, Config, HookStage, Outcome};
use lameduck::runtime::Runtime;
use lameduck::{Builder, Event, Handle, ListenAddr};

/// A runtime the scenarios run on.
pub trait TestRuntime: 'static {
    /// The lameduck runtime binding.
    type Rt: Runtime;
    /// A name for messages.
    const NAME: &'static str;
    /// A runtime to serve on, and a guard that stops its executor when
    /// dropped (if the test owns one; a global executor keeps running).
    fn start() -> (Self::Rt, RuntimeGuard);
    /// Runs a future to completion on the calling thread.
    fn block_on<F: Future>(future: F) -> F::Output;
}

/// Stops a test runtime's executor thread when dropped.
#[derive(Debug)]
pub struct RuntimeGuard {
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RuntimeGuard {
    /// A guard that closes `stop` and joins `thread`.
    #[must_use]
    pub fn new(stop: async_channel::Sender<()>, thread: JoinHandle<()>) -> Self {
        RuntimeGuard {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl RuntimeGuard {
    /// A guard with nothing to stop (a runtime whose executor is global).
    #[must_use]
    pub fn none() -> Self {
        RuntimeGuard {
            stop: None,
            thread: None,
        }
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// smol, on an executor of the test's own (one thread).
#[derive(Debug)]
pub struct SmolRt;

impl TestRuntime for SmolRt {
    type Rt = lameduck::runtime::Smol;
    const NAME: &'static str = "smol";

    fn start() -> (Self::Rt, RuntimeGuard) {
        let executor = Arc::new(smol::Executor::new());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let runner = executor.clone();
        let thread = std::thread::Builder::new()
            .name("smol-executor".into())
            .spawn(move || {
                smol::block_on(runner.run(async move {
                    let _ = stopped.recv().await;
                }));
            })
            .expect("spawning a thread");
        (
            lameduck::runtime::Smol::with_executor(executor),
            RuntimeGuard::new(stop, thread),
        )
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }
}

/// async-std, on its global executor: async-std has one per process, so
/// tasks a test leaves behind run on until they end by themselves (every
/// one of the server's does: the driver's when the server is done, a
/// connection's when its socket closes).
#[cfg(feature = "async-std")]
#[derive(Debug)]
pub struct AsyncStdRt;

#[cfg(feature = "async-std")]
impl TestRuntime for AsyncStdRt {
    type Rt = lameduck::runtime::AsyncStd;
    const NAME: &'static str = "async-std";

    fn start() -> (Self::Rt, RuntimeGuard) {
        (lameduck::runtime::AsyncStd, RuntimeGuard::none())
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        async_std::task::block_on(future)
    }
}

/// A demo server (the routes of `examples/serve`) on 127.0.0.1, port 0.
#[derive(Debug)]
pub struct TestServer<T: TestRuntime> {
    /// Its handle.
    pub handle: Handle,
    /// Its first TCP address.
    pub addr: SocketAddr,
    /// The runtime it runs on.
    pub rt: T::Rt,
    /// Every event, as its `Display` line.
    pub events: Arc<Mutex<Vec<String>>>,
    // Dropped last: stops the executor.
    _guard: RuntimeGuard,
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

fn builder<T: TestRuntime>(
    rt: &T::Rt,
    config: Config,
    options: Options,
    events: &Arc<Mutex<Vec<String>>>,
) -> Builder<T::Rt> {
    let log = events.clone();
    let mut builder = Builder::with_runtime(rt.clone())
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
pub fn demo_server<T: TestRuntime>(config: Config) -> TestServer<T> {
    demo_server_with::<T>(config, Options::default())
}

/// [`demo_server`] with [`Options`].
#[must_use]
pub fn demo_server_with<T: TestRuntime>(config: Config, options: Options) -> TestServer<T> {
    let (rt, guard) = T::start();
    let events = Arc::new(Mutex::new(Vec::new()));
    let server = builder::<T>(&rt, config, options, &events)
        .build()
        .expect("starting the server");
    let handle = server.handle();
    let handle = server.serve_http(crate::routes::router(rt.clone(), handle));
    TestServer {
        addr: first_tcp(handle.local_addrs()),
        handle,
        rt,
        events,
        _guard: guard,
    }
}

/// A raw-stream server with `handler`, on a fresh runtime.
pub fn stream_server<T, F, Fut>(config: Config, handler: F) -> TestServer<T>
where
    T: TestRuntime,
    F: Fn(lameduck::RawConn<T::Rt>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (rt, guard) = T::start();
    let events = Arc::new(Mutex::new(Vec::new()));
    let handle = builder::<T>(&rt, config, Options::default(), &events)
        .serve_stream(handler)
        .expect("starting the server");
    TestServer {
        addr: first_tcp(handle.local_addrs()),
        handle,
        rt,
        events,
        _guard: guard,
    }
}

/// An HTTP server with the handler `make` builds from the runtime and the
/// server's handle (e.g. the demo routes plus a route of the test's own),
/// on a fresh runtime.
pub fn http_server<T, M, F>(config: Config, make: M) -> TestServer<T>
where
    T: TestRuntime,
    M: FnOnce(T::Rt, Handle) -> F,
    F: Fn(hyper::Request<hyper::body::Incoming>) -> crate::routes::Reply + Send + Sync + 'static,
{
    let (rt, guard) = T::start();
    let events = Arc::new(Mutex::new(Vec::new()));
    let server = builder::<T>(&rt, config, Options::default(), &events)
        .build()
        .expect("starting the server");
    let handler = make(rt.clone(), server.handle());
    let handle = server.serve_http(handler);
    TestServer {
        addr: first_tcp(handle.local_addrs()),
        handle,
        rt,
        events,
        _guard: guard,
    }
}

/// Closes the server, so that its tasks end on a runtime whose executor
/// outlives the test (async-std's global one); harmless when it is done.
impl<T: TestRuntime> Drop for TestServer<T> {
    fn drop(&mut self) {
        self.handle.close();
    }
}

impl<T: TestRuntime> TestServer<T> {
    /// Waits (at most `timeout`) for the server to be done; returns the
    /// outcome and when the done signal was seen.
    pub fn wait_done(&self, timeout: Duration) -> (Outcome, Instant) {
        let drained = self.handle.drained();
        let rt = self.rt.clone();
        let deadline = Instant::now() + timeout;
        let result: Option<Result<Outcome, Abandoned>> =
            T::block_on(async { Some(drained.wait().await) }.or(async {
                rt.sleep_until(deadline).await;
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
