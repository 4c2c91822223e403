//! Zero-downtime restart, signals and systemd, as process tests of the demo
//! server (`examples/serve`) with real signals on loopback: restarts under
//! load, failing successors, signal storms, descriptor and environment
//! hygiene, socket activation, and the `sd_notify` sequence.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lameduck_testkit::client::Client;
use lameduck_tests::load::{
    FAILING_SUCCESSORS, Install, Load, LoadRun, Tally, install, new_connection_client, pid_at,
    scratch_dir, wait_serving,
};
use lameduck_tests::process::{
    Demo, EVENTUALLY, NotifySocket, Signal, children_of, fd_kinds, fds, has_exited,
    parse_first_line, send_signal, serve_binary, socket_holders, start_environment, wait_exited,
    wait_fd_kinds, wait_gone_within, zombies_of,
};

fn signal(pid: u32, signal: Signal) {
    send_signal(pid, signal);
}

/// One SIGHUP to the current generation; returns the successor's pid once
/// it is handed off to and new connections reach it.
fn restart(demo: &mut Demo, addrs: &[SocketAddr]) -> u32 {
    let old = demo.current();
    let stderr_from = demo.stderr_seen.len();
    signal(old, Signal::HUP);
    let line = demo.next_first_line();
    let (new_addrs, new) = parse_first_line(&line);
    assert_eq!(new_addrs, addrs, "the successor serves the same sockets");
    assert_ne!(new, old);
    demo.wait_stderr_from(stderr_from, &format!("pid {old} handed off to pid {new}"));
    wait_serving(addrs[0], new);
    new
}

// ----- restart under load ---------------------------------------------------

const RESTARTS: usize = 20;
/// Restarts under load on each of the other runtimes.
const RESTARTS_PER_RUNTIME: usize = 5;

/// The demo restarted 20 times by SIGHUP while keep-alive clients, clients
/// with a new connection per request, and slow requests run: no request
/// fails or is cut short, `/pid` changes every time, every slow response
/// comes from the process its connection reached, and every generation
/// drains cleanly.
#[test]
fn restart_under_load_loses_nothing() {
    restart_under_load(&[], RESTARTS);
}

/// The same on the other runtimes — compio and tokio on two threads (the
/// listeners of both go to each successor), smol's local executor on the
/// main thread — with fewer restarts each.
#[test]
fn restart_under_load_loses_nothing_on_every_runtime() {
    let mut runtimes = vec![vec!["--runtime", "smol-local"]];
    if cfg!(feature = "compio") {
        runtimes.push(vec!["--runtime", "compio", "--threads", "2"]);
    }
    if cfg!(feature = "tokio") {
        runtimes.push(vec!["--runtime", "tokio", "--threads", "2"]);
    }
    for args in runtimes {
        eprintln!("{}", args.join(" "));
        restart_under_load(&args, RESTARTS_PER_RUNTIME);
    }
}

/// Restarts under load of HTTP/2 clients (h2c, with prior knowledge):
/// several streams at once on each connection, slow streams across each
/// hand-off, one HTTP/1.1 client beside them. No request fails: a stream
/// in flight when the old process drains completes there (GOAWAY lets it
/// finish); a request the old process never processed (sent after its
/// GOAWAY reached the client) is retried on a new connection — counted,
/// and allowed, as HTTP/2 allows.
#[test]
fn restart_under_h2_load_loses_nothing() {
    restart_under_load_with("h2", &[], RESTARTS_PER_RUNTIME, LoadRun::start_h2);
}

/// `restarts` SIGHUPs to the demo started with `args`, under load.
fn restart_under_load(args: &[&str], restarts: usize) {
    restart_under_load_with("", args, restarts, LoadRun::start);
}

/// `restarts` SIGHUPs to the demo started with `args`, under the load
/// `start` starts (`label` names the run's scratch directory).
fn restart_under_load_with(
    label: &str,
    args: &[&str],
    restarts: usize,
    start: fn(SocketAddr) -> LoadRun,
) {
    let started = Instant::now();
    // A directory per run: the tests of this file run side by side.
    let dir = scratch_dir(&format!("load{label}{}", args.join("").replace('-', "")));
    let pid_file = dir.join("serve.pid");
    let mut all = vec![
        "--listen",
        "127.0.0.1:0",
        "--grace",
        "30",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let mut demo = Demo::start(&all);
    let addrs = demo.tcp_addrs();
    let run = start(addrs[0]);
    let mut pids = vec![demo.pid()];
    for round in 1..=restarts {
        // A slow request sent since the last hand-off is in flight when
        // the signal goes out.
        run.wait_slow_in_flight();
        let new = restart(&mut demo, &addrs);
        run.restarted();
        assert!(!pids.contains(&new), "round {round}: pid {new} again");
        pids.push(new);
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap().trim(),
            new.to_string(),
            "round {round}: the pid file names the successor"
        );
    }
    // Let the clients run against the last generation too, then stop them.
    let report = run.finish();
    let last = demo.current();
    signal(last, Signal::TERM);
    wait_exited(last);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    // Every client got at least one response per generation.
    report.assert_lossless((restarts as u64).min(10));
    let drained = stderr
        .iter()
        .filter(|l| {
            l.as_str() == "serve: done: drained, forced=0, hooks_cut_off=false, hijacked_open=0"
        })
        .count();
    assert_eq!(
        drained,
        restarts + 1,
        "every generation drains cleanly: {stderr:?}"
    );
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    // A normal drain or hand-off logs no accept error.
    assert!(
        !stderr.iter().any(|l| l.contains("accept on listener")),
        "{stderr:?}"
    );
    // Restarts are numbered across the server's life, not per process.
    for generation in 2..=restarts + 1 {
        let line = format!("restart to generation {generation} (attempt 1 of this process)");
        assert_eq!(
            stderr.iter().filter(|l| l.contains(&line)).count(),
            1,
            "{line}: {stderr:?}"
        );
    }
    assert!(
        !pid_file.exists(),
        "the last generation removes its pid file"
    );
    eprintln!(
        "restart under load ({args:?}): {restarts} restarts, {} responses, 0 failed, \
         {} retried (HTTP/2, never processed), {} slow responses across a restart; {}; {:.1} s",
        report.total,
        report.retried,
        report.across,
        report.per_kind.join("; "),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The negative control: the same clients against a naive restart (stop,
/// then start a new process on the same port) do see failures — so the
/// zero above is the hand-off's doing, not the clients' blindness.
#[test]
fn negative_control_a_naive_stop_start_fails_requests() {
    let first = Demo::start(&["--listen", "127.0.0.1:0", "--grace", "5"]);
    let addr = first.tcp_addrs()[0];
    let load = Arc::new(Load::new(addr, Duration::from_secs(60)));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (load, tally) = (load.clone(), tally.clone());
            std::thread::spawn(move || new_connection_client(&load, &tally))
        })
        .collect();
    let mut first = first;
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    while tally.ok.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "the clients stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    first.signal(Signal::TERM);
    let (status, _) = first.wait_exit();
    assert_eq!(status.code(), Some(0));
    // The port is free again only once the first process is gone.
    let second = Demo::start(&["--listen", &addr.to_string()]);
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    while tally.failures.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    load.stop.store(true, Ordering::Release);
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    let failures = tally.failures.lock().unwrap().clone();
    assert!(!failures.is_empty(), "a naive stop/start refused nothing?");
    eprintln!("negative control (naive stop/start): {failures:?}");
    drop(second);
}

// ----- failing successors ---------------------------------------------------

/// Successors that exit at once, never report ready, or cannot be executed
/// at all: each time the old process keeps serving (a keep-alive
/// connection included), no zombie is left, and a later restart with a good
/// executable succeeds.
#[test]
fn failing_successors_roll_back() {
    let dir = scratch_dir("failing");
    let exe = dir.join("serve");
    install(&exe, Install::Binary(&serve_binary()));
    let mut command = Command::new(&exe);
    command.args(["--listen", "127.0.0.1:0", "--ready-timeout", "1.5"]);
    let mut demo = Demo::spawn(command);
    let addrs = demo.tcp_addrs();
    let pid = demo.pid();
    let mut kept = Client::connect(addrs[0]).unwrap();
    assert_eq!(kept.get("/pid").unwrap().text(), pid.to_string());
    let baseline = fds(pid);

    for (what, contents, expected) in FAILING_SUCCESSORS {
        install(&exe, contents);
        let from = demo.stderr_seen.len();
        let t0 = Instant::now();
        signal(pid, Signal::HUP);
        let line = demo.wait_stderr_from(from, "restart failed: ");
        assert!(line.contains(expected), "{what}: {line}");
        assert!(
            line.ends_with(&format!("still serving (pid {pid})")),
            "{what}: {line}"
        );
        if what == "never ready" {
            assert!(
                t0.elapsed() >= Duration::from_millis(1400),
                "{what}: too early"
            );
        }
        // The failed successor, if it was started, is gone and reaped.
        if let Some(started) = demo.stderr_seen[from..]
            .iter()
            .find_map(|l| l.strip_prefix("serve: restart: successor pid "))
        {
            let child: u32 = started.split(' ').next().unwrap().parse().unwrap();
            wait_exited(child);
        }
        assert!(
            zombies_of(pid).is_empty(),
            "{what}: zombies {:?}",
            zombies_of(pid)
        );
        let reaper_deadline = Instant::now() + EVENTUALLY;
        // One look per pass; bounded by the deadline.
        while !children_of(pid).is_empty() {
            assert!(
                Instant::now() < reaper_deadline,
                "{what}: children {:?}",
                children_of(pid)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Still serving: new connections and the old keep-alive one.
        assert_eq!(pid_at(addrs[0]).unwrap(), pid, "{what}");
        assert_eq!(kept.get("/pid").unwrap().text(), pid.to_string(), "{what}");
        assert!(!has_exited(pid));
        // Nothing of the failed attempt stays open here (pipe, sockets):
        // once the test's short connections are closed on both ends, the
        // descriptors are the ones from before (a leak never gets there).
        wait_fd_kinds(pid, &fd_kinds(&baseline), what);
    }

    install(&exe, Install::Binary(&serve_binary()));
    let new = restart(&mut demo, &addrs);
    // The old keep-alive connection is closed by the old process's drain.
    let (rest, _) = kept.read_until_closed().unwrap();
    assert!(rest.is_empty());
    signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Successors that are wrapper scripts starting a child of their own that
/// inherits the listening socket (and the readiness pipe): one never
/// reports ready, one exits at once. Each rollback kills the whole attempt
/// — the wrapper's child too — so no process is left holding the listening
/// socket (the port would go on accepting into a backlog nobody serves),
/// and the old process keeps serving with the descriptors it had.
#[test]
fn a_failed_successors_own_children_are_killed_too() {
    let dir = scratch_dir("wrapper");
    let exe = dir.join("serve");
    install(&exe, Install::Binary(&serve_binary()));
    let mut command = Command::new(&exe);
    command.args(["--listen", "127.0.0.1:0", "--ready-timeout", "1.5"]);
    let mut demo = Demo::spawn(command);
    let addrs = demo.tcp_addrs();
    let pid = demo.pid();
    let mut kept = Client::connect(addrs[0]).unwrap();
    assert_eq!(kept.get("/pid").unwrap().text(), pid.to_string());
    let baseline = fds(pid);
    assert!(socket_holders(pid).is_empty(), "{:?}", socket_holders(pid));

    let child_file = dir.join("wrapper-child.pid");
    let cases = [
        ("wrapper never ready", "wait", "was not ready in time"),
        (
            "wrapper exits at once",
            "exit 7",
            "exited before it was ready (exit status: 7)",
        ),
    ];
    for (what, then, expected) in cases {
        let _ = std::fs::remove_file(&child_file);
        // The child's pid, written whole (renamed into place).
        let script = format!(
            "#!/bin/sh\nsleep 300 &\necho $! > '{file}.tmp' && mv '{file}.tmp' '{file}'\n{then}\n",
            file = child_file.display()
        );
        install(&exe, Install::Script(&script, true));
        let from = demo.stderr_seen.len();
        signal(pid, Signal::HUP);
        let line = demo.wait_stderr_from(from, "restart failed: ");
        assert!(line.contains(expected), "{what}: {line}");
        let started = demo.stderr_seen[from..]
            .iter()
            .find_map(|l| l.strip_prefix("serve: restart: successor pid "))
            .expect("the successor was started");
        let successor: u32 = started.split(' ').next().unwrap().parse().unwrap();
        wait_exited(successor);
        // The wrapper wrote its child's pid before it waited or exited.
        let grandchild: u32 = std::fs::read_to_string(&child_file)
            .unwrap_or_else(|e| panic!("{what}: no child pid file: {e}"))
            .trim()
            .parse()
            .unwrap();
        if let Err(e) = wait_gone_within(grandchild, EVENTUALLY) {
            // Not left running for minutes after a failed test.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(grandchild as i32).unwrap(),
                Signal::KILL,
            );
            panic!("{what}: the successor's child survived the rollback: {e}");
        }
        // No process but the server holds its sockets any more.
        let deadline = Instant::now() + EVENTUALLY;
        // One look per pass; bounded by the deadline.
        loop {
            let holders = socket_holders(pid);
            if holders.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: sockets also held by {holders:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(zombies_of(pid).is_empty(), "{what}: {:?}", zombies_of(pid));
        // Still serving: new connections and the old keep-alive one.
        assert_eq!(pid_at(addrs[0]).unwrap(), pid, "{what}");
        assert_eq!(kept.get("/pid").unwrap().text(), pid.to_string(), "{what}");
        // Nothing of the attempt stays open here.
        wait_fd_kinds(pid, &fd_kinds(&baseline), what);
    }

    // A good restart still works, with clean variables.
    install(&exe, Install::Binary(&serve_binary()));
    let new = restart(&mut demo, &addrs);
    let env = start_environment(new);
    let listen: Vec<&String> = env.iter().filter(|e| e.starts_with("LISTEN_")).collect();
    assert_eq!(
        listen,
        [
            &"LISTEN_FDS=1".to_owned(),
            &"LISTEN_FDNAMES=listen-0".to_owned(),
            &format!("LISTEN_PID={new}"),
        ]
    );
    drop(kept);
    signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- signal storms --------------------------------------------------------

/// Twenty SIGHUPs at once: exactly one successor starts; the others are
/// refused while it is in flight or once the old process has handed off.
#[test]
fn a_burst_of_sighups_gives_one_successor() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0"]);
    let addrs = demo.tcp_addrs();
    let pid = demo.pid();
    for _ in 0..20 {
        signal(pid, Signal::HUP);
    }
    let line = demo.next_first_line();
    let (_, new) = parse_first_line(&line);
    demo.wait_stderr(&format!("pid {pid} handed off to pid {new}"));
    wait_serving(addrs[0], new);
    signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "the old process drained: {stderr:?}"
    );
    let started = stderr
        .iter()
        .filter(|l| l.contains("restart: successor pid"))
        .count();
    assert_eq!(started, 1, "{stderr:#?}");
    let first_lines = demo
        .stdout_seen
        .iter()
        .filter(|l| l.starts_with("listening on "))
        .count();
    assert_eq!(first_lines, 2, "{:?}", demo.stdout_seen);
    assert!(zombies_of(pid).is_empty());
}

/// SIGTERM while a successor is starting: the restart is abandoned (the
/// successor killed and reaped), and the server drains and exits 0.
#[test]
fn sigterm_during_a_restart_abandons_it() {
    let dir = scratch_dir("abandon");
    let exe = dir.join("serve");
    install(&exe, Install::Binary(&serve_binary()));
    let mut command = Command::new(&exe);
    command.args(["--listen", "127.0.0.1:0"]);
    let mut demo = Demo::spawn(command);
    let pid = demo.pid();
    // The successor will be a program that never reports ready.
    install(&exe, Install::Script("#!/bin/sh\nexec sleep 60\n", true));
    signal(pid, Signal::HUP);
    let started = demo.wait_stderr("restart: successor pid ");
    let child: u32 = started
        .split("successor pid ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the successor's pid");
    signal(pid, Signal::TERM);
    demo.wait_stderr("restart abandoned: the server is stopping");
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(has_exited(child), "the successor was killed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same hand-off on every other runtime (`--runtime smol-local`,
/// `tokio`, `async-std`) and on two threads (`--threads 2`: the listeners
/// of both go to the successor): the lifecycle is runtime-generic. A
/// streamed response in progress completes on the old process.
#[test]
fn restart_on_every_runtime() {
    let mut runtimes = vec![vec!["smol-local"], vec!["smol", "--threads", "2"]];
    if cfg!(feature = "tokio") {
        runtimes.push(vec!["tokio", "--threads", "2"]);
    }
    if cfg!(feature = "compio") {
        runtimes.push(vec!["compio", "--threads", "2"]);
    }
    if cfg!(feature = "async-std") {
        runtimes.push(vec!["async-std"]);
    }
    for args in runtimes {
        let runtime = args.join(" ");
        let mut all = vec!["--runtime"];
        all.extend(&args);
        all.extend(["--listen", "127.0.0.1:0"]);
        let mut demo = Demo::start(&all);
        let addrs = demo.tcp_addrs();
        let mut slow = Client::connect(addrs[0]).unwrap();
        slow.send_get("/stream?chunks=3&ms=200").unwrap();
        slow.read_until_contains(b"chunk 0\n").unwrap();
        let new = restart(&mut demo, &addrs);
        let streamed = slow.read_response().unwrap();
        assert_eq!(streamed.text(), "chunk 0\nchunk 1\nchunk 2\n", "{runtime}");
        assert_eq!(
            streamed.header("x-pid"),
            Some(demo.pid().to_string().as_str()),
            "{runtime}"
        );
        signal(new, Signal::TERM);
        wait_exited(new);
        let (status, stderr) = demo.wait_exit();
        assert_eq!(status.code(), Some(0), "{runtime}: {stderr:?}");
    }
}

/// After a hand-off the old process drains without a stop of its own:
/// its first SIGTERM is a first drain signal (the response in flight goes
/// on), the second closes at once (the response is cut, exit status 1).
/// The successor serves throughout.
#[test]
fn after_a_hand_off_the_first_sigterm_drains_and_the_second_closes() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--grace", "60"]);
    let addrs = demo.tcp_addrs();
    let old = demo.pid();
    // A response far longer than the test: 100,000 chunks 20 ms apart.
    let mut slow = TcpStream::connect(addrs[0]).unwrap();
    slow.set_read_timeout(Some(EVENTUALLY)).unwrap();
    slow.write_all(b"GET /stream?chunks=100000&ms=20 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_chunks(&mut slow, 1);
    let new = restart(&mut demo, &addrs);

    let from = demo.stderr_seen.len();
    signal(old, Signal::TERM);
    demo.wait_stderr_from(from, "SIGTERM: draining (deadline");
    // Chunks written after the signal was handled: the drain goes on.
    read_chunks(&mut slow, 10);
    assert!(
        !has_exited(old),
        "the first SIGTERM after a hand-off drains"
    );

    signal(old, Signal::TERM);
    wait_exited(old);
    // Cut: the stream ends without chunked encoding's last chunk.
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(!rest.ends_with(b"0\r\n\r\n"), "the response was cut");
    // The successor serves on.
    let mut client = Client::connect(addrs[0]).unwrap();
    assert_eq!(client.get("/pid").unwrap().text(), new.to_string());
    signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(1), "forced: {stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l == "serve: SIGTERM while draining: closing now"),
        "{stderr:?}"
    );
}

/// Reads from `stream` until `n` more `/stream` chunks (`chunk K`) have
/// arrived; each read is bounded by the stream's read timeout.
fn read_chunks(stream: &mut TcpStream, n: usize) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Each pass reads at least one byte or fails; at most 1 MiB.
    while seen.windows(6).filter(|w| w == b"chunk ").count() < n {
        assert!(seen.len() < 1024 * 1024, "no chunks");
        let got = stream.read(&mut buf).expect("chunks in time");
        assert!(got > 0, "the response ended early");
        seen.extend_from_slice(&buf[..got]);
    }
}

/// SIGUSR2 closes at once, a response in progress included (exit status 1:
/// it was forced).
#[test]
fn sigusr2_closes_at_once() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--grace", "60"]);
    let addr = demo.tcp_addrs()[0];
    let mut stuck = Client::connect(addr).unwrap();
    stuck.send_get("/stream?chunks=2&ms=60000").unwrap();
    stuck.read_until_contains(b"chunk 0\n").unwrap();
    let t0 = Instant::now();
    signal(demo.pid(), Signal::USR2);
    let (status, stderr) = demo.wait_exit();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(
        stderr.iter().any(|l| l == "serve: SIGUSR2: closing now"),
        "{stderr:?}"
    );
    assert!(
        stderr.iter().any(|l| l.contains("done: closed, forced=1")),
        "{stderr:?}"
    );
    assert!(stuck.read_response().is_err(), "the response was cut");
}

// ----- descriptors and environment ------------------------------------------

/// Five generations, each with two TCP listeners and a Unix one: the same
/// descriptors each time (none leaks from one to the next), the listeners
/// at 3, 4, 5 under their names, `LISTEN_PID` its own pid, and the
/// variables gone from each process once adopted.
#[test]
fn generations_keep_the_same_descriptors_and_no_stale_variables() {
    let dir = scratch_dir("fds");
    let sock = dir.join("serve.sock");
    let mut demo = Demo::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--unix",
        sock.to_str().unwrap(),
    ]);
    let addrs = demo.tcp_addrs();
    assert_eq!(addrs.len(), 2);
    let first = fds(demo.pid());
    let mut successors: Vec<Vec<String>> = Vec::new();
    for round in 1..=4 {
        // No connection to the successor before its descriptors are
        // counted: what is open then is its own.
        let old = demo.current();
        let from = demo.stderr_seen.len();
        signal(old, Signal::HUP);
        let (new_addrs, new) = parse_first_line(&demo.next_first_line());
        assert_eq!(new_addrs, addrs);
        demo.wait_stderr_from(from, &format!("pid {old} handed off to pid {new}"));
        wait_exited(old);
        let now = fds(new);
        for fd in [3, 4, 5] {
            assert!(
                now.iter()
                    .any(|(n, t)| *n == fd && t.starts_with("socket:")),
                "round {round}: fd {fd} is not a socket: {now:?}"
            );
        }
        successors.push(fd_kinds(&now));

        let env = start_environment(new);
        let listen: Vec<&String> = env.iter().filter(|e| e.starts_with("LISTEN_")).collect();
        assert_eq!(
            listen,
            [
                &"LISTEN_FDS=3".to_owned(),
                &"LISTEN_FDNAMES=listen-0:listen-1:unix".to_owned(),
                &format!("LISTEN_PID={new}"),
            ],
            "round {round}"
        );
        assert_eq!(
            env.iter()
                .filter(|e| e.starts_with("LAMEDUCK_READY_FD="))
                .count(),
            1
        );
        // Each successor is one generation further on.
        let generation = format!("LAMEDUCK_GENERATION={}", round + 1);
        assert!(env.contains(&generation), "round {round}: {env:?}");

        // Serves on all three: both TCP listeners and the Unix socket.
        wait_serving(addrs[0], new);
        assert_eq!(pid_at(addrs[1]).unwrap(), new);
        let mut unix = UnixStream::connect(&sock).unwrap();
        unix.set_read_timeout(Some(EVENTUALLY)).unwrap();
        unix.write_all(b"GET /pid HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        unix.read_to_string(&mut answer).unwrap();
        assert!(answer.ends_with(&format!("\r\n\r\n{new}")), "{answer}");
    }
    let counts: Vec<usize> = std::iter::once(first.len())
        .chain(successors.iter().map(Vec::len))
        .collect();
    eprintln!("descriptor counts per generation: {counts:?}");
    assert!(
        successors.windows(2).all(|w| w[0] == w[1]),
        "descriptors per generation: {successors:#?}"
    );
    // The first generation may hold descriptors it inherited from this test
    // process (not close-on-exec here); none is passed on.
    assert!(
        successors[0].len() <= first.len(),
        "first {first:?}, then {:?}",
        successors[0]
    );
    // Every successor's adoption line, in whatever order the generations'
    // lines reach the shared pipe: wait for each (bounded).
    let adopted = "inherited 3 socket(s) (listen-0, listen-1, unix), from a restarting predecessor; LISTEN_* variables removed";
    let mut from = 0;
    for _ in 0..4 {
        demo.wait_stderr_from(from, adopted);
        from = (from..demo.stderr_seen.len())
            .find(|&i| demo.stderr_seen[i].contains(adopted))
            .expect("just seen")
            + 1;
    }
    let count = demo
        .stderr_seen
        .iter()
        .filter(|l| l.contains(adopted))
        .count();
    assert_eq!(count, 4, "{:?}", demo.stderr_seen);
    let last = demo.current();
    signal(last, Signal::TERM);
    wait_exited(last);
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    // The last generation took the Unix socket's file over, and removed it.
    assert!(!sock.exists(), "the last generation removes the file");
    let mut again = Demo::start(&["--unix", sock.to_str().unwrap()]);
    again.signal(Signal::TERM);
    let (status, stderr) = again.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!sock.exists(), "the new process bound it, and removed it");
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- Unix socket files -----------------------------------------------------

/// `GET /pid` over the Unix socket at `path`: the pid that served it.
fn pid_over_unix(path: &std::path::Path) -> u32 {
    let mut unix = UnixStream::connect(path).unwrap();
    unix.set_read_timeout(Some(EVENTUALLY)).unwrap();
    unix.write_all(b"GET /pid HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    unix.read_to_string(&mut answer).unwrap();
    let (_, pid) = answer
        .rsplit_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{answer}"));
    pid.parse().unwrap_or_else(|_| panic!("{answer}"))
}

/// The `LAMEDUCK_OWNED_FDS` entries a process was started with.
fn owned_fds_var(pid: u32) -> Vec<String> {
    start_environment(pid)
        .into_iter()
        .filter(|e| e.starts_with("LAMEDUCK_OWNED_FDS="))
        .collect()
}

/// `--unix PATH`: the first process binds the file, each restart hands it
/// over with the socket (`LAMEDUCK_OWNED_FDS` names it), a process that
/// handed off leaves it in place, and the last generation removes it when
/// it stops.
#[test]
fn the_unix_socket_file_goes_with_the_last_generation() {
    let dir = scratch_dir("unix-file");
    let sock = dir.join("serve.sock");
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--unix", sock.to_str().unwrap()]);
    let addrs = demo.tcp_addrs();
    assert_eq!(pid_over_unix(&sock), demo.pid());
    let mut told = Vec::new();
    for round in 1..=2 {
        let old = demo.current();
        let new = restart(&mut demo, &addrs);
        told.push(owned_fds_var(new));
        wait_exited(old);
        assert!(
            sock.exists(),
            "round {round}: the old process left the file"
        );
        assert_eq!(pid_over_unix(&sock), new, "round {round}");
    }
    let last = demo.current();
    signal(last, Signal::TERM);
    wait_exited(last);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!sock.exists(), "the last generation removes the file");
    // Listeners at 3 (listen-0) and 4 (unix): each successor was told.
    assert_eq!(told, [["LAMEDUCK_OWNED_FDS=4"], ["LAMEDUCK_OWNED_FDS=4"]]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Unix socket passed by whoever owns its file (as a systemd `.socket`
/// unit does; here this test) keeps its file: neither the process it was
/// passed to nor that one's successor removes it.
#[test]
fn an_activated_unix_sockets_file_is_kept() {
    let dir = scratch_dir("unix-activated");
    let sock = dir.join("activated.sock");
    let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let mut command = Command::new(serve_binary());
    command
        .args([
            "--listen",
            &addr.to_string(),
            "--unix",
            sock.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = lameduck::unix::handoff::spawn_with_listeners(
        command,
        &[(tcp.as_fd(), "listen-0"), (unix.as_fd(), "unix")],
    )
    .unwrap();
    drop((tcp, unix)); // only the demo has them now
    let mut demo = Demo::from_child(child);
    demo.wait_stderr("inherited 2 socket(s) (listen-0, unix)");
    assert_eq!(pid_over_unix(&sock), demo.pid());
    let new = restart(&mut demo, &[addr]);
    assert_eq!(owned_fds_var(new), Vec::<String>::new(), "not handed over");
    assert_eq!(pid_over_unix(&sock), new);
    signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(sock.exists(), "the file is its owner's: kept");
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- socket activation ----------------------------------------------------

/// Started as systemd does it (a listener at fd 3, `LISTEN_FDS=1`,
/// `LISTEN_PID` its pid, a name), the demo serves on that socket and binds
/// nothing else.
#[test]
fn socket_activation_serves_the_passed_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut command = Command::new(serve_binary());
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child =
        lameduck::unix::handoff::spawn_with_listeners(command, &[(listener.as_fd(), "http")])
            .unwrap();
    drop(listener); // only the demo has it now
    let mut demo = Demo::from_child(child);
    let pid = demo.pid();
    assert_eq!(demo.first_line, format!("listening on {addr} pid={pid}"));
    demo.wait_stderr("serve: inherited 1 socket(s) (http); LISTEN_* variables removed");
    assert_eq!(pid_at(addr).unwrap(), pid);
    let env = start_environment(pid);
    assert!(env.contains(&format!("LISTEN_PID={pid}")), "{env:?}");
    // And it restarts from there like any other.
    let new = restart(&mut demo, &[addr]);
    signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
}

/// Variables for another process (`LISTEN_PID` not the demo's, as when
/// they leak from a parent into a child) are ignored, as systemd's
/// `sd_listen_fds` does: a warning naming both pids, the socket at fd 3
/// left alone, `--listen` bound as usual, and the variables removed.
#[test]
fn activation_for_another_process_is_ignored() {
    let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let passed_addr = passed.local_addr().unwrap();
    let other = std::process::id();
    // `exec` keeps the shell's pid, and fd 3; LISTEN_PID now names this test.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "export LISTEN_PID={other}; exec \"$0\" --listen 127.0.0.1:0"
        ))
        .arg(serve_binary())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child =
        lameduck::unix::handoff::spawn_with_listeners(command, &[(passed.as_fd(), "listen-0")])
            .unwrap();
    let mut demo = Demo::from_child(child);
    let pid = demo.pid();
    let addr = demo.tcp_addrs()[0];
    assert_ne!(addr, passed_addr, "bound anew, not the passed socket");
    demo.wait_stderr(&format!(
        "serve: warning: LISTEN_PID={other} names another process (this is pid {pid})"
    ));
    demo.wait_stderr("serve: inherited 0 socket(s); LISTEN_* variables removed");
    assert_eq!(pid_at(addr).unwrap(), pid);
    demo.signal(Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
}

/// Malformed socket-activation input: a precise message, exit status 1, no
/// panic.
#[test]
fn malformed_activation_is_a_clear_error() {
    // `exec` keeps the shell's pid, so `$$` is the demo's pid.
    let via_shell = |script: &str| {
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("{script}; exec \"$0\" --listen 127.0.0.1:0"))
            .arg(serve_binary())
            .stdin(Stdio::null())
            .output()
            .expect("running the demo");
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let cases = [
        (
            "export LISTEN_PID=$$ LISTEN_FDS=abc",
            "LISTEN_FDS=\"abc\" is not a count",
        ),
        (
            "export LISTEN_PID=$$",
            "LISTEN_PID is set but LISTEN_FDS is not",
        ),
        (
            "export LISTEN_FDS=1",
            "LISTEN_FDS is set but LISTEN_PID is not",
        ),
        ("export LISTEN_PID=$$ LISTEN_FDS=0", "LISTEN_FDS=0"),
        (
            "export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=a:b",
            "LISTEN_FDNAMES has 2 names for LISTEN_FDS=1",
        ),
        (
            "exec 3<&-; export LISTEN_PID=$$ LISTEN_FDS=1",
            "inherited fd 3 (unknown) is not open",
        ),
        (
            "exec 3</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1",
            "inherited fd 3 (unknown) is not a socket",
        ),
        (
            "export LAMEDUCK_READY_FD=junk",
            "LAMEDUCK_READY_FD=\"junk\": not a descriptor number",
        ),
        (
            "export LAMEDUCK_OWNED_FDS=3",
            "LAMEDUCK_OWNED_FDS=\"3\": set without LAMEDUCK_READY_FD",
        ),
    ];
    for (script, expected) in cases {
        let (status, stderr) = via_shell(script);
        assert_eq!(status.code(), Some(1), "{script}: {stderr}");
        assert!(
            stderr.starts_with("serve: cannot use the inherited sockets: "),
            "{script}: {stderr}"
        );
        assert!(stderr.contains(expected), "{script}: {stderr}");
        assert!(!stderr.contains("panicked"), "{script}: {stderr}");
    }

    // Sockets of the wrong kind, passed as systemd would pass them.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let unbound = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )
    .unwrap();
    for (fd, expected) in [
        (udp.as_fd(), "inherited fd 3 (x) is not a stream socket"),
        (
            unbound.as_fd(),
            "inherited fd 3 (x) is not a listening socket",
        ),
    ] {
        let command = Command::new(serve_binary());
        let mut command = command;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = lameduck::unix::handoff::spawn_with_listeners(command, &[(fd, "x")]).unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// ----- systemd notifications ------------------------------------------------

/// The notifications over a start, a failed restart, a restart and a stop:
/// `READY=1`; `RELOADING=1` + `MONOTONIC_USEC` and `READY=1` again on the
/// failure; `RELOADING=1` + `MONOTONIC_USEC`, then `MAINPID=<successor>` +
/// `READY=1`, all from the first process; then `STOPPING=1` from the
/// successor only. The old process says nothing after the hand-off.
/// (`STATUS=` lines come in between, at times of their own: see
/// `tests/systemd.rs`.)
#[test]
fn notify_sequence() {
    let dir = scratch_dir("notify");
    let notify = NotifySocket::bind(&dir);
    let exe = dir.join("serve");
    install(&exe, Install::Binary(&serve_binary()));
    let mut command = Command::new(&exe);
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify.path);
    let mut demo = Demo::spawn(command);
    let addrs = demo.tcp_addrs();
    let pid = demo.pid();
    assert_eq!(notify.next_protocol(), (pid, "READY=1".to_owned()));

    let monotonic = |message: &str| -> u64 {
        let value = message
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {message:?}"));
        value.parse().expect("a number")
    };

    // A failed restart: reloading, then ready again (same main process).
    install(&exe, Install::Script("#!/bin/sh\nexit 3\n", true));
    signal(pid, Signal::HUP);
    let (from, reloading) = notify.next_protocol();
    assert_eq!(from, pid);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let first_reload = monotonic(&reloading);
    assert_eq!(notify.next_protocol(), (pid, "READY=1".to_owned()));
    demo.wait_stderr("restart failed: ");

    // A good restart.
    install(&exe, Install::Binary(&serve_binary()));
    let new = restart(&mut demo, &addrs);
    let (from, reloading) = notify.next_protocol();
    assert_eq!(from, pid);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(monotonic(&reloading) > first_reload);
    assert_eq!(
        notify.next_protocol(),
        (pid, format!("MAINPID={new}\nREADY=1"))
    );
    // STATUS= lines so far (no watchdog here): whatever came before it.
    let _ = notify.take_skipped();

    wait_exited(pid);
    signal(new, Signal::TERM);
    assert_eq!(notify.next_protocol(), (new, "STOPPING=1".to_owned()));
    wait_exited(new);
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    // After the hand-off the old process says nothing, STATUS= included.
    assert!(notify.take_skipped().iter().all(|(from, _)| *from == new));
    assert_eq!(
        notify.rest_protocol(),
        Vec::<String>::new(),
        "nothing else was sent"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
