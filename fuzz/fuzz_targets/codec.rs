//! Arbitrary bytes decoded as a definition stored in Redis (the L2 value codec).
//!
//! The checks live in `tests/support/codec.rs`, so `tests/fuzz_corpus.rs` replays this target's
//! corpus on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/codec.rs"]
mod codec;

fuzz_target!(|data: &[u8]| codec::run(data));
