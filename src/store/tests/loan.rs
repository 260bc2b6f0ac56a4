//! The tests of `loan.rs`, through the [`Store`] facade.

use std::sync::Arc;

use crate::store::*;
#[test]
fn loans_evict_for_their_bytes_stay_within_a_quarter_and_are_given_back() {
    let cfg = StoreConfig {
        mem_limit: 16 << 20,
        shards: 4,
        ..StoreConfig::default()
    };
    let s = Store::new(cfg, Arc::new(Clock::starting_at(1_700_000_000)));
    // Fill the cache: a loan must evict for its bytes.
    for i in 0..200 {
        let key = format!("k{i}");
        s.store(
            StoreOp::Set,
            key.as_bytes(),
            NewItem::new(0, 0, &[b'x'; 100_000]),
            Guard::NONE,
        );
    }
    let full = s.mem_used();
    let a = s.lend(2 << 20).expect("lent by evicting");
    assert!(s.mem_used() <= 16 << 20 && s.stats().total_malloced < full as u64);
    let b = s.lend(2 << 20).expect("a quarter of 16 MiB is 4 MiB");
    assert!(s.lend(1).is_none(), "past a quarter");
    assert_eq!(s.lendable(), 0);
    let used = s.mem_used();
    let e = s.released();
    drop(a);
    assert_eq!(s.mem_used(), used - (2 << 20));
    assert_ne!(s.released(), e);
    let mut c = s.lend(1 << 20).expect("room again");
    c.absorb(s.lend(1 << 20).expect("and again"));
    assert_eq!(c.bytes(), 2 << 20);
    assert!(s.lend(1).is_none());
    drop((b, c));
    assert_eq!(s.lent(), 0);
    assert_eq!(
        s.store(
            StoreOp::Set,
            b"after",
            NewItem::new(0, 0, b"v"),
            Guard::NONE
        )
        .0,
        StoreOutcome::Stored
    );
}
