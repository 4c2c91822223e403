//! Where a server's parts run and how each is built: on the current
//! thread's runtime, or one part per thread a [`Launch`] starts (the same
//! listening sockets, new descriptors, one group of events), each part its
//! own driver, worker and listeners; then serving, on every thread.

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lameduck_core::{Config, ListenerId};

use crate::accept::{ListenSocket, accept_loop};
use crate::driver::{Driver, ListenerEntry};
use crate::event::{Group, Sink};
use crate::handle::Handle;
use crate::hooks::Hooks;
use crate::listener::{Accepting, ListenAddr};
use crate::runtime::{Launch, Runtime, ThreadMain};
use crate::sync::Stop;
use crate::worker::ServeConn;
use crate::worker::Worker;

/// A listener not yet registered with the runtime, with its name for a
/// hand-off (`LISTEN_FDNAMES`).
pub(crate) enum PendingListener {
    /// `true`: this process bound it (see `ListenSocket::stop_accepting`).
    Tcp(std::net::TcpListener, Arc<str>, bool),
    /// With the path to remove at the end, if this process bound it.
    Unix(UnixListener, Option<PathBuf>, Arc<str>),
}

/// The name of a TCP listener that was given none.
pub(crate) const DEFAULT_TCP_NAME: &str = "tcp";
/// The name of a Unix listener that was given none.
pub(crate) const DEFAULT_UNIX_NAME: &str = "unix";

/// Where a server's tasks run: on the current thread's runtime
/// ([`Builder::with_runtime`](crate::Builder::with_runtime)), or on a thread a [`Launch`] starts
/// ([`Builder::new`](crate::Builder::new), [`Builder::with_launcher`](crate::Builder::with_launcher)).
pub(super) enum Place<R: Runtime> {
    Here(R),
    Launched(Box<dyn Launch<Runtime = R>>),
}

/// What every thread of a server is built from.
pub(super) struct Spec {
    pub(super) config: Config,
    pub(super) pending: Vec<PendingListener>,
    /// For each pending listener, the threads accepting on it (shared by
    /// every thread's part).
    pub(super) accepting: Vec<Arc<Accepting>>,
    pub(super) hooks: Hooks,
    /// Where its driver's events go.
    pub(super) events: Sink,
}

/// One thread's part of a built server, not yet serving: its worker and
/// its listeners, registered with the runtime.
pub(super) struct Member<R: Runtime> {
    worker: Arc<Worker<R>>,
    listeners: Vec<(ListenerId, Arc<ListenSocket<R>>, Arc<Stop>)>,
}

/// How each thread's part starts serving: makes the connection server on
/// that thread (the handler travels to every one).
pub(super) type ServeMaker<R> = Arc<dyn Fn(&R) -> Arc<dyn ServeConn<R>> + Send + Sync>;

/// What a server's thread is sent to start serving: the maker, and where
/// to say that it serves.
type ServeOrder<R> = (ServeMaker<R>, std::sync::mpsc::Sender<()>);

/// What a built server keeps until it serves.
pub(super) enum Unserved<R: Runtime> {
    /// Its part on this thread.
    Here(Member<R>),
    /// Its threads, each waiting for the handler (and saying when it
    /// serves).
    Launched(Vec<async_channel::Sender<ServeOrder<R>>>),
}

impl Spec {
    /// The part of the server thread `index` of `group` builds: the same
    /// listening sockets (new descriptors), the same configuration, events
    /// reported through the group; the hooks run once, on the first; a Unix socket's file is
    /// the first's to remove.
    fn for_thread(&mut self, index: usize, group: &Arc<Group>) -> io::Result<Spec> {
        let pending = self
            .pending
            .iter()
            .map(|pending| {
                Ok(match pending {
                    PendingListener::Tcp(l, name, bound) => {
                        PendingListener::Tcp(l.try_clone()?, name.clone(), *bound)
                    }
                    PendingListener::Unix(l, unlink, name) => PendingListener::Unix(
                        l.try_clone()?,
                        unlink.clone().filter(|_| index == 0),
                        name.clone(),
                    ),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Spec {
            config: self.config.clone(),
            pending,
            accepting: self.accepting.clone(),
            hooks: if index == 0 {
                std::mem::take(&mut self.hooks)
            } else {
                Hooks::default()
            },
            events: Sink::Thread {
                group: group.clone(),
                index,
            },
        })
    }
}

impl<R: Runtime> Place<R> {
    /// Builds the server's parts where they run: on `threads` threads.
    pub(super) fn start(self, mut spec: Spec, threads: usize) -> io::Result<(Handle, Unserved<R>)> {
        match self {
            Place::Here(rt) => {
                if threads != 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a server on the current thread's runtime runs on that thread only: \
                         use a launcher (Builder::with_launcher) for several threads",
                    ));
                }
                let (member, driver, addrs) = Member::build(rt, spec)?;
                Ok((Handle::new(vec![driver], addrs), Unserved::Here(member)))
            }
            Place::Launched(launcher) => {
                let mut drivers = Vec::with_capacity(threads);
                let mut serves = Vec::with_capacity(threads);
                let mut addrs = Vec::new();
                let group = Group::new(threads.max(1), spec.events.observer());
                for index in 0..threads.max(1) {
                    let mut part = spec.for_thread(index, &group)?;
                    if threads <= 1 {
                        // One thread: the server's own events, no group.
                        part.events = spec.events.clone();
                    }
                    let name = if threads > 1 {
                        format!("lameduck-{index}")
                    } else {
                        "lameduck".into()
                    };
                    let (driver, thread_addrs, serve) = launch(&*launcher, part, name)?;
                    drivers.push(driver);
                    serves.push(serve);
                    addrs = thread_addrs;
                }
                // The originals close: each thread has its own descriptors.
                drop(spec);
                Ok((Handle::new(drivers, addrs), Unserved::Launched(serves)))
            }
        }
    }
}

/// Builds one thread's part of the server on a thread `launcher` starts,
/// and waits until it is built; the thread then waits for the handler,
/// serves, and ends once its part is finished.
#[allow(clippy::type_complexity)]
fn launch<R: Runtime>(
    launcher: &dyn Launch<Runtime = R>,
    spec: Spec,
    name: String,
) -> io::Result<(
    Arc<Driver>,
    Vec<ListenAddr>,
    async_channel::Sender<ServeOrder<R>>,
)> {
    let (built_tx, built_rx) = std::sync::mpsc::channel();
    let (serve_tx, serve_rx) = async_channel::bounded::<ServeOrder<R>>(1);
    let main: ThreadMain<R> = Box::new(move |rt| {
        Box::pin(async move {
            let (member, driver, addrs) = match Member::build(rt, spec) {
                Ok(built) => built,
                Err(e) => {
                    let _ = built_tx.send(Err(e));
                    return;
                }
            };
            let _ = built_tx.send(Ok((driver.clone(), addrs)));
            // Closed unsent: the server was dropped unserved.
            let Ok((make, serving)) = serve_rx.recv().await else {
                return;
            };
            let serve = make(&member.worker.rt);
            member.serve(serve);
            let _ = serving.send(());
            let _ = driver.finished().await;
        })
    });
    launcher.launch(name, main)?;
    let (driver, addrs) = built_rx
        .recv()
        .map_err(|_| io::Error::other("the server's thread ended before the server was built"))??;
    Ok((driver, addrs, serve_tx))
}

impl<R: Runtime> Unserved<R> {
    /// Starts serving with `make` wherever the parts are; returns once
    /// every thread serves (a handed-in connection, say, is taken).
    pub(super) fn serve(self, make: ServeMaker<R>) {
        match self {
            Unserved::Here(member) => {
                let serve = make(&member.worker.rt);
                member.serve(serve);
            }
            // Each thread waits for it (bounded 1, sent once) and says when
            // it serves.
            Unserved::Launched(threads) => {
                let (serving, on_serving) = std::sync::mpsc::channel();
                let mut sent = 0;
                for thread in threads {
                    if thread.try_send((make.clone(), serving.clone())).is_ok() {
                        sent += 1;
                    }
                }
                drop(serving);
                for _ in 0..sent {
                    // Ends early only if a thread ended (its part is done).
                    if on_serving.recv().is_err() {
                        break;
                    }
                }
            }
        }
    }
}

impl<R: Runtime> Member<R> {
    /// Registers `spec`'s listeners with `rt` and starts a worker for a
    /// new driver, on the current thread (`rt`'s).
    fn build(rt: R, spec: Spec) -> io::Result<(Member<R>, Arc<Driver>, Vec<ListenAddr>)> {
        let mut sockets = Vec::with_capacity(spec.pending.len());
        let mut addrs = Vec::with_capacity(spec.pending.len());
        for (pending, accepting) in spec.pending.into_iter().zip(spec.accepting) {
            match pending {
                PendingListener::Tcp(listener, name, bound_here) => {
                    let socket = rt.tcp_listener(listener)?;
                    addrs.push(ListenAddr::Tcp(R::tcp_local_addr(&socket)?));
                    let accepting = bound_here.then_some(accepting);
                    sockets.push((ListenSocket::tcp(socket, accepting)?, name));
                }
                PendingListener::Unix(listener, unlink, name) => {
                    let path = listener
                        .local_addr()?
                        .as_pathname()
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    let socket = rt.unix_listener(listener)?;
                    addrs.push(ListenAddr::Unix(path));
                    sockets.push((ListenSocket::unix(socket, unlink)?, name));
                }
            }
        }
        let driver = Driver::new(spec.config, spec.hooks, spec.events);
        let worker = Worker::start(rt, driver.clone());
        let mut listeners = Vec::with_capacity(sockets.len());
        for (socket, name) in sockets {
            let socket = Arc::new(socket);
            let stop = Arc::new(Stop::default());
            let entry = ListenerEntry {
                socket: socket.fd.clone(),
                stop: stop.clone(),
                name,
            };
            // A fresh core is Serving: adding a listener cannot be refused.
            let id = driver
                .add_listener(entry)
                .map_err(|e| io::Error::other(format!("adding a listener: {e}")))?;
            listeners.push((id, socket, stop));
        }
        let member = Member { worker, listeners };
        Ok((member, driver, addrs))
    }

    /// Starts serving: an accept loop per listener.
    fn serve(mut self, serve: Arc<dyn ServeConn<R>>) {
        let worker = self.worker.clone();
        worker.set_serve(serve.clone());
        for (id, socket, stop) in self.listeners.drain(..) {
            worker
                .rt
                .spawn(accept_loop(worker.clone(), id, socket, stop, serve.clone()));
        }
    }
}

impl<R: Runtime> Drop for Member<R> {
    fn drop(&mut self) {
        // Listeners never served have no accept loop to report its end.
        for (_, _, stop) in &self.listeners {
            stop.exited();
        }
    }
}
