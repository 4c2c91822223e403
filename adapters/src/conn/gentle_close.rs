//! Gentle closes: FIN first, then the peer's end awaited for a while, so
//! a reset never destroys a response the peer has not read yet — counted,
//! so that the done signal waits for them, and cut short at once when
//! the server is closed or its shutdown deadline passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use event_listener::Event;
use futures_lite::FutureExt;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::Socket;
use crate::runtime::Runtime;
use crate::sync::wait_until;

/// How long a gentle close waits for the peer's end of stream after
/// shutting down our write half, reading and discarding what arrives (Go's
/// `closeWriteAndWait`, whose delay is 500 ms). Closing a socket that still
/// has unread input sends a reset, which can destroy a response the peer has
/// not read yet; waiting a little for its FIN avoids that.
pub(crate) const GENTLE_CLOSE_WAIT: Duration = Duration::from_millis(500);

/// The gentle closes in progress, which the done signal waits for (so a
/// process exiting after it does not turn their sockets into resets), and
/// the switch that cuts them short: `close()`, a shutdown deadline, or the
/// bound on that wait.
#[derive(Debug, Default)]
pub(crate) struct GentleCloses {
    in_progress: AtomicUsize,
    cut: AtomicBool,
    /// Notified when one ends, and when they are cut.
    event: Event,
}

impl GentleCloses {
    /// Counts in a gentle close that the connection's task will carry out
    /// (it takes the count over, see `CLOSE_COUNTED`); `false` once cut.
    pub(crate) fn expect(&self) -> bool {
        if self.is_cut() {
            return false;
        }
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Counts a gentle close in; `None` once cut (close the socket now).
    pub(super) fn begin(self: &Arc<Self>) -> Option<GentleClose> {
        if self.is_cut() {
            return None;
        }
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        Some(GentleClose(self.clone()))
    }

    /// Ends every gentle close in progress at once, and any later one
    /// before it starts.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Resolves once no gentle close is in progress.
    pub(crate) async fn ended(&self) {
        // Every end notifies.
        wait_until(&self.event, || {
            self.in_progress.load(Ordering::Acquire) == 0
        })
        .await;
    }

    /// Resolves once the gentle closes are cut.
    pub(crate) async fn cut_notified(&self) {
        wait_until(&self.event, || self.is_cut()).await;
    }
}

/// One gentle close in progress; its end is counted when dropped.
pub(crate) struct GentleClose(pub(super) Arc<GentleCloses>);

/// A socket to close gently, with its place in the count.
pub(crate) struct ClosingSocket<R: Runtime> {
    pub(super) socket: Socket<R>,
    pub(super) closing: GentleClose,
    /// Written before the FIN (see [`ConnIo::set_farewell`](super::ConnIo::set_farewell)).
    pub(super) farewell: Vec<u8>,
}

impl<R: Runtime> ClosingSocket<R> {
    /// Closes the socket gently on `rt` (see [`close_gently`]); `closes`: the
    /// server's, which cut it short.
    pub(crate) fn spawn(self, rt: &R, closes: &Arc<GentleCloses>) {
        rt.spawn(close_gently(
            rt.clone(),
            closes.clone(),
            self.socket,
            self.closing,
            self.farewell,
        ));
    }
}

impl Drop for GentleClose {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
        self.0.event.notify(usize::MAX);
    }
}

/// A gentle close: the farewell bytes (a TLS `close_notify`), FIN, then
/// read and discard until the peer's FIN, at most [`GENTLE_CLOSE_WAIT`] in all, cut
/// short by [`GentleCloses::cut`].
async fn close_gently<R: Runtime>(
    rt: R,
    closes: Arc<GentleCloses>,
    mut socket: Socket<R>,
    closing: GentleClose,
    farewell: Vec<u8>,
) {
    let deadline = Instant::now() + GENTLE_CLOSE_WAIT;
    let drain = async {
        // A peer that does not read holds this until the bound below; an
        // error (a reset) leaves it at once.
        if !farewell.is_empty() {
            let _ = socket.write_all(&farewell).await;
            let _ = socket.flush().await;
        }
        // An error here (e.g. already shut down by the HTTP layer, or reset)
        // leaves reading, which ends at once in those cases.
        let _ = socket.shutdown_write().await;
        let mut scratch = [0u8; 1024];
        // Bounded by the timer below (and ends at end of stream or error).
        loop {
            match socket.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let timeout = rt.sleep_until(deadline);
    let cut = closes.cut_notified();
    drain.or(timeout).or(cut).await;
    // The socket closes before the end is counted.
    drop(socket);
    drop(closing);
}
