//! The tests of `snapshot.rs` (a child module of it, kept in its own file).

use super::*;
use crate::store::{Clock, Guard, NewItem, StoreConfig, StoreOp};
use std::sync::Arc;

fn store(mb: usize) -> Store {
    let cfg = StoreConfig {
        mem_limit: mb << 20,
        shards: 4,
        ..Default::default()
    };
    Store::new(cfg, Arc::new(Clock::new()))
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fc-snap-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn get(s: &Store, k: &str) -> Option<(Vec<u8>, u32, u64)> {
    s.get(k.as_bytes(), |it| (it.value.to_vec(), it.flags, it.cas))
        .ok()
}

#[test]
fn round_trip_keeps_values_flags_cas_and_counter() {
    let a = store(64);
    for i in 0..20_000u32 {
        let k = format!("key:{i:08}");
        a.store(
            StoreOp::Set,
            k.as_bytes(),
            NewItem::new(i, 0, format!("v{i}").as_bytes()),
            Guard::NONE,
        );
    }
    a.store(
        StoreOp::Set,
        b"ttl",
        NewItem::new(0, 1000, b"x"),
        Guard::NONE,
    );
    let d = dir("rt");
    let p = d.join("s");
    let st = SnapStats::default();
    let rep = save(&a, &p, a.clock().unix_time(), 2, &st).expect("save");
    assert_eq!(rep.items, 20_001);
    let b = store(64);
    let r = load(&b, &p, 2, &st);
    assert_eq!(r.error, None);
    assert_eq!(r.loaded, 20_001);
    for i in (0..20_000u32).step_by(97) {
        let k = format!("key:{i:08}");
        assert_eq!(get(&a, &k), get(&b, &k), "{k}");
    }
    let (_, _, cas_a) = get(&a, "ttl").expect("ttl");
    assert_eq!(get(&b, "ttl").map(|x| x.2), Some(cas_a));
    // The counter goes on from where it was.
    b.store(StoreOp::Set, b"new", NewItem::new(0, 0, b"1"), Guard::NONE);
    assert!(get(&b, "new").expect("new").2 > cas_a);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn corrupt_block_keeps_the_verified_prefix_and_bad_headers_are_refused() {
    let a = store(64);
    let v = vec![b'v'; 100];
    for i in 0..30_000u32 {
        a.store(
            StoreOp::Set,
            format!("key:{i:08}").as_bytes(),
            NewItem::new(0, 0, &v),
            Guard::NONE,
        );
    }
    let d = dir("bad");
    let p = d.join("s");
    let st = SnapStats::default();
    save(&a, &p, 0, 1, &st).expect("save");
    let mut bytes = std::fs::read(&p).expect("read");
    let pos = HEADER_LEN + BLOCK_HDR + 2 * BLOCK_TARGET;
    bytes[pos] ^= 0xff;
    std::fs::write(&p, &bytes).expect("write");
    let b = store(64);
    let r = load(&b, &p, 2, &st);
    assert!(r.error.is_some() && !r.refused, "{r:?}");
    assert!(r.loaded > 0 && r.loaded < 30_000, "{r:?}");
    // Every loaded value is one that was stored.
    let mut n = 0;
    for i in 0..30_000u32 {
        if let Some((val, _, _)) = get(&b, &format!("key:{i:08}")) {
            assert_eq!(val, v);
            n += 1;
        }
    }
    assert_eq!(n, r.loaded);
    bytes[8] = 9;
    std::fs::write(&p, &bytes).expect("write");
    let r = load(&store(64), &p, 2, &st);
    assert!(r.refused && r.error.as_deref().unwrap_or("").contains("version 9"));
    std::fs::write(&p, b"").expect("write");
    assert!(load(&store(64), &p, 2, &st).refused);
    assert!(load(&store(64), &d, 2, &st).refused);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn items_above_a_smaller_item_size_are_dropped_and_counted() {
    let a = store(64);
    let big = vec![b'b'; 600 << 10];
    a.store(StoreOp::Set, b"big", NewItem::new(0, 0, &big), Guard::NONE);
    a.store(
        StoreOp::Set,
        b"small",
        NewItem::new(0, 0, b"s"),
        Guard::NONE,
    );
    let d = dir("large");
    let p = d.join("s");
    let st = SnapStats::default();
    save(&a, &p, 0, 1, &st).expect("save");
    let cfg = StoreConfig {
        mem_limit: 64 << 20,
        item_size_max: 512 << 10,
        shards: 8,
        ..Default::default()
    };
    let b = Store::new(cfg, Arc::new(Clock::new()));
    let r = load(&b, &p, 2, &st);
    assert_eq!((r.loaded, r.too_large, r.error.clone()), (1, 1, None));
    assert!(get(&b, "big").is_none() && get(&b, "small").is_some());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_smaller_store_keeps_the_hottest() {
    let a = store(64);
    let v = vec![b'v'; 1000];
    for i in 0..40_000u32 {
        a.store(
            StoreOp::Set,
            format!("key:{i:08}").as_bytes(),
            NewItem::new(0, 0, &v),
            Guard::NONE,
        );
    }
    for i in 0..2_000u32 {
        for _ in 0..3 {
            let _ = a.get(format!("key:{i:08}").as_bytes(), |_| ());
        }
    }
    let d = dir("hot");
    let p = d.join("s");
    let st = SnapStats::default();
    save(&a, &p, 0, 2, &st).expect("save");
    let b = store(8);
    let r = load(&b, &p, 2, &st);
    assert_eq!(r.error, None);
    assert!(r.dropped > 0);
    assert_eq!(r.loaded + r.dropped, a.stats().curr_items);
    for i in 0..2_000u32 {
        assert!(
            get(&b, &format!("key:{i:08}")).is_some(),
            "hot key {i} kept"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}
