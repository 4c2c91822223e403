//! Test a server's lifecycle against lameduck's reference model, and prove a
//! runtime binding with the suite lameduck's own bindings pass.
//!
//! - [`model`]: a reference model of `lameduck-core`'s server machine, the
//!   [`Op`](model::Op) decoder shared with the fuzz targets, and a
//!   [`Harness`](model::Harness) that runs ops against the core and the
//!   model in lock step and checks the lifecycle's invariants.
//! - [`supervisor_model`] (unix): a reference model of the core's
//!   supervisor machine, its op decoder (shared with the fuzz target
//!   `supervisor_events`) and [`run_bytes`](supervisor_model::run_bytes),
//!   which runs ops against both in lock step.
//! - [`fuzz`]: the bodies of lameduck's fuzz targets, as plain functions.
//! - With the `conformance` feature, the real-socket suite: [`scenarios`](mod@scenarios)
//!   (Go's shutdown behaviours) and [`adversarial`](mod@adversarial) (hostile clients), each a
//!   function of a [`Binding`](harness::Binding), instantiated as tests by
//!   [`scenarios!`] and [`adversarial!`].
//!
//! The features `smol`, `tokio`, `compio` and `async-std` add lameduck's own
//! bindings as [`Binding`](harness::Binding)s; the model needs none of them.

pub mod clock;
pub mod fuzz;
pub mod model;
pub mod strategy;
#[cfg(unix)]
pub mod supervisor_model;

#[cfg(feature = "conformance")]
pub mod adversarial;
#[cfg(feature = "conformance")]
pub mod client;
#[cfg(feature = "conformance")]
pub mod duplex;
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
pub mod seam;

/// Instantiates the whole conformance suite — every [`scenarios!`] test
/// (with the seam's checks) and every [`adversarial!`] test — as `#[test]`s
/// for one [`Binding`](harness::Binding), in the module where it is
/// invoked:
///
/// ```ignore
/// mod conformance {
///     lameduck_testkit::conformance!(super::MyBinding);
/// }
/// ```
#[cfg(feature = "conformance")]
#[macro_export]
macro_rules! conformance {
    ($binding:ty) => {
        $crate::scenarios!($binding);
        $crate::adversarial!($binding);
    };
}
