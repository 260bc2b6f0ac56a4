//! The tests of `lease.rs`, through the [`Store`] facade.

use std::sync::Arc;

use crate::store::*;
fn store(mem_mb: usize) -> Store {
    let cfg = StoreConfig {
        mem_limit: mem_mb << 20,
        item_size_max: 4 << 20,
        shards: 4,
        ..StoreConfig::default()
    };
    Store::new(cfg, Arc::new(Clock::starting_at(1_700_000_000)))
}

fn lease_rule() -> ReplyValue {
    ReplyValue {
        lease_over: 0,
        copy_up_to: 0,
    }
}

fn lease(s: &Store, key: &[u8]) -> Option<ValueLease> {
    match s.get_reply(key, None, lease_rule(), |it, streamed| {
        (it.value.len(), streamed)
    }) {
        Ok(Reply::Done((_, true), Some(l))) => Some(l),
        _ => None,
    }
}

fn read_all(s: &Store, l: &ValueLease) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < l.len() {
        let n = s.read_lease(l, out.len(), 100_000, &mut out);
        assert!(n > 0, "a lease lost its value");
    }
    out
}

#[test]
fn a_leased_value_outlives_its_item_and_its_memory_comes_back_after() {
    let s = store(16);
    let a = vec![b'a'; 1_000_000];
    assert_eq!(
        s.store(StoreOp::Set, b"k", NewItem::new(0, 0, &a), Guard::NONE)
            .0,
        StoreOutcome::Stored
    );
    let before = s.stats().total_malloced;
    let l = lease(&s, b"k").expect("a value in a segment of its own is leased");
    assert_eq!(s.pinned() as u64, before);
    // Replaced, then deleted: the lease still reads the value it was given.
    assert_eq!(
        s.store(
            StoreOp::Set,
            b"k",
            NewItem::new(0, 0, &[b'b'; 1_000_000]),
            Guard::NONE
        )
        .0,
        StoreOutcome::Stored
    );
    assert_eq!(s.delete(b"k", 0), DeleteOutcome::Deleted);
    // Pushing everything out leaves the pinned segment alone.
    for i in 0..40 {
        let key = format!("f{i}");
        s.store(
            StoreOp::Set,
            key.as_bytes(),
            NewItem::new(0, 0, &[b'f'; 1_000_000]),
            Guard::NONE,
        );
    }
    assert!(s.mem_used() <= 16 << 20);
    assert_eq!(read_all(&s, &l), a);
    let held = s.stats().total_malloced;
    let e = s.released();
    s.end_lease(l);
    assert_ne!(s.released(), e);
    assert_eq!(s.pinned(), 0);
    assert_eq!(
        s.stats().total_malloced + before,
        held,
        "the orphan is freed at once"
    );
}

#[test]
fn small_values_are_copied_and_pins_past_a_quarter_of_the_limit_wait() {
    let s = store(16);
    assert_eq!(
        s.store(
            StoreOp::Set,
            b"small",
            NewItem::new(0, 0, b"tiny"),
            Guard::NONE
        )
        .0,
        StoreOutcome::Stored
    );
    match s.get_reply(b"small", None, lease_rule(), |it, streamed| {
        (it.value.len(), streamed)
    }) {
        Ok(Reply::Done((4, false), None)) => {}
        other => panic!("a small item is copied: {other:?}"),
    }
    for i in 0..6u8 {
        let v = vec![b'0' + i; 1_500_000];
        assert_eq!(
            s.store(
                StoreOp::Set,
                &[b'v', i],
                NewItem::new(0, 0, &v),
                Guard::NONE
            )
            .0,
            StoreOutcome::Stored
        );
    }
    // 4 MiB may be pinned: two values of 1.5 MB, not three.
    let l0 = lease(&s, b"v\x00").expect("first");
    let l1 = lease(&s, b"v\x01").expect("second");
    let third = s.get_reply(b"v\x02", None, lease_rule(), |_, _| ());
    assert!(matches!(third, Ok(Reply::Wait)), "{third:?}");
    // Copied when the reply may hold it.
    let copy = ReplyValue {
        lease_over: 0,
        copy_up_to: 2_000_000,
    };
    match s.get_reply(b"v\x02", None, copy, |it, streamed| {
        (it.value.len(), streamed)
    }) {
        Ok(Reply::Done((1_500_000, false), None)) => {}
        other => panic!("copied past the pin cap: {other:?}"),
    }
    // A value pinned already costs nothing more.
    assert!(lease(&s, b"v\x00").is_some());
    drop(l0);
    assert!(
        lease(&s, b"v\x02").is_some(),
        "room again once a lease is gone"
    );
    drop(l1);
}
