//! The control socket: an opt-in Unix socket through which a deploy tool
//! asks for a restart and waits for its outcome, or asks for a status
//! line. Server side: [`ControlSocket`], handed to
//! [`LifecycleBuilder::control`](super::LifecycleBuilder::control); client side:
//! [`control_restart`], [`control_status`].
//!
//! The protocol and the socket's life are documented once, on
//! [`ControlSocket`] (this module is private).

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::handoff::inherit::Inherited;

/// The name the control socket travels under (`LISTEN_FDNAMES`).
///
/// ```
/// assert_eq!(lameduck::unix::CONTROL_NAME, "lameduck-control");
/// ```
pub const CONTROL_NAME: &str = "lameduck-control";

/// How long a client has to send its request (the module docs say so).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest request line, newline included.
pub(crate) const MAX_REQUEST: usize = 64;

/// Most control connections served at once.
pub(crate) const MAX_CLIENTS: usize = 64;

/// A control request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Restart,
    Status,
}

/// Parses a request line (without its newline).
pub(crate) fn parse_request(line: &[u8]) -> Result<Request, String> {
    match line {
        b"restart" => Ok(Request::Restart),
        b"status" => Ok(Request::Status),
        other => {
            let shown: String = String::from_utf8_lossy(other)
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .take(32)
                .collect();
            Err(format!("unknown request {shown:?} (restart, status)"))
        }
    }
}

/// Makes `text` one printable line.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The listening control socket, served by
/// [`LifecycleBuilder::control`](super::LifecycleBuilder::control).
///
/// # Protocol
///
/// One request line per connection, one reply line, then the server
/// closes it:
///
/// ```text
/// restart  →  ok restarted pid=<new pid> generation=<its generation>
///          |  error <why: the failure, a refusal>
/// status   →  ok status phase=<phase> restart=<restart phase> pid=<pid>
///              generation=<n> new=<n> active=<n> idle=<n> hijacked=<n>
///              restarts=<attempted>
/// other    →  error <why>
/// ```
///
/// A `restart` asked while one is in flight waits for that one and gets
/// its outcome; one asked while the server stops is refused. A request
/// must arrive within 5 s and be at most 64 bytes, newline included; at
/// most 64 connections are served at once (more are closed unanswered).
///
/// # The socket's life
///
/// It is created with permissions 0600 (owner only; bound in a private
/// directory, then renamed into place, so it is never reachable with
/// other permissions). It travels with the listeners to a restart's
/// successor (named [`CONTROL_NAME`] in `LISTEN_FDNAMES`), which takes
/// it up with [`ControlSocket::inherit_or_bind`]; after a hand-off only
/// the successor accepts on it. The last process serving removes its
/// file.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::os::unix::fs::PermissionsExt;
/// let path = std::env::temp_dir().join(format!("ctl-doc-{}.sock", std::process::id()));
/// let mut inherited = lameduck::unix::Inherited::default();
/// let control = lameduck::unix::ControlSocket::inherit_or_bind(&mut inherited, &path)?;
/// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
/// # drop(control); std::fs::remove_file(&path)?; Ok(()) }
/// ```
#[derive(Debug)]
pub struct ControlSocket {
    pub(crate) listener: UnixListener,
    pub(crate) path: PathBuf,
}

impl ControlSocket {
    /// The control socket a predecessor passed ([`CONTROL_NAME`]), or a
    /// new one at `path` (permissions 0600; a stale socket file there —
    /// nobody listening — is replaced; a live one is an error).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let path = std::env::temp_dir().join(format!("ctl-doc2-{}.sock", std::process::id()));
    /// let mut inherited = lameduck::unix::Inherited::default();
    /// let control = lameduck::unix::ControlSocket::inherit_or_bind(&mut inherited, &path)?;
    /// assert_eq!(control.path(), path);
    /// # drop(control); std::fs::remove_file(&path)?; Ok(()) }
    /// ```
    pub fn inherit_or_bind(
        inherited: &mut Inherited,
        path: impl AsRef<Path>,
    ) -> io::Result<ControlSocket> {
        let path = path.as_ref();
        if let Some(mut listener) = Self::take_inherited(inherited) {
            // Its address is where it was bound, before the rename.
            listener.path = path.to_path_buf();
            return Ok(listener);
        }
        if path.exists() {
            match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{}: a control socket is in use there", path.display()),
                    ));
                }
                Err(_) => std::fs::remove_file(path)?,
            }
        }
        // Bound in a directory only this user can enter, made 0600, then
        // renamed into place: never reachable with wider permissions.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let private = parent.join(format!(".lameduck-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        std::fs::create_dir(&private)?;
        let bound = (|| -> io::Result<UnixListener> {
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
            let temp = private.join("control.sock");
            let listener = UnixListener::bind(&temp)?;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&temp, path)?;
            Ok(listener)
        })();
        let _ = std::fs::remove_dir_all(&private);
        Ok(ControlSocket {
            listener: bound?,
            path: path.to_path_buf(),
        })
    }

    /// The control socket a predecessor passed, if any ([`CONTROL_NAME`]),
    /// with no path known ([`inherit_or_bind`](Self::inherit_or_bind)
    /// knows it): its file is not removed. A process that does not serve
    /// one should still take it out of `inherited` (so as not to serve it
    /// as a listener), and close it.
    ///
    /// ```
    /// let mut inherited = lameduck::unix::Inherited::default();
    /// assert!(lameduck::unix::ControlSocket::take_inherited(&mut inherited).is_none());
    /// ```
    pub fn take_inherited(inherited: &mut Inherited) -> Option<ControlSocket> {
        let listener = inherited.take(CONTROL_NAME)?.into_unix()?;
        Some(ControlSocket {
            listener,
            path: PathBuf::new(),
        })
    }

    /// Where it is.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # let path = std::env::temp_dir().join(format!("ctl-doc3-{}.sock", std::process::id()));
    /// # let control = lameduck::unix::ControlSocket::inherit_or_bind(&mut Default::default(), &path)?;
    /// println!("control socket at {}", control.path().display());
    /// # drop(control); std::fs::remove_file(&path)?; Ok(()) }
    /// ```
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A restart through the control socket that worked.
///
/// ```
/// let r = lameduck::unix::Restarted { pid: 42, generation: 3 };
/// assert_eq!(r.to_string(), "restarted pid=42 generation=3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restarted {
    /// The new serving process.
    pub pid: u32,
    /// Its generation.
    pub generation: u64,
}

impl fmt::Display for Restarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restarted pid={} generation={}",
            self.pid, self.generation
        )
    }
}

/// Why a control request did not succeed.
///
/// ```
/// use lameduck::unix::ControlError;
/// let e = ControlError::Failed("the successor (pid 9) was not ready in time".into());
/// assert_eq!(e.to_string(), "the successor (pid 9) was not ready in time");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ControlError {
    /// The socket could not be reached or the answer read (within the
    /// timeout).
    Io(io::Error),
    /// The server answered `error`: why (a failed restart was rolled back
    /// and the old process serves on).
    Failed(String),
    /// The answer is not the protocol.
    BadReply(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Io(e) => write!(f, "control socket: {e}"),
            ControlError::Failed(why) => f.write_str(why),
            ControlError::BadReply(line) => write!(f, "control socket: unexpected reply {line:?}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// Sends `request` and reads the one-line reply (within `timeout`): its
/// text after `ok `, or the error.
fn request(path: &Path, request: &str, timeout: Duration) -> Result<String, ControlError> {
    let mut stream = UnixStream::connect(path).map_err(ControlError::Io)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.write_all(format!("{request}\n").as_bytes()))
        .map_err(ControlError::Io)?;
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, 4096))
        .read_line(&mut line)
        .map_err(ControlError::Io)?;
    let line = line.trim_end_matches('\n');
    if let Some(ok) = line.strip_prefix("ok ") {
        Ok(ok.to_owned())
    } else if let Some(why) = line.strip_prefix("error ") {
        Err(ControlError::Failed(why.to_owned()))
    } else if line.is_empty() {
        Err(ControlError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        )))
    } else {
        Err(ControlError::BadReply(line.to_owned()))
    }
}

/// Asks the server behind the control socket at `path` to restart, and
/// waits for the outcome (at most `timeout`: give it more than the
/// server's readiness deadline). A deploy step in a few lines:
///
/// ```no_run
/// match lameduck::unix::control_restart("/run/app/control.sock".as_ref(), std::time::Duration::from_secs(90)) {
///     Ok(done) => println!("{done}"),
///     Err(e) => {
///         eprintln!("restart failed: {e}"); // the old process still serves
///         std::process::exit(1);
///     }
/// }
/// ```
pub fn control_restart(path: &Path, timeout: Duration) -> Result<Restarted, ControlError> {
    let reply = request(path, "restart", timeout)?;
    let bad = || ControlError::BadReply(reply.clone());
    let rest = reply.strip_prefix("restarted ").ok_or_else(bad)?;
    let mut pid = None;
    let mut generation = None;
    for field in rest.split(' ') {
        match field.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("generation", v)) => generation = v.parse().ok(),
            _ => {}
        }
    }
    Ok(Restarted {
        pid: pid.ok_or_else(bad)?,
        generation: generation.ok_or_else(bad)?,
    })
}

/// The server's status line (`phase=… restart=… pid=… generation=…
/// new=… active=… idle=… hijacked=… restarts=…`).
///
/// ```no_run
/// let status = lameduck::unix::control_status("/run/app/control.sock".as_ref(), std::time::Duration::from_secs(5));
/// println!("{}", status.unwrap());
/// ```
pub fn control_status(path: &Path, timeout: Duration) -> Result<String, ControlError> {
    let reply = request(path, "status", timeout)?;
    reply
        .strip_prefix("status ")
        .map(str::to_owned)
        .ok_or(ControlError::BadReply(reply))
}

/// What a control client asks a [`Supervisor`](super::Supervisor), with
/// where to send the reply line (without `\n`).
pub(crate) enum Ask {
    Restart(async_channel::Sender<String>),
    Status(async_channel::Sender<String>),
}

/// A control socket served on threads of its own (a supervisor's: its
/// loop is not an executor). Dropping it stops accepting and removes the
/// socket's file.
pub(crate) struct Served {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        // Wakes the accepting thread (accept fails on a shut down socket).
        let _ = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Read);
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves `socket` on threads: each request goes to `asks` and its reply
/// comes back to the client; at most [`MAX_CLIENTS`] at once, each
/// bounded by [`REQUEST_TIMEOUT`] to send its request.
pub(crate) fn serve_on_threads(
    socket: ControlSocket,
    asks: async_channel::Sender<Ask>,
) -> io::Result<Served> {
    let accepting = socket.listener.try_clone()?;
    accepting.set_nonblocking(false)?;
    let clients = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("lameduck-control".into())
        .spawn(move || {
            // One connection per pass; ends when the socket is shut down.
            for stream in accepting.incoming() {
                let Ok(stream) = stream else { break };
                use std::sync::atomic::Ordering;
                if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    clients.fetch_sub(1, Ordering::AcqRel);
                    continue; // closed unanswered
                }
                let (asks, clients) = (asks.clone(), clients.clone());
                let spawned = std::thread::Builder::new()
                    .name("lameduck-control-client".into())
                    .spawn(move || {
                        answer_blocking(stream, &asks);
                        clients.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    // The count was taken for a thread that never ran.
                    break;
                }
            }
        })?;
    Ok(Served {
        listener: socket.listener,
        path: socket.path,
    })
}

/// One client: its request (in time, bounded), the reply.
fn answer_blocking(mut stream: UnixStream, asks: &async_channel::Sender<Ask>) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut line = Vec::with_capacity(MAX_REQUEST);
    let mut buf = [0u8; MAX_REQUEST];
    // Each pass reads at least one byte or ends; bounded by MAX_REQUEST
    // and the read timeout.
    let request = loop {
        let n = match io::Read::read(&mut stream, &mut buf[..MAX_REQUEST - line.len()]) {
            Ok(0) => break Err("no request line".to_owned()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return, // no request in time: closed
        };
        if let Some(end) = buf[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            break parse_request(&line);
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() >= MAX_REQUEST {
            break Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
    };
    let reply = match request {
        Err(why) => format!("error {why}"),
        Ok(request) => {
            let (tx, rx) = async_channel::bounded(1);
            let ask = match request {
                Request::Restart => Ask::Restart(tx),
                Request::Status => Ask::Status(tx),
            };
            match asks
                .send_blocking(ask)
                .ok()
                .and_then(|()| rx.recv_blocking().ok())
            {
                Some(reply) => reply,
                None => "error the supervisor is stopping".to_owned(),
            }
        }
    };
    let _ = stream.write_all(format!("{reply}\n").as_bytes());
}

/// An event's line for a restart asked on the control socket (`joined`:
/// one was in flight, whose outcome is the answer), the same in both
/// restart modes.
pub(crate) fn restart_requested(joined: bool) -> &'static str {
    if joined {
        "control: restart requested; joining the restart in flight"
    } else {
        "control: restart requested"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse_request(b"restart"), Ok(Request::Restart));
        assert_eq!(parse_request(b"status"), Ok(Request::Status));
        assert_eq!(
            parse_request(b"\x00\xffx"),
            Err("unknown request \"?\u{fffd}x\" (restart, status)".into())
        );
        assert_eq!(one_line("a\nb\tc"), "a b c");
    }
}
