//! Drivers of a coarse clock coming and going: while one runs, readers read the coarse tick
//! (and the clock thread keeps it fresh); once none does, they read the system clock. A driver
//! starting as the last one stops must not leave the clock on a tick nobody moves, nor on the
//! system clock while it is driven.

use flagcache::__internals::{drive, is_coarse, tick};
use flagcache::Clock;
use flagcache_loom_tests::model;
use loom::thread;

/// The last driver stops while another starts, and the clock thread ticks meanwhile.
#[test]
fn a_driver_starting_as_the_last_stops_keeps_the_clock_coarse() {
    model(|| {
        let clock = Clock::system();
        let first = drive(&clock);
        let c2 = clock.clone();
        let starting = thread::spawn(move || drive(&c2));
        let c3 = clock.clone();
        let ticker = thread::spawn(move || tick(&c3));
        drop(first);
        let second = starting.join().unwrap();
        ticker.join().unwrap();
        assert!(
            is_coarse(&clock),
            "driven, yet readers read the system clock"
        );
        drop(second);
        tick(&clock);
        assert!(
            !is_coarse(&clock),
            "no driver, yet readers read a tick nobody moves"
        );
    });
}
