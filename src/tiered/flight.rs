//! Single-flight: concurrent misses of one flag share one load.
//!
//! The first caller to [`Flights::join`] a flag becomes its leader and loads it; callers that
//! join while the flight is up follow it and wait for what it lands. A leader that is dropped
//! before it lands (its caller's future was cancelled) abandons the flight: its followers are
//! woken and join again, one of them becoming the new leader, so none is stranded.
//!
//! A landed outcome is set before the flight leaves the map, so a caller joining in between
//! gets it at once instead of loading again; an abandoned flight leaves the map first, so the
//! followers it releases can lead the next one.

use crate::flag::FlagId;
use crate::sync::{Arc, ConcurrentMap, MapOp, MapOutcome, Mutex, lock};
use tokio::sync::Notify;

/// The flights in the air, one per flag at most.
pub(crate) struct Flights<T> {
    map: ConcurrentMap<Arc<Flight<T>>>,
}

/// One load and what it landed.
pub(crate) struct Flight<T> {
    state: Mutex<State<T>>,
    landed: Notify,
}

enum State<T> {
    InAir,
    Landed(T),
    Abandoned,
}

/// What [`Flights::join`] made the caller.
pub(crate) enum Role<T: Send + Sync> {
    /// Load the flag, then [`Leader::land`] the outcome.
    Leader(Leader<T>),
    /// Wait for the leader: [`Flight::wait`].
    Follower(Arc<Flight<T>>),
}

/// The duty to land a flight; dropping it abandons the flight. Owns a handle on its
/// `Flights`, so a background task can carry it.
pub(crate) struct Leader<T: Send + Sync> {
    flights: Arc<Flights<T>>,
    id: FlagId,
    flight: Arc<Flight<T>>,
    landed: bool,
}

impl<T: Clone + Send + Sync> Flights<T> {
    pub(crate) fn new() -> Self {
        Self {
            map: ConcurrentMap::with_capacity(64),
        }
    }

    /// Leads a new flight for `id`, or follows the one in the air.
    pub(crate) fn join(self: &Arc<Self>, id: &FlagId) -> Role<T> {
        let mine = Arc::new(Flight {
            state: Mutex::new(State::InAir),
            landed: Notify::new(),
        });
        let joined = self.map.compute(id.clone(), |up| match up {
            Some(flight) => MapOp::Abort(Arc::clone(flight)),
            None => MapOp::Insert(Arc::clone(&mine)),
        });
        match joined {
            MapOutcome::Aborted(flight) => Role::Follower(flight),
            MapOutcome::Inserted | MapOutcome::Updated => Role::Leader(Leader {
                flights: Arc::clone(self),
                id: id.clone(),
                flight: mine,
                landed: false,
            }),
        }
    }

    /// Takes `id`'s flight out of the table, if one is up: its leader still lands it for the
    /// callers already waiting, but a caller joining from now on leads a new flight. A write
    /// calls this, so a read that starts after the write never receives a load begun before.
    pub(crate) fn detach(&self, id: &str) {
        self.map.remove_if(id, |_| true, |_| ());
    }

    /// [`detach`](Self::detach) for every flight up.
    pub(crate) fn detach_all(&self) {
        self.map.clear();
    }

    /// Flights in the air now.
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn in_air(&self) -> usize {
        self.map.len()
    }
}

impl<T: Send + Sync> Leader<T> {
    /// Hands `outcome` to every follower, present and joining.
    pub(crate) fn land(mut self, outcome: T) {
        self.finish(State::Landed(outcome));
        self.landed = true;
    }

    /// A landing is published before the flight leaves the table (a caller joining in between
    /// gets it at once); an abandonment after (a follower told to join again finds the table
    /// free and leads, instead of spinning on the abandoned flight).
    fn finish(&mut self, state: State<T>) {
        let abandoned = matches!(state, State::Abandoned);
        if abandoned {
            self.leave_table();
        }
        *lock(&self.flight.state) = state;
        self.flight.landed.notify_waiters();
        if !abandoned {
            self.leave_table();
        }
    }

    fn leave_table(&self) {
        let flight = &self.flight;
        self.flights
            .map
            .remove_if(self.id.as_str(), |up| Arc::ptr_eq(up, flight), |_| ());
    }
}

impl<T: Send + Sync> Drop for Leader<T> {
    fn drop(&mut self) {
        if !self.landed {
            self.finish(State::Abandoned);
        }
    }
}

impl<T: Clone> Flight<T> {
    /// `Some(Some(outcome))` once landed, `Some(None)` once abandoned (join again), `None`
    /// while in the air.
    pub(crate) fn outcome(&self) -> Option<Option<T>> {
        match &*lock(&self.state) {
            State::InAir => None,
            State::Landed(outcome) => Some(Some(outcome.clone())),
            State::Abandoned => Some(None),
        }
    }

    /// Waits for the flight: its outcome, or `None` when its leader abandoned it.
    pub(crate) async fn wait(&self) -> Option<T> {
        loop {
            // Registered before the state is checked, so a landing in between still wakes us.
            let notified = self.landed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            notified.await;
        }
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_what_the_leader_lands() {
        let flights = Arc::new(Flights::<u32>::new());
        let id = FlagId::new("f");
        let Role::Leader(leader) = flights.join(&id) else {
            panic!("first is the leader")
        };
        let Role::Follower(flight) = flights.join(&id) else {
            panic!("second follows")
        };
        let waiting = tokio::spawn(async move { flight.wait().await });
        tokio::task::yield_now().await;
        leader.land(7);
        assert_eq!(waiting.await.unwrap(), Some(7));
        assert_eq!(flights.in_air(), 0);
        assert!(
            matches!(flights.join(&id), Role::Leader(_)),
            "a new flight after landing"
        );
    }

    #[tokio::test]
    async fn an_abandoned_flight_releases_its_followers() {
        let flights = Arc::new(Flights::<u32>::new());
        let id = FlagId::new("f");
        let leader = flights.join(&id);
        let Role::Follower(flight) = flights.join(&id) else {
            panic!()
        };
        let waiting = tokio::spawn(async move { flight.wait().await });
        tokio::task::yield_now().await;
        drop(leader);
        assert_eq!(waiting.await.unwrap(), None, "told to join again");
        assert_eq!(flights.in_air(), 0);
    }

    #[test]
    fn flights_of_different_flags_are_independent() {
        let flights = Arc::new(Flights::<u32>::new());
        let a = flights.join(&FlagId::new("a"));
        let b = flights.join(&FlagId::new("b"));
        assert!(matches!((&a, &b), (Role::Leader(_), Role::Leader(_))));
        assert_eq!(flights.in_air(), 2);
    }
}
