//! Server processes under test: started with piped stdout and stderr, their
//! lines timestamped on arrival, signalled, and their exit observed. Every
//! wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

/// A line and the instant it was read from the pipe.
pub(crate) type Line = (Instant, String);

/// Makes the calling thread wake promptly: nice −10 (best effort; root
/// only). For the threads that timestamp events and otherwise sleep, so the
/// machine's other load delays the instants they record less.
pub(crate) fn prompt() {
    let _ = rustix::process::setpriority_process(None, -10);
}

/// Lines from `source`, each timestamped as it arrives, read on a thread of
/// their own until the pipe's end.
pub(crate) fn timestamped_lines(source: impl Read + Send + 'static) -> Receiver<Line> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        prompt();
        // One line per pass; ends at the pipe's end (every writer gone).
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// `listening on ADDR[,ADDR...] pid=PID` → the first TCP address and the pid.
pub(crate) fn parse_first_line(line: &str) -> Option<(SocketAddr, u32)> {
    let rest = line.strip_prefix("listening on ")?;
    let (addrs, pid) = rest.rsplit_once(" pid=")?;
    let addr = addrs.split(',').find_map(|a| a.parse().ok())?;
    Some((addr, pid.trim().parse().ok()?))
}

/// Which server a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The demo server (`examples/serve`): lameduck.
    Demo,
    /// The untracked hyper + smol baseline (`baseline`).
    Baseline,
    /// The Go `net/http` peer.
    Go,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Demo => "lameduck (demo)",
            Kind::Baseline => "untracked baseline",
            Kind::Go => "Go net/http",
        }
    }
}

/// The runtime bindings, as the demo's and the baseline's `--runtime`
/// name them.
pub(crate) const RUNTIMES: [&str; 5] = ["smol", "smol-local", "compio", "tokio", "async-std"];

/// A server as started: which one, on which runtime binding and how many
/// executor threads (the demo and the baseline; Go picks its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setup {
    pub(crate) kind: Kind,
    pub(crate) runtime: &'static str,
    pub(crate) threads: usize,
}

impl Setup {
    pub(crate) fn new(kind: Kind, runtime: &'static str, threads: usize) -> Setup {
        Setup {
            kind,
            runtime,
            threads,
        }
    }

    pub(crate) fn go() -> Setup {
        Setup::new(Kind::Go, "", 1)
    }

    /// E.g. `lameduck (compio, 2 threads)`, `untracked (tokio)`.
    pub(crate) fn name(&self) -> String {
        let threads = if self.threads > 1 {
            format!(", {} threads", self.threads)
        } else {
            String::new()
        };
        match self.kind {
            Kind::Demo => format!("lameduck ({}{threads})", self.runtime),
            Kind::Baseline => format!("untracked ({}{threads})", self.runtime),
            Kind::Go => Kind::Go.name().to_owned(),
        }
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) demo: PathBuf,
    /// The demo built with lameduck's `tls` feature too (the tls section
    /// only, so that the other sections run the demo as before).
    pub(crate) demo_tls: PathBuf,
    pub(crate) baseline: PathBuf,
    pub(crate) go: PathBuf,
}

impl Binaries {
    /// Beside the runner: `examples/serve`, `examples/serve-tls`,
    /// `baseline`, `go-peer`.
    pub(crate) fn beside(dir: &Path) -> Binaries {
        Binaries {
            demo: dir.join("examples").join("serve"),
            demo_tls: dir.join("examples").join("serve-tls"),
            baseline: dir.join("baseline"),
            go: dir.join("go-peer"),
        }
    }

    /// The command starting `kind` on `listen`, draining for at most
    /// `grace` on SIGTERM (the baseline ignores it: it has no drain).
    pub(crate) fn command(&self, kind: Kind, listen: SocketAddr, grace_secs: u32) -> Command {
        match kind {
            Kind::Demo => {
                let mut c = Command::new(&self.demo);
                c.arg("--listen")
                    .arg(listen.to_string())
                    .arg("--grace")
                    .arg(grace_secs.to_string());
                c
            }
            Kind::Baseline => {
                let mut c = Command::new(&self.baseline);
                c.arg("--listen").arg(listen.to_string());
                c
            }
            Kind::Go => {
                let mut c = Command::new(&self.go);
                c.arg("-listen")
                    .arg(listen.to_string())
                    .arg("-grace")
                    .arg(format!("{grace_secs}s"));
                c
            }
        }
    }
}

impl Binaries {
    /// As [`Binaries::command`], on `setup`'s runtime and threads.
    pub(crate) fn setup_command(
        &self,
        setup: Setup,
        listen: SocketAddr,
        grace_secs: u32,
    ) -> Command {
        let mut c = self.command(setup.kind, listen, grace_secs);
        if setup.kind != Kind::Go {
            c.arg("--runtime")
                .arg(setup.runtime)
                .arg("--threads")
                .arg(setup.threads.to_string());
        }
        c
    }
}

/// A started server: its first line read, its output timestamped.
pub(crate) struct Server {
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    child: Option<Child>,
    pub(crate) stdout: Receiver<Line>,
    pub(crate) stderr: Receiver<Line>,
}

/// How long a server may take to print its first line.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(15);

impl Server {
    /// Starts `command` and waits for its first line.
    pub(crate) fn start(mut command: Command) -> Result<Server, String> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let stdout = timestamped_lines(child.stdout.take().expect("piped stdout"));
        let stderr = timestamped_lines(child.stderr.take().expect("piped stderr"));
        let pid = child.id();
        let mut server = Server {
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            stdout,
            stderr,
        };
        match server.next_first_line(None, START_TIMEOUT) {
            Some((addr, line_pid)) if line_pid == pid => {
                server.addr = addr;
                Ok(server)
            }
            Some((_, other)) => Err(format!(
                "{program}: first line names pid {other}, not {pid}"
            )),
            None => {
                let errors = server.stderr_now().join("\n");
                Err(format!(
                    "{program}: no first line within {START_TIMEOUT:?}; stderr:\n{errors}"
                ))
            }
        }
    }

    /// The next `listening on` line on stdout (of this process or of a
    /// successor sharing its stdout) whose pid is not `not_pid`.
    pub(crate) fn next_first_line(
        &self,
        not_pid: Option<u32>,
        timeout: Duration,
    ) -> Option<(SocketAddr, u32)> {
        let deadline = Instant::now() + timeout;
        // One line per pass; bounded by the deadline.
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.stdout.recv_timeout(left) {
                Ok((_, line)) => {
                    if let Some((addr, pid)) = parse_first_line(&line)
                        && Some(pid) != not_pid
                    {
                        return Some((addr, pid));
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// The stderr lines already read.
    pub(crate) fn stderr_now(&self) -> Vec<String> {
        self.stderr.try_iter().map(|(_, line)| line).collect()
    }

    /// The arrival of the next stderr line containing `needle`.
    pub(crate) fn stderr_line(&self, needle: &str, timeout: Duration) -> Option<Instant> {
        wait_line(&self.stderr, needle, timeout)
    }

    /// Sends `signal` to the process.
    pub(crate) fn signal(&self, signal: Signal) -> Result<(), String> {
        send(self.pid, signal)
    }

    /// Takes the child, to wait for it elsewhere (a thread).
    pub(crate) fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`; reaps it.
    pub(crate) fn stop(mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = send(self.pid, Signal::TERM);
        let deadline = Instant::now() + grace;
        // Polls until exited or the deadline; then kills.
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The arrival of the next line on `lines` containing `needle`.
pub(crate) fn wait_line(
    lines: &Receiver<Line>,
    needle: &str,
    timeout: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    // One line per pass; bounded by the deadline.
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match lines.recv_timeout(left) {
            Ok((at, line)) if line.contains(needle) => return Some(at),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Sends `signal` to `pid`.
pub(crate) fn send(pid: u32, signal: Signal) -> Result<(), String> {
    let raw = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    let pid = Pid::from_raw(raw).ok_or_else(|| format!("bad pid {raw}"))?;
    rustix::process::kill_process(pid, signal).map_err(|e| format!("kill {raw}: {e}"))
}

/// How a waited-for process ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit {
    /// When the wait returned.
    pub(crate) at: Instant,
    /// Its exit status, if it exited.
    pub(crate) code: Option<i32>,
    /// The signal that ended it, if one did.
    pub(crate) signal: Option<i32>,
}

impl Exit {
    pub(crate) fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => "unknown".to_owned(),
        }
    }
}

/// Waits for `child` on a thread of its own (a blocking `waitpid`, so the
/// instant is taken the moment the kernel reports the exit).
pub(crate) fn exit_watcher(mut child: Child) -> Receiver<Exit> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        prompt();
        let status = child.wait();
        let at = Instant::now();
        use std::os::unix::process::ExitStatusExt;
        let exit = match status {
            Ok(status) => Exit {
                at,
                code: status.code(),
                signal: status.signal(),
            },
            Err(_) => Exit {
                at,
                code: None,
                signal: None,
            },
        };
        let _ = tx.send(exit);
    });
    rx
}

/// Waits for `pid` — a child of this process, or an orphan adopted by it as
/// a subreaper — polling every millisecond, at most `timeout`.
pub(crate) fn wait_pid(pid: u32, timeout: Duration) -> Option<Exit> {
    let raw = i32::try_from(pid).ok()?;
    let pid = Pid::from_raw(raw)?;
    let deadline = Instant::now() + timeout;
    // One poll per pass; bounded by the deadline.
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => {
                return Some(Exit {
                    at: Instant::now(),
                    code: status.exit_status(),
                    signal: status.terminating_signal(),
                });
            }
            Ok(None) => {}
            // Not (yet) our child: it may be reparented to us shortly.
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time `pid` has used so far, all its threads together (the first
/// figure of each `/proc/PID/task/TID/schedstat`, in ns). Threads that have
/// already ended are not counted: call it while the server's threads live.
pub(crate) fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The whole machine's busy CPU time so far (every CPU: user, nice,
/// system, irq and softirq time from `/proc/stat`), in ns.
pub(crate) fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice
    // (guest time is counted in user already).
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    // USER_HZ is 100 on Linux.
    Some(busy * 10_000_000)
}

/// Open descriptors of `pid`.
pub(crate) fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The entry of `setup` in a list kept per server (runs, instruction
/// counts): what each section's results are looked up by.
pub(crate) fn of<T>(list: &[(Setup, T)], setup: Setup) -> Option<&T> {
    list.iter().find(|(s, _)| *s == setup).map(|(_, t)| t)
}

/// The demo and the untracked baseline, one smol executor thread each: the
/// pair the HTTP/2 and TLS sections compare.
pub(crate) fn smol_pair() -> [Setup; 2] {
    [
        Setup::new(Kind::Demo, "smol", 1),
        Setup::new(Kind::Baseline, "smol", 1),
    ]
}
