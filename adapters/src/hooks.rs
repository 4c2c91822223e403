//! Shutdown hooks: async, run in registration order, awaited, and cut off
//! when the core says so (`Action::CutOffHooks`: at the shutdown deadline,
//! or on `close()`) or when the server completes.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_lite::FutureExt;
use lameduck_core::HookStage;

use crate::sync::Stop;

type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
pub(crate) type Hook = Arc<dyn Fn() -> HookFuture + Send + Sync>;

/// The hooks of a server, by stage, and each stage's cut-off signal.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) lame_duck: Vec<Hook>,
    pub(crate) drain: Vec<Hook>,
    pub(crate) forced_close: Vec<Hook>,
    /// Set by `Action::CutOffHooks`, indexed by [`stage_index`].
    cut_off: [Arc<Stop>; 3],
}

fn stage_index(stage: HookStage) -> usize {
    match stage {
        HookStage::LameDuck => 0,
        HookStage::Drain => 1,
        HookStage::ForcedClose => 2,
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("lame_duck", &self.lame_duck.len())
            .field("drain", &self.drain.len())
            .field("forced_close", &self.forced_close.len())
            .finish_non_exhaustive()
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
        self.lame_duck.is_empty() && self.drain.is_empty() && self.forced_close.is_empty()
    }

    /// Stops running the hooks of `stage` (the core gave up waiting).
    pub(crate) fn cut_off(&self, stage: HookStage) {
        self.cut_off[stage_index(stage)].stop();
    }

    /// The hooks of `stage`, in registration order: resolves to `true`
    /// once all finished, `false` if the core cut the stage off first
    /// ([`cut_off`](Self::cut_off)).
    pub(crate) fn run_stage(&self, stage: HookStage) -> impl Future<Output = bool> + 'static {
        let hooks = match stage {
            HookStage::LameDuck => self.lame_duck.clone(),
            HookStage::Drain => self.drain.clone(),
            HookStage::ForcedClose => self.forced_close.clone(),
        };
        let cut = self.cut_off[stage_index(stage)].clone();
        let run = async move {
            for hook in &hooks {
                // A panicking hook is the application's bug; it counts as
                // finished rather than holding the drain.
                let _ = AssertUnwindSafe(hook()).catch_unwind().await;
            }
            true
        };
        run.or(async move {
            cut.wait().await;
            false
        })
    }
}
