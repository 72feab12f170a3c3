//! Double-buffered generations: how `replace_all` and `clear` swap the whole set atomically
//! while a read costs two plain loads more than a bare map lookup.
//!
//! The cache owns two [`Generation`] buffers (the second's table and ring are allocated as the
//! first swap fills it) and one atomic word, [`Active`]: which buffer is current and its
//! generation number. A swap (one at a
//! time, under a lock) empties the idle buffer, fills it with the new set tagged with the next
//! number, publishes it by storing the word, then empties the buffer it replaced.
//!
//! A read loads the word, reads the named buffer, and *validates* that the word has not changed
//! before it trusts what it read (a seqlock's read side): a read that overlapped a swap is
//! retried against the new buffer, so every answer, and every `get_many` as a whole, comes from
//! one snapshot. Entries carry a tag of the generation they were written for (the number's low
//! bits), so a write that lands in a buffer after it was retired (a writer delayed across a
//! swap) is not served; a fill, which is not retried, also checks the whole number after its
//! insert, as the tag comes round again every 2^20 swaps.
//!
//! Why not an `ArcSwap<Generation>` (or a cell behind a papaya guard): either costs a fence and
//! an atomic read-modify-write per read, about a third of a hit. Here the buffers live as long
//! as the cache, so a read borrows one without touching a reference count; papaya's own guard
//! keeps entries removed by a concurrent swap alive while a reader still holds them.

use super::generation::{Generation, TAG_MASK};
use crate::sync::{AtomicU64, Mutex, Ordering, fence, lock};
use crate::time::Ticks;

/// The current buffer and generation number, read and validated as one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Active(u64);

impl Active {
    fn new(number: u64, index: usize) -> Self {
        Self((number << 1) | (index as u64 & 1))
    }

    fn index(self) -> usize {
        (self.0 & 1) as usize
    }

    /// The generation number (it only grows; a swap adds one).
    pub(crate) fn number(self) -> u64 {
        self.0 >> 1
    }

    /// The tag entries of this generation carry: the number's low `TAG_BITS` bits. A swap
    /// empties the buffer it fills, so an old generation's entry passes for current only if
    /// its writer stalled through 2^20 swaps between reading the word and writing.
    #[inline]
    pub(crate) fn tag(self) -> u32 {
        (self.number() & TAG_MASK) as u32
    }
}

pub(crate) struct Snapshots {
    buffers: [Generation; 2],
    active: AtomicU64,
    /// Serializes swaps (they are rare: `replace_all` and `clear`).
    swap: Mutex<()>,
}

impl Snapshots {
    pub(crate) fn new(capacity: usize, grace: Ticks) -> Self {
        Self {
            buffers: [
                Generation::new(capacity, grace, true),
                Generation::new(capacity, grace, false),
            ],
            active: AtomicU64::new(Active::new(0, 0).0),
            swap: Mutex::new(()),
        }
    }

    /// The current snapshot's word.
    #[inline]
    pub(crate) fn active(&self) -> Active {
        Active(self.active.load(Ordering::Acquire))
    }

    /// The buffer `a` names.
    #[inline]
    pub(crate) fn buffer(&self, a: Active) -> &Generation {
        let [first, second] = &self.buffers;
        if a.index() == 0 { first } else { second }
    }

    /// True while no swap happened since `a` was loaded: what was read from `a`'s buffer in
    /// between belongs to `a`'s snapshot.
    #[inline]
    pub(crate) fn still(&self, a: Active) -> bool {
        // Orders the buffer reads before the re-load (the seqlock reader's fence).
        fence(Ordering::Acquire);
        self.active.load(Ordering::Relaxed) == a.0
    }

    /// Runs `read` while no swap can start (one running finishes first): a read that validates
    /// inside it always succeeds. For reads that optimistic attempts could not complete.
    pub(crate) fn without_swaps<R>(&self, read: impl FnOnce() -> R) -> R {
        let _no_swap = lock(&self.swap);
        read()
    }

    /// Swaps in a new set: `fill` writes it into the idle buffer (emptied first) under the next
    /// generation number; then the buffer is published and the old one emptied. Returns how many
    /// entries the old set had.
    pub(crate) fn swap(&self, fill: impl FnOnce(&Generation, Active)) -> usize {
        let _one_at_a_time = lock(&self.swap);
        let old = self.active();
        let next = Active::new(old.number().wrapping_add(1), 1 - old.index());
        let idle = self.buffer(next);
        idle.drain();
        fill(idle, next);
        // SeqCst: readers and writers that validate after this see the new word. The fence
        // pairs with a fill's after its unpublished insert (`Generation::write`): either the
        // fill sees the new word and withdraws, or the drains below see its entry.
        self.active.store(next.0, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let retired = self.buffer(old);
        let len = retired.map.len();
        retired.drain();
        len
    }
}
