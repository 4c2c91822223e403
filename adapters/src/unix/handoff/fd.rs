//! Descriptors this process inherited by number — listening sockets
//! (`LISTEN_FDS`), a hand-off channel (`LAMEDUCK_READY_FD`), a
//! supervisor's link (`LAMEDUCK_SUPERVISOR_FD`) — turned into borrowed
//! and owned ones: the crate's only place where a raw descriptor number
//! becomes a [`BorrowedFd`] or an [`OwnedFd`].
//!
//! A number from the environment is only a claim: it may not be open, or
//! be another kind of file than announced, and owning it twice would close
//! it twice (the second time, maybe, a file opened at that number in the
//! meantime). So an [`Adoption`] — one per process ([`Adoption::claim`]) —
//! borrows a number only once it checked that it is open, and adopts each
//! number at most once.
//!
//! ```ignore
//! // Crate-internal: what `Inherited::from_env` does with fd 3.
//! let mut adoption = Adoption::claim().ok_or("adopted already")?;
//! let kind = adoption.inspect(3, |fd| rustix::fs::fstat(fd))??;
//! let owned: OwnedFd = adoption.adopt(3)?; // close-on-exec
//! assert!(adoption.adopt(3).is_err()); // never twice
//! ```

#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{FileType, OFlags};
use rustix::io::FdFlags;

/// Set once this process's [`Adoption`] was claimed.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The right to borrow and take ownership of the descriptors this process
/// inherited, by number: one per process, so that no number is owned by
/// two adoptions.
///
/// Its caller's promise (as for any `sd_listen_fds`): the numbers it
/// passes were handed to this process by its parent, and nothing else in
/// this process has taken them. Within that, it refuses a number that is
/// not open, and a number it adopted already.
#[derive(Debug)]
pub(crate) struct Adoption {
    /// The numbers adopted so far: owned elsewhere in this process now.
    adopted: Vec<RawFd>,
}

/// Why a descriptor number was not borrowed or adopted.
#[derive(Debug)]
pub(crate) enum AdoptError {
    /// No open descriptor has this number.
    NotOpen,
    /// This number was adopted already (named twice, say by `LISTEN_FDS`
    /// and `LAMEDUCK_READY_FD`): it is owned elsewhere in this process.
    AdoptedAlready,
    /// It could not be made close-on-exec (it is closed again).
    CloseOnExec(io::Error),
}

impl fmt::Display for AdoptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdoptError::NotOpen => f.write_str("not an open descriptor"),
            AdoptError::AdoptedAlready => f.write_str("adopted already, under another name"),
            AdoptError::CloseOnExec(e) => write!(f, "cannot be made close-on-exec: {e}"),
        }
    }
}

impl Adoption {
    /// This process's adoption, the first time; `None` after that (the
    /// descriptors are owned from the first claim on).
    pub(crate) fn claim() -> Option<Adoption> {
        (!CLAIMED.swap(true, Ordering::AcqRel)).then(|| Adoption {
            adopted: Vec::new(),
        })
    }

    /// An adoption for tests, which pass only numbers they released
    /// themselves (`IntoRawFd`): nothing else owns those.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Adoption {
        Adoption {
            adopted: Vec::new(),
        }
    }

    /// Whether `fd` may be borrowed or adopted: open, and not adopted
    /// already.
    fn available(&self, fd: RawFd) -> Result<(), AdoptError> {
        if self.adopted.contains(&fd) {
            return Err(AdoptError::AdoptedAlready);
        }
        if !is_open(fd) {
            return Err(AdoptError::NotOpen);
        }
        Ok(())
    }

    /// Lends the open descriptor `fd` to `look`, without taking it: to
    /// check what it is before adopting it.
    pub(crate) fn inspect<T>(
        &self,
        fd: RawFd,
        look: impl FnOnce(BorrowedFd<'_>) -> T,
    ) -> Result<T, AdoptError> {
        self.available(fd)?;
        // SAFETY: `fd` is open (`available`, just above), was passed to
        // this process and is owned by nothing in it (the promise of
        // `Adoption`'s caller, and not adopted here: `available`), so it
        // stays open while `look` runs — and `look` cannot keep it: the
        // borrow ends with this call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        Ok(look(borrowed))
    }

    /// Takes ownership of the open descriptor `fd`, once, and makes it
    /// close-on-exec: nothing inherited leaks into this process's own
    /// children.
    pub(crate) fn adopt(&mut self, fd: RawFd) -> Result<OwnedFd, AdoptError> {
        self.available(fd)?;
        self.adopted.push(fd);
        // SAFETY: `fd` is open (`available`, just above), was passed to
        // this process for it to own and is owned by nothing in it (the promise
        // of `Adoption`'s caller); this adoption, the process's only one,
        // takes each number once (recorded just above): no other
        // `OwnedFd` of this number exists, so it is closed once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC)
            .map_err(|e| AdoptError::CloseOnExec(e.into()))?;
        Ok(owned)
    }

    /// Adopts the descriptor whose number is `value` (a variable's: digits
    /// only, 3 or more) if it is open and `check` accepts it, given its
    /// file type. The error says what is wrong, in a few words.
    pub(crate) fn adopt_named(
        &mut self,
        value: &OsStr,
        check: impl FnOnce(BorrowedFd<'_>, FileType) -> Result<(), &'static str>,
    ) -> Result<(OwnedFd, FileType), &'static str> {
        let text = value.to_string_lossy();
        let fd: RawFd = text
            .parse()
            .ok()
            .filter(|fd| *fd >= 3 && text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or("not a descriptor number (3 or more)")?;
        let kind = self
            .inspect(fd, |borrowed| {
                let stat = rustix::fs::fstat(borrowed).map_err(|_| "cannot be examined")?;
                let kind = FileType::from_raw_mode(stat.st_mode);
                check(borrowed, kind)?;
                Ok(kind)
            })
            .map_err(|e| match e {
                AdoptError::AdoptedAlready => "adopted already, under another name",
                _ => "not an open descriptor",
            })??;
        let owned = self.adopt(fd).map_err(|e| match e {
            AdoptError::CloseOnExec(_) => "cannot be made close-on-exec",
            AdoptError::AdoptedAlready => "adopted already, under another name",
            AdoptError::NotOpen => "not an open descriptor",
        })?;
        Ok((owned, kind))
    }

    /// Adopts the descriptor whose number is `value` if it is open and
    /// that end of a pipe (see [`adopt_named`](Self::adopt_named)).
    pub(crate) fn adopt_pipe_end(
        &mut self,
        value: &OsStr,
        end: PipeEnd,
    ) -> Result<OwnedFd, &'static str> {
        self.adopt_named(value, |fd, kind| {
            if kind != FileType::Fifo {
                return Err("not a pipe");
            }
            check_pipe_end(fd, end)
        })
        .map(|(fd, _)| fd)
    }
}

/// Which end of a pipe a descriptor must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PipeEnd {
    Read,
    Write,
}

/// Whether `fd` (a pipe) is open for `end` only.
pub(crate) fn check_pipe_end(fd: BorrowedFd<'_>, end: PipeEnd) -> Result<(), &'static str> {
    let mode = rustix::fs::fcntl_getfl(fd).map_err(|_| "cannot be examined")?;
    let (wanted, wrong) = match end {
        PipeEnd::Write => (OFlags::WRONLY, "not the write end of a pipe"),
        PipeEnd::Read => (OFlags::RDONLY, "not the read end of a pipe"),
    };
    if mode & OFlags::RWMODE != wanted {
        return Err(wrong);
    }
    Ok(())
}

/// Whether `fd` is an open descriptor (without claiming it).
fn is_open(fd: RawFd) -> bool {
    // SAFETY: `fcntl(F_GETFD)` reads the descriptor's flags and nothing
    // else, whatever the number; for one that is not open it fails with
    // EBADF. (rustix's `fcntl_getfd` needs a `BorrowedFd`, which a number
    // not known to be open cannot be.)
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    /// A number that was open a moment ago and is closed now: far above
    /// the numbers this process uses (descriptors are allocated lowest
    /// first), so no other test thread opens it meanwhile.
    fn closed_number() -> RawFd {
        let file = std::fs::File::open("/dev/null").unwrap();
        let high = rustix::io::fcntl_dupfd_cloexec(&file, 900).unwrap();
        let fd = high.as_raw_fd();
        drop(high);
        assert!(!is_open(fd));
        fd
    }

    #[test]
    fn a_closed_descriptor_is_refused() {
        let mut adoption = Adoption::for_tests();
        let fd = closed_number();
        assert!(matches!(
            adoption.inspect(fd, |_| ()),
            Err(AdoptError::NotOpen)
        ));
        let e = adoption.adopt(fd).unwrap_err();
        assert!(matches!(e, AdoptError::NotOpen), "{e:?}");
        assert_eq!(e.to_string(), "not an open descriptor");
        let value = fd.to_string();
        assert_eq!(
            adoption
                .adopt_named(OsStr::new(&value), |_, _| Ok(()))
                .unwrap_err(),
            "not an open descriptor"
        );
        assert!(
            adoption.adopted.is_empty(),
            "a refused number is not recorded"
        );
    }

    #[test]
    fn a_descriptor_is_adopted_once_never_twice() {
        let mut adoption = Adoption::for_tests();
        let (read, write) = rustix::pipe::pipe().unwrap();
        let (r, w) = (read.into_raw_fd(), write.into_raw_fd());
        let kind = adoption
            .inspect(r, |fd| {
                FileType::from_raw_mode(rustix::fs::fstat(fd).unwrap().st_mode)
            })
            .unwrap();
        assert_eq!(kind, FileType::Fifo);
        let owned = adoption.adopt(r).unwrap();
        assert_eq!(owned.as_raw_fd(), r);
        let flags = rustix::io::fcntl_getfd(&owned).unwrap();
        assert!(
            flags.contains(FdFlags::CLOEXEC),
            "close-on-exec once adopted"
        );
        // Still open, yet never borrowed nor owned a second time.
        let e = adoption.adopt(r).unwrap_err();
        assert!(matches!(e, AdoptError::AdoptedAlready), "{e:?}");
        assert!(matches!(
            adoption.inspect(r, |_| ()),
            Err(AdoptError::AdoptedAlready)
        ));
        assert_eq!(
            adoption
                .adopt_pipe_end(OsStr::new(&r.to_string()), PipeEnd::Read)
                .unwrap_err(),
            "adopted already, under another name"
        );
        // The other end, named as a variable would.
        let write = adoption
            .adopt_pipe_end(OsStr::new(&w.to_string()), PipeEnd::Write)
            .unwrap();
        rustix::io::write(&write, b"x").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(rustix::io::read(&owned, &mut buf).unwrap(), 1);
        assert_eq!(adoption.adopted, vec![r, w]);
    }

    #[test]
    fn the_process_has_one_adoption() {
        // Whoever claimed it first (this test, or another in this
        // process), a second claim is refused.
        let _first = Adoption::claim();
        assert!(Adoption::claim().is_none());
    }

    #[test]
    fn values_that_are_not_numbers_or_not_the_right_end_are_refused() {
        let mut adoption = Adoption::for_tests();
        let (read, write) = rustix::pipe::pipe().unwrap();
        for value in ["x", "1", "+5", " 4", ""] {
            assert_eq!(
                adoption
                    .adopt_pipe_end(OsStr::new(value), PipeEnd::Read)
                    .unwrap_err(),
                "not a descriptor number (3 or more)",
                "{value:?}"
            );
        }
        let number = |fd: &OwnedFd| fd.as_raw_fd().to_string();
        assert_eq!(
            adoption
                .adopt_pipe_end(OsStr::new(&number(&write)), PipeEnd::Read)
                .unwrap_err(),
            "not the read end of a pipe"
        );
        assert_eq!(
            adoption
                .adopt_pipe_end(OsStr::new(&number(&read)), PipeEnd::Write)
                .unwrap_err(),
            "not the write end of a pipe"
        );
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            adoption
                .adopt_pipe_end(OsStr::new(&socket.as_raw_fd().to_string()), PipeEnd::Read)
                .unwrap_err(),
            "not a pipe"
        );
        assert!(adoption.adopted.is_empty(), "nothing refused is taken");
    }
}
