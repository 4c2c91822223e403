//! The tokio bindings: [`Tokio`], a server on threads of its own, each a
//! current-thread runtime with a `LocalSet`; and [`TokioLocal`], your
//! `LocalSet`. Streams speak `futures-io` through tokio-util's compat.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::LocalSet;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use super::{Launch, Runtime, ThreadMain};

/// tokio, on threads lameduck starts: each runs a current-thread runtime
/// and a `LocalSet` (the server's tasks may be `!Send`). A tokio service
/// adopts lameduck with `Builder::with_launcher(Tokio)`, beside its own
/// runtime, and moves to another runtime by changing that line.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let handle = lameduck::Builder::with_launcher(lameduck::runtime::Tokio)
///     .bind("127.0.0.1:0")?
///     .serve_stream(|conn| async move { drop(conn) })?;
/// handle.shutdown_within(std::time::Duration::from_secs(5));
/// let outcome = futures_lite::future::block_on(handle.finished()).expect("the driver ran to its end");
/// assert!(outcome.is_graceful());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tokio;

impl Launch for Tokio {
    type Runtime = TokioLocal;

    fn launch(
        &self,
        name: String,
        main: ThreadMain<TokioLocal>,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new().name(name).spawn(move || {
            let tasks = LocalSet::new();
            tasks.block_on(&runtime, main(TokioLocal::new()));
            // Then what is still spawned (closing connections): a
            // `LocalSet` completes once its tasks have.
            runtime.block_on(tasks);
        })
    }
}

/// The current thread's tokio runtime and `LocalSet`: build and serve the
/// server inside `LocalSet::run_until` (or `block_on`), which must go on
/// running for the server to make progress. Spawning outside a `LocalSet`
/// panics (tokio's `spawn_local`).
///
/// ```
/// use lameduck::{Builder, runtime::TokioLocal};
///
/// # fn main() -> std::io::Result<()> {
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// tokio::task::LocalSet::new().block_on(&runtime, async {
///     let handle = Builder::with_runtime(TokioLocal::new())
///         .bind("127.0.0.1:0")?
///         .serve_stream(|conn| async move { drop(conn) })?;
///     handle.shutdown_within(std::time::Duration::from_secs(5));
///     let outcome = handle.finished().await.expect("the driver ran to its end");
///     assert!(outcome.is_graceful());
///     Ok(())
/// })
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct TokioLocal {
    /// Bound to its thread, like `spawn_local`.
    _thread: PhantomData<*const ()>,
}

impl TokioLocal {
    /// The current thread's runtime and `LocalSet`.
    ///
    /// ```
    /// let rt = lameduck::runtime::TokioLocal::new();
    /// # let _ = rt;
    /// ```
    #[must_use]
    pub fn new() -> TokioLocal {
        TokioLocal {
            _thread: PhantomData,
        }
    }
}

impl Runtime for TokioLocal {
    type TcpListener = TcpListener;
    type UnixListener = UnixListener;
    type TcpStream = Compat<TcpStream>;
    type UnixStream = Compat<UnixStream>;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + 'static,
    {
        // Dropping tokio's join handle detaches the task.
        drop(tokio::task::spawn_local(future));
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + 'static {
        // tokio's timer rounds up to its millisecond ticks: never early.
        tokio::time::sleep_until(tokio::time::Instant::from_std(at))
    }

    fn tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener> {
        // tokio asks the caller to make it non-blocking.
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }

    fn unix_listener(
        &self,
        listener: std::os::unix::net::UnixListener,
    ) -> io::Result<Self::UnixListener> {
        listener.set_nonblocking(true)?;
        UnixListener::from_std(listener)
    }

    /// tokio's accept is cancel-safe.
    async fn accept_tcp(listener: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (stream, _) = listener.accept().await?;
        // Best effort, as in Go: a connection already reset by its peer
        // fails here, and its first read will say so.
        let _ = stream.set_nodelay(true);
        Ok(stream.compat())
    }

    async fn accept_unix(listener: &Self::UnixListener) -> io::Result<Self::UnixStream> {
        Ok(listener.accept().await?.0.compat())
    }

    fn tcp_shutdown_write(stream: &Self::TcpStream) -> io::Result<()> {
        // tokio's shutdown is async (it flushes nothing here): the write
        // half's FIN straight on the socket.
        Ok(rustix::net::shutdown(
            stream.get_ref(),
            rustix::net::Shutdown::Write,
        )?)
    }

    fn unix_shutdown_write(stream: &Self::UnixStream) -> io::Result<()> {
        Ok(rustix::net::shutdown(
            stream.get_ref(),
            rustix::net::Shutdown::Write,
        )?)
    }

    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
}
