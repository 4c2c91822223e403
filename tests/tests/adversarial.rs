//! The adversarial suite (hostile and broken clients beside a well-behaved
//! one), the same test bodies on every runtime binding — one test binary,
//! a module per binding. The `async-std` and `tokio` bindings need their
//! features (`cargo test --workspace --all-features`).

mod smol {
    lameduck_testkit::adversarial!(lameduck_testkit::harness::SmolRt);
}

mod smol_local {
    lameduck_testkit::adversarial!(lameduck_testkit::harness::SmolLocalRt);
}

#[cfg(feature = "tokio")]
mod tokio {
    lameduck_testkit::adversarial!(lameduck_testkit::harness::TokioRt);
}

#[cfg(feature = "compio")]
mod compio {
    lameduck_testkit::adversarial!(lameduck_testkit::harness::CompioRt);
}

#[cfg(feature = "compio")]
mod compio_polling {
    lameduck_testkit::adversarial!(lameduck_testkit::harness::CompioPollRt);
}

#[cfg(feature = "async-std")]
mod async_std {
    lameduck_testkit::adversarial!(lameduck_testkit::harness::AsyncStdRt);
}
