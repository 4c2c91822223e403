//! Core micro-benchmarks ("core cost"): a full connection cycle,
//! a shutdown over N idle connections, and allocations per transition (the
//! allocation profiler's columns). Run: `cargo bench -p lameduck-core`.

use std::time::{Duration, Instant};

use divan::{AllocProfiler, Bencher, black_box};
use lameduck_core::{Config, ListenerId, Server};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

fn config() -> Config {
    Config {
        idle_timeout: Some(Duration::from_secs(60)),
        header_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    }
}

#[allow(clippy::disallowed_methods)] // benchmarks need an origin for virtual time
fn origin() -> Instant {
    Instant::now()
}

/// A server with `n` idle keep-alive connections.
fn with_idle(n: usize, t0: Instant) -> (Server, ListenerId) {
    let mut server = Server::new(config(), t0);
    let l = server.add_listener().unwrap();
    for _ in 0..n {
        let c = server.accept(l, t0).unwrap();
        server.request_started(c, t0).unwrap();
        server.headers_complete(c, t0).unwrap();
        server.response_done(c, t0).unwrap();
    }
    (server, l)
}

/// accept → active → head complete → idle → closed: four transitions, with
/// 1 000 other idle connections resident and every timer armed.
#[divan::bench]
fn connection_cycle(bencher: Bencher<'_, '_>) {
    let t0 = origin();
    let (mut server, l) = with_idle(1_000, t0);
    let mut step = 0u64;
    bencher.bench_local(|| {
        step += 1;
        let now = t0 + Duration::from_nanos(step);
        let c = server.accept(l, now).unwrap();
        server.request_started(c, now).unwrap();
        server.headers_complete(c, now).unwrap();
        server.response_done(c, now).unwrap();
        server.closed(c, now).unwrap();
        while let Some(a) = server.poll_action() {
            black_box(a);
        }
        black_box(server.poll_timeout())
    });
}

/// `shutdown` over N idle connections, draining every resulting action.
#[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 20, sample_size = 1)]
fn shutdown_idle(bencher: Bencher<'_, '_>, n: usize) {
    let t0 = origin();
    bencher
        .with_inputs(|| with_idle(n, t0).0)
        .bench_local_values(|mut server| {
            server.shutdown(t0, None);
            let mut closes = 0usize;
            while let Some(a) = server.poll_action() {
                closes += usize::from(matches!(a, lameduck_core::Action::CloseConn { .. }));
            }
            assert_eq!(closes, n);
            assert!(server.is_done());
            server
        });
}
