//! The futures a run loop drives beside its own events (a restart in
//! flight, an announcement), without a runtime to spawn them on: polled in
//! turn whenever the loop waits.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A set of tasks, polled by [`Tasks::run`].
#[derive(Default)]
pub(crate) struct Tasks {
    running: Vec<Task>,
}

impl Tasks {
    /// Adds `task`; it runs from the next [`run`](Self::run) on.
    pub(crate) fn push(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.running.push(Box::pin(task));
    }

    /// Polls every task whenever woken, dropping those that complete.
    /// Never completes: race it against the loop's other events.
    pub(crate) async fn run(&mut self) {
        poll_fn(|cx| {
            self.running
                .retain_mut(|task| task.as_mut().poll(cx).is_pending());
            Poll::<()>::Pending
        })
        .await;
    }
}

impl Tasks {
    /// Polls every task until none is left.
    pub(crate) async fn finish(&mut self) {
        poll_fn(|cx| {
            self.running
                .retain_mut(|task| task.as_mut().poll(cx).is_pending());
            if self.running.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("running", &self.running.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_lite::FutureExt;

    use super::Tasks;

    #[test]
    fn tasks_run_to_completion_beside_the_loop() {
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Tasks::default();
        for i in 0..3u64 {
            let done = done.clone();
            tasks.push(async move {
                async_io::Timer::after(std::time::Duration::from_millis(i * 5)).await;
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let all = async {
            // Bounded: each pass sleeps a little; the three end within 10 ms.
            while done.load(Ordering::SeqCst) < 3 {
                async_io::Timer::after(std::time::Duration::from_millis(1)).await;
            }
        };
        futures_lite::future::block_on(all.or(tasks.run()));
        assert!(tasks.running.is_empty());
    }
}
