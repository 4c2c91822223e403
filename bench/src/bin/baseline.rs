//! The benchmarks' untracked baseline: the demo server's cleartext HTTP/1.1
//! and HTTP/2 (h2c, prior knowledge) serving of `GET /` and
//! `GET /sleep?ms=N` on the same stack as the demo, per
//! runtime — **without** lameduck's tracking: no driver, no core, no
//! worker, no per-connection control or tracked IO. Comparing it with the
//! demo on the same `--runtime` isolates the cost of lifecycle tracking.
//!
//! What it shares with the demo, on purpose: each runtime's binding from
//! `lameduck::runtime` (the seam's `Launch` and `Runtime`: the same threads
//! and executors, the same accept and the same socket types — a binding
//! decides nothing about the lifecycle, it is the runtime itself), one
//! accept loop per thread on a shared listening socket (`--threads N`),
//! a task per connection, the demo's protocol sniff (a connection opening
//! with the HTTP/2 preface is HTTP/2, any other HTTP/1.1; the bytes read to
//! tell are put back), hyper's `http1` connection with the demo's options
//! (upgrades, half-close) or its `http2` connection with each stream's task
//! on the same runtime (ended with the connection), the same futures-io → hyper bridge
//! copying through an 8 KiB initialized scratch, boxed handler futures, a
//! request counter and `X-Pid` on every response.
//!
//! With `--tls-cert PEM --tls-key PEM` it speaks TLS as the demo does with
//! the same flags: the same rustls configuration (made by
//! `lameduck::tls::TlsAcceptor::from_pem_files`, so the same provider,
//! protocol versions and ALPN `h2`, `http/1.1`), the same `futures-rustls`
//! acceptor run in the connection's task, then HTTP/2 if ALPN chose `h2`
//! and HTTP/1.1 otherwise, through the same bridge — without lameduck's
//! tracking of the handshake (no grace, no header timeout) or its
//! `close_notify` on close (hyper's shutdown of the TLS stream sends it).
//!
//! ```text
//! baseline [--listen ADDR] [--runtime smol|smol-local|compio|tokio|async-std]
//!          [--threads N] [--reuseport] [--stop-wait SECS]
//!          [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! Prints `listening on ADDR pid=PID` as its first stdout line, as the demo does.
//! `--runtime` as the demo's (default smol; runtimes other than smol need
//! the bench crate's feature of the same name). `--threads N`: N threads
//! of that runtime, each with its own accept loop (not smol-local, which
//! serves on the main thread). `--reuseport` binds with `SO_REUSEPORT`
//! (the restart drill's negative control: a new process binds beside the
//! old one). On SIGTERM it dies at once (the default action) — unless
//! `--stop-wait SECS` is given: then it closes its listener, keeps serving
//! the connections it has for SECS, and exits 0 (a naive "graceful" stop,
//! with no idea which connections are busy).

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{FutureExt, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::{Method, Request, Response, StatusCode};
use lameduck::runtime::{Launch, Runtime, SmolLocal, ThreadMain};
use lameduck::tls::rustls::ServerConfig;
use smol::Timer;

type Body = UnsyncBoxBody<Bytes, Infallible>;
type Reply = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Largest `ms` accepted by `/sleep` (as the demo: an hour).
const MAX_MS: u64 = 3_600_000;

/// Requests served (the demo counts its requests too, for `GET /hits`).
static HITS: AtomicU64 = AtomicU64::new(0);

const USAGE: &str = "usage: baseline [--listen ADDR] [--runtime smol|smol-local|compio|tokio|async-std] \
                     [--threads N] [--reuseport] [--stop-wait SECS] [--tls-cert PEM --tls-key PEM]";

struct Args {
    listen: SocketAddr,
    runtime: String,
    threads: usize,
    reuseport: bool,
    stop_wait: Option<Duration>,
    /// `--tls-cert` and `--tls-key`: TLS on every connection.
    tls: Option<(PathBuf, PathBuf)>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        runtime: "smol".into(),
        threads: 1,
        reuseport: false,
        stop_wait: None,
        tls: None,
    };
    let (mut tls_cert, mut tls_key) = (None, None);
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
            "--runtime" => parsed.runtime = args.next().ok_or("--runtime needs a value")?,
            "--threads" => {
                let value = args.next().ok_or("--threads needs a value")?;
                parsed.threads = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| format!("--threads: '{value}' is not from 1 to 1024"))?;
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
            "--tls-cert" => {
                tls_cert = Some(PathBuf::from(
                    args.next().ok_or("--tls-cert needs a value")?,
                ));
            }
            "--tls-key" => {
                tls_key = Some(PathBuf::from(args.next().ok_or("--tls-key needs a value")?));
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    parsed.tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(_), None) => return Err("--tls-cert needs --tls-key (the private key)".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert (the certificate)".into()),
        (None, None) => None,
    };
    if parsed.runtime == "smol-local" && parsed.threads > 1 {
        return Err("--threads: smol-local serves on the main thread only".into());
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
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match bind(args.listen, args.reuseport) {
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
        .local_addr()
        .map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    let tls = match &args.tls {
        Some((cert, key)) => match lameduck::tls::TlsAcceptor::from_pem_files(cert, key) {
            Ok(acceptor) => Some(acceptor.config().clone()),
            Err(e) => {
                eprintln!("baseline: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // Closing the channel stops every accept loop.
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let serving = Serving { stop: stop_rx, tls };
    let served = match args.runtime.as_str() {
        "smol" => launch(&lameduck::runtime::Smol, &listener, args.threads, &serving),
        #[cfg(feature = "compio")]
        "compio" => launch(
            &lameduck::runtime::Compio::new(),
            &listener,
            args.threads,
            &serving,
        ),
        #[cfg(feature = "tokio")]
        "tokio" => launch(&lameduck::runtime::Tokio, &listener, args.threads, &serving),
        #[cfg(feature = "async-std")]
        "async-std" => launch(
            &lameduck::runtime::AsyncStd,
            &listener,
            args.threads,
            &serving,
        ),
        // Below, on this thread.
        "smol-local" => Ok(Vec::new()),
        other => {
            eprintln!(
                "baseline: --runtime {other}: unknown, or not in this build (bench/run.sh builds \
                 every runtime: --features compio,tokio,async-std)"
            );
            return ExitCode::from(2);
        }
    };
    let threads = match served {
        Ok(threads) => threads,
        Err(e) => {
            eprintln!("baseline: cannot start the server's threads: {e}");
            return ExitCode::from(1);
        }
    };
    let local = (args.runtime == "smol-local").then(|| Rc::new(smol::LocalExecutor::new()));
    if let Some(executor) = &local {
        let rt = SmolLocal::new(executor.clone());
        let listener = listener.try_clone();
        let serving = serving.clone();
        rt.clone().spawn(async move {
            match listener {
                Ok(listener) => accept_loop(rt, listener, serving).await,
                Err(e) => eprintln!("baseline: cannot share the listener: {e}"),
            }
        });
    }
    drop(listener);
    drop(serving);
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "listening on {addr} pid={}", std::process::id());
    let _ = stdout.flush();
    drop(stdout);
    let main = async move {
        match (signals, args.stop_wait) {
            (Some(mut signals), Some(wait)) => {
                let _ = signals.next().await;
                drop(stop_tx);
                eprintln!("baseline: listener closed; exiting in {wait:?}");
                Timer::after(wait).await;
                eprintln!("baseline: done");
            }
            // Until killed.
            _ => std::future::pending::<()>().await,
        }
    };
    match &local {
        Some(executor) => smol::block_on(executor.run(main)),
        None => smol::block_on(main),
    }
    drop(threads);
    ExitCode::SUCCESS
}

/// Starts `threads` threads of `launcher`'s runtime, each accepting on its
/// own descriptor of `listener` (as the demo's threads do).
fn launch<L: Launch>(
    launcher: &L,
    listener: &TcpListener,
    threads: usize,
    serving: &Serving,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    (0..threads)
        .map(|i| {
            let listener = listener.try_clone()?;
            let serving = serving.clone();
            let main: ThreadMain<L::Runtime> =
                Box::new(move |rt| Box::pin(accept_loop(rt, listener, serving)));
            launcher.launch(format!("baseline-{i}"), main)
        })
        .collect()
}

/// What every accept loop shares.
#[derive(Clone)]
struct Serving {
    /// Closed when the accept loops are to stop.
    stop: async_channel::Receiver<()>,
    /// TLS on every connection, if given.
    tls: Option<Arc<ServerConfig>>,
}

/// Accepts on `listener` with `rt`, a task per connection, until
/// `serving.stop` closes; errors back off 5 ms (as the demo does on e.g.
/// `EMFILE`).
async fn accept_loop<R: Runtime>(rt: R, listener: TcpListener, serving: Serving) {
    let listener = match rt.tcp_listener(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("baseline: cannot register the listener: {e}");
            return;
        }
    };
    // One connection per pass; ends when told to stop (the listener is
    // dropped, i.e. this thread's descriptor closed, with this future).
    loop {
        let accepted = async { Some(R::accept_tcp(&listener).await) }
            .or(async {
                let _ = serving.stop.recv().await;
                None
            })
            .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => match &serving.tls {
                None => rt.spawn(serve_conn(rt.clone(), stream)),
                Some(config) => rt.spawn(serve_tls(rt.clone(), config.clone(), stream)),
            },
            Some(Err(_)) => {
                rt.sleep_until(Instant::now() + Duration::from_millis(5))
                    .await;
            }
        }
    }
}

/// The HTTP/2 connection preface: a client speaking HTTP/2 with prior
/// knowledge starts with it (as the demo tells the protocols apart).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Completes the TLS handshake on `stream` (as lameduck's acceptor does:
/// `futures-rustls`, the same configuration), then serves HTTP/2 if ALPN
/// chose `h2`, HTTP/1.1 otherwise. A failed handshake closes the
/// connection.
async fn serve_tls<R: Runtime, S>(rt: R, config: Arc<ServerConfig>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(stream) = futures_rustls::TlsAcceptor::from(config)
        .accept(stream)
        .await
    else {
        return;
    };
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = PlainIo {
        stream,
        unread: [0; PREFACE.len()],
        unread_from: 0,
        unread_to: 0,
    };
    serve_http(rt, io, http2).await;
}

async fn serve_conn<R: Runtime, S>(rt: R, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures_lite::AsyncReadExt as _;
    // Reads until the first bytes differ from the preface or complete it
    // (at most 24 bytes; the end of input says HTTP/1.1), then puts them back.
    let mut first = [0u8; PREFACE.len()];
    let mut n = 0;
    let http2 = loop {
        let read = match stream.read(&mut first[n..]).await {
            Ok(read) => read,
            Err(_) => return,
        };
        n += read;
        if first[..n] != PREFACE[..n] || read == 0 {
            break false;
        }
        if n == PREFACE.len() {
            break true;
        }
    };
    let io = PlainIo {
        stream,
        unread: first,
        unread_from: 0,
        unread_to: n,
    };
    serve_http(rt, io, http2).await;
}

/// Serves `io` with hyper's `http2` or `http1` connection.
async fn serve_http<R: Runtime, S>(rt: R, io: PlainIo<S>, http2: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if http2 {
        // Ends the streams' tasks with the connection (as the demo's).
        let (ended_tx, ended_rx) = async_channel::bounded::<()>(1);
        let tasks = StreamTasks {
            rt,
            ended: ended_rx,
        };
        let _ = http2::Builder::new(tasks)
            .serve_connection(io, Routes)
            .await;
        drop(ended_tx);
    } else {
        // The demo's builder options exactly (`lameduck::http`): keep in step.
        let _ = http1::Builder::new()
            .half_close(true)
            .serve_connection(io, Routes)
            .with_upgrades()
            .await;
    }
}

/// hyper's executor for an HTTP/2 connection's streams: each on the
/// server's runtime, ending when the connection does.
#[derive(Clone)]
struct StreamTasks<R> {
    rt: R,
    ended: async_channel::Receiver<()>,
}

impl<R: Runtime, F: Future<Output = ()> + 'static> hyper::rt::Executor<F> for StreamTasks<R> {
    fn execute(&self, task: F) {
        let ended = self.ended.clone();
        self.rt.spawn(task.or(async move {
            let _ = ended.recv().await;
        }));
    }
}

// ----- the socket, seen by hyper (the demo's bridge, minus tracking) --------

struct PlainIo<S> {
    stream: S,
    /// The bytes read to tell the protocol, `unread_from..unread_to` not
    /// yet handed to hyper.
    unread: [u8; PREFACE.len()],
    unread_from: usize,
    unread_to: usize,
}

/// Bytes read per call, through an initialized scratch, as in lameduck's
/// HTTP/1.1 bridge.
const READ_CHUNK: usize = 8 * 1024;

impl<S: AsyncRead + Unpin> Read for PlainIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unread_from < this.unread_to {
            let take = buf.remaining().min(this.unread_to - this.unread_from);
            buf.put_slice(&this.unread[this.unread_from..this.unread_from + take]);
            this.unread_from += take;
            return Poll::Ready(Ok(()));
        }
        let mut scratch = [0u8; READ_CHUNK];
        let want = buf.remaining().min(READ_CHUNK);
        let n = ready!(Pin::new(&mut this.stream).poll_read(cx, &mut scratch[..want]))?;
        buf.put_slice(&scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> Write for PlainIo<S> {
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
        HITS.fetch_add(1, Ordering::Relaxed);
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
