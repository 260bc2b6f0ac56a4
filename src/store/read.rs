//! The reads: get, gat and touch ([`Shards::get_reply`]), the meta lookup
//! ([`Shards::meta_lookup`]), a value leased instead of copied, an item moved to make
//! room for an expiry ([`Shards::regrow`]), and a peek for watchers. One shard lock
//! each; the reply is written from item memory under it.

use super::alloc::Mem;
use super::classes::ClassOp;
use super::held::Hold;
use super::item;
use super::lease::{LeaseTry, Reply, ReplyValue, ValueLease};
use super::outcome::Miss;
use super::segment::Loc;
use super::shard::{Found, Shard};
use super::shards::{Seen, Shards};
use super::view::{ItemRef, MetaItem, MetaUpdate};
use crate::insight::Event;

impl Shards {
    /// A lookup for a reply ([`Store::get`], or [`Store::get_and_touch`] with
    /// `touch`) that may lease the value instead of handing it to `f` to copy (see
    /// `lease.rs` and [`ReplyValue`]): `f` is told so (`true`) and writes the reply
    /// without the value, which the caller then streams with [`Store::read_lease`].
    pub(super) fn get_reply<R>(
        &self,
        key: &[u8],
        touch: Option<i64>,
        rv: ReplyValue,
        f: impl FnOnce(&ItemRef<'_>, bool) -> R,
        seen: &Seen,
    ) -> Result<Reply<R>, Miss> {
        let ctx = &self.ctx;
        let mut f = Some(f);
        let body = |sh: &mut Shard, h: u64, mem: &Mem<'_>| {
            sh.lookups += 1;
            seen.set(h, Event::Get(None));
            let mut l = match sh.find(ctx, h, key) {
                Found::Live(l) => l,
                Found::Miss(m) => return Err(m),
            };
            let lease = match self.lease_for(sh, h, l, rv) {
                Some(lease) => lease,
                None => return Ok(Reply::Wait),
            };
            let now = ctx.clock.now();
            sh.bump(ctx, l, now);
            let mut drop_after = false;
            if let Some(e) = touch {
                let exp = ctx.clock.realtime(e);
                if !sh.set_exptime(ctx, l, exp) {
                    match self.regrow(sh, h, key, l, exp, mem) {
                        Ok(n) => l = n,
                        // Run again with memory from the other shards (a second bump).
                        Err(_) if mem.retrying() => return Err(Miss::Absent),
                        // Finding memory may have moved the item: use where it is now.
                        Err(Some(at)) => {
                            l = at;
                            drop_after = true;
                        }
                        Err(None) => return Err(Miss::Absent),
                    }
                }
            }
            let c = sh.item_at(l);
            let hd = item::Hdr::read(c, ctx.cas_on);
            let f = f.take().expect("lookup: f runs once");
            let r = f(
                &ItemRef {
                    key: &c[hd.key_at..hd.key_at + hd.klen],
                    flags: hd.flags,
                    value: &c[hd.value_at()..hd.total()],
                    cas: hd.cas,
                    exptime: hd.exptime,
                },
                lease.is_some(),
            );
            // Counted once the hit is served (a run that retries counts nothing), from
            // the header already read.
            let hit = if touch.is_some() {
                ClassOp::TouchHit
            } else {
                ClassOp::GetHit
            };
            sh.count_class(ctx.class_for(hd.total()).unwrap_or(0), hit);
            seen.set(h, Event::Get(Some(hd.total())));
            if drop_after {
                sh.delete_at(ctx, h, l);
            }
            Ok(Reply::Done(r, lease))
        };
        if touch.is_none() {
            self.with(key, body)
        } else {
            self.with_retry(key, body)
        }
    }

    /// The lease a reply takes on the item at `l`: `Some(None)` to copy the value,
    /// `Some(Some(lease))` to stream it, `None` to wait (see [`ReplyValue`]).
    #[inline]
    pub(super) fn lease_for(
        &self,
        sh: &mut Shard,
        h: u64,
        l: Loc,
        rv: ReplyValue,
    ) -> Option<Option<ValueLease>> {
        let hd = item::Hdr::read(sh.item_at(l), self.ctx.cas_on);
        if hd.vlen <= rv.lease_over {
            return Some(None);
        }
        match sh.lease(&self.ctx, l) {
            LeaseTry::Pinned(sid, pin) => Some(Some(ValueLease::new(
                self.shard_of(h),
                sid,
                pin,
                hd.value_at(),
                hd.vlen,
            ))),
            LeaseTry::Shared => Some(None),
            LeaseTry::OverCap if hd.vlen <= rv.copy_up_to => Some(None),
            LeaseTry::OverCap => None,
        }
    }

    /// Moves the item at `l` to an extent with room for an expiry field and sets it to
    /// `exp`. `Err(Some(l))`: no memory (the item is still at `l`, without the new
    /// expiry; the caller removes it rather than let it outlive its expiry).
    /// `Err(None)`: finding memory evicted the item itself.
    pub(super) fn regrow(
        &self,
        sh: &mut Shard,
        h: u64,
        key: &[u8],
        l: Loc,
        exp: u32,
        mem: &Mem<'_>,
    ) -> Result<Loc, Option<Loc>> {
        let ctx = &self.ctx;
        let hd = item::Hdr::read(sh.item_at(l), ctx.cas_on);
        let old = sh.item_at(l)[hd.key_at..hd.total()].to_vec();
        let total = item::total_size(hd.klen, hd.vlen, hd.flags, exp, ctx.cas_on);
        if ctx.class_for(total).is_none() {
            return Err(Some(l));
        }
        let Some(new) = sh.alloc(ctx, h, total, mem) else {
            return Err(sh.find_raw(ctx, h, key));
        };
        let Some(cur) = sh.find_raw(ctx, h, key) else {
            sh.free_extent(ctx, new);
            return Err(None);
        };
        let bits = sh.item_at(cur)[0];
        let c = sh.item_at_mut(new);
        let at = item::write_header(
            c,
            &item::Head {
                klen: hd.klen,
                vlen: hd.vlen,
                flags: hd.flags,
                exptime: exp,
                time: hd.time,
                cas: hd.cas,
            },
            ctx.cas_on,
        );
        c[0] |= bits & (item::FREQ | item::FETCHED);
        c[at..at + old.len()].copy_from_slice(&old);
        sh.move_marks(cur, new);
        sh.link(ctx, h, new, Some(cur));
        // A move, not a new item.
        sh.total_items -= 1;
        Ok(new)
    }

    pub(super) fn meta_lookup<R>(
        &self,
        key: &[u8],
        vivify: bool,
        rv: ReplyValue,
        f: impl FnOnce(&MetaItem<'_>, bool) -> (R, MetaUpdate),
        seen: &Seen,
    ) -> Result<Reply<R>, Miss> {
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        if key.is_empty() {
            return Err(Miss::Absent);
        }
        let mut f = Some(f);
        let counted = std::cell::Cell::new(false);
        let body = |sh: &mut Shard, h: u64, mem: &Mem<'_>| {
            let mut created = false;
            let mut lease_got = None;
            if !counted.get() {
                sh.lookups += 1;
            }
            seen.set(h, Event::Get(None));
            let l = match sh.find(ctx, h, key) {
                Found::Live(l) => {
                    if !counted.get() {
                        // Decided before anything is counted or changed: a request
                        // that must wait runs again later.
                        if let Some(lease) = self.lease_for(sh, h, l, rv) {
                            lease_got = lease;
                        } else {
                            return Ok(Reply::Wait);
                        }
                    }
                    if !counted.replace(true) {
                        sh.count(ctx, l, ClassOp::GetHit);
                    }
                    seen.set(h, Event::Get(Some(sh.footprint(ctx, l))));
                    l
                }
                Found::Miss(m) => {
                    if !vivify {
                        return Err(m);
                    }
                    let total = item::total_size(key.len(), 0, 0, 0, cas_on);
                    if ctx.class_for(total).is_none() {
                        return Err(m);
                    }
                    let Some(new) = sh.alloc(ctx, h, total, mem) else {
                        return Err(m);
                    };
                    let now = ctx.clock.now();
                    let cas = self.next_cas();
                    let c = sh.item_at_mut(new);
                    let at = item::write_header(
                        c,
                        &item::Head {
                            klen: key.len(),
                            vlen: 0,
                            flags: 0,
                            exptime: 0,
                            time: now,
                            cas,
                        },
                        cas_on,
                    );
                    c[at..at + key.len()].copy_from_slice(key);
                    let old = sh.find_raw(ctx, h, key);
                    sh.link(ctx, h, new, old);
                    created = true;
                    new
                }
            };
            let lease = lease_got.take();
            let (r, up) = {
                let c = sh.item_at(l);
                let hd = item::Hdr::read(c, cas_on);
                let view = MetaItem {
                    key: &c[hd.key_at..hd.key_at + hd.klen],
                    value: &c[hd.value_at()..hd.total()],
                    flags: hd.flags,
                    cas: hd.cas,
                    exptime: hd.exptime,
                    atime: hd.time,
                    fetched: hd.bits & item::FETCHED != 0,
                    marks: sh.marks(l),
                    created,
                    class: ctx.class_for(hd.total()).unwrap_or(0) + 1,
                    size: hd.total(),
                };
                let f = f.take().expect("meta_get: f runs once");
                f(&view, lease.is_some())
            };
            // `f` has run: no second run from here on.
            mem.set_last();
            let mut l = l;
            if up.marks != sh.marks(l) {
                sh.set_marks(l, up.marks);
            }
            if let Some(exp) = up.exptime {
                if !sh.set_exptime(ctx, l, exp) {
                    match self.regrow(sh, h, key, l, exp, mem) {
                        Ok(n) => l = n,
                        Err(Some(at)) => {
                            sh.delete_at(ctx, h, at);
                            return Ok(Reply::Done(r, lease));
                        }
                        Err(None) => return Ok(Reply::Done(r, lease)),
                    }
                }
            }
            if up.bump {
                sh.bump(ctx, l, ctx.clock.now());
            }
            Ok(Reply::Done(r, lease))
        };
        if vivify {
            self.with_retry(key, body)
        } else {
            self.with(key, body)
        }
    }

    /// Looks a key up without marking it read (what a watcher of fetchers is told of
    /// a store's or delete's own lookup): `f` runs on the item under the shard lock.
    pub(super) fn peek<R>(&self, key: &[u8], f: impl FnOnce(&ItemRef<'_>) -> R) -> Result<R, Miss> {
        let ctx = &self.ctx;
        self.with(key, |sh, h, _mem| {
            let l = match sh.find(ctx, h, key) {
                Found::Live(l) => l,
                Found::Miss(m) => return Err(m),
            };
            let c = sh.item_at(l);
            let hd = item::Hdr::read(c, ctx.cas_on);
            Ok(f(&ItemRef {
                key: &c[hd.key_at..hd.key_at + hd.klen],
                flags: hd.flags,
                value: &c[hd.value_at()..hd.total()],
                cas: hd.cas,
                exptime: hd.exptime,
            }))
        })
    }
}

/// The reads of a value a reply streams (see `lease.rs`).
impl Shards {
    /// Changes whenever memory connections held (lent or pinned) is given back: a
    /// request told to wait ([`Reply::Wait`]) tries again then.
    pub(super) fn released(&self) -> u64 {
        self.ctx.held.released()
    }

    /// Bytes pinned by replies streaming values now.
    pub(super) fn pinned(&self) -> usize {
        self.ctx.held.bytes(Hold::Pinned)
    }

    /// Appends up to `max` bytes of the leased value, from offset `from`, to `out`
    /// (one shard lock). Returns the bytes appended; 0 when `from` is at the end, or
    /// when the lease does not match its segment (which would be a bug: the caller
    /// then closes the connection rather than send a wrong value).
    pub(super) fn read_lease(
        &self,
        lease: &ValueLease,
        from: usize,
        max: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        let n = max.min(lease.len.saturating_sub(from));
        if n == 0 {
            return 0;
        }
        let Some(sh) = self.shards.get(lease.shard) else {
            return 0;
        };
        let sh = sh.lock();
        let start = lease.at + from;
        match sh
            .leased(lease.sid, &lease.pin)
            .and_then(|d| d.get(start..start + n))
        {
            Some(b) => {
                out.extend_from_slice(b);
                n
            }
            None => 0,
        }
    }

    /// The reply is done with the value: the segment is unpinned, and freed at once
    /// if its item is gone and no other lease holds it.
    pub(super) fn end_lease(&self, lease: ValueLease) {
        let shard = lease.shard;
        drop(lease);
        if let Some(sh) = self.shards.get(shard) {
            sh.lock().reap_orphans(&self.ctx);
        }
    }
}
