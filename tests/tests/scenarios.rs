//! The scenario suite (Go's shutdown behaviours over real sockets), the
//! same test bodies on every runtime binding — one test binary, a module
//! per binding. The `async-std` and `tokio` bindings need their features
//! (`cargo test --workspace --all-features`).

mod smol {
    lameduck_tests::scenarios!(lameduck_tests::harness::SmolRt);
}

mod smol_threads {
    lameduck_tests::scenarios!(lameduck_tests::harness::SmolThreadsRt);
}

mod smol_local {
    lameduck_tests::scenarios!(lameduck_tests::harness::SmolLocalRt);
}

#[cfg(feature = "tokio")]
mod tokio {
    lameduck_tests::scenarios!(lameduck_tests::harness::TokioRt);
}

#[cfg(feature = "async-std")]
mod async_std {
    lameduck_tests::scenarios!(lameduck_tests::harness::AsyncStdRt);
}
