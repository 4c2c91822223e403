//! The demo server (`cargo run --example serve -p lameduck`) as outside
//! harnesses drive it: its flags, first stdout line, routes, signals and
//! exit status. Runs the example binary that `cargo test --workspace`
//! builds (target/<profile>/examples/serve).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lameduck_testkit::client::Client;
use lameduck_tests::process::{Demo, EVENTUALLY, Signal, lines, serve_binary};

/// Runs the demo with `args` to its exit (killed, and the test failed, if
/// it is still running after [`EVENTUALLY`]); its status and stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(serve_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the demo");
    let stderr = lines(child.stderr.take().expect("a piped stderr"));
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // To the end of the pipe: the demo is gone.
    let mut text = String::new();
    while let Ok(line) = stderr.recv_timeout(EVENTUALLY) {
        text.push_str(&line);
        text.push('\n');
    }
    (status, text)
}

/// A connection whose response is in progress: its first chunk arrived.
/// (A request merely sent may still sit in the listen backlog, which the
/// kernel resets when the listener closes — Go behaves the same.)
fn in_progress(addr: SocketAddr, path: &str) -> Client {
    let mut client = Client::connect(addr).unwrap();
    client.send_get(path).unwrap();
    client.read_until_contains(b"chunk 0\n").unwrap();
    client
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lameduck-demo-{}-{name}", std::process::id()))
}

#[test]
fn first_line_routes_and_clean_drain_on_sigterm() {
    let sock = temp_path("serve.sock");
    let pid_file = temp_path("serve.pid");
    let _ = std::fs::remove_file(&sock);
    let mut demo = Demo::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen=127.0.0.1:0",
        "--unix",
        sock.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--grace",
        "10.5",
    ]);
    let pid = demo.child.id();
    let addrs = demo.tcp_addrs();
    assert_eq!(addrs.len(), 2);
    assert_eq!(
        demo.first_line,
        format!(
            "listening on {},{},unix:{} pid={pid}",
            addrs[0],
            addrs[1],
            sock.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );

    let mut client = Client::connect(addrs[1]).unwrap();
    let check = |response: lameduck_testkit::client::Response, status: u16, body: &str| {
        assert_eq!(
            (response.status, response.text().as_str()),
            (status, body),
            "{response:?}"
        );
    };
    check(client.get("/").unwrap(), 200, "hello");
    check(client.get("/pid").unwrap(), 200, &pid.to_string());
    check(client.get("/healthz").unwrap(), 200, "ok");
    check(client.get("/sleep?ms=20").unwrap(), 200, "slept 20");
    let stream = client.get("/stream?chunks=3&ms=20").unwrap();
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    check(stream, 200, "chunk 0\nchunk 1\nchunk 2\n");
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello")
        .unwrap();
    check(client.read_response().unwrap(), 200, "hello");
    check(client.get("/nope").unwrap(), 404, "not found");
    assert_eq!(client.get("/sleep").unwrap().status, 400);

    let mut upgraded = Client::connect(addrs[0]).unwrap();
    upgraded
        .send(b"GET /upgrade HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .unwrap();
    assert_eq!(upgraded.read_response().unwrap().status, 101);
    upgraded.send(b"echo?").unwrap();
    assert_eq!(upgraded.read_exact_bytes(5).unwrap(), b"echo?");

    // A response in progress (its first chunk is out) when SIGTERM comes:
    // it completes, then the connection closes.
    let mut busy = in_progress(addrs[0], "/stream?chunks=4&ms=150");
    demo.signal(Signal::TERM);
    demo.wait_stderr("phase: draining");
    let response = busy.read_response().unwrap();
    check(response, 200, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    assert!(busy.read_until_closed().unwrap().0.is_empty());
    let (bytes, _) = upgraded.read_until_closed().unwrap();
    assert_eq!(bytes, b"bye\n");
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "stderr: {stderr:?}");
    assert!(
        stderr.iter().any(|l| l.contains("SIGTERM: draining")),
        "{stderr:?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l == "serve: done: drained, forced=0, hooks_cut_off=false, hijacked_open=0"),
        "{stderr:?}"
    );
    assert!(!sock.exists(), "the unix socket file is removed");
    let _ = std::fs::remove_file(&pid_file);
}

#[test]
fn exit_status_nonzero_when_the_deadline_forces() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--grace", "0.3"]);
    let addr = demo.tcp_addrs()[0];
    let _stuck = in_progress(addr, "/stream?chunks=2&ms=60000");
    demo.signal(Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(1), "stderr: {stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("forced at the shutdown deadline")),
        "{stderr:?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("done: deadline expired, forced=")),
        "{stderr:?}"
    );
}

/// A second drain signal closes at once, and the line names the signal
/// received (SIGINT drained, SIGTERM closes: not "SIGTERM again").
#[test]
fn second_signal_closes_at_once() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--grace", "60"]);
    let addr = demo.tcp_addrs()[0];
    let mut stuck = in_progress(addr, "/stream?chunks=2&ms=60000");
    demo.signal(Signal::INT);
    demo.wait_stderr("phase: draining");
    let t0 = Instant::now();
    demo.signal(Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(status.code(), Some(1), "stderr: {stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l == "serve: SIGTERM while draining: closing now"),
        "{stderr:?}"
    );
    assert!(
        !stderr.iter().any(|l| l.contains("SIGTERM again")),
        "{stderr:?}"
    );
    assert!(
        stderr.iter().any(|l| l.contains("done: closed, forced=1")),
        "{stderr:?}"
    );
    assert!(
        stuck.read_response().is_err(),
        "the response was cut by close"
    );
}

#[test]
fn lame_duck_reports_draining_then_drains() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--lame-duck", "1.5"]);
    let addr = demo.tcp_addrs()[0];
    let mut client = Client::connect(addr).unwrap();
    assert_eq!(client.get("/healthz").unwrap().status, 200);
    demo.signal(Signal::TERM);
    demo.wait_stderr("phase: lame duck");
    // A new connection: still accepted during the lame-duck delay.
    let health = Client::connect(addr).unwrap().get("/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (503, "draining"));
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "stderr: {stderr:?}");
}

/// `serve --help` names every route the demo serves (a newcomer is sent
/// there from the README).
#[test]
fn help_lists_every_route() {
    let output = Command::new(serve_binary())
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("running the demo");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let help = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for route in [
        "GET /  ",
        "GET /sleep?ms=N",
        "GET /stream?chunks=N&ms=M",
        "GET /events?ms=M",
        "GET /pid",
        "GET /hits",
        "GET /healthz",
        "POST /echo",
        "GET /upgrade",
    ] {
        assert!(
            help.contains(route),
            "{route:?} missing from --help:\n{help}"
        );
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["--grace", "abc"][..],
        &["--grace", "-1"],
        &["--grace"],
        &["--bogus"],
        &["--listen", "not-an-address"],
        &["--runtime", "bogus"],
        &["--runtime"],
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("serve: "), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: serve"), "{args:?}: {stderr}");
    }
    // Zero where it would not mean "none" but "expired at once".
    for flag in ["--header-timeout", "--idle-timeout", "--ready-timeout"] {
        for zero in ["0", "0.0", "0e3"] {
            let (status, stderr) = run_to_exit(&[flag, zero]);
            assert_eq!(status.code(), Some(2), "{flag} {zero}: {stderr}");
            assert!(
                stderr.starts_with(&format!("serve: {flag}: must be more than 0 (")),
                "{flag} {zero}: {stderr}"
            );
        }
    }
    #[cfg(not(feature = "async-std"))]
    {
        let (status, stderr) = run_to_exit(&["--runtime", "async-std"]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("lacks lameduck's async-std feature"),
            "{stderr}"
        );
    }
}

/// The names of a process's threads (Linux: `/proc/PID/task/*/comm`, at
/// most 15 bytes each).
#[cfg(target_os = "linux")]
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("reading /proc/PID/task");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// The `--runtime` names the demo was built with.
fn demo_runtimes() -> Vec<&'static str> {
    let mut runtimes = vec!["smol", "smol-local"];
    if cfg!(feature = "tokio") {
        runtimes.push("tokio");
    }
    if cfg!(feature = "compio") {
        runtimes.push("compio");
    }
    if cfg!(feature = "async-std") {
        runtimes.push("async-std");
    }
    runtimes
}

/// Every `--runtime` serves the same: the first line, the routes, and a
/// clean SIGTERM drain with a response in progress completing. `smol`,
/// `tokio` and `async-std` serve on a thread of their own (`lameduck`);
/// `smol-local` on the main thread, beside the lifecycle.
#[test]
fn every_runtime_serves_and_drains() {
    for runtime in demo_runtimes() {
        let mut demo = Demo::start(&["--runtime", runtime, "--listen", "127.0.0.1:0"]);
        let pid = demo.child.id();
        let addrs = demo.tcp_addrs();
        assert_eq!(addrs.len(), 1);
        assert_eq!(
            demo.first_line,
            format!("listening on {} pid={pid}", addrs[0])
        );
        let mut client = Client::connect(addrs[0]).unwrap();
        let hello = client.get("/").unwrap();
        assert_eq!(
            (hello.status, hello.text().as_str()),
            (200, "hello"),
            "{runtime}"
        );
        let slept = client.get("/sleep?ms=20").unwrap();
        assert_eq!(
            (slept.status, slept.text().as_str()),
            (200, "slept 20"),
            "{runtime}"
        );

        #[cfg(target_os = "linux")]
        {
            let names = thread_names(pid);
            let own_thread = names.iter().any(|n| n == "lameduck");
            assert_eq!(own_thread, runtime != "smol-local", "{runtime}: {names:?}");
        }

        // A response in progress when SIGTERM comes completes; then exit 0.
        let mut busy = in_progress(addrs[0], "/stream?chunks=3&ms=100");
        demo.signal(Signal::TERM);
        demo.wait_stderr("phase: draining");
        let response = busy.read_response().unwrap();
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "chunk 0\nchunk 1\nchunk 2\n"),
            "{runtime}"
        );
        let (status, stderr) = demo.wait_exit();
        assert_eq!(status.code(), Some(0), "{runtime}: {stderr:?}");
        assert!(
            stderr.iter().any(
                |l| l == "serve: done: drained, forced=0, hooks_cut_off=false, hijacked_open=0"
            ),
            "{runtime}: {stderr:?}"
        );
    }
}

/// Zero where it means something: `--grace 0` closes at once (exit 1 with
/// a request in progress), `--new-conn-grace 0` and `--lame-duck 0` are
/// accepted; the demo serves and stops as usual.
#[test]
fn zero_grace_closes_at_once() {
    let mut demo = Demo::start(&[
        "--listen",
        "127.0.0.1:0",
        "--grace",
        "0",
        "--new-conn-grace",
        "0",
        "--lame-duck",
        "0",
    ]);
    let addr = demo.tcp_addrs()[0];
    let hello = Client::connect(addr).unwrap().get("/").unwrap();
    assert_eq!((hello.status, hello.text().as_str()), (200, "hello"));
    let _stuck = in_progress(addr, "/stream?chunks=2&ms=60000");
    demo.signal(Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("forced at the shutdown deadline")),
        "{stderr:?}"
    );
}

#[test]
fn start_up_failure_exits_1_with_a_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = run_to_exit(&["--listen", &addr]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

/// Accept errors like `EMFILE` back off and retry (Go: 5 ms doubling to
/// 1 s) instead of killing the server: the demo runs with a small
/// descriptor limit, is flooded with connections until its accept fails,
/// and serves again once descriptors are freed.
#[test]
fn accept_emfile_backs_off_and_recovers() {
    // `ulimit -n` in a shell that then execs the demo: the limit applies to
    // the demo only.
    let binary = serve_binary();
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 48 && exec \"$0\" \"$@\"")
        .arg(&binary)
        .args(["--listen", "127.0.0.1:0", "--new-conn-grace", "0.2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the demo under sh");
    let mut demo = Demo::from_child(child);
    let addr = demo.tcp_addrs()[0];
    // More connections than the demo has descriptors for: the kernel
    // completes them (backlog), the demo's accept runs out.
    let mut flood: Vec<Client> = (0..80).map(|_| Client::connect(addr).unwrap()).collect();
    demo.wait_stderr("Too many open files");
    assert!(
        demo.stderr_seen.iter().any(|l| l.contains("retrying in")),
        "{:?}",
        demo.stderr_seen
    );
    // Free descriptors: the backlog drains, and the demo serves again.
    flood.clear();
    let deadline = Instant::now() + EVENTUALLY;
    // One attempt per pass (each bounded by the client's I/O timeout);
    // bounded by the deadline.
    let response = loop {
        match Client::connect(addr).and_then(|mut c| c.get("/")) {
            Ok(response) => break response,
            Err(e) => assert!(Instant::now() < deadline, "the demo never recovered: {e}"),
        }
    };
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    demo.signal(Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
}

// ----- stderr that nobody reads ---------------------------------------------

/// Silent connections, each closed by `--header-timeout 0.05` with one
/// stderr line: more lines than a 64 KiB pipe holds, and more than the
/// demo queues for its stderr writer.
const FLOOD: usize = 2000;

/// The demo's stderr, a pipe that the test does not read (yet): its write
/// end for the demo, its read end, and its capacity (made as small as the
/// kernel allows, so it fills sooner).
fn unread_pipe() -> (Stdio, std::os::fd::OwnedFd, usize) {
    let (read, write) = rustix::pipe::pipe().unwrap();
    let capacity = rustix::pipe::fcntl_setpipe_size(&read, 4096)
        .or_else(|_| rustix::pipe::fcntl_getpipe_size(&read))
        .unwrap();
    assert!(
        FLOOD * "serve: closed conn 1.0: request header timeout\n".len() > 2 * capacity,
        "the flood overflows the pipe ({capacity} bytes)"
    );
    (Stdio::from(write), read, capacity)
}

/// Opens [`FLOOD`] connections, a batch at a time, sends nothing, and
/// waits for the demo to close each (its header timeout): one stderr line
/// each.
///
/// # Panics
/// If the demo stops closing them (a read times out).
fn flood_header_timeouts(addr: SocketAddr) {
    let mut closed = 0;
    // One batch per pass; FLOOD / 100 passes, each read bounded.
    while closed < FLOOD {
        let batch: Vec<Client> = (0..100.min(FLOOD - closed))
            .map(|_| Client::connect(addr).unwrap())
            .collect();
        for mut client in batch {
            if let Err(e) = client.read_until_closed() {
                panic!("the demo stopped closing connections after {closed} header timeouts: {e}");
            }
            closed += 1;
        }
    }
}

/// A stderr pipe that nobody reads never holds up serving: once it is full,
/// the demo still closes connections, accepts and answers, and drains and
/// exits promptly on SIGTERM (the lines it cannot write are dropped: at
/// most 100 ms are spent on them at exit). What did reach the pipe is whole
/// lines.
#[test]
fn unread_stderr_never_stalls_serving() {
    let (stderr, read, _) = unread_pipe();
    let mut demo = Demo::start_with_stderr(
        &["--listen", "127.0.0.1:0", "--header-timeout", "0.05"],
        stderr,
    );
    let addr = demo.tcp_addrs()[0];
    flood_header_timeouts(addr);
    let hello = Client::connect(addr).unwrap().get("/").unwrap();
    assert_eq!((hello.status, hello.text().as_str()), (200, "hello"));

    demo.signal(Signal::TERM);
    let t0 = Instant::now();
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        t0.elapsed()
    );
    // The demo is gone: the pipe holds what it wrote, then ends.
    let mut written = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut written).unwrap();
    assert!(written.ends_with('\n'), "{written:?}");
    for line in written.lines() {
        assert!(line.starts_with("serve: "), "a torn line: {line:?}");
    }
}

/// Lines the demo had to drop are counted, and the count is written once
/// stderr drains; the lines of the end (`done: ...`) are flushed at exit.
#[test]
fn dropped_stderr_lines_are_counted_and_the_last_flushed() {
    let (stderr, read, _) = unread_pipe();
    let mut demo = Demo::start_with_stderr(
        &["--listen", "127.0.0.1:0", "--header-timeout", "0.05"],
        stderr,
    );
    let addr = demo.tcp_addrs()[0];
    flood_header_timeouts(addr);
    // Now read it.
    let lines = lines(std::fs::File::from(read));
    let mut seen = Vec::new();
    let deadline = Instant::now() + EVENTUALLY;
    // One line per pass; bounded by the deadline.
    while !seen
        .iter()
        .any(|l: &String| l.contains(" dropped (stderr was not keeping up)"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no count of dropped lines; saw {} lines", seen.len()),
        }
    }
    let hello = Client::connect(addr).unwrap().get("/").unwrap();
    assert_eq!((hello.status, hello.text().as_str()), (200, "hello"));
    demo.signal(Signal::TERM);
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    // To the pipe's end (the demo is gone).
    while let Ok(line) = lines.recv_timeout(EVENTUALLY) {
        seen.push(line);
    }
    assert!(
        seen.iter()
            .any(|l| l == "serve: done: drained, forced=0, hooks_cut_off=false, hijacked_open=0"),
        "{:?}",
        &seen[seen.len().saturating_sub(5)..]
    );
    // Every header timeout was written or counted as dropped.
    let timeouts = seen
        .iter()
        .filter(|l| l.ends_with(": request header timeout"))
        .count();
    let dropped: usize = seen
        .iter()
        .filter_map(|l| {
            let n = l.strip_prefix("serve: ")?.split_once(" log line")?.0;
            n.parse::<usize>().ok()
        })
        .sum();
    assert!(dropped > 0);
    assert!(timeouts <= FLOOD, "{timeouts}");
    assert!(
        timeouts + dropped >= FLOOD,
        "{timeouts} written + {dropped} dropped < {FLOOD}"
    );
}

/// `--threads 2` serves from two threads and drains as one server: one line
/// per phase, one `done:` line, and no thread reports its listener lost
/// when another one stops accepting on the shared socket.
#[test]
fn two_threads_drain_as_one_server() {
    let mut runtimes = vec!["smol"];
    if cfg!(feature = "compio") {
        runtimes.push("compio");
    }
    for runtime in runtimes {
        let mut demo = Demo::start(&[
            "--runtime",
            runtime,
            "--threads",
            "2",
            "--lame-duck",
            "0.1",
            "--listen",
            "127.0.0.1:0",
        ]);
        let addrs = demo.tcp_addrs();
        #[cfg(target_os = "linux")]
        {
            let names = thread_names(demo.child.id());
            for thread in ["lameduck-0", "lameduck-1"] {
                assert!(names.iter().any(|n| n == thread), "{runtime}: {names:?}");
            }
        }
        let mut client = Client::connect(addrs[0]).unwrap();
        let hello = client.get("/").unwrap();
        assert_eq!((hello.status, hello.text().as_str()), (200, "hello"));
        drop(client);
        demo.signal(Signal::TERM);
        let (status, stderr) = demo.wait_exit();
        assert_eq!(status.code(), Some(0), "{runtime}: {stderr:?}");
        let count = |line: &str| stderr.iter().filter(|l| l.as_str() == line).count();
        for line in [
            "serve: phase: lame duck",
            "serve: phase: draining",
            "serve: phase: closed",
            "serve: done: drained, forced=0, hooks_cut_off=false, hijacked_open=0",
        ] {
            assert_eq!(count(line), 1, "{runtime}: {line:?} once in {stderr:?}");
        }
        assert!(
            !stderr.iter().any(|l| l.contains("accept on")),
            "{runtime}: no accept error: {stderr:?}"
        );
    }
}

/// `GET /events` at SIGTERM, on every `--runtime`: the stream gets its
/// `event: drain` / `data: bye` and the end of its body (the terminating
/// chunk, then FIN) as the drain begins, and the process exits 0 — long
/// before the 60 s grace, which a stream not ended at the drain would hold
/// it for. Prints the time from SIGTERM to each (run with `--nocapture`).
#[test]
fn events_end_at_sigterm_and_the_process_exits_long_before_the_grace() {
    for runtime in demo_runtimes() {
        let mut demo = Demo::start(&[
            "--runtime",
            runtime,
            "--listen",
            "127.0.0.1:0",
            "--grace",
            "60",
        ]);
        let addr = demo.tcp_addrs()[0];
        let mut checks = Client::connect(addr).unwrap();
        for bad in ["/events", "/events?ms=0", "/events?ms=x", "/events?ms=-1"] {
            let response = checks.get(bad).unwrap();
            assert_eq!(response.status, 400, "{runtime} {bad}: {response:?}");
        }
        drop(checks);

        let mut client = Client::connect(addr).unwrap();
        client.send_get("/events?ms=50").unwrap();
        client.read_until_contains(b"data: 1\n\n").unwrap();
        let sigterm = Instant::now();
        demo.signal(Signal::TERM);
        // Returns once the terminating chunk has arrived.
        let response = client.read_response().unwrap();
        let body_end = sigterm.elapsed();
        assert_eq!(
            response.header("content-type"),
            Some("text/event-stream"),
            "{runtime}"
        );
        let text = response.text();
        assert!(
            text.starts_with("data: 0\n\ndata: 1\n\n"),
            "{runtime}: {text:?}"
        );
        assert!(
            text.ends_with("\n\nevent: drain\ndata: bye\n\n"),
            "{runtime}: {text:?}"
        );
        assert_eq!(
            text.matches("event: drain").count(),
            1,
            "{runtime}: {text:?}"
        );
        assert_eq!(
            client.read_until_closed().unwrap(),
            (Vec::new(), lameduck_testkit::client::Ending::Eof),
            "{runtime}: a clean close after the body"
        );
        // The client closes too, as it would at the end of the body (else
        // the server's gentle close waits up to 500 ms for its FIN).
        drop(client);
        // Bounded by EVENTUALLY (20 s), a third of the grace.
        let deadline = sigterm + EVENTUALLY;
        let exit = loop {
            if demo.child.try_wait().expect("try_wait").is_some() {
                break sigterm.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "{runtime}: the demo did not exit"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        eprintln!(
            "[{runtime}] SIGTERM -> end of the SSE body {body_end:?}, -> process exit {exit:?}"
        );
        let (status, stderr) = demo.wait_exit();
        assert_eq!(status.code(), Some(0), "{runtime}: {stderr:?}");
        assert!(
            stderr.iter().any(
                |l| l == "serve: done: drained, forced=0, hooks_cut_off=false, hijacked_open=0"
            ),
            "{runtime}: {stderr:?}"
        );
    }
}
