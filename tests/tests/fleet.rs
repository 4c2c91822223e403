//! The fleet drill, short: two demo backends behind a real load balancer
//! (HAProxy, active `GET /healthz` checks every 100 ms, `fall 1`,
//! `retries 0`), keep-alive, new-connection and slow clients through it,
//! and a rolling restart of both backends in each style — SIGTERM and a
//! fresh process on the same port (the Kubernetes pattern), then SIGHUP
//! (in place) — with not one failed request. The long drill, with the
//! negative controls, is the benchmark's `fleet` section (`bench/`).
//!
//! Skipped, with a message, where `haproxy` is not installed; `.ci/install`
//! installs it, so CI runs it.

use std::net::SocketAddr;
use std::time::Instant;

use lameduck_tests::balancer::{self, Haproxy, find_haproxy, server_name};
use lameduck_tests::load::{LoadRun, scratch_dir, wait_serving};
use lameduck_tests::process::{Demo, EVENTUALLY, Signal, parse_first_line, send_signal};

/// Ten health-check intervals: the balancer takes a backend out long before
/// its listener closes, even on a busy machine.
const LAME_DUCK: &str = "1";

fn backend(addr: SocketAddr) -> Demo {
    Demo::start(&[
        "--listen",
        &addr.to_string(),
        "--grace",
        "10",
        "--lame-duck",
        LAME_DUCK,
    ])
}

/// SIGTERM to backend `i`, and a fresh process on its port once it has
/// exited; waits until the balancer has taken it out (its `/healthz`
/// answered 503 while it still accepted) and put the new one back.
fn replace(lb: &Haproxy, backends: &mut [Demo], i: usize) {
    let name = server_name(i);
    let addr = backends[i].tcp_addrs()[0];
    let old = backends[i].current();
    send_signal(old, Signal::TERM);
    lb.wait_status(&name, "DOWN", EVENTUALLY).unwrap();
    let (status, stderr) = backends[i].wait_exit();
    assert_eq!(status.code(), Some(0), "backend {i}: {stderr:?}");
    let lame_duck = stderr.iter().position(|l| l == "serve: phase: lame duck");
    let draining = stderr.iter().position(|l| l == "serve: phase: draining");
    assert!(
        lame_duck.is_some() && lame_duck < draining,
        "backend {i}: lame duck, then drain: {stderr:?}"
    );
    backends[i] = backend(addr);
    lb.wait_status(&name, "UP", EVENTUALLY).unwrap();
}

/// SIGHUP to backend `i`'s current generation; waits for the successor's
/// first line, the hand-off, and the successor serving its port.
fn restart_in_place(lb: &Haproxy, backends: &mut [Demo], i: usize) {
    let demo = &mut backends[i];
    let addr = demo.tcp_addrs()[0];
    let old = demo.current();
    let from = demo.stderr_seen.len();
    send_signal(old, Signal::HUP);
    let (addrs, new) = parse_first_line(&demo.next_first_line());
    assert_eq!(addrs, [addr], "the successor serves the same socket");
    demo.wait_stderr_from(from, &format!("pid {old} handed off to pid {new}"));
    wait_serving(addr, new);
    assert_eq!(lb.status(&server_name(i)).unwrap(), "UP");
}

/// Two backends behind HAProxy, rolled by SIGTERM + start and then by
/// SIGHUP under load through the balancer: every request succeeds.
#[test]
fn rolling_restarts_behind_haproxy_fail_no_request() {
    let Some(haproxy) = find_haproxy() else {
        eprintln!(
            "SKIPPED rolling_restarts_behind_haproxy_fail_no_request: `haproxy` is not \
             installed (apt-get install haproxy; .ci/install does it for CI)"
        );
        return;
    };
    let started = Instant::now();
    let dir = scratch_dir("fleet");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut backends: Vec<Demo> = (0..2).map(|_| backend(any)).collect();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.tcp_addrs()[0]).collect();
    let frontend = SocketAddr::from(([127, 0, 0, 1], balancer::free_port().unwrap()));
    let plan = balancer::Plan::drill(frontend, addrs);
    let lb = Haproxy::start(&haproxy, &dir, &plan, EVENTUALLY).unwrap();
    for i in 0..backends.len() {
        lb.wait_status(&server_name(i), "UP", EVENTUALLY).unwrap();
    }
    let run = LoadRun::through_balancer(lb.addr);
    for i in 0..backends.len() {
        run.wait_slow_in_flight();
        replace(&lb, &mut backends, i);
        run.restarted();
    }
    for i in 0..backends.len() {
        run.wait_slow_in_flight();
        restart_in_place(&lb, &mut backends, i);
        run.restarted();
    }
    let report = run.finish();
    let haproxy_said = lb.stderr_now();
    drop(lb);
    report.assert_lossless(5);
    eprintln!(
        "fleet drill (2 backends behind HAProxy, one round each of SIGTERM + start and \
         SIGHUP): {} responses, 0 failed; {}; {:.1} s; haproxy said {haproxy_said:?}",
        report.total,
        report.per_kind.join("; "),
        started.elapsed().as_secs_f64()
    );
    drop(backends);
    let _ = std::fs::remove_dir_all(&dir);
}
