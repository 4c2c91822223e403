//! The seam between lameduck and an async runtime: spawn, sockets and a
//! timer — nothing else.
//!
//! A binding implements [`Runtime`] in one file (`smol.rs`, later
//! `async_std.rs`) and decides nothing about the lifecycle: which connection
//! to close, when and why is the core's business, carried out by the driver
//! above this seam. Everything a binding supplies is listed here.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};

#[cfg(feature = "smol")]
mod smol;
#[cfg(feature = "smol")]
pub use self::smol::Smol;

/// What lameduck needs from an async runtime: spawning detached tasks, a
/// timer at an [`Instant`], and non-blocking TCP and Unix stream sockets.
///
/// Sockets are bound with `std` (or inherited) and then registered with the
/// runtime through [`tcp_listener`](Runtime::tcp_listener) and
/// [`unix_listener`](Runtime::unix_listener). Streams speak `futures-io`.
///
/// ```
/// # #[cfg(feature = "smol")] {
/// use lameduck::runtime::{Runtime, Smol};
///
/// fn spawn_hello<R: Runtime>(rt: &R) {
///     rt.spawn(async { println!("hello from a detached task") });
/// }
/// spawn_hello(&Smol::global());
/// # }
/// ```
pub trait Runtime: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// A TCP listener registered with the runtime's reactor.
    type TcpListener: AsFd + Send + Sync + 'static;
    /// A Unix stream listener registered with the runtime's reactor.
    type UnixListener: AsFd + Send + Sync + 'static;
    /// An accepted TCP connection.
    type TcpStream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;
    /// An accepted Unix stream connection.
    type UnixStream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;

    /// Runs `future` to completion in the background (a detached task).
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// A future that completes once `Instant::now() >= at` (at once if `at`
    /// has passed). Never earlier.
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static;

    /// Registers a bound, listening TCP socket (made non-blocking here).
    fn tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener>;

    /// Registers a bound, listening Unix stream socket (made non-blocking here).
    fn unix_listener(&self, listener: StdUnixListener) -> io::Result<Self::UnixListener>;

    /// Accepts one TCP connection, with `TCP_NODELAY` set (as Go does).
    fn accept_tcp(
        listener: &Self::TcpListener,
    ) -> impl Future<Output = io::Result<Self::TcpStream>> + Send;

    /// Accepts one Unix stream connection.
    fn accept_unix(
        listener: &Self::UnixListener,
    ) -> impl Future<Output = io::Result<Self::UnixStream>> + Send;

    /// Shuts down the write half of a TCP stream (sends FIN).
    fn tcp_shutdown_write(stream: &Self::TcpStream) -> io::Result<()>;

    /// Shuts down the write half of a Unix stream.
    fn unix_shutdown_write(stream: &Self::UnixStream) -> io::Result<()>;

    /// The local address of a TCP listener.
    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<std::net::SocketAddr>;
}
