//! S3-FIFO's ghost: fingerprints of recently evicted keys, with the band and queue
//! each left and its band's eviction clock then.

use crate::policy::{Band, Queue};

/// The ghost's slot number bits of a key hash.
#[inline]
pub(super) fn fingerprint(h: u64) -> u32 {
    (h >> 8) as u32
}

/// Keys recently evicted (S3-FIFO's ghost queue): a direct-mapped table of 8-byte
/// slots, about as many as the shard has items. A slot holds 24 check bits of the key
/// hash (other bits than the ones that pick the slot), the band and queue the key left,
/// and where its band's eviction clock stood (bytes evicted from that band so far, in
/// [`GHOST_UNIT`]s, 38 bits): a key counts as recently evicted while its band has
/// evicted fewer bytes since than the shard holds, and its return moves the band shares
/// when it is within their window ([`BandShare::returned`]).
#[derive(Default)]
pub(super) struct Ghost {
    pub(super) slots: Vec<u64>,
    /// Bytes evicted from each band, in [`GHOST_UNIT`]s.
    pub(super) clock: [u64; 2],
    /// Recent insertions from each queue of each band (halved as they reach the
    /// table's size).
    pub(super) from: [[u32; 2]; 2],
}

/// The eviction clocks count in units of this many bytes.
pub(super) const GHOST_UNIT: u64 = 64;
pub(super) const GHOST_CLOCK_BITS: u32 = 38;
pub(super) const GHOST_CLOCK_MASK: u64 = (1 << GHOST_CLOCK_BITS) - 1;

/// A key's return from the ghost: where it was evicted from, and how many bytes its
/// band evicted since.
pub(super) struct Returned {
    pub(super) band: Band,
    pub(super) queue: Queue,
    pub(super) distance: u64,
}

impl Ghost {
    #[inline]
    pub(super) fn check(h: u64) -> u64 {
        ((h >> 40) & 0xFF_FFFF) | 1
    }

    pub(super) fn insert(&mut self, h: u64, items: usize, band: Band, from: Queue, total: usize) {
        let want = items.max(1024).next_power_of_two();
        if self.slots.len() < want / 2 || self.slots.len() > want * 2 {
            // Resized with the shard: the old entries go (the ghost is a hint).
            self.slots = vec![0; want];
        }
        let b = band.index();
        self.clock[b] = self.clock[b].wrapping_add((total as u64).div_ceil(GHOST_UNIT));
        let f = &mut self.from[b];
        f[from.index()] += 1;
        if (f[0] + f[1]) as usize > self.slots.len() {
            f[0] /= 2;
            f[1] /= 2;
        }
        let n = self.slots.len();
        self.slots[fingerprint(h) as usize & (n - 1)] = (Self::check(h) << 40)
            | ((b as u64) << 39)
            | ((from.index() as u64) << 38)
            | (self.clock[b] & GHOST_CLOCK_MASK);
    }

    /// The slot of `h` if it holds `h` evicted within the last `horizon` bytes of its
    /// band's evictions.
    pub(super) fn find(&self, h: u64, horizon: u64) -> Option<(usize, Returned)> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let i = fingerprint(h) as usize & (n - 1);
        let slot = self.slots[i];
        if slot >> 40 != Self::check(h) {
            return None;
        }
        let band = if slot >> 39 & 1 == 1 {
            Band::Large
        } else {
            Band::Packed
        };
        let queue = if slot >> 38 & 1 == 1 {
            Queue::Main
        } else {
            Queue::Small
        };
        let distance = self.clock[band.index()].wrapping_sub(slot) & GHOST_CLOCK_MASK;
        let distance = distance * GHOST_UNIT;
        (distance <= horizon).then_some((
            i,
            Returned {
                band,
                queue,
                distance,
            },
        ))
    }

    /// Where `h` was evicted from, if that was within the last `horizon` bytes of its
    /// band's evictions; forgets it.
    pub(super) fn take(&mut self, h: u64, horizon: u64) -> Option<Returned> {
        let (i, r) = self.find(h, horizon)?;
        self.slots[i] = 0;
        Some(r)
    }

    pub(super) fn bytes(&self) -> usize {
        self.slots.len() * 8
    }

    /// Whether `h` was evicted within the last `horizon` bytes of its band's evictions
    /// (a peek: the entry stays).
    pub(super) fn holds(&self, h: u64, horizon: u64) -> bool {
        self.find(h, horizon).is_some()
    }
}
