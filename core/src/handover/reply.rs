//! The successor's replies: the lines it sends back ([`Reply`]: `TAKEN`,
//! `REFUSED <reason>`, `READY=1`), their bounded, split-proof decoding
//! ([`ReplyDecoder`], [`ReplyError`]), and [`accept_version`], the
//! successor's choice between taking and refusing an offer.

use std::fmt;

/// The longest reply line, newline included.
///
/// ```
/// assert_eq!(lameduck_core::handover::MAX_REPLY_LINE, 512);
/// ```
pub const MAX_REPLY_LINE: usize = 512;

/// What the successor says back, one line each.
///
/// ```
/// use lameduck_core::handover::Reply;
/// assert_eq!(Reply::Taken.encode(), b"TAKEN\n");
/// assert_eq!(Reply::Refused("version 9".into()).encode(), b"REFUSED version 9\n");
/// assert_eq!(Reply::Ready.encode(), b"READY=1\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// It read the whole frame, descriptors included, and keeps it.
    Taken,
    /// It will not run with this state; why (one line, printable, at most
    /// [`MAX_REPLY_LINE`] in all).
    Refused(String),
    /// It serves.
    Ready,
}

impl Reply {
    /// The line. A refusal's reason is made one printable line, cut to
    /// fit.
    ///
    /// ```
    /// use lameduck_core::handover::Reply;
    /// assert_eq!(Reply::Refused("a\nb".into()).encode(), b"REFUSED a b\n");
    /// ```
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Taken => b"TAKEN\n".to_vec(),
            Reply::Ready => b"READY=1\n".to_vec(),
            Reply::Refused(reason) => {
                let mut out = b"REFUSED ".to_vec();
                let room = MAX_REPLY_LINE - out.len() - 1;
                out.extend(
                    reason
                        .bytes()
                        .map(|b| if (0x20..0x7f).contains(&b) { b } else { b' ' })
                        .take(room),
                );
                out.push(b'\n');
                out
            }
        }
    }
}

/// Why the successor's replies are not the protocol.
///
/// ```
/// use lameduck_core::handover::{ReplyDecoder, ReplyError};
/// let mut replies = ReplyDecoder::new();
/// assert_eq!(replies.feed(b"HELLO\n"), Err(ReplyError::Unknown("HELLO".into())));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line longer than [`MAX_REPLY_LINE`].
    LineTooLong,
    /// A line that is no reply (printable form, cut).
    Unknown(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong => {
                write!(f, "a reply line longer than {MAX_REPLY_LINE} bytes")
            }
            ReplyError::Unknown(line) => write!(f, "an unknown reply {line:?}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Splits the successor's bytes into [`Reply`]s, in any split; bounded
/// ([`MAX_REPLY_LINE`]), never panics.
///
/// ```
/// use lameduck_core::handover::{Reply, ReplyDecoder};
/// let mut replies = ReplyDecoder::new();
/// assert_eq!(replies.feed(b"TAK").unwrap(), vec![]);
/// assert_eq!(replies.feed(b"EN\nREADY=1\n").unwrap(), vec![Reply::Taken, Reply::Ready]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReplyDecoder {
    line: Vec<u8>,
    failed: Option<ReplyError>,
}

impl ReplyDecoder {
    /// A decoder with nothing buffered.
    ///
    /// ```
    /// let replies = lameduck_core::handover::ReplyDecoder::new();
    /// assert!(replies.is_empty());
    /// ```
    #[must_use]
    pub fn new() -> ReplyDecoder {
        ReplyDecoder::default()
    }

    /// No partial line is buffered (an end of file now cuts nothing).
    ///
    /// ```
    /// let mut replies = lameduck_core::handover::ReplyDecoder::new();
    /// replies.feed(b"TA").unwrap();
    /// assert!(!replies.is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// The replies completed by `bytes`, or the first error (then every
    /// later call returns it too).
    ///
    /// ```
    /// use lameduck_core::handover::{Reply, ReplyDecoder};
    /// let mut replies = ReplyDecoder::new();
    /// assert_eq!(replies.feed(b"REFUSED no\n").unwrap(), vec![Reply::Refused("no".into())]);
    /// ```
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() + 1 >= MAX_REPLY_LINE {
                    self.failed = Some(ReplyError::LineTooLong);
                    return Err(ReplyError::LineTooLong);
                }
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let reply = match line.as_slice() {
                b"TAKEN" => Reply::Taken,
                b"READY=1" => Reply::Ready,
                l => match l.strip_prefix(b"REFUSED ") {
                    Some(reason) if reason.iter().all(|b| (0x20..0x7f).contains(b)) => {
                        Reply::Refused(String::from_utf8_lossy(reason).into_owned())
                    }
                    _ => {
                        let shown: String = String::from_utf8_lossy(l).chars().take(64).collect();
                        let e = ReplyError::Unknown(shown);
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                },
            };
            out.push(reply);
        }
        Ok(out)
    }
}

/// The successor's side: whether to take an offer of `version`, given the
/// versions it knows. The reply to send, and the refusal's reason.
///
/// ```
/// use lameduck_core::handover::{Reply, accept_version};
/// assert_eq!(accept_version(2, 1..=2), Reply::Taken);
/// assert_eq!(
///     accept_version(3, 1..=2),
///     Reply::Refused("restart state version 3 is not one of 1..=2".into())
/// );
/// ```
#[must_use]
pub fn accept_version(version: u32, known: std::ops::RangeInclusive<u32>) -> Reply {
    if known.contains(&version) {
        Reply::Taken
    } else {
        Reply::Refused(format!(
            "restart state version {version} is not one of {}..={}",
            known.start(),
            known.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_in_any_split_and_bounded() {
        let all = [
            Reply::Taken.encode(),
            Reply::Refused("x".repeat(2000)).encode(),
            Reply::Ready.encode(),
        ]
        .concat();
        for split in 0..all.len() {
            let mut d = ReplyDecoder::new();
            let mut got = d.feed(&all[..split]).unwrap();
            got.extend(d.feed(&all[split..]).unwrap());
            assert_eq!(got.len(), 3);
            assert!(matches!(&got[1], Reply::Refused(r) if r.len() == MAX_REPLY_LINE - 9));
        }
        let mut d = ReplyDecoder::new();
        assert_eq!(d.feed(&[b'A'; 600]), Err(ReplyError::LineTooLong));
        assert_eq!(d.feed(b"TAKEN\n"), Err(ReplyError::LineTooLong));
    }
}
