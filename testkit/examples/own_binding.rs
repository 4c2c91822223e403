//! A runtime binding of your own, proven with the suite lameduck's bindings
//! pass.
//!
//! The runtime here is a minimal one written for this example — a run queue
//! of [`async_task`] tasks on one thread, with `async-io`'s reactor for
//! sockets and timers — bound to lameduck in one file: [`Runtime`] for the
//! thread's handle (`!Send`: it holds an `Rc`), [`Launch`] to start a
//! thread running it. The last lines run lameduck's whole conformance suite
//! (the scenarios, the adversarial clients, the seam's promises) on it:
//!
//! ```text
//! cargo test -p lameduck-testkit --features conformance --example own_binding
//! ```
//!
//! Below that, two deliberately broken variants (a timer that fires early, a
//! write shutdown that sends no FIN) and tests that the suite rejects each,
//! saying what is wrong.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;
use std::time::Instant;

use async_io::{Async, Timer};
use async_task::Runnable;
use lameduck::runtime::{Launch, Runtime, ThreadMain};
use lameduck::{Builder, Handle};
use lameduck_testkit::harness::Binding;

/// One thread's runtime: where its tasks are queued, and how many are
/// still running.
#[derive(Clone, Debug)]
pub struct Tiny {
    queue: async_channel::Sender<Runnable>,
    running: Rc<Cell<usize>>,
}

impl Tiny {
    /// Runs `main` with a fresh runtime on this thread, then every task
    /// still spawned, until none is left.
    pub fn run<F: Future<Output = ()> + 'static>(main: impl FnOnce(Tiny) -> F) {
        let (queue, runnables) = async_channel::unbounded();
        let tiny = Tiny {
            queue,
            running: Rc::new(Cell::new(0)),
        };
        tiny.spawn(main(tiny.clone()));
        async_io::block_on(async {
            // Each pass runs one task step; ends when no task is left.
            while tiny.running.get() > 0 {
                match runnables.recv().await {
                    Ok(runnable) => {
                        runnable.run();
                    }
                    Err(_) => break,
                }
            }
        });
    }
}

impl Runtime for Tiny {
    type TcpListener = Async<TcpListener>;
    type UnixListener = Async<UnixListener>;
    type TcpStream = Async<TcpStream>;
    type UnixStream = Async<UnixStream>;

    fn spawn<F: Future<Output = ()> + 'static>(&self, future: F) {
        let running = self.running.clone();
        running.set(running.get() + 1);
        let queue = self.queue.clone();
        let (runnable, task) = async_task::spawn_local(
            async move {
                future.await;
                running.set(running.get() - 1);
            },
            move |runnable| {
                // The queue lives as long as the thread's loop.
                let _ = queue.try_send(runnable);
            },
        );
        task.detach();
        runnable.schedule();
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + 'static {
        let timer = Timer::at(at);
        async move {
            timer.await;
        }
    }

    fn tcp_listener(&self, listener: TcpListener) -> io::Result<Self::TcpListener> {
        Async::new(listener)
    }

    fn unix_listener(&self, listener: UnixListener) -> io::Result<Self::UnixListener> {
        Async::new(listener)
    }

    async fn accept_tcp(listener: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (stream, _) = listener.accept().await?;
        let _ = stream.get_ref().set_nodelay(true);
        Ok(stream)
    }

    async fn accept_unix(listener: &Self::UnixListener) -> io::Result<Self::UnixStream> {
        Ok(listener.accept().await?.0)
    }

    fn tcp_shutdown_write(stream: &Self::TcpStream) -> io::Result<()> {
        stream.get_ref().shutdown(Shutdown::Write)
    }

    fn unix_shutdown_write(stream: &Self::UnixStream) -> io::Result<()> {
        stream.get_ref().shutdown(Shutdown::Write)
    }

    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.get_ref().local_addr()
    }
}

/// Starts threads running [`Tiny`]: how `Builder::with_launcher` serves
/// on it.
#[derive(Debug)]
pub struct TinyThreads;

impl Launch for TinyThreads {
    type Runtime = Tiny;

    fn launch(
        &self,
        name: String,
        main: ThreadMain<Tiny>,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(name)
            .spawn(move || Tiny::run(main))
    }
}

// ----- proving it ---------------------------------------------------------------

/// The binding, as the suite sees it: where a server is served.
#[derive(Debug)]
pub struct TinyBinding;

impl Binding for TinyBinding {
    type Runtime = Tiny;
    const NAME: &'static str = "tiny";

    fn serve_on<O, F>(build: F) -> (Handle, O)
    where
        O: Send + 'static,
        F: FnOnce(Builder<Tiny>) -> (Handle, O) + Send + 'static,
    {
        build(Builder::with_launcher(TinyThreads))
    }
}

/// Every test lameduck's own bindings pass, on this one.
#[cfg(test)]
mod conformance {
    lameduck_testkit::conformance!(super::TinyBinding);
}

// ----- and what a broken binding looks like --------------------------------------

/// [`Tiny`] with one defect, to show that the suite catches it.
#[cfg(test)]
mod broken {
    use super::*;
    use lameduck_testkit::seam;
    use std::marker::PhantomData;
    use std::time::Duration;

    /// A defect of a binding.
    trait Defect: Clone + std::fmt::Debug + Send + Sync + 'static {
        /// How much earlier than asked its timer fires.
        const EARLY: Duration = Duration::ZERO;
        /// Whether its write shutdown sends a FIN.
        const SENDS_FIN: bool = true;
    }

    /// A timer that fires 5 ms early (say, one that rounds down to a tick).
    #[derive(Clone, Debug)]
    struct FiresEarly;
    impl Defect for FiresEarly {
        const EARLY: Duration = Duration::from_millis(5);
    }

    /// A write shutdown that does nothing (the FIN only goes out when the
    /// socket is dropped).
    #[derive(Clone, Debug)]
    struct NoFin;
    impl Defect for NoFin {
        const SENDS_FIN: bool = false;
    }

    /// [`Tiny`] with the defect `D`; everything else as it is.
    #[derive(Clone, Debug)]
    struct Defective<D>(Tiny, PhantomData<D>);

    impl<D: Defect> Runtime for Defective<D> {
        type TcpListener = Async<TcpListener>;
        type UnixListener = Async<UnixListener>;
        type TcpStream = Async<TcpStream>;
        type UnixStream = Async<UnixStream>;

        fn spawn<F: Future<Output = ()> + 'static>(&self, future: F) {
            self.0.spawn(future);
        }
        fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + 'static {
            self.0.sleep_until(at.checked_sub(D::EARLY).unwrap_or(at))
        }
        fn tcp_listener(&self, l: TcpListener) -> io::Result<Self::TcpListener> {
            self.0.tcp_listener(l)
        }
        fn unix_listener(&self, l: UnixListener) -> io::Result<Self::UnixListener> {
            self.0.unix_listener(l)
        }
        async fn accept_tcp(l: &Self::TcpListener) -> io::Result<Self::TcpStream> {
            Tiny::accept_tcp(l).await
        }
        async fn accept_unix(l: &Self::UnixListener) -> io::Result<Self::UnixStream> {
            Tiny::accept_unix(l).await
        }
        fn tcp_shutdown_write(s: &Self::TcpStream) -> io::Result<()> {
            if D::SENDS_FIN {
                Tiny::tcp_shutdown_write(s)
            } else {
                Ok(())
            }
        }
        fn unix_shutdown_write(s: &Self::UnixStream) -> io::Result<()> {
            Tiny::unix_shutdown_write(s)
        }
        fn tcp_local_addr(l: &Self::TcpListener) -> io::Result<SocketAddr> {
            Tiny::tcp_local_addr(l)
        }
    }

    /// Threads running [`Defective`], served as a [`Binding`].
    #[derive(Debug)]
    struct DefectiveBinding<D>(PhantomData<D>);

    impl<D: Defect> Launch for DefectiveBinding<D> {
        type Runtime = Defective<D>;
        fn launch(
            &self,
            name: String,
            main: ThreadMain<Defective<D>>,
        ) -> io::Result<std::thread::JoinHandle<()>> {
            std::thread::Builder::new()
                .name(name)
                .spawn(move || Tiny::run(|tiny| main(Defective(tiny, PhantomData))))
        }
    }

    impl<D: Defect> Binding for DefectiveBinding<D> {
        type Runtime = Defective<D>;
        const NAME: &'static str = "defective";

        fn serve_on<O, F>(build: F) -> (Handle, O)
        where
            O: Send + 'static,
            F: FnOnce(Builder<Defective<D>>) -> (Handle, O) + Send + 'static,
        {
            build(Builder::with_launcher(DefectiveBinding::<D>(PhantomData)))
        }
    }

    /// Runs `check`, which must fail; returns its panic message.
    fn failure_of(check: fn()) -> String {
        let failure = std::panic::catch_unwind(check).expect_err("the broken binding passed");
        seam::panic_message(&*failure).to_owned()
    }

    #[test]
    fn a_timer_that_fires_early_is_named() {
        let message = failure_of(seam::sleep_until_is_never_early::<DefectiveBinding<FiresEarly>>);
        assert!(
            message.contains("[defective] Runtime::sleep_until fired") && message.contains("early"),
            "{message}"
        );
    }

    #[test]
    fn a_shutdown_without_fin_is_named() {
        let message = failure_of(seam::tcp_shutdown_write_sends_fin::<DefectiveBinding<NoFin>>);
        assert!(
            message.contains("[defective] Runtime::tcp_shutdown_write sent no FIN"),
            "{message}"
        );
    }

    /// The defects are all there is: without them, the same wrapper passes.
    #[derive(Clone, Debug)]
    struct Sound;
    impl Defect for Sound {}

    #[test]
    fn the_wrapper_without_a_defect_passes() {
        seam::sleep_until_is_never_early::<DefectiveBinding<Sound>>();
        seam::tcp_shutdown_write_sends_fin::<DefectiveBinding<Sound>>();
    }
}

fn main() {
    // A server on this binding, drained: what the tests above run in depth.
    let handle = Builder::with_launcher(TinyThreads)
        .bind("127.0.0.1:0")
        .expect("binding 127.0.0.1:0")
        .serve_stream(|conn| async move { drop(conn) })
        .expect("serving");
    handle.shutdown_within(std::time::Duration::from_secs(5));
    let outcome =
        futures_lite::future::block_on(handle.finished()).expect("the driver ran to its end");
    println!("drained on the tiny runtime: {outcome:?}");
}
