//! Starting a process with listening sockets handed over in systemd's
//! socket-activation format.
//!
//! `LISTEN_PID` must be the child's own pid, known only after `fork`. So
//! the child runs `execve` itself, between `fork` and `exec`
//! (`CommandExt::pre_exec`), with an argument vector and environment built
//! beforehand and a fixed-width `LISTEN_PID=` entry it fills with the
//! digits of `getpid()`. Only async-signal-safe calls run there: no
//! allocation, no lock.
//!
//! # Process groups
//!
//! A restart's successor and a supervisor's generation are each started
//! in a process group of their own (`setpgid(0, 0)` in the child before
//! `exec`, through [`CommandExt::process_group`]), which they lead. The
//! reason is cleanup: a failed attempt (the process exits before it is
//! ready, is not ready in time, or is abandoned because the server is
//! stopping) kills the whole group (`kill(-pgid, SIGKILL)`), and the
//! process itself is reaped as before. A successor that is a wrapper
//! (`#!/bin/sh` running the real program, `sh -c 'helper & exec server'`)
//! leaves nothing behind then: its children inherited the listening
//! sockets too, and would keep the port accepting into a backlog nobody
//! serves. A process that moves itself to another group (`setsid`,
//! `setpgid`) escapes this.
//!
//! Once handed off to, the group is left alone: the old process exits,
//! and the successor's group goes on without it. One consequence: a
//! terminal's job control knows only the original group, so Ctrl-C (and
//! `SIGTSTP`) reach the process started by hand, not its successors — stop
//! those with a signal to their pid (or `kill -TERM -- -<pgid>` for a whole
//! group). Under systemd nothing changes: its stop kills by cgroup.
//!
//! A supervisor forwards its signals (`SIGTERM`, …) to a generation's pid
//! only, not to its group, as before: the generation drains and stops what
//! it started itself, in its own time. Only a `SIGKILL` (a failed attempt,
//! or the supervisor's stop deadline) goes to the whole group.

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr, OsString, c_char, c_uint};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use lameduck_core::activation::{FIRST_FD, ListenEnv};

use super::{OWNED_FDS_VAR, VARS};

const PID_PREFIX: &[u8] = b"LISTEN_PID=";
/// Room for any pid (`u32::MAX` has 10 digits).
const PID_DIGITS: usize = 10;

/// Starts `command` with `listeners` at descriptors 3, 4, … and
/// `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` (the child's own pid),
/// as systemd does for socket activation: any program that understands
/// `sd_listen_fds` can take them.
///
/// The command's program, arguments, environment changes (`env`,
/// `env_remove`; not `env_clear`), working directory, standard streams and
/// process group ([`CommandExt::process_group`]) apply. Stale hand-off
/// variables ([`VARS`]) are removed.
/// Every other descriptor is closed on `exec`: the descriptors this
/// process opens are close-on-exec (std, `async-io` and lameduck open
/// them so), and on Linux ≥ 5.11 everything above the passed sockets is
/// marked close-on-exec in the child as well. The sockets' flags (e.g.
/// non-blocking) are shared with this process, which may still be
/// accepting on them.
///
/// If the program cannot be executed, that is the error.
///
/// ```no_run
/// use std::os::fd::AsFd;
/// use std::process::Command;
///
/// # fn main() -> std::io::Result<()> {
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut child = lameduck::unix::handoff::spawn_with_listeners(
///     Command::new("/usr/local/bin/server"),
///     &[(listener.as_fd(), "http")],
/// )?;
/// child.wait()?;
/// # Ok(()) }
/// ```
pub fn spawn_with_listeners(
    command: Command,
    listeners: &[(BorrowedFd<'_>, &str)],
) -> io::Result<Child> {
    spawn(command, listeners, &[], &[])
}

/// [`spawn_with_listeners`], plus `extra` descriptors placed after the
/// listeners, in order, each named by its variable (`LAMEDUCK_READY_FD`
/// for a readiness pipe's write end, `LAMEDUCK_SUPERVISOR_FD` for a
/// supervisor's link), and `LAMEDUCK_OWNED_FDS` naming the listeners at
/// the indices `owned_files` (whose socket files the child takes over).
pub(crate) fn spawn(
    mut command: Command,
    listeners: &[(BorrowedFd<'_>, &str)],
    extra: &[(BorrowedFd<'_>, &str)],
    owned_files: &[usize],
) -> io::Result<Child> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let names: Vec<&str> = listeners.iter().map(|(_, name)| *name).collect();
    // The pid is filled in by the child; `for_successor` checks the rest.
    let activation =
        ListenEnv::for_successor(1, &names).map_err(|e| invalid(format!("listeners: {e}")))?;
    let mut sources: Vec<RawFd> = listeners.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    let mut extra_at = Vec::with_capacity(extra.len());
    for (fd, var) in extra {
        // At most MAX_FDS listeners (checked above) and a few extras: no
        // overflow.
        extra_at.push((*var, FIRST_FD + sources.len() as RawFd));
        sources.push(fd.as_raw_fd());
    }

    // The environment: this process's, with the command's changes, without
    // stale hand-off variables; then the new ones, LISTEN_PID last.
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (key, value) in command.get_envs() {
        env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            env.push((key.to_owned(), value.to_owned()));
        }
    }
    env.retain(|(k, _)| !VARS.iter().any(|s| k == s) && !extra.iter().any(|(_, var)| k == var));
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    // `for_successor` always sets both.
    env.push((
        "LISTEN_FDS".into(),
        activation.fds.unwrap_or_default().into(),
    ));
    env.push((
        "LISTEN_FDNAMES".into(),
        activation.fdnames.unwrap_or_default().into(),
    ));
    for (var, at) in extra_at {
        env.push((var.into(), at.to_string().into()));
    }
    if !owned_files.is_empty() {
        let mut fds = Vec::with_capacity(owned_files.len());
        for &i in owned_files {
            if i >= listeners.len() {
                return Err(invalid(format!("no listener {i} to own the file of")));
            }
            // At most MAX_FDS listeners (checked above): no overflow.
            fds.push((FIRST_FD + i as RawFd).to_string());
        }
        env.push((OWNED_FDS_VAR.into(), fds.join(":").into()));
    }
    let mut envp = Vec::with_capacity(env.len() + 1);
    for (key, value) in &env {
        let mut entry = Vec::with_capacity(key.len() + value.len() + 2);
        entry.extend_from_slice(key.as_bytes());
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        if entry.contains(&0) {
            return Err(invalid(format!(
                "environment variable {} contains a NUL byte",
                key.to_string_lossy()
            )));
        }
        entry.push(0);
        envp.push(entry);
    }
    let mut pid_entry = Vec::with_capacity(PID_PREFIX.len() + PID_DIGITS + 1);
    pid_entry.extend_from_slice(PID_PREFIX);
    pid_entry.resize(PID_PREFIX.len() + PID_DIGITS + 1, 0);
    envp.push(pid_entry);

    let program = command.get_program();
    let path = resolve(program, path_var.as_deref())?;
    let mut argv = Vec::with_capacity(command.get_args().len() + 1);
    for arg in std::iter::once(program).chain(command.get_args()) {
        argv.push(
            nul_terminated(arg).ok_or_else(|| invalid("an argument contains a NUL byte".into()))?,
        );
    }
    let path = CString::new(path.into_os_string().into_vec())
        .map_err(|_| invalid("the program's path contains a NUL byte".into()))?;

    let mut image = ExecImage {
        path,
        argv_ptrs: Pointers(Vec::with_capacity(argv.len() + 1)),
        envp_ptrs: Pointers(Vec::with_capacity(envp.len() + 1)),
        argv,
        envp,
        temps: vec![-1; sources.len()],
        sources,
    };
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: `ExecImage::exec` makes no
    // allocation (every buffer is sized beforehand) and takes no lock; it
    // calls fcntl, dup2, close_range, getpid and execve only.
    unsafe {
        command.pre_exec(move || image.exec());
    }
    command.spawn()
}

fn nul_terminated(s: &OsStr) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if bytes.contains(&0) {
        return None;
    }
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.extend_from_slice(bytes);
    v.push(0);
    Some(v)
}

/// The program's path: as given if it has a `/`, else found in `PATH`
/// (as `execvp` would).
fn resolve(program: &OsStr, path_var: Option<&OsStr>) -> io::Result<PathBuf> {
    let program_path = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return Ok(program_path.to_path_buf());
    }
    let search = path_var.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(search)
        .map(|dir| dir.join(program_path))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found in PATH", program_path.display()),
            )
        })
}

/// An array of C string pointers, filled in the child.
struct Pointers(Vec<*const c_char>);

// SAFETY: the pointers are written and read only in the forked child, just
// before `execve`, and point into buffers owned by the same `ExecImage`;
// they are never dereferenced on any thread of this process.
unsafe impl Send for Pointers {}
// SAFETY: as above: no thread of this process ever reads them.
unsafe impl Sync for Pointers {}

/// Everything `execve` needs, prepared before `fork`.
struct ExecImage {
    path: CString,
    /// NUL-terminated.
    argv: Vec<Vec<u8>>,
    /// NUL-terminated `KEY=value`; the last is `LISTEN_PID=` and room.
    envp: Vec<Vec<u8>>,
    argv_ptrs: Pointers,
    envp_ptrs: Pointers,
    /// The descriptors to place at 3, 4, …, in order.
    sources: Vec<RawFd>,
    /// Their temporary copies (same length).
    temps: Vec<RawFd>,
}

impl ExecImage {
    /// In the child: places the descriptors, fills in `LISTEN_PID` and
    /// executes. Returns only on failure, which std reports to the parent
    /// as the spawn's error.
    fn exec(&mut self) -> io::Result<()> {
        // At most MAX_FDS + 1 descriptors (checked before): no overflow.
        let above = FIRST_FD + self.sources.len() as RawFd;
        // First copy every source above the targets (close-on-exec), so
        // that placing one never overwrites another still to be placed...
        for (source, temp) in self.sources.iter().zip(self.temps.iter_mut()) {
            // SAFETY: plain descriptor duplication (async-signal-safe).
            let fd = unsafe { libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, above) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            *temp = fd;
        }
        // ...then place them; `dup2`'s copy is not close-on-exec, and a
        // temporary is never its own target (it is above them all).
        for (i, temp) in self.temps.iter().enumerate() {
            let target = FIRST_FD + i as RawFd;
            // SAFETY: async-signal-safe; replaces whatever was at `target`
            // (a close-on-exec descriptor of the parent's, at most).
            if unsafe { libc::dup2(*temp, target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Belt and braces: everything above is closed on exec, even a
        // descriptor some library opened without O_CLOEXEC. Best effort
        // (Linux ≥ 5.11); std's own error pipe stays usable until exec.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags; a
        // raw system call, async-signal-safe. Its failure is harmless.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                above as c_uint,
                c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
        }
        // getpid: async-signal-safe (a system call), cannot fail.
        let pid = rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs();
        if let Some(entry) = self.envp.last_mut() {
            write_decimal(&mut entry[PID_PREFIX.len()..], pid);
        }
        // The pointer arrays have room for every entry and the final null:
        // no push below reallocates.
        self.argv_ptrs.0.clear();
        self.argv_ptrs
            .0
            .extend(self.argv.iter().map(|a| a.as_ptr().cast::<c_char>()));
        self.argv_ptrs.0.push(std::ptr::null());
        self.envp_ptrs.0.clear();
        self.envp_ptrs
            .0
            .extend(self.envp.iter().map(|e| e.as_ptr().cast::<c_char>()));
        self.envp_ptrs.0.push(std::ptr::null());
        // SAFETY: path, argv and envp are NUL-terminated strings and
        // null-terminated arrays of them, owned by `self`, alive until exec.
        unsafe {
            libc::execve(
                self.path.as_ptr(),
                self.argv_ptrs.0.as_ptr(),
                self.envp_ptrs.0.as_ptr(),
            );
        }
        Err(io::Error::last_os_error())
    }
}

/// Writes `n` in decimal at the start of `out`, then a NUL. `out` has room
/// for 10 digits and the NUL. No allocation.
fn write_decimal(out: &mut [u8], mut n: u32) {
    let mut digits = [0u8; PID_DIGITS];
    let mut len = 0;
    // One digit per pass; at most 10.
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        out[i] = *d;
    }
    out[len] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        for n in [0, 7, 10, 4_194_304, u32::MAX] {
            let mut out = [b'x'; PID_DIGITS + 1];
            write_decimal(&mut out, n);
            let end = out.iter().position(|b| *b == 0).unwrap();
            assert_eq!(std::str::from_utf8(&out[..end]).unwrap(), n.to_string());
        }
    }

    #[test]
    fn resolves_like_execvp() {
        assert_eq!(
            resolve(OsStr::new("./x"), None).unwrap(),
            PathBuf::from("./x")
        );
        assert!(resolve(OsStr::new("sh"), None).unwrap().is_absolute());
        let e = resolve(
            OsStr::new("no-such-program-here"),
            Some(OsStr::new("/nonexistent")),
        );
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_child_gets_its_own_pid_and_the_sockets() {
        use std::os::fd::AsFd;
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(
                "[ \"$LISTEN_PID\" = \"$$\" ] && [ \"$LISTEN_FDS\" = 2 ] \
                 && [ \"$LISTEN_FDNAMES\" = a:b ] && [ -e /proc/self/fd/3 ] \
                 && [ -e /proc/self/fd/4 ] && [ ! -e /proc/self/fd/5 ] \
                 && [ -z \"${LAMEDUCK_READY_FD+x}\" ]",
            )
            .env("LISTEN_PID", "1")
            .env(super::super::READY_FD_VAR, "9");
        let mut child =
            spawn_with_listeners(command, &[(a.as_fd(), "a"), (b.as_fd(), "b")]).unwrap();
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn a_process_group_applies() {
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut command = Command::new("sh");
        // Field 5 of /proc/PID/stat is the process group (`sh` has no
        // space in its name).
        command
            .args(["-c", "set -- $(cat /proc/$$/stat); [ \"$5\" = \"$$\" ]"])
            .process_group(0);
        let mut child = spawn_with_listeners(command, &[(l.as_fd(), "a")]).unwrap();
        assert!(child.wait().unwrap().success(), "it leads its own group");
    }

    #[test]
    fn a_program_that_cannot_run_is_the_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsFd;
        let e =
            spawn_with_listeners(Command::new("/nonexistent/x"), &[(l.as_fd(), "a")]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let not_executable =
            std::env::temp_dir().join(format!("lameduck-noexec-{}", std::process::id()));
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        let e = spawn_with_listeners(Command::new(&not_executable), &[(l.as_fd(), "a")]);
        let _ = std::fs::remove_file(&not_executable);
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    }
}
