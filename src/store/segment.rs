//! Segments: the unit of item memory. A segment is 32 KiB of items appended back to
//! back (an item above 8 KiB gets one of its own); an item's location ([`Loc`]) is its
//! segment id and byte offset. Segments are in FIFO queues (S3-FIFO's small and main
//! queue of each band, [`BandQueues`]), and allocated, compacted and freed by the
//! shard (`alloc.rs`, `evict.rs`).

use std::collections::VecDeque;

use crate::policy::{self, Queue};

/// Size of a segment.
pub const SEG_BYTES: usize = 32 * 1024;
pub(super) const OFF_BITS: u32 = 15;
pub(super) const OFF_MASK: u32 = (1 << OFF_BITS) - 1;
pub(super) const MAX_SEGS: usize = 1 << (32 - OFF_BITS);

/// An item's location: segment id (high 17 bits) and byte offset (low 15 bits).
pub type Loc = u32;

#[inline]
pub(super) fn loc(sid: usize, off: usize) -> Loc {
    ((sid as u32) << OFF_BITS) | off as u32
}

#[inline]
pub(super) fn split(l: Loc) -> (usize, usize) {
    ((l >> OFF_BITS) as usize, (l & OFF_MASK) as usize)
}

/// The bytes from the item at `l` to the end of what its segment holds (the item's
/// header says how many are its own).
#[inline]
pub(super) fn bytes_at(segs: &[Option<Seg>], l: Loc) -> Option<&[u8]> {
    let (sid, off) = split(l);
    match segs.get(sid) {
        Some(Some(s)) => s.data.get(off..s.used),
        _ => None,
    }
}

/// Where a segment is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Place {
    /// The open segment of a queue: items are appended to it.
    Open(Queue),
    /// Closed, in a queue's FIFO.
    Closed(Queue),
    /// Being walked by the eviction.
    Evicting,
}

pub(super) struct Seg {
    pub(super) data: Box<[u8]>,
    /// Bytes appended (items live or dead, back to back from offset 0).
    pub(super) used: usize,
    /// Extents allocated and not freed.
    pub(super) live: u32,
    /// Their bytes.
    pub(super) live_bytes: u32,
    /// On the shard's list of sparse segments (mostly dead bytes).
    pub(super) sparse: bool,
    /// Bumped when the segment is emptied and reused, so queue entries of its earlier
    /// life are recognised as stale.
    pub(super) gen: u32,
    /// When it was opened (or its item requeued): the shard's segment count then; the
    /// band shares compare the oldest segments of the bands.
    pub(super) born: u32,
    pub(super) place: Place,
}

/// One FIFO of segments.
#[derive(Default)]
pub(super) struct Fifo {
    /// Closed segments, oldest first, with their generation then.
    pub(super) closed: VecDeque<(u32, u32)>,
    /// The segment items are appended to (the packed band's queues only).
    pub(super) open: Option<u32>,
    /// Segment bytes in the queue (open and closed).
    pub(super) bytes: usize,
}

/// The two queues of a band, and the small queue's share of the band.
pub(super) struct BandQueues {
    pub(super) q: [Fifo; 2],
    pub(super) small_share: u32,
}

impl Default for BandQueues {
    fn default() -> Self {
        BandQueues {
            q: [Fifo::default(), Fifo::default()],
            small_share: policy::SMALL_SHARE_START,
        }
    }
}

impl BandQueues {
    pub(super) fn bytes(&self) -> usize {
        self.q[0].bytes + self.q[1].bytes
    }

    pub(super) fn closed(&self) -> usize {
        self.q[0].closed.len() + self.q[1].closed.len()
    }
}

#[cold]
pub(super) fn unreachable_seg() -> ! {
    // Every location in the index points to a live segment; reaching here is a bug.
    panic!("store: item location points to a dropped segment")
}
