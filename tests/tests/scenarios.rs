//! The scenario suite (Go's shutdown behaviours over real sockets), the
//! same test bodies on every runtime binding — one test binary, a module
//! per binding; the HTTP/2, TLS and drain-notice scenarios beside them in
//! each module. The
//! `async-std`, `tokio` and `compio` bindings and TLS need their features
//! (`cargo test --workspace --all-features`).

mod smol {
    lameduck_testkit::scenarios!(lameduck_testkit::harness::SmolRt);
}

mod smol_threads {
    lameduck_testkit::scenarios!(lameduck_testkit::harness::SmolThreadsRt);
}

mod smol_local {
    lameduck_testkit::scenarios!(lameduck_testkit::harness::SmolLocalRt);
}

#[cfg(feature = "tokio")]
mod tokio {
    lameduck_testkit::scenarios!(lameduck_testkit::harness::TokioRt);
}

#[cfg(feature = "compio")]
mod compio {
    lameduck_testkit::scenarios!(lameduck_testkit::harness::CompioRt);
}

#[cfg(feature = "compio")]
mod compio_polling {
    lameduck_testkit::scenarios!(lameduck_testkit::harness::CompioPollRt);
}

#[cfg(feature = "async-std")]
mod async_std {
    lameduck_testkit::scenarios!(lameduck_testkit::harness::AsyncStdRt);
}

/// Which compio driver served: io_uring where this kernel (or container)
/// allows it, the poller otherwise — and the poller when asked for. The
/// suite above runs on both.
#[cfg(feature = "compio")]
#[test]
fn compio_says_which_driver_serves() {
    use ::compio::driver::DriverType;
    use lameduck::runtime::Compio;
    use std::sync::{Arc, Mutex};

    for (launcher, forced) in [
        (Compio::new(), None),
        (
            Compio::with_driver(DriverType::Poll),
            Some(DriverType::Poll),
        ),
    ] {
        let seen = Arc::new(Mutex::new(None));
        let record = seen.clone();
        let handle = lameduck::Builder::with_launcher(launcher)
            .bind("127.0.0.1:0")
            .unwrap()
            .build()
            .unwrap()
            .serve_stream(move |conn| {
                *record.lock().unwrap() = Some(conn_driver());
                async move { drop(conn) }
            });
        let addr = match &handle.local_addrs()[0] {
            lameduck::ListenAddr::Tcp(addr) => *addr,
            other => panic!("{other}"),
        };
        drop(std::net::TcpStream::connect(addr).unwrap());
        lameduck_testkit::harness::wait_until(
            "a connection served",
            lameduck_testkit::harness::EVENTUALLY,
            || seen.lock().unwrap().is_some(),
        );
        let driver = seen.lock().unwrap().unwrap();
        eprintln!("compio served on {driver:?} (asked for {forced:?})");
        match forced {
            Some(want) => assert_eq!(driver, want),
            None => assert!(driver.is_iouring() || driver.is_polling(), "{driver:?}"),
        }
        handle.close();
    }

    /// The driver of the current thread's compio runtime.
    fn conn_driver() -> DriverType {
        lameduck::runtime::CompioLocal::new().driver_type()
    }
}
