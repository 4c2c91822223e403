//! A deliberately plain HTTP/1.1 client over `std::net::TcpStream`: it
//! writes exact bytes and reads exact bytes, so tests see precisely what the
//! server sent (headers, chunking, end of stream, reset).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long any single read or write may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// How a connection ended, seen from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The server closed cleanly (FIN): a read returned 0.
    Eof,
    /// The connection was reset (RST).
    Reset,
}

/// A parsed HTTP/1.1 response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower-case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the response says `Connection: close`.
    #[must_use]
    pub fn connection_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The body as UTF-8 text (lossy).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection: over TCP, or over any other byte stream (e.g. a
/// TLS client's, [`Client::over`]).
#[derive(Debug)]
pub struct Client<S = TcpStream> {
    stream: S,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

impl Client {
    /// Connects to `addr` (blocking, with [`IO_TIMEOUT`] on reads and writes).
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        Client::from_stream(TcpStream::connect_timeout(&addr, IO_TIMEOUT)?)
    }

    /// A client on a stream connected elsewhere (e.g. before the server
    /// started), with the same timeouts as [`connect`](Self::connect).
    pub fn from_stream(stream: TcpStream) -> io::Result<Client> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// The underlying stream.
    #[must_use]
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl<S: Read + Write> Client<S> {
    /// A client speaking through `stream` (its timeouts set by the caller).
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// The underlying stream, to use directly.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `GET path HTTP/1.1` with a Host header.
    pub fn send_get(&mut self, path: &str) -> io::Result<()> {
        self.send(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Takes `n` buffered bytes, reading as needed.
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        // Each pass reads at least one byte or fails; bounded by `n` and by
        // IO_TIMEOUT per read.
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream inside a response",
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes one CRLF-terminated line (without the CRLF).
    fn line(&mut self) -> io::Result<String> {
        // Each pass reads at least one byte or fails; a line is at most 64 KiB.
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                return String::from_utf8(line)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "non-UTF-8 line"));
            }
            if self.buf.len() > 64 * 1024 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream inside a response",
                ));
            }
        }
    }

    /// Reads one complete response (Content-Length or chunked). An end of
    /// stream before it is complete is an `UnexpectedEof` error.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let status_line = self.line()?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status_line:?}"),
                )
            })?;
        let mut headers = Vec::new();
        // One header per pass; at most 100.
        for _ in 0..100 {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad header {line:?}"))
            })?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 101 || status == 204 || status == 304 {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            // One chunk per pass; at most 1 000 000 chunks.
            for _ in 0..1_000_000 {
                let size_line = self.line()?;
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("bad chunk size {size_line:?}"),
                            )
                        })?;
                if size == 0 {
                    // Trailers (none expected), then the blank line.
                    for _ in 0..100 {
                        if self.line()?.is_empty() {
                            break;
                        }
                    }
                    return Ok(response);
                }
                let data = self.take(size)?;
                response.body.extend_from_slice(&data);
                if self.take(2)? != b"\r\n" {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "chunk without CRLF",
                    ));
                }
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many chunks",
            ));
        }
        let length = match response.header("content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?,
            None => 0,
        };
        response.body = self.take(length)?;
        Ok(response)
    }

    /// `GET path` and its response.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send_get(path)?;
        self.read_response()
    }

    /// Reads until `needle` has arrived (keeping everything buffered for
    /// [`read_response`](Self::read_response)): e.g. the first chunk of a
    /// streamed response, proof that the server is inside that request.
    pub fn read_until_contains(&mut self, needle: &[u8]) -> io::Result<()> {
        // Each pass reads at least one byte or fails; at most 1 MiB.
        while !self.buf.windows(needle.len()).any(|w| w == needle) {
            if self.buf.len() > 1024 * 1024 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "never arrived"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed first"));
            }
        }
        Ok(())
    }

    /// Reads exactly `n` bytes (an end of stream first is an error).
    pub fn read_exact_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.take(n)
    }

    /// A complete response, or `Ok(None)` when the connection ended (end of
    /// stream or reset) before any byte of one. A connection that ends
    /// inside a response is an error: that is the failure a graceful drain
    /// must never cause.
    pub fn read_response_or_close(&mut self) -> io::Result<Result<Response, Ending>> {
        if self.buf.is_empty() {
            match self.fill() {
                Ok(0) => return Ok(Err(Ending::Eof)),
                Ok(_) => {}
                Err(e) if is_reset(&e) => return Ok(Err(Ending::Reset)),
                Err(e) => return Err(e),
            }
        }
        self.read_response().map(Ok)
    }

    /// Reads until the server ends the connection; returns the bytes that
    /// came first (normally none) and how it ended. A read that times out
    /// (after [`IO_TIMEOUT`]) is an error: the server did not close.
    pub fn read_until_closed(&mut self) -> io::Result<(Vec<u8>, Ending)> {
        // Each pass reads at least one byte or ends; bounded by IO_TIMEOUT
        // per read and by the 16 MiB cap.
        loop {
            match self.fill() {
                Ok(0) => return Ok((std::mem::take(&mut self.buf), Ending::Eof)),
                Ok(_) if self.buf.len() > 16 * 1024 * 1024 => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "server never closes",
                    ));
                }
                Ok(_) => {}
                Err(e) if is_reset(&e) => {
                    return Ok((std::mem::take(&mut self.buf), Ending::Reset));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
