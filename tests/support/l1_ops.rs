//! Operation sequences against [`LocalCache`], decoded from bytes and checked against a model
//! after every step.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/l1_ops.rs`) and the stable replay of its corpus
//! (`tests/fuzz_corpus.rs`); it depends on nothing but `flagcache` and std.
//!
//! # Encoding
//! Every byte string decodes to something: bytes missing at the end read as zero.
//! - byte 0: capacity `1 + (b & 0x0f)`. With bit 4 set the keys are `0..capacity`, so nothing
//!   is ever evicted and the model is *exact* (presence, sizes, hit counts, every counter);
//!   otherwise the keys are `0..24` and the model knows only what *may* be cached: a read
//!   returns nothing or exactly the last accepted write.
//! - byte 1: default TTL: `0xff` never expires, otherwise `1 + b` ms.
//! - then at most [`MAX_OPS`] operations, each a tag byte (low nibble: the operation, high
//!   nibble: its flags) and its argument bytes; see [`decode_op`].
//!
//! Every write carries a unique serial (as the flag's number value), so the model can tell two
//! writes of the same version apart: a read must return *the* accepted write, not just its
//! version.
//!
//! Corpus inputs named `bug-*` reproduce bugs this found: `bug-evicts-below-capacity-*`, the
//! CLOCK hand evicting a live entry while free slots remained (fixed in 183f987).

use flagcache::{
    CacheStats, CachedFlag, Clock, ErrorKind, FillOutcome, FlagDefinition, FlagId, LocalCache,
    MockClock,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most top-level operations one input runs.
const MAX_OPS: usize = 200;
/// The key space when eviction is possible (larger than the largest capacity).
const EVICTING_KEYS: usize = 24;
/// Versions are drawn from `1..=MAX_VERSION`, so refusals and ties are frequent.
const MAX_VERSION: u64 = 8;
/// Model expiry of an entry that never expires.
const NEVER: u64 = u64::MAX;

/// Runs the operations `data` decodes to, panicking on the first broken invariant.
pub fn run(data: &[u8]) {
    let mut bytes = Bytes { data, pos: 0 };
    let head = bytes.next();
    let capacity = usize::from(head & 0x0f) + 1;
    let exact = head & 0x10 != 0;
    let keys = if exact { capacity } else { EVICTING_KEYS };
    let default_ttl = match bytes.next() {
        0xff => Ttl::Never,
        b => Ttl::Ms(1 + u64::from(b)),
    };
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !bytes.is_empty() {
        ops.push(decode_op(&mut bytes, keys, false, None));
    }
    Harness::new(capacity, keys, exact, default_ttl, &ops).run();
}

struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ttl {
    /// `None`: the cache's default.
    Default,
    Ms(u64),
    /// `Duration::MAX`: never expires.
    Never,
    /// Zero: refused as a configuration error.
    Zero,
}

impl Ttl {
    fn decode(b: u8) -> Self {
        match b & 7 {
            0..=3 => Ttl::Default,
            4 | 5 => Ttl::Ms(1 + u64::from(b >> 3)),
            6 => Ttl::Never,
            _ => Ttl::Zero,
        }
    }

    fn duration(self) -> Option<Duration> {
        match self {
            Ttl::Default => None,
            Ttl::Ms(ms) => Some(Duration::from_millis(ms)),
            Ttl::Never => Some(Duration::MAX),
            Ttl::Zero => Some(Duration::ZERO),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Set {
        key: usize,
        version: u64,
        ttl: Ttl,
        /// The definition's id is not the key: refused as an invalid flag.
        wrong_id: bool,
        /// Read the key right after an accepted write: it must be there.
        read_back: bool,
    },
    GetNow(usize),
    GetWith(usize),
    /// Keys may repeat; each one is a lookup.
    GetMany(Vec<usize>),
    Invalidate(usize),
    /// `begin_fill`, optionally another operation, then `complete_fill`.
    Fill {
        key: usize,
        version: u64,
        ttl: Ttl,
        between: Option<Box<Op>>,
    },
    Clear,
    /// `overflow` adds `capacity + 1` ids outside the key space, so the swap must fail.
    ReplaceAll {
        flags: Vec<(usize, u64)>,
        overflow: bool,
    },
    Advance(u64),
    Stats,
    /// One step of the cleanup task's sweep (only with `cfg(fuzzing)`; a no-op otherwise).
    Sweep,
}

fn decode_key(bytes: &mut Bytes<'_>, keys: usize, forced: Option<usize>) -> usize {
    let b = usize::from(bytes.next()) % keys;
    forced.unwrap_or(b)
}

fn decode_version(bytes: &mut Bytes<'_>) -> u64 {
    1 + u64::from(bytes.next()) % MAX_VERSION
}

/// Decodes one operation. The low nibble of the tag picks it (some have two codes, so the
/// common ones are drawn more often), the high nibble holds its flags. `nested` is set for the
/// operation between a fill's begin and complete (which is never itself a fill); `forced` makes
/// that operation target the fill's key.
fn decode_op(bytes: &mut Bytes<'_>, keys: usize, nested: bool, forced: Option<usize>) -> Op {
    let tag = bytes.next();
    let flags = tag >> 4;
    match tag & 0x0f {
        0 | 12 => Op::Set {
            key: decode_key(bytes, keys, forced),
            version: decode_version(bytes),
            ttl: Ttl::decode(bytes.next()),
            wrong_id: flags == 0x0e,
            read_back: flags & 1 == 1,
        },
        1 | 11 => Op::GetNow(decode_key(bytes, keys, forced)),
        2 | 13 => Op::GetWith(decode_key(bytes, keys, forced)),
        3 => Op::GetMany((0..flags).map(|_| decode_key(bytes, keys, None)).collect()),
        4 => Op::Invalidate(decode_key(bytes, keys, forced)),
        5 | 14 if !nested => {
            let key = decode_key(bytes, keys, None);
            let version = decode_version(bytes);
            let ttl = Ttl::decode(bytes.next());
            let between = (flags & 1 == 1).then(|| {
                let forced = (flags & 2 == 2).then_some(key);
                Box::new(decode_op(bytes, keys, true, forced))
            });
            Op::Fill {
                key,
                version,
                ttl,
                between,
            }
        }
        5 | 14 => Op::GetNow(decode_key(bytes, keys, forced)),
        6 => Op::Clear,
        7 => {
            let n = bytes.next() % 32;
            let pairs = (0..n)
                .map(|_| (decode_key(bytes, keys, None), decode_version(bytes)))
                .collect();
            Op::ReplaceAll {
                flags: pairs,
                overflow: flags & 1 == 1,
            }
        }
        8 | 15 => {
            let b = bytes.next();
            Op::Advance(if b & 0x80 == 0 {
                u64::from(b & 0x3f)
            } else {
                u64::from(b & 0x7f) * 16
            })
        }
        9 => Op::Stats,
        _ => Op::Sweep,
    }
}

/// What an operation did, as far as a fill in flight can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// No write: a fill that began before must not be refused for it.
    Quiet,
    /// A write attempt to `key`; `overtakes` when it was one the fill must yield to (an
    /// accepted set or an invalidate). Others may refuse fills of the same fence stripe.
    Write { key: usize, overtakes: bool },
    /// A snapshot swap (`clear`, a successful `replace_all`): every fill in flight is refused.
    NewGeneration,
}

/// What the model knows of one key: the last write the cache accepted for it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    version: u64,
    serial: u64,
    cached_ms: u64,
    /// Served while `now < expires_ms`.
    expires_ms: u64,
    /// Owned reads since the entry got its slot (exact mode only).
    hits: u64,
    /// A read missed it while it was live: it was evicted and must not come back.
    missed: bool,
}

impl Entry {
    fn live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms
    }
}

/// What a read returned.
#[derive(Clone, Copy, Debug)]
struct Seen {
    version: u64,
    serial: u64,
    /// From owned reads only.
    meta: Option<Meta>,
}

#[derive(Clone, Copy, Debug)]
struct Meta {
    cached_at: Instant,
    expires_at: Option<Instant>,
    hit_count: u64,
}

fn serial_of(def: &FlagDefinition) -> u64 {
    // Serials are small integers, exact in an f64.
    def.default_value.as_f64().map_or(u64::MAX, |n| n as u64)
}

fn seen(flag: &CachedFlag) -> Seen {
    Seen {
        version: flag.definition.version,
        serial: serial_of(&flag.definition),
        meta: Some(Meta {
            cached_at: flag.cached_at,
            expires_at: flag.expires_at,
            hit_count: flag.hit_count,
        }),
    }
}

/// What the harness has counted, to compare with `stats_now`.
#[derive(Default, Debug)]
struct Counts {
    lookups: u64,
    hits: u64,
    inserts: u64,
    stale_refused: u64,
    fills_refused: u64,
    /// Exact mode only.
    expirations: u64,
    /// Exact mode only.
    invalidations: u64,
}

struct Harness<'a> {
    cache: LocalCache,
    mock: MockClock,
    start: Instant,
    ids: Vec<FlagId>,
    capacity: usize,
    exact: bool,
    default_ttl: Ttl,
    model: Vec<Option<Entry>>,
    now_ms: u64,
    next_serial: u64,
    counts: Counts,
    ops: &'a [Op],
    step: usize,
}

macro_rules! ensure {
    ($h:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $h.fail(format!($($msg)+));
        }
    };
}

impl<'a> Harness<'a> {
    fn new(capacity: usize, keys: usize, exact: bool, default_ttl: Ttl, ops: &'a [Op]) -> Self {
        let mock = MockClock::new();
        let cache = LocalCache::builder()
            .max_size(capacity)
            .default_ttl(default_ttl.duration().unwrap_or(Duration::MAX))
            .clock(Clock::mock(&mock))
            .build()
            .unwrap_or_else(|e| panic!("building the cache: {e}"));
        Self {
            start: mock.now(),
            cache,
            mock,
            ids: (0..keys).map(|k| FlagId::new(format!("k{k}"))).collect(),
            capacity,
            exact,
            default_ttl,
            model: vec![None; keys],
            now_ms: 0,
            next_serial: 0,
            counts: Counts::default(),
            ops,
            step: 0,
        }
    }

    fn run(&mut self) {
        let ops = self.ops;
        for (step, op) in ops.iter().enumerate() {
            self.step = step;
            self.apply(op);
            self.check_invariants();
        }
    }

    #[cold]
    fn fail(&self, msg: String) -> ! {
        let mut trace = String::new();
        for (i, op) in self.ops.iter().enumerate().take(self.step + 1) {
            trace.push_str(&format!("  {i:3}: {op:?}\n"));
        }
        panic!(
            "{msg}\n(capacity {}, keys {}, exact {}, default TTL {:?}, now {} ms, at op {})\n{trace}",
            self.capacity,
            self.ids.len(),
            self.exact,
            self.default_ttl,
            self.now_ms,
            self.step
        );
    }

    fn definition(&mut self, key: usize, version: u64, wrong_id: bool) -> (FlagDefinition, u64) {
        self.next_serial += 1;
        let serial = self.next_serial;
        let id = if wrong_id {
            "not-the-key"
        } else {
            self.ids[key].as_str()
        };
        let def = FlagDefinition::new_number(id, "fuzz", serial as f64)
            .unwrap_or_else(|e| panic!("a valid definition: {e}"))
            .with_version(version);
        (def, serial)
    }

    /// The model expiry of a write made now with `ttl`.
    fn expiry(&self, ttl: Ttl) -> u64 {
        let ttl = if ttl == Ttl::Default {
            self.default_ttl
        } else {
            ttl
        };
        match ttl {
            Ttl::Ms(ms) => self.now_ms + ms,
            Ttl::Never | Ttl::Default | Ttl::Zero => NEVER,
        }
    }

    /// Records an accepted write (set or fill) of `key` in the model.
    fn accept(&mut self, key: usize, version: u64, serial: u64, ttl: Ttl) {
        // A write over an entry in the map keeps its slot and so its hit count.
        let hits = self.model[key].map_or(0, |e| e.hits);
        self.model[key] = Some(Entry {
            version,
            serial,
            cached_ms: self.now_ms,
            expires_ms: self.expiry(ttl),
            hits,
            missed: false,
        });
    }

    /// Checks what `times` lookups of `key` returned (they return the same thing: nothing runs
    /// between them) and counts them.
    fn observe(&mut self, key: usize, times: u64, got: Option<Seen>, what: &str) {
        self.counts.lookups += times;
        let now = self.now_ms;
        let Some(seen) = got else {
            match self.model[key] {
                // The read found it expired and removed it.
                Some(e) if !e.live(now) => {
                    self.model[key] = None;
                    if self.exact {
                        self.counts.expirations += 1;
                    }
                }
                Some(mut e) => {
                    ensure!(
                        self,
                        !self.exact,
                        "{what} k{key} missed live {e:?} in a cache that cannot evict"
                    );
                    e.missed = true;
                    self.model[key] = Some(e);
                }
                None => {}
            }
            return;
        };
        self.counts.hits += times;
        let Some(mut e) = self.model[key] else {
            self.fail(format!(
                "{what} k{key} returned {seen:?}, but no write of it is cached"
            ));
        };
        ensure!(
            self,
            e.live(now),
            "{what} k{key} returned {seen:?} from {e:?}, expired (now {now} ms)"
        );
        ensure!(
            self,
            (seen.version, seen.serial) == (e.version, e.serial),
            "{what} k{key} returned {seen:?}, but the last accepted write is {e:?}"
        );
        ensure!(
            self,
            !e.missed,
            "{what} k{key} returned {e:?} after an earlier read missed it"
        );
        if let Some(meta) = seen.meta {
            e.hits += times;
            let cached_at = self.start + Duration::from_millis(e.cached_ms);
            let expires_at =
                (e.expires_ms != NEVER).then(|| self.start + Duration::from_millis(e.expires_ms));
            ensure!(
                self,
                meta.cached_at == cached_at && meta.expires_at == expires_at,
                "{what} k{key}: times {meta:?}, want cached at {} ms, expiring at {} ms",
                e.cached_ms,
                e.expires_ms
            );
            ensure!(
                self,
                !self.exact || meta.hit_count == e.hits,
                "{what} k{key}: hit_count {}, want {}",
                meta.hit_count,
                e.hits
            );
        }
        self.model[key] = Some(e);
    }

    fn get_now(&mut self, key: usize, what: &str) -> Option<Seen> {
        let got = self.cache.get_now(self.ids[key].as_str()).map(|f| seen(&f));
        self.observe(key, 1, got, what);
        // No stale grace is configured: nothing is ever served stale.
        let stale = self.cache.get_stale(self.ids[key].as_str());
        ensure!(
            self,
            stale.is_none(),
            "get_stale k{key} returned {stale:?} with no stale grace"
        );
        got
    }

    /// `get_many_now` of `keys` (repeats allowed), checked; returns key -> serial of the hits.
    fn get_many(&mut self, keys: &[usize], what: &str) -> HashMap<usize, u64> {
        let ids: Vec<FlagId> = keys.iter().map(|&k| self.ids[k].clone()).collect();
        let got = self.cache.get_many_now(&ids);
        let mut times: Vec<(usize, u64)> = Vec::new();
        for &k in keys {
            match times.iter_mut().find(|(key, _)| *key == k) {
                Some((_, n)) => *n += 1,
                None => times.push((k, 1)),
            }
        }
        ensure!(
            self,
            got.keys()
                .all(|id| times.iter().any(|&(k, _)| self.ids[k] == *id)),
            "{what} returned ids that were not asked for: {:?}",
            got.keys().collect::<Vec<_>>()
        );
        let mut hits = HashMap::new();
        for (k, n) in times {
            let s = got.get(&self.ids[k]).map(seen);
            if let Some(s) = s {
                hits.insert(k, s.serial);
            }
            self.observe(k, n, s, what);
        }
        hits
    }

    fn all_keys(&self) -> Vec<usize> {
        (0..self.ids.len()).collect()
    }

    fn apply(&mut self, op: &Op) -> Effect {
        match *op {
            Op::Set {
                key,
                version,
                ttl,
                wrong_id,
                read_back,
            } => self.set(key, version, ttl, wrong_id, read_back),
            Op::GetNow(key) => {
                self.get_now(key, "get_now");
                Effect::Quiet
            }
            Op::GetWith(key) => {
                let got = self
                    .cache
                    .get_with(self.ids[key].as_str(), |d| (d.version, serial_of(d)))
                    .map(|(version, serial)| Seen {
                        version,
                        serial,
                        meta: None,
                    });
                self.observe(key, 1, got, "get_with");
                Effect::Quiet
            }
            Op::GetMany(ref keys) => {
                self.get_many(keys, "get_many_now");
                Effect::Quiet
            }
            Op::Invalidate(key) => {
                self.cache.invalidate_now(self.ids[key].as_str());
                if self.exact && self.model[key].is_some() {
                    self.counts.invalidations += 1;
                }
                self.model[key] = None;
                let got = self.get_now(key, "get_now after invalidate_now");
                ensure!(
                    self,
                    got.is_none(),
                    "k{key} read {got:?} after invalidate_now"
                );
                Effect::Write {
                    key,
                    overtakes: true,
                }
            }
            Op::Fill {
                key,
                version,
                ttl,
                ref between,
            } => {
                self.fill(key, version, ttl, between.as_deref());
                Effect::Quiet
            }
            Op::Clear => {
                self.cache.clear_now();
                if self.exact {
                    self.counts.invalidations += self.present() as u64;
                }
                self.model.iter_mut().for_each(|e| *e = None);
                ensure!(
                    self,
                    self.cache.is_empty(),
                    "{} entries after clear_now",
                    self.cache.len()
                );
                Effect::NewGeneration
            }
            Op::ReplaceAll {
                ref flags,
                overflow,
            } => self.replace_all(flags, overflow),
            Op::Advance(ms) => {
                self.mock.advance(Duration::from_millis(ms));
                self.now_ms += ms;
                Effect::Quiet
            }
            Op::Stats => {
                let s = self.cache.stats_now();
                let consistent = (s.hit_rate - CacheStats::ratio(s.hits, s.misses)).abs() < 1e-9;
                ensure!(
                    self,
                    consistent,
                    "hit_rate {} but hits {} and misses {}",
                    s.hit_rate,
                    s.hits,
                    s.misses
                );
                Effect::Quiet
            }
            Op::Sweep => {
                self.sweep();
                Effect::Quiet
            }
        }
    }

    fn set(
        &mut self,
        key: usize,
        version: u64,
        ttl: Ttl,
        wrong_id: bool,
        read_back: bool,
    ) -> Effect {
        let (def, serial) = self.definition(key, version, wrong_id);
        let result = self.cache.try_set(&self.ids[key], def, ttl.duration());
        let cached = self.model[key];
        match result {
            Err(e) if wrong_id => {
                ensure!(
                    self,
                    e.kind() == ErrorKind::InvalidFlag,
                    "set under k{key} of another id: {e}"
                );
                Effect::Write {
                    key,
                    overtakes: false,
                }
            }
            _ if wrong_id => self.fail(format!("set under k{key} of another id was accepted")),
            Err(e) if ttl == Ttl::Zero => {
                ensure!(
                    self,
                    e.kind() == ErrorKind::InvalidConfig,
                    "set k{key} with a zero TTL: {e}"
                );
                Effect::Write {
                    key,
                    overtakes: false,
                }
            }
            _ if ttl == Ttl::Zero => self.fail(format!("set k{key} with a zero TTL was accepted")),
            Err(e) => {
                ensure!(
                    self,
                    e.kind() == ErrorKind::StaleVersion && e.is_stale_version(),
                    "set k{key} v{version}: unexpected error {e}"
                );
                // Refused: the cache holds a higher version, which can only be the model's.
                ensure!(
                    self,
                    cached.is_some_and(|c| c.version > version && !c.missed),
                    "set k{key} v{version} refused ({e}), but the cache should hold {cached:?}"
                );
                self.counts.stale_refused += 1;
                Effect::Write {
                    key,
                    overtakes: false,
                }
            }
            Ok(()) => {
                ensure!(
                    self,
                    !(self.exact && cached.is_some_and(|c| c.version > version)),
                    "set k{key} v{version} accepted over {cached:?}"
                );
                self.counts.inserts += 1;
                self.accept(key, version, serial, ttl);
                if read_back {
                    let got = self.get_now(key, "get_now after try_set");
                    ensure!(
                        self,
                        got.is_some_and(|s| s.serial == serial),
                        "k{key} read {got:?} right after a write of v{version} #{serial}"
                    );
                }
                Effect::Write {
                    key,
                    overtakes: true,
                }
            }
        }
    }

    fn fill(&mut self, key: usize, version: u64, ttl: Ttl, between: Option<&Op>) {
        let ticket = self.cache.begin_fill(self.ids[key].as_str());
        let effect = between.map_or(Effect::Quiet, |op| self.apply(op));
        if between.is_some() {
            self.check_invariants();
        }
        let (def, serial) = self.definition(key, version, false);
        let outcome = self
            .cache
            .complete_fill(&ticket, Arc::new(def), ttl.duration());
        let cached = self.model[key];
        let overtaken = match effect {
            Effect::NewGeneration => true,
            Effect::Write { key: k, overtakes } => k == key && overtakes,
            Effect::Quiet => false,
        };
        ensure!(
            self,
            !(overtaken && outcome == FillOutcome::Installed),
            "fill k{key} v{version} installed after {effect:?}"
        );
        if ttl == Ttl::Zero || effect == Effect::NewGeneration {
            ensure!(
                self,
                outcome == FillOutcome::Overtaken,
                "fill k{key} (TTL {ttl:?}, after {effect:?}): {outcome:?}, want Overtaken"
            );
        }
        match outcome {
            FillOutcome::Installed => {
                ensure!(
                    self,
                    !(self.exact && cached.is_some_and(|c| c.version > version)),
                    "fill k{key} v{version} installed over {cached:?}"
                );
                self.counts.inserts += 1;
                self.accept(key, version, serial, ttl);
            }
            FillOutcome::Superseded(v) => {
                ensure!(
                    self,
                    v > version && cached.is_some_and(|c| c.version == v && !c.missed),
                    "fill k{key} v{version} superseded by v{v}, but the cache should hold {cached:?}"
                );
            }
            FillOutcome::Overtaken => {
                ensure!(
                    self,
                    effect != Effect::Quiet || ttl == Ttl::Zero,
                    "fill k{key} v{version} refused as overtaken with no write since its ticket"
                );
                self.counts.fills_refused += 1;
            }
            other => self.fail(format!("fill k{key}: unknown outcome {other:?}")),
        }
        if outcome != FillOutcome::Installed {
            // The refused value must not be readable.
            let got = self.get_now(key, "get_now after a refused fill");
            ensure!(
                self,
                got.is_none_or(|s| s.serial != serial),
                "k{key}: the refused fill #{serial} is readable"
            );
        }
    }

    fn replace_all(&mut self, flags: &[(usize, u64)], overflow: bool) -> Effect {
        let mut defs = Vec::new();
        let mut want: HashMap<usize, (u64, Vec<u64>)> = HashMap::new();
        for &(key, version) in flags {
            let (def, serial) = self.definition(key, version, false);
            defs.push(def);
            let (have, serials) = want.entry(key).or_insert((version, Vec::new()));
            if version > *have {
                *have = version;
                serials.clear();
            }
            if version == *have {
                serials.push(serial);
            }
        }
        if overflow {
            for i in 0..=self.capacity {
                let def = FlagDefinition::new_number(&format!("extra{i}"), "fuzz", -1.0)
                    .unwrap_or_else(|e| panic!("a valid definition: {e}"));
                defs.push(def);
            }
        }
        let distinct = want.len() + if overflow { self.capacity + 1 } else { 0 };
        let keys = self.all_keys();
        if distinct > self.capacity {
            let before = self.get_many(&keys, "get_many_now before a failing replace_all");
            let result = self.cache.replace_all(defs);
            ensure!(
                self,
                result
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::CapacityExceeded),
                "replace_all of {distinct} flags into capacity {}: {result:?}",
                self.capacity
            );
            let after = self.get_many(&keys, "get_many_now after a failed replace_all");
            ensure!(
                self,
                before == after,
                "a failed replace_all changed the cached set: {before:?} -> {after:?}"
            );
            return Effect::Quiet;
        }
        let result = self.cache.replace_all(defs);
        ensure!(
            self,
            result.is_ok(),
            "replace_all of {distinct} flags into capacity {}: {result:?}",
            self.capacity
        );
        self.counts.inserts += want.len() as u64;
        let expires_ms = self.expiry(Ttl::Default);
        for key in 0..self.model.len() {
            self.model[key] = want.get(&key).map(|&(version, ref serials)| Entry {
                version,
                // Any one of the writes of the highest version; fixed by the read below.
                serial: serials.first().copied().unwrap_or(0),
                cached_ms: self.now_ms,
                expires_ms,
                hits: 0,
                missed: false,
            });
        }
        // Right after the swap the set is exact, whatever the mode: every id in it with its
        // highest version (of several writes of that version, any one), no other id.
        let ids: Vec<FlagId> = keys.iter().map(|&k| self.ids[k].clone()).collect();
        let got = self.cache.get_many_now(&ids);
        for key in keys {
            let s = got.get(&self.ids[key]).map(seen);
            match (want.get(&key), s) {
                (Some((version, serials)), Some(s)) => {
                    ensure!(
                        self,
                        s.version == *version && serials.contains(&s.serial),
                        "after replace_all k{key} reads {s:?}, want v{version} one of {serials:?}"
                    );
                    if let Some(e) = self.model[key].as_mut() {
                        e.serial = s.serial;
                    }
                }
                (None, None) => {}
                (want, s) => self.fail(format!(
                    "after replace_all k{key} reads {s:?}, want {want:?}"
                )),
            }
            self.observe(key, 1, s, "get_many_now after replace_all");
        }
        Effect::NewGeneration
    }

    #[cfg(fuzzing)]
    fn sweep(&mut self) {
        // One step examines more slots than the largest ring here: a whole pass.
        let removed = flagcache::__internals::sweep_step(&self.cache);
        let now = self.now_ms;
        let expired: Vec<usize> = (0..self.model.len())
            .filter(|&k| self.model[k].is_some_and(|e| !e.live(now)))
            .collect();
        if self.exact {
            ensure!(
                self,
                removed == expired.len() as u64,
                "sweep_step removed {removed}, but {expired:?} had expired"
            );
            self.counts.expirations += removed;
        } else {
            ensure!(
                self,
                removed <= expired.len() as u64,
                "sweep_step removed {removed}, but only {expired:?} may have expired"
            );
        }
        for k in expired {
            self.model[k] = None;
        }
    }

    #[cfg(not(fuzzing))]
    fn sweep(&mut self) {}

    fn present(&self) -> usize {
        self.model.iter().filter(|e| e.is_some()).count()
    }

    fn check_invariants(&self) {
        let s = self.cache.stats_now();
        let len = self.cache.len();
        let cap = self.capacity;
        let c = &self.counts;
        ensure!(
            self,
            s.size <= cap && len <= cap && s.capacity == cap && self.cache.capacity() == cap,
            "size {} / len {len} above capacity {cap} (stats capacity {})",
            s.size,
            s.capacity
        );
        ensure!(
            self,
            s.hits + s.misses == c.lookups && s.hits == c.hits,
            "stats: {} hits + {} misses, but {} lookups of which {} hit",
            s.hits,
            s.misses,
            c.lookups,
            c.hits
        );
        ensure!(
            self,
            s.inserts == c.inserts
                && s.stale_writes_refused == c.stale_refused
                && s.fills_refused == c.fills_refused,
            "stats {s:?}, counted {c:?}"
        );
        if self.exact {
            let present = self.present();
            ensure!(
                self,
                s.size == present && len == present,
                "size {} / len {len}, but the model holds {present}",
                s.size
            );
            ensure!(
                self,
                s.evictions == 0
                    && s.expirations == c.expirations
                    && s.invalidations == c.invalidations,
                "stats {s:?}, counted {c:?} (no evictions possible)"
            );
        }
        #[cfg(fuzzing)]
        {
            let live = flagcache::__internals::live_slots(&self.cache);
            let map = flagcache::__internals::map_len(&self.cache);
            ensure!(
                self,
                map <= live && live <= cap,
                "{map} map entries, {live} live slots, capacity {cap}"
            );
            ensure!(
                self,
                !self.exact || map == self.present(),
                "{map} map entries, but the model holds {}",
                self.present()
            );
        }
    }
}
