//! Adopting inherited listening sockets (systemd socket activation, or a
//! predecessor's hand-off: the same format), strictly validated: the
//! sockets, the readiness channel, a supervisor's link and the socket
//! files handed over ([`Inherited`]).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let inherited = lameduck::unix::Inherited::from_env()?;
//! println!("inherited: {:?}", inherited.names());
//! # Ok(()) }
//! ```

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use lameduck_core::activation::{Activation, InheritedFd, ListenEnv};
use lameduck_core::handover::Reply;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketType};

use super::error::InheritError;
use super::fd::{AdoptError, Adoption};
use super::inherited_listener::{InheritedListener, Socket};
use super::link::Link;
use super::ready::ReadyChannel;
use super::state::{RestartState, StateError};
use super::{OWNED_FDS_VAR, READY_FD_VAR, SUPERVISOR_FD_VAR, VARS};

/// The sockets (and readiness channel, and supervisor link) this process
/// inherited, adopted by [`Inherited::from_env`]. Hand them to the
/// [`Builder`](crate::Builder) by name
/// ([`Builder::inherit_or_bind`](crate::Builder::inherit_or_bind)) or all
/// at once ([`Builder::inherit_rest`](crate::Builder::inherit_rest)), and
/// the rest to
/// [`LifecycleBuilder::inherited`](crate::unix::LifecycleBuilder::inherited). Sockets never
/// taken are closed when it is dropped.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Started by hand: nothing inherited.
/// let inherited = lameduck::unix::Inherited::from_env()?;
/// assert!(inherited.is_empty() || std::env::var_os("LISTEN_FDS").is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct Inherited {
    listeners: Vec<Option<InheritedListener>>,
    pub(crate) ready: Option<ReadyChannel>,
    pub(crate) link: Option<Link>,
    /// The socket files a predecessor handed over (`LAMEDUCK_OWNED_FDS`).
    pub(crate) owned_files: Vec<OwnedFile>,
    env_cleared: bool,
    /// `LISTEN_PID` and this process's pid, when the variables were for
    /// another process (ignored; warned about once the environment is
    /// cleared).
    not_for_us: Option<(u32, u32)>,
    /// [`take_state`](Self::take_state) was called.
    state_taken: bool,
}

/// An inherited Unix socket whose file this process takes over from its
/// predecessor: removed when this process finally stops serving it.
#[derive(Debug)]
pub(crate) struct OwnedFile {
    /// The socket's identity (device and inode of the descriptor), to find
    /// it among the server's listeners whatever descriptor it is at.
    pub(crate) socket: (u64, u64),
    /// Its file.
    pub(crate) path: PathBuf,
}

/// A socket's identity: device and inode of its descriptor.
pub(crate) fn socket_identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let stat = rustix::fs::fstat(fd)?;
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    Ok((stat.st_dev as u64, stat.st_ino as u64))
}

impl Inherited {
    /// Adopts what this process inherited: the sockets named by
    /// `LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES` (each checked: open, a
    /// socket, a stream, listening, IPv4/IPv6/Unix; then made close-on-exec
    /// and non-blocking), a predecessor's (or supervisor's) readiness
    /// channel (`LAMEDUCK_READY_FD`), and a supervisor's link
    /// (`LAMEDUCK_SUPERVISOR_FD`, see [`Supervisor`](crate::unix::Supervisor)),
    /// and which inherited Unix sockets' files a restarting predecessor
    /// hands over (`LAMEDUCK_OWNED_FDS`; all of them in
    /// [`VARS`](super::VARS)).
    /// Nothing inherited is not an error, and neither are variables meant
    /// for another process: a `LISTEN_PID` that is not this process's pid
    /// (the variables leaked from a parent, say) means no socket is
    /// inherited — `LISTEN_FDS` and `LISTEN_FDNAMES` are ignored and no
    /// descriptor is touched, as systemd's `sd_listen_fds` does — and a
    /// warning naming both pids is logged (`log` target `lameduck`). Only
    /// malformed variables are errors.
    ///
    /// The variables are then removed (ignored ones too) from the environment, so no child
    /// inherits them — when this process is still single-threaded (as
    /// checked in `/proc/self/task`), because changing the environment
    /// while another thread may read it is undefined behaviour. So call it
    /// first thing in `main`, before any runtime starts threads;
    /// [`env_cleared`](Self::env_cleared) says whether it could. (Left in
    /// place they are inert: `LISTEN_PID` names this process only, and
    /// lameduck builds a successor's environment without them.)
    ///
    /// Call it once: the descriptors are owned from then on, and a second
    /// call is [`InheritError::AlreadyAdopted`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let inherited = lameduck::unix::Inherited::from_env()?;
    /// println!("{} inherited sockets", inherited.len());
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Inherited, InheritError> {
        let Some(mut adoption) = Adoption::claim() else {
            return Err(InheritError::AlreadyAdopted);
        };
        let env = ListenEnv::from_process();
        let ready_var = std::env::var_os(READY_FD_VAR);
        let link_var = std::env::var_os(SUPERVISOR_FD_VAR);
        let owned_var = std::env::var_os(OWNED_FDS_VAR);
        let result = Self::adopt(
            &mut adoption,
            &env,
            ready_var.as_deref(),
            link_var.as_deref(),
            owned_var.as_deref(),
        );
        // Whatever the result, so that no child sees the variables.
        let env_cleared = clear_env();
        let mut inherited = result?;
        inherited.env_cleared = env_cleared;
        // Only now: a logger may start threads, and the environment can be
        // changed only while this process has one.
        if let Some((listen_pid, own_pid)) = inherited.not_for_us {
            log::warn!(
                target: "lameduck",
                "LISTEN_PID={listen_pid} names another process (this is pid {own_pid}): \
                 LISTEN_FDS and LISTEN_FDNAMES ignored, no inherited sockets"
            );
        }
        Ok(inherited)
    }

    fn adopt(
        adoption: &mut Adoption,
        env: &ListenEnv,
        ready_var: Option<&std::ffi::OsStr>,
        link_var: Option<&std::ffi::OsStr>,
        owned_var: Option<&std::ffi::OsStr>,
    ) -> Result<Inherited, InheritError> {
        let activation = env.parse(std::process::id())?;
        let not_for_us = match activation {
            Activation::NotForUs {
                listen_pid,
                own_pid,
            } => Some((listen_pid, own_pid)),
            _ => None,
        };
        let fds = activation.into_sockets();
        // Check every descriptor before owning any: on an error nothing is
        // closed behind the caller's back.
        let kinds = fds
            .iter()
            .map(|fd| check(adoption, fd))
            .collect::<Result<Vec<_>, _>>()?;
        let owned_files = match owned_var {
            Some(value) => owned_files(
                adoption,
                value,
                &fds,
                &kinds,
                ready_var.is_some(),
                link_var.is_some(),
            )?,
            None => Vec::new(),
        };
        let ready = adopt_var(
            ready_var,
            |value| ReadyChannel::adopt(value, adoption),
            |value, reason| InheritError::ReadyFd { value, reason },
        )?;
        let link = adopt_var(
            link_var,
            |value| Link::adopt(value, adoption),
            |value, reason| InheritError::SupervisorFd { value, reason },
        )?;
        let listeners = fds
            .into_iter()
            .zip(kinds)
            .map(|(inherited, family)| own(adoption, inherited, family).map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Inherited {
            listeners,
            ready,
            link,
            owned_files,
            env_cleared: false,
            not_for_us,
            state_taken: false,
        })
    }

    /// Whether the variables were removed from the environment (see
    /// [`from_env`](Self::from_env)).
    ///
    /// ```
    /// # let inherited = lameduck::unix::Inherited::from_env().unwrap();
    /// if !inherited.env_cleared() {
    ///     eprintln!("LISTEN_* left in the environment: threads were running");
    /// }
    /// ```
    #[must_use]
    pub fn env_cleared(&self) -> bool {
        self.env_cleared
    }

    /// How many inherited sockets are left to take.
    ///
    /// ```
    /// let inherited = lameduck::unix::Inherited::default();
    /// assert_eq!(inherited.len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.listeners.iter().flatten().count()
    }

    /// Whether no inherited socket is left to take.
    ///
    /// ```
    /// assert!(lameduck::unix::Inherited::default().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a predecessor is waiting for this process to report ready
    /// (it was started by a restart).
    ///
    /// ```
    /// assert!(!lameduck::unix::Inherited::default().is_successor());
    /// ```
    #[must_use]
    pub fn is_successor(&self) -> bool {
        self.ready.is_some()
    }

    /// Takes the restart state the predecessor offered (see
    /// [`StateOffer`](crate::unix::StateOffer)), before this process reports
    /// ready — blocking until all of it arrived. `versions`: the
    /// application versions this process understands; another is refused
    /// ([`StateError::Version`]), as is anything that is not a valid
    /// state, which makes the predecessor roll the restart back (it kills
    /// this process and keeps serving with its own state): exit then.
    ///
    /// `None`: no predecessor (a first start), a predecessor that offered
    /// nothing, or one of an earlier lameduck (a readiness pipe). A
    /// predecessor that offered items rolls back if this process reports
    /// ready without taking them. Call it before
    /// [`LifecycleBuilder::inherited`](crate::unix::LifecycleBuilder::inherited), once.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inherited = lameduck::unix::Inherited::from_env()?;
    /// if let Some(mut state) = inherited.take_state(1..=2)? {
    ///     let hits = state.u64("hits");
    ///     let udp = state.take_fd("udp").map(std::net::UdpSocket::from);
    /// #   let _ = (hits, udp);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn take_state(
        &mut self,
        versions: std::ops::RangeInclusive<u32>,
    ) -> Result<Option<RestartState>, StateError> {
        let Some(channel) = self.ready.as_mut() else {
            return Ok(None);
        };
        if std::mem::replace(&mut self.state_taken, true) {
            return Err(StateError::AlreadyTaken);
        }
        let received = channel
            .receive(lameduck_core::handover::Limits::default())
            .map_err(StateError::Io)?;
        let (frame, fds) = match received {
            None => return Ok(None),
            Some(Ok(received)) => received,
            Some(Err(e)) => {
                let e = StateError::Decode(e);
                channel
                    .reply(&Reply::Refused(e.to_string()))
                    .map_err(StateError::Io)?;
                return Err(e);
            }
        };
        if frame.items().is_empty() {
            return Ok(None);
        }
        let reply = lameduck_core::handover::accept_version(frame.version(), versions.clone());
        channel.reply(&reply).map_err(StateError::Io)?;
        if reply != Reply::Taken {
            return Err(StateError::Version {
                offered: frame.version(),
                known: versions,
            });
        }
        Ok(Some(RestartState::new(frame, fds)))
    }

    /// Whether this process is a generation run by a
    /// [`Supervisor`](crate::unix::Supervisor): it reports ready to the
    /// supervisor, hands off when told to, and leaves restarts, systemd and
    /// the pid file to it (see [`LifecycleBuilder::inherited`](crate::unix::LifecycleBuilder::inherited)).
    ///
    /// ```
    /// assert!(!lameduck::unix::Inherited::default().is_supervised());
    /// ```
    #[must_use]
    pub fn is_supervised(&self) -> bool {
        self.link.is_some()
    }

    /// The names of the sockets left, in descriptor order.
    ///
    /// ```
    /// assert!(lameduck::unix::Inherited::default().names().is_empty());
    /// ```
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.listeners.iter().flatten().map(|l| l.name()).collect()
    }

    /// Takes the first socket left with this name.
    ///
    /// ```
    /// let mut inherited = lameduck::unix::Inherited::default();
    /// assert!(inherited.take("http").is_none());
    /// ```
    pub fn take(&mut self, name: &str) -> Option<InheritedListener> {
        self.listeners
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|l| l.name == name))
            .and_then(Option::take)
    }

    /// Takes every socket left, in descriptor order.
    ///
    /// ```
    /// let mut inherited = lameduck::unix::Inherited::default();
    /// assert!(inherited.take_all().is_empty());
    /// ```
    pub fn take_all(&mut self) -> Vec<InheritedListener> {
        self.listeners.iter_mut().filter_map(Option::take).collect()
    }
}

/// What the variable whose value is `var` names, adopted with `adopt`
/// (nothing if it is unset); `error` says which variable was wrong, given
/// its value and the reason.
fn adopt_var<T>(
    var: Option<&std::ffi::OsStr>,
    adopt: impl FnOnce(&std::ffi::OsStr) -> Result<T, &'static str>,
    error: impl FnOnce(String, &'static str) -> InheritError,
) -> Result<Option<T>, InheritError> {
    let Some(value) = var else {
        return Ok(None);
    };
    adopt(value)
        .map(Some)
        .map_err(|reason| error(value.to_string_lossy().into_owned(), reason))
}

/// The files named by `LAMEDUCK_OWNED_FDS=value`: `:`-separated
/// descriptor numbers, each an inherited (and checked) Unix socket bound
/// to a path, none twice; only in a restart's successor (`ready`), never
/// in a supervised generation (`link`).
fn owned_files(
    adoption: &Adoption,
    value: &std::ffi::OsStr,
    fds: &[InheritedFd],
    kinds: &[Family],
    ready: bool,
    link: bool,
) -> Result<Vec<OwnedFile>, InheritError> {
    let error = |reason: String| InheritError::OwnedFds {
        value: value.to_string_lossy().into_owned(),
        reason,
    };
    if link {
        return Err(error(
            "a supervised generation takes no socket file over (its supervisor owns them)".into(),
        ));
    }
    if !ready {
        return Err(error(format!(
            "set without {READY_FD_VAR}: only a restart's successor takes socket files over"
        )));
    }
    let Some(text) = value.to_str() else {
        return Err(error("not UTF-8".into()));
    };
    if text.is_empty() {
        return Err(error("empty".into()));
    }
    let mut owned: Vec<OwnedFile> = Vec::new();
    let mut seen: Vec<RawFd> = Vec::new();
    for item in text.split(':') {
        // Digits only: no sign, no space, no empty item.
        let fd = if !item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()) {
            item.parse::<RawFd>().ok()
        } else {
            None
        };
        let Some(fd) = fd else {
            return Err(error(format!("{item:?} is not a descriptor number")));
        };
        let Some(i) = fds.iter().position(|f| f.fd == fd) else {
            return Err(error(format!("fd {fd} is not an inherited socket")));
        };
        if seen.contains(&fd) {
            return Err(error(format!("fd {fd} is named twice")));
        }
        seen.push(fd);
        let name = &fds[i].name;
        if !matches!(kinds.get(i), Some(Family::Unix)) {
            return Err(error(format!("fd {fd} ({name}) is not a Unix socket")));
        }
        let io_error = |error: io::Error| InheritError::Io { fd, error };
        let (path, socket) = adoption
            .inspect(fd, |borrowed| {
                let addr = rustix::net::getsockname(borrowed)?;
                let path = rustix::net::SocketAddrUnix::try_from(addr)
                    .ok()
                    .and_then(|unix| {
                        unix.path_bytes()
                            .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
                    });
                Ok((path, socket_identity(borrowed)?))
            })
            .map_err(|e| refused(e, fd, name))?
            .map_err(io_error)?;
        let Some(path) = path else {
            return Err(error(format!("fd {fd} ({name}) is not bound to a path")));
        };
        owned.push(OwnedFile { socket, path });
    }
    Ok(owned)
}

/// Removes the variables if no other thread can be reading the
/// environment; says whether it did.
#[allow(unsafe_code)] // `remove_var`: this process's one thread only
fn clear_env() -> bool {
    if !VARS.iter().any(|k| std::env::var_os(k).is_some()) {
        return true;
    }
    if !single_threaded() {
        return false;
    }
    for key in VARS {
        // SAFETY: this process has one thread (checked just above), this
        // one, so nothing reads or writes the environment concurrently; a
        // thread started later sees the result.
        unsafe { std::env::remove_var(key) };
    }
    true
}

/// Whether this process has exactly one thread (Linux: `/proc/self/task`).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.take(2).count() == 1)
}

#[derive(Clone, Copy, Debug)]
enum Family {
    Inet,
    Unix,
}

/// Why `adoption` refused the inherited descriptor `fd`, named `name`.
fn refused(e: AdoptError, fd: RawFd, name: &str) -> InheritError {
    let name = name.to_owned();
    match e {
        AdoptError::NotOpen => InheritError::NotOpen { fd, name },
        AdoptError::AdoptedAlready => InheritError::NamedTwice { fd, name },
        AdoptError::CloseOnExec(error) => InheritError::Io { fd, error },
    }
}

/// Checks that an inherited descriptor is a listening stream socket.
fn check(adoption: &Adoption, inherited: &InheritedFd) -> Result<Family, InheritError> {
    let (fd, name) = (inherited.fd, &inherited.name);
    adoption
        .inspect(fd, |borrowed| check_socket(borrowed, fd, name))
        .map_err(|e| refused(e, fd, name))?
}

/// Checks that `borrowed` (inherited `fd`, named `name`) is a listening
/// stream socket.
fn check_socket(borrowed: BorrowedFd<'_>, fd: RawFd, name: &str) -> Result<Family, InheritError> {
    let name = name.to_owned();
    let io_error = |e: Errno| InheritError::Io {
        fd,
        error: e.into(),
    };
    match rustix::net::sockopt::socket_type(borrowed) {
        Ok(SocketType::STREAM) => {}
        Ok(_) => return Err(InheritError::NotStream { fd, name }),
        Err(Errno::NOTSOCK) => return Err(InheritError::NotASocket { fd, name }),
        Err(e) => return Err(io_error(e)),
    }
    if !rustix::net::sockopt::socket_acceptconn(borrowed).map_err(io_error)? {
        return Err(InheritError::NotListening { fd, name });
    }
    let family = socket_family(borrowed).map_err(io_error)?;
    if family == AddressFamily::INET || family == AddressFamily::INET6 {
        Ok(Family::Inet)
    } else if family == AddressFamily::UNIX {
        Ok(Family::Unix)
    } else {
        Err(InheritError::UnsupportedFamily { fd, name })
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn socket_family(fd: BorrowedFd<'_>) -> Result<AddressFamily, Errno> {
    rustix::net::sockopt::socket_domain(fd)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn socket_family(fd: BorrowedFd<'_>) -> Result<AddressFamily, Errno> {
    rustix::net::getsockname(fd).map(|addr| addr.address_family())
}

/// Takes ownership of a checked descriptor (close-on-exec: nothing
/// inherited leaks into this process's own children).
fn own(
    adoption: &mut Adoption,
    inherited: InheritedFd,
    family: Family,
) -> Result<InheritedListener, InheritError> {
    let fd = inherited.fd;
    let owned = adoption
        .adopt(fd)
        .map_err(|e| refused(e, fd, &inherited.name))?;
    let io_error = |error: io::Error| InheritError::Io { fd, error };
    let socket = match family {
        Family::Inet => {
            let l = std::net::TcpListener::from(owned);
            // Non-blocking whatever it arrived as (systemd passes blocking
            // sockets, a predecessor non-blocking ones): one mode from here.
            l.set_nonblocking(true).map_err(io_error)?;
            Socket::Tcp(l)
        }
        Family::Unix => {
            let l = UnixListener::from(owned);
            l.set_nonblocking(true).map_err(io_error)?;
            Socket::Unix(l)
        }
    };
    Ok(InheritedListener {
        fd,
        name: inherited.name,
        socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::ListenAddr;
    use lameduck_core::activation::ActivationError;
    use std::os::fd::AsFd;

    fn env(pid: u32, fds: &str, names: Option<&str>) -> ListenEnv {
        ListenEnv {
            pid: Some(pid.to_string()),
            fds: Some(fds.into()),
            fdnames: names.map(Into::into),
        }
    }

    #[test]
    fn bad_variables_are_precise_errors() {
        let me = std::process::id();
        let e = Inherited::adopt(
            &mut Adoption::for_tests(),
            &env(me, "x", None),
            None,
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "LISTEN_FDS=\"x\" is not a count");
        // The channel's and the link's variables, named in the error.
        let none = env(me + 1, "0", None);
        let x = std::ffi::OsStr::new("x");
        let e = Inherited::adopt(&mut Adoption::for_tests(), &none, Some(x), None, None);
        assert_eq!(
            e.unwrap_err().to_string(),
            "LAMEDUCK_READY_FD=\"x\": not a descriptor number (3 or more)"
        );
        let e = Inherited::adopt(&mut Adoption::for_tests(), &none, None, Some(x), None);
        assert_eq!(
            e.unwrap_err().to_string(),
            "LAMEDUCK_SUPERVISOR_FD=\"x\": not a descriptor number (3 or more)"
        );
    }

    /// systemd's rule: a `LISTEN_PID` that is not ours means the variables
    /// are not for this process — no socket, no error, no descriptor
    /// checked (fd 3 here may be anything, or nothing).
    #[test]
    fn another_process_s_variables_are_ignored() {
        let me = std::process::id();
        for fds in ["1", "4000", "junk"] {
            let inherited = Inherited::adopt(
                &mut Adoption::for_tests(),
                &env(me + 1, fds, None),
                None,
                None,
                None,
            )
            .unwrap();
            assert!(inherited.is_empty());
            assert_eq!(inherited.not_for_us, Some((me + 1, me)));
        }
        let e = Inherited::adopt(
            &mut Adoption::for_tests(),
            &env(me, "1", Some("a:b")),
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            InheritError::Env(ActivationError::NameCountMismatch { .. })
        ));
    }

    #[test]
    fn descriptors_that_are_not_listening_sockets_are_refused() {
        // A pipe, a connected-less stream socket, a datagram socket: each
        // placed where the check looks, without adopting (check only).
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let pipe = InheritedFd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&r),
            name: "p".into(),
        };
        assert!(matches!(
            check(&Adoption::for_tests(), &pipe),
            Err(InheritError::NotASocket { .. })
        ));

        let stream = std::os::unix::net::UnixStream::pair().unwrap().0;
        let not_listening = InheritedFd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
            name: "s".into(),
        };
        let e = check(&Adoption::for_tests(), &not_listening).unwrap_err();
        assert!(matches!(e, InheritError::NotListening { .. }));
        assert!(e.to_string().ends_with("is not a listening socket"), "{e}");

        let dgram = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp = InheritedFd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&dgram),
            name: "u".into(),
        };
        assert!(matches!(
            check(&Adoption::for_tests(), &udp),
            Err(InheritError::NotStream { .. })
        ));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ok = InheritedFd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
            name: "l".into(),
        };
        assert!(matches!(
            check(&Adoption::for_tests(), &ok),
            Ok(Family::Inet)
        ));

        let closed = InheritedFd {
            fd: 999_999,
            name: "gone".into(),
        };
        assert!(matches!(
            check(&Adoption::for_tests(), &closed),
            Err(InheritError::NotOpen { .. })
        ));
    }

    /// A number named twice (a listener's, and the readiness channel's,
    /// say) is adopted once: the second name is refused, and the one
    /// owner closes it once.
    #[test]
    fn a_descriptor_named_twice_is_adopted_once() {
        use std::os::fd::IntoRawFd;
        let mut adoption = Adoption::for_tests();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = listener.into_raw_fd(); // to be owned by the adoption
        let inherited = |name: &str| InheritedFd {
            fd,
            name: name.into(),
        };
        let first = own(&mut adoption, inherited("http"), Family::Inet).unwrap();
        assert_eq!(first.local_addr().unwrap(), ListenAddr::Tcp(addr));
        let e = own(&mut adoption, inherited("again"), Family::Inet).unwrap_err();
        assert!(matches!(e, InheritError::NamedTwice { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "inherited fd {fd} (again) is named twice: it was adopted already under another \
                 name"
            )
        );
        let e = check(&adoption, &inherited("check")).unwrap_err();
        assert!(matches!(e, InheritError::NamedTwice { .. }), "{e:?}");
        let value = std::ffi::OsString::from(fd.to_string());
        let e = ReadyChannel::adopt(&value, &mut adoption).unwrap_err();
        assert_eq!(e, "adopted already, under another name");
    }

    /// `inherit_or_bind` takes the inherited socket of that name when it
    /// is of the kind asked for, and refuses (and closes) one of the other
    /// kind rather than bind a second socket under its name.
    #[test]
    fn an_inherited_name_of_the_other_kind_is_an_error() {
        use super::super::inherit_or_bind::{take_or_bind, take_or_bind_unix};
        use crate::server::PendingListener;
        use std::os::fd::IntoRawFd;
        // An adoption each: the second listener may get the first's number
        // once it is closed, which one adoption would refuse.
        let inherit = |name: &str| {
            let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = tcp.local_addr().unwrap();
            let fd = tcp.into_raw_fd(); // to be owned by the adoption
            let inherited = InheritedFd {
                fd,
                name: name.into(),
            };
            let mut adoption = Adoption::for_tests();
            (own(&mut adoption, inherited, Family::Inet).unwrap(), addr)
        };
        let (http, _) = inherit("http");
        let fd = http.fd();
        let mut inherited = Inherited {
            listeners: vec![Some(http)],
            ..Inherited::default()
        };
        let path = std::path::Path::new("/nonexistent/lameduck.sock");
        let Err(e) = take_or_bind_unix(&mut inherited, "http", path) else {
            panic!("a TCP socket taken as a Unix one");
        };
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            format!("inherited fd {fd} (http) is a TCP socket; a Unix one was expected")
        );
        assert!(inherited.is_empty(), "taken, and closed");

        let (http, addr_again) = inherit("http");
        inherited.listeners.push(Some(http));
        match take_or_bind(&mut inherited, "http", "127.0.0.1:1").unwrap() {
            PendingListener::Tcp(listener, name, bound_here) => {
                assert_eq!(listener.local_addr().unwrap(), addr_again);
                assert_eq!(&*name, "http");
                assert!(!bound_here, "inherited, not bound");
            }
            PendingListener::Unix(..) => panic!("a TCP listener was inherited"),
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn owned_files_are_parsed_strictly() {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(format!("lameduck-owned-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let unix = UnixListener::bind(&path).unwrap();
        // An abstract address: no file.
        let unnamed = {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("lameduck-owned-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
            UnixListener::bind_addr(&addr).unwrap()
        };
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (u, n, t) = (unix.as_raw_fd(), unnamed.as_raw_fd(), tcp.as_raw_fd());
        let fds = vec![
            InheritedFd {
                fd: t,
                name: "tcp".into(),
            },
            InheritedFd {
                fd: u,
                name: "unix".into(),
            },
            InheritedFd {
                fd: n,
                name: "unnamed".into(),
            },
        ];
        let kinds: Vec<Family> = fds
            .iter()
            .map(|f| check(&Adoption::for_tests(), f).unwrap())
            .collect();
        let parse = |value: &str, ready: bool, link: bool| {
            owned_files(
                &Adoption::for_tests(),
                std::ffi::OsStr::new(value),
                &fds,
                &kinds,
                ready,
                link,
            )
        };
        let owned = parse(&u.to_string(), true, false).unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].path, path);
        assert_eq!(owned[0].socket, socket_identity(unix.as_fd()).unwrap());
        let reason = |value: &str, ready: bool, link: bool| match parse(value, ready, link) {
            Err(InheritError::OwnedFds { reason, .. }) => reason,
            other => panic!("{value}: {other:?}"),
        };
        assert!(reason(&u.to_string(), false, false).starts_with("set without LAMEDUCK_READY_FD"));
        assert!(reason(&u.to_string(), true, true).starts_with("a supervised generation"));
        assert_eq!(reason("", true, false), "empty");
        assert_eq!(reason("x", true, false), "\"x\" is not a descriptor number");
        assert_eq!(
            reason("+3", true, false),
            "\"+3\" is not a descriptor number"
        );
        assert_eq!(
            reason(&format!("{u}:"), true, false),
            "\"\" is not a descriptor number"
        );
        assert_eq!(
            reason("999999", true, false),
            "fd 999999 is not an inherited socket"
        );
        assert_eq!(
            reason(&format!("{u}:{u}"), true, false),
            format!("fd {u} is named twice")
        );
        assert_eq!(
            reason(&t.to_string(), true, false),
            format!("fd {t} (tcp) is not a Unix socket")
        );
        assert_eq!(
            reason(&n.to_string(), true, false),
            format!("fd {n} (unnamed) is not bound to a path")
        );
        let e = parse("x", true, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LAMEDUCK_OWNED_FDS=\"x\": \"x\" is not a descriptor number"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
