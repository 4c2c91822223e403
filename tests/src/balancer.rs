//! A real load balancer in front of demo servers: HAProxy (Debian's
//! `haproxy` package), run in the foreground as a child of the test or
//! benchmark (`haproxy -f CFG -db`), its configuration written to a scratch
//! directory, bound to 127.0.0.1 only, with active `GET /healthz` checks,
//! and its view of each backend read from its stats socket. Killed when
//! dropped. Shared by the fleet drill's process test (`tests/fleet.rs`) and
//! its benchmark (`bench/`, `--only fleet`). Every wait is bounded; errors
//! are returned as text, for a test to panic with or a benchmark to report.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `haproxy` executable: on `PATH`, or where Debian installs it
/// (`/usr/sbin`, not on every user's `PATH`); `None` if it is not installed.
#[must_use]
pub fn find_haproxy() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
}

/// A port on 127.0.0.1 that was free a moment ago (bound, read, released),
/// for the balancer's frontend.
///
/// # Errors
/// If no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The name of backend server `i` in the configuration (`s0`, `s1`, ...).
#[must_use]
pub fn server_name(i: usize) -> String {
    format!("s{i}")
}

/// What the balancer is configured with.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where it listens (127.0.0.1).
    pub frontend: SocketAddr,
    /// The backends, named `s0`, `s1`, ... in this order.
    pub backends: Vec<SocketAddr>,
    /// Active health check interval (`inter`).
    pub inter: Duration,
    /// Failed checks before a server is taken out (`fall`).
    pub fall: u32,
    /// Passed checks before it is put back (`rise`).
    pub rise: u32,
    /// Connection retries (`retries`); 0 shows every refusal to the client.
    pub retries: u32,
}

impl Plan {
    /// The drill's settings: checks every 100 ms, `fall 1`, `rise 2`,
    /// `retries 0` (nothing hidden from the clients by a retry).
    #[must_use]
    pub fn drill(frontend: SocketAddr, backends: Vec<SocketAddr>) -> Plan {
        Plan {
            frontend,
            backends,
            inter: Duration::from_millis(100),
            fall: 1,
            rise: 2,
            retries: 0,
        }
    }
}

/// The HAProxy configuration for `plan`, with its stats socket at `stats`.
#[must_use]
pub fn config(plan: &Plan, stats: &Path) -> String {
    let servers: String = plan
        .backends
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("    server {} {addr} check\n", server_name(i)))
        .collect();
    format!(
        "\
# Written by lameduck's fleet drill (tests/src/balancer.rs).
global
    stats socket {stats} mode 600 level admin
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # A check may take this long to answer (without it, the check's timeout
    # is `inter`: a busy machine would take healthy servers out).
    timeout check 2s
    retries {retries}

frontend fe
    bind {frontend}
    default_backend be

backend be
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter {inter}ms fall {fall} rise {rise}
{servers}",
        stats = stats.display(),
        retries = plan.retries,
        frontend = plan.frontend,
        inter = plan.inter.as_millis(),
        fall = plan.fall,
        rise = plan.rise,
    )
}

/// A running HAProxy: a child process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    /// Where clients connect (the frontend).
    pub addr: SocketAddr,
    /// The configuration file.
    pub config: PathBuf,
    stats: PathBuf,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    /// Writes the configuration for `plan` to `dir/haproxy.cfg`, checks it
    /// (`haproxy -c`), starts `haproxy -f CFG -db`, and waits (at most
    /// `within`) until its stats socket answers and its frontend accepts.
    ///
    /// # Errors
    /// If the configuration is refused, it cannot start, or it is not up
    /// in time (with what it printed).
    pub fn start(
        binary: &Path,
        dir: &Path,
        plan: &Plan,
        within: Duration,
    ) -> Result<Haproxy, String> {
        let stats = dir.join("haproxy.sock");
        let cfg = dir.join("haproxy.cfg");
        let _ = std::fs::remove_file(&stats);
        std::fs::write(&cfg, config(plan, &stats))
            .map_err(|e| format!("writing {}: {e}", cfg.display()))?;
        let check = Command::new(binary)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .map_err(|e| format!("running {} -c: {e}", binary.display()))?;
        if !check.status.success() {
            return Err(format!(
                "haproxy -c refused {}: {}{}",
                cfg.display(),
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            ));
        }
        let mut child = Command::new(binary)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().expect("a piped stderr");
        std::thread::spawn(move || {
            // One line per pass; ends at the pipe's end.
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let haproxy = Haproxy {
            child,
            addr: plan.frontend,
            config: cfg,
            stats,
            stderr,
        };
        haproxy.wait_up(within)
    }

    /// Waits until the stats socket answers and the frontend accepts.
    fn wait_up(mut self, within: Duration) -> Result<Haproxy, String> {
        let deadline = Instant::now() + within;
        // One look per pass; bounded by the deadline.
        loop {
            if self.statuses().is_ok()
                && TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok()
            {
                return Ok(self);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "haproxy exited ({status}): {:?}",
                    self.stderr_now()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "haproxy not up within {within:?}: {:?}",
                    self.stderr_now()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// HAProxy's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What HAProxy printed on stderr so far (warnings, alerts).
    #[must_use]
    pub fn stderr_now(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Sends one command to the stats socket; returns the whole answer.
    fn command(&self, command: &str) -> Result<String, String> {
        let mut socket = UnixStream::connect(&self.stats)
            .map_err(|e| format!("stats socket {}: {e}", self.stats.display()))?;
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .and_then(|()| socket.set_write_timeout(Some(Duration::from_secs(5))))
            .map_err(|e| e.to_string())?;
        socket
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| format!("stats socket: {e}"))?;
        let mut answer = String::new();
        // Non-interactive: HAProxy answers and closes (bounded by the
        // read timeout).
        socket
            .read_to_string(&mut answer)
            .map_err(|e| format!("stats socket: {e}"))?;
        Ok(answer)
    }

    /// Each backend server's status as HAProxy sees it (`show stat`):
    /// `UP`, `DOWN`, or a transition such as `UP 1/2` / `DOWN 1/2`, by
    /// server name.
    ///
    /// # Errors
    /// If the stats socket does not answer, or the answer is not the CSV.
    pub fn statuses(&self) -> Result<Vec<(String, String)>, String> {
        let csv = self.command("show stat")?;
        let mut lines = csv.lines();
        let header = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .ok_or_else(|| format!("not the stats CSV: {csv:?}"))?;
        let column = |name: &str| {
            header
                .split(',')
                .position(|c| c == name)
                .ok_or_else(|| format!("no {name} column"))
        };
        let (px, sv, status) = (column("pxname")?, column("svname")?, column("status")?);
        Ok(lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.get(px) == Some(&"be") && f.get(sv).is_some_and(|s| s.starts_with('s')))
            .filter_map(|f| Some(((*f.get(sv)?).to_owned(), (*f.get(status)?).to_owned())))
            .collect())
    }

    /// Server `name`'s status (see [`statuses`](Self::statuses)).
    ///
    /// # Errors
    /// As `statuses`, or if there is no such server.
    pub fn status(&self, name: &str) -> Result<String, String> {
        self.statuses()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .ok_or_else(|| format!("no server {name}"))
    }

    /// Waits until server `name`'s status is exactly `want` (`UP`,
    /// `DOWN`); returns how long that took.
    ///
    /// # Errors
    /// If it is not within `within` (with the last status seen).
    pub fn wait_status(
        &self,
        name: &str,
        want: &str,
        within: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        // One look per pass; bounded by `within`.
        loop {
            let last = match self.status(name) {
                Ok(s) if s == want => return Ok(started.elapsed()),
                Ok(s) => s,
                Err(e) => e,
            };
            if started.elapsed() >= within {
                return Err(format!(
                    "haproxy: {name} not {want} within {within:?} (last: {last})"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
