//! The adversarial suite (hostile and broken clients beside a well-behaved
//! one), the same test bodies on every runtime binding — one test binary,
//! a module per binding. The `async-std` and `tokio` bindings need their
//! features (`cargo test --workspace --all-features`).

mod smol {
    lameduck_tests::adversarial!(lameduck_tests::harness::SmolRt);
}

mod smol_local {
    lameduck_tests::adversarial!(lameduck_tests::harness::SmolLocalRt);
}

#[cfg(feature = "tokio")]
mod tokio {
    lameduck_tests::adversarial!(lameduck_tests::harness::TokioRt);
}

#[cfg(feature = "compio")]
mod compio {
    lameduck_tests::adversarial!(lameduck_tests::harness::CompioRt);
}

#[cfg(feature = "compio")]
mod compio_polling {
    lameduck_tests::adversarial!(lameduck_tests::harness::CompioPollRt);
}

#[cfg(feature = "async-std")]
mod async_std {
    lameduck_tests::adversarial!(lameduck_tests::harness::AsyncStdRt);
}
