//! systemd's notification protocol (`sd_notify(3)`): one datagram of
//! `KEY=value` lines to the socket named by `NOTIFY_SOCKET`.
//!
//! `NOTIFY_SOCKET` is left in the environment: a successor talks to
//! systemd itself once it is the main process.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `"READY=1"`, or several lines) to systemd.
/// `Ok(false)`: `NOTIFY_SOCKET` is not set (not run by systemd), nothing
/// sent. A path starting with `@` is an abstract socket (Linux).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let sent = lameduck::unix::notify("STATUS=warming up")?;
/// # let _ = sent; Ok(()) }
/// ```
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.split_first() {
        Some((b'@', name)) => send_abstract(&socket, name, state.as_bytes())?,
        Some((b'/', _)) => socket.send_to(state.as_bytes(), &path)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET={path:?} is neither a path nor @abstract"),
            ));
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was truncated",
        ));
    }
    Ok(true)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

/// `CLOCK_MONOTONIC` in microseconds, for `MONOTONIC_USEC=` (systemd
/// matches a reload to the signal that asked for it by this time).
pub(crate) fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // A monotonic clock is never negative.
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_moves_forward() {
        let a = super::monotonic_usec();
        let b = super::monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
