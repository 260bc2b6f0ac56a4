//! The writes: storage commands ([`Shards::store`]), deletes, incr/decr, the meta
//! delete, `flush_all`. One shard lock each (run again with memory from the other
//! shards when a store could not find it in its own).

use std::sync::atomic::Ordering;

use super::classes::ClassOp;
use super::item;
use super::outcome::{DeleteOutcome, DeltaOutcome, Guard, MetaDelete, Miss, NewItem, StoreOutcome};
use super::shard::Found;
use super::shards::{Seen, Shards};
use crate::insight::Event;
use crate::op::{Delta, StoreOp};

impl Shards {
    /// A storage command (see [`super::Store::store`]): decided, allocated and written
    /// under one shard lock (run again with memory from the other shards when its own
    /// could not find it). `item.marks` are set on the stored item, `guard` as
    /// [`Guard`] says.
    #[inline]
    pub(super) fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        item: NewItem<'_>,
        guard: Guard,
        seen: &Seen,
    ) -> (StoreOutcome, u64) {
        let NewItem {
            flags,
            exptime,
            value,
            marks,
        } = item;
        let Guard {
            cas: guard,
            invalidate,
        } = guard;
        if key.is_empty() || self.too_large_flags(key.len(), flags, value.len()) {
            if op == StoreOp::Set {
                self.unlink(key);
            }
            return (StoreOutcome::TooLarge, 0);
        }
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        let marks_in = marks;
        // memcached counts a storage command in the class of the item it allocates for
        // the value sent, before it knows the outcome (once, whatever the retries).
        let sent_class = ctx
            .class_for(item::total_size(key.len(), value.len(), flags, 0, cas_on))
            .unwrap_or(0);
        let counted = std::cell::Cell::new(false);
        self.with_retry(key, |sh, h, mem| {
            seen.set(h, Event::Other);
            if !counted.replace(true) {
                sh.count_class(sent_class, ClassOp::Set);
            }
            let mut marks = marks_in;
            let found = sh.find(ctx, h, key);
            // Decide without allocating first.
            let mut old_val: Option<Vec<u8>> = None;
            let (nflags, nexp) = match (op, &found) {
                (StoreOp::Add, Found::Live(_)) => return (StoreOutcome::NotStored, 0),
                (StoreOp::Replace | StoreOp::Append | StoreOp::Prepend, Found::Miss(_)) => {
                    return (StoreOutcome::NotStored, 0)
                }
                (StoreOp::Cas(_), Found::Miss(_)) => return (StoreOutcome::NotFound, 0),
                (StoreOp::Cas(c), Found::Live(l)) => {
                    // With CAS disabled memcached answers EXISTS to every cas on a present key.
                    let hd = item::Hdr::read(sh.item_at(*l), cas_on);
                    if cas_on && hd.cas != c && invalidate && c < hd.cas {
                        marks |= item::MARK_STALE | (sh.marks(*l) & item::MARK_WON);
                        (flags, hd.exptime)
                    } else if !cas_on || hd.cas != c {
                        sh.count(ctx, *l, ClassOp::CasBadval);
                        return (StoreOutcome::Exists, 0);
                    } else {
                        sh.count(ctx, *l, ClassOp::CasHit);
                        (flags, ctx.clock.realtime(exptime))
                    }
                }
                (StoreOp::Append | StoreOp::Prepend, Found::Live(l)) => {
                    let c = sh.item_at(*l);
                    let hd = item::Hdr::read(c, cas_on);
                    if guard != 0 && (!cas_on || hd.cas != guard) {
                        return (StoreOutcome::Exists, 0);
                    }
                    old_val = Some(c[hd.value_at()..hd.total()].to_vec());
                    (hd.flags, hd.exptime)
                }
                _ => (flags, ctx.clock.realtime(exptime)),
            };
            let (first, second): (&[u8], &[u8]) = match (&old_val, op) {
                (Some(o), StoreOp::Append) => (o, value),
                (Some(o), _) => (value, o),
                (None, _) => (value, &[]),
            };
            let vlen = first.len() + second.len();
            if old_val.is_some() && self.too_large_flags(key.len(), nflags, vlen) {
                return (StoreOutcome::NotStored, 0);
            }
            let total = item::total_size(key.len(), vlen, nflags, nexp, cas_on);
            if ctx.class_for(total).is_none() {
                // Only append/prepend can grow past the largest item.
                return (StoreOutcome::NotStored, 0);
            }
            let Some(new) = sh.alloc(ctx, h, total, mem) else {
                // A failed set removes the old value (as memcached), unless it runs again.
                if op == StoreOp::Set && !mem.retrying() {
                    sh.unlink_key(ctx, h, key);
                }
                return (StoreOutcome::OutOfMemory, 0);
            };
            // The hand may have moved or evicted the old item meanwhile.
            let old = sh.find_raw(ctx, h, key);
            let needs_old = !matches!(op, StoreOp::Set | StoreOp::Add);
            if needs_old && old.is_none() {
                sh.free_extent(ctx, new);
                return match op {
                    StoreOp::Cas(_) => (StoreOutcome::NotFound, 0),
                    _ => (StoreOutcome::NotStored, 0),
                };
            }
            let now = ctx.clock.now();
            let cas = self.next_cas();
            let c = sh.item_at_mut(new);
            let at = item::write_header(
                c,
                &item::Head {
                    klen: key.len(),
                    vlen,
                    flags: nflags,
                    exptime: nexp,
                    time: now,
                    cas,
                },
                cas_on,
            );
            c[at..at + key.len()].copy_from_slice(key);
            let v = at + key.len();
            c[v..v + first.len()].copy_from_slice(first);
            c[v + first.len()..v + vlen].copy_from_slice(second);
            if let Some(o) = old {
                sh.rewrote(o, new);
            }
            sh.link(ctx, h, new, old);
            if marks != 0 {
                sh.set_marks(new, marks);
            }
            seen.set(h, Event::Set(total));
            (StoreOutcome::Stored, if cas_on { cas } else { 0 })
        })
    }

    /// The meta delete (`md`): with `guard`, only when the item's CAS unique equals it;
    /// with `invalidate`, marks the item stale (clearing the "win sent" mark), gives it a
    /// new CAS unique and, when `Some(ttl)`, a new expiry, instead of removing it.
    pub(super) fn meta_delete(
        &self,
        key: &[u8],
        guard: Option<u64>,
        invalidate: Option<Option<i64>>,
        seen: &Seen,
    ) -> MetaDelete {
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        if key.is_empty() {
            return MetaDelete::Miss(Miss::Absent);
        }
        self.with(key, |sh, h, mem| {
            seen.set(h, Event::Other);
            let l = match sh.find(ctx, h, key) {
                Found::Live(l) => l,
                Found::Miss(m) => return MetaDelete::Miss(m),
            };
            let hd = item::Hdr::read(sh.item_at(l), cas_on);
            if let Some(g) = guard {
                if hd.cas != g {
                    return MetaDelete::Exists;
                }
            }
            sh.count(ctx, l, ClassOp::DeleteHit);
            let Some(ttl) = invalidate else {
                sh.delete_at(ctx, h, l);
                seen.set(h, Event::Delete);
                return MetaDelete::Deleted;
            };
            let m = (sh.marks(l) | item::MARK_STALE) & !item::MARK_WON;
            sh.set_marks(l, m);
            if cas_on {
                let cas = self.next_cas();
                item::write_cas(sh.item_at_mut(l), hd.cas_at(), cas);
            }
            if let Some(t) = ttl {
                let exp = ctx.clock.realtime(t);
                if !sh.set_exptime(ctx, l, exp) {
                    if let Err(Some(at)) = self.regrow(sh, h, key, l, exp, mem) {
                        sh.delete_at(ctx, h, at);
                    }
                }
            }
            MetaDelete::Invalidated
        })
    }

    /// Removes a key only if its CAS unique equals `guard` (any item when `guard` is
    /// 0); check and removal happen under one shard lock.
    pub(super) fn delete(&self, key: &[u8], guard: u64, seen: &Seen) -> DeleteOutcome {
        let ctx = &self.ctx;
        self.with(key, |sh, h, _| {
            seen.set(h, Event::Other);
            match sh.find(ctx, h, key) {
                Found::Live(l) => {
                    if guard != 0
                        && (!ctx.cas_on || item::Hdr::read(sh.item_at(l), true).cas != guard)
                    {
                        return DeleteOutcome::Exists;
                    }
                    sh.count(ctx, l, ClassOp::DeleteHit);
                    sh.delete_at(ctx, h, l);
                    seen.set(h, Event::Delete);
                    DeleteOutcome::Deleted
                }
                Found::Miss(m) => DeleteOutcome::NotFound(m),
            }
        })
    }

    /// incr / decr (see [`super::Store::delta`]).
    #[inline]
    pub(super) fn delta(
        &self,
        key: &[u8],
        delta: Delta,
        guard: u64,
        seen: &Seen,
    ) -> (DeltaOutcome, u64) {
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        self.with_retry(key, |sh, h, mem| {
            seen.set(h, Event::Other);
            let l = match sh.find(ctx, h, key) {
                Found::Live(l) => l,
                Found::Miss(m) => return (DeltaOutcome::NotFound(m), 0),
            };
            let c = sh.item_at(l);
            let hd = item::Hdr::read(c, cas_on);
            // As memcached: an empty value is refused before the CAS guard is looked at.
            if hd.vlen == 0 {
                return (DeltaOutcome::NonNumeric, 0);
            }
            if guard != 0 && (!cas_on || hd.cas != guard) {
                return (DeltaOutcome::Exists, 0);
            }
            let Some(v) = crate::num::strtoull(&c[hd.value_at()..hd.total()]) else {
                return (DeltaOutcome::NonNumeric, 0);
            };
            let hit = match delta {
                Delta::Incr(_) => ClassOp::IncrHit,
                Delta::Decr(_) => ClassOp::DecrHit,
            };
            sh.count(ctx, l, hit);
            let n = match delta {
                Delta::Incr(d) => v.wrapping_add(d),
                Delta::Decr(d) => v.saturating_sub(d),
            };
            let digits = n.to_string();
            let d = digits.as_bytes();
            let now = ctx.clock.now();
            if d.len() <= hd.vlen {
                let cas = self.next_cas();
                let c = sh.item_at_mut(l);
                let va = hd.value_at();
                c[va..va + d.len()].copy_from_slice(d);
                c[va + d.len()..hd.total()].fill(b' ');
                if cas_on {
                    item::write_cas(c, hd.cas_at(), cas);
                }
                item::wr32(c, item::OFF_TIME, now);
                sh.wrote(l);
                return (DeltaOutcome::Value(n), if cas_on { cas } else { 0 });
            }
            let total = item::total_size(key.len(), d.len(), hd.flags, hd.exptime, cas_on);
            if ctx.class_for(total).is_none() {
                return (DeltaOutcome::OutOfMemory, 0);
            }
            let Some(new) = sh.alloc(ctx, h, total, mem) else {
                return (DeltaOutcome::OutOfMemory, 0);
            };
            let Some(old) = sh.find_raw(ctx, h, key) else {
                sh.free_extent(ctx, new);
                return (DeltaOutcome::NotFound(Miss::Absent), 0);
            };
            let cas = self.next_cas();
            let c = sh.item_at_mut(new);
            let at = item::write_header(
                c,
                &item::Head {
                    klen: key.len(),
                    vlen: d.len(),
                    flags: hd.flags,
                    exptime: hd.exptime,
                    time: now,
                    cas,
                },
                cas_on,
            );
            c[at..at + key.len()].copy_from_slice(key);
            c[at + key.len()..at + key.len() + d.len()].copy_from_slice(d);
            sh.rewrote(old, new);
            sh.link(ctx, h, new, Some(old));
            (DeltaOutcome::Value(n), if cas_on { cas } else { 0 })
        })
    }

    /// `flush_all [delay]`: invalidates every item stored before the given time, with
    /// memcached's arithmetic (`oldest_live`, and with CAS `oldest_cas`, which takes one
    /// CAS unique).
    pub(super) fn flush_all(&self, exptime: i64) {
        let now = self.ctx.clock.now();
        let new_oldest = if exptime > 0 {
            self.ctx.clock.realtime(exptime)
        } else {
            now
        };
        if self.cfg.cas_enabled {
            let ol = new_oldest.wrapping_sub(1);
            if ol <= now {
                self.ctx
                    .oldest_cas
                    .store(self.next_cas(), Ordering::Release);
            }
            self.ctx.oldest_live.store(ol, Ordering::Release);
        } else {
            self.ctx.oldest_live.store(new_oldest, Ordering::Release);
        }
    }

    /// Removes a key without counting it (after a failed `set`).
    pub(super) fn unlink(&self, key: &[u8]) {
        let ctx = &self.ctx;
        self.with(key, |sh, h, _| {
            sh.unlink_key(ctx, h, key);
        });
    }
}
