//! A small blocking HTTP/1.1 client: one request at a time on a keep-alive
//! connection, responses read to their last byte (`Content-Length`, or the
//! end of stream), every failure classified.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Failure {
    /// The connection was refused.
    Refused,
    /// Reset, or closed before any byte of the response.
    Reset,
    /// Closed or reset after part of the response.
    Truncated,
    /// A complete response whose status was not 200.
    Status(u16),
    /// No (complete) response within the timeout.
    Timeout,
    /// Anything else (e.g. no local port left).
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused => f.write_str("refused"),
            Failure::Reset => f.write_str("reset/closed"),
            Failure::Truncated => f.write_str("truncated"),
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Other(e) => write!(f, "other ({e})"),
        }
    }
}

fn classify(e: &io::Error, got_bytes: bool) -> Failure {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => Failure::Refused,
        K::WouldBlock | K::TimedOut => Failure::Timeout,
        K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted | K::UnexpectedEof => {
            if got_bytes {
                Failure::Truncated
            } else {
                Failure::Reset
            }
        }
        _ => Failure::Other(e.to_string()),
    }
}

/// A complete response.
#[derive(Debug)]
pub(crate) struct Response {
    /// The server said `Connection: close` (or the body ran to the end of
    /// stream): the connection is not reusable.
    pub(crate) close: bool,
    /// When the last byte was read.
    pub(crate) last_byte: Instant,
}

/// A failed request: why, and whether any byte of a response had arrived
/// (a request that got none may be retried on a new connection when its
/// connection was reused, as HTTP clients do: RFC 9112, section 9.3.1).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) failure: Failure,
    pub(crate) got_bytes: bool,
}

/// One client connection.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// At least one response was read on it.
    pub(crate) reused: bool,
}

/// Connects to `addr` (from `source`, if given: an address of 127.0.0.0/8
/// other than the default multiplies the ephemeral ports available).
pub(crate) fn connect(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    timeout: Duration,
) -> Result<Conn, Failure> {
    let stream = match source {
        None => TcpStream::connect_timeout(&addr, timeout).map_err(|e| classify(&e, false))?,
        Some(ip) => connect_from(addr, ip).map_err(|e| classify(&e, false))?,
    };
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| Failure::Other(e.to_string()))?;
    Ok(Conn {
        stream,
        buf: Vec::with_capacity(1024),
        reused: false,
    })
}

fn connect_from(addr: SocketAddr, source: Ipv4Addr) -> io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrV4::new(source, 0))?;
    rustix::net::connect(&fd, &addr)?;
    Ok(TcpStream::from(fd))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    /// The socket (to wait until it is readable).
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.stream
    }

    /// Once the socket is readable: reads what arrived and says whether the
    /// connection is still open — `false` when the server ended it (end of
    /// stream, or an error such as a reset).
    pub(crate) fn still_open(&mut self) -> bool {
        let mut scratch = [0u8; 1024];
        matches!(self.stream.read(&mut scratch), Ok(n) if n > 0)
    }

    /// Hands the connection to a thread that closes it when the server
    /// ends it (end of stream, or an error), as an HTTP client does; bounded
    /// by the read timeout the connection was given.
    pub(crate) fn close_when_the_server_does(mut self) {
        std::thread::spawn(move || {
            let mut scratch = [0u8; 1024];
            // Each pass reads at least one byte or ends.
            while matches!(self.stream.read(&mut scratch), Ok(n) if n > 0) {}
        });
    }

    /// `GET path`, the response read to its last byte.
    pub(crate) fn get(&mut self, path: &str) -> Result<Response, Failed> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        if let Err(e) = self.stream.write_all(request.as_bytes()) {
            return Err(Failed {
                failure: classify(&e, false),
                got_bytes: false,
            });
        }
        self.read_response()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn read_response(&mut self) -> Result<Response, Failed> {
        let fail = |e: &io::Error, got: bool| Failed {
            failure: classify(e, got),
            got_bytes: got,
        };
        let eof = || io::Error::from(io::ErrorKind::UnexpectedEof);
        // The head: one read per pass, until the blank line (bounded by the
        // read timeout per read and by the head's size).
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 * 1024 {
                return Err(Failed {
                    failure: Failure::Other("response head too large".into()),
                    got_bytes: true,
                });
            }
            let got = !self.buf.is_empty();
            match self.fill() {
                Ok(0) => return Err(fail(&eof(), got)),
                Ok(_) => {}
                Err(e) => return Err(fail(&e, got)),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or(Failed {
                failure: Failure::Other("bad status line".into()),
                got_bytes: true,
            })?;
        let mut length = None;
        let mut close = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
        let body_end = match length {
            Some(len) => {
                // One read per pass until the body is complete.
                while self.buf.len() < head_end + len {
                    match self.fill() {
                        Ok(0) => return Err(fail(&eof(), true)),
                        Ok(_) => {}
                        Err(e) => return Err(fail(&e, true)),
                    }
                }
                head_end + len
            }
            None => {
                // Until the end of stream (bounded by the read timeout).
                loop {
                    match self.fill() {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return Err(fail(&e, true)),
                    }
                }
                close = true;
                self.buf.len()
            }
        };
        let last_byte = Instant::now();
        self.buf.drain(..body_end);
        self.reused = true;
        if status != 200 {
            return Err(Failed {
                failure: Failure::Status(status),
                got_bytes: true,
            });
        }
        Ok(Response { close, last_byte })
    }
}
