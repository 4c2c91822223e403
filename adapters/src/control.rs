//! The per-connection control: how the driver tells a connection's task
//! what the core decided, without touching its socket.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use atomic_waker::AtomicWaker;
use event_listener::Event;

/// Finish the current response without keep-alive, then close.
pub(crate) const FINISH: u8 = 1;
/// Close now (the response, if any, is complete): a gentle close.
pub(crate) const CLOSE: u8 = 2;
/// Close now, by force (deadline, `close()`): drop the socket.
pub(crate) const ABORT: u8 = 4;
/// The drain has reached this connection (or the server closed it): its
/// [`Notice`](crate::Notice) fired.
pub(crate) const NOTIFIED: u8 = 8;
/// The driver counted this connection's gentle close in when it carried out
/// the core's `CloseConn` (the core counts the connection gone at once; the
/// count bridges the moment until its task drops the socket).
pub(crate) const CLOSE_COUNTED: u8 = 16;

/// Shared between the driver (which sets commands, under its lock) and the
/// connection's task (which reads them). Commands only accumulate.
#[derive(Debug, Default)]
pub(crate) struct Control {
    cmd: AtomicU8,
    /// The task reading the connection (the HTTP connection task, or a raw
    /// stream's reader).
    pub(crate) reader: AtomicWaker,
    /// A raw stream's writer, when it waits on its own.
    pub(crate) writer: AtomicWaker,
    /// Wakes [`Notice::notified`](crate::Notice::notified) waiters.
    pub(crate) notice: Event,
    /// Where the connection's own task is in the current request (HTTP/1.1
    /// tracking bits, `crate::http::http1`; HTTP/2's go-away bit,
    /// `crate::http::http2`). Only that task writes it.
    pub(crate) track: AtomicU8,
    /// The connection's lease (`lameduck_core::lease`), set at its accept:
    /// while the core lends it, request events go through it, not the
    /// driver's lock.
    pub(crate) lease: OnceLock<lameduck_core::lease::Lease>,
}

impl Control {
    pub(crate) fn cmd(&self) -> u8 {
        self.cmd.load(Ordering::Acquire)
    }

    fn set(&self, bits: u8) {
        self.cmd.fetch_or(bits, Ordering::AcqRel);
        self.reader.wake();
        self.writer.wake();
        if bits & (NOTIFIED | CLOSE) != 0 {
            self.notice.notify(usize::MAX);
        }
    }

    /// `Action::FinishAndClose`. (Not the notice: keep-alive goes off at a
    /// lame duck's start already, while the notice waits for the drain.)
    pub(crate) fn finish(&self) {
        self.set(FINISH);
    }

    /// `Action::CloseConn`: by force, or gently — `counted`: its gentle
    /// close is already counted in ([`CLOSE_COUNTED`]).
    pub(crate) fn close(&self, abort: bool, counted: bool) {
        self.set(match (abort, counted) {
            (true, _) => CLOSE | ABORT | NOTIFIED,
            (false, true) => CLOSE | CLOSE_COUNTED | NOTIFIED,
            (false, false) => CLOSE | NOTIFIED,
        });
    }

    /// `Action::NotifyActive`, `Action::NotifyHijacked`.
    pub(crate) fn notify(&self) {
        self.set(NOTIFIED);
    }
}
