//! A write or invalidate detaches the flag's flight: a read that starts after the write
//! returned leads a new load (or follows one begun after the write), so it never receives
//! what a load begun before the write read. The database is one atomic: the write stores
//! version 2 into it, then detaches; the loads read it.

use flagcache::__internals::SingleFlight;
use flagcache_loom_tests::model;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

/// Reads through the flights: a leader loads from `db` and lands it; a follower takes what
/// its flight landed (or joins again when it was abandoned).
fn read(flights: &SingleFlight, db: &AtomicU64) -> u64 {
    loop {
        let joined = flights.join("f");
        if joined.is_leader() {
            let loaded = db.load(Ordering::SeqCst);
            joined.land(loaded);
            return loaded;
        }
        loop {
            match joined.outcome() {
                Some(Some(v)) => return v,
                Some(None) => break,
                None => thread::yield_now(),
            }
        }
    }
}

fn run(detach: bool) {
    model(move || {
        let flights = Arc::new(SingleFlight::default());
        let db = Arc::new(AtomicU64::new(1));
        let early = {
            let (flights, db) = (Arc::clone(&flights), Arc::clone(&db));
            thread::spawn(move || read(&flights, &db))
        };
        // The writer: update the source of truth, then detach (as `try_invalidate` does).
        db.store(2, Ordering::SeqCst);
        if detach {
            flights.detach("f");
        }
        // A read that starts after the write returned.
        let late = read(&flights, &db);
        assert_eq!(
            late, 2,
            "a read after the write received a load begun before it"
        );
        early.join().unwrap();
        assert_eq!(flights.in_air(), 0);
    });
}

#[test]
fn a_read_after_a_write_never_receives_a_load_begun_before() {
    run(true);
}

/// Without the detach the model must find the late read following the early load, or it
/// proves nothing.
#[test]
#[should_panic(expected = "a load begun before")]
fn without_the_detach_a_late_read_joins_the_old_load() {
    run(false);
}
