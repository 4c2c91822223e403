//! The control socket, as process tests of the demo server
//! (`serve --control PATH`, `serve ctl --control PATH restart|status`):
//! restarts that print the new pid, failures that exit non-zero with the
//! reason while the old process serves on, concurrent restarts that see
//! one restart, a stop that refuses, and clients that send garbage or
//! nothing harming nothing.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lameduck_testkit::client::Client;
use lameduck_tests::load::{SwappableDemo, pid_at, scratch_dir, wait_serving};
use lameduck_tests::process::{
    Demo, EVENTUALLY, Signal, has_exited, send_signal, serve_binary, wait_exited,
};

/// `serve ctl --control PATH <command>`, to its end.
fn ctl(path: &Path, command: &str) -> Output {
    Command::new(serve_binary())
        .args(["ctl", "--control", path.to_str().unwrap(), command])
        .stdin(Stdio::null())
        .output()
        .expect("running serve ctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

/// The value of `key=` in a status line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} in {line:?}"))
}

/// `ctl status` prints one line; `ctl restart` prints the new pid, which
/// then serves, owns the control socket (status comes from it) and is
/// one generation further on; a stop in progress refuses a restart; the
/// last process removes the socket file.
#[test]
fn ctl_restart_prints_the_new_pid_and_status_follows_it() {
    let dir = scratch_dir("ctl");
    let sock = dir.join("control.sock");
    let mut demo = Demo::start(&[
        "--listen",
        "127.0.0.1:0",
        "--control",
        sock.to_str().unwrap(),
        "--grace",
        "20",
    ]);
    let addrs = demo.tcp_addrs();
    let pid = demo.pid();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner only");

    let status = ctl(&sock, "status");
    assert!(status.status.success(), "{status:?}");
    let line = stdout(&status);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert_eq!(field(&line, "phase"), "serving");
    assert_eq!(field(&line, "pid"), pid.to_string());
    assert_eq!(field(&line, "generation"), "1");
    for key in ["new", "active", "idle"] {
        field(&line, key).parse::<usize>().unwrap();
    }

    for round in 2..=3u32 {
        let old = demo.current();
        let restarted = ctl(&sock, "restart");
        assert!(restarted.status.success(), "{restarted:?}");
        let new: u32 = stdout(&restarted)
            .strip_prefix("restarted pid=")
            .unwrap_or_else(|| panic!("{restarted:?}"))
            .parse()
            .unwrap();
        assert_ne!(new, old);
        assert_eq!(
            demo.next_first_line().split("pid=").nth(1),
            Some(&*new.to_string())
        );
        wait_serving(addrs[0], new);
        let line = stdout(&ctl(&sock, "status"));
        assert_eq!(field(&line, "pid"), new.to_string(), "round {round}");
        assert_eq!(field(&line, "generation"), round.to_string());
        wait_exited(old);
    }

    // A stop in progress: restarts are refused, status says draining.
    let current = demo.current();
    let mut slow = Client::connect(addrs[0]).unwrap();
    slow.send_get("/sleep?ms=3000").unwrap();
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    while field(&stdout(&ctl(&sock, "status")), "active") != "1" {
        assert!(Instant::now() < deadline, "the slow request never started");
    }
    send_signal(current, Signal::TERM);
    demo.wait_stderr("SIGTERM: draining");
    let refused = ctl(&sock, "restart");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert_eq!(
        stdout(&refused),
        "restart failed: the server is stopping",
        "{refused:?}"
    );
    let line = stdout(&ctl(&sock, "status"));
    assert_eq!(field(&line, "phase"), "draining", "{line}");
    assert_eq!(slow.read_response().unwrap().text(), "slept 3000");
    wait_exited(current);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(
        !sock.exists(),
        "the last process removes the control socket"
    );
    assert!(
        !ctl(&sock, "status").status.success(),
        "no one answers any more"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each failing successor (refuses the state's version, exits after
/// taking it, hangs): `ctl restart` exits 1 with the reason, and the old
/// process serves on with its own `/hits` count.
#[test]
fn ctl_restart_failures_exit_nonzero_with_the_reason() {
    let installed = SwappableDemo::new("ctl-faults");
    let dir = &installed.dir;
    let sock = dir.join("control.sock");
    let mut command = installed.command();
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--ready-timeout",
        "1.5",
        "--control",
        sock.to_str().unwrap(),
    ]);
    let mut demo = Demo::spawn(command);
    let addrs = demo.tcp_addrs();
    let pid = demo.pid();
    let mut kept = Client::connect(addrs[0]).unwrap();
    let mut count: u64 = kept.get("/hits").unwrap().text().parse().unwrap();
    for (fault, expected) in [
        (
            "refuse-state",
            "refused the restart state (restart state version 1 is not one of 2..=2)",
        ),
        (
            "exit-after-state",
            "exited before it was ready (exit status: 3)",
        ),
        ("hang-after-state", "was not ready in time"),
    ] {
        installed.install_fault(fault);
        let failed = ctl(&sock, "restart");
        assert_eq!(failed.status.code(), Some(1), "{fault}: {failed:?}");
        let said = stdout(&failed);
        assert!(
            said.starts_with("restart failed: the successor (pid ") && said.contains(expected),
            "{fault}: {said}"
        );
        let now: u64 = kept.get("/hits").unwrap().text().parse().unwrap();
        assert_eq!(now, count + 1, "{fault}: the old count goes on");
        count = now;
        assert_eq!(pid_at(addrs[0]).unwrap(), pid, "{fault}");
        count += 1; // that /pid
        assert!(!has_exited(pid));
        let line = stdout(&ctl(&sock, "status"));
        assert_eq!(field(&line, "pid"), pid.to_string(), "{fault}");
        assert_eq!(field(&line, "restart"), "running", "{fault}");
    }
    installed.install_demo();
    let restarted = ctl(&sock, "restart");
    assert!(restarted.status.success(), "{restarted:?}");
    let new: u32 = stdout(&restarted)
        .strip_prefix("restarted pid=")
        .unwrap()
        .parse()
        .unwrap();
    wait_serving(addrs[0], new);
    send_signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Four `ctl restart` at once, while the successor is held before it
/// starts: one restart begins, the three others join it, and all four
/// print the same new pid.
#[test]
fn concurrent_ctl_restarts_see_one_restart() {
    let installed = SwappableDemo::new("ctl-concurrent");
    let dir = &installed.dir;
    let sock = dir.join("control.sock");
    let gate = dir.join("gate");
    assert!(
        Command::new("mkfifo")
            .arg(&gate)
            .status()
            .unwrap()
            .success()
    );
    let mut command = installed.command();
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--control",
        sock.to_str().unwrap(),
    ]);
    let mut demo = Demo::spawn(command);
    let addrs = demo.tcp_addrs();
    let pid = demo.pid();
    // The successor waits for the gate before it becomes the server.
    installed.install_wrapper(&format!("read go < {}\n", gate.display()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            Command::new(serve_binary())
                .args(["ctl", "--control", sock.to_str().unwrap(), "restart"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every request reached the server: one began the restart, three
    // joined it.
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    loop {
        demo.wait_stderr("control: restart requested");
        let seen = |needle: &str| {
            demo.stderr_seen
                .iter()
                .filter(|l| l.ends_with(needle))
                .count()
        };
        let (began, joined) = (
            seen("control: restart requested"),
            seen("control: restart requested; joining the restart in flight"),
        );
        assert!(began <= 1, "{:?}", demo.stderr_seen);
        if began == 1 && joined == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "began {began}, joined {joined}: {:?}",
            demo.stderr_seen
        );
        let from = demo.stderr_seen.len();
        // The next stderr line (or the wait's own deadline).
        demo.wait_stderr_from(from, "");
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&gate)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let mut pids = Vec::new();
    for client in clients {
        let output = client.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        pids.push(stdout(&output));
    }
    let new = demo.next_first_line();
    let new: u32 = new.split("pid=").nth(1).unwrap().parse().unwrap();
    assert_ne!(new, pid);
    assert!(
        pids.iter().all(|p| *p == format!("restarted pid={new}")),
        "{pids:?}"
    );
    wait_serving(addrs[0], new);
    let started = demo
        .stderr_seen
        .iter()
        .filter(|l| l.contains("restart to generation"))
        .count();
    assert_eq!(started, 1, "{:?}", demo.stderr_seen);
    installed.install_demo();
    send_signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Clients that send garbage, a line too long, or nothing: each gets an
/// `error` line or, when silent, is closed after the request timeout;
/// meanwhile status and restart work.
#[test]
fn control_clients_sending_garbage_or_nothing_harm_nothing() {
    let dir = scratch_dir("ctl-garbage");
    let sock = dir.join("control.sock");
    let mut demo = Demo::start(&[
        "--listen",
        "127.0.0.1:0",
        "--control",
        sock.to_str().unwrap(),
    ]);
    let addrs = demo.tcp_addrs();
    let silent: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let answer = |bytes: &[u8]| {
        let mut client = UnixStream::connect(&sock).unwrap();
        client.set_read_timeout(Some(EVENTUALLY)).unwrap();
        let _ = client.write_all(bytes);
        let _ = client.shutdown(std::net::Shutdown::Write);
        let mut reply = String::new();
        let _ = client.read_to_string(&mut reply);
        reply
    };
    assert_eq!(
        answer(b"\x00\xff\x16\x03\x01 hello\n"),
        "error unknown request \"?\u{fffd}??? hello\" (restart, status)\n"
    );
    assert_eq!(
        answer(&[b'x'; 10_000]),
        "error request longer than 64 bytes\n"
    );
    assert_eq!(
        answer(b"status"),
        "error no request line\n",
        "half a line, then the end"
    );
    let status = ctl(&sock, "status");
    assert!(status.status.success(), "{status:?}");
    // The silent ones are closed after the request timeout (5 s).
    let t0 = Instant::now();
    for mut client in silent {
        client.set_read_timeout(Some(EVENTUALLY)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "closed unanswered");
    }
    assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());
    let old = demo.current();
    let restarted = ctl(&sock, "restart");
    assert!(restarted.status.success(), "{restarted:?}");
    let new: u32 = stdout(&restarted)
        .strip_prefix("restarted pid=")
        .unwrap()
        .parse()
        .unwrap();
    wait_serving(addrs[0], new);
    wait_exited(old);
    send_signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Supervisor mode: the control socket is the supervisor's. `ctl status`
/// names the serving generation; `ctl restart` prints the next
/// generation's pid, or exits 1 with the reason when that generation
/// refuses the state (the serving one goes on); the supervisor removes
/// the socket file when it exits.
#[test]
fn the_supervisor_serves_the_control_socket() {
    let installed = SwappableDemo::new("ctl-supervised");
    let dir = &installed.dir;
    let sock = dir.join("control.sock");
    let mut command = installed.command();
    command.args([
        "--supervise",
        "--listen",
        "127.0.0.1:0",
        "--control",
        sock.to_str().unwrap(),
    ]);
    let mut demo = Demo::spawn(command);
    let addrs = demo.tcp_addrs();
    let supervisor = demo.pid();
    let line = stdout(&ctl(&sock, "status"));
    assert_eq!(field(&line, "supervisor"), supervisor.to_string(), "{line}");
    assert_eq!(field(&line, "generation"), "1", "{line}");
    let first: u32 = field(&line, "pid").parse().unwrap();
    assert_eq!(pid_at(addrs[0]).unwrap(), first);

    let restarted = ctl(&sock, "restart");
    assert!(restarted.status.success(), "{restarted:?}");
    let second: u32 = stdout(&restarted)
        .strip_prefix("restarted pid=")
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(second, first);
    let deadline = Instant::now() + EVENTUALLY;
    // One request per pass; bounded by the deadline (the first generation
    // stops accepting once it reads the supervisor's HANDOFF).
    while pid_at(addrs[0]).unwrap() != second {
        assert!(Instant::now() < deadline);
    }
    let line = stdout(&ctl(&sock, "status"));
    assert_eq!(field(&line, "pid"), second.to_string(), "{line}");
    assert_eq!(field(&line, "generation"), "2", "{line}");

    installed.install_fault("refuse-state");
    let failed = ctl(&sock, "restart");
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(
        stdout(&failed).contains("refused the restart state"),
        "{failed:?}"
    );
    assert_eq!(pid_at(addrs[0]).unwrap(), second, "the serving one goes on");
    let line = stdout(&ctl(&sock, "status"));
    assert_eq!(field(&line, "restart"), "running", "{line}");

    send_signal(supervisor, Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!sock.exists(), "the supervisor removes the control socket");
    let _ = std::fs::remove_dir_all(dir);
}
