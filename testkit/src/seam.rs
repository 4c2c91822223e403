//! The runtime seam's promises, checked on a binding directly: what
//! [`Runtime`] asks of every binding, each as a check that names the broken
//! promise when it fails.
//!
//! The scenario suite would catch most of these too, but late and vaguely: a
//! timer that fires early makes a deadline pass unnoticed (the driver re-arms
//! its one timer only when the deadline changes), so a scenario ends with
//! "not done within 10 s"; a `tcp_shutdown_write` that sends no FIN only
//! delays a gentle close until the socket is dropped. Here, each promise is
//! exercised on the binding's own thread (a probe spawned with
//! [`Runtime::spawn`] where the server's handler is made) and reported back
//! to the test, which says exactly which promise broke.
//!
//! Instantiated with the rest of the scenario suite by
//! [`scenarios!`](crate::scenarios!).

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future::{self, FutureExt};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use lameduck::Builder;
use lameduck::runtime::Runtime;

use crate::harness::{Binding, EVENTUALLY, PROMPT};

/// A probe: what runs on the binding's thread, given its runtime.
type Probe<R, O> = Box<dyn FnOnce(R) -> Pin<Box<dyn Future<Output = O>>> + Send>;

/// Runs `probe` on the binding's thread (spawned on its runtime where the
/// server's handler is made) and returns what it resolved to, or panics
/// after [`EVENTUALLY`] saying `what` did not finish. The probe also ends
/// (unfinished) when this function returns or unwinds: its server is
/// closed and its `stop` ends.
fn on_binding<T: Binding, O: Send + 'static>(what: &str, probe: Probe<T::Runtime, O>) -> O {
    let (done, result) = mpsc::channel();
    let (stop_tx, stop) = async_channel::bounded::<()>(1);
    let probe = Arc::new(Mutex::new(Some(probe)));
    let (handle, ()) = T::serve_on(move |builder: Builder<T::Runtime>| {
        let server = builder
            .bind("127.0.0.1:0")
            .expect("binding 127.0.0.1:0")
            .build()
            .expect("starting the server");
        let handle = server.handle();
        let served = server.serve_http_with(move |rt: &T::Runtime| {
            // On the first thread that makes a handler (one probe).
            if let Some(probe) = probe.lock().unwrap().take() {
                let (done, stop) = (done.clone(), stop.clone());
                let run = probe(rt.clone());
                rt.spawn(async move {
                    let stopped = async {
                        let _ = stop.recv().await;
                        None
                    };
                    if let Some(out) = async { Some(run.await) }.or(stopped).await {
                        let _ = done.send(out);
                    }
                });
            }
            crate::routes::router(rt, handle.clone())
        });
        (served, ())
    });
    let out = result.recv_timeout(EVENTUALLY);
    drop(stop_tx);
    handle.close();
    match out {
        Ok(out) => out,
        Err(_) => panic!("[{}] {what}: {NOT_FINISHED} {EVENTUALLY:?}", T::NAME),
    }
}

/// `Runtime::sleep_until(at)` completes once `Instant::now() >= at`, never
/// earlier (lameduck's deadlines are exact: a new connection's grace of 5 s
/// must not close it at 4.99 s), and it does complete — for instants already
/// past, now, and a little ahead.
pub fn sleep_until_is_never_early<T: Binding>() {
    const AHEAD_MS: [u64; 6] = [0, 1, 2, 7, 25, 120];
    let woken: Vec<(Duration, Instant, Instant)> = on_binding::<T, _>(
        "Runtime::sleep_until for instants past, now and ahead",
        Box::new(|rt: T::Runtime| {
            Box::pin(async move {
                let mut woken = Vec::new();
                // An instant already past completes at once.
                let past = Instant::now();
                rt.sleep_until(past).await;
                woken.push((Duration::ZERO, past, Instant::now()));
                for ms in AHEAD_MS {
                    let ahead = Duration::from_millis(ms);
                    let at = Instant::now() + ahead;
                    rt.sleep_until(at).await;
                    woken.push((ahead, at, Instant::now()));
                }
                woken
            })
        }),
    );
    for (ahead, at, woke) in woken {
        assert!(
            woke >= at,
            "[{}] Runtime::sleep_until fired {:?} early (asked for {ahead:?} ahead): \
             a binding's timer must complete only once Instant::now() >= at",
            T::NAME,
            at - woke
        );
    }
}

/// `Runtime::tcp_shutdown_write` sends a FIN at once — the client reads
/// the end of the stream while the server still holds the socket (the
/// first step of lameduck's gentle close) — and shuts the write half only:
/// what the client sends afterwards still reaches the server.
pub fn tcp_shutdown_write_sends_fin<T: Binding>() {
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let (shut_tx, shut) = mpsc::channel::<()>();
    let run = std::thread::spawn(move || {
        on_binding::<T, _>(
            "Runtime::accept_tcp, tcp_shutdown_write and a read after it",
            Box::new(move |rt: T::Runtime| {
                Box::pin(async move {
                    let std = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
                    let listener = rt.tcp_listener(std).expect("Runtime::tcp_listener");
                    let addr = T::Runtime::tcp_local_addr(&listener).expect("tcp_local_addr");
                    let _ = addr_tx.send(addr);
                    let mut stream = T::Runtime::accept_tcp(&listener)
                        .await
                        .expect("Runtime::accept_tcp");
                    T::Runtime::tcp_shutdown_write(&stream).expect("Runtime::tcp_shutdown_write");
                    let _ = shut_tx.send(());
                    let mut after = Vec::new();
                    let read = stream.read_to_end(&mut after).await;
                    read.map(|_| after).map_err(|e| e.to_string())
                })
            }),
        )
    });
    let addr = addr_rx
        .recv_timeout(EVENTUALLY)
        .unwrap_or_else(|_| panic!("[{}] the probe's listener never came up", T::NAME));
    let mut client = TcpStream::connect(addr).expect("connecting to the probe");
    wait_shut::<T>(&shut);
    client.set_read_timeout(Some(PROMPT)).unwrap();
    let mut buf = [0u8; 64];
    match client.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "[{}] unexpected bytes before the FIN: {:?}",
            T::NAME,
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!(
            "[{}] Runtime::tcp_shutdown_write sent no FIN: the client saw no end of stream \
             within {PROMPT:?} of it while the server held the socket ({e}); lameduck's gentle \
             close relies on it",
            T::NAME
        ),
    }
    client
        .write_all(b"after the FIN")
        .and_then(|()| client.shutdown(Shutdown::Write))
        .unwrap_or_else(|e| panic!("[{}] writing after the server's FIN: {e}", T::NAME));
    let after = run.join().expect("the probe's thread").unwrap_or_else(|e| {
        panic!(
            "[{}] reading after Runtime::tcp_shutdown_write failed: {e}",
            T::NAME
        )
    });
    assert_eq!(
        after,
        b"after the FIN",
        "[{}] Runtime::tcp_shutdown_write must shut the write half only: the server \
         no longer read what the client sent after the FIN",
        T::NAME
    );
}

/// Waits until the probe says it shut its write half down.
fn wait_shut<T: Binding>(shut: &mpsc::Receiver<()>) {
    shut.recv_timeout(EVENTUALLY).unwrap_or_else(|_| {
        panic!(
            "[{}] the probe did not accept the client and shut its write half down within \
             {EVENTUALLY:?}",
            T::NAME
        )
    });
}

/// A fresh socket path under the temporary directory.
fn socket_path(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "lameduck-testkit-{what}-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// `Runtime::unix_shutdown_write` sends the end of stream at once and shuts
/// the write half only, as [`tcp_shutdown_write_sends_fin`] for TCP.
pub fn unix_shutdown_write_sends_fin<T: Binding>() {
    let path = socket_path("fin");
    let std = UnixListener::bind(&path).expect("binding a unix socket");
    let (shut_tx, shut) = mpsc::channel::<()>();
    let run = std::thread::spawn(move || {
        on_binding::<T, _>(
            "Runtime::accept_unix, unix_shutdown_write and a read after it",
            Box::new(move |rt: T::Runtime| {
                Box::pin(async move {
                    let listener = rt.unix_listener(std).expect("Runtime::unix_listener");
                    let mut stream = T::Runtime::accept_unix(&listener)
                        .await
                        .expect("Runtime::accept_unix");
                    T::Runtime::unix_shutdown_write(&stream).expect("Runtime::unix_shutdown_write");
                    let _ = shut_tx.send(());
                    let mut after = Vec::new();
                    let read = stream.read_to_end(&mut after).await;
                    let _ = stream.close().await;
                    read.map(|_| after).map_err(|e| e.to_string())
                })
            }),
        )
    });
    let mut client = UnixStream::connect(&path).expect("connecting to the probe");
    let _ = std::fs::remove_file(&path);
    wait_shut::<T>(&shut);
    client.set_read_timeout(Some(PROMPT)).unwrap();
    let mut buf = [0u8; 64];
    match client.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "[{}] unexpected bytes before the end of stream: {:?}",
            T::NAME,
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!(
            "[{}] Runtime::unix_shutdown_write sent no end of stream: the client saw none \
             within {PROMPT:?} of it while the server held the socket ({e})",
            T::NAME
        ),
    }
    client
        .write_all(b"after the end")
        .and_then(|()| client.shutdown(Shutdown::Write))
        .unwrap_or_else(|e| {
            panic!(
                "[{}] writing after the server's end of stream: {e}",
                T::NAME
            )
        });
    let after = run.join().expect("the probe's thread").unwrap_or_else(|e| {
        panic!(
            "[{}] reading after Runtime::unix_shutdown_write failed: {e}",
            T::NAME
        )
    });
    assert_eq!(
        after,
        b"after the end",
        "[{}] Runtime::unix_shutdown_write must shut the write half only",
        T::NAME
    );
}

/// `Runtime::accept_tcp` is cancel-safe: a connection that arrives while an
/// accept is pending, which is then dropped (as lameduck drops it to stop
/// accepting), is not lost — the next accept returns it.
pub fn accept_tcp_is_cancel_safe<T: Binding>() {
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let (connected_tx, connected) = async_channel::bounded::<()>(1);
    let run = std::thread::spawn(move || {
        on_binding::<T, _>(
            "an accept after a dropped one",
            Box::new(move |rt: T::Runtime| {
                Box::pin(async move {
                    let std = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
                    let listener = rt.tcp_listener(std).expect("Runtime::tcp_listener");
                    let addr = T::Runtime::tcp_local_addr(&listener).expect("tcp_local_addr");
                    {
                        let mut pending = Box::pin(T::Runtime::accept_tcp(&listener));
                        if future::poll_once(pending.as_mut()).await.is_some() {
                            return Err("accept_tcp returned before any client connected".into());
                        }
                        let _ = addr_tx.send(addr);
                        let _ = connected.recv().await;
                        // Let a completion-based accept complete in the
                        // kernel before the drop (a correct binding passes
                        // however long this is).
                        rt.sleep_until(Instant::now() + Duration::from_millis(20))
                            .await;
                        // Polled no more: dropped pending.
                    }
                    T::Runtime::accept_tcp(&listener)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("the accept after a dropped one failed: {e}"))
                })
            }),
        )
    });
    let addr = addr_rx
        .recv_timeout(EVENTUALLY)
        .unwrap_or_else(|_| panic!("[{}] the probe's listener never came up", T::NAME));
    let _client = TcpStream::connect(addr).expect("connecting to the probe");
    connected_tx.send_blocking(()).unwrap();
    match run.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("[{}] {e}", T::NAME),
        Err(panic) if panic_message(&*panic).contains(NOT_FINISHED) => panic!(
            "[{}] Runtime::accept_tcp is not cancel-safe: a connection that arrived while an \
             accept was pending was lost when that accept was dropped (the next accept did not \
             return it within {EVENTUALLY:?})",
            T::NAME
        ),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// What [`on_binding`] says of a probe that did not finish.
const NOT_FINISHED: &str = "not finished within";

/// The message of a panic's payload (a `&str` or a `String`), or "".
#[must_use]
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("")
}
