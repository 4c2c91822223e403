//! The demo's stderr: lifecycle lines written by a thread of their own, so
//! that logging never blocks serving.
//!
//! A pipe that nobody reads fills up (64 KiB on Linux), and a `write` to
//! it then blocks. Written on the serving threads, as lines once were, a
//! full pipe stopped accepting and serving, and a remote client can cause a
//! line per connection (a header timeout, say). Here:
//!
//! - [`line`] only queues: a bounded queue ([`CAPACITY`] lines) that a
//!   writer thread empties. When the queue is full the line is dropped and
//!   counted; once the writer has caught up (the queue is empty) it writes
//!   `serve: N log lines dropped`.
//! - Each line is one `write` (a pipe keeps writes of up to `PIPE_BUF`
//!   bytes whole), so the lines of several processes sharing the stream
//!   (generations, a restart's successor) do not interleave.
//! - [`flush`] at exit waits for the queued lines — but gives up on a
//!   `write` blocked for [`FLUSH_WAIT`]: a stderr that never drains does
//!   not keep the process from exiting (what is left unwritten is lost). A
//!   writer that is only slow to be scheduled (a loaded machine) is waited
//!   for, up to [`FLUSH_MAX`].
//!
//! Stderr stays blocking: its file description is shared with other
//! processes (the parent's terminal, the other generations), so making it
//! non-blocking would change their writes too.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd as _;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// At most this many lines wait for the writer; more are dropped (and
/// counted).
pub(crate) const CAPACITY: usize = 1024;

/// [`flush`] gives up on a `write` to stderr blocked this long (nobody
/// reads it).
pub(crate) const FLUSH_WAIT: Duration = Duration::from_millis(100);

/// [`flush`] waits at most this long in all: longer than [`FLUSH_WAIT`]
/// only while the writer is not blocked, just not yet run (a loaded
/// machine).
pub(crate) const FLUSH_MAX: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Queue {
    lines: VecDeque<String>,
    /// Lines dropped (the queue was full) not yet reported.
    dropped: u64,
    /// The writer is in a `write` (which may block).
    writing: bool,
    /// Lines written so far.
    written: u64,
}

impl Queue {
    fn is_idle(&self) -> bool {
        self.lines.is_empty() && self.dropped == 0 && !self.writing
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a line is queued, and when the writer goes idle.
    changed: Condvar,
}

impl Shared {
    /// The queue, even if a thread panicked holding it (it holds no
    /// invariant a panic could break).
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The queue and its writer thread, started by the first line; `None` if
/// the thread could not start (lines are then dropped).
static SHARED: OnceLock<Option<&'static Shared>> = OnceLock::new();

fn shared() -> Option<&'static Shared> {
    *SHARED.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("stderr".into())
            .spawn(move || writer(shared))
            .ok()
            .map(|_| shared)
    })
}

/// Queues `line` (a newline is added); drops it, counted, if the queue is
/// full. Never blocks on stderr.
pub(crate) fn line(mut line: String) {
    line.push('\n');
    let Some(shared) = shared() else { return };
    let mut queue = shared.lock();
    if queue.lines.len() >= CAPACITY {
        queue.dropped += 1;
    } else {
        queue.lines.push_back(line);
        shared.changed.notify_all();
    }
}

/// Waits until every queued line is written: for `main` to call just
/// before it returns. Gives up once a `write` has been blocked for
/// [`FLUSH_WAIT`] (stderr is not read), and after [`FLUSH_MAX`] in all;
/// a writer that is merely slow to be scheduled is waited for.
pub(crate) fn flush() {
    // No line yet: no writer to wait for (and none to start).
    let Some(Some(shared)) = SHARED.get() else {
        return;
    };
    let end = Instant::now() + FLUSH_MAX;
    // Since when the writer has been in a `write` that has not returned
    // (and how many lines were written then).
    let mut blocked: Option<(Instant, u64)> = None;
    let mut queue = shared.lock();
    // One wake-up per pass (at most every 10 ms); bounded by `end`.
    while !queue.is_idle() {
        let now = Instant::now();
        if now >= end {
            return;
        }
        if queue.writing {
            match blocked {
                Some((since, written)) if written == queue.written => {
                    if now >= since + FLUSH_WAIT {
                        return;
                    }
                }
                _ => blocked = Some((now, queue.written)),
            }
        } else {
            blocked = None;
        }
        let left = end
            .saturating_duration_since(now)
            .min(Duration::from_millis(10));
        queue = shared
            .changed
            .wait_timeout(queue, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The writer thread: one queued line per `write`, then the count of the
/// dropped ones once the queue is empty.
fn writer(shared: &'static Shared) {
    let mut queue = shared.lock();
    // One line per pass; runs for the process's life.
    loop {
        let next = if let Some(line) = queue.lines.pop_front() {
            line
        } else if queue.dropped > 0 {
            let n = std::mem::take(&mut queue.dropped);
            format!(
                "serve: {n} log line{} dropped (stderr was not keeping up)\n",
                if n == 1 { "" } else { "s" }
            )
        } else {
            // Idle: wake up a waiting `flush`, then wait for a line.
            shared.changed.notify_all();
            queue = shared
                .changed
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        queue.writing = true;
        drop(queue);
        // A line that cannot be written (stderr closed) is lost: there is
        // nowhere to report it.
        let _ = write_all(next.as_bytes());
        queue = shared.lock();
        queue.writing = false;
        queue.written += 1;
    }
}

/// `bytes` to stderr: one `write` unless the kernel takes less (only for
/// lines longer than `PIPE_BUF`), bypassing `std`'s stderr lock so that a
/// blocked write holds nothing anyone else waits for.
fn write_all(mut bytes: &[u8]) -> io::Result<()> {
    let stderr = io::stderr();
    // One `write` per pass; each takes at least a byte or fails.
    while !bytes.is_empty() {
        match rustix::io::write(stderr.as_fd(), bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
