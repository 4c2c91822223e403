//! Graceful shutdown and zero-downtime restart for network servers on any
//! async runtime — smol, smol's local executor, compio (thread-per-core),
//! tokio, async-std, or one bound in one file — built on the runtime-free
//! state machines of [`lameduck_core`] (the core's types in this crate's
//! signatures are re-exported here; a loop of your own uses that crate).
//!
//! A [`Builder`] binds listeners (TCP and Unix) and starts one **driver**
//! per server: it feeds accepts, connection events and timeouts into the
//! core, carries out the core's actions (close this connection, finish that
//! one without keep-alive, notify a hijacked one, stop a listener) and
//! re-arms a single timer only when the core's next deadline changes. The
//! core decides every lifecycle question; this crate observes and obeys.
//!
//! Serve **HTTP/1.1 and HTTP/2** through hyper ([`Server::serve_http`]:
//! HTTP/2 with prior knowledge next to HTTP/1.1 on the same cleartext
//! listeners; tracking, and the GOAWAY drain, in [`http`]) or **raw streams** for custom protocols
//! ([`Server::serve_stream`], [`RawConn`]). Connections accepted elsewhere
//! (a listener of your own, a TLS acceptor, an in-memory pipe) are served
//! the same way through [`Handle::serve_io`]. With the `tls` feature, a
//! server speaks **TLS** (rustls) on every TCP listener: `Builder::tls`
//! with a `tls::TlsAcceptor` (the `tls` module says how the lifecycle
//! goes over TLS). Control it with a [`Handle`]:
//! [`shutdown`](Handle::shutdown) (with a deadline),
//! [`close`](Handle::close), the done signal [`drained`](Handle::drained),
//! [`counts`](Handle::counts), [`phase`](Handle::phase).
//!
//! # Embedding
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::Incoming};
//!
//! async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from("hello\n"))))
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     smol::block_on(async {
//!         let handle = lameduck::Builder::new().bind("127.0.0.1:0")?.serve_http(hello)?;
//!         println!("listening on {}", handle.local_addrs()[0]);
//!         # handle.shutdown_within(Duration::ZERO); // (here: stop at once)
//!         // SIGTERM/SIGINT drain (in-flight requests finish; a second signal
//!         // closes at once), SIGHUP restarts with no connection lost.
//!         let ended = lameduck::unix::Lifecycle::builder(handle)
//!             .shutdown_within(Duration::from_secs(30))
//!             # .notify(false)
//!             .build()
//!             .run()
//!             .await?;
//!         println!("done: {:?}", ended.outcome);
//!         Ok(())
//!     })
//! }
//! ```
//!
//! Without [`unix`] (signals of your own): [`Handle::shutdown_within`]
//! when you decide to stop, then [`Handle::finished`] — done, and no
//! gentle close left that exiting would turn into a reset.
//!
//! # Runtimes
//!
//! The seam is [`runtime::Runtime`]: spawn, a timer, sockets, on one
//! thread — nothing else, and nothing that must be `Send` but accepted
//! streams. A server runs on a thread of its own ([`Builder::new`]: smol,
//! [`runtime::Smol`]; [`Builder::with_launcher`] for another
//! [`runtime::Launch`], e.g. the `async-std` feature's `runtime::AsyncStd`)
//! or on your executor, on the current thread ([`Builder::with_runtime`],
//! e.g. [`runtime::SmolLocal`] on your `smol::LocalExecutor`). Either way
//! the [`Handle`] works from any thread. Everything above the seam — the
//! driver, HTTP/1.1, raw streams, the handle — is one implementation
//! shared by every runtime.
//!
//! **Another runtime** takes one small implementation of
//! [`runtime::Runtime`]; the [`runtime`] module docs say what each item
//! must guarantee and show a complete binding. Where even that does not
//! fit, drive [`lameduck_core::Server`] from your own loop: the
//! [`runtime`] module docs list the calls a driver makes and in which
//! order, under the core's
//! [run-loop contract](lameduck_core#the-run-loop-contract).
//!
//! # Signals, zero-downtime restart and systemd
//!
//! [`unix::Lifecycle`] runs a served [`Handle`]'s life: `SIGTERM`/`SIGINT`
//! drain (a second one closes at once), `SIGHUP` restarts by handing the
//! listening sockets to a new process in systemd's socket-activation format
//! (the old one finishes its in-flight requests, then exits; a successor
//! that fails is killed and reaped and the old one keeps serving),
//! `SIGUSR2` closes at once — all configurable, all also methods. It speaks
//! `sd_notify` (`Type=notify-reload` units follow the new process), keeps a
//! pid file, and [`unix::Inherited`] adopts sockets from a systemd `.socket`
//! unit. Example units: `docs/systemd/` in the repository. Where the
//! process id must not change (supervisord, a container's PID 1,
//! `docker stop`), [`unix::Supervisor`] restarts child generations of a
//! small parent that holds the sockets and reaps every child.
//!
//! # Closing sockets
//!
//! A connection the core closes after a complete response (idle at the
//! drain, keep-alive off, grace, timeouts) is closed gently: FIN first, then
//! whatever the peer still sends is read and discarded until its FIN, for at
//! most 500 ms (Go's `closeWriteAndWait`), so a reset never destroys a
//! response the peer has not read yet; over TLS, `close_notify` goes out
//! before the FIN. Connections forced closed (shutdown deadline,
//! [`Handle::close`]) are dropped at once.
//!
//! Unix only for now (it uses `AsFd` and Unix sockets).

#![deny(unsafe_code)]

// The core's types that appear in this crate's signatures (and `Error`,
// what a refused `Handle::serve_io` carries), at its root, one path each.
// A loop of your own depends on `lameduck-core` itself.
pub use lameduck_core::{
    Abandoned, CloseReason, Completion, Config, ConnId, Counts, DrainProgress, Drained, Error,
    HookStage, ListenerId, Outcome, Phase, Snapshot,
};

// Inside, from the bottom up: `sync` (locks, waits, stop signals),
// `control` (a connection's commands), `listener` (listening sockets as the
// driver sees them), `hooks` (shutdown hooks by stage); `driver` (the core
// under its lock) and `conn` (an accepted connection's IO, tied to the
// driver — the one import cycle among them, by nature); `worker` (a server
// on its runtime), `accept` (accept loops), `tls`, `http`, `stream`
// (serving); `server`, `handle`, `handed_in` (the public face); `event` (the
// one `Event`, which nests `unix`'s); `unix` (signals, restarts, systemd).
mod accept;
mod conn;
mod control;
mod driver;
mod event;
mod handed_in;
mod handle;
mod hooks;
pub mod http;
mod listener;
pub mod runtime;
mod server;
mod stream;
mod sync;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(unix)]
pub mod unix;
mod worker;

pub use conn::Notice;
pub use event::Event;
pub use handle::Handle;
pub use listener::ListenAddr;
pub use server::{Builder, Server};
pub use stream::RawConn;
