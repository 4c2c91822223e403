//! The smol binding: spawn on smol's global executor or your own
//! [`smol::Executor`], sockets and timers from `async-io`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Instant;

use smol::{Async, Executor, Timer};

use super::Runtime;

/// The smol runtime: tasks go to smol's global executor
/// ([`Smol::global`]) or to an executor you run yourself
/// ([`Smol::with_executor`]).
///
/// ```
/// use std::sync::Arc;
/// use lameduck::runtime::Smol;
///
/// let on_global = Smol::global();
/// let mine = Smol::with_executor(Arc::new(smol::Executor::new()));
/// # let _ = (on_global, mine);
/// ```
#[derive(Clone, Default)]
pub struct Smol {
    executor: Option<Arc<Executor<'static>>>,
}

impl Smol {
    /// Spawns on smol's global executor (`smol::spawn`), which runs itself.
    ///
    /// ```
    /// let rt = lameduck::runtime::Smol::global();
    /// # let _ = rt;
    /// ```
    #[must_use]
    pub fn global() -> Smol {
        Smol { executor: None }
    }

    /// Spawns on `executor`; you run it (e.g. `executor.run(..)` on threads of
    /// your own).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let executor = Arc::new(smol::Executor::new());
    /// let rt = lameduck::runtime::Smol::with_executor(executor.clone());
    /// # let _ = rt;
    /// ```
    #[must_use]
    pub fn with_executor(executor: Arc<Executor<'static>>) -> Smol {
        Smol {
            executor: Some(executor),
        }
    }
}

impl fmt::Debug for Smol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let executor = if self.executor.is_some() {
            "own"
        } else {
            "global"
        };
        f.debug_struct("Smol").field("executor", &executor).finish()
    }
}

impl Runtime for Smol {
    type TcpListener = Async<TcpListener>;
    type UnixListener = Async<UnixListener>;
    type TcpStream = Async<TcpStream>;
    type UnixStream = Async<UnixStream>;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.executor {
            Some(executor) => executor.spawn(future).detach(),
            None => smol::spawn(future).detach(),
        }
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
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
