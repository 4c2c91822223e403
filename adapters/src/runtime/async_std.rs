//! The async-std binding: tasks on async-std's global executor, sockets and
//! timers from async-std.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream};
use async_std::os::unix::net::{UnixListener, UnixStream};

use super::Runtime;

/// The async-std runtime: tasks go to async-std's global executor
/// (`async_std::task::spawn`), sockets to its global reactor. async-std has
/// one executor per process, so this binding carries no state.
///
/// ```
/// use lameduck::{Builder, runtime::AsyncStd};
///
/// # fn main() -> std::io::Result<()> {
/// async_std::task::block_on(async {
///     let handle = Builder::with_runtime(AsyncStd)
///         .bind("127.0.0.1:0")?
///         .serve_stream(|conn| async move { drop(conn) })?;
///     handle.shutdown_within(std::time::Duration::from_secs(5));
///     let outcome = handle.drained().wait().await.expect("the driver ran to its end");
///     assert!(outcome.is_graceful());
///     Ok(())
/// })
/// # }
/// ```
///
/// Registering a listener cannot fail softly here: async-std has no
/// fallible constructor for its listeners and panics if its reactor
/// refuses a socket (only when the system is out of memory or of
/// `epoll` watches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type TcpListener = TcpListener;
    type UnixListener = UnixListener;
    type TcpStream = TcpStream;
    type UnixStream = UnixStream;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Dropping async-std's join handle detaches the task.
        drop(async_std::task::spawn(future));
    }

    // Not an `async fn`: that future would borrow `self`, and the seam
    // asks for a `'static` one.
    #[allow(clippy::manual_async_fn)]
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
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
