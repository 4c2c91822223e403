//! The lifecycle of a network server and its connections, as pure state
//! machines: Go's `net/http` `Server.Shutdown` model, deterministic,
//! event-driven and runtime-free.
//!
//! This crate owns no socket, reads no clock, starts no task and never sleeps
//! (str0m's rule: it never calls `Instant::now()`; clippy enforces it). An
//! adapter — `lameduck` for smol and async-std, or your own event loop — feeds
//! it what happened and carries out what it asks.
//!
//! # The run-loop contract
//!
//! A [`Server`] is driven by one loop, in the style of quinn-proto:
//!
//! 1. **Inputs.** Report every event as it happens, with the current time:
//!    [`accept`](Server::accept), [`request_started`](Server::request_started)
//!    (first byte of a request read), [`headers_complete`](Server::headers_complete),
//!    [`body_complete`](Server::body_complete) (request body read to its end),
//!    [`write_blocked`](Server::write_blocked) and
//!    [`write_unblocked`](Server::write_unblocked) (a write found the socket
//!    full, and later got through: edges only, not every write),
//!    [`response_done`](Server::response_done) (response fully written),
//!    [`hijack`](Server::hijack), [`closed`](Server::closed); and the
//!    commands [`shutdown`](Server::shutdown), [`close`](Server::close),
//!    [`hooks_finished`](Server::hooks_finished). Every input first handles
//!    the timers due at its `now`. Time never goes backwards: an earlier
//!    `now` counts as the latest seen. A connection's task may record its
//!    kept-alive requests through a [`lease`] instead (lock-free; the
//!    machine lends and takes back): only the events the lease refuses
//!    are inputs.
//! 2. **Outputs.** After every input, drain [`poll_action`](Server::poll_action)
//!    until `None` and carry each [`Action`] out. The core's state already
//!    reflects an action when it is queued (a connection in
//!    [`Action::CloseConn`] is already `Closed`), so carrying it out never
//!    needs to be reported back — reporting [`closed`](Server::closed) for
//!    it anyway is harmless.
//! 3. **Time.** Then read [`poll_timeout`](Server::poll_timeout) and arm one
//!    timer for it (re-arm only when it changed). When it fires, call
//!    [`handle_timeout`](Server::handle_timeout) and go to 2. Early or
//!    repeated calls are harmless.
//! 4. **Queries** are free at any time: [`phase`](Server::phase),
//!    [`conn_state`](Server::conn_state), [`counts`](Server::counts),
//!    [`keep_alive`](Server::keep_alive) (ask it when writing a response
//!    head: `false` means `Connection: close`).
//!
//! [`Action::Done`] is queued exactly once, last; after it the machine is
//! [`Phase::Closed`] and only [`closed`](Server::closed) for hijacked
//! connections still matters. Refusals are [`Error`]s that change nothing:
//! [`Error::ConnClosed`] is the normal answer to a race in a concurrent
//! adapter ([`Error::is_conn_closed`]: close the connection unanswered);
//! the others are caller mistakes (unknown ids, events that do not fit a
//! state). A panic is a bug.
//!
//! # Example: a drain under a simulated clock
//!
//! ```
//! use std::time::{Duration, Instant};
//! use lameduck_core::{Action, CloseReason, Completion, Config, Phase, Server};
//!
//! // Virtual time: an origin and offsets the test chooses. Nothing sleeps.
//! let t0 = Instant::now();
//! let at = |ms: u64| t0 + Duration::from_millis(ms);
//!
//! let mut server = Server::new(Config::default(), t0);
//! let listener = server.add_listener().unwrap();
//! let silent = server.accept(listener, at(0)).unwrap(); // never sends a byte
//! let busy = server.accept(listener, at(0)).unwrap();
//! server.request_started(busy, at(1)).unwrap();
//!
//! server.shutdown(at(100), Some(at(30_000)));
//! let mut actions = Vec::new();
//! actions.extend(std::iter::from_fn(|| server.poll_action()));
//! assert!(actions.contains(&Action::CloseListener(listener)));
//! assert!(actions.contains(&Action::FinishAndClose(busy)));
//!
//! // The loop sleeps until the core's next deadline: the silent
//! // connection's grace, exactly 5 s after its accept.
//! assert_eq!(server.poll_timeout(), Some(at(5_000)));
//! server.response_done(busy, at(2_000)).unwrap();
//! assert_eq!(
//!     server.poll_action(),
//!     Some(Action::CloseConn { conn: busy, reason: CloseReason::KeepAliveOff })
//! );
//! server.handle_timeout(at(5_000));
//! actions.clear();
//! actions.extend(std::iter::from_fn(|| server.poll_action()));
//! assert_eq!(actions[0], Action::CloseConn { conn: silent, reason: CloseReason::NewConnGrace });
//! let Some(Action::Done(outcome)) = actions.last() else { panic!("done comes last") };
//! assert_eq!(outcome.completion, Completion::Drained);
//! assert_eq!(server.phase(), Phase::Closed);
//! assert_eq!(server.poll_timeout(), None);
//! ```
//!
//! # Go's semantics, and where this differs
//!
//! | Go `net/http` | here |
//! |---|---|
//! | `Serve` after `Shutdown` returns `ErrServerClosed` | [`Error::ServerClosed`] from [`Server::add_listener`], and from [`Server::accept`] once draining |
//! | `Shutdown` polls for quiescence (1 ms doubling to 500 ms) | the input that removes the last connection queues [`Action::Done`] |
//! | StateNew counts as idle after 5 s, whole seconds, seen at the next poll | [`Config::new_conn_grace`] measured exactly from the accept, reported by [`Server::poll_timeout`] |
//! | idle conns closed at shutdown; active ones finish with keep-alive off | the same: [`CloseReason::Drain`], [`Action::FinishAndClose`], [`Server::keep_alive`] |
//! | request bytes on an idle conn after shutdown began: closed unanswered | the same: [`Error::ConnClosed`] from [`Server::request_started`] |
//! | hijacked conns forgotten; `RegisterOnShutdown` hooks not awaited | [`Action::NotifyHijacked`]; hooks awaited ([`Config::shutdown_hooks`]) up to the deadline; opt-in [`Config::wait_for_hijacked`] |
//! | a handler learns that `Shutdown` began only by wiring a `RegisterOnShutdown` hook of its own (else a long-lived response holds the drain until `ctx` expires) | [`Action::NotifyActive`] when the drain begins, so streams can end cleanly |
//! | `Shutdown(ctx)` returns at the deadline and leaves conns open | the deadline closes what remains; [`Outcome::forced`] counts it |
//! | `ReadHeaderTimeout` | [`Config::header_timeout`] |
//! | `ReadTimeout` (head and body, as a read deadline) | [`Config::header_timeout`] for the head, then [`Config::body_timeout`] for the body, from the head's end: exact deadlines that close the connection ([`CloseReason::BodyTimeout`]) |
//! | `WriteTimeout` (a deadline on the whole response) | [`Config::write_timeout`]: a *stall* timeout — no write progress for that long — so long streams live while stuck clients go ([`CloseReason::WriteTimeout`]) |
//! | `Close()` | [`Server::close`] |
//! | `doneChan` closed once | [`Action::Done`] once; [`done_signal`] for any executor |
//!
//! Beyond Go: a lame-duck phase ([`Config::lame_duck`]) in which readiness
//! reports draining while listeners still accept, for load balancers.
//!
//! # Restart and socket activation
//!
//! [`restart`] is the binary-upgrade protocol as a second pure machine
//! (spawn a successor with the listeners, wait for its readiness with a
//! deadline, hand off or roll back). [`activation`] reads and writes the
//! systemd socket-activation variables (`LISTEN_PID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES`) that carry the listeners across, strictly.
//! [`supervisor`] is supervisor mode as a third: a parent with a stable
//! pid runs the server as child generations and decides which one serves,
//! when the previous one hands off, when a stop escalates to `SIGKILL`,
//! and which exit status it ends with.
//! [`handover`] is the restart state's wire format, decoder and
//! commit/abort decision: named bytes and descriptors a process hands its
//! successor beside the listeners.
//! [`systemd`] decides what a service tells systemd beyond `READY=1`:
//! `STATUS=` lines, `WATCHDOG=1` keep-alives (and reads `WATCHDOG_USEC`),
//! `EXTEND_TIMEOUT_USEC=` while a long drain makes progress.
//!
//! # Features
//!
//! - `async` (default): [`done_signal`], [`Drained`] — a done signal built on
//!   `async-channel`. Without it the crate depends on `std` only.
//!
//! # Stability of the enums
//!
//! What a machine asks of its driver and tells it — [`Action`],
//! [`RestartAction`](restart::RestartAction),
//! [`SupervisorAction`](supervisor::SupervisorAction), [`Phase`], [`CloseReason`], [`Completion`],
//! [`ConnState`] — is matched exhaustively on purpose: a driver must carry
//! out every action, and a new one must fail its build rather than be
//! ignored by a `_` arm. So adding a variant to one of them is a breaking
//! change, released as one (a new minor version while the crate is 0.x).
//! Errors are `#[non_exhaustive]`: a new way to fail is not breaking, and
//! callers report errors through `Display`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod action;
pub mod activation;
mod config;
mod conn;
mod deadlines;
#[cfg(feature = "async")]
mod done;
mod error;
pub mod handover;
pub mod lease;
mod listener;
mod phase;
pub mod restart;
mod server;
pub mod supervisor;
pub mod systemd;
mod time;

pub use action::{Action, CloseReason, Completion, HookStage, Outcome};
pub use config::Config;
pub use conn::{ConnId, ConnState};
#[cfg(feature = "async")]
pub use done::{Abandoned, DoneSender, Drained, done_signal};
pub use error::{ConnEvent, Error};
pub use listener::ListenerId;
pub use phase::Phase;
pub use server::{Counts, DrainProgress, Server, Snapshot};
