//! The eviction policy's rules: what the store (`store::shard`) and the sizing
//! simulation (`insight::sizing`) both decide with, so that the simulation predicts the
//! store. Pure arithmetic on sizes, counters and shares: no memory, no clock.
//!
//! The policy is S3-FIFO (Yang et al., SOSP'23) made to price items by their bytes:
//!
//! - **Two bands.** Items up to [`BIG_ITEM`] bytes are packed into shared segments
//!   ([`Band::Packed`]); larger ones get a segment of their own ([`Band::Large`]). Each
//!   band has its own small and main queues. How much of a shard's memory the large
//!   band may hold ([`BandShare`]) follows the marginal value of a byte in each band:
//!   a key that comes back soon after its eviction (its fingerprint is in the ghost,
//!   evicted within the last [`WINDOW_SHIFT`]-th of the shard's bytes of evictions from
//!   its band) is a miss that that many more bytes in its band would have saved; each
//!   such return moves the share one step towards its band. The share settles where
//!   both bands gain as many hits per byte, which is where the misses are fewest
//!   (Cliffhanger, NSDI'16, between two classes). With value sizes independent of
//!   popularity, a byte of small items saves more misses than a byte of large ones,
//!   and the large band shrinks; where large values are what is asked for, it grows.
//! - **Reads priced by size.** A read adds one to the item's 2-bit counter with
//!   probability `min(1, READ_BYTES / size)`: the counter counts reads per
//!   [`READ_BYTES`] of the item, so a large item must be read more often than a small
//!   one to stay (GDSF's frequency / size).
//! - **Residence priced by size, while small items are worth it.** At a queue's tail
//!   an item is *charged* (it must pay one from its counter or leave) at every pass,
//!   unless its size class (powers of two) is read more often per byte it holds than
//!   its band on average ([`Lifetimes`]); then it is charged with probability
//!   `min(1, size / typical)`, `typical` being the size of the item an average byte of
//!   the band belongs to (Σ size² / Σ size). When it is not charged it goes round
//!   again, its counter unchanged: an item a tenth of the typical size stays about ten
//!   times as long unread (GDSF's 1 / size priority). When the small items stop being
//!   read (the application's sizes shift), their class falls below the average and is
//!   charged at every pass again; a band of one size is plain S3-FIFO.
//!
//! Measured with `ferrocache-bench hitratio` (see BENCHMARKS.md): the rules were
//! picked among the variants tried there (sizes of the read credit and of the charge,
//! insertion credit, ghost admission, static and adaptive band splits).

/// Items larger than this many bytes get a segment of their own (the large band), so
/// the unused end of an open segment, which a larger item does not fit, stays small.
pub const BIG_ITEM: usize = 8 * 1024;

/// A read adds one to an item's counter with probability `min(1, READ_BYTES / size)`.
pub const READ_BYTES: usize = 16 * 1024;

/// Share of a band's segment bytes its small queue may hold before it is evicted
/// from, in 1/1024: where it starts (S3-FIFO's 10 %) and its bounds. It adapts as
/// ARC's target does: a key back soon after its eviction from small moves it up, one
/// back after its eviction from main moves it down, each weighted by how many recent
/// evictions the other queue made.
pub const SMALL_SHARE_START: u32 = 102;
/// The small queue's least share.
pub const SMALL_SHARE_MIN: u32 = 20;
/// The small queue's largest share.
pub const SMALL_SHARE_MAX: u32 = 512;

/// The share of a shard's segment bytes the large band may hold, in 1/65536: where it
/// starts.
pub const LARGE_SHARE_START: u32 = 32_768;
/// One step of the large band's share per return within the window (1/512).
pub const LARGE_SHARE_STEP: u32 = 128;
/// After this many evictions without a return (of a key evicted within the ghost's
/// horizon), evictions take from the band whose oldest segment is the older, and the
/// share follows what the bands hold: with no returns to go by (a workload that only
/// writes, or whose keys never come back), memory follows age, as one FIFO over both
/// bands would.
pub const QUIET_EVICTIONS: u32 = 1024;
/// The same before any key has come back.
pub const QUIET_FIRST: u32 = 64;
/// The window of the band shares: a return counts when its key was evicted within the
/// last `bytes >> WINDOW_SHIFT` bytes of evictions from its band (`bytes`: the shard's
/// segment bytes).
pub const WINDOW_SHIFT: u32 = 1;

/// Where an item lives, by its size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Band {
    /// Up to [`BIG_ITEM`] bytes: packed into shared segments.
    Packed,
    /// Larger: a segment of its own.
    Large,
}

impl Band {
    /// The band of an item of `total` bytes.
    #[inline]
    pub fn of(total: usize) -> Band {
        if total > BIG_ITEM {
            Band::Large
        } else {
            Band::Packed
        }
    }

    /// 0 or 1, for arrays indexed by band.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The two FIFO queues of S3-FIFO.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Queue {
    /// New items (and large keys back from the ghost).
    Small,
    /// Items read while in small, small keys back from the ghost, survivors.
    Main,
}

impl Queue {
    /// 0 or 1, for arrays indexed by queue.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A small, fast random number generator (xorshift64) for the policy's coin flips;
/// one per shard, used under its lock.
#[derive(Clone, Debug)]
pub struct Coin(u64);

impl Coin {
    /// A generator seeded with `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Coin {
        Coin(seed | 1)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// True with probability `num / den` (always when `num >= den`).
    #[inline]
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        num >= den || (self.draw() % den.max(1) as u64) < num as u64
    }
}

/// Whether a read of an item of `total` bytes adds one to its counter.
#[inline]
pub fn read_counts(total: usize, coin: &mut Coin) -> bool {
    coin.chance(READ_BYTES, total)
}

/// Size classes of [`Lifetimes`]: powers of two from 128 bytes (everything smaller in
/// the first) up.
pub const SIZE_CLASSES: usize = 16;
/// The classes' read densities are recomputed (and their read counts halved) every this
/// many reads of a band.
pub const DENSITY_READS: u32 = 1024;

/// When an item at a queue's tail is charged (see the module doc): the band's sizes
/// (bytes per size class, and the sum of the squares of the item sizes, for
/// [`Lifetimes::typical`]) and how often each class is read per byte it holds.
#[derive(Clone, Debug)]
pub struct Lifetimes {
    /// Reads of each class (halved at each recomputation).
    reads: [u32; SIZE_CLASSES],
    /// Bytes each class holds now.
    bytes: [u64; SIZE_CLASSES],
    /// Sum of the squares of the sizes of the items held.
    squares: u128,
    /// Whether each class was read more often per byte than the band on average.
    dense: [bool; SIZE_CLASSES],
    /// Reads since the last recomputation.
    since: u32,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            reads: [0; SIZE_CLASSES],
            bytes: [0; SIZE_CLASSES],
            squares: 0,
            dense: [false; SIZE_CLASSES],
            since: 0,
        }
    }
}

impl Lifetimes {
    /// The size class of an item of `total` bytes.
    #[inline]
    pub fn class(total: usize) -> usize {
        let log = (usize::BITS - total.max(1).leading_zeros()) as usize;
        log.saturating_sub(7).min(SIZE_CLASSES - 1)
    }

    /// Whether an item of `total` bytes at a queue's tail is charged: always, unless
    /// its class is read more often per byte than the band on average; then with
    /// probability `min(1, total / typical)`.
    #[inline]
    pub fn charged(&self, total: usize, coin: &mut Coin) -> bool {
        !self.dense[Self::class(total)] || coin.chance(total, self.typical().max(1))
    }

    /// The size of the item an average byte of the band belongs to: Σ size² / Σ size
    /// (the size itself when all are the same; far above the mean when a few large
    /// items hold most bytes).
    pub fn typical(&self) -> usize {
        let bytes: u64 = self.bytes.iter().sum();
        (self.squares / u128::from(bytes.max(1))) as usize
    }

    /// An item of `total` bytes joins the band.
    #[inline]
    pub fn stored(&mut self, total: usize) {
        self.bytes[Self::class(total)] += total as u64;
        self.squares += (total as u128) * (total as u128);
    }

    /// An item of `total` bytes leaves the band.
    #[inline]
    pub fn removed(&mut self, total: usize) {
        let b = &mut self.bytes[Self::class(total)];
        *b = b.saturating_sub(total as u64);
        self.squares = self
            .squares
            .saturating_sub((total as u128) * (total as u128));
    }

    /// Forgets the band's sizes (they are counted again).
    pub fn forget_sizes(&mut self) {
        self.bytes = [0; SIZE_CLASSES];
        self.squares = 0;
    }

    /// An item of `total` bytes was read.
    #[inline]
    pub fn read(&mut self, total: usize) {
        self.reads[Self::class(total)] += 1;
        self.since += 1;
        if self.since >= DENSITY_READS {
            self.recompute();
        }
    }

    fn recompute(&mut self) {
        self.since = 0;
        let reads: u64 = self.reads.iter().map(|&r| u64::from(r)).sum();
        let bytes: u64 = self.bytes.iter().sum();
        for c in 0..SIZE_CLASSES {
            // reads_c / bytes_c > reads / bytes
            let (r, b) = (u128::from(self.reads[c]), u128::from(self.bytes[c]));
            self.dense[c] = r * u128::from(bytes) > u128::from(reads) * b;
            self.reads[c] /= 2;
        }
    }
}

/// Reads a counter must hold for an item to survive a charge: one.
pub const READS_PER_CHARGE: u8 = 1;

/// The queue a new item goes to, given where its key was evicted from recently (if it
/// was): a key back soon after its eviction goes straight to main.
#[inline]
pub fn admit(ghost: Option<Queue>) -> Queue {
    match ghost {
        Some(_) => Queue::Main,
        None => Queue::Small,
    }
}

/// The small queue's new share after a key evicted from `from` came back; `fs`, `fm`:
/// recent evictions from small and from main.
#[inline]
pub fn adapt_small_share(share: u32, from: Queue, fs: u32, fm: u32) -> u32 {
    let (fs, fm) = (fs.max(1), fm.max(1));
    match from {
        Queue::Small => (share + (fm / fs).max(1)).min(SMALL_SHARE_MAX),
        Queue::Main => share.saturating_sub((fs / fm).max(1)).max(SMALL_SHARE_MIN),
    }
}

/// The large band's share of a shard's segment bytes (in 1/65536), moved by returns
/// and, when there are none, by age.
#[derive(Clone, Copy, Debug)]
pub struct BandShare {
    /// The share, in 1/65536.
    pub share: u32,
    /// Evictions since the last return.
    quiet: u32,
    /// A key has come back since the start.
    returns: bool,
}

impl Default for BandShare {
    fn default() -> Self {
        BandShare {
            share: LARGE_SHARE_START,
            quiet: 0,
            returns: false,
        }
    }
}

impl BandShare {
    /// A key evicted from `band` came back `distance` bytes of that band's evictions
    /// later, in a shard of `bytes` segment bytes.
    #[inline]
    pub fn returned(&mut self, band: Band, distance: u64, bytes: u64) {
        self.quiet = 0;
        self.returns = true;
        if distance <= (bytes >> WINDOW_SHIFT).max(1) {
            self.step(band);
        }
    }

    /// The band to evict from, the large band holding `large` of `total` segment
    /// bytes, `older` the band whose oldest segment is the older: the one over its
    /// share, or after [`QUIET_EVICTIONS`] evictions without a return ([`QUIET_FIRST`]
    /// before the first), `older` (and the share becomes what the bands hold).
    #[inline]
    pub fn pick(&mut self, large: usize, total: usize, older: Band) -> Band {
        self.quiet = self.quiet.saturating_add(1);
        let quiet = if self.returns {
            QUIET_EVICTIONS
        } else {
            QUIET_FIRST
        };
        if self.quiet > quiet {
            self.share = (large as u64 * 65_536 / total.max(1) as u64) as u32;
            return older;
        }
        if self.evict_large(large, total) {
            Band::Large
        } else {
            Band::Packed
        }
    }

    fn step(&mut self, band: Band) {
        self.share = match band {
            Band::Large => (self.share + LARGE_SHARE_STEP).min(65_536),
            Band::Packed => self.share.saturating_sub(LARGE_SHARE_STEP),
        };
    }

    /// Whether the next eviction takes from the large band, which holds `large` of
    /// `total` segment bytes.
    #[inline]
    pub fn evict_large(&self, large: usize, total: usize) -> bool {
        large as u64 * 65_536 > u64::from(self.share) * total as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_count_less_for_large_items() {
        let mut c = Coin::new(7);
        let n = 100_000;
        let small = (0..n).filter(|_| read_counts(100, &mut c)).count();
        let large = (0..n)
            .filter(|_| read_counts(4 * READ_BYTES, &mut c))
            .count();
        assert_eq!(small, n);
        assert!((large as f64 / n as f64 - 0.25).abs() < 0.01, "{large}");
    }

    #[test]
    fn lifetimes_follow_reads_per_byte() {
        let mut l = Lifetimes::default();
        let mut c = Coin::new(5);
        assert!((0..1000).all(|_| l.charged(100, &mut c)));
        // 1 MB in items of 100 bytes read 50 times as often per byte as 1 MB in items
        // of 5,000 bytes: the small ones are charged 100 / typical of their passes, the
        // large ones at every pass.
        for _ in 0..10_000 {
            l.stored(100);
        }
        for _ in 0..200 {
            l.stored(5_000);
        }
        let typical = (10_000 * 100 * 100 + 200 * 5_000 * 5_000) / 2_000_000;
        assert_eq!(l.typical(), typical);
        for _ in 0..100 {
            for _ in 0..50 {
                l.read(100);
            }
            l.read(5_000);
        }
        let n = 100_000;
        let small = (0..n).filter(|_| l.charged(100, &mut c)).count();
        let p = 100.0 / typical as f64;
        assert!((small as f64 / n as f64 - p).abs() < 0.01, "{small}");
        assert!((0..1000).all(|_| l.charged(5_000, &mut c)));
        // The small ones stop being read: charged at every pass again.
        for _ in 0..2 * DENSITY_READS {
            l.read(5_000);
        }
        assert!((0..1000).all(|_| l.charged(100, &mut c)));
        // A band of one size is charged at every pass.
        let mut one = Lifetimes::default();
        for _ in 0..1000 {
            one.stored(300);
        }
        for _ in 0..2 * DENSITY_READS {
            one.read(300);
        }
        assert!((0..1000).all(|_| one.charged(300, &mut c)));
    }

    #[test]
    fn returns_move_the_band_share_within_the_window_only() {
        // Before any return, age decides after QUIET_FIRST evictions.
        let mut q = BandShare::default();
        for _ in 0..QUIET_FIRST {
            assert_eq!(q.pick(600, 1024, Band::Packed), Band::Large);
        }
        assert_eq!(q.pick(600, 1024, Band::Packed), Band::Packed);
        let mut s = BandShare::default();
        s.returned(Band::Large, 10, 1 << 20);
        assert_eq!(s.share, LARGE_SHARE_START + LARGE_SHARE_STEP);
        s.returned(Band::Packed, 10, 1 << 20);
        s.returned(Band::Packed, 10, 1 << 20);
        assert_eq!(s.share, LARGE_SHARE_START - LARGE_SHARE_STEP);
        s.returned(Band::Packed, (1 << 20) >> WINDOW_SHIFT << 1, 1 << 20);
        assert_eq!(s.share, LARGE_SHARE_START - LARGE_SHARE_STEP);
        assert!(s.evict_large(600, 1024));
        assert!(!s.evict_large(400, 1024));
        // Quiet: age decides after QUIET_EVICTIONS evictions without a return.
        for _ in 0..QUIET_EVICTIONS {
            assert_eq!(s.pick(600, 1024, Band::Packed), Band::Large);
        }
        assert_eq!(s.pick(600, 1024, Band::Packed), Band::Packed);
        assert_eq!(s.share, 600 * 64);
        s.returned(Band::Packed, 10, 1 << 20);
        assert_eq!(s.pick(600, 1024, Band::Packed), Band::Large);
    }
}
