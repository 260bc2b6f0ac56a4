//! `snapshot`: the snapshot reader (`store::snapshot::load`, the code a start runs on
//! `-e` and `--restore` files) on a crafted file, and the pure pieces it is built of
//! (`Header::decode`, `decode_record`).
//!
//! Byte 0 picks: bit 0 = *sealed* (the target writes every checksum the file's own
//! lengths lead to, the header's and each block's, so the fuzzer's lengths, counts
//! and CAS values reach the code behind the checksums instead of stopping at them);
//! bit 1 = `-C` (a store without CAS); bits 2-3 = the store's `-m` (1, 2, 4 or 8 MiB).
//! The rest is the file.
//!
//! Checked: nothing panics, no allocation follows a count or length the file gives
//! beyond what the file and `-m` can hold (libFuzzer's `-rss_limit_mb` and
//! `-malloc_limit_mb` catch one; a crafted end block claiming 2^40 records aborted
//! the start before), the load ends; a refused file loads nothing; the store stays
//! within `-m`; every restored CAS unique is below 2^48 and the next store's CAS is
//! above every restored one (the counter neither goes back nor wraps, unless the
//! file brought it to the top of the 48-bit cycle); a record decodes to at most its
//! bytes, with a key of 1..=255 bytes.
#![no_main]

use std::path::PathBuf;
use std::sync::Arc;

use ferrocache::store::snapshot::{
    crc32, decode_record, load, Header, SnapStats, BLOCK_HDR, HEADER_LEN,
};
use ferrocache::store::{Clock, Guard, NewItem, SnapBuf, Store, StoreConfig, StoreOp};
use libfuzzer_sys::fuzz_target;

/// The largest unique a store keeps (48 bits).
const CAS_MASK: u64 = (1 << 48) - 1;

fuzz_target!(|data: &[u8]| {
    let Some((&opts, file)) = data.split_first() else {
        return;
    };
    let mut file = file.to_vec();
    if opts & 1 != 0 {
        seal(&mut file);
    }
    pure_pieces(&file);
    let cas = opts & 2 == 0;
    let mem = 1usize << (20 + usize::from((opts >> 2) & 3));
    let path = scratch_file();
    if std::fs::write(&path, &file).is_err() {
        return;
    }
    let store = Store::new(
        StoreConfig {
            mem_limit: mem,
            shards: 4,
            cas_enabled: cas,
            ..Default::default()
        },
        Arc::new(Clock::new()),
    );
    let stats = SnapStats::default();
    let rep = load(&store, &path, 1, &stats);
    if rep.refused {
        assert_eq!(rep.loaded, 0, "a refused file loaded items: {rep:?}");
        assert!(rep.error.is_some());
    }
    let st = store.stats();
    assert!(
        st.total_malloced <= st.limit_maxbytes,
        "the store grew past -m: {} > {}",
        st.total_malloced,
        st.limit_maxbytes
    );
    // Every item restored: its CAS, and how many.
    let mut max_cas = 0u64;
    let mut items = 0u64;
    let mut buf = SnapBuf::default();
    for i in 0..store.shards() {
        store.snapshot_shard(i, 1 << 20, &mut buf, &mut |it| {
            items += 1;
            assert!(it.cas <= CAS_MASK, "a restored CAS above 2^48: {}", it.cas);
            max_cas = max_cas.max(it.cas);
            assert!(!it.key.is_empty() && it.key.len() <= 255);
        });
    }
    // A later record of a key replaces an earlier one: at most one item each.
    assert!(items <= rep.loaded, "{items} items after {rep:?}");
    if cas {
        let counter = Header::decode(&file)
            .map(|h| h.meta.cas_counter)
            .unwrap_or(0);
        store.store(StoreOp::Set, b"\xff-after-the-load", NewItem::new(0, 0, b"x"), Guard::NONE);
        let next = store.get(b"\xff-after-the-load", |it| it.cas).unwrap_or(0);
        let top = max_cas.max(counter & CAS_MASK) == CAS_MASK;
        assert!(
            next > max_cas || top || next == 0,
            "the counter went back: new unique {next} <= restored {max_cas}"
        );
    }
    let _ = std::fs::remove_file(&path);
});

/// The file every run of this process writes and reads.
fn scratch_file() -> PathBuf {
    std::env::temp_dir().join(format!("ferrocache-fuzz-snapshot-{}", std::process::id()))
}

/// Writes the checksums: the header's (when it is whole) and each block's, walking
/// the blocks by the lengths they claim.
fn seal(f: &mut [u8]) {
    if f.len() < HEADER_LEN {
        return;
    }
    let crc = crc32(&[&f[..92]]);
    f[92..96].copy_from_slice(&crc.to_le_bytes());
    let mut at = HEADER_LEN;
    while f.len() >= at + BLOCK_HDR {
        let len = u32::from_le_bytes([f[at + 4], f[at + 5], f[at + 6], f[at + 7]]) as usize;
        let end = (at + BLOCK_HDR).saturating_add(len).min(f.len());
        let crc = crc32(&[&f[at..at + 12], &f[at + BLOCK_HDR..end]]);
        f[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
        if end == f.len() {
            break;
        }
        at = end;
    }
}

/// `Header::decode` and `decode_record` on the bytes as they are.
fn pure_pieces(f: &[u8]) {
    if let Ok(h) = Header::decode(f) {
        assert!(f.len() >= HEADER_LEN);
        assert!(h.meta.cas_counter <= CAS_MASK && h.meta.flush_cas <= CAS_MASK);
        // What it encodes to decodes the same (the version text up to its NUL).
        let again = Header::decode(&h.encode()).expect("re-encoded header");
        assert_eq!(again.meta, h.meta);
        assert_eq!(again.saved_at, h.saved_at);
    }
    let mut rest = f.get(HEADER_LEN..).unwrap_or(&[]);
    let mut n = 0;
    while let Some((it, used)) = decode_record(rest) {
        assert!(used <= rest.len() && used > it.key.len() + it.value.len());
        assert!(!it.key.is_empty() && it.cas <= CAS_MASK);
        rest = &rest[used..];
        n += 1;
        if n > 10_000 {
            break;
        }
    }
}
