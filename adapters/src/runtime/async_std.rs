//! The async-std binding: a server on threads of its own, each running
//! async-std's `block_on` with a local executor; sockets and timers from
//! async-std.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream};
use async_std::os::unix::net::{UnixListener, UnixStream};

use std::rc::Rc;

use async_executor::LocalExecutor;

use super::{Launch, Runtime, ThreadMain};

/// async-std, on threads lameduck starts: each runs async-std's
/// `block_on` with a local executor for the server's tasks (which may be
/// `!Send`), and async-std's sockets and timers on its reactor.
///
/// async-std was discontinued upstream in 2025 (its last release says so,
/// and RUSTSEC-2025-0052 flags it) in favour of smol; this binding is kept
/// for its users. New code: [`Smol`](super::Smol).
///
/// ```
/// use lameduck::{Builder, runtime::AsyncStd};
///
/// # fn main() -> std::io::Result<()> {
/// let handle = Builder::with_launcher(AsyncStd)
///     .bind("127.0.0.1:0")?
///     .serve_stream(|conn| async move { drop(conn) })?;
/// handle.shutdown_within(std::time::Duration::from_secs(5));
/// let outcome = async_std::task::block_on(handle.finished()).expect("the driver ran to its end");
/// assert!(outcome.is_graceful());
/// # Ok(()) }
/// ```
///
/// Registering a listener cannot fail softly here: async-std has no
/// fallible constructor for its listeners and panics if its reactor
/// refuses a socket (only when the system is out of memory or of
/// `epoll` watches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsyncStd;

impl Launch for AsyncStd {
    type Runtime = AsyncStdThread;

    fn launch(
        &self,
        name: String,
        main: ThreadMain<AsyncStdThread>,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(name).spawn(move || {
            let executor = Rc::new(LocalExecutor::new());
            let main = main(AsyncStdThread {
                executor: executor.clone(),
            });
            async_std::task::block_on(super::run_out(&executor, main));
        })
    }
}

/// One thread of an [`AsyncStd`] server: its local executor.
#[derive(Clone)]
pub struct AsyncStdThread {
    executor: Rc<LocalExecutor<'static>>,
}

impl std::fmt::Debug for AsyncStdThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncStdThread").finish_non_exhaustive()
    }
}

impl Runtime for AsyncStdThread {
    type TcpListener = TcpListener;
    type UnixListener = UnixListener;
    type TcpStream = TcpStream;
    type UnixStream = UnixStream;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.executor.spawn(future).detach();
    }

    // Not an `async fn`: that future would borrow `self`, and the seam
    // asks for a `'static` one.
    #[allow(clippy::manual_async_fn)]
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + 'static {
        // async-std has no timer at an instant; `sleep(d)` ends no earlier
        // than `d` from its call, so one pass normally suffices. Bounded:
        // every pass sleeps the time left, which only shrinks.
        async move {
            loop {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                async_std::task::sleep(left).await;
            }
        }
    }

    fn tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener> {
        // async-std's conversion makes the socket non-blocking.
        Ok(TcpListener::from(listener))
    }

    fn unix_listener(
        &self,
        listener: std::os::unix::net::UnixListener,
    ) -> io::Result<Self::UnixListener> {
        Ok(UnixListener::from(listener))
    }

    async fn accept_tcp(listener: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (stream, _) = listener.accept().await?;
        // Best effort, as in Go: a connection already reset by its peer
        // fails here, and its first read will say so.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn accept_unix(listener: &Self::UnixListener) -> io::Result<Self::UnixStream> {
        Ok(listener.accept().await?.0)
    }

    fn tcp_shutdown_write(stream: &Self::TcpStream) -> io::Result<()> {
        stream.shutdown(Shutdown::Write)
    }

    fn unix_shutdown_write(stream: &Self::UnixStream) -> io::Result<()> {
        stream.shutdown(Shutdown::Write)
    }

    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
}
