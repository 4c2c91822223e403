//! The smol binding: a server on threads of its own, each running a
//! [`SmolLocal`] executor with `async-io`'s reactor.

use std::io;
use std::rc::Rc;

use smol::LocalExecutor;

use super::run_out;
use super::{Launch, SmolLocal, ThreadMain};

/// smol, on threads lameduck starts: each runs a `LocalExecutor` (the
/// server's tasks may be `!Send`) on `async-io`'s reactor. The default of
/// [`Builder::new`](crate::Builder::new); nothing for the application to
/// run.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let handle = lameduck::Builder::with_launcher(lameduck::runtime::Smol)
///     .bind("127.0.0.1:0")?
///     .serve_stream(|conn| async move { drop(conn) })?;
/// handle.close();
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Smol;

impl Launch for Smol {
    type Runtime = SmolLocal;

    fn launch(
        &self,
        name: String,
        main: ThreadMain<SmolLocal>,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(name).spawn(move || {
            let executor = Rc::new(LocalExecutor::new());
            let main = main(SmolLocal::new(executor.clone()));
            smol::block_on(run_out(&executor, main));
        })
    }
}
