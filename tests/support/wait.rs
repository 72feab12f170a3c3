//! Waiting in tests for something another task or instance does, bounded in time.

#![allow(dead_code)] // each test file uses its own part

use std::time::{Duration, Instant};

/// Polls `done` every millisecond until it holds; fails the test after 5 s. Returns how long it
/// took.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}
