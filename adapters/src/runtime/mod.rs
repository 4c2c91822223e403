//! The seam between lameduck and an async runtime: spawn, sockets and a
//! timer, on one thread — nothing else.
//!
//! A binding implements [`Runtime`] in one file and decides nothing about
//! the lifecycle: which connection to close, when and why is the core's
//! business, carried out by the driver above this seam. Everything a
//! binding supplies is listed on the trait.
//!
//! # Why the seam looks like this
//!
//! The seam is **local**: a [`Runtime`] value stands for one thread's
//! executor and reactor, and nothing it spawns or registers needs to be
//! `Send`. Thread-per-core runtimes run `!Send` tasks on `!Send` sockets,
//! and completion-based ones own their buffers; a seam that asked for
//! `Send` futures would shut them out, and one driver could not serve both
//! kinds (Rust cannot abstract over `Send`). So lameduck splits a server
//! in two:
//!
//! - the **driver** (the core behind a lock, the done signal, connection
//!   controls, listener descriptors) holds nothing of the runtime's, so any
//!   thread may give it an input — a [`Handle`](crate::Handle) is `Send`
//!   and `Sync`, and signals are handled on whatever thread runs
//!   [`Lifecycle`](crate::unix::Lifecycle);
//! - the **worker** on the runtime's thread runs accept loops, connection
//!   tasks, the one deadline timer, gentle closes and hooks, spawned with
//!   [`Runtime::spawn`]. The driver reaches it by message.
//!
//! Accepted streams are the one exception: they must be `Send`, because
//! hyper hands an upgraded connection (`101`) to the application as a
//! `Send` stream.
//!
//! A server runs on the current thread's runtime
//! ([`Builder::with_runtime`](crate::Builder::with_runtime): your executor,
//! your thread) or on a thread a [`Launch`] starts
//! ([`Builder::with_launcher`](crate::Builder::with_launcher),
//! [`Builder::new`](crate::Builder::new)): then nothing is left for the
//! application to run.
//!
//! | feature | binding | tasks | sockets and timer |
//! |---|---|---|---|
//! | `smol` (default) | [`Smol`] ([`Launch`]; each thread a [`SmolLocal`]) | a smol `LocalExecutor` on each thread lameduck starts | `async-io` |
//! | `smol` | [`SmolLocal`] ([`Runtime`]) | your `smol::LocalExecutor`, on your thread | `async-io` |
//! | `compio` | `Compio` ([`Launch`]; each thread a `CompioLocal`) | a compio runtime (io_uring, or polling where io_uring is unavailable) on each thread lameduck starts | compio's driver: readiness (`PollFd`) for accept, read and write |
//! | `compio` | `CompioLocal` ([`Runtime`]) | your compio runtime, on your thread | compio's |
//! | `tokio` | `Tokio` ([`Launch`]; each thread a `TokioLocal`) | a current-thread runtime with a `LocalSet` on each thread lameduck starts | tokio's (streams through tokio-util's compat) |
//! | `tokio` | `TokioLocal` ([`Runtime`]) | your `LocalSet`, on your thread | tokio's |
//! | `async-std` | `AsyncStd` ([`Launch`]; each thread an `AsyncStdThread`) | a local executor on each thread, under async-std's `block_on` | async-std's |
//!
//! async-std was discontinued upstream in 2025 (RUSTSEC-2025-0052); its
//! binding is kept for its users, and shaped nothing here.
//!
//! # Binding another runtime
//!
//! Implement [`Runtime`] for a small `Clone` value that reaches your
//! runtime's executor on the current thread, and pass it to
//! [`Builder::with_runtime`](crate::Builder::with_runtime) on that thread;
//! to let lameduck start the thread, implement [`Launch`] too. What each
//! item must do:
//!
//! - [`spawn`](Runtime::spawn): run the future to completion in the
//!   background on this thread, detached. The worker spawns its task, one
//!   task per connection, hook runners and gentle closes; none blocks.
//! - [`sleep_until`](Runtime::sleep_until): complete once
//!   `Instant::now() >= at`, **never earlier** (the core's deadlines, e.g.
//!   a new connection's grace, are exact). Completing a little later is
//!   fine. Dropping it must cancel it.
//! - [`tcp_listener`](Runtime::tcp_listener) /
//!   [`unix_listener`](Runtime::unix_listener): register an already bound,
//!   listening `std` socket with the reactor, making it non-blocking. The
//!   listener types must be [`AsFd`]: lameduck keeps a descriptor of its
//!   own for the socket, to stop it (`shutdown(2)`, which wakes a pending
//!   accept, only on sockets it created) and to hand it to a successor.
//! - [`accept_tcp`](Runtime::accept_tcp) /
//!   [`accept_unix`](Runtime::accept_unix): one accepted connection (set
//!   `TCP_NODELAY` on TCP, best effort). **Cancel-safe**: dropping the
//!   future must not lose a connection (lameduck drops it to stop
//!   accepting). Return accept errors as they are: lameduck classifies them
//!   (retry, back off on `EMFILE`, give up).
//! - The stream types speak `futures-io`
//!   ([`AsyncRead`]/[`AsyncWrite`]); [`tcp_shutdown_write`](Runtime::tcp_shutdown_write)
//!   and [`unix_shutdown_write`](Runtime::unix_shutdown_write) send a FIN
//!   for gentle closes.
//! - [`Launch::launch`]: start a thread with the executor, run the
//!   [`ThreadMain`] there, then the tasks still spawned until none is left.
//!
//! A binding is the few dozen lines of `smol_local.rs` or `async_std.rs`;
//! if a runtime seems to need more (a lifecycle decision, a second timer),
//! the seam is what should change, not the binding. Here, a complete
//! binding in one file — a runtime from smol's `LocalExecutor` and
//! `async-io`'s reactor — that lameduck launches on a thread of its own:
//!
//! ```
//! # #[cfg(feature = "smol")] {
//! use std::future::Future;
//! use std::io;
//! use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
//! use std::os::unix::net::{UnixListener, UnixStream};
//! use std::rc::Rc;
//! use std::time::Instant;
//!
//! use lameduck::runtime::{Launch, Runtime, ThreadMain};
//! use smol::{Async, LocalExecutor, Timer};
//!
//! /// One thread's executor.
//! #[derive(Clone, Debug)]
//! struct Mine(Rc<LocalExecutor<'static>>);
//!
//! impl Runtime for Mine {
//!     type TcpListener = Async<TcpListener>;
//!     type UnixListener = Async<UnixListener>;
//!     type TcpStream = Async<TcpStream>;
//!     type UnixStream = Async<UnixStream>;
//!
//!     fn spawn<F: Future<Output = ()> + 'static>(&self, future: F) {
//!         self.0.spawn(future).detach();
//!     }
//!     fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + 'static {
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
//! /// Starts threads running `Mine`.
//! struct MineThreads;
//!
//! impl Launch for MineThreads {
//!     type Runtime = Mine;
//!     fn launch(&self, name: String, main: ThreadMain<Mine>) -> io::Result<std::thread::JoinHandle<()>> {
//!         std::thread::Builder::new().name(name).spawn(move || {
//!             let executor = Rc::new(LocalExecutor::new());
//!             let main = main(Mine(executor.clone()));
//!             smol::block_on(executor.run(async {
//!                 main.await;
//!                 // Then what is still spawned (closing connections).
//!                 while !executor.is_empty() {
//!                     executor.tick().await;
//!                 }
//!             }));
//!         })
//!     }
//! }
//!
//! # fn main() -> io::Result<()> {
//! let handle = lameduck::Builder::with_launcher(MineThreads)
//!     .bind("127.0.0.1:0")?
//!     .serve_stream(|conn| async move { drop(conn) })?;
//! handle.shutdown_within(std::time::Duration::from_secs(5));
//! let outcome = smol::block_on(handle.finished()).expect("the driver ran to its end");
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
//!    when its socket is gone, whoever closed it. Optionally, to keep the
//!    lock off a kept-alive connection's requests, take its
//!    [`lease`](lameduck_core::Server::lease) at the accept and offer each
//!    request event to it first ([`lameduck_core::lease`]): only the
//!    events it refuses are inputs.
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
use std::pin::Pin;
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};

#[cfg(feature = "async-std")]
mod async_std;
#[cfg(feature = "async-std")]
pub use self::async_std::{AsyncStd, AsyncStdThread};
#[cfg(feature = "smol")]
mod smol;
#[cfg(feature = "smol")]
pub use self::smol::Smol;
#[cfg(feature = "smol")]
mod smol_local;
#[cfg(feature = "smol")]
pub use self::smol_local::SmolLocal;
#[cfg(feature = "compio")]
mod compio;
#[cfg(feature = "compio")]
pub use self::compio::{Compio, CompioLocal, CompioStream};
#[cfg(feature = "tokio")]
mod tokio;
#[cfg(feature = "tokio")]
pub use self::tokio::{Tokio, TokioLocal};

/// What lameduck needs from an async runtime, on one thread: spawning
/// tasks there, a timer at an [`Instant`], and non-blocking TCP and Unix
/// stream sockets. Nothing here needs `Send`: tasks, sockets and the
/// runtime handle may all be bound to the thread (thread-per-core and
/// completion-based runtimes), and a value of this type is used only on
/// the thread whose executor it stands for. Only accepted streams must be
/// `Send` (see [`TcpStream`](Runtime::TcpStream)).
///
/// Sockets are bound with `std` (or inherited) and then registered with the
/// runtime through [`tcp_listener`](Runtime::tcp_listener) and
/// [`unix_listener`](Runtime::unix_listener). Streams speak `futures-io`.
///
/// ```
/// # #[cfg(feature = "smol")] {
/// use std::rc::Rc;
/// use lameduck::runtime::{Runtime, SmolLocal};
///
/// fn spawn_hello<R: Runtime>(rt: &R) {
///     rt.spawn(async { println!("hello from a task of this thread") });
/// }
/// let executor = Rc::new(smol::LocalExecutor::new());
/// spawn_hello(&SmolLocal::new(executor.clone()));
/// while executor.try_tick() {}
/// # }
/// ```
pub trait Runtime: Clone + std::fmt::Debug + 'static {
    /// A TCP listener registered with the runtime's reactor.
    type TcpListener: AsFd + 'static;
    /// A Unix stream listener registered with the runtime's reactor.
    type UnixListener: AsFd + 'static;
    /// An accepted TCP connection. `Send`, unlike the rest: hyper hands an
    /// upgraded connection (a `101 Switching Protocols`) to the application
    /// as a `Send` stream.
    type TcpStream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// An accepted Unix stream connection (`Send`, as a TCP one).
    type UnixStream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Runs `future` to completion in the background (a detached task on
    /// this thread's executor).
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + 'static;

    /// A future that completes once `Instant::now() >= at` (at once if `at`
    /// has passed). Never earlier.
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + 'static;

    /// Registers a bound, listening TCP socket (made non-blocking here).
    fn tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener>;

    /// Registers a bound, listening Unix stream socket (made non-blocking here).
    fn unix_listener(&self, listener: StdUnixListener) -> io::Result<Self::UnixListener>;

    /// Accepts one TCP connection, with `TCP_NODELAY` set (as Go does).
    fn accept_tcp(
        listener: &Self::TcpListener,
    ) -> impl Future<Output = io::Result<Self::TcpStream>>;

    /// Accepts one Unix stream connection.
    fn accept_unix(
        listener: &Self::UnixListener,
    ) -> impl Future<Output = io::Result<Self::UnixStream>>;

    /// Shuts down the write half of a TCP stream (sends FIN).
    fn tcp_shutdown_write(stream: &Self::TcpStream) -> io::Result<()>;

    /// Shuts down the write half of a Unix stream.
    fn unix_shutdown_write(stream: &Self::UnixStream) -> io::Result<()>;

    /// The local address of a TCP listener.
    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<std::net::SocketAddr>;
}

/// What a server's thread runs: given that thread's [`Runtime`], the
/// future of its part of the server (it ends when the server is finished).
pub type ThreadMain<R> = Box<dyn FnOnce(R) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A runtime that runs on threads of its own: starts one OS thread with
/// its executor (and reactor) and runs a [`ThreadMain`] there to
/// completion. This is how [`Builder::new`](crate::Builder::new) and
/// [`Builder::with_launcher`](crate::Builder::with_launcher) serve without
/// the application running an executor for lameduck.
pub trait Launch: Send + Sync + 'static {
    /// The runtime of each thread.
    type Runtime: Runtime;

    /// Starts a thread named `name` running this runtime, runs `main` on it
    /// to completion, then the tasks spawned there until none is left (a
    /// connection closed by the server's end still runs to let go of its
    /// socket), then lets the thread end.
    fn launch(
        &self,
        name: String,
        main: ThreadMain<Self::Runtime>,
    ) -> io::Result<std::thread::JoinHandle<()>>;
}

/// Runs `main` on `executor`, then the tasks still there until none is
/// left: a connection closed by the server's end (`close`, the deadline)
/// must still run to let go of its socket. (Tasks hold the executor, so it
/// is never dropped with them pending.)
#[cfg(any(feature = "smol", feature = "async-std"))]
async fn run_out(
    executor: &async_executor::LocalExecutor<'static>,
    main: impl Future<Output = ()>,
) {
    executor.run(main).await;
    // Each pass runs one task step; ends when every task has completed.
    while !executor.is_empty() {
        executor.tick().await;
    }
}
