//! The user-facing handle: shutdown, close, the done signal, queries.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lameduck_core::{Abandoned, Counts, Drained, Outcome, Phase, Snapshot};

use crate::driver::Driver;
use crate::listener::ListenAddr;

/// Controls a running server. Cheap to clone; every method may be called
/// from any thread, any executor. The server runs until it is shut down or
/// closed — dropping handles does not stop it.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::time::Duration;
///
/// let handle = lameduck::Builder::new()
///     .bind("127.0.0.1:0")?
///     .serve_stream(|conn| async move { drop(conn) })?;
/// assert!(handle.phase().is_ready());
/// handle.shutdown_within(Duration::from_secs(30));
/// let outcome = smol::block_on(handle.drained().wait()).unwrap();
/// assert!(outcome.is_graceful());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Handle {
    /// One driver per executor thread the server runs on (one, unless it
    /// runs on several threads): every command reaches each.
    members: Arc<[Arc<Driver>]>,
    /// The server's done signal: its member's, or, with several, one that
    /// completes when all of theirs have.
    drained: Drained,
    addrs: Arc<[ListenAddr]>,
    /// Where the next handed-in connection goes (several members).
    next: Arc<AtomicUsize>,
}

impl Handle {
    /// The handle of a server made of `members` (one driver per thread;
    /// at least one).
    pub(crate) fn new(members: Vec<Arc<Driver>>, addrs: Vec<ListenAddr>) -> Self {
        let drained = match members.as_slice() {
            [one] => one.drained().clone(),
            several => join_done(several),
        };
        Handle {
            members: members.into(),
            drained,
            addrs: addrs.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The server's drivers, one per executor thread; the first is the
    /// one that runs the hooks and hands the listeners over.
    pub(crate) fn members(&self) -> &[Arc<Driver>] {
        &self.members
    }

    /// The first driver (hand-offs, handed-in connections by default).
    pub(crate) fn driver(&self) -> &Arc<Driver> {
        &self.members[0]
    }

    /// The driver for the next handed-in connection (round robin).
    pub(crate) fn next_member(&self) -> &Arc<Driver> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.members.len();
        &self.members[i]
    }

    /// Begins a graceful shutdown (Go's `Server.Shutdown`): after the
    /// lame-duck delay if configured, listeners close, idle connections
    /// close, in-flight requests finish with `Connection: close`, new
    /// connections get their grace; at `deadline` whatever remains is closed
    /// by force. `None`: no deadline. Returns at once; await
    /// [`drained`](Self::drained) for the end.
    ///
    /// Calling it again is harmless: it can only bring the deadline earlier.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::{Duration, Instant};
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// handle.shutdown(Some(Instant::now() + Duration::from_secs(10)));
    /// handle.shutdown(None); // harmless
    /// assert!(handle.phase().is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub fn shutdown(&self, deadline: Option<Instant>) {
        for driver in self.members.iter() {
            driver.input(|core, now| core.shutdown(now, deadline));
        }
    }

    /// [`shutdown`](Self::shutdown) with a deadline `timeout` from now.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// handle.shutdown_within(std::time::Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn shutdown_within(&self, timeout: Duration) {
        // One deadline for every thread's part.
        self.shutdown(Instant::now().checked_add(timeout));
    }

    /// Closes everything now (Go's `Server.Close`): listeners and every
    /// tracked connection, whatever its state; hijacked connections are
    /// notified; hooks are cut off.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// handle.close();
    /// assert_eq!(handle.drained().outcome().unwrap().completion, lameduck::Completion::Closed);
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        for driver in self.members.iter() {
            driver.input(|core, now| core.close(now));
        }
    }

    /// The done signal: await [`Drained::wait`] for the [`Outcome`](lameduck_core::Outcome),
    /// or ask [`Drained::is_done`].
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// assert!(!handle.drained().is_done());
    /// # handle.close(); Ok(()) }
    /// ```
    ///
    /// The drain is complete once no connection is tracked (Go's
    /// `Shutdown` returning); a process should exit after
    /// [`finished`](Self::finished), which also waits for the gentle
    /// closes still in progress.
    #[must_use]
    pub fn drained(&self) -> Drained {
        self.drained.clone()
    }

    /// Resolves once the server is done ([`drained`](Self::drained)) **and**
    /// no gentle close is in progress: the moment a process may exit
    /// without turning a connection into a reset.
    ///
    /// A connection the server ends gracefully (after its last response,
    /// or idle at the drain) is closed gently: its write side shut, then
    /// input read and discarded until the peer's end of stream, for at
    /// most 500 ms. A process that exits meanwhile makes the kernel answer
    /// the peer's late input with a reset, which also destroys response
    /// bytes the peer has not read yet. Clients that close when they see
    /// the end of stream (every HTTP client does) end these at once, so
    /// this adds about one round trip; a client that keeps its end open
    /// holds it for at most 500 ms. Everything is cut at the shutdown
    /// deadline, and at once after a forced end (`close`, or the deadline).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// handle.shutdown(None);
    /// let outcome = smol::block_on(handle.finished()).expect("the driver ran to its end");
    /// assert!(outcome.is_graceful());
    /// # Ok(()) }
    /// ```
    pub async fn finished(&self) -> Result<Outcome, Abandoned> {
        for driver in self.members.iter() {
            driver.finished().await?;
        }
        self.drained.wait().await
    }

    /// Connections by state, now.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// assert_eq!(handle.counts().tracked(), 0);
    /// # handle.close(); Ok(()) }
    /// ```
    #[must_use]
    pub fn counts(&self) -> Counts {
        self.snapshot().counts
    }

    /// Phase, counts, shutdown deadline and drain progress, read together.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use lameduck::Phase;
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// let snapshot = handle.snapshot();
    /// assert_eq!(snapshot.phase, Phase::Serving);
    /// assert!(snapshot.drain.is_none());
    /// # handle.close(); Ok(()) }
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshots = self.members.iter().map(|driver| driver.snapshot());
        let first = snapshots.next().expect("a server has at least one member");
        snapshots.fold(first, Snapshot::merge)
    }

    /// The server's phase, now ([`Phase::is_ready`] for readiness probes).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use lameduck::Phase;
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// assert_eq!(handle.phase(), Phase::Serving);
    /// handle.close();
    /// assert_eq!(handle.phase(), Phase::Closed);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.snapshot().phase
    }

    /// The addresses the server listens on, in the order they were added.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// let lameduck::ListenAddr::Tcp(addr) = &handle.local_addrs()[0] else { unreachable!() };
    /// assert_ne!(addr.port(), 0);
    /// # handle.close(); Ok(()) }
    /// ```
    #[must_use]
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.addrs
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("addrs", &self.addrs)
            .field("phase", &self.phase())
            .field("counts", &self.counts())
            .finish()
    }
}

/// A done signal that completes once every member's has, with their
/// outcomes merged ([`Outcome::merge`]).
fn join_done(members: &[Arc<Driver>]) -> Drained {
    let (done, drained) = lameduck_core::done_signal();
    let join = Arc::new(std::sync::Mutex::new(Join {
        left: members.len(),
        reported: vec![false; members.len()],
        outcome: None,
        done: Some(done),
    }));
    for (i, driver) in members.iter().enumerate() {
        let join = join.clone();
        driver.on_done(Box::new(move |outcome| {
            let mut join = crate::sync::lock(&join);
            if std::mem::replace(&mut join.reported[i], true) {
                return; // reported twice (the hook and the check): once counts
            }
            join.outcome = Some(match join.outcome {
                Some(so_far) => so_far.merge(outcome),
                None => outcome,
            });
            join.left -= 1;
            if join.left == 0
                && let (Some(done), Some(outcome)) = (join.done.take(), join.outcome)
            {
                done.complete(outcome);
            }
        }));
    }
    drained
}

/// The members' outcomes so far.
struct Join {
    left: usize,
    reported: Vec<bool>,
    outcome: Option<Outcome>,
    done: Option<lameduck_core::DoneSender>,
}
