//! The compio bindings: [`Compio`], a server on threads of its own, each a
//! compio runtime (completion-based: io_uring where the kernel allows it,
//! polling otherwise); and [`CompioLocal`], your compio runtime.
//!
//! Accepting is readiness-based (`PollFd`, then a non-blocking `accept`):
//! compio's own `accept` under io_uring loses the connection it completes
//! with when its future is dropped, and lameduck drops it to stop
//! accepting. Streams are read and written the same way, once ready (see
//! [`CompioStream`]), behind a `SendWrapper`: the seam asks accepted
//! streams to be `Send`, for hyper's upgrades, while compio's handles are
//! bound to their thread — using one from another thread panics instead of
//! being unsound.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::fd::PollFd;
use futures_lite::io::{AsyncRead, AsyncWrite};
use send_wrapper::SendWrapper;

use super::{Launch, Runtime, ThreadMain};

/// compio, on threads lameduck starts: each runs a compio runtime
/// (thread-per-core; the server's tasks may be `!Send`). The driver is
/// io_uring where the kernel allows it and polling otherwise
/// ([`Compio::new`]), or the one you choose ([`Compio::with_driver`]).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let handle = lameduck::Builder::with_launcher(lameduck::runtime::Compio::new())
///     .bind("127.0.0.1:0")?
///     .serve_stream(|conn| async move { drop(conn) })?;
/// handle.shutdown_within(std::time::Duration::from_secs(5));
/// let outcome = futures_lite::future::block_on(handle.finished()).expect("the driver ran to its end");
/// assert!(outcome.is_graceful());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Compio {
    driver: Option<DriverType>,
}

impl Compio {
    /// io_uring where the kernel allows it, polling otherwise (compio's
    /// own choice, made when each thread starts).
    ///
    /// ```
    /// let compio = lameduck::runtime::Compio::new();
    /// # let _ = compio;
    /// ```
    #[must_use]
    pub fn new() -> Compio {
        Compio { driver: None }
    }

    /// This driver, or no server: e.g. `DriverType::Poll` to run without
    /// io_uring. A driver that cannot start (io_uring where the kernel or
    /// the container forbids it, IOCP off Windows) fails the build with
    /// compio's reason.
    ///
    /// ```
    /// use compio::driver::DriverType;
    /// let polling = lameduck::runtime::Compio::with_driver(DriverType::Poll);
    /// # let _ = polling;
    /// ```
    #[must_use]
    pub fn with_driver(driver: DriverType) -> Compio {
        Compio {
            driver: Some(driver),
        }
    }
}

impl Launch for Compio {
    type Runtime = CompioLocal;

    fn launch(
        &self,
        name: String,
        main: ThreadMain<CompioLocal>,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        let driver = self.driver;
        #[cfg(not(windows))]
        if driver == Some(DriverType::IOCP) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "cannot start a compio runtime: the IOCP driver is Windows-only",
            ));
        }
        // The runtime is built on its thread (compio's are bound to it);
        // `launch` waits for that, so a driver that cannot start (io_uring
        // forbidden, say) is reported with compio's own error.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut proactor = ProactorBuilder::new();
            if let Some(driver) = driver {
                proactor.driver_type(driver);
            }
            let runtime = match compio::runtime::RuntimeBuilder::new()
                .with_proactor(proactor)
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            let _ = started_tx.send(Ok(()));
            // Dropping the runtime afterwards drops what is still spawned
            // (closing their sockets).
            runtime.block_on(main(CompioLocal::new()));
        })?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => {
                let _ = thread.join();
                let driver =
                    driver.map_or("compio's choice of".to_owned(), |d| format!("the {d:?}"));
                Err(io::Error::new(
                    e.kind(),
                    format!("cannot start a compio runtime with {driver} driver: {e}"),
                ))
            }
            // The thread panicked while building the runtime.
            Err(_) => {
                let why = match thread.join() {
                    Err(panic) => panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned()),
                    Ok(()) => "the thread ended".to_owned(),
                };
                Err(io::Error::other(format!(
                    "cannot start a compio runtime: {why}"
                )))
            }
        }
    }
}

/// The current thread's compio runtime: build and serve the server inside
/// its `block_on`, which must go on running for the server to make
/// progress.
///
/// ```
/// use lameduck::{Builder, runtime::CompioLocal};
///
/// # fn main() -> std::io::Result<()> {
/// compio::runtime::Runtime::new()?.block_on(async {
///     let handle = Builder::with_runtime(CompioLocal::new())
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
pub struct CompioLocal {
    /// Bound to its thread, like compio's runtime.
    _thread: std::marker::PhantomData<*const ()>,
}

impl CompioLocal {
    /// The current thread's compio runtime.
    ///
    /// ```
    /// let rt = lameduck::runtime::CompioLocal::new();
    /// # let _ = rt;
    /// ```
    #[must_use]
    pub fn new() -> CompioLocal {
        CompioLocal {
            _thread: std::marker::PhantomData,
        }
    }

    /// The driver the current thread's runtime runs on: io_uring, or
    /// polling where io_uring is unavailable (or was not asked for).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// compio::runtime::Runtime::new()?.block_on(async {
    ///     let driver = lameduck::runtime::CompioLocal::new().driver_type();
    ///     assert!(driver.is_iouring() || driver.is_polling());
    /// });
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn driver_type(&self) -> DriverType {
        compio::runtime::Runtime::with_current(compio::runtime::Runtime::driver_type)
    }
}

/// An accepted stream of the compio binding: the socket, non-blocking,
/// read and written directly once compio's driver says it is ready
/// (`PollFd`: a poll operation under io_uring, the poller otherwise).
///
/// Why readiness rather than compio's owned-buffer reads and writes
/// (through its `futures-io` compat layer): hyper and raw streams lend
/// their own buffers, so owned buffers would cost a copy each way, and the
/// compat layer holds written bytes until a flush that a raw stream's
/// writer need not make. Readiness keeps one copy and write-through
/// semantics, on io_uring as on the poller.
pub struct CompioStream<S: AsFd + 'static> {
    socket: SendWrapper<PollFd<S>>,
}

impl<S: AsFd + 'static> std::fmt::Debug for CompioStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompioStream").finish_non_exhaustive()
    }
}

impl<S: AsFd + 'static> CompioStream<S> {
    fn new(stream: S) -> io::Result<Self> {
        Ok(CompioStream {
            socket: SendWrapper::new(PollFd::new(stream)?),
        })
    }

    /// Sends the FIN: the write half's shutdown, on the socket.
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(rustix::net::shutdown(
            &**self.socket,
            rustix::net::Shutdown::Write,
        )?)
    }
}

impl<S: AsFd + 'static> AsyncRead for CompioStream<S>
where
    for<'a> &'a S: io::Read,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let socket = &*self.socket;
        // Each pass reads, or waits for readiness once; ends on data, end
        // of stream or an error other than "would block".
        loop {
            match io::Read::read(&mut &**socket, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(socket.poll_read_ready(cx))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }
}

impl<S: AsFd + 'static> AsyncWrite for CompioStream<S>
where
    for<'a> &'a S: io::Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket = &*self.socket;
        // As `poll_read`, for writing.
        loop {
            match io::Write::write(&mut &**socket, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(socket.poll_write_ready(cx))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written straight to the socket: nothing is held back.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

impl Runtime for CompioLocal {
    type TcpListener = PollFd<std::net::TcpListener>;
    type UnixListener = PollFd<std::os::unix::net::UnixListener>;
    type TcpStream = CompioStream<std::net::TcpStream>;
    type UnixStream = CompioStream<std::os::unix::net::UnixStream>;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + 'static,
    {
        compio::runtime::spawn(future).detach();
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + 'static {
        compio::time::sleep_until(at)
    }

    fn tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener> {
        listener.set_nonblocking(true)?;
        PollFd::new(listener)
    }

    fn unix_listener(
        &self,
        listener: std::os::unix::net::UnixListener,
    ) -> io::Result<Self::UnixListener> {
        listener.set_nonblocking(true)?;
        PollFd::new(listener)
    }

    /// Readiness, then a non-blocking accept: cancel-safe on every driver.
    async fn accept_tcp(listener: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (stream, _) = poll_fn(|cx| listener.poll_accept_with(cx, |l| l.accept())).await?;
        // Best effort, as in Go.
        let _ = stream.set_nodelay(true);
        stream.set_nonblocking(true)?;
        CompioStream::new(stream)
    }

    async fn accept_unix(listener: &Self::UnixListener) -> io::Result<Self::UnixStream> {
        let (stream, _) = poll_fn(|cx| listener.poll_accept_with(cx, |l| l.accept())).await?;
        stream.set_nonblocking(true)?;
        CompioStream::new(stream)
    }

    fn tcp_shutdown_write(stream: &Self::TcpStream) -> io::Result<()> {
        stream.shutdown_write()
    }

    fn unix_shutdown_write(stream: &Self::UnixStream) -> io::Result<()> {
        stream.shutdown_write()
    }

    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use compio::driver::DriverType;

    use super::Compio;

    /// A driver that cannot start fails the build with the reason, not a
    /// panic on the server's thread or a generic "the thread ended".
    #[cfg(not(windows))]
    #[test]
    fn a_driver_that_cannot_start_is_reported_with_its_reason() {
        let err = crate::Builder::with_launcher(Compio::with_driver(DriverType::IOCP))
            .bind("127.0.0.1:0")
            .unwrap()
            .build()
            .expect_err("no IOCP driver off Windows");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
        assert!(
            err.to_string().contains("IOCP driver is Windows-only"),
            "{err}"
        );
    }

    /// The poller always starts, and the server built on it serves.
    #[test]
    fn the_polling_driver_starts() {
        let handle = crate::Builder::with_launcher(Compio::with_driver(DriverType::Poll))
            .bind("127.0.0.1:0")
            .unwrap()
            .serve_stream(|conn| async move { drop(conn) })
            .unwrap();
        handle.shutdown_within(std::time::Duration::from_secs(5));
        let outcome = futures_lite::future::block_on(handle.finished()).unwrap();
        assert!(outcome.is_graceful(), "{outcome:?}");
    }
}
