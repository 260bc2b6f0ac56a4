//! Segments pinned by leases (see `lease.rs`): the shard's side of a value streamed
//! to a reply.

use super::ctx::Ctx;
use super::lease::{LeaseTry, PinToken};
use super::segment::{split, Loc, SEG_BYTES};
use super::shard::Shard;

/// Leases: a reply streaming a large value reads it from the item's own segment a
/// piece at a time instead of copying it whole into the connection's buffer (see
/// `store::lease`). A leased segment is never reused or dropped: when its item goes
/// (replaced, deleted, evicted, expired) it becomes an orphan, out of every queue and
/// still counted in the budget, until the last lease on it ends. Its value bytes are
/// not written while it is pinned: a live item's value never changes in place (only
/// its header does), and an orphan is not written at all.
impl Shard {
    /// Whether segment `sid` is pinned by a lease (a token no lease holds any more is
    /// forgotten).
    pub(super) fn pinned(&mut self, sid: usize) -> bool {
        if self.pins.is_empty() {
            return false;
        }
        let sid = sid as u32;
        match self.pins.get(&sid) {
            None => false,
            Some(p) if p.strong_count() > 0 => true,
            Some(_) => {
                self.pins.remove(&sid);
                false
            }
        }
    }

    /// Pins the segment of the item at `l` for a lease. Not when the item shares its
    /// segment (items that do are small, and a shared segment is rewritten when it is
    /// walked), nor when pinning it would take what connections hold past the cap
    /// ([`super::held`]; a segment pinned already costs nothing more).
    pub fn lease(&mut self, ctx: &Ctx, l: Loc) -> LeaseTry {
        let (sid, off) = split(l);
        let bytes = self.seg(sid).data.len();
        if off != 0 || bytes == SEG_BYTES {
            return LeaseTry::Shared;
        }
        let key = sid as u32;
        if let Some(pin) = self.pins.get(&key).and_then(std::sync::Weak::upgrade) {
            return LeaseTry::Pinned(key, pin);
        }
        match PinToken::take(&ctx.held, bytes, ctx.held_cap()) {
            Some(pin) => {
                self.pins.insert(key, std::sync::Arc::downgrade(&pin));
                LeaseTry::Pinned(key, pin)
            }
            None => LeaseTry::OverCap,
        }
    }

    /// The bytes of segment `sid` while `pin` pins it (None: not the segment the
    /// lease was taken on).
    pub fn leased(&self, sid: u32, pin: &std::sync::Arc<PinToken>) -> Option<&[u8]> {
        match (self.pins.get(&sid), self.segs.get(sid as usize)) {
            (Some(p), Some(Some(s))) if std::ptr::eq(p.as_ptr(), std::sync::Arc::as_ptr(pin)) => {
                Some(&s.data)
            }
            _ => None,
        }
    }

    /// Drops the orphans no lease pins any more, their bytes back to the budget.
    /// Returns how many are left.
    pub fn reap_orphans(&mut self, ctx: &Ctx) -> usize {
        let mut i = 0;
        while i < self.orphans.len() {
            let sid = self.orphans[i] as usize;
            if self.pinned(sid) {
                i += 1;
                continue;
            }
            self.orphans.swap_remove(i);
            let n = self.drop_seg(ctx, sid);
            ctx.budget_release(n);
        }
        self.orphans.len()
    }
}
