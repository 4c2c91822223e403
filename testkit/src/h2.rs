//! HTTP/2 clients for the tests: hyper's (a real, well-behaved client, for
//! what a user's client sees) and a plain frame writer and reader over
//! `std::net::TcpStream` (exact frames: GOAWAYs, resets, and the frames a
//! well-behaved client never sends).

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use async_executor::{Executor, Task};
use async_io::Async;
use bytes::Bytes;
use futures_lite::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;

use crate::client::IO_TIMEOUT;

// ----- hyper's client -------------------------------------------------------------

/// A socket (or TLS over it) as hyper's client sees it.
struct HyperStream<S>(S);

impl<S: futures_lite::AsyncRead + Unpin> hyper::rt::Read for HyperStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 16 * 1024];
        let want = buf.remaining().min(scratch.len());
        let n = std::task::ready!(futures_lite::AsyncRead::poll_read(
            Pin::new(&mut self.get_mut().0),
            cx,
            &mut scratch[..want]
        ))?;
        buf.put_slice(&scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

impl<S: futures_lite::AsyncWrite + Unpin> hyper::rt::Write for HyperStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures_lite::AsyncWrite::poll_write(Pin::new(&mut self.get_mut().0), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().0), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::AsyncWrite::poll_close(Pin::new(&mut self.get_mut().0), cx)
    }
}

/// The executor the client's tasks run on: a thread of its own, started on
/// first use, so the client runs beside any binding under test.
fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    static EXECUTOR: OnceLock<&'static Executor<'static>> = OnceLock::new();
    let executor = EXECUTOR.get_or_init(|| {
        let executor: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
        std::thread::Builder::new()
            .name("lameduck-testkit-h2-client".into())
            .spawn(move || async_io::block_on(executor.run(std::future::pending::<()>())))
            .expect("the HTTP/2 client's thread");
        executor
    });
    executor.spawn(future)
}

/// Runs the client connection's tasks on [`spawn`]'s executor.
#[derive(Clone, Copy, Debug)]
struct ClientExec;

impl<F: Future<Output = ()> + Send + 'static> hyper::rt::Executor<F> for ClientExec {
    fn execute(&self, task: F) {
        spawn(task).detach();
    }
}

/// Runs `future`, failing with `TimedOut` after [`IO_TIMEOUT`].
fn bounded<T>(future: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    async_io::block_on(future.or(async {
        async_io::Timer::after(IO_TIMEOUT).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP/2 client timed out",
        ))
    }))
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A response as the tests look at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H2Response {
    /// The status code.
    pub status: u16,
    /// The body, whole.
    pub body: Bytes,
    /// The `x-pid` header (the demo's: the process that answered).
    pub pid: Option<u32>,
}

impl H2Response {
    /// The body as UTF-8 text (lossy).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/2 connection (h2c, prior knowledge) through hyper's client;
/// requests may run concurrently on it ([`H2Client::spawn`]).
#[derive(Debug)]
pub struct H2Client {
    send: http2::SendRequest<Full<Bytes>>,
    authority: String,
    /// The connection's task: ends when the connection does.
    conn: Option<Task<Result<(), hyper::Error>>>,
}

impl H2Client {
    /// Connects to `addr` and does the HTTP/2 handshake.
    pub fn connect(addr: SocketAddr) -> io::Result<H2Client> {
        bounded(async move {
            let stream = Async::<TcpStream>::connect(addr).await?;
            H2Client::handshake(addr, stream).await
        })
    }

    /// Connects to `addr` over TLS (server name `localhost`), checks that
    /// ALPN chose `h2`, and does the HTTP/2 handshake.
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        addr: SocketAddr,
        config: std::sync::Arc<lameduck::tls::rustls::ClientConfig>,
    ) -> io::Result<H2Client> {
        use lameduck::tls::rustls::pki_types::ServerName;
        bounded(async move {
            let stream = Async::<TcpStream>::connect(addr).await?;
            let name = ServerName::try_from("localhost").map_err(other)?;
            let tls = futures_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            if alpn.as_deref() != Some(b"h2") {
                return Err(other(format!("ALPN chose {alpn:?}, not h2")));
            }
            H2Client::handshake(addr, tls).await
        })
    }

    async fn handshake<S>(addr: SocketAddr, stream: S) -> io::Result<H2Client>
    where
        S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = http2::handshake(ClientExec, HyperStream(stream))
            .await
            .map_err(other)?;
        Ok(H2Client {
            send,
            authority: addr.to_string(),
            conn: Some(spawn(conn)),
        })
    }

    /// Starts `method path` with `body` on its own stream; the task
    /// resolves to the response (body read whole), or the error.
    pub fn spawn(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Task<Result<H2Response, hyper::Error>> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.authority))
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("a valid request");
        let mut send = self.send.clone();
        spawn(async move {
            let response = send.send_request(request).await?;
            let status = response.status().as_u16();
            let pid = response
                .headers()
                .get("x-pid")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let body = response.into_body().collect().await?.to_bytes();
            Ok(H2Response { status, body, pid })
        })
    }

    /// Whether the connection can take no more requests (it ended, or the
    /// server sent GOAWAY).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// `GET path`, waited for.
    pub fn get(&self, path: &str) -> io::Result<H2Response> {
        let task = self.spawn("GET", path, b"");
        bounded(async { task.await.map_err(other) })
    }

    /// Waits for a task from [`spawn`](Self::spawn) (bounded).
    pub fn wait(task: Task<Result<H2Response, hyper::Error>>) -> io::Result<H2Response> {
        bounded(async { task.await.map_err(other) })
    }

    /// Waits (bounded) until the connection has ended, as the client saw
    /// it: `Ok` after the server's GOAWAY and a clean close.
    pub fn wait_closed(&mut self) -> io::Result<Result<(), hyper::Error>> {
        let conn = self.conn.take().expect("waited for once");
        bounded(async { Ok(conn.await) })
    }
}

/// How a request on an HTTP/2 connection ended.
#[derive(Debug)]
pub enum H2Outcome {
    /// Answered.
    Response(H2Response),
    /// Never processed by the server, so safe to send again on a new
    /// connection (RFC 9113 §8.7): it never left the client (hyper hands
    /// it back: its connection was going away or gone), the server
    /// refused its stream (`REFUSED_STREAM`), or the server's GOAWAY
    /// named a last stream below it. Nothing else counts: a request sent
    /// and then cut is a failure.
    NeverProcessed(String),
    /// Failed otherwise.
    Failed(String),
}

impl H2Client {
    /// Sends `GET path` and reads the whole response (bounded), telling a
    /// request the server never processed from one that failed.
    #[must_use]
    pub fn try_get(&self, path: &str) -> H2Outcome {
        self.try_get_many(path, 1).pop().expect("one outcome")
    }

    /// [`try_get`](Self::try_get) `n` times at once, on `n` streams.
    #[must_use]
    pub fn try_get_many(&self, path: &str, n: usize) -> Vec<H2Outcome> {
        let tasks: Vec<Task<H2Outcome>> = (0..n).map(|_| spawn(self.exchange(path))).collect();
        tasks
            .into_iter()
            .map(|task| {
                async_io::block_on(task.or(async {
                    async_io::Timer::after(IO_TIMEOUT).await;
                    H2Outcome::Failed("timed out".into())
                }))
            })
            .collect()
    }

    fn exchange(&self, path: &str) -> impl Future<Output = H2Outcome> + Send + 'static {
        let request = hyper::Request::get(format!("http://{}{path}", self.authority))
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let mut send = self.send.clone();
        async move {
            let response = match send.try_send_request(request).await {
                Ok(response) => response,
                // hyper hands the request back: it was not sent.
                Err(e) if e.message().is_some() => {
                    return H2Outcome::NeverProcessed(e.error().to_string());
                }
                Err(e) if refused(e.error()) => {
                    return H2Outcome::NeverProcessed(e.error().to_string());
                }
                Err(e) => return H2Outcome::Failed(format!("{:?}", e.error())),
            };
            let status = response.status().as_u16();
            let pid = response
                .headers()
                .get("x-pid")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            match response.into_body().collect().await {
                Ok(body) => H2Outcome::Response(H2Response {
                    status,
                    body: body.to_bytes(),
                    pid,
                }),
                Err(e) => H2Outcome::Failed(format!("the body: {e:?}")),
            }
        }
    }
}

/// Whether the server did not process the request's stream: it reset it
/// with `REFUSED_STREAM`, or its graceful (`NO_ERROR`) GOAWAY named a last
/// stream below it (the h2 crate then ends the stream with the GOAWAY's
/// error; RFC 9113 §6.8: such streams were not processed and may be
/// retried).
fn refused(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    // Bounded by the chain's length.
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<::h2::Error>() {
            return (h2.is_reset() && h2.reason() == Some(::h2::Reason::REFUSED_STREAM))
                || (h2.is_go_away()
                    && h2.is_remote()
                    && h2.reason() == Some(::h2::Reason::NO_ERROR));
        }
        source = e.source();
    }
    false
}

// ----- frames ------------------------------------------------------------------------

/// The client's connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
pub mod kind {
    /// DATA
    pub const DATA: u8 = 0;
    /// HEADERS
    pub const HEADERS: u8 = 1;
    /// PRIORITY
    pub const PRIORITY: u8 = 2;
    /// RST_STREAM
    pub const RST_STREAM: u8 = 3;
    /// SETTINGS
    pub const SETTINGS: u8 = 4;
    /// PING
    pub const PING: u8 = 6;
    /// GOAWAY
    pub const GOAWAY: u8 = 7;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u8 = 8;
    /// CONTINUATION
    pub const CONTINUATION: u8 = 9;
}

/// Flags.
pub const END_STREAM: u8 = 1;
/// ACK on SETTINGS and PING.
pub const ACK: u8 = 1;
/// END_HEADERS on HEADERS.
pub const END_HEADERS: u8 = 4;
/// The error code REFUSED_STREAM (RFC 9113 §7).
pub const REFUSED_STREAM: u32 = 7;
/// The largest stream id (a first, graceful GOAWAY carries it).
pub const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// One frame read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its type ([`kind`]).
    pub kind: u8,
    /// Its flags.
    pub flags: u8,
    /// Its stream.
    pub stream: u32,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's last stream id and error code.
    #[must_use]
    pub fn goaway(&self) -> Option<(u32, u32)> {
        (self.kind == kind::GOAWAY && self.payload.len() >= 8).then(|| {
            (
                u32::from_be_bytes(self.payload[..4].try_into().unwrap()) & MAX_STREAM_ID,
                u32::from_be_bytes(self.payload[4..8].try_into().unwrap()),
            )
        })
    }

    /// A RST_STREAM's error code.
    #[must_use]
    pub fn reset_code(&self) -> Option<u32> {
        (self.kind == kind::RST_STREAM && self.payload.len() == 4)
            .then(|| u32::from_be_bytes(self.payload[..4].try_into().unwrap()))
    }

    /// A response HEADERS frame with `:status 200` (as HPACK's static
    /// table encodes it).
    #[must_use]
    pub fn is_ok_headers(&self) -> bool {
        self.kind == kind::HEADERS && self.payload.first() == Some(&0x88)
    }
}

/// The bytes of one frame.
#[must_use]
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a frame payload under 16 MiB");
    let mut bytes = len.to_be_bytes()[1..].to_vec();
    bytes.extend([kind, flags]);
    bytes.extend(stream.to_be_bytes());
    bytes.extend(payload);
    bytes
}

/// The HPACK block of `GET path` (authority `t`): static-table entries and
/// literals without Huffman coding.
#[must_use]
pub fn get_block(path: &str) -> Vec<u8> {
    assert!(path.len() < 127, "a short path");
    // :method GET, :scheme http (indexed), :authority and :path (literal,
    // indexed name, not indexed).
    let mut block = vec![0x82, 0x86, 0x01, 1, b't', 0x04, path.len() as u8];
    block.extend(path.as_bytes());
    block
}

/// A plain HTTP/2 client: it writes exact frames and reads exact frames.
#[derive(Debug)]
pub struct RawH2 {
    stream: TcpStream,
}

impl RawH2 {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub fn connect(addr: SocketAddr) -> io::Result<RawH2> {
        let mut raw = RawH2::from_stream(TcpStream::connect(addr)?)?;
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(kind::SETTINGS, 0, 0, &[]));
        raw.send(&hello)?;
        Ok(raw)
    }

    /// A client on a connected socket that has sent nothing yet.
    pub fn from_stream(stream: TcpStream) -> io::Result<RawH2> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(RawH2 { stream })
    }

    /// The socket.
    #[must_use]
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `GET path` on `stream` (HEADERS with END_STREAM).
    pub fn send_get(&mut self, stream: u32, path: &str) -> io::Result<()> {
        self.send(&frame(
            kind::HEADERS,
            END_STREAM | END_HEADERS,
            stream,
            &get_block(path),
        ))
    }

    /// Reads one frame; `None` at the end of stream (or a reset).
    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 9];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload)?;
        Ok(Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & MAX_STREAM_ID,
            payload,
        }))
    }

    /// Reads frames until `until` holds for one (returned, with those
    /// before it), answering the server's SETTINGS and PINGs as a client
    /// must unless `ack_pings` is false. `None`: the connection ended first.
    pub fn read_until(
        &mut self,
        ack_pings: bool,
        mut until: impl FnMut(&Frame) -> bool,
    ) -> io::Result<(Vec<Frame>, Option<Frame>)> {
        let started = Instant::now();
        let mut before = Vec::new();
        // Bounded: each read is bounded by the socket's timeout, the loop
        // by the same time overall.
        while started.elapsed() < IO_TIMEOUT {
            let Some(frame) = self.read_frame()? else {
                return Ok((before, None));
            };
            self.answer(&frame, ack_pings)?;
            if until(&frame) {
                return Ok((before, Some(frame)));
            }
            before.push(frame);
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no such frame"))
    }

    /// Acknowledges a SETTINGS frame, and a PING if `ack_pings`.
    pub fn answer(&mut self, frame: &Frame, ack_pings: bool) -> io::Result<()> {
        if frame.flags & ACK != 0 {
            return Ok(());
        }
        match frame.kind {
            kind::SETTINGS => self.send(&frame_ack(kind::SETTINGS, &[])),
            kind::PING if ack_pings => self.send(&frame_ack(kind::PING, &frame.payload)),
            _ => Ok(()),
        }
    }

    /// Reads every frame until the server closes, answering none (for a
    /// client that has closed its side).
    pub fn read_to_end_silently(&mut self) -> io::Result<Vec<Frame>> {
        let started = Instant::now();
        let mut frames = Vec::new();
        // Bounded: each read by the socket's timeout, the loop by the same time.
        while started.elapsed() < IO_TIMEOUT {
            match self.read_frame()? {
                Some(frame) => frames.push(frame),
                None => return Ok(frames),
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no end"))
    }

    /// Reads every frame until the server closes.
    pub fn read_to_end(&mut self, ack_pings: bool) -> io::Result<Vec<Frame>> {
        Ok(self.read_until(ack_pings, |_| false)?.0)
    }
}

fn frame_ack(kind: u8, payload: &[u8]) -> Vec<u8> {
    frame(kind, ACK, 0, payload)
}
