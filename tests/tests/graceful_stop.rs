//! What a graceful stop must never break, as process tests of the demo
//! server with real signals on loopback: a socket that systemd (or any
//! parent) holds stays listening; a stop that races a restart never leaves
//! a successor serving a dead listener; and the process does not exit
//! while gentle closes are in progress (which would turn late input into
//! resets that destroy responses not yet read).

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lameduck_testkit::client::{Client, Ending};
use lameduck_tests::load::{Install, install, pid_at, scratch_dir};
use lameduck_tests::process::{Demo, EVENTUALLY, Signal, has_exited, send_signal, serve_binary};

/// Starts the demo (with `args`) on `listener`, passed as systemd's socket
/// activation does (fd 3, `LISTEN_FDS=1`, `LISTEN_PID`, a name).
fn start_activated(listener: &TcpListener, args: &[&str]) -> Demo {
    let mut command = Command::new(serve_binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child =
        lameduck::unix::handoff::spawn_with_listeners(command, &[(listener.as_fd(), "http")])
            .unwrap();
    Demo::from_child(child)
}

/// A socket unit's socket outlives every way of stopping the service: the
/// stop closes this process's descriptor but never shuts the socket down,
/// so it keeps listening in its owner (here this test, as systemd would),
/// a connection made while no server runs waits in its backlog, and the
/// next start serves on the same socket — and answers that connection.
#[test]
fn a_socket_units_socket_keeps_listening_through_a_stop() {
    let cases: [(&str, Signal, &[&str]); 4] = [
        ("SIGTERM", Signal::TERM, &[]),
        ("SIGUSR2", Signal::USR2, &[]),
        ("SIGINT", Signal::INT, &["--lame-duck", "0.1"]),
        ("SIGTERM, supervised", Signal::TERM, &["--supervise"]),
    ];
    for (what, signal, args) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut first = start_activated(&listener, args);
        let mut client = Client::connect(addr).unwrap();
        assert_eq!(client.get("/").unwrap().text(), "hello", "{what}");
        first.signal(signal);
        let (status, stderr) = first.wait_exit();
        assert!(
            status.code().is_some(),
            "{what}: killed by a signal: {stderr:?}"
        );
        // No server runs: the socket still listens, and queues this one.
        let waiting = TcpStream::connect_timeout(&addr, EVENTUALLY)
            .unwrap_or_else(|e| panic!("{what}: the socket stopped listening: {e}"));
        let mut second = start_activated(&listener, args);
        let mut client = Client::connect(addr).unwrap();
        assert_eq!(
            client.get("/").unwrap().text(),
            "hello",
            "{what}: the next start serves the same socket"
        );
        let mut queued = Client::from_stream(waiting).unwrap();
        let response = queued.get("/pid").unwrap();
        assert_eq!(
            response.text().trim(),
            pid_at(addr).unwrap().to_string(),
            "{what}: the connection queued meanwhile is served by the next start"
        );
        second.signal(Signal::TERM);
        let (status, stderr) = second.wait_exit();
        assert_eq!(status.code(), Some(0), "{what}: {stderr:?}");
    }
}

/// Processes whose executable is `exe`.
fn running(exe: &Path) -> Vec<u32> {
    let exe = std::fs::canonicalize(exe).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            !has_exited(*pid)
                && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe)
        })
        .collect()
}

/// SIGHUP, then SIGTERM a few milliseconds later (0 to 11 ms apart, so
/// that the stop lands before, during and after the successor's
/// readiness): "stop, or hand off?" is decided once. Either the old
/// process stops and no successor survives (the pid file is gone), or it
/// handed off first and the successor — named in the pid file — serves on
/// the port. Never a successor alive on a listener the stop shut down.
#[test]
fn a_stop_racing_a_restart_never_leaves_a_deaf_successor() {
    let dir = scratch_dir("race");
    let exe = dir.join("serve");
    install(&exe, Install::Binary(&serve_binary()));
    let pid_file = dir.join("serve.pid");
    let (mut handed_off, mut stopped) = (0, 0);
    for round in 0..24u64 {
        let mut command = Command::new(&exe);
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ]);
        let mut demo = Demo::spawn(command);
        let old = demo.pid();
        let addr = demo.tcp_addrs()[0];
        send_signal(old, Signal::HUP);
        std::thread::sleep(Duration::from_millis(round % 12));
        send_signal(old, Signal::TERM);
        let deadline = Instant::now() + EVENTUALLY;
        // Bounded by the deadline.
        let status = loop {
            if let Some(status) = demo.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the old process did not exit"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(status.code(), Some(0), "round {round}");
        let alive = running(&exe);
        match std::fs::read_to_string(&pid_file) {
            Ok(text) => {
                let successor: u32 = text.trim().parse().unwrap();
                assert_ne!(
                    successor, old,
                    "round {round}: the old process left its pid file"
                );
                assert_eq!(
                    alive,
                    vec![successor],
                    "round {round}: only the successor runs"
                );
                assert_eq!(
                    pid_at(addr).unwrap_or_else(|e| panic!(
                        "round {round}: successor {successor} alive, but the port fails: {e}"
                    )),
                    successor,
                    "round {round}"
                );
                send_signal(successor, Signal::TERM);
                let (_, stderr) = demo.wait_exit(); // the pipes end with it
                assert!(has_exited(successor), "round {round}: {stderr:?}");
                handed_off += 1;
            }
            Err(_) => {
                assert!(
                    alive.is_empty(),
                    "round {round}: no pid file, yet {alive:?} still run"
                );
                stopped += 1;
            }
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    eprintln!("stop racing a restart: {handed_off} handed off first, {stopped} stopped first");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request sent on an idle keep-alive connection right as the drain
/// begins gets a full response or a clean end of stream — never a reset:
/// the process exits only once its gentle closes (which read and discard
/// such late input) have ended. 20 processes × 10 connections.
#[test]
fn a_request_racing_the_drain_is_never_reset() {
    let (mut answered, mut ended) = (0, 0);
    for round in 0..20 {
        let mut demo = Demo::start(&["--listen", "127.0.0.1:0"]);
        let addr = demo.tcp_addrs()[0];
        let mut clients: Vec<Client> = (0..10).map(|_| Client::connect(addr).unwrap()).collect();
        for client in &mut clients {
            assert_eq!(client.get("/").unwrap().text(), "hello");
        }
        demo.signal(Signal::TERM);
        for client in &mut clients {
            // The server may have closed already; a failed send shows as
            // the ending read below.
            let _ = client.send_get("/");
        }
        for (i, client) in clients.iter_mut().enumerate() {
            match client.read_response_or_close() {
                Ok(Ok(response)) => {
                    // Read before the drain (kept alive, closed after) or
                    // after (`Connection: close`): answered in full.
                    assert_eq!(response.text(), "hello", "round {round}, client {i}");
                    answered += 1;
                }
                Ok(Err(Ending::Eof)) => ended += 1,
                Ok(Err(Ending::Reset)) => panic!("round {round}, client {i}: reset"),
                Err(e) => panic!("round {round}, client {i}: {e}"),
            }
        }
        drop(clients);
        let (status, stderr) = demo.wait_exit();
        assert_eq!(status.code(), Some(0), "{stderr:?}");
    }
    eprintln!("requests racing the drain: {answered} answered, {ended} clean ends, 0 resets");
}

/// A client still reading a large response that the server has written
/// whole, which pipelines its next request after SIGTERM, reads the rest
/// of that response intact: the server's gentle close reads and discards
/// the pipelined request until the client closes, and the process waits
/// for it. 20 tries.
#[test]
fn a_large_response_still_being_read_survives_the_exit() {
    const CHUNKS: usize = 20_000;
    for round in 0..20 {
        let mut demo = Demo::start(&["--listen", "127.0.0.1:0"]);
        let addr = demo.tcp_addrs()[0];
        let mut client = Client::connect(addr).unwrap();
        client
            .send_get(&format!("/stream?chunks={CHUNKS}&ms=0"))
            .unwrap();
        client.read_until_contains(b"chunk 0\n").unwrap();
        demo.signal(Signal::TERM);
        client.send_get("/").unwrap();
        // Give a process that would exit too early the time to: a bounded
        // look at its state (the assertion below does not depend on it).
        let deadline = Instant::now() + Duration::from_millis(100);
        // Bounded by the deadline.
        while Instant::now() < deadline && demo.child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let response = client
            .read_response()
            .unwrap_or_else(|e| panic!("round {round}: the response was cut: {e}"));
        let expected: String = (0..CHUNKS).map(|i| format!("chunk {i}\n")).collect();
        assert!(
            response.text() == expected,
            "round {round}: {} of {} bytes",
            response.body.len(),
            expected.len()
        );
        match client.read_response_or_close() {
            Ok(Err(Ending::Eof)) => {}
            other => panic!("round {round}: after the response: {other:?}"),
        }
        drop(client);
        let (status, stderr) = demo.wait_exit();
        assert_eq!(status.code(), Some(0), "{stderr:?}");
    }
}
