//! The concurrency facade: every atomic, lock and concurrent map the crate uses
//! comes from here, so the loom build (`--cfg flagcache_loom`) can swap in model-checkable
//! stand-ins. `clippy.toml` forbids the std and third-party types everywhere else.
//!
//! Under loom, `papaya::HashMap` becomes a `RwLock<BTreeMap>`: loom cannot see inside papaya,
//! and the stand-in is linearizable, which is all the crate's own protocols assume of it.
//! `Arc` itself stays `std`'s: it only carries immutable data here, never a protocol.

#![allow(clippy::disallowed_types)]

pub(crate) use std::sync::{Arc, Weak};

use std::cell::Cell;

#[cfg(not(flagcache_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(flagcache_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(flagcache_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(flagcache_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

pub(crate) use crossbeam_utils::CachePadded;

pub(crate) use map::{ConcurrentMap, MapGuard, MapOp, MapOutcome};

/// A hint inside a retry loop; under loom it yields so the model can schedule another thread.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(flagcache_loom))]
    std::hint::spin_loop();
    #[cfg(flagcache_loom)]
    loom::thread::yield_now();
}

/// How many stats stripes threads can own exclusively at once.
pub(crate) const OWNED_STRIPES: usize = 64;

/// The stripe index this thread owns exclusively, so it may count with a plain load and store
/// (no atomic read-modify-write): no other live thread writes that stripe. `None` once
/// [`OWNED_STRIPES`] threads hold one, or while the thread is being torn down; the caller then
/// counts on a shared stripe with `fetch_add`. A thread's index returns to a free list when it
/// exits, and the list's lock orders the old owner's last count before the new owner's first.
#[inline]
pub(crate) fn owned_stripe() -> Option<usize> {
    // The answer is cached in a const-initialized `Cell` without a destructor: reading it is one
    // thread-local load, where the lease itself (it has a destructor) costs a lazy-init check.
    match STRIPE.with(Cell::get) {
        UNASSIGNED => assign_stripe(),
        SHARED => None,
        index_plus_one => Some(usize::from(index_plus_one) - 1),
    }
}

/// `STRIPE` before the thread's first count.
const UNASSIGNED: u8 = 0;
/// `STRIPE` for a thread that counts on the shared stripe.
const SHARED: u8 = u8::MAX;
const _: () = assert!(OWNED_STRIPES < SHARED as usize);

#[cold]
fn assign_stripe() -> Option<usize> {
    match LEASE.try_with(|lease| lease.0) {
        Ok(owned) => {
            STRIPE.with(|s| s.set(owned.map_or(SHARED, |i| i as u8 + 1)));
            owned
        }
        // The lease is already gone (thread teardown): count on the shared stripe.
        Err(_) => None,
    }
}

struct StripeLease(Option<usize>);

impl StripeLease {
    fn acquire() -> Self {
        if let Some(i) = stripe_pool::with(|free, _| free.pop()) {
            return Self(Some(i));
        }
        let i = stripe_pool::with(|_, next| next.fetch_add(1, Ordering::Relaxed));
        Self((i < OWNED_STRIPES).then_some(i))
    }
}

impl Drop for StripeLease {
    fn drop(&mut self) {
        // Under loom a model thread's locals are dropped after the model's statics are gone;
        // models use fewer threads than stripes, so nothing needs returning there.
        #[cfg(not(flagcache_loom))]
        if let Some(i) = self.0 {
            // Counts this thread makes from now on (other destructors) go to the shared
            // stripe, before the index can pass to another thread.
            STRIPE.with(|s| s.set(SHARED));
            stripe_pool::with(|free, _| free.push(i));
        }
    }
}

#[cfg(not(flagcache_loom))]
std::thread_local! {
    static STRIPE: Cell<u8> = const { Cell::new(UNASSIGNED) };
    static LEASE: StripeLease = StripeLease::acquire();
}
#[cfg(flagcache_loom)]
loom::thread_local! {
    static STRIPE: Cell<u8> = Cell::new(UNASSIGNED);
    static LEASE: StripeLease = StripeLease::acquire();
}

/// The process-wide pool of stripe indexes: the free list and the next never-used index.
mod stripe_pool {
    use super::{AtomicUsize, Mutex, lock};

    #[cfg(not(flagcache_loom))]
    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    #[cfg(not(flagcache_loom))]
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    #[cfg(flagcache_loom)]
    loom::lazy_static! {
        static ref FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }

    pub(super) fn with<R>(f: impl FnOnce(&mut Vec<usize>, &AtomicUsize) -> R) -> R {
        f(&mut lock(&FREE), &NEXT)
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every value guarded
/// here is valid at every point (a key slot), so poison carries no information for us.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    #[cfg(not(flagcache_loom))]
    {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    #[cfg(flagcache_loom)]
    {
        match m.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

mod map {
    use crate::flag::FlagId;

    /// What a `compute` closure decides for one key.
    pub(crate) enum MapOp<V, T> {
        Insert(V),
        Abort(T),
    }

    /// What a `compute` did.
    pub(crate) enum MapOutcome<T> {
        Inserted,
        Updated,
        Aborted(T),
    }

    /// A concurrent `FlagId -> V` map. Reads hand out references inside a closure, or tied to
    /// a [`MapGuard`] the hot read path pins itself (a guard is `!Send`, so none is held across
    /// an `.await` of a `Send` future).
    #[cfg(not(flagcache_loom))]
    pub(crate) struct ConcurrentMap<V> {
        inner: papaya::HashMap<FlagId, V, foldhash::fast::RandomState>,
    }

    /// Keeps what a reader found in one [`ConcurrentMap`] alive while it is pinned: papaya's
    /// pinned map, whose lookups skip the check that a guard passed in belongs to the map's
    /// collector (a load and a compare on every hit).
    #[cfg(not(flagcache_loom))]
    pub(crate) struct MapGuard<'m, V>(
        papaya::HashMapRef<'m, FlagId, V, foldhash::fast::RandomState, papaya::LocalGuard<'m>>,
    );

    /// The read path's lookup by name: hashed as the `str` (as `FlagId` is), compared out of
    /// line. papaya's probe loop is inlined into the read only while its inline cost stays
    /// under LLVM's threshold; with a one-word `FlagId`, whose length is loaded from its
    /// allocation, the comparison inlined into it took it over, and a borrowed read cost 19
    /// instructions more (the lookup's call and spills) where the comparison's call costs 12
    /// (`examples/read_cost.rs`; docs/decisions.md, "A flag id is one word").
    #[cfg(not(flagcache_loom))]
    struct ByName<'a>(&'a str);

    #[cfg(not(flagcache_loom))]
    impl std::hash::Hash for ByName<'_> {
        #[inline]
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    #[cfg(not(flagcache_loom))]
    impl papaya::Equivalent<FlagId> for ByName<'_> {
        #[inline(never)]
        fn equivalent(&self, key: &FlagId) -> bool {
            self.0 == key.as_str()
        }
    }

    /// Replaced entries a thread retires before papaya's collector (seize) reclaims them.
    /// Each batch costs one `membarrier` system call, which interrupts every core running the
    /// process: with seize's default of 32, a 90/10 read/write mix on two threads spent a third
    /// of its time in those interrupts (on a VM, where each one exits to the hypervisor). At
    /// 1024 that cost is a thirty-second of what it was. The price: each writing thread keeps
    /// up to 1023 replaced entries per map, and the definitions only they hold, until its
    /// batch fills.
    #[cfg(not(flagcache_loom))]
    const RETIRE_BATCH: usize = 1024;

    #[cfg(not(flagcache_loom))]
    impl<V: Send + Sync> ConcurrentMap<V> {
        pub(crate) fn with_capacity(capacity: usize) -> Self {
            Self {
                inner: papaya::HashMap::builder()
                    .hasher(foldhash::fast::RandomState::default())
                    .capacity(capacity)
                    // An incremental resize is finished only by later writes, and until then
                    // every read probes two tables; flag sets change by bulk loads followed by
                    // millions of reads, so a resize completes at once.
                    .resize_mode(papaya::ResizeMode::Blocking)
                    .collector(seize::Collector::new().batch_size(RETIRE_BATCH))
                    .build(),
            }
        }

        #[inline]
        pub(crate) fn read<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
            self.inner.pin().get(key).map(f)
        }

        /// Pins this map for [`get`](Self::get).
        #[inline]
        pub(crate) fn guard(&self) -> MapGuard<'_, V> {
            MapGuard(self.inner.pin())
        }

        /// The value of `key`, alive while `guard` (pinned on this map) is.
        #[inline]
        pub(crate) fn get<'g>(&self, key: &str, guard: &'g MapGuard<'_, V>) -> Option<&'g V> {
            guard.0.get(&ByName(key))
        }

        /// Atomically decides on the current value of `key`. `f` may run more than once (on a
        /// lost race) and must be pure apart from reads.
        pub(crate) fn compute<T>(
            &self,
            key: FlagId,
            mut f: impl FnMut(Option<&V>) -> MapOp<V, T>,
        ) -> MapOutcome<T> {
            let guard = self.inner.guard();
            let outcome = self.inner.compute(
                key,
                |entry| match f(entry.map(|(_, v)| v)) {
                    MapOp::Insert(v) => papaya::Operation::Insert(v),
                    MapOp::Abort(t) => papaya::Operation::Abort(t),
                },
                &guard,
            );
            match outcome {
                papaya::Compute::Inserted(..) => MapOutcome::Inserted,
                papaya::Compute::Updated { .. } => MapOutcome::Updated,
                // The closure never asks for a removal.
                papaya::Compute::Removed(..) => MapOutcome::Updated,
                papaya::Compute::Aborted(t) => MapOutcome::Aborted(t),
            }
        }

        /// Removes `key` if `pred` holds for its value; returns what `extract` took from the
        /// removed value.
        pub(crate) fn remove_if<R>(
            &self,
            key: &str,
            mut pred: impl FnMut(&V) -> bool,
            extract: impl FnOnce(&V) -> R,
        ) -> Option<R> {
            let guard = self.inner.guard();
            match self.inner.remove_if(key, |_, v| pred(v), &guard) {
                Ok(Some((_, v))) => Some(extract(v)),
                Ok(None) | Err(_) => None,
            }
        }

        pub(crate) fn len(&self) -> usize {
            self.inner.len()
        }

        /// Removes every entry (entries inserted concurrently may survive).
        pub(crate) fn clear(&self) {
            let guard = self.inner.guard();
            self.inner.clear(&guard);
        }

        /// Visits every entry (weakly consistent under concurrent writes).
        pub(crate) fn for_each(&self, mut f: impl FnMut(&FlagId, &V)) {
            let guard = self.inner.guard();
            for (k, v) in self.inner.iter(&guard) {
                f(k, v);
            }
        }

        /// Hands the entries this thread removed to the collector now, rather than when its
        /// batch of `RETIRE_BATCH` fills: after a bulk removal, so a replaced set is freed
        /// once its last reader leaves, at the price of one `membarrier`.
        pub(crate) fn release_removed(&self) {
            use papaya::Guard as _;
            self.inner.guard().flush();
        }

        /// Makes room for `additional` entries beyond those in the map: if the current table
        /// would be over three quarters full, a new one of 4/3 that many slots (rounded up to a
        /// power of two), copied now on this thread. The outgrown table is retired by this
        /// thread, and released at once.
        pub(crate) fn reserve(&self, additional: usize) {
            use papaya::Guard as _;
            let guard = self.inner.guard();
            self.inner.reserve(additional, &guard);
            guard.flush();
        }
    }

    /// A `BTreeMap` rather than a `HashMap`: loom needs every execution of a model to be
    /// deterministic, iteration order included.
    #[cfg(flagcache_loom)]
    pub(crate) struct ConcurrentMap<V> {
        inner: loom::sync::RwLock<std::collections::BTreeMap<FlagId, V>>,
    }

    /// The read lock stands in for papaya's pin.
    #[cfg(flagcache_loom)]
    pub(crate) struct MapGuard<'m, V>(
        loom::sync::RwLockReadGuard<'m, std::collections::BTreeMap<FlagId, V>>,
    );

    #[cfg(flagcache_loom)]
    impl<V: Send + Sync> ConcurrentMap<V> {
        pub(crate) fn with_capacity(_capacity: usize) -> Self {
            Self {
                inner: loom::sync::RwLock::new(std::collections::BTreeMap::new()),
            }
        }

        fn read_lock(
            &self,
        ) -> loom::sync::RwLockReadGuard<'_, std::collections::BTreeMap<FlagId, V>> {
            match self.inner.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            }
        }

        fn write_lock(
            &self,
        ) -> loom::sync::RwLockWriteGuard<'_, std::collections::BTreeMap<FlagId, V>> {
            match self.inner.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            }
        }

        pub(crate) fn read<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
            self.read_lock().get(key).map(f)
        }

        pub(crate) fn guard(&self) -> MapGuard<'_, V> {
            MapGuard(self.read_lock())
        }

        pub(crate) fn get<'g>(&self, key: &str, guard: &'g MapGuard<'_, V>) -> Option<&'g V> {
            guard.0.get(key)
        }

        pub(crate) fn compute<T>(
            &self,
            key: FlagId,
            mut f: impl FnMut(Option<&V>) -> MapOp<V, T>,
        ) -> MapOutcome<T> {
            let mut map = self.write_lock();
            let existed = map.contains_key(key.as_str());
            match f(map.get(key.as_str())) {
                MapOp::Insert(v) => {
                    map.insert(key, v);
                    if existed {
                        MapOutcome::Updated
                    } else {
                        MapOutcome::Inserted
                    }
                }
                MapOp::Abort(t) => MapOutcome::Aborted(t),
            }
        }

        pub(crate) fn remove_if<R>(
            &self,
            key: &str,
            mut pred: impl FnMut(&V) -> bool,
            extract: impl FnOnce(&V) -> R,
        ) -> Option<R> {
            let mut map = self.write_lock();
            if map.get(key).is_some_and(&mut pred) {
                map.remove(key).map(|v| extract(&v))
            } else {
                None
            }
        }

        pub(crate) fn len(&self) -> usize {
            self.read_lock().len()
        }

        pub(crate) fn clear(&self) {
            self.write_lock().clear();
        }

        pub(crate) fn for_each(&self, mut f: impl FnMut(&FlagId, &V)) {
            for (k, v) in self.read_lock().iter() {
                f(k, v);
            }
        }

        /// Removed entries are freed at once here.
        pub(crate) fn release_removed(&self) {}

        /// The model map has no table to grow.
        pub(crate) fn reserve(&self, _additional: usize) {}
    }
}
