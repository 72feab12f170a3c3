//! The tiered cache's single-flight table: one leader per flag at a time, and every follower
//! learns the landed value or that the flight was abandoned (then it joins again) — never a
//! flight that stays in the air.

use flagcache::__internals::{Joined, SingleFlight};
use flagcache_loom_tests::model;
use loom::sync::Arc;
use loom::thread;

/// Follows until the flight lands or is abandoned.
fn follow(joined: &Joined) -> Option<u64> {
    loop {
        if let Some(outcome) = joined.outcome() {
            return outcome;
        }
        thread::yield_now();
    }
}

/// Joins `id` until this caller gets a value: leading (landing `mine`) or following.
fn get(flights: &SingleFlight, id: &str, mine: u64) -> u64 {
    loop {
        let joined = flights.join(id);
        if joined.is_leader() {
            joined.land(mine);
            return mine;
        }
        if let Some(v) = follow(&joined) {
            return v;
        }
    }
}

#[test]
fn concurrent_joins_elect_one_leader_and_share_its_value() {
    model(|| {
        let flights = Arc::new(SingleFlight::default());
        let other = {
            let flights = Arc::clone(&flights);
            thread::spawn(move || get(&flights, "f", 2))
        };
        let a = get(&flights, "f", 1);
        let b = other.join().unwrap();
        // Either one flight served both, or the second joined after the first landed.
        assert!(a == b || (a, b) == (1, 2), "a={a} b={b}");
        assert_eq!(flights.in_air(), 0);
    });
}

#[test]
fn an_abandoned_flight_never_strands_a_follower() {
    model(|| {
        let flights = Arc::new(SingleFlight::default());
        let leader = flights.join("f");
        assert!(leader.is_leader());
        let follower = {
            let flights = Arc::clone(&flights);
            thread::spawn(move || get(&flights, "f", 9))
        };
        // The leader's caller is cancelled.
        drop(leader);
        assert_eq!(
            follower.join().unwrap(),
            9,
            "the follower led the next flight"
        );
        assert_eq!(flights.in_air(), 0);
    });
}

#[test]
fn a_landing_racing_a_join_is_seen_or_leaves_room_for_a_new_leader() {
    model(|| {
        let flights = Arc::new(SingleFlight::default());
        let leader = flights.join("f");
        let joiner = {
            let flights = Arc::clone(&flights);
            thread::spawn(move || {
                let joined = flights.join("f");
                if joined.is_leader() {
                    joined.land(5);
                    None
                } else {
                    Some(follow(&joined))
                }
            })
        };
        leader.land(4);
        match joiner.join().unwrap() {
            // Followed the first flight: it must have seen the landing, never an abandonment.
            Some(seen) => assert_eq!(seen, Some(4)),
            // Joined after the first flight left the table.
            None => {}
        }
        assert_eq!(flights.in_air(), 0);
    });
}
