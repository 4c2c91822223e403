//! Descriptors over a Unix stream socket (`SCM_RIGHTS`), through rustix's
//! safe `sendmsg`/`recvmsg`: no `unsafe` here. Received descriptors are
//! close-on-exec (`MSG_CMSG_CLOEXEC`). Also the hand-off's one way to write
//! a whole short message (a line) to a pipe or a socket: [`write_all`].

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use lameduck_core::handover::MAX_FDS;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Sends bytes from `bytes` (as many as the socket takes, at least one
/// unless it would block) with `fds` attached to them. Never raises
/// `SIGPIPE`. With no `fds`, a plain send.
pub(crate) fn send(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let flags = SendFlags::NOSIGNAL;
    if fds.is_empty() {
        return Ok(rustix::net::send(socket, bytes, flags)?);
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    Ok(rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        flags,
    )?)
}

/// Writes all of `bytes` to `fd`, a pipe or (never raising `SIGPIPE`) a
/// stream socket, retrying when interrupted. Blocks while `fd` is full: for
/// short messages to a blocking descriptor.
pub(crate) fn write_all(fd: BorrowedFd<'_>, bytes: &[u8], socket: bool) -> io::Result<()> {
    let mut left = bytes;
    // Each pass writes at least one byte or fails: bounded by the length.
    while !left.is_empty() {
        let written = if socket {
            rustix::net::send(fd, left, SendFlags::NOSIGNAL)
        } else {
            rustix::io::write(fd, left)
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => left = &left[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Receives bytes into `buf`, and the descriptors attached to them into
/// `fds`. 0: end of file. A message whose descriptors did not all fit
/// (more than [`MAX_FDS`]) is an error; those that arrived are closed.
pub(crate) fn recv(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS as usize))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::other(format!(
            "more than {MAX_FDS} descriptors sent at once"
        )));
    }
    Ok(got.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_cross_with_their_bytes() {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(send(a.as_fd(), b"hello", &[udp.as_fd()]).unwrap(), 5);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        assert_eq!(recv(b.as_fd(), &mut buf, &mut fds).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(fds.len(), 1);
        let flags = rustix::io::fcntl_getfd(&fds[0]).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let received = std::net::UdpSocket::from(fds.pop().unwrap());
        assert_eq!(received.local_addr().unwrap(), udp.local_addr().unwrap());
        drop(a);
        assert_eq!(recv(b.as_fd(), &mut buf, &mut fds).unwrap(), 0);
    }
}
