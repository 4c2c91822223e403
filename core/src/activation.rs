//! systemd socket activation, as pure code: reading and writing the
//! `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` variables.
//!
//! This is the hand-off format between a process and its successor, and what
//! a systemd `.socket` unit gives a service (`sd_listen_fds(3)`): the
//! listening sockets are file descriptors 3, 4, … ([`FIRST_FD`]), `LISTEN_FDS`
//! says how many, `LISTEN_PID` names the process they are for, and
//! `LISTEN_FDNAMES` optionally names each, colon-separated.
//!
//! Parsing is strict, so a broken environment is a precise error at start-up
//! rather than a server listening on the wrong thing. One case is not an
//! error, as in systemd's `sd_listen_fds`: a well-formed `LISTEN_PID` that
//! names another process means the variables are not for this one (they
//! leaked from a parent into a child, say), and they are ignored
//! ([`Activation::NotForUs`]). Whether each descriptor really is a listening
//! socket is for the caller to check (that needs a system call); this module
//! never touches one.

use std::fmt;

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: i32 = 3;

/// At most this many inherited sockets are accepted: a guard against a
/// `LISTEN_FDS` that would make the caller walk millions of descriptors.
pub const MAX_FDS: u32 = 4096;

/// `LISTEN_FDNAMES` entries are at most this long (systemd's `FDNAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// The name systemd gives a socket whose unit names none.
pub const DEFAULT_NAME: &str = "unknown";

/// The variables, as read from the environment (`None`: unset).
///
/// ```
/// use lameduck_core::activation::ListenEnv;
/// let env = ListenEnv { pid: Some("42".into()), fds: Some("2".into()), fdnames: None };
/// let sockets = env.parse(42).unwrap().into_sockets();
/// assert_eq!(sockets.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenEnv {
    /// `LISTEN_PID`.
    pub pid: Option<String>,
    /// `LISTEN_FDS`.
    pub fds: Option<String>,
    /// `LISTEN_FDNAMES`.
    pub fdnames: Option<String>,
}

/// One inherited listening socket.
///
/// ```
/// use lameduck_core::activation::InheritedFd;
/// let fd = InheritedFd { fd: 3, name: "http".into() };
/// assert_eq!(fd.to_string(), "fd 3 (http)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InheritedFd {
    /// The descriptor number: 3, 4, ….
    pub fd: i32,
    /// Its name from `LISTEN_FDNAMES`, or [`DEFAULT_NAME`].
    pub name: String,
}

impl fmt::Display for InheritedFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd {} ({})", self.fd, self.name)
    }
}

/// What the socket-activation variables say: [`ListenEnv::parse`]'s answer.
///
/// ```
/// use lameduck_core::activation::{Activation, ListenEnv};
/// let env = ListenEnv { pid: Some("7".into()), fds: Some("1".into()), fdnames: None };
/// assert_eq!(env.parse(8), Ok(Activation::NotForUs { listen_pid: 7, own_pid: 8 }));
/// assert!(env.parse(8).unwrap().into_sockets().is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activation {
    /// Nothing was passed: neither `LISTEN_PID` nor `LISTEN_FDS` is set.
    Nothing,
    /// `LISTEN_PID` is a process id, but not this process's: the variables
    /// are for another process (they leaked from a parent into a child,
    /// say). As systemd's `sd_listen_fds` does, they are ignored — no
    /// socket is inherited, `LISTEN_FDS` and `LISTEN_FDNAMES` are not even
    /// looked at, and no descriptor is touched. A caller should say so (a
    /// warning naming both pids) and remove the variables, so that its own
    /// children do not see them either.
    NotForUs {
        /// `LISTEN_PID`.
        listen_pid: u32,
        /// This process.
        own_pid: u32,
    },
    /// The inherited sockets (at least one), at descriptors 3, 4, ….
    Sockets(Vec<InheritedFd>),
}

impl Activation {
    /// The inherited sockets: none unless [`Sockets`](Self::Sockets).
    ///
    /// ```
    /// assert!(lameduck_core::activation::Activation::Nothing.into_sockets().is_empty());
    /// ```
    #[must_use]
    pub fn into_sockets(self) -> Vec<InheritedFd> {
        match self {
            Activation::Sockets(fds) => fds,
            Activation::Nothing | Activation::NotForUs { .. } => Vec::new(),
        }
    }
}

/// Why the socket-activation variables were refused.
///
/// ```
/// use lameduck_core::activation::{ActivationError, ListenEnv};
/// let env = ListenEnv { pid: Some("7".into()), fds: Some("one".into()), fdnames: None };
/// assert_eq!(env.parse(7), Err(ActivationError::InvalidCount("one".into())));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActivationError {
    /// `LISTEN_FDS` is set but `LISTEN_PID` is not: sockets for nobody.
    MissingPid,
    /// `LISTEN_PID` is set but `LISTEN_FDS` is not.
    MissingFds,
    /// `LISTEN_PID` is not a positive decimal process id.
    InvalidPid(String),
    /// `LISTEN_FDS` is not a decimal count.
    InvalidCount(String),
    /// `LISTEN_FDS=0`: activated with nothing to listen on.
    NoSockets,
    /// `LISTEN_FDS` exceeds [`MAX_FDS`].
    TooManyFds(u32),
    /// `LISTEN_FDNAMES` has a different number of names than `LISTEN_FDS`.
    NameCountMismatch {
        /// `LISTEN_FDS`.
        fds: u32,
        /// Names in `LISTEN_FDNAMES`.
        names: usize,
    },
    /// A name is empty, longer than [`MAX_NAME_LEN`], or not printable ASCII.
    InvalidName(String),
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::MissingPid => f.write_str("LISTEN_FDS is set but LISTEN_PID is not"),
            ActivationError::MissingFds => f.write_str("LISTEN_PID is set but LISTEN_FDS is not"),
            ActivationError::InvalidPid(v) => write!(f, "LISTEN_PID={v:?} is not a process id"),
            ActivationError::InvalidCount(v) => write!(f, "LISTEN_FDS={v:?} is not a count"),
            ActivationError::NoSockets => f.write_str("LISTEN_FDS=0: no sockets were passed"),
            ActivationError::TooManyFds(n) => {
                write!(f, "LISTEN_FDS={n} exceeds the limit of {MAX_FDS}")
            }
            ActivationError::NameCountMismatch { fds, names } => {
                write!(f, "LISTEN_FDNAMES has {names} names for LISTEN_FDS={fds}")
            }
            ActivationError::InvalidName(n) => write!(
                f,
                "LISTEN_FDNAMES entry {n:?} is invalid (1–{MAX_NAME_LEN} printable ASCII characters, no ':')"
            ),
        }
    }
}

impl std::error::Error for ActivationError {}

/// A strict decimal: digits only, no sign, no spaces, no leading `+`.
fn decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

impl ListenEnv {
    /// Reads the three variables from the process environment.
    ///
    /// ```
    /// use lameduck_core::activation::{Activation, ListenEnv};
    /// // In a test process nothing was passed:
    /// # if std::env::var_os("LISTEN_FDS").is_none() {
    /// assert_eq!(ListenEnv::from_process().parse(std::process::id()), Ok(Activation::Nothing));
    /// # }
    /// ```
    #[must_use]
    pub fn from_process() -> ListenEnv {
        // A non-UTF-8 value is kept (lossily) so that it is reported, not ignored.
        let var = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
        ListenEnv {
            pid: var("LISTEN_PID"),
            fds: var("LISTEN_FDS"),
            fdnames: var("LISTEN_FDNAMES"),
        }
    }

    /// What the variables say to process `own_pid`: the inherited sockets,
    /// [`Activation::Nothing`] when none were passed (neither `LISTEN_PID`
    /// nor `LISTEN_FDS` set), [`Activation::NotForUs`] when `LISTEN_PID` is
    /// another process's (systemd's rule: ignored), or a precise error for
    /// a malformed variable.
    ///
    /// The order of the checks: both of `LISTEN_PID` and `LISTEN_FDS`, or
    /// neither, must be set; `LISTEN_PID` must be a process id; if it is
    /// not `own_pid`, the rest is not looked at (`NotForUs`); then
    /// `LISTEN_FDS` and `LISTEN_FDNAMES` must be valid.
    ///
    /// ```
    /// use lameduck_core::activation::{Activation, ActivationError, InheritedFd, ListenEnv};
    ///
    /// let env = ListenEnv {
    ///     pid: Some("1234".into()),
    ///     fds: Some("2".into()),
    ///     fdnames: Some("http:admin".into()),
    /// };
    /// assert_eq!(
    ///     env.parse(1234),
    ///     Ok(Activation::Sockets(vec![
    ///         InheritedFd { fd: 3, name: "http".into() },
    ///         InheritedFd { fd: 4, name: "admin".into() },
    ///     ]))
    /// );
    /// // For process 1234, not for this one (4321): ignored.
    /// assert_eq!(
    ///     env.parse(4321),
    ///     Ok(Activation::NotForUs { listen_pid: 1234, own_pid: 4321 })
    /// );
    /// let bad = ListenEnv { fds: Some("two".into()), ..env };
    /// assert_eq!(bad.parse(1234), Err(ActivationError::InvalidCount("two".into())));
    /// ```
    pub fn parse(&self, own_pid: u32) -> Result<Activation, ActivationError> {
        let (pid, fds) = match (&self.pid, &self.fds) {
            (None, None) => return Ok(Activation::Nothing),
            (None, Some(_)) => return Err(ActivationError::MissingPid),
            (Some(_), None) => return Err(ActivationError::MissingFds),
            (Some(pid), Some(fds)) => (pid, fds),
        };
        let listen_pid = decimal(pid)
            .filter(|p| *p > 0)
            .ok_or_else(|| ActivationError::InvalidPid(pid.clone()))?;
        if listen_pid != own_pid {
            return Ok(Activation::NotForUs {
                listen_pid,
                own_pid,
            });
        }
        let n = decimal(fds).ok_or_else(|| ActivationError::InvalidCount(fds.clone()))?;
        if n == 0 {
            return Err(ActivationError::NoSockets);
        }
        if n > MAX_FDS {
            return Err(ActivationError::TooManyFds(n));
        }
        let names: Vec<String> = match &self.fdnames {
            None => vec![DEFAULT_NAME.to_owned(); n as usize],
            Some(list) => {
                let names: Vec<&str> = list.split(':').collect();
                if names.len() != n as usize {
                    return Err(ActivationError::NameCountMismatch {
                        fds: n,
                        names: names.len(),
                    });
                }
                if let Some(bad) = names.iter().find(|name| !valid_name(name)) {
                    return Err(ActivationError::InvalidName((*bad).to_owned()));
                }
                names.into_iter().map(str::to_owned).collect()
            }
        };
        // n ≤ MAX_FDS, so FIRST_FD + i cannot overflow an i32.
        Ok(Activation::Sockets(
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| InheritedFd {
                    fd: FIRST_FD + i as i32,
                    name,
                })
                .collect(),
        ))
    }

    /// The variables to give a successor for `names.len()` sockets placed at
    /// descriptors 3, 4, …; `LISTEN_PID` must be the successor's own pid,
    /// known only once it exists.
    ///
    /// ```
    /// use lameduck_core::activation::ListenEnv;
    /// let env = ListenEnv::for_successor(4321, &["http", "admin"]).unwrap();
    /// assert_eq!(env.fds.as_deref(), Some("2"));
    /// assert_eq!(env.fdnames.as_deref(), Some("http:admin"));
    /// assert_eq!(env.parse(4321).unwrap().into_sockets().len(), 2);
    /// ```
    pub fn for_successor(pid: u32, names: &[&str]) -> Result<ListenEnv, ActivationError> {
        if names.is_empty() {
            return Err(ActivationError::NoSockets);
        }
        let n = u32::try_from(names.len()).unwrap_or(u32::MAX);
        if n > MAX_FDS {
            return Err(ActivationError::TooManyFds(n));
        }
        if let Some(bad) = names.iter().find(|name| !valid_name(name)) {
            return Err(ActivationError::InvalidName((*bad).to_owned()));
        }
        Ok(ListenEnv {
            pid: Some(pid.to_string()),
            fds: Some(n.to_string()),
            fdnames: Some(names.join(":")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pid: Option<&str>, fds: Option<&str>, names: Option<&str>) -> ListenEnv {
        ListenEnv {
            pid: pid.map(Into::into),
            fds: fds.map(Into::into),
            fdnames: names.map(Into::into),
        }
    }

    #[test]
    fn nothing_passed_is_not_an_error() {
        assert_eq!(env(None, None, None).parse(1), Ok(Activation::Nothing));
        // Names alone, with no count, mean nothing was passed either.
        assert_eq!(env(None, None, Some("x")).parse(1), Ok(Activation::Nothing));
    }

    /// systemd's rule (`sd_listen_fds`): variables for another process are
    /// ignored, whatever `LISTEN_FDS` and `LISTEN_FDNAMES` hold.
    #[test]
    fn another_process_s_variables_are_ignored() {
        let not_for_us = Ok(Activation::NotForUs {
            listen_pid: 8,
            own_pid: 9,
        });
        for (fds, names) in [
            ("1", None),
            ("2", Some("a:b")),
            ("abc", None),
            ("0", None),
            ("1", Some("a:b")),
        ] {
            let env = env(Some("8"), Some(fds), names);
            assert_eq!(env.parse(9), not_for_us, "{env:?}");
            assert!(env.parse(9).unwrap().into_sockets().is_empty());
        }
        // A malformed LISTEN_PID, or one of the pair missing, is still an error.
        assert_eq!(
            env(Some("x8"), Some("1"), None).parse(9),
            Err(ActivationError::InvalidPid("x8".into()))
        );
        assert_eq!(
            env(Some("8"), None, None).parse(9),
            Err(ActivationError::MissingFds)
        );
    }

    #[test]
    fn default_names() {
        let fds = env(Some("9"), Some("3"), None)
            .parse(9)
            .unwrap()
            .into_sockets();
        assert_eq!(fds.iter().map(|f| f.fd).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(fds.iter().all(|f| f.name == DEFAULT_NAME));
    }

    #[test]
    fn precise_errors() {
        use ActivationError as E;
        let cases: &[(ListenEnv, E)] = &[
            (env(None, Some("1"), None), E::MissingPid),
            (env(Some("9"), None, None), E::MissingFds),
            (env(Some(""), Some("1"), None), E::InvalidPid(String::new())),
            (env(Some("0"), Some("1"), None), E::InvalidPid("0".into())),
            (env(Some("-9"), Some("1"), None), E::InvalidPid("-9".into())),
            (env(Some(" 9"), Some("1"), None), E::InvalidPid(" 9".into())),
            (
                env(Some("99999999999"), Some("1"), None),
                E::InvalidPid("99999999999".into()),
            ),
            (
                env(Some("9"), Some("+1"), None),
                E::InvalidCount("+1".into()),
            ),
            (
                env(Some("9"), Some("1 "), None),
                E::InvalidCount("1 ".into()),
            ),
            (env(Some("9"), Some("0"), None), E::NoSockets),
            (env(Some("9"), Some("5000"), None), E::TooManyFds(5000)),
            (
                env(Some("9"), Some("2"), Some("a")),
                E::NameCountMismatch { fds: 2, names: 1 },
            ),
            (
                env(Some("9"), Some("2"), Some("a:b:c")),
                E::NameCountMismatch { fds: 2, names: 3 },
            ),
            (
                env(Some("9"), Some("2"), Some("a:")),
                E::InvalidName(String::new()),
            ),
            (
                env(Some("9"), Some("1"), Some("a b")),
                E::InvalidName("a b".into()),
            ),
            (
                env(Some("9"), Some("1"), Some("é")),
                E::InvalidName("é".into()),
            ),
        ];
        for (env, want) in cases {
            assert_eq!(env.parse(9).as_ref(), Err(want), "{env:?}");
            assert!(!want.to_string().is_empty());
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            env(Some("9"), Some("1"), Some(&long)).parse(9),
            Err(E::InvalidName(long))
        );
    }

    #[test]
    fn successor_env_round_trips() {
        let env = ListenEnv::for_successor(77, &["a", "b", "c"]).unwrap();
        let fds = env.parse(77).unwrap().into_sockets();
        assert_eq!(
            fds.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(
            ListenEnv::for_successor(77, &[]),
            Err(ActivationError::NoSockets)
        );
        assert_eq!(
            ListenEnv::for_successor(77, &["a:b"]),
            Err(ActivationError::InvalidName("a:b".into()))
        );
    }
}
