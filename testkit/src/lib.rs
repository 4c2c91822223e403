//! Test a server's lifecycle against lameduck's reference model, and prove a
//! runtime binding with the suite lameduck's own bindings pass.
//!
//! lameduck's own tests run through this crate: its property tests check
//! `lameduck-core` against [`model`], and every binding it ships (smol, smol's
//! `LocalExecutor`, tokio, compio, async-std) passes the conformance suite
//! here. The same parts are yours:
//!
//! | | what | needs |
//! |---|---|---|
//! | [`model`] | a reference model of the server machine, the [`Op`](model::Op)s it is driven by, and a [`Harness`](model::Harness) running them against the core and the model in lock step, checking the lifecycle's invariants | `lameduck-core`, `proptest` |
//! | [`strategy`] | proptest strategies of scenarios and op sequences | |
//! | [`clock`] | a [`VirtualClock`](clock::VirtualClock): time that moves when the test says | |
//! | [`supervisor_model`] | the same for the supervisor machine (unix) | |
//! | [`fuzz`] | the bodies of lameduck's fuzz targets, as plain functions | |
//! | [`conformance!`], [`harness`], [`scenarios`](mod@scenarios), [`scenarios_h2`](mod@scenarios_h2), [`scenarios_drain_notice`], [`adversarial`](mod@adversarial), [`adversarial_h2`](mod@adversarial_h2), [`seam`] | the real-socket conformance suite, as functions of a [`Binding`](harness::Binding) | feature `conformance` (`lameduck` without a binding, hyper's HTTP/2 client) |
//! | `scenarios_tls`, `tls` | the TLS scenarios (HTTPS and HTTP/2 by ALPN), in the suite when the feature is on; a test CA and rustls clients | feature `tls` (lameduck's `tls`: rustls; rcgen) |
//! | [`harness::SmolRt`] and others | lameduck's own bindings as [`Binding`](harness::Binding)s | features `smol`, `tokio`, `compio`, `async-std`, each pulling in only its runtime |
//!
//! # Testing your server's lifecycle
//!
//! The model is for code that lives with lameduck's lifecycle: a driver of
//! your own around [`lameduck_core::Server`], or your application's hooks
//! and bookkeeping. Everything runs in virtual time — no sockets, no
//! sleeps, thousands of scenarios a second — and a failure shrinks to a few
//! ops.
//!
//! Random scenarios (configuration and ops, from [`strategy::scenarios`])
//! checked against the model, the core's every answer, action, state,
//! count and deadline compared, and the invariants checked at every step:
//!
//! ```
//! use lameduck_testkit::model::Harness;
//! use lameduck_testkit::strategy;
//! use proptest::prelude::*;
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(64))]
//!     // #[test] in your tests; called below here.
//!     fn the_core_agrees_with_the_model(scenario in strategy::scenarios()) {
//!         let _observed = Harness::check(&scenario);
//!     }
//! }
//! # the_core_agrees_with_the_model();
//! ```
//!
//! Your own code takes part through [`Harness::step`](model::Harness::step):
//! each op says what the core answered and which actions it queued, so the
//! test plays the application's part (here: a hook that must write out an
//! access log, with a line per completed response) and checks a property of
//! its own (here: nothing unwritten when the drain completes):
//!
//! ```
//! use lameduck_core::{Action, Completion, Config, HookStage};
//! use lameduck_testkit::model::{Harness, Op, Scenario};
//!
//! #[derive(Default)]
//! struct AccessLog { buffered: usize, written: usize, draining: bool }
//!
//! fn check(scenario: &Scenario) -> Result<(), String> {
//!     let mut log = AccessLog::default();
//!     let mut harness = Harness::new(scenario.config.clone());
//!     for op in &scenario.ops {
//!         let step = harness.step(*op)?;
//!         if matches!(op, Op::ResponseDone(_)) && step.result == Some(Ok(())) {
//!             log.buffered += 1;
//!             if log.draining {
//!                 // Once the hook ran, write through. Without this, the
//!                 // lines of requests in flight at the drain are lost.
//!                 log.written += std::mem::take(&mut log.buffered);
//!             }
//!         }
//!         for action in step.actions {
//!             match action {
//!                 Action::RunHooks(HookStage::Drain) => {
//!                     log.draining = true;
//!                     log.written += std::mem::take(&mut log.buffered);
//!                 }
//!                 Action::Done(o) if o.completion == Completion::Drained && log.buffered > 0 => {
//!                     return Err(format!("{} lines unwritten", log.buffered));
//!                 }
//!                 _ => {}
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//!
//! // A request in flight when the drain begins, completing after the hook.
//! let config = Config { shutdown_hooks: true, ..Config::default() };
//! let ops = vec![
//!     Op::AddListener, Op::Accept(0), Op::RequestStarted(0),
//!     Op::Shutdown(None), Op::ResponseDone(0), Op::HooksFinished(HookStage::Drain),
//! ];
//! assert_eq!(check(&Scenario { config: config.clone(), ops }), Ok(()));
//!
//! // And random ones: `proptest!` with `strategy::with_config(config)`.
//! # use proptest::prelude::*;
//! # proptest!(|(scenario in lameduck_testkit::strategy::with_config(config))| {
//! #     prop_assert_eq!(check(&scenario), Ok(()));
//! # });
//! ```
//!
//! The whole example, with proptest finding (and shrinking) the scenario
//! that loses a line when the hook only flushes, is
//! `examples/flush_on_shutdown.rs` in this crate.
//! To drive the core by hand instead, pass it a [`VirtualClock`](clock::VirtualClock)'s
//! time (its module shows a new connection's grace, exact to the
//! millisecond).
//!
//! # Proving your binding
//!
//! A binding of your runtime implements [`lameduck::runtime::Runtime`] (and
//! [`Launch`](lameduck::runtime::Launch), if lameduck is to start its
//! threads); the `runtime` module of `lameduck` says what each item must do.
//! To prove it, tell the suite where a server runs on it — a
//! [`Binding`](harness::Binding) — and instantiate the suite in one test
//! file with [`conformance!`]:
//!
//! ```
//! # #[cfg(feature = "smol")] mod doc {
//! # use lameduck::runtime::{Smol as MyThreads, SmolLocal as MyRuntime};
//! use lameduck::{Builder, Handle};
//! use lameduck_testkit::harness::Binding;
//!
//! /// Where the suite serves: threads lameduck starts with `MyThreads`,
//! /// each running a `MyRuntime` (which may well be `!Send`).
//! pub struct Mine;
//!
//! impl Binding for Mine {
//!     type Runtime = MyRuntime;
//!     const NAME: &'static str = "mine";
//!
//!     fn serve_on<O, F>(build: F) -> (Handle, O)
//!     where
//!         O: Send + 'static,
//!         F: FnOnce(Builder<MyRuntime>) -> (Handle, O) + Send + 'static,
//!     {
//!         build(Builder::with_launcher(MyThreads::default()))
//!     }
//! }
//!
//! // Every test lameduck's bindings pass, as `#[test]`s of this module.
//! lameduck_testkit::conformance!(Mine);
//! # }
//! ```
//!
//! A runtime you run yourself (no [`Launch`](lameduck::runtime::Launch))
//! serves the same way: `serve_on` starts a thread, builds there with
//! `Builder::with_runtime`, sends the handle back and runs the executor
//! until the server is finished — [`harness::SmolLocalRt`]'s source is the
//! pattern.
//!
//! The suite is the scenarios of Go's `net/http` shutdown model over
//! HTTP/1.1, raw streams and HTTP/2 (h2c: GOAWAY, refused streams), the
//! drain notice (server-sent events ended at the drain, over HTTP/1.1 and
//! HTTP/2), hostile clients (slowloris, floods, clients that never read,
//! garbage, HTTP/2 frames a well-behaved client never sends), TLS with the
//! feature `tls` (`close_notify` at the drain, stalled and garbage
//! handshakes, ALPN), and the seam's own promises
//! checked directly ([`seam`]): a timer never fires early, a write shutdown
//! sends a FIN at once and closes the write half only, a dropped accept loses
//! no connection. Everything runs on 127.0.0.1 with real clients; waits are
//! for observable conditions, bounded generously ([`harness::EVENTUALLY`]),
//! so a loaded CI machine slows the suite down without failing it. A
//! failure names the binding and what broke:
//!
//! ```text
//! [mine] Runtime::sleep_until fired 5ms early (asked for 7ms ahead): a binding's
//! timer must complete only once Instant::now() >= at
//! ```
//!
//! `examples/own_binding.rs` in this crate is a complete one-file binding
//! of a minimal runtime of its own, proven this way, with two broken
//! variants the suite rejects. Keep the suite in one
//! test binary (one file, a module per binding): each further binary links
//! the suite again.

pub mod clock;
pub mod fuzz;
pub mod model;
pub mod strategy;
#[cfg(unix)]
pub mod supervisor_model;

#[cfg(feature = "conformance")]
pub mod adversarial;
#[cfg(feature = "conformance")]
pub mod adversarial_h2;
#[cfg(feature = "conformance")]
pub mod client;
#[cfg(feature = "conformance")]
pub mod duplex;
#[cfg(feature = "conformance")]
pub mod h2;
#[cfg(feature = "conformance")]
pub mod harness;
/// The app the conformance suite serves: lameduck's demo server's routes
/// (`GET /`, `/sleep`, `/stream`, `/healthz`, `POST /echo`, `GET /upgrade`),
/// word for word.
#[cfg(feature = "conformance")]
pub mod routes;
#[cfg(feature = "conformance")]
pub mod scenarios;
#[cfg(feature = "conformance")]
pub mod scenarios_drain_notice;
#[cfg(feature = "conformance")]
pub mod scenarios_h2;
#[cfg(feature = "tls")]
pub mod scenarios_tls;
#[cfg(feature = "conformance")]
pub mod seam;
#[cfg(feature = "tls")]
pub mod tls;

/// Without the feature `tls`, [`scenarios!`] has no TLS scenarios.
#[cfg(all(feature = "conformance", not(feature = "tls")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __scenarios_tls_if_enabled {
    ($rt:ty) => {};
}

/// Instantiates the whole conformance suite — every [`scenarios!`] test
/// (with the seam's checks, the HTTP/2 and the drain-notice scenarios, and
/// the TLS ones with the feature `tls`) and every
/// [`adversarial!`] test (with the HTTP/2 ones) — as `#[test]`s for one
/// [`Binding`](harness::Binding), in the module where it is invoked. See
/// [Proving your binding](crate#proving-your-binding).
#[cfg(feature = "conformance")]
#[macro_export]
macro_rules! conformance {
    ($binding:ty) => {
        $crate::scenarios!($binding);
        $crate::adversarial!($binding);
    };
}
