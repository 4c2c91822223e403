//! Restart state: named bytes and descriptors that a process hands its
//! successor with the listening sockets, over the private hand-off channel
//! (the wire format and the commit/abort decision are
//! [`lameduck_core::handover`]'s).
//!
//! The old process offers a [`StateOffer`] — built when a restart starts,
//! by the callback given to [`LifecycleBuilder::restart_state`](crate::unix::LifecycleBuilder::restart_state)
//! — and the successor takes it with [`Inherited::take_state`](crate::unix::Inherited::take_state)
//! before it reports ready. The hand-over is transactional: the offer is
//! a copy (bytes copied, descriptors duplicated), so if the successor
//! refuses it, fails, is killed or is never ready, the old process's state
//! is untouched and it keeps serving with it; the copies are closed.

use std::fmt;
use std::io;
use std::ops::RangeInclusive;
use std::os::fd::{BorrowedFd, OwnedFd};

use lameduck_core::handover::{DecodeError, Frame, FrameError, Item, Limits};

use super::ready::Offer;

/// Why restart state could not be offered or taken.
///
/// ```
/// use lameduck::unix::StateError;
/// let e = StateError::Version { offered: 3, known: 1..=2 };
/// assert_eq!(e.to_string(), "restart state version 3 is not one of 1..=2");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StateError {
    /// The offer is not valid or too large ([`Limits`]).
    Frame(FrameError),
    /// What arrived is not a valid state (refused).
    Decode(DecodeError),
    /// The offer's version is not one this process knows (refused).
    Version {
        /// The offer's version.
        offered: u32,
        /// The versions this process takes.
        known: RangeInclusive<u32>,
    },
    /// Reading the state, duplicating a descriptor, or replying failed.
    Io(io::Error),
    /// [`Inherited::take_state`](crate::unix::Inherited::take_state) was
    /// already called.
    AlreadyTaken,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Frame(e) => write!(f, "restart state: {e}"),
            StateError::Decode(e) => write!(f, "restart state: {e}"),
            StateError::Version { offered, known } => write!(
                f,
                "restart state version {offered} is not one of {}..={}",
                known.start(),
                known.end()
            ),
            StateError::Io(e) => write!(f, "restart state: {e}"),
            StateError::AlreadyTaken => f.write_str("the restart state was already taken"),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Frame(e) => Some(e),
            StateError::Decode(e) => Some(e),
            StateError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StateError> for io::Error {
    fn from(e: StateError) -> io::Error {
        match e {
            StateError::Io(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// What a process hands its successor at a restart: an application
/// version and named items, each bytes and any descriptors (duplicated
/// when added: the offer is a copy). Within [`Limits::default`]: at most
/// 256 items, 1 MiB, 64 descriptors; names of 1 to 64 printable ASCII
/// characters.
///
/// ```
/// use std::os::fd::AsFd;
/// use lameduck::unix::StateOffer;
/// # fn main() -> Result<(), lameduck::unix::StateError> {
/// let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(lameduck::unix::StateError::Io)?;
/// let mut offer = StateOffer::new(1);
/// offer.u64("hits", 42)?.fd("udp", udp.as_fd())?.bytes("motd", "hello")?;
/// assert_eq!(offer.len(), 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StateOffer {
    frame: Frame,
    fds: Vec<OwnedFd>,
}

impl StateOffer {
    /// An empty offer of application format `version` (the successor
    /// checks it: [`Inherited::take_state`](crate::unix::Inherited::take_state)).
    ///
    /// ```
    /// assert!(lameduck::unix::StateOffer::new(1).is_empty());
    /// ```
    #[must_use]
    pub fn new(version: u32) -> StateOffer {
        StateOffer {
            frame: Frame::new(version),
            fds: Vec::new(),
        }
    }

    /// Adds an item of bytes.
    ///
    /// ```
    /// let mut offer = lameduck::unix::StateOffer::new(1);
    /// offer.bytes("config", b"a=1".to_vec()).unwrap();
    /// assert!(offer.bytes("config", "again").is_err(), "one item per name");
    /// ```
    pub fn bytes(&mut self, name: &str, data: impl Into<Vec<u8>>) -> Result<&mut Self, StateError> {
        self.item(name, data.into(), &[])
    }

    /// Adds a number (8 bytes, big-endian): the common case, read back by
    /// [`RestartState::u64`].
    ///
    /// ```
    /// let mut offer = lameduck::unix::StateOffer::new(1);
    /// offer.u64("hits", 7).unwrap();
    /// ```
    pub fn u64(&mut self, name: &str, n: u64) -> Result<&mut Self, StateError> {
        self.item(name, n.to_be_bytes().to_vec(), &[])
    }

    /// Adds a descriptor (a UDP socket, a pipe, any fd), duplicated now.
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let (read, _write) = std::io::pipe().unwrap();
    /// let mut offer = lameduck::unix::StateOffer::new(1);
    /// offer.fd("queue", read.as_fd()).unwrap();
    /// ```
    pub fn fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<&mut Self, StateError> {
        self.item(name, Vec::new(), &[fd])
    }

    /// Adds an item of bytes with descriptors attached (duplicated now).
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let (read, write) = std::io::pipe().unwrap();
    /// let mut offer = lameduck::unix::StateOffer::new(1);
    /// offer.item("pipe", b"r,w".to_vec(), &[read.as_fd(), write.as_fd()]).unwrap();
    /// ```
    pub fn item(
        &mut self,
        name: &str,
        data: Vec<u8>,
        fds: &[BorrowedFd<'_>],
    ) -> Result<&mut Self, StateError> {
        let count = u16::try_from(fds.len()).map_err(|_| {
            StateError::Frame(FrameError::TooManyFds {
                fds: fds.len() as u64,
                max: Limits::default().max_fds,
            })
        })?;
        let mut copies = Vec::with_capacity(fds.len());
        for fd in fds {
            copies.push(
                rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(|e| StateError::Io(e.into()))?,
            );
        }
        self.frame
            .push(name, data, count)
            .map_err(StateError::Frame)?;
        self.fds.extend(copies);
        Ok(self)
    }

    /// Items added.
    ///
    /// ```
    /// assert_eq!(lameduck::unix::StateOffer::new(1).len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.frame.items().len()
    }

    /// No item added.
    ///
    /// ```
    /// assert!(lameduck::unix::StateOffer::new(1).is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.frame.items().is_empty()
    }

    /// Encoded for the channel, if within the limits.
    pub(crate) fn into_offer(self) -> Result<Offer, StateError> {
        let bytes = self
            .frame
            .encode(&Limits::default())
            .map_err(StateError::Frame)?;
        Ok(Offer {
            bytes,
            fds: self.fds,
            items: self.frame.items().len(),
        })
    }
}

/// The state a predecessor handed over, taken by
/// [`Inherited::take_state`](crate::unix::Inherited::take_state).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut inherited = lameduck::unix::Inherited::from_env()?;
/// let hits = match inherited.take_state(1..=1)? {
///     Some(state) => state.u64("hits").unwrap_or(0),
///     None => 0, // first start: no predecessor
/// };
/// # let _ = hits; Ok(()) }
/// ```
#[derive(Debug)]
pub struct RestartState {
    version: u32,
    items: Vec<(Item, Vec<OwnedFd>)>,
}

impl RestartState {
    /// Its items, with the descriptors received distributed in order.
    pub(crate) fn new(frame: Frame, fds: Vec<OwnedFd>) -> RestartState {
        let version = frame.version();
        let mut fds = fds.into_iter();
        let items = frame
            .into_items()
            .into_iter()
            .map(|item| {
                let attached = fds.by_ref().take(usize::from(item.fds())).collect();
                (item, attached)
            })
            .collect();
        RestartState { version, items }
    }

    /// The offer's application version (one of those asked for).
    ///
    /// ```
    /// # fn demo(state: lameduck::unix::RestartState) {
    /// assert!(state.version() >= 1);
    /// # }
    /// ```
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The items' names, in order.
    ///
    /// ```
    /// # fn demo(state: lameduck::unix::RestartState) {
    /// for name in state.names() {
    ///     println!("{name}");
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.items.iter().map(|(item, _)| item.name()).collect()
    }

    /// The bytes of the item `name`.
    ///
    /// ```
    /// # fn demo(state: lameduck::unix::RestartState) {
    /// let motd = state.bytes("motd").unwrap_or(b"");
    /// # let _ = motd; }
    /// ```
    #[must_use]
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|(item, _)| item.name() == name)
            .map(|(item, _)| item.data())
    }

    /// The item `name` as a number ([`StateOffer::u64`]): `None` if there
    /// is none, or it is not 8 bytes.
    ///
    /// ```
    /// # fn demo(state: lameduck::unix::RestartState) {
    /// let hits = state.u64("hits").unwrap_or(0);
    /// # let _ = hits; }
    /// ```
    #[must_use]
    pub fn u64(&self, name: &str) -> Option<u64> {
        let bytes: [u8; 8] = self.bytes(name)?.try_into().ok()?;
        Some(u64::from_be_bytes(bytes))
    }

    /// Takes the descriptors of the item `name` (close-on-exec; empty if
    /// none, or taken already). Those not taken are closed with the state.
    ///
    /// ```
    /// # fn demo(mut state: lameduck::unix::RestartState) {
    /// let fds = state.take_fds("pipe");
    /// # let _ = fds; }
    /// ```
    pub fn take_fds(&mut self, name: &str) -> Vec<OwnedFd> {
        self.items
            .iter_mut()
            .find(|(item, _)| item.name() == name)
            .map(|(_, fds)| std::mem::take(fds))
            .unwrap_or_default()
    }

    /// Takes the first descriptor of the item `name`.
    ///
    /// ```
    /// # fn demo(mut state: lameduck::unix::RestartState) {
    /// if let Some(fd) = state.take_fd("udp") {
    ///     let udp = std::net::UdpSocket::from(fd);
    /// #   let _ = udp;
    /// }
    /// # }
    /// ```
    pub fn take_fd(&mut self, name: &str) -> Option<OwnedFd> {
        self.take_fds(name).into_iter().next()
    }
}
