//! Driving the demo server (`examples/serve`) as a process: its binary,
//! its first line, its stderr, its generations across restarts, and what
//! `/proc` says about processes (exit, zombies, descriptors). Every wait is
//! bounded.

use std::io::{BufRead, BufReader, IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::Pid;
pub use rustix::process::Signal;

/// How long a process test waits for anything that should happen.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// The demo binary that `cargo test --workspace` builds
/// (`target/<profile>/examples/serve`), found from the running test's path.
#[must_use]
pub fn serve_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/serve
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join("examples").join("serve");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test --workspace` builds it (or run `cargo build --example serve -p lameduck`)",
        binary.display()
    );
    binary
}

/// Lines from `source`, read on a thread of their own until its end.
pub fn lines(source: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // One line per pass; ends at the pipe's end.
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `listening on ADDR[,ADDR...] pid=PID`: the TCP addresses and the pid.
///
/// # Panics
/// On any other line.
#[must_use]
pub fn parse_first_line(line: &str) -> (Vec<SocketAddr>, u32) {
    let rest = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not a first line: {line:?}"));
    let (addrs, pid) = rest
        .rsplit_once(" pid=")
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let addrs = addrs
        .split(',')
        .filter(|a| !a.starts_with("unix:"))
        .map(|a| a.parse().unwrap_or_else(|_| panic!("bad address {a:?}")))
        .collect();
    (addrs, pid.parse().expect("a numeric pid"))
}

/// A demo server and every generation that follows it (restarts inherit
/// its stdout and stderr). Killed, with its successors, when dropped.
#[derive(Debug)]
pub struct Demo {
    /// The first generation (this test's child).
    pub child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub stdout_seen: Vec<String>,
    /// Every stderr line read so far.
    pub stderr_seen: Vec<String>,
    /// The first generation's first line.
    pub first_line: String,
    /// Pids of every generation seen (first lines), in order.
    pub generations: Vec<u32>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for pid in self.generations.iter().skip(1) {
            if !has_exited(*pid) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts the demo with `args`.
    #[must_use]
    pub fn start(args: &[&str]) -> Demo {
        let mut command = Command::new(serve_binary());
        command.args(args);
        Demo::spawn(command)
    }

    /// Starts the demo with `args` and its stderr going to `stderr` (which
    /// this `Demo` does not read: [`wait_stderr`](Self::wait_stderr) finds
    /// nothing, [`wait_exit`](Self::wait_exit) returns no stderr line), and
    /// waits for its first line.
    ///
    /// # Panics
    /// If it cannot start or prints no first line in time.
    #[must_use]
    pub fn start_with_stderr(args: &[&str], stderr: Stdio) -> Demo {
        let mut child = Command::new(serve_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting the demo server");
        // The command, and with it this process's copy of `stderr`, is gone.
        let stdout = lines(child.stdout.take().expect("a piped stdout"));
        let (_, stderr) = mpsc::channel();
        Demo::adopt(child, stdout, stderr)
    }

    /// Starts `command` (the demo, possibly wrapped) with piped stdout and
    /// stderr, and waits for its first line.
    ///
    /// # Panics
    /// If it cannot start or prints no first line in time.
    #[must_use]
    pub fn spawn(mut command: Command) -> Demo {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the demo server");
        Demo::from_child(child)
    }

    /// Adopts a started child whose stdout and stderr are piped, and waits
    /// for its first line.
    ///
    /// # Panics
    /// If it prints no first line in time.
    #[must_use]
    pub fn from_child(mut child: Child) -> Demo {
        let stdout = lines(child.stdout.take().expect("a piped stdout"));
        let stderr = lines(child.stderr.take().expect("a piped stderr"));
        Demo::adopt(child, stdout, stderr)
    }

    fn adopt(child: Child, stdout: mpsc::Receiver<String>, stderr: mpsc::Receiver<String>) -> Demo {
        let mut demo = Demo {
            child,
            stdout,
            stderr,
            stdout_seen: Vec::new(),
            stderr_seen: Vec::new(),
            first_line: String::new(),
            generations: Vec::new(),
        };
        demo.first_line = demo.next_first_line();
        demo
    }

    /// Sends `signal` to the first generation.
    ///
    /// # Panics
    /// If it cannot be sent.
    pub fn signal(&self, signal: Signal) {
        send_signal(self.pid(), signal);
    }

    /// The first generation's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The newest generation's pid.
    #[must_use]
    pub fn current(&self) -> u32 {
        *self.generations.last().expect("at least the first")
    }

    /// The TCP addresses of the first line.
    #[must_use]
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        parse_first_line(&self.first_line).0
    }

    /// Waits for the next `listening on` line on stdout (a new generation)
    /// and returns it.
    ///
    /// # Panics
    /// If none comes in time.
    pub fn next_first_line(&mut self) -> String {
        let deadline = Instant::now() + EVENTUALLY;
        // One line per pass; bounded by the deadline.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.stdout_seen.push(line.clone());
                    if line.starts_with("listening on ") {
                        self.generations.push(parse_first_line(&line).1);
                        return line;
                    }
                }
                Err(_) => {
                    self.drain_stderr();
                    panic!(
                        "no (further) first line on stdout; stdout {:?}; stderr {:?}",
                        self.stdout_seen, self.stderr_seen
                    )
                }
            }
        }
    }

    fn drain_stderr(&mut self) {
        self.stderr_seen.extend(self.stderr.try_iter());
    }

    /// Waits for a stderr line containing `needle` (read from where the
    /// last wait stopped, or earlier lines already read) and returns it.
    ///
    /// # Panics
    /// If none comes in time.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        self.wait_stderr_from(0, needle)
    }

    /// Like [`wait_stderr`](Self::wait_stderr), only among stderr lines
    /// from index `from` on.
    ///
    /// # Panics
    /// If none comes in time.
    pub fn wait_stderr_from(&mut self, from: usize, needle: &str) -> String {
        let deadline = Instant::now() + EVENTUALLY;
        // One line per pass; bounded by the deadline.
        loop {
            if let Some(line) = self
                .stderr_seen
                .iter()
                .skip(from)
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.stderr_seen.push(line),
                Err(_) => panic!("no stderr line with {needle:?}; saw {:?}", self.stderr_seen),
            }
        }
    }

    /// Waits for the first generation's exit; returns its status and all
    /// of stderr (to the end of the pipe: every generation gone).
    ///
    /// # Panics
    /// If it does not exit in time.
    pub fn wait_exit(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + EVENTUALLY;
        // Bounded by the deadline.
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "the demo did not exit");
            std::thread::sleep(Duration::from_millis(5));
        };
        // The pipes end once every process holding them is gone.
        while let Ok(line) = self.stderr.recv_timeout(EVENTUALLY) {
            self.stderr_seen.push(line);
        }
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_millis(1)) {
            self.stdout_seen.push(line);
        }
        (status, self.stderr_seen.clone())
    }
}

/// Sends `signal` to `pid`.
///
/// # Panics
/// If it cannot be sent (no such process, say).
pub fn send_signal(pid: u32, signal: Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .expect("a positive pid");
    rustix::process::kill_process(pid, signal).expect("signalling the demo");
}

/// A process's state letter and parent from `/proc/PID/stat`, or `None`
/// once it is gone.
#[must_use]
pub fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, state, ppid)| (state, ppid))
}

/// The pid, state letter and parent in a `/proc/PID/stat` line.
#[must_use]
pub fn parse_stat(stat: &str) -> Option<(u32, char, u32)> {
    // `pid (comm) S ppid ...`; comm may hold spaces and parentheses.
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((pid, state, ppid))
}

/// Whether `pid` has exited (gone, or a zombie left for someone to reap).
#[must_use]
pub fn has_exited(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some(('Z' | 'X', _)))
}

/// Waits until `pid` has exited.
///
/// # Panics
/// If it has not within [`EVENTUALLY`].
pub fn wait_exited(pid: u32) {
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    while !has_exited(pid) {
        assert!(Instant::now() < deadline, "pid {pid} did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Zombie children of `parent`: exited, never reaped.
#[must_use]
pub fn zombies_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_state(*pid) == Some(('Z', parent)))
        .collect()
}

/// Children of `parent` still present (running or zombie).
#[must_use]
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_state(*pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// `pid`'s open descriptors: number → what it is (`socket:[…]`, a path).
#[must_use]
pub fn fds(pid: u32) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<(i32, String)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

/// What kinds of descriptors `fds` are (`socket`, `pipe`, `anon_inode`, a
/// path), sorted: numbers and inodes differ per run.
#[must_use]
pub fn fd_kinds(fds: &[(i32, String)]) -> Vec<String> {
    let mut kinds: Vec<String> = fds
        .iter()
        .map(|(_, target)| target.split(':').next().unwrap_or(target).to_owned())
        .collect();
    kinds.sort();
    kinds
}

/// Waits until `pid` holds descriptors of the kinds `expected` (what
/// [`fd_kinds`] gives), for at most [`EVENTUALLY`].
///
/// # Panics
/// If it does not, naming `what`.
pub fn wait_fd_kinds(pid: u32, expected: &[String], what: &str) {
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    loop {
        let now = fds(pid);
        if fd_kinds(&now) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: descriptors {now:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The environment `pid` was started with (`/proc/PID/environ`).
#[must_use]
pub fn start_environment(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|e| !e.is_empty())
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A `NOTIFY_SOCKET` that records each datagram with its sender's pid.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    /// Its path: the value for `NOTIFY_SOCKET`.
    pub path: PathBuf,
    /// Datagrams [`next_protocol`](Self::next_protocol) skipped.
    skipped: std::sync::Mutex<Vec<(u32, String)>>,
}

/// A datagram of `STATUS=`, `WATCHDOG=1` and `EXTEND_TIMEOUT_USEC=` lines
/// only: what a service says beyond the protocol's steps (`READY=1`,
/// `RELOADING=1`, `MAINPID=`, `STOPPING=1`), at times of its own.
#[must_use]
pub fn is_beyond_ready(message: &str) -> bool {
    message.lines().all(|line| {
        line.starts_with("STATUS=")
            || line == "WATCHDOG=1"
            || line.starts_with("EXTEND_TIMEOUT_USEC=")
    })
}

impl NotifySocket {
    /// Binds `notify.sock` in `dir`.
    ///
    /// # Panics
    /// If it cannot.
    #[must_use]
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        // The kernel attaches each sender's credentials.
        rustix::net::sockopt::set_socket_passcred(&socket, true).unwrap();
        NotifySocket {
            socket,
            path,
            skipped: std::sync::Mutex::default(),
        }
    }

    /// The next datagram and its sender's pid, waiting up to
    /// [`EVENTUALLY`].
    ///
    /// # Panics
    /// If none comes in time.
    #[must_use]
    pub fn next(&self) -> (u32, String) {
        self.next_within(EVENTUALLY)
            .expect("a notification in time")
    }

    /// The next datagram that is not [beyond READY](is_beyond_ready) and
    /// its sender's pid, waiting up to [`EVENTUALLY`] for each; the others
    /// are kept for [`take_skipped`](Self::take_skipped).
    ///
    /// # Panics
    /// If none comes in time.
    #[must_use]
    pub fn next_protocol(&self) -> (u32, String) {
        // One datagram per pass; each wait is bounded.
        loop {
            let (pid, message) = self.next();
            if !is_beyond_ready(&message) {
                return (pid, message);
            }
            self.skipped.lock().unwrap().push((pid, message));
        }
    }

    /// The datagrams [`next_protocol`](Self::next_protocol) skipped so far
    /// (and forgets them).
    ///
    /// # Panics
    /// If a test thread panicked holding them.
    #[must_use]
    pub fn take_skipped(&self) -> Vec<(u32, String)> {
        std::mem::take(&mut *self.skipped.lock().unwrap())
    }

    /// The next datagram and its sender's pid, or `None` if none comes
    /// within `timeout` (non-zero).
    ///
    /// # Panics
    /// If the socket fails.
    #[must_use]
    pub fn next_within(&self, timeout: Duration) -> Option<(u32, String)> {
        self.socket.set_nonblocking(false).unwrap();
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let msg = match rustix::net::recvmsg(
            &self.socket,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::empty(),
        ) {
            Ok(msg) => msg,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return None,
            Err(e) => panic!("receiving a notification: {e}"),
        };
        let pid = control
            .drain()
            .find_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmCredentials(cred) => {
                    Some(cred.pid.as_raw_nonzero().get() as u32)
                }
                _ => None,
            })
            .expect("the sender's credentials");
        Some((pid, String::from_utf8_lossy(&buf[..msg.bytes]).into_owned()))
    }

    /// Datagrams already queued, without waiting.
    ///
    /// # Panics
    /// If the socket cannot be made non-blocking.
    #[must_use]
    pub fn rest(&self) -> Vec<String> {
        self.socket.set_nonblocking(true).unwrap();
        let mut rest = Vec::new();
        let mut buf = [0u8; 4096];
        // One datagram per pass; at most 100.
        for _ in 0..100 {
            match self.socket.recv(&mut buf) {
                Ok(n) => rest.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) => break,
            }
        }
        rest
    }

    /// [`rest`](Self::rest) without the datagrams [beyond
    /// READY](is_beyond_ready).
    #[must_use]
    pub fn rest_protocol(&self) -> Vec<String> {
        let mut rest = self.rest();
        rest.retain(|m| !is_beyond_ready(m));
        rest
    }
}

/// Other processes that hold any of the sockets `pid` holds (by inode,
/// from `/proc/*/fd`): a listening socket leaked into a process that
/// outlived its purpose shows up here.
#[must_use]
pub fn socket_holders(pid: u32) -> Vec<u32> {
    let sockets: Vec<String> = fds(pid)
        .into_iter()
        .map(|(_, target)| target)
        .filter(|t| t.starts_with("socket:"))
        .collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|other| *other != pid)
        .filter(|other| {
            fds(*other)
                .iter()
                .any(|(_, target)| sockets.contains(target))
        })
        .collect()
}

/// Waits until `pid` is gone or a zombie.
///
/// # Errors
/// If it is still running after `within`: its state.
pub fn wait_gone_within(pid: u32, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    // One look per pass; bounded by the deadline.
    loop {
        match proc_state(pid) {
            None | Some(('Z' | 'X', _)) => return Ok(()),
            Some(state) if Instant::now() >= deadline => {
                return Err(format!("pid {pid} still there: {state:?}"));
            }
            Some(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
