//! A connection's drain notice, as handlers, hijacked connections and raw
//! streams receive it.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::FutureExt;

use crate::control::{CLOSE, Control, NOTIFIED};

/// A connection's drain notice: it fires when the drain reaches the
/// connection — the drain began while it served a request (or was
/// hijacked), or a request started on it since — or when the server closes
/// it, and stays fired. A lame-duck delay, or a restart's linger, comes
/// before the drain: the notice waits for its end.
///
/// Every HTTP request served by lameduck carries its connection's notice
/// in its extensions (`req.extensions().get::<Notice>()`), for a handler
/// whose response lives long (server-sent events, a long poll: see
/// [`EndAtDrain`](crate::http::EndAtDrain)); a [hijacked](crate::http::Hijacked)
/// connection and a [raw stream](crate::RawConn) hand it out too.
///
/// ```
/// # #[cfg(feature = "smol")]
/// # fn handler(conn: lameduck::RawConn<lameduck::runtime::SmolLocal>) {
/// let notice = conn.notice();
/// if !notice.is_notified() {
///     // ... serve; elsewhere: `notice.notified().await` ...
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Notice {
    pub(crate) control: Arc<Control>,
}

impl Notice {
    /// Whether the drain has reached this connection (or the server closed
    /// it). Never blocks.
    #[must_use]
    pub fn is_notified(&self) -> bool {
        self.control.cmd() & (NOTIFIED | CLOSE) != 0
    }

    /// Resolves once the drain reaches this connection (at once if it has).
    pub async fn notified(&self) {
        let mut wait = None;
        std::future::poll_fn(|cx| self.poll_notified(&mut wait, cx)).await;
    }

    /// [`notified`](Self::notified) as a poll: `wait` keeps the listener
    /// between polls (start with `None`).
    pub(crate) fn poll_notified(
        &self,
        wait: &mut Option<event_listener::EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        // A listener is registered before the check that may return
        // `Pending`, and the flag never clears: no notice is missed. The
        // event is notified only when the flag is set, so a woken listener
        // finds it set at the next pass.
        loop {
            if self.is_notified() {
                *wait = None;
                return Poll::Ready(());
            }
            match wait {
                None => *wait = Some(self.control.notice.listen()),
                Some(listener) => {
                    if listener.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *wait = None;
                }
            }
        }
    }
}

impl fmt::Debug for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notice")
            .field("notified", &self.is_notified())
            .finish()
    }
}
