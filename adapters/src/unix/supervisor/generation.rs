//! A supervisor's generations as processes: starting one
//! ([`launch_generation`]: the listeners, a hand-off channel carrying the
//! serving generation's restart state, a link), and what the supervisor
//! holds for each while it runs ([`GenerationProcess`]).
//!
//! ```ignore
//! // Crate-internal: what the run loop does for `SupervisorAction::Start`.
//! let offer = serving_state(settings, serving.channel.clone()).await?;
//! let (launched, link) = launch_generation(settings, 2, offer)?;
//! ```

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;

use futures_lite::FutureExt;

use super::Supervisor;
use crate::server::PendingListener;
use crate::unix::attempt::{Launched, Mode, Spawn, program};
use crate::unix::child::ChildWatch;
use crate::unix::handoff::link::{LinkWriter, link_pipe};
use crate::unix::handoff::ready::{Heard, Offer, ReadyReader};

/// A generation's process and the supervisor's ends of its channels: what
/// the supervisor holds for it while it runs. What becomes of it is the
/// core machine's decision
/// ([`lameduck_core::supervisor::Supervisor`]).
pub(super) struct GenerationProcess {
    pub(super) watch: Arc<ChildWatch>,
    /// Kept until it exits: its end of file would tell it the supervisor
    /// is gone.
    pub(super) link: LinkWriter,
    /// Its hand-off channel while it serves: asked for its restart state
    /// when the next generation starts. Dropped once it hands off.
    pub(super) channel: Option<ReadyReader>,
}

/// A start being carried out: the serving generation's state asked for,
/// then the launch.
pub(super) type Launch<'a> = Pin<Box<dyn Future<Output = io::Result<(Launched, LinkWriter)>> + 'a>>;

/// The readiness conversation with the generation starting.
pub(super) type Conversation = Pin<Box<dyn Future<Output = io::Result<Heard>>>>;

/// The serving generation's restart state, asked on its `channel`: nothing
/// if none serves (the first), or within the readiness deadline, or the
/// error.
pub(super) async fn serving_state(
    settings: &Supervisor,
    channel: Option<ReadyReader>,
) -> io::Result<Offer> {
    let Some(channel) = channel else {
        return Ok(Offer::empty());
    };
    let limits = lameduck_core::handover::Limits::default();
    let asked = async { Some(channel.request_state(limits).await) };
    let timeout = async {
        async_io::Timer::after(settings.ready_timeout).await;
        None
    };
    match asked.or(timeout).await {
        Some(Ok(offer)) => Ok(offer),
        Some(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("the serving generation's restart state: {e}"),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the serving generation did not give its restart state in time",
        )),
    }
}

/// Starts generation `generation` with the listeners, a readiness channel
/// (on which `offer` is sent) and a link.
pub(super) fn launch_generation(
    settings: &Supervisor,
    generation: u64,
    offer: Offer,
) -> io::Result<(Launched, LinkWriter)> {
    let program = program(&settings.executable)?;
    let fds: Vec<(BorrowedFd<'_>, &str)> = settings
        .listeners
        .iter()
        .map(|pending| match pending {
            PendingListener::Tcp(l, name, _) => (l.as_fd(), &**name),
            PendingListener::Unix(l, _, name) => (l.as_fd(), &**name),
        })
        .collect();
    let (writer, read): (LinkWriter, OwnedFd) = link_pipe()?;
    // The supervisor owns the socket files: no generation takes them over.
    let launched = Spawn {
        program: &program,
        args: &settings.args,
        listeners: &fds,
        mode: Mode::Supervised { link: read.as_fd() },
        generation,
        offer,
    }
    .launch()?;
    // Only the generation holds the read end now.
    drop(read);
    Ok((launched, writer))
}
