//! [`BackgroundTask`]: the handle every background task of the crate returns.

use tokio::task::JoinHandle;

/// The handle of a background task (L1's cleanup, refresh-ahead, the backplane). The task
/// holds only a `Weak` to its cache, so it ends when the cache is dropped; dropping this
/// handle aborts it at once.
#[derive(Debug)]
#[must_use = "the background task stops when its handle is dropped"]
pub struct BackgroundTask {
    handle: JoinHandle<()>,
}

impl BackgroundTask {
    pub(crate) fn new(handle: JoinHandle<()>) -> Self {
        Self { handle }
    }

    /// True once the task has ended (its cache was dropped, or it was stopped).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops the task.
    pub fn stop(self) {}
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
