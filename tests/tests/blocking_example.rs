//! The runtime-free proof: `core/examples/blocking_server.rs` (plain threads,
//! no async runtime) run as a real process and driven by real
//! `std::net::TcpStream` clients on 127.0.0.1.
//!
//! Every wait is bounded by [`WAIT`] and waits for something observable: a
//! line on the server's stdout, an EOF on a socket, the process's exit.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// The bound on every wait. Far below the deadlines the tests configure
/// (30 s and more) when they claim "well before the deadline".
const WAIT: Duration = Duration::from_secs(10);
/// Building the example may wait for another cargo holding the build lock.
const BUILD_WAIT: Duration = Duration::from_secs(600);

/// Builds the example once (cargo makes it a no-op when fresh) with the
/// profile this test was built with, and returns its path.
fn example_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // This test runs as <target>/<profile>/deps/blocking_example-<hash>.
        let exe = std::env::current_exe().expect("the test knows its path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test runs from <target>/<profile>/deps");
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut build = Command::new(env!("CARGO"));
        build.current_dir(&workspace).args([
            "build",
            "--quiet",
            "-p",
            "lameduck-core",
            "--example",
            "blocking_server",
        ]);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let mut child = build.spawn().expect("cargo runs");
        let status = wait_exit(&mut child, BUILD_WAIT).expect("the example builds in time");
        assert!(status.success(), "building the example failed: {status}");
        let binary = profile_dir
            .join("examples")
            .join(format!("blocking_server{}", std::env::consts::EXE_SUFFIX));
        assert!(binary.exists(), "no example binary at {}", binary.display());
        binary
    })
}

/// Polls a child until it exits, at most `limit`; kills it past that.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait works") {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The example server as a child process; killed on drop (e.g. on a failed
/// assertion).
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(args: &[&str]) -> ServerProcess {
        let mut child = Command::new(example_binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        // Always drain stdout, so the server never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let first = lines.recv_timeout(WAIT).expect("a first line on stdout");
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("first line is `listening on ADDR pid=N`: {first:?}"));
        ServerProcess {
            child,
            stdin,
            lines,
            addr,
        }
    }

    /// Waits for a stdout line containing `what`, skipping others.
    fn wait_line(&self, what: &str) -> String {
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("no stdout line containing {what:?} ({e})"),
            }
        }
    }

    /// Writes a command line on the server's stdin.
    fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("the server reads stdin");
        stdin.flush().expect("the server reads stdin");
    }

    fn shutdown(&mut self) {
        self.command("shutdown");
        self.wait_line("phase: Draining");
    }

    /// Asserts the process has not exited (yet).
    fn assert_running(&mut self) {
        let status = self.child.try_wait().expect("try_wait works");
        assert_eq!(status, None, "the server is still draining");
    }

    /// The exit status, within [`WAIT`].
    fn exit_status(&mut self) -> ExitStatus {
        wait_exit(&mut self.child, WAIT).expect("the server exits in time")
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, WAIT).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("set timeout");
        stream.set_write_timeout(Some(WAIT)).expect("set timeout");
        stream
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, value)| value.as_str())
    }
}

fn send_get(stream: &mut TcpStream, target: &str) {
    write!(stream, "GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write request");
}

/// Reads one response, never past its end (the head byte by byte).
fn read_response(stream: &mut TcpStream) -> Response {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("response head cut short after {head:?}: {other:?}"),
        }
    }
    let head = String::from_utf8(head).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: String::new(),
    };
    let len: usize = response
        .header("content-length")
        .and_then(|len| len.parse().ok())
        .expect("a Content-Length");
    let mut body = vec![0; len];
    stream.read_exact(&mut body).expect("the whole body");
    response.body = String::from_utf8(body).expect("UTF-8 body");
    response
}

/// Asserts the server closes `stream` (EOF, nothing more to read) within
/// [`WAIT`].
fn assert_eof(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes before EOF: {rest:?}"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the server did not close the connection within {WAIT:?}")
        }
        Err(e) => panic!("expected an EOF, got {e}"),
    }
}

/// Starts `GET /sleep?ms=200` with a 4-byte body and holds the body back:
/// the request is Active (its head parsed) and stays so until
/// [`release`] sends the body. Deterministic, unlike a long sleep.
fn held_request(server: &ServerProcess) -> TcpStream {
    let mut busy = server.connect();
    let head = "GET /sleep?ms=200 HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\n";
    busy.write_all(head.as_bytes()).expect("write head");
    server.wait_line("GET /sleep?ms=200"); // head parsed: Active
    busy
}

/// Sends the held body; the response must carry `Connection: close`, and
/// the server must then close the connection.
fn release(mut busy: TcpStream) {
    busy.write_all(b"body").expect("write body");
    let response = read_response(&mut busy);
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "slept 200\n")
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert_eof(&mut busy);
}

/// (1) A request in flight when the shutdown begins completes, with
/// `Connection: close`; the listener is closed; the exit is graceful.
#[test]
fn in_flight_request_completes_with_connection_close() {
    let mut server = ServerProcess::start(&["--grace", "5", "--deadline", "30"]);
    let busy = held_request(&server);
    server.shutdown();

    server.wait_line("listener closed");
    let refused = TcpStream::connect_timeout(&server.addr, WAIT);
    assert!(refused.is_err(), "no new connection once draining");

    release(busy); // answered after the shutdown began
    server.wait_line("closed by the core: KeepAliveOff");
    assert_eq!(server.exit_status().code(), Some(0));
    server.wait_line("done: Drained, forced 0");
}

/// (2) An idle keep-alive connection is closed as soon as the shutdown
/// begins — while a held request keeps the process draining, so the EOF
/// comes from the adapter carrying out `CloseConn`, not from the exit — and
/// it does not hold up the exit (deadline and grace: 60 s).
#[test]
fn idle_connection_closes_at_once_and_does_not_delay_exit() {
    let mut server = ServerProcess::start(&["--grace", "60", "--deadline", "60"]);
    let mut idle = server.connect();
    send_get(&mut idle, "/");
    let response = read_response(&mut idle);
    assert_eq!((response.status, response.body.as_str()), (200, "hello\n"));
    assert_eq!(
        response.header("connection"),
        None,
        "keep-alive while serving"
    );
    server.wait_line("idle"); // response_done reported: Idle
    let busy = held_request(&server);

    let shutdown_at = Instant::now();
    server.shutdown();
    assert_eof(&mut idle);
    // Closed as Idle (Drain), not as a response finishing (KeepAliveOff).
    server.wait_line("closed by the core: Drain");
    server.assert_running();

    release(busy);
    assert_eq!(server.exit_status().code(), Some(0));
    server.wait_line("done: Drained, forced 0");
    assert!(
        shutdown_at.elapsed() < WAIT,
        "well before the 60 s deadline"
    );
}

/// (3) A connection that never sends is closed at the new-connection grace
/// (measured from its accept; a held request keeps the process up to see
/// it), and once the last request is done the process exits at once.
#[test]
fn silent_connection_is_closed_at_the_grace() {
    let mut server = ServerProcess::start(&["--grace", "0.5", "--deadline", "30"]);
    let connect_at = Instant::now();
    let mut silent = server.connect();
    server.wait_line("accepted"); // tracked as New before the shutdown
    let busy = held_request(&server);
    server.shutdown();

    assert_eof(&mut silent);
    let closed_after = connect_at.elapsed();
    assert!(
        closed_after >= Duration::from_millis(500),
        "not before the grace: {closed_after:?}"
    );
    server.wait_line("closed by the core: NewConnGrace");
    server.assert_running();

    release(busy);
    assert_eq!(server.exit_status().code(), Some(0));
    server.wait_line("done: Drained, forced 0");
}

/// (4) At the deadline, what remains is closed by force, unanswered, and the
/// exit status says so.
#[test]
fn deadline_forces_the_rest_and_exits_1() {
    let mut server = ServerProcess::start(&["--grace", "5", "--deadline", "0.3"]);
    let mut busy = server.connect();
    send_get(&mut busy, "/sleep?ms=8000");
    server.wait_line("GET /sleep?ms=8000");
    server.shutdown();

    assert_eof(&mut busy); // no response: it was cut off
    server.wait_line("closed by the core: Deadline");
    assert_eq!(server.exit_status().code(), Some(1));
    server.wait_line("done: DeadlineExpired, forced 1");
}

/// Garbage gets a 400 and a close, the server keeps serving, and EOF on
/// stdin is a shutdown like the `shutdown` line.
#[test]
fn bad_request_gets_400_and_stdin_eof_shuts_down() {
    let mut server = ServerProcess::start(&[]);
    let mut bad = server.connect();
    bad.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("write");
    let response = read_response(&mut bad);
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eof(&mut bad);

    let mut good = server.connect();
    send_get(&mut good, "/");
    assert_eq!(read_response(&mut good).status, 200);
    drop(good);

    drop(server.stdin.take()); // EOF
    server.wait_line("phase: Draining");
    assert_eq!(server.exit_status().code(), Some(0));
    server.wait_line("done: Drained");
}
