//! A backplane notice supersedes L1's copy (`expire_now`: the copy kept for stale serving, the
//! flag's fence advanced) while its reload is pending. A fill that began before the notice, with
//! what was current then, never makes the superseded copy fresh again.

use flagcache::__internals::expire_now;
use flagcache::{Clock, LocalCache, MockClock};
use flagcache_loom_tests::{assert_bound, flag, model, set};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

/// Two flags, a minute's TTL, and a minute's stale grace, as a tiered cache's L1 has.
fn cache() -> LocalCache {
    let mock = MockClock::new();
    LocalCache::builder()
        .max_size(2)
        .default_ttl(Duration::from_secs(60))
        .stale_grace(Duration::from_secs(60))
        .clock(Clock::mock(&mock))
        .build()
        .expect("a valid configuration")
}

#[test]
fn a_fill_begun_before_a_notice_never_makes_the_superseded_copy_fresh() {
    model(|| {
        let c = Arc::new(cache());
        set(&c, "x", 1);
        let ticket = c.begin_fill("x");
        let c2 = Arc::clone(&c);
        let filler = thread::spawn(move || {
            c2.complete_fill(&ticket, std::sync::Arc::new(flag("x", 1)), None)
        });
        expire_now(&c, "x");
        assert!(c.get_now("x").is_none(), "the superseded copy is fresh");
        filler.join().unwrap();
        assert!(c.get_now("x").is_none(), "the old load made it fresh again");
        assert!(c.get_stale("x").is_some(), "kept for stale serving");
        assert_bound(&c);
    });
}
