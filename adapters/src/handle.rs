//! The user-facing handle: shutdown, close, the done signal, queries.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lameduck_core::{Abandoned, Counts, Drained, Outcome, Phase};

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
pub struct Handle {
    driver: Arc<Driver>,
    addrs: Arc<[ListenAddr]>,
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        Handle {
            driver: self.driver.clone(),
            addrs: self.addrs.clone(),
        }
    }
}

impl Handle {
    pub(crate) fn new(driver: Arc<Driver>, addrs: Vec<ListenAddr>) -> Self {
        Handle {
            driver,
            addrs: addrs.into(),
        }
    }

    pub(crate) fn driver(&self) -> &Arc<Driver> {
        &self.driver
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
        self.driver.input(|core, now| core.shutdown(now, deadline));
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
        self.driver.input(|core, now| {
            let deadline = now.checked_add(timeout);
            core.shutdown(now, deadline);
        });
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
    /// assert_eq!(handle.drained().outcome().unwrap().completion, lameduck::core::Completion::Closed);
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.driver.input(|core, now| core.close(now));
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
        self.driver.drained().clone()
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
        self.driver.finished().await
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
        self.driver.counts()
    }

    /// Phase, counts, shutdown deadline and drain progress, read together.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use lameduck::core::Phase;
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// let snapshot = handle.snapshot();
    /// assert_eq!(snapshot.phase, Phase::Serving);
    /// assert!(snapshot.drain.is_none());
    /// # handle.close(); Ok(()) }
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> lameduck_core::Snapshot {
        self.driver.snapshot()
    }

    /// The server's phase, now ([`Phase::is_ready`] for readiness probes).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use lameduck::core::Phase;
    /// let handle = lameduck::Builder::new().bind("127.0.0.1:0")?
    ///     .serve_stream(|conn| async move { drop(conn) })?;
    /// assert_eq!(handle.phase(), Phase::Serving);
    /// handle.close();
    /// assert_eq!(handle.phase(), Phase::Closed);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.driver.phase()
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
