//! The private readiness channel between a process and its successor: a
//! pipe whose write end the successor gets (`LAMEDUCK_READY_FD`). It
//! writes `READY=1\n` once every accept loop runs, and closes it. An end
//! of file before that means the successor failed.

#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use async_io::Async;
use rustix::fs::FileType;
use rustix::io::FdFlags;
use rustix::pipe::PipeFlags;

use super::inherit::InheritError;

/// What the successor writes.
const READY: &[u8] = b"READY=1\n";

/// The parent's end: resolves when the successor reports ready, or not.
pub(crate) struct ReadyReader(Async<OwnedFd>);

/// A pipe for one successor: the reader (kept) and the write end (given to
/// the successor, then closed here). Both ends are close-on-exec.
pub(crate) fn ready_pipe() -> io::Result<(ReadyReader, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    Ok((ReadyReader(Async::new(read)?), write))
}

impl ReadyReader {
    /// `true` once `READY=1\n` arrived; `false` at an end of file (or
    /// anything else) first: every writer is gone without saying ready.
    pub(crate) async fn wait(self) -> io::Result<bool> {
        let mut got = Vec::with_capacity(READY.len());
        // Each pass reads at least one byte or ends; bounded by READY's length.
        while got.len() < READY.len() {
            let mut buf = [0u8; 16];
            let want = READY.len() - got.len();
            let n = self
                .0
                .read_with(|fd| rustix::io::read(fd, &mut buf[..want]).map_err(io::Error::from))
                .await?;
            if n == 0 {
                return Ok(false);
            }
            got.extend_from_slice(&buf[..n]);
            if !READY.starts_with(&got) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The successor's end, adopted from `LAMEDUCK_READY_FD`.
pub(crate) struct ReadyChannel(OwnedFd);

impl fmt::Debug for ReadyChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadyChannel").field(&self.0).finish()
    }
}

impl ReadyChannel {
    /// Adopts the descriptor named by the variable: it must be the write
    /// end of a pipe. It is made close-on-exec.
    pub(crate) fn adopt(value: &OsStr) -> Result<ReadyChannel, InheritError> {
        adopt_pipe_end(value, PipeEnd::Write)
            .map(ReadyChannel)
            .map_err(|reason| InheritError::ReadyFd {
                value: value.to_string_lossy().into_owned(),
                reason,
            })
    }

    /// Tells the predecessor this process is ready, and closes the channel.
    pub(crate) fn report(self) -> io::Result<()> {
        let mut left = READY;
        // Each pass writes at least one byte or fails; a pipe takes these
        // 8 bytes at once (fewer than PIPE_BUF).
        while !left.is_empty() {
            match rustix::io::write(&self.0, left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => left = &left[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Which end of a pipe a descriptor must be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipeEnd {
    Read,
    Write,
}

/// Adopts the descriptor whose number is `value` (a variable's): it must
/// be open and that end of a pipe. It is made close-on-exec. The error
/// says what is wrong.
pub(crate) fn adopt_pipe_end(value: &OsStr, end: PipeEnd) -> Result<OwnedFd, &'static str> {
    let text = value.to_string_lossy();
    let fd: RawFd = text
        .parse()
        .ok()
        .filter(|fd| *fd >= 3 && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or("not a descriptor number (3 or more)")?;
    // SAFETY: `fcntl(F_GETFD)` only reads the descriptor's flags; it
    // fails with EBADF for a number that is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err("not an open descriptor");
    }
    // SAFETY: open (checked just above) and passed to this process for it
    // to use; only borrowed for the checks below.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let stat = rustix::fs::fstat(borrowed).map_err(|_| "cannot be examined")?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Fifo {
        return Err("not a pipe");
    }
    let mode = rustix::fs::fcntl_getfl(borrowed).map_err(|_| "cannot be examined")?;
    let (wanted, wrong) = match end {
        PipeEnd::Write => (rustix::fs::OFlags::WRONLY, "not the write end of a pipe"),
        PipeEnd::Read => (rustix::fs::OFlags::RDONLY, "not the read end of a pipe"),
    };
    if mode & rustix::fs::OFlags::RWMODE != wanted {
        return Err(wrong);
    }
    // SAFETY: checked above to be an open pipe end that a parent passed to
    // this process for it to own; `Inherited` adopts at most once per
    // process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC)
        .map_err(|_| "cannot be made close-on-exec")?;
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn ready_then_eof() {
        let (reader, write) = ready_pipe().unwrap();
        let fd = write.as_raw_fd();
        let channel = ReadyChannel::adopt(OsStr::new(&fd.to_string())).unwrap();
        std::mem::forget(write); // now owned by `channel`
        channel.report().unwrap();
        assert!(smol::block_on(reader.wait()).unwrap());
    }

    #[test]
    fn eof_without_ready_is_not_ready() {
        let (reader, write) = ready_pipe().unwrap();
        drop(write);
        assert!(!smol::block_on(reader.wait()).unwrap());
    }

    #[test]
    fn bad_values_are_refused() {
        let (read, _write) = rustix::pipe::pipe().unwrap();
        for (value, reason) in [
            ("x", "not a descriptor number (3 or more)"),
            ("1", "not a descriptor number (3 or more)"),
            ("+5", "not a descriptor number (3 or more)"),
            ("999999", "not an open descriptor"),
            (&read.as_raw_fd().to_string(), "not the write end of a pipe"),
        ] {
            match ReadyChannel::adopt(OsStr::new(value)) {
                Err(InheritError::ReadyFd { reason: r, .. }) => assert_eq!(r, reason, "{value}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        match ReadyChannel::adopt(OsStr::new(&socket.as_raw_fd().to_string())) {
            Err(InheritError::ReadyFd { reason, .. }) => assert_eq!(reason, "not a pipe"),
            other => panic!("{other:?}"),
        }
    }
}
