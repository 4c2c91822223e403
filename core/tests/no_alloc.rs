//! Zero heap allocation per state transition in steady state, measured with a
//! counting global allocator ("no allocation per transition").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use lameduck_core::{Config, ConnEvent, ConnId, Server};

/// Counts allocations made by the current thread, so the test harness's
/// other threads do not disturb the figure.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; counting touches only a const-initialised thread-local `Cell`,
// which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded verbatim; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded verbatim; `ptr` came from `System` via `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded verbatim; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// One full connection cycle with every timer kind armed and re-armed:
/// accept (with a lease, as lameduck's driver takes) → active → head →
/// write stall → body → idle (lent) → active → head (and body) → idle →
/// active and idle again through the lease → closed.
fn cycle(server: &mut Server, listener: lameduck_core::ListenerId, now: Instant) -> ConnId {
    let c = server.accept(listener, now).unwrap();
    let lease = server.lease(c).unwrap();
    let clock = server.lease_clock();
    server.request_started(c, now).unwrap();
    server.headers_complete(c, now).unwrap();
    server.write_blocked(c, now).unwrap();
    server.write_unblocked(c, now).unwrap();
    server.body_complete(c, now).unwrap();
    server.write_blocked(c, now).unwrap();
    server.write_unblocked(c, now).unwrap();
    server.response_done(c, now).unwrap();
    server.request_started(c, now).unwrap();
    server.body_complete(c, now).unwrap();
    server.response_done(c, now).unwrap();
    assert!(lease.advance(ConnEvent::RequestStarted, &clock, || now));
    assert!(lease.advance(ConnEvent::BodyComplete, &clock, || now));
    assert!(lease.advance(ConnEvent::ResponseDone, &clock, || now));
    let _ = server.poll_timeout();
    c
}

#[test]
fn steady_state_transitions_do_not_allocate() {
    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    let t0 = Instant::now();
    let config = Config {
        idle_timeout: Some(Duration::from_secs(60)),
        header_timeout: Some(Duration::from_secs(10)),
        body_timeout: Some(Duration::from_secs(30)),
        write_timeout: Some(Duration::from_secs(20)),
        ..Config::default()
    };
    let mut server = Server::new(config, t0);
    let l = server.add_listener().unwrap();
    // Keep some connections open throughout, as a real server has.
    let resident: Vec<ConnId> = (0..256).map(|_| cycle(&mut server, l, t0)).collect();

    let mut step = 0u64;
    let mut now = || {
        step += 1;
        t0 + Duration::from_micros(step)
    };
    // Warm up: let the tables and the deadline heap reach their working size.
    for _ in 0..10_000 {
        let at = now();
        let c = cycle(&mut server, l, at);
        server.closed(c, at).unwrap();
        while server.poll_action().is_some() {}
    }

    let before = allocations();
    let mut transitions = 0u64;
    for _ in 0..100_000 {
        let at = now();
        let c = cycle(&mut server, l, at);
        server.closed(c, at).unwrap();
        while server.poll_action().is_some() {}
        transitions += 16;
    }
    let allocated = allocations() - before;
    assert_eq!(
        allocated, 0,
        "{allocated} allocations over {transitions} transitions"
    );
    assert_eq!(server.counts().idle, resident.len());
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a test that cannot fail: the allocator does count.
    let before = allocations();
    let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(16));
    assert!(allocations() > before);
    drop(v);
}
