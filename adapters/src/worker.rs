//! The worker: a server's presence on its runtime. Its one task sleeps
//! until the driver's deadline and tells the core the time, and carries out
//! the driver's [`Order`]s that need the runtime (spawning hooks, serving
//! handed-in connections); accept loops and connection tasks hold it to
//! spawn and to reach the driver. How it serves a connection is a
//! [`ServeConn`] (HTTP, raw streams, TLS in front of either).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use futures_lite::FutureExt;

use lameduck_core::ConnId;

use crate::conn::{ClosingSocket, ConnIo, Socket, Transport};
use crate::control::Control;
use crate::driver::{Driver, Order};
use crate::runtime::Runtime;

/// How a connection is served once accepted (HTTP/1.1, a raw stream).
pub(crate) trait ServeConn<R: Runtime>: 'static {
    /// Serves `io` in a task of its own on `worker`'s runtime.
    fn serve(&self, worker: &Arc<Worker<R>>, io: Transport<R>);
}

/// A server's runtime handle beside its driver.
pub(crate) struct Worker<R: Runtime> {
    pub(crate) rt: R,
    pub(crate) driver: Arc<Driver>,
    /// How connections are served, once the server serves.
    serve: OnceLock<Arc<dyn ServeConn<R>>>,
    /// Gentle closes to run (the task holds the receiver while it takes
    /// them).
    closing: async_channel::Sender<ClosingSocket<R>>,
}

impl<R: Runtime> fmt::Debug for Worker<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("rt", &self.rt)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Worker<R> {
    /// A worker for `driver` on `rt`, with its task running.
    pub(crate) fn start(rt: R, driver: Arc<Driver>) -> Arc<Worker<R>> {
        let (closing, closing_rx) = async_channel::unbounded();
        let worker = Arc::new(Worker {
            rt,
            driver,
            serve: OnceLock::new(),
            closing,
        });
        worker.rt.spawn(worker_task(worker.clone(), closing_rx));
        worker
    }

    /// `socket`, registered with the core as `conn`, tied to this
    /// worker's driver; its gentle close runs here.
    pub(crate) fn conn_io(
        &self,
        conn: ConnId,
        control: Arc<Control>,
        socket: Socket<R>,
    ) -> ConnIo<R> {
        ConnIo::new(
            self.driver.clone(),
            self.closing.clone(),
            conn,
            control,
            socket,
        )
    }

    /// The server serves with `serve` (once): handed-in connections too.
    pub(crate) fn set_serve(&self, serve: Arc<dyn ServeConn<R>>) {
        let _ = self.serve.set(serve);
        self.driver.serving.store(true, Ordering::Release);
    }

    fn carry_out(self: &Arc<Self>, order: Order) {
        match order {
            // The hooks run in a task, then are reported finished — unless
            // the server completes first, which drops (cuts off) them.
            Order::RunHooks(stage) => {
                let run = self.driver.hooks.run_stage(stage);
                let driver = self.driver.clone();
                self.rt.spawn(async move {
                    let completed = async {
                        let _ = driver.drained().wait().await;
                        false
                    };
                    if run.or(completed).await {
                        driver.input(|core, now| core.hooks_finished(stage, now));
                    }
                });
            }
            Order::Spawn(task) => self.rt.spawn(task),
            Order::ServeHandedIn { conn, control, io } => match self.serve.get() {
                Some(serve) => {
                    let socket = Socket::Io(std::sync::Mutex::new(io));
                    let io = self.conn_io(conn, control, socket);
                    serve.serve(self, Transport::Plain(io));
                }
                // `serving` is set after `serve`: cannot happen. Dropping
                // the stream ends it; the core hears it closed.
                None => {
                    let _ = self.driver.input(|core, now| core.closed(conn, now));
                }
            },
        }
    }
}

/// The worker's one task. Until the core is done: sleeps until the armed
/// deadline or until it changes, then tells the core the time; carries out
/// orders as they come. After that: cuts the gentle closes still in
/// progress at the shutdown deadline, if one was given.
async fn worker_task<R: Runtime>(
    worker: Arc<Worker<R>>,
    closing: async_channel::Receiver<ClosingSocket<R>>,
) {
    let driver = &worker.driver;
    let orders = driver.orders_rx.clone();
    enum Woke<R: Runtime> {
        Timer(bool),
        Order(Option<Order>),
        Closing(ClosingSocket<R>),
    }
    // Each pass handles a timeout, a changed deadline or one order; the
    // loop ends when the core is done (no deadline is ever armed again).
    loop {
        let changed = driver.timer_listen();
        let (armed, done) = driver.armed();
        if done {
            break;
        }
        let timer = async {
            match armed {
                None => {
                    changed.await;
                    Woke::Timer(false)
                }
                Some(at) => {
                    let fired = async {
                        worker.rt.sleep_until(at).await;
                        true
                    }
                    .or(async {
                        changed.await;
                        false
                    })
                    .await;
                    Woke::Timer(fired)
                }
            }
        };
        let order = async { Woke::Order(orders.recv().await.ok()) };
        let closing_socket = async {
            match closing.recv().await {
                Ok(socket) => Woke::Closing(socket),
                // The worker holds a sender: cannot happen.
                Err(_) => std::future::pending().await,
            }
        };
        match order.or(closing_socket).or(timer).await {
            Woke::Timer(true) => driver.input(|core, now| core.handle_timeout(now)),
            Woke::Timer(false) | Woke::Order(None) => {}
            Woke::Order(Some(order)) => worker.carry_out(order),
            Woke::Closing(socket) => socket.spawn(&worker.rt, &driver.gentle_closes),
        }
    }
    // Orders that came with the end (hooks are cut off by now; a handed-in
    // connection was refused by the core before any order).
    while let Ok(order) = orders.try_recv() {
        worker.carry_out(order);
    }
    // Gentle closes still come (connections dropped with the end) and
    // run, until none is in progress — cut at the shutdown deadline, if one
    // was given. Then the receiver goes: later ones close at once.
    let closes = &driver.gentle_closes;
    let deadline = driver.deadline();
    let take = async {
        // Each pass runs one gentle close; ends when none is in progress.
        loop {
            let next = async { closing.recv().await.ok() };
            let ended = async {
                closes.ended().await;
                None
            };
            match next.or(ended).await {
                Some(socket) => socket.spawn(&worker.rt, &driver.gentle_closes),
                None => return,
            }
        }
    };
    match deadline {
        Some(at) => take.or(worker.rt.sleep_until(at)).await,
        None => take.await,
    }
    if deadline.is_some() {
        closes.cut();
    }
}
