//! The benchmarks' untracked baseline: the demo server's hyper + smol HTTP/1.1
//! serving of `GET /` and `GET /sleep?ms=N`, built the same way (smol's
//! global executor, a task per connection, hyper's `http1` connection with
//! upgrades and half-close, the same futures-io → hyper bridge copying through an 8 KiB
//! initialized scratch, boxed handler futures, `X-Pid` on every response) —
//! **without** lameduck: no driver, no core, no per-connection control, no
//! tracking of requests. Comparing it with the demo isolates the cost of
//! lifecycle tracking.
//!
//! ```text
//! baseline [--listen ADDR] [--reuseport] [--stop-wait SECS]
//! ```
//!
//! Prints `listening on ADDR pid=PID` as its first stdout line, as the demo does.
//! `--reuseport` binds with `SO_REUSEPORT` (the restart drill's negative
//! control: a new process binds beside the old one). On SIGTERM it dies at
//! once (the default action) — unless `--stop-wait SECS` is given: then it
//! closes its listener, keeps serving the connections it has for SECS, and
//! exits 0 (a naive "graceful" stop, with no idea which connections are busy).

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{FutureExt, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Method, Request, Response, StatusCode};
use smol::{Async, Timer};

type Body = UnsyncBoxBody<Bytes, Infallible>;
type Reply = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Largest `ms` accepted by `/sleep` (as the demo: an hour).
const MAX_MS: u64 = 3_600_000;

struct Args {
    listen: SocketAddr,
    reuseport: bool,
    stop_wait: Option<Duration>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        reuseport: false,
        stop_wait: None,
    };
    // One flag (and its value) per pass; ends with the arguments.
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--reuseport" => parsed.reuseport = true,
            "--listen" => {
                let value = args.next().ok_or("--listen needs a value")?;
                parsed.listen = value
                    .parse()
                    .map_err(|_| format!("--listen: bad address '{value}'"))?;
            }
            "--stop-wait" => {
                let value = args.next().ok_or("--stop-wait needs a value")?;
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("--stop-wait: bad seconds '{value}'"))?;
                parsed.stop_wait = Some(
                    Duration::try_from_secs_f64(secs)
                        .map_err(|_| format!("--stop-wait: bad seconds '{value}'"))?,
                );
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(parsed)
}

/// Binds like `std` does (`SO_REUSEADDR`), plus `SO_REUSEPORT` if asked.
fn bind(addr: SocketAddr, reuseport: bool) -> io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if reuseport {
        sockopt::set_socket_reuseport(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 1024)?;
    Ok(TcpListener::from(fd))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("baseline: {message}");
            eprintln!("usage: baseline [--listen ADDR] [--reuseport] [--stop-wait SECS]");
            return ExitCode::from(2);
        }
    };
    let listener = match bind(args.listen, args.reuseport).and_then(Async::new) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("baseline: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    // Only with --stop-wait is SIGTERM caught; otherwise it kills.
    let signals = match args.stop_wait {
        Some(_) => match async_signal::Signals::new([async_signal::Signal::Term]) {
            Ok(signals) => Some(signals),
            Err(e) => {
                eprintln!("baseline: cannot handle signals: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    let addr = listener
        .get_ref()
        .local_addr()
        .map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    smol::block_on(async move {
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        // The accept loop, on the global executor like the demo's.
        let accepting = smol::spawn(async move {
            // One connection per pass; ends when told to stop (the listener
            // is dropped, i.e. closed, with this task).
            loop {
                let accepted = async { Some(listener.accept().await) }
                    .or(async {
                        let _ = stop_rx.recv().await;
                        None
                    })
                    .await;
                match accepted {
                    None => return,
                    Some(Ok((stream, _))) => {
                        let _ = stream.get_ref().set_nodelay(true);
                        smol::spawn(serve_conn(stream)).detach();
                    }
                    // As the demo does on e.g. EMFILE: back off, retry.
                    Some(Err(_)) => {
                        Timer::after(Duration::from_millis(5)).await;
                    }
                }
            }
        });
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "listening on {addr} pid={}", std::process::id());
        let _ = stdout.flush();
        drop(stdout);
        match (signals, args.stop_wait) {
            (Some(mut signals), Some(wait)) => {
                let _ = signals.next().await;
                let _ = stop_tx.send(()).await;
                accepting.await;
                eprintln!("baseline: listener closed; exiting in {wait:?}");
                Timer::after(wait).await;
                eprintln!("baseline: done");
            }
            _ => {
                accepting.await;
            }
        }
    });
    ExitCode::SUCCESS
}

async fn serve_conn(stream: Async<TcpStream>) {
    // The demo's builder options exactly (`lameduck::http1`): keep in step.
    let _ = http1::Builder::new()
        .half_close(true)
        .serve_connection(PlainIo { stream }, Routes)
        .with_upgrades()
        .await;
}

// ----- the socket, seen by hyper (the demo's bridge, minus tracking) --------

struct PlainIo {
    stream: Async<TcpStream>,
}

/// Bytes read per call, through an initialized scratch, as in lameduck's
/// `http1` bridge.
const READ_CHUNK: usize = 8 * 1024;

impl Read for PlainIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut scratch = [0u8; READ_CHUNK];
        let want = buf.remaining().min(READ_CHUNK);
        let n = ready!(Pin::new(&mut this.stream).poll_read(cx, &mut scratch[..want]))?;
        buf.put_slice(&scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

impl Write for PlainIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

// ----- the routes (as the demo's) --------------------------------------------

struct Routes;

impl Service<Request<Incoming>> for Routes {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Reply;

    fn call(&self, req: Request<Incoming>) -> Reply {
        let reply = route(req);
        Box::pin(async move {
            let mut response = reply.await?;
            response.headers_mut().insert(
                "x-pid",
                hyper::header::HeaderValue::from(std::process::id()),
            );
            Ok(response)
        })
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response
}

fn ready(response: Response<Body>) -> Reply {
    Box::pin(async move { Ok(response) })
}

fn sleep_ms(req: &Request<Incoming>) -> Option<u64> {
    let query = req.uri().query().unwrap_or("");
    let (_, value) = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "ms")?;
    value.parse().ok().filter(|ms| *ms <= MAX_MS)
}

fn route(req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") => ready(text(StatusCode::OK, "hello")),
        (Method::GET, "/sleep") => match sleep_ms(&req) {
            None => ready(text(StatusCode::BAD_REQUEST, "bad ms")),
            Some(ms) => Box::pin(async move {
                Timer::at(Instant::now() + Duration::from_millis(ms)).await;
                Ok(text(StatusCode::OK, format!("slept {ms}")))
            }),
        },
        _ => ready(text(StatusCode::NOT_FOUND, "not found")),
    }
}
