//! Shutdown hooks: async, run in registration order, awaited, and cut off
//! when the server completes without them (at the shutdown deadline, or on
//! `close()`).

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_lite::FutureExt;
use lameduck_core::HookStage;

use crate::driver::Driver;
use crate::runtime::Runtime;

type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
pub(crate) type Hook = Arc<dyn Fn() -> HookFuture + Send + Sync>;

/// The hooks of a server, by stage.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) lame_duck: Vec<Hook>,
    pub(crate) drain: Vec<Hook>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("lame_duck", &self.lame_duck.len())
            .field("drain", &self.drain.len())
            .finish()
    }
}

pub(crate) fn hook<F, Fut>(f: F) -> Hook
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(f()) as HookFuture)
}

impl Hooks {
    pub(crate) fn is_empty(&self) -> bool {
        self.lame_duck.is_empty() && self.drain.is_empty()
    }

    /// Runs the hooks of `stage` in a task, then reports them finished —
    /// unless the server completes first, which drops (cuts off) them.
    pub(crate) fn spawn_stage<R: Runtime>(&self, driver: &Arc<Driver<R>>, stage: HookStage) {
        let hooks = match stage {
            HookStage::LameDuck => self.lame_duck.clone(),
            HookStage::Drain => self.drain.clone(),
        };
        let driver = driver.clone();
        let rt = driver.rt.clone();
        rt.spawn(async move {
            let run = async {
                for hook in &hooks {
                    // A panicking hook is the application's bug; it counts
                    // as finished rather than holding the drain.
                    let _ = AssertUnwindSafe(hook()).catch_unwind().await;
                }
                true
            };
            let cut_off = async {
                let _ = driver.drained().wait().await;
                false
            };
            if run.or(cut_off).await {
                driver.input(|core, now| core.hooks_finished(stage, now));
            }
        });
    }
}
