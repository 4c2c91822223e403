//! The private hand-off channel between a process and its successor: a
//! Unix stream socket pair, one end given to the successor
//! (`LAMEDUCK_READY_FD`). The old process sends the restart state
//! ([`lameduck_core::handover`]: a frame, its descriptors attached with
//! `SCM_RIGHTS`); the successor replies `TAKEN` or `REFUSED <reason>`,
//! then `READY=1\n` once every accept loop runs. An end of file before
//! that means the successor failed.
//!
//! A successor also accepts the write end of a pipe there: what a
//! predecessor of an earlier lameduck passes (readiness only, no state).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use async_io::Async;
use futures_lite::FutureExt;
use lameduck_core::handover::{
    AbortReason, Decision, Decoder, Frame, Limits, Reply, ReplyDecoder, Transfer,
};
use rustix::fs::FileType;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::fd::{Adoption, PipeEnd, check_pipe_end};
use super::fdpass;

/// The parent's end: sends the state, then resolves when the successor
/// reports ready, or not. (Shared: a supervisor keeps it, to ask the
/// generation for its state at the next restart.)
#[derive(Clone)]
pub(crate) struct ReadyReader(Arc<Async<OwnedFd>>);

/// A channel for one successor: the parent's end (kept) and the
/// successor's (given to it, then closed here). Both are close-on-exec.
pub(crate) fn ready_channel() -> io::Result<(ReadyReader, OwnedFd)> {
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((ReadyReader(Arc::new(Async::new(ours)?)), theirs))
}

/// What the old process offers its successor: an encoded frame, its
/// descriptors (copies: the old process keeps its own) and its item count.
#[derive(Debug)]
pub(crate) struct Offer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) items: usize,
}

impl Offer {
    /// No state: an empty frame (version 0).
    pub(crate) fn empty() -> Offer {
        Offer {
            // An empty frame is within any limits.
            bytes: Frame::new(0).encode(&Limits::default()).unwrap_or_default(),
            fds: Vec::new(),
            items: 0,
        }
    }
}

/// How the conversation with the successor ended.
#[derive(Debug)]
pub(crate) enum Heard {
    /// It took the state (if any) and reported ready: commit.
    Ready,
    /// End of file first: it failed (its exit, or the deadline, says how).
    Eof,
    /// The hand-over was aborted by what it said: kill it.
    Aborted {
        reason: AbortReason,
        detail: Option<String>,
    },
}

impl ReadyReader {
    /// Sends `offer` while reading the successor's replies, and feeds them
    /// to the core's [`Transfer`] until it decides, or the channel ends.
    pub(crate) async fn converse(self, offer: Offer) -> io::Result<Heard> {
        let mut transfer = Transfer::offered(offer.items);
        let mut replies = ReplyDecoder::new();
        let total = offer.bytes.len();
        let mut sent = 0usize;
        // A failed send is not decisive: the successor's exit (the usual
        // cause) is reported by the end of file that follows.
        let mut send_failed = false;
        enum Step {
            Sent(io::Result<usize>),
            Read(io::Result<usize>),
        }
        // Each pass sends some bytes or reads some (or ends): bounded by
        // the frame's length and the successor's replies, which end with
        // a decision, an error or an end of file.
        loop {
            let mut buf = [0u8; 256];
            let read = async {
                Step::Read(
                    self.0
                        .read_with(|fd| rustix::io::read(fd, &mut buf).map_err(io::Error::from))
                        .await,
                )
            };
            let step = if !send_failed && sent < total {
                // The descriptors go with the first bytes.
                let fds: Vec<BorrowedFd<'_>> = if sent == 0 {
                    offer.fds.iter().map(AsFd::as_fd).collect()
                } else {
                    Vec::new()
                };
                let rest = &offer.bytes[sent..];
                async {
                    Step::Sent(
                        self.0
                            .write_with(|fd| fdpass::send(fd.as_fd(), rest, &fds))
                            .await,
                    )
                }
                .or(read)
                .await
            } else {
                read.await
            };
            let n = match step {
                Step::Sent(Ok(n)) => {
                    sent += n;
                    continue;
                }
                Step::Sent(Err(_)) => {
                    send_failed = true;
                    continue;
                }
                // A successor that closes its end with bytes unread (the
                // state it never took) resets the connection: an end too.
                Step::Read(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                Step::Read(result) => result?,
            };
            if n == 0 {
                return Ok(Heard::Eof);
            }
            let heard = match replies.feed(&buf[..n]) {
                Ok(heard) => heard,
                Err(e) => {
                    let _ = transfer.protocol_error();
                    return Ok(Heard::Aborted {
                        reason: AbortReason::Protocol,
                        detail: Some(e.to_string()),
                    });
                }
            };
            for reply in heard {
                if reply == Reply::Taken && sent < total {
                    let _ = transfer.protocol_error();
                    return Ok(Heard::Aborted {
                        reason: AbortReason::Protocol,
                        detail: Some("TAKEN before the whole state was sent".into()),
                    });
                }
                let detail = match &reply {
                    Reply::Refused(reason) => Some(reason.clone()),
                    _ => None,
                };
                match transfer.reply(&reply) {
                    Ok(Some(Decision::Commit)) => return Ok(Heard::Ready),
                    Ok(Some(Decision::Abort(reason))) => {
                        return Ok(Heard::Aborted { reason, detail });
                    }
                    // Decided: returned above at the decision.
                    Ok(None) | Err(_) => {}
                }
            }
        }
    }
}

/// What a supervisor writes on a generation's channel (kept open after
/// its `READY=1`) to ask for its restart state; the generation answers
/// with a frame.
const STATE_REQUEST: &[u8] = b"STATE\n";

impl ReadyReader {
    /// A supervisor asks the generation behind this channel for its
    /// restart state (what it would offer a successor): the frame,
    /// checked, with its descriptors — for the next generation.
    pub(crate) async fn request_state(&self, limits: Limits) -> io::Result<Offer> {
        let mut left = STATE_REQUEST;
        // Each pass writes at least one byte or fails: bounded.
        while !left.is_empty() {
            let n = self
                .0
                .write_with(|fd| fdpass::send(fd.as_fd(), left, &[]))
                .await?;
            left = &left[n..];
        }
        let mut arriving = Arriving::new(limits);
        // Each pass reads at least one byte or ends: bounded by the
        // frame's (bounded) length.
        while !arriving.is_complete() {
            let n = self.0.read_with(|fd| arriving.recv(fd.as_fd())).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the generation closed its channel",
                ));
            }
            arriving
                .feed(n)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let (frame, fds) = arriving
            .finish()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Offer {
            bytes: frame
                .encode(&limits)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            fds,
            items: frame.items().len(),
        })
    }
}

/// A supervised generation's side: answers each `STATE` request on its
/// channel with what `offer` builds, until the supervisor closes it. If
/// `offer` fails, that is the error, and the channel closes: the
/// supervisor's restart fails.
pub(crate) async fn answer_state_requests(
    channel: ReadyChannel,
    offer: impl Fn() -> io::Result<Offer>,
) -> io::Result<()> {
    let socket = Async::new(channel.fd)?;
    let mut line = Vec::new();
    // One request per pass (or a read); ends when the supervisor closes
    // the channel.
    loop {
        let mut buf = [0u8; 16];
        let n = socket
            .read_with(|fd| rustix::io::read(fd, &mut buf).map_err(io::Error::from))
            .await?;
        if n == 0 {
            return Ok(());
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > 64 {
            return Err(io::Error::other("an over-long request on the channel"));
        }
        while let Some(end) = line.iter().position(|b| *b == b'\n') {
            let request: Vec<u8> = line.drain(..=end).collect();
            if request != STATE_REQUEST {
                return Err(io::Error::other("an unknown request on the channel"));
            }
            let Offer { bytes, fds, .. } = offer()?;
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
            let mut sent = 0;
            // Each pass sends at least one byte or fails: bounded by the
            // frame's length. The descriptors go with the first bytes.
            while sent < bytes.len() {
                let attached: &[BorrowedFd<'_>] = if sent == 0 { &borrowed } else { &[] };
                sent += socket
                    .write_with(|fd| fdpass::send(fd.as_fd(), &bytes[sent..], attached))
                    .await?;
            }
        }
    }
}

/// A frame and its descriptors, or why what arrived is not one.
pub(crate) type Received = Result<(Frame, Vec<OwnedFd>), lameduck_core::handover::DecodeError>;

/// A frame arriving on a channel, with its descriptors: read by a
/// supervisor (asynchronously) or a successor (blocking), decoded as it
/// comes.
struct Arriving {
    decoder: Decoder,
    fds: Vec<OwnedFd>,
    buf: Vec<u8>,
}

impl Arriving {
    fn new(limits: Limits) -> Arriving {
        Arriving {
            decoder: Decoder::new(limits),
            fds: Vec::new(),
            buf: vec![0u8; 64 * 1024],
        }
    }

    fn is_complete(&self) -> bool {
        self.decoder.is_complete()
    }

    /// Receives what the frame still wants (and its descriptors) from
    /// `socket`: how many bytes, 0 at the end of file.
    fn recv(&mut self, socket: BorrowedFd<'_>) -> io::Result<usize> {
        let want = self.decoder.wanted().min(self.buf.len());
        fdpass::recv(socket, &mut self.buf[..want], &mut self.fds)
    }

    /// Decodes the `n` bytes [`recv`](Self::recv) just received.
    fn feed(&mut self, n: usize) -> Result<(), lameduck_core::handover::DecodeError> {
        self.decoder.feed(&self.buf[..n]).map(drop)
    }

    /// The frame, checked against the descriptors that came with it.
    fn finish(self) -> Received {
        let frame = self.decoder.finish()?;
        frame.check_received(self.fds.len())?;
        Ok((frame, self.fds))
    }
}

/// The successor's end, adopted from `LAMEDUCK_READY_FD`.
pub(crate) struct ReadyChannel {
    fd: OwnedFd,
    /// A socket (state and replies), not a predecessor's pipe.
    socket: bool,
    /// The state was received (or found absent) already.
    received: bool,
}

impl fmt::Debug for ReadyChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyChannel")
            .field("fd", &self.fd)
            .field("socket", &self.socket)
            .finish()
    }
}

impl ReadyChannel {
    /// Adopts the descriptor named by the variable: a Unix stream socket,
    /// or the write end of a pipe (an earlier lameduck's predecessor). It
    /// is made close-on-exec, and blocking. The error says what is wrong
    /// with it.
    pub(crate) fn adopt(
        value: &OsStr,
        adoption: &mut Adoption,
    ) -> Result<ReadyChannel, &'static str> {
        let (fd, kind) = adoption.adopt_named(value, |fd, kind| match kind {
            FileType::Fifo => check_pipe_end(fd, PipeEnd::Write),
            FileType::Socket => {
                let stream =
                    rustix::net::sockopt::socket_type(fd).is_ok_and(|t| t == SocketType::STREAM);
                let unix = rustix::net::getsockname(fd)
                    .is_ok_and(|a| a.address_family() == AddressFamily::UNIX);
                if stream && unix {
                    Ok(())
                } else {
                    Err("not a Unix stream socket")
                }
            }
            _ => Err("neither a Unix stream socket nor a pipe"),
        })?;
        let socket = kind == FileType::Socket;
        if socket {
            let flags = rustix::fs::fcntl_getfl(&fd).map_err(|_| "cannot be examined")?;
            rustix::fs::fcntl_setfl(&fd, flags - rustix::fs::OFlags::NONBLOCK)
                .map_err(|_| "cannot be made blocking")?;
        }
        Ok(ReadyChannel {
            fd,
            socket,
            received: false,
        })
    }

    /// Receives the predecessor's state (blocking until it has all of it):
    /// `None` from a pipe (no state), or a second time.
    pub(crate) fn receive(&mut self, limits: Limits) -> io::Result<Option<Received>> {
        if !self.socket || self.received {
            return Ok(None);
        }
        self.received = true;
        let mut arriving = Arriving::new(limits);
        // Each pass reads at least one byte or ends: bounded by the
        // frame's (bounded) length.
        while !arriving.is_complete() {
            let n = match arriving.recv(self.fd.as_fd()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            if let Err(e) = arriving.feed(n) {
                return Ok(Some(Err(e)));
            }
        }
        Ok(Some(arriving.finish()))
    }

    /// Says `reply` to the predecessor (nothing on a pipe but `READY=1`).
    pub(crate) fn reply(&self, reply: &Reply) -> io::Result<()> {
        if !self.socket && *reply != Reply::Ready {
            return Ok(());
        }
        fdpass::write_all(self.fd.as_fd(), &reply.encode(), self.socket)
    }

    /// Tells the predecessor this process is ready, and closes the channel.
    pub(crate) fn report(self) -> io::Result<()> {
        self.reply(&Reply::Ready)
    }

    /// Tells the supervisor this generation is ready, and keeps the
    /// channel (a socket) for its state requests.
    pub(crate) fn report_and_keep(self) -> io::Result<Option<ReadyChannel>> {
        self.reply(&Reply::Ready)?;
        Ok(self.socket.then_some(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    /// The successor's end, adopted as a successor would.
    fn adopt(theirs: OwnedFd) -> ReadyChannel {
        let fd = theirs.into_raw_fd(); // to be owned by the channel
        ReadyChannel::adopt(OsStr::new(&fd.to_string()), &mut Adoption::for_tests()).unwrap()
    }

    fn offer(items: &[(&str, &[u8], Vec<OwnedFd>)]) -> Offer {
        let mut frame = Frame::new(1);
        let mut fds = Vec::new();
        for (name, data, attached) in items {
            frame
                .push(name, data.to_vec(), attached.len() as u16)
                .unwrap();
        }
        for (_, _, attached) in items {
            fds.extend(attached.iter().map(|f| f.try_clone().unwrap()));
        }
        Offer {
            bytes: frame.encode(&Limits::default()).unwrap(),
            fds,
            items: items.len(),
        }
    }

    /// Runs `successor` on its end in a thread while this end converses.
    fn converse(offer: Offer, successor: impl FnOnce(ReadyChannel) + Send + 'static) -> Heard {
        let (reader, theirs) = ready_channel().unwrap();
        let channel = adopt(theirs);
        let thread = std::thread::spawn(move || successor(channel));
        let heard = smol::block_on(reader.converse(offer)).unwrap();
        thread.join().unwrap();
        heard
    }

    #[test]
    fn state_with_a_descriptor_then_ready() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let big = vec![7u8; 300_000]; // more than a socket buffer
        let offer = offer(&[
            ("big", &big, Vec::new()),
            ("udp", b"", vec![OwnedFd::from(udp)]),
        ]);
        let heard = converse(offer, move |mut channel| {
            let (frame, mut fds) = channel
                .receive(Limits::default())
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(frame.get("big").unwrap().data().len(), 300_000);
            let udp = std::net::UdpSocket::from(fds.pop().unwrap());
            assert_eq!(udp.local_addr().unwrap(), addr);
            assert!(channel.receive(Limits::default()).unwrap().is_none());
            channel.reply(&Reply::Taken).unwrap();
            channel.report().unwrap();
        });
        assert!(matches!(heard, Heard::Ready), "{heard:?}");
    }

    #[test]
    fn refused_ready_without_taking_and_eof_are_not_ready() {
        let heard = converse(offer(&[("n", b"1", Vec::new())]), |mut channel| {
            let _ = channel.receive(Limits::default()).unwrap();
            channel.reply(&Reply::Refused("version 1?".into())).unwrap();
        });
        assert!(
            matches!(&heard, Heard::Aborted { reason: AbortReason::Refused, detail: Some(d) } if d == "version 1?"),
            "{heard:?}"
        );
        let heard = converse(offer(&[("n", b"1", Vec::new())]), |channel| {
            channel.report().unwrap();
        });
        assert!(
            matches!(
                heard,
                Heard::Aborted {
                    reason: AbortReason::NotTaken,
                    ..
                }
            ),
            "{heard:?}"
        );
        let heard = converse(offer(&[]), drop);
        assert!(matches!(heard, Heard::Eof), "{heard:?}");
        let heard = converse(offer(&[]), |channel| {
            channel.report().unwrap();
        });
        assert!(
            matches!(heard, Heard::Ready),
            "an empty offer needs no taking"
        );
        let heard = converse(Offer::empty(), |channel| {
            let _ = rustix::io::write(&channel.fd, b"HELLO\n");
        });
        assert!(
            matches!(
                heard,
                Heard::Aborted {
                    reason: AbortReason::Protocol,
                    ..
                }
            ),
            "{heard:?}"
        );
    }

    #[test]
    fn a_supervisor_asks_a_generation_for_its_state() {
        let (reader, theirs) = ready_channel().unwrap();
        let channel = adopt(theirs);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let udp = OwnedFd::from(udp);
        let thread = std::thread::spawn(move || {
            let offer = || Ok(offer(&[("n", b"7", vec![udp.try_clone().unwrap()])]));
            smol::block_on(answer_state_requests(channel, offer)).unwrap();
        });
        for _ in 0..2 {
            let got = smol::block_on(reader.request_state(Limits::default())).unwrap();
            assert_eq!(got.items, 1);
            assert_eq!(got.fds.len(), 1);
            let udp = std::net::UdpSocket::from(got.fds.into_iter().next().unwrap());
            assert_eq!(udp.local_addr().unwrap(), addr);
        }
        drop(reader); // the generation's task ends with the channel
        thread.join().unwrap();
    }

    #[test]
    fn a_pipe_is_readiness_only() {
        let (read, write) = rustix::pipe::pipe().unwrap();
        let mut channel = adopt(write);
        assert!(channel.receive(Limits::default()).unwrap().is_none());
        channel.reply(&Reply::Taken).unwrap(); // not said on a pipe
        channel.report().unwrap();
        let mut buf = [0u8; 16];
        let n = rustix::io::read(&read, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
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
            let adopted = ReadyChannel::adopt(OsStr::new(value), &mut Adoption::for_tests());
            assert_eq!(adopted.unwrap_err(), reason, "{value}");
        }
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let value = socket.as_raw_fd().to_string();
        let adopted = ReadyChannel::adopt(OsStr::new(&value), &mut Adoption::for_tests());
        assert_eq!(adopted.unwrap_err(), "not a Unix stream socket");
    }
}
