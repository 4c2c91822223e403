//! The link from a [`Supervisor`](crate::unix::Supervisor) to one of its
//! generations: a pipe whose read end the generation gets, at the
//! descriptor named by `LAMEDUCK_SUPERVISOR_FD`. The supervisor keeps the
//! write end (close-on-exec: no other process holds it).
//!
//! What the supervisor writes, one line each:
//! - `HANDOFF <pid>`: the next generation, `<pid>`, is ready and accepts
//!   on the same sockets. Stop accepting **without** shutting the sockets
//!   down or removing a Unix socket's file, drain (in-flight requests
//!   finish here), and exit.
//!
//! The end of the pipe (every write end closed: the supervisor exited or
//! was killed) means nobody supervises this generation any more: it drains
//! and exits rather than serve on unwatched.
//!
//! Stopping is not a message: the supervisor forwards `SIGTERM`, `SIGINT`
//! and `SIGUSR2` as they are, so a generation stops the way it would on its
//! own.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use async_io::Async;
use rustix::pipe::PipeFlags;

use super::fd::{Adoption, PipeEnd};
use super::fdpass;

/// The longest line the supervisor writes, with room to spare.
const MAX_LINE: usize = 64;

/// The supervisor's end of a link.
pub(crate) struct LinkWriter(OwnedFd);

/// A new link: the supervisor's end, and the read end to give the
/// generation (then closed in the supervisor). Both are close-on-exec.
pub(crate) fn link_pipe() -> io::Result<(LinkWriter, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    Ok((LinkWriter(write), read))
}

impl LinkWriter {
    /// Tells the generation to hand off to `successor`. An error: the
    /// generation is gone (its end is closed).
    pub(crate) fn hand_off(&self, successor: u32) -> io::Result<()> {
        // A pipe takes a line this short (fewer than PIPE_BUF bytes) at
        // once, and nothing else is ever written to it.
        let line = format!("HANDOFF {successor}\n");
        fdpass::write_all(self.0.as_fd(), line.as_bytes(), false)
    }
}

/// A generation's end of its link, adopted from `LAMEDUCK_SUPERVISOR_FD`.
pub(crate) struct Link(OwnedFd);

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Link").field(&self.0).finish()
    }
}

/// What came from the supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LinkMessage {
    /// Hand off to this generation.
    HandOff(u32),
    /// The supervisor is gone (end of file), or the link failed.
    Gone,
    /// A line this version does not know (ignored).
    Unknown(String),
}

impl Link {
    /// Adopts the descriptor named by the variable: the read end of a
    /// pipe. It is made close-on-exec. (Not registered with a reactor
    /// yet: adoption runs before any thread starts.) The error says what
    /// is wrong with it.
    pub(crate) fn adopt(value: &OsStr, adoption: &mut Adoption) -> Result<Link, &'static str> {
        adoption.adopt_pipe_end(value, PipeEnd::Read).map(Link)
    }

    /// Starts reading (registers the pipe with the reactor).
    pub(crate) fn into_reader(self) -> io::Result<LinkReader> {
        Ok(LinkReader {
            pipe: Async::new(self.0)?,
            buf: Vec::new(),
        })
    }
}

/// Reads a link's messages.
pub(crate) struct LinkReader {
    pipe: Async<OwnedFd>,
    buf: Vec<u8>,
}

impl LinkReader {
    /// The next message.
    pub(crate) async fn next(&mut self) -> LinkMessage {
        // Each pass takes one line already read, or reads more; a line
        // longer than MAX_LINE is cut there (the supervisor writes none).
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return parse(&line[..end]);
            }
            if self.buf.len() >= MAX_LINE {
                let line: Vec<u8> = self.buf.drain(..MAX_LINE).collect();
                return parse(&line);
            }
            let mut chunk = [0u8; MAX_LINE];
            let read = self
                .pipe
                .read_with(|fd| rustix::io::read(fd, &mut chunk).map_err(io::Error::from))
                .await;
            match read {
                Ok(0) | Err(_) => return LinkMessage::Gone,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn parse(line: &[u8]) -> LinkMessage {
    let text = String::from_utf8_lossy(line);
    match text.strip_prefix("HANDOFF ").map(str::parse::<u32>) {
        Some(Ok(pid)) if pid > 0 => LinkMessage::HandOff(pid),
        _ => LinkMessage::Unknown(text.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    fn adopt_read_end(read: OwnedFd) -> Link {
        let fd = read.into_raw_fd(); // to be owned by the link
        Link::adopt(OsStr::new(&fd.to_string()), &mut Adoption::for_tests()).unwrap()
    }

    #[test]
    fn hand_off_then_end_of_file() {
        let (writer, read) = link_pipe().unwrap();
        let mut reader = adopt_read_end(read).into_reader().unwrap();
        writer.hand_off(4242).unwrap();
        writer.hand_off(7).unwrap();
        assert_eq!(smol::block_on(reader.next()), LinkMessage::HandOff(4242));
        assert_eq!(smol::block_on(reader.next()), LinkMessage::HandOff(7));
        drop(writer);
        assert_eq!(smol::block_on(reader.next()), LinkMessage::Gone);
    }

    #[test]
    fn unknown_lines_are_reported_not_obeyed() {
        let (writer, read) = link_pipe().unwrap();
        let mut reader = adopt_read_end(read).into_reader().unwrap();
        rustix::io::write(&writer.0, b"HELLO\nHANDOFF 0\nHANDOFF x\n").unwrap();
        rustix::io::write(&writer.0, &[b'y'; 100]).unwrap();
        for expected in ["HELLO", "HANDOFF 0", "HANDOFF x"] {
            assert_eq!(
                smol::block_on(reader.next()),
                LinkMessage::Unknown(expected.into())
            );
        }
        assert!(
            matches!(smol::block_on(reader.next()), LinkMessage::Unknown(l) if l.len() == MAX_LINE)
        );
    }

    #[test]
    fn a_write_end_or_a_socket_is_refused() {
        let (_read, write) = rustix::pipe::pipe().unwrap();
        let adopt = |value: String| Link::adopt(OsStr::new(&value), &mut Adoption::for_tests());
        let e = adopt(write.as_raw_fd().to_string()).unwrap_err();
        assert_eq!(e, "not the read end of a pipe");
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = adopt(socket.as_raw_fd().to_string()).unwrap_err();
        assert_eq!(e, "not a pipe");
    }

    #[test]
    fn writing_to_a_gone_generation_is_an_error() {
        let (writer, read) = link_pipe().unwrap();
        drop(read);
        // std ignores SIGPIPE in Rust programs (and test binaries): EPIPE.
        assert!(writer.hand_off(1).is_err());
    }
}
