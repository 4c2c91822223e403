//! The binding for smol's [`LocalExecutor`]: tasks on an executor that you
//! run on one thread, sockets and timers from `async-io`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;
use std::time::Instant;

use smol::{Async, LocalExecutor, Timer};

use super::Runtime;

/// smol's single-threaded [`LocalExecutor`], run by you: the server's
/// tasks (accept loops, connections, timers) are spawned on it, may be
/// `!Send`, and run where and when you run the executor. Build the server
/// on the executor's thread.
///
/// ```
/// use std::rc::Rc;
/// use lameduck::{Builder, runtime::SmolLocal};
///
/// # fn main() -> std::io::Result<()> {
/// let executor = Rc::new(smol::LocalExecutor::new());
/// let handle = Builder::with_runtime(SmolLocal::new(executor.clone()))
///     .bind("127.0.0.1:0")?
///     .serve_stream(|conn| async move { drop(conn) })?;
/// handle.shutdown_within(std::time::Duration::from_secs(5));
/// let outcome = smol::block_on(executor.run(handle.finished())).expect("the driver ran to its end");
/// assert!(outcome.is_graceful());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SmolLocal {
    executor: Rc<LocalExecutor<'static>>,
}

impl SmolLocal {
    /// Spawns on `executor`, which you run on its thread.
    ///
    /// ```
    /// use std::rc::Rc;
    /// let rt = lameduck::runtime::SmolLocal::new(Rc::new(smol::LocalExecutor::new()));
    /// # let _ = rt;
    /// ```
    #[must_use]
    pub fn new(executor: Rc<LocalExecutor<'static>>) -> SmolLocal {
        SmolLocal { executor }
    }
}

impl fmt::Debug for SmolLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmolLocal").finish_non_exhaustive()
    }
}

impl Runtime for SmolLocal {
    type TcpListener = Async<TcpListener>;
    type UnixListener = Async<UnixListener>;
    type TcpStream = Async<TcpStream>;
    type UnixStream = Async<UnixStream>;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.executor.spawn(future).detach();
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + 'static {
        let timer = Timer::at(at);
        async move {
            timer.await;
        }
    }

    fn tcp_listener(&self, listener: TcpListener) -> io::Result<Self::TcpListener> {
        Async::new(listener)
    }

    fn unix_listener(&self, listener: UnixListener) -> io::Result<Self::UnixListener> {
        Async::new(listener)
    }

    async fn accept_tcp(listener: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (stream, _) = listener.accept().await?;
        // Best effort, as in Go: a connection already reset by its peer
        // fails here, and its first read will say so.
        let _ = stream.get_ref().set_nodelay(true);
        Ok(stream)
    }

    async fn accept_unix(listener: &Self::UnixListener) -> io::Result<Self::UnixStream> {
        Ok(listener.accept().await?.0)
    }

    fn tcp_shutdown_write(stream: &Self::TcpStream) -> io::Result<()> {
        stream.get_ref().shutdown(Shutdown::Write)
    }

    fn unix_shutdown_write(stream: &Self::UnixStream) -> io::Result<()> {
        stream.get_ref().shutdown(Shutdown::Write)
    }

    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.get_ref().local_addr()
    }
}
