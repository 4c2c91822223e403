//! Signals, zero-downtime restart by passing the listening sockets, and
//! systemd.
//!
//! # The pieces
//!
//! - [`Inherited`]: adopt listening sockets passed in systemd's
//!   socket-activation format (`LISTEN_FDS`, `LISTEN_PID`,
//!   `LISTEN_FDNAMES`, descriptors 3, 4, …) — from a systemd `.socket`
//!   unit on first start, or from a restarting predecessor. Strictly
//!   validated: a bad variable, or a descriptor that is not a listening
//!   stream socket, is a precise [`InheritError`]. Variables for another
//!   process (a `LISTEN_PID` not ours) are ignored with a warning, as
//!   systemd's `sd_listen_fds` does. The variables are removed after
//!   adoption.
//! - [`Builder::inherit_or_bind`](crate::Builder::inherit_or_bind): serve
//!   the inherited socket of that name, or bind a new one.
//! - [`Lifecycle`]: runs the server's life: signals ([`SignalConfig`]:
//!   `SIGTERM`/`SIGINT` drain, a second one closes at once, `SIGHUP`
//!   restarts, `SIGUSR2` closes at once), readiness, restarts, systemd
//!   notifications and the pid file. Everything is also a method
//!   ([`Lifecycle::shutdown`], [`Lifecycle::close`], [`Lifecycle::restart`]).
//! - [`Supervisor`]: supervisor mode — restarts that keep one process id
//!   for the service's whole life (see below).
//! - [`handoff`]: the hand-off's environment variables, and
//!   [`spawn_with_listeners`](handoff::spawn_with_listeners): start any
//!   program with listening sockets handed over the way systemd does it.
//!
//! # A restart, step by step
//!
//! The protocol's decisions (one restart at a time, the readiness
//! deadline, rollback) are [`lameduck_core::restart::Restart`]'s; this
//! module carries out its actions.
//!
//! 1. `SIGHUP` (or [`Lifecycle::restart`]): systemd is told `RELOADING=1`
//!    with `MONOTONIC_USEC`.
//! 2. The successor — this executable, as it is on disk now, with the same
//!    arguments — is started with the listeners at descriptors 3, 4, … (in
//!    the order they were added, named), `LISTEN_FDS`, `LISTEN_FDNAMES`,
//!    `LISTEN_PID` set to its own pid (written between `fork` and `exec`),
//!    (and the [control socket](ControlSocket), if one is served, named
//!    `lameduck-control`), and one end of a private hand-off channel (a
//!    Unix socket pair) at the next descriptor, named by
//!    `LAMEDUCK_READY_FD`, on which the restart state
//!    ([`LifecycleBuilder::restart_state`], [`StateOffer`]) is sent at once with
//!    its descriptors; the Unix sockets whose files this
//!    process would remove at its end are named by `LAMEDUCK_OWNED_FDS`
//!    (one of [`handoff::VARS`]): the file goes with the last process serving
//!    it. Every other descriptor is closed on
//!    `exec`. Both processes now accept on the same sockets: a connection
//!    waits in the kernel's backlog until one of them takes it.
//! 3. The successor adopts the sockets ([`Inherited::from_env`]), takes
//!    the state ([`Inherited::take_state`]: `TAKEN`, or `REFUSED <why>`,
//!    which rolls the restart back), starts serving, and once every accept
//!    loop runs, [`Lifecycle::run`] writes `READY=1` to the channel (the
//!    core's [`lameduck_core::handover::Transfer`] then commits).
//! 4. This process then writes the pid file, tells systemd
//!    `MAINPID=<successor>` and `READY=1` (a `Type=notify-reload` unit
//!    follows the new process), stops accepting **without** shutting the
//!    sockets down (a connection it already accepted is still served), and
//!    drains ([`lameduck_core::Server::hand_off`]): its in-flight requests
//!    finish here with `Connection: close`; idle keep-alive connections
//!    stay open for a moment ([`LifecycleBuilder::handoff_linger`], 1 s), so a
//!    client's next request is answered (and the client reconnects, to
//!    the successor) rather than finding its connection closed under it;
//!    then the rest close, and the process exits.
//! 5. If the successor cannot be started, exits, or is not ready by the
//!    deadline ([`LifecycleBuilder::ready_timeout`], default 60 s), it is killed
//!    and reaped, systemd hears `READY=1` again, and this process keeps
//!    serving: [`RestartError::Failed`] says why.
//!
//! # Which restart mode
//!
//! - **Direct restart** ([`Lifecycle`], the default): the successor
//!   replaces this process, so the main pid changes at every restart. Under
//!   **systemd** that is what you want: `Type=notify-reload` with
//!   `MAINPID=` follows the new process, and nothing stays behind.
//! - **Supervisor mode** ([`Supervisor`]): a small parent binds the
//!   sockets once and runs the server as child generations over the same
//!   hand-off; its pid is the service's for its whole life. For process
//!   managers that track the pid they started and cannot follow a new one
//!   — **supervisord**, **containers** whose PID 1 is the server,
//!   **`docker stop`** (which signals PID 1) — and anything watching a pid
//!   file that must not change. As PID 1 it also reaps orphans.
//!
//! In supervisor mode the protocol is the restart's, between the
//! supervisor and its generations: each generation gets the listeners at
//! 3, 4, …, a hand-off channel (`LAMEDUCK_READY_FD`; kept open once the
//! generation is ready: the supervisor asks it for its restart state
//! there when it starts the next one) and a **link**
//! (`LAMEDUCK_SUPERVISOR_FD`, one of [`handoff::VARS`]): a pipe only the
//! supervisor writes to. On `SIGHUP` the supervisor starts the next
//! generation, waits for its `READY=1`, then writes `HANDOFF <pid>` on the
//! previous one's link: that one stops accepting *without* `shutdown(2)`
//! on the shared sockets (nor removing a Unix socket's file: the
//! supervisor owns it), lingers for idle keep-alive clients, drains and
//! exits — step 4 above. Stopping is not a message: `SIGTERM`, `SIGINT`
//! and `SIGUSR2` are forwarded as they are, so a generation stops exactly
//! as it would alone. The end of the link means the supervisor died: the
//! generation drains and exits. A generation adopts all of it with
//! [`Inherited::from_env`] and [`LifecycleBuilder::inherited`], unchanged code:
//! it then reports readiness to the supervisor, refuses to restart itself
//! ([`RestartError::Supervised`]), and leaves systemd and the pid file to
//! the supervisor.
//!
//! # systemd
//!
//! Example units are in the repository's `docs/systemd/`:
//! `lameduck-demo.service` (`Type=notify-reload`, so `systemctl reload`
//! sends `SIGHUP` and waits for the hand-off) and `lameduck-demo.socket`
//! (systemd owns the listening socket; the server adopts it). The service
//! needs `NotifyAccess=main` (the default for `Type=notify`): only the main
//! process talks to systemd, and the hand-off moves "main" to the
//! successor. `NOTIFY_SOCKET` is left in the environment, so the successor
//! reaches systemd too. (In supervisor mode the supervisor is the main
//! process throughout: `READY=1`, `RELOADING=1`/`READY=1`, `STOPPING=1`,
//! never `MAINPID=`; its generations send nothing.)
//!
//! Beyond those steps the main process (or the supervisor) sends
//! `STATUS=` lines (serving, restarting, draining with the connections
//! left), `WATCHDOG=1` at half of `WatchdogSec=` while healthy, and
//! `EXTEND_TIMEOUT_USEC=` while a long drain makes progress: the rules are
//! [`lameduck_core::systemd::ServiceNotifier`]'s, carried out here only
//! under systemd (`NOTIFY_SOCKET` set) and unless
//! [`LifecycleBuilder::notify`]`(false)` / [`Supervisor::notify`]`(false)`:
//!
//! - The interval is `WATCHDOG_USEC`, honoured when `WATCHDOG_PID` is
//!   unset or names this process; a malformed value is reported
//!   ([`LifecycleEvent::Problem`]) and the watchdog stays off.
//! - **Wedged** means: a [`Lifecycle`] pings from a task on the server's
//!   runtime, which first reads [`Handle::snapshot`](crate::Handle::snapshot)
//!   under the driver's lock. An executor that no longer runs tasks, or a
//!   driver stuck holding its lock, stops the pings; systemd's watchdog
//!   then fires. A slow request handler does not.
//! - Across a restart: the old process sends a last `WATCHDOG=1` just
//!   before `MAINPID=` and nothing after it; the successor starts with
//!   `WATCHDOG_PID` removed (unset means "yours"), stays quiet for its
//!   first tick while its predecessor announces it, then pings.
//! - A [`Supervisor`] pings from its own event loop while a generation
//!   serves (or the service stops): its pings say the supervisor is alive,
//!   not that the serving generation's executor is — a wedged generation
//!   is not detected in supervisor mode. Its statuses carry no counts, and
//!   it never extends the stop timeout.
//! - These messages never block the server's executor: one that finds
//!   systemd's queue full is dropped (and reported once).
//!
//! # Example
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::Incoming};
//! use lameduck::unix::{Inherited, Lifecycle};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from("hello\n"))))
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // First thing, before any thread starts: adopt what systemd or a
//!     // predecessor passed (nothing, when started by hand).
//!     let mut inherited = Inherited::from_env()?;
//!     smol::block_on(async {
//!         let handle = lameduck::Builder::new()
//!             .inherit_or_bind(&mut inherited, "http", "127.0.0.1:8080")?
//!             .serve_http(hello)?;
//!         let ended = Lifecycle::builder(handle)
//!             .inherited(inherited)
//!             .shutdown_within(Duration::from_secs(30))
//!             .pid_file("/run/hello.pid")
//!             .on_event(|event| eprintln!("{event}"))
//!             .build()
//!             .run()
//!             .await?;
//!         eprintln!("done: {:?}", ended.outcome);
//!         Ok(())
//!     })
//! }
//! ```

mod attempt;
mod child;
mod ctl;
mod error;
pub mod handoff;
mod lifecycle;
mod notify;
mod pidfile;
mod signals;
mod supervisor;
mod tasks;

pub use ctl::{
    CONTROL_NAME, ControlError, ControlSocket, Restarted, control_restart, control_status,
};
pub use error::RestartError;
pub use handoff::error::InheritError;
pub use handoff::inherit::Inherited;
pub use handoff::inherited_listener::InheritedListener;
pub use handoff::state::{RestartState, StateError, StateOffer};
pub use lifecycle::{Ended, Lifecycle, LifecycleBuilder, LifecycleEvent, LifecycleSnapshot};
pub use signals::{Signal, SignalAction, SignalConfig};
pub use supervisor::{Supervisor, SupervisorEvent};

// The core's types that appear in this module's signatures, named here
// (`Lifecycle::restart_phase`, `RestartError`, `LifecycleEvent`,
// `InheritError::Env`, `StateError`).
pub use lameduck_core::activation::ActivationError;
pub use lameduck_core::handover::{DecodeError, FrameError};
pub use lameduck_core::restart::{RestartFailure, RestartPhase};
