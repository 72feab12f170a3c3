//! Operation sequences against `LocalCache`, checked against a model after every step.
//!
//! The interpreter lives in `tests/support/l1_ops.rs`, so `tests/fuzz_corpus.rs` replays this
//! target's corpus on stable with the same checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/l1_ops.rs"]
mod l1_ops;

fuzz_target!(|data: &[u8]| l1_ops::run(data));
