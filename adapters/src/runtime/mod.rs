//! The seam between lameduck and an async runtime: spawn, sockets and a
//! timer — nothing else.
//!
//! A binding implements [`Runtime`] in one file and decides nothing about
//! the lifecycle: which connection to close, when and why is the core's
//! business, carried out by the driver above this seam. Everything a
//! binding supplies is listed on the trait. Two ship with lameduck:
//!
//! | feature | binding | tasks | sockets and timer |
//! |---|---|---|---|
//! | `smol` (default) | [`Smol`] | smol's global executor, or your own `smol::Executor` | `async-io` |
//! | `async-std` | `AsyncStd` | async-std's global executor | async-std's |
//!
//! # Binding another runtime
//!
//! Implement [`Runtime`] for a small `Clone` value that can reach your
//! runtime (a handle, or nothing for a global one), and pass it to
//! [`Builder::with_runtime`](crate::Builder::with_runtime). What each item
//! must do:
//!
//! - [`spawn`](Runtime::spawn): run the future to completion in the
//!   background, detached. The driver spawns its timer task, one task per
//!   connection, hook runners and gentle closes; none of them blocks.
//! - [`sleep_until`](Runtime::sleep_until): complete once
//!   `Instant::now() >= at`, **never earlier** (the core's deadlines, e.g.
//!   a new connection's grace, are exact). Completing a little later is
//!   fine. Dropping it must cancel it.
//! - [`tcp_listener`](Runtime::tcp_listener) /
//!   [`unix_listener`](Runtime::unix_listener): register an already bound,
//!   listening `std` socket with the reactor, making it non-blocking. The
//!   listener types must be [`AsFd`]: lameduck stops a listener by
//!   `shutdown(2)` on its descriptor, which wakes a pending accept.
//! - [`accept_tcp`](Runtime::accept_tcp) /
//!   [`accept_unix`](Runtime::accept_unix): one accepted connection (set
//!   `TCP_NODELAY` on TCP, best effort). Return accept errors as they are:
//!   lameduck classifies them (retry, back off on `EMFILE`, give up).
//! - The stream types speak `futures-io`
//!   ([`AsyncRead`]/[`AsyncWrite`]); [`tcp_shutdown_write`](Runtime::tcp_shutdown_write)
//!   and [`unix_shutdown_write`](Runtime::unix_shutdown_write) send a FIN
//!   for gentle closes.
//!
//! A binding is the few dozen lines of `smol.rs` or `async_std.rs`; if a
//! runtime seems to need more (a lifecycle decision, a second timer), the
//! seam is what should change, not the binding. Here, a complete binding
//! for a "runtime" that runs every task on a thread of its own, with
//! `async-io`'s reactor (through smol's re-exports) for sockets and time:
//!
//! ```
//! # #[cfg(feature = "smol")] {
//! use std::future::Future;
//! use std::io;
//! use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
//! use std::os::unix::net::{UnixListener, UnixStream};
//! use std::time::Instant;
//!
//! use lameduck::runtime::Runtime;
//! use smol::{Async, Timer};
//!
//! /// One OS thread per task.
//! #[derive(Clone, Debug)]
//! struct ThreadPerTask;
//!
//! impl Runtime for ThreadPerTask {
//!     type TcpListener = Async<TcpListener>;
//!     type UnixListener = Async<UnixListener>;
//!     type TcpStream = Async<TcpStream>;
//!     type UnixStream = Async<UnixStream>;
//!
//!     fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
//!         std::thread::spawn(move || smol::block_on(future));
//!     }
//!     fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
//!         let timer = Timer::at(at);
//!         async move {
//!             timer.await;
//!         }
//!     }
//!     fn tcp_listener(&self, l: TcpListener) -> io::Result<Self::TcpListener> {
//!         Async::new(l)
//!     }
//!     fn unix_listener(&self, l: UnixListener) -> io::Result<Self::UnixListener> {
//!         Async::new(l)
//!     }
//!     async fn accept_tcp(l: &Self::TcpListener) -> io::Result<Self::TcpStream> {
//!         let (stream, _) = l.accept().await?;
//!         let _ = stream.get_ref().set_nodelay(true);
//!         Ok(stream)
//!     }
//!     async fn accept_unix(l: &Self::UnixListener) -> io::Result<Self::UnixStream> {
//!         Ok(l.accept().await?.0)
//!     }
//!     fn tcp_shutdown_write(s: &Self::TcpStream) -> io::Result<()> {
//!         s.get_ref().shutdown(Shutdown::Write)
//!     }
//!     fn unix_shutdown_write(s: &Self::UnixStream) -> io::Result<()> {
//!         s.get_ref().shutdown(Shutdown::Write)
//!     }
//!     fn tcp_local_addr(l: &Self::TcpListener) -> io::Result<SocketAddr> {
//!         l.get_ref().local_addr()
//!     }
//! }
//!
//! # fn main() -> io::Result<()> {
//! let handle = lameduck::Builder::with_runtime(ThreadPerTask)
//!     .bind("127.0.0.1:0")?
//!     .serve_stream(|conn| async move { drop(conn) })?;
//! handle.shutdown_within(std::time::Duration::from_secs(5));
//! let outcome = smol::block_on(handle.drained().wait()).expect("the driver ran to its end");
//! assert!(outcome.is_graceful());
//! # Ok(()) }
//! # main().unwrap();
//! # }
//! ```
//!
//! # Driving the core yourself
//!
//! When [`Runtime`] does not fit (a completion-based IO model, a
//! hand-written event loop, no `futures-io`), skip this crate and drive
//! [`lameduck_core::Server`] directly under its
//! [run-loop contract](lameduck_core#the-run-loop-contract).
//! `lameduck-core`'s `blocking_server` example does it with blocking
//! `std::net` and no async runtime at all. The calls, in the order this
//! crate's driver makes them:
//!
//! 1. **Start**: [`Server::new(config, now)`](lameduck_core::Server::new),
//!    then [`add_listener()`](lameduck_core::Server::add_listener) per
//!    listening socket (keep the id beside the socket).
//! 2. **Per connection**, each with the current time:
//!    [`accept`](lameduck_core::Server::accept) when it is accepted (an
//!    error means the server is draining: drop the socket unanswered);
//!    [`request_started`](lameduck_core::Server::request_started) on the
//!    first byte of each request (an error that
//!    [`is_conn_closed`](lameduck_core::Error::is_conn_closed) means close
//!    it unanswered: shutdown won the race);
//!    [`headers_complete`](lameduck_core::Server::headers_complete) once
//!    the request head is in, and
//!    [`body_complete`](lameduck_core::Server::body_complete) once its body
//!    is (with a body timeout); [`write_blocked`](lameduck_core::Server::write_blocked)
//!    when a write finds the socket full and
//!    [`write_unblocked`](lameduck_core::Server::write_unblocked) when one
//!    gets through again (with a write timeout); ask [`keep_alive()`](lameduck_core::Server::keep_alive)
//!    when writing the response head (`false`: send `Connection: close`);
//!    [`response_done`](lameduck_core::Server::response_done) after the
//!    response's last byte is written;
//!    a multiplexed connection (HTTP/2) reports
//!    [`stream_opened`](lameduck_core::Server::stream_opened) and
//!    [`stream_closed`](lameduck_core::Server::stream_closed) per stream
//!    instead of the one-request inputs;
//!    [`hijack`](lameduck_core::Server::hijack) when the connection is
//!    taken over (an upgrade); [`closed`](lameduck_core::Server::closed)
//!    when its socket is gone, whoever closed it.
//! 3. **Commands**: [`shutdown(now, deadline)`](lameduck_core::Server::shutdown),
//!    [`close(now)`](lameduck_core::Server::close), and
//!    [`hooks_finished`](lameduck_core::Server::hooks_finished) after the
//!    hooks of an [`Action::RunHooks`](lameduck_core::Action::RunHooks)
//!    have run.
//! 4. **After every call above**, drain
//!    [`poll_action()`](lameduck_core::Server::poll_action) until `None`
//!    and carry each action out: stop a listener, close a connection
//!    (gently, FIN first, unless its reason
//!    [`is_forced`](lameduck_core::CloseReason::is_forced)), finish one
//!    with keep-alive off, notify a hijacked one, run hooks, report
//!    [`Action::Done`](lameduck_core::Action::Done).
//! 5. **Then** read [`poll_timeout()`](lameduck_core::Server::poll_timeout)
//!    and re-arm your one timer if it changed; when it fires, call
//!    [`handle_timeout(now)`](lameduck_core::Server::handle_timeout) and
//!    go to 4.
//!
//! Everything else (which connection to close, when, why) the core
//! decides; an adapter that needs to decide more has found a gap in the
//! core, not a job for itself.

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
#[cfg(feature = "async-std")]
mod async_std;
#[cfg(feature = "async-std")]
pub use self::async_std::AsyncStd;

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
