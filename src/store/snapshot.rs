//! Snapshot files: the store written to disk and read back (warm restart with `-e`,
//! online backups with `snapshot`/SIGUSR2, `--restore`).
//!
//! # File format, version 1 (all integers little endian)
//!
//! ```text
//!  header, 96 bytes
//!  ┌────────┬──────┬──────────────────────────────────────────────────────────────┐
//!  │ offset │ size │ field                                                        │
//!  ├────────┼──────┼──────────────────────────────────────────────────────────────┤
//!  │      0 │    8 │ magic "FCSNAP\r\n"                                           │
//!  │      8 │    4 │ format version (1)                                           │
//!  │     12 │    4 │ header length (96)                                           │
//!  │     16 │    8 │ wall-clock time of the save, unix seconds (server clock)     │
//!  │     24 │    8 │ CAS counter (uniques handed out)                             │
//!  │     32 │    8 │ flush_all point, unix seconds (0 = none)                     │
//!  │     40 │    8 │ flush_all CAS mark (0 = none)                                │
//!  │     48 │    4 │ bits: 0x1 = CAS uniques kept                                 │
//!  │     52 │    4 │ shards of the saving server (information only)               │
//!  │     56 │   32 │ ferrocache version that wrote it, UTF-8, NUL padded          │
//!  │     88 │    4 │ reserved (0)                                                 │
//!  │     92 │    4 │ CRC32 (IEEE) of bytes 0..92                                  │
//!  └────────┴──────┴──────────────────────────────────────────────────────────────┘
//!  then blocks, each:
//!  ┌────────┬──────┬──────────────────────────────────────────────────────────────┐
//!  │      0 │    1 │ kind: 1 = items, 2 = end                                     │
//!  │      1 │    3 │ reserved (0)                                                 │
//!  │      4 │    4 │ payload length                                               │
//!  │      8 │    4 │ records in the payload (0 for the end block)                 │
//!  │     12 │    4 │ CRC32 of bytes 0..12 of this header and of the payload      │
//!  │     16 │    … │ payload                                                      │
//!  └────────┴──────┴──────────────────────────────────────────────────────────────┘
//!  item record (in an items block, back to back; a block holds whole records, about
//!  1 MiB of them, or one larger item):
//!  │      0 │    1 │ bits: 0x03 access counter, 0x04 fetched, 0x08 main queue,    │
//!  │        │      │       0x10 meta stale mark, 0x20 key stored base64 (meta b)  │
//!  │      1 │    1 │ key length (1..=250)                                         │
//!  │      2 │    4 │ value length                                                 │
//!  │      6 │    4 │ client flags                                                 │
//!  │     10 │    8 │ expiry, unix seconds (0 = never)                             │
//!  │     18 │    8 │ last access, unix seconds                                    │
//!  │     26 │    8 │ CAS unique (0 = none)                                        │
//!  │     34 │    … │ key, then value                                              │
//!  end block payload, 32 bytes: records, items blocks, payload bytes of the items
//!  blocks, item bytes in memory (what the items took in the saving store).
//! ```
//!
//! A file is complete only with its end block, whose counts match what precedes it.
//!
//! # Rules
//! - Saving writes `<file>.tmp`, fsyncs it, renames it over `<file>` and fsyncs the
//!   directory: a crash (or `kill -9`) during a save leaves the previous `<file>`
//!   whole. The temporary file is created new (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode
//!   0600) after a stale one is unlinked: a symlink planted there is never followed
//!   (the save fails instead), and the rename replaces a link at `<file>` itself.
//! - A file is untrusted input. It is opened without blocking (a FIFO or device is
//!   refused as "not a regular file", never waited on); every count it gives bounds
//!   nothing it allocates: block lengths are checked against the rest of the file
//!   and the format's largest block ([`MAX_BLOCK`]) before a buffer is made, and the
//!   index is pre-sized from the end block's record count only as far as the file's
//!   length and `-m` could hold that many items. CAS uniques (the header's counter
//!   and flush mark, each record's) are below 2^48, what the store keeps: a header
//!   claiming more is refused, a record claiming more is malformed (the load ends
//!   with an error; nothing is cut to 48 bits).
//! - Loading verifies every block's CRC. Another magic, another format version, a bad
//!   header: nothing is loaded (the reason is logged and counted). A block that fails
//!   its CRC, a short block or a missing end block ends the load there: the items of
//!   the blocks verified before it are kept (the *verified prefix*), the error is
//!   logged and counted. Nothing that was not in a verified block is ever stored.
//! - Times are wall-clock: an item whose expiry passed while the server was down is
//!   not loaded; a `flush_all` point still ahead is kept at the same wall time.
//! - Meta marks: "stale" and "key is base64" are kept; "win token sent" is dropped
//!   (the client that got it went away with the old process; another may win once).
//! - When the saved items do not fit in this store (smaller `-m`), items are loaded
//!   hottest first (by the access counter, 3 down to 0, one pass over the file each)
//!   and none is evicted: what does not fit is counted as dropped.
//! - Items larger than this server's `-I` are dropped and counted.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{item, SnapBuf, SnapItem, SnapMeta, Store};

/// The file's first bytes.
pub const MAGIC: [u8; 8] = *b"FCSNAP\r\n";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Header length.
pub const HEADER_LEN: usize = 96;
/// Block header length.
pub const BLOCK_HDR: usize = 16;
/// Item record header length.
pub const RECORD_HDR: usize = 34;
const END_PAYLOAD: usize = 32;
const KIND_ITEMS: u8 = 1;
const KIND_END: u8 = 2;
/// Payload bytes an items block is closed at.
const BLOCK_TARGET: usize = 1 << 20;
/// Segment bytes copied under one shard lock during a snapshot.
const COPY_BATCH: usize = 1 << 20;
/// The largest block payload a file may hold: a block is closed once it reaches
/// [`BLOCK_TARGET`], so it holds less than that plus one record, and a record is at
/// most a 250-byte key and a value of memcached's largest `-I` (1 GiB). A longer
/// block is corrupt, and no buffer is made for it.
pub const MAX_BLOCK: usize = BLOCK_TARGET + RECORD_HDR + 255 + (1 << 30);
/// The smallest an item can take in a store (a 9-byte header and a 1-byte key):
/// no `-m` holds more items than `-m` / this.
const MIN_ITEM_BYTES: u64 = 10;

const R_FREQ: u8 = 0x03;
const R_FETCHED: u8 = 0x04;
const R_MAIN: u8 = 0x08;
const R_STALE: u8 = 0x10;
const R_KEY_BINARY: u8 = 0x20;

/// Progress and results of snapshots and of the restore, for `stats`.
#[derive(Debug, Default)]
pub struct SnapStats {
    /// A snapshot is being written.
    pub in_progress: AtomicBool,
    /// Bytes written by the snapshot in progress (or the last one).
    pub bytes_written: AtomicU64,
    /// Items written by the snapshot in progress (or the last one).
    pub items_written: AtomicU64,
    /// Start of the snapshot in progress, ms since the unix epoch.
    pub started_ms: AtomicU64,
    /// Duration of the last snapshot, ms.
    pub last_duration_ms: AtomicU64,
    /// Snapshots written.
    pub completed: AtomicU64,
    /// Snapshots that failed.
    pub failed: AtomicU64,
    /// Items restored at start.
    pub restore_loaded: AtomicU64,
    /// Items of the file not restored for lack of memory.
    pub restore_dropped: AtomicU64,
    /// Items of the file whose expiry had passed.
    pub restore_expired: AtomicU64,
    /// Items of the file above this server's `-I`.
    pub restore_too_large: AtomicU64,
    /// Records for a key already restored with a newer CAS unique.
    pub restore_duplicates: AtomicU64,
    /// Problems with the file: refused (format, version, header), unreadable, or a
    /// bad or missing block (the verified prefix was loaded).
    pub restore_errors: AtomicU64,
    /// Bytes of the file read.
    pub restore_bytes_read: AtomicU64,
    /// Duration of the restore, ms.
    pub restore_duration_ms: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SnapStats {
    /// Milliseconds the snapshot in progress has run, or the last one took.
    pub fn duration_ms(&self) -> u64 {
        if self.in_progress.load(Ordering::Relaxed) {
            now_ms().saturating_sub(self.started_ms.load(Ordering::Relaxed))
        } else {
            self.last_duration_ms.load(Ordering::Relaxed)
        }
    }
}

/// CRC32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The header's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Wall-clock time of the save (unix seconds).
    pub saved_at: i64,
    /// Store-wide facts.
    pub meta: SnapMeta,
    /// Shards of the saving server.
    pub shards: u32,
    /// ferrocache version that wrote the file.
    pub version: String,
}

impl Header {
    /// The 96 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.saved_at.to_le_bytes());
        h[24..32].copy_from_slice(&self.meta.cas_counter.to_le_bytes());
        h[32..40].copy_from_slice(&self.meta.flush_at.to_le_bytes());
        h[40..48].copy_from_slice(&self.meta.flush_cas.to_le_bytes());
        h[48..52].copy_from_slice(&u32::from(self.meta.cas_enabled).to_le_bytes());
        h[52..56].copy_from_slice(&self.shards.to_le_bytes());
        let v = self.version.as_bytes();
        let n = v.len().min(32);
        h[56..56 + n].copy_from_slice(&v[..n]);
        let crc = crc32(&[&h[..92]]);
        h[92..96].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Reads a header, or says why the file is refused.
    pub fn decode(b: &[u8]) -> Result<Header, String> {
        if b.is_empty() {
            return Err("the file is empty".into());
        }
        if b.len() < 12 || b[0..8] != MAGIC {
            return Err("not a ferrocache snapshot (bad magic)".into());
        }
        let version = rd_u32(b, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "snapshot format version {version} is not supported by this ferrocache \
                 (it reads version {FORMAT_VERSION}): refused"
            ));
        }
        if b.len() < HEADER_LEN {
            return Err("truncated header".into());
        }
        if rd_u32(b, 12) as usize != HEADER_LEN || rd_u32(b, 92) != crc32(&[&b[..92]]) {
            return Err("corrupt header (checksum mismatch)".into());
        }
        let (cas_counter, flush_cas) = (rd_u64(b, 24), rd_u64(b, 40));
        if cas_counter > item::CAS_MASK || flush_cas > item::CAS_MASK {
            return Err(format!(
                "corrupt header (CAS counter {cas_counter} or flush mark {flush_cas} \
                 above 2^48 - 1, the largest unique a store keeps)"
            ));
        }
        let v = &b[56..88];
        let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
        Ok(Header {
            saved_at: rd_u64(b, 16) as i64,
            meta: SnapMeta {
                cas_counter,
                flush_at: rd_u64(b, 32) as i64,
                flush_cas,
                cas_enabled: rd_u32(b, 48) & 1 != 0,
            },
            shards: rd_u32(b, 52),
            version: String::from_utf8_lossy(&v[..end]).into_owned(),
        })
    }
}

/// Fills in a block's header (kind, length, count, CRC) at the start of `blk`, whose
/// payload follows it.
fn seal_block(blk: &mut [u8], kind: u8, records: u32) {
    let len = (blk.len() - BLOCK_HDR) as u32;
    blk[0] = kind;
    blk[1..4].fill(0);
    blk[4..8].copy_from_slice(&len.to_le_bytes());
    blk[8..12].copy_from_slice(&records.to_le_bytes());
    let crc = crc32(&[&blk[..12], &blk[BLOCK_HDR..]]);
    blk[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Appends one item record to `out`.
pub fn encode_record(out: &mut Vec<u8>, it: &SnapItem<'_>) {
    let mut bits = it.freq & R_FREQ;
    if it.fetched {
        bits |= R_FETCHED;
    }
    if it.main {
        bits |= R_MAIN;
    }
    if it.marks & item::MARK_STALE != 0 {
        bits |= R_STALE;
    }
    if it.marks & item::MARK_KEY_BINARY != 0 {
        bits |= R_KEY_BINARY;
    }
    out.push(bits);
    out.push(it.key.len() as u8);
    out.extend_from_slice(&(it.value.len() as u32).to_le_bytes());
    out.extend_from_slice(&it.flags.to_le_bytes());
    out.extend_from_slice(&it.exptime.to_le_bytes());
    out.extend_from_slice(&it.atime.to_le_bytes());
    out.extend_from_slice(&it.cas.to_le_bytes());
    out.extend_from_slice(it.key);
    out.extend_from_slice(it.value);
}

/// Reads the record at the start of `b`: the item and the bytes it took, or `None`
/// when `b` does not hold a whole, well-formed record (a CAS unique above 2^48 - 1,
/// which no store hands out, is not well-formed).
pub fn decode_record(b: &[u8]) -> Option<(SnapItem<'_>, usize)> {
    if b.len() < RECORD_HDR {
        return None;
    }
    let bits = b[0];
    let klen = b[1] as usize;
    let vlen = rd_u32(b, 2) as usize;
    let end = RECORD_HDR.checked_add(klen)?.checked_add(vlen)?;
    if klen == 0 || end > b.len() || rd_u64(b, 26) > item::CAS_MASK {
        return None;
    }
    let mut marks = 0;
    if bits & R_STALE != 0 {
        marks |= item::MARK_STALE;
    }
    if bits & R_KEY_BINARY != 0 {
        marks |= item::MARK_KEY_BINARY;
    }
    Some((
        SnapItem {
            key: &b[RECORD_HDR..RECORD_HDR + klen],
            value: &b[RECORD_HDR + klen..end],
            flags: rd_u32(b, 6),
            exptime: rd_u64(b, 10) as i64,
            atime: rd_u64(b, 18) as i64,
            cas: rd_u64(b, 26),
            freq: bits & R_FREQ,
            fetched: bits & R_FETCHED != 0,
            main: bits & R_MAIN != 0,
            marks,
        },
        end,
    ))
}

/// What a save wrote.
#[derive(Debug, Clone, Default)]
pub struct SaveReport {
    /// Item records.
    pub items: u64,
    /// File bytes.
    pub bytes: u64,
    /// Wall time it took.
    pub duration: Duration,
}

/// `<file>.tmp`: where a save writes before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Creates the temporary file anew: a stale one (a crash during an earlier save) is
/// unlinked first, and the create refuses to follow a symlink or to open anything
/// that exists (`O_CREAT|O_EXCL|O_NOFOLLOW`): something planted at the name makes the
/// save fail, it is never written through.
fn open_tmp(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
}

/// Opens a file to read a snapshot from: without blocking (a FIFO has no writer to
/// wait for) and only when it is a regular file.
fn open_for_load(path: &Path) -> Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    match file.metadata() {
        Ok(m) if m.is_dir() => Err("is a directory".into()),
        Ok(m) if !m.is_file() => Err("not a regular file".into()),
        Ok(_) => Ok(file),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

/// Whether `path` is a snapshot file: a regular file (not followed through a
/// symlink) that starts with [`MAGIC`]. What `--snapshot-limit` counts.
pub fn is_snapshot_file(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(mut f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    else {
        return false;
    };
    let mut magic = [0u8; 8];
    matches!(read_full(&mut f, &mut magic), Ok(8)) && magic == MAGIC
}

/// Writes a snapshot of `store` to `path` while it may keep serving: shards are
/// copied by `threads` threads (one shard at a time each, short lock holds, see
/// [`Store::snapshot_shard`]), blocks are written by this thread in the order they
/// are made. Progress goes to `stats` and, about once a second, to the log at `-v`.
/// `saved_at` is the server's wall-clock time (unix seconds).
pub fn save(
    store: &Store,
    path: &Path,
    saved_at: i64,
    threads: usize,
    stats: &SnapStats,
) -> Result<SaveReport, String> {
    save_paced(store, path, saved_at, threads, 0, stats)
}

/// [`save`] that, with `pace > 0`, rests `pace` times as long as it worked after each
/// block (an online snapshot takes at most 1/(1+pace) of a core per thread, leaving
/// the rest to the workers).
pub fn save_paced(
    store: &Store,
    path: &Path,
    saved_at: i64,
    threads: usize,
    pace: u32,
    stats: &SnapStats,
) -> Result<SaveReport, String> {
    let start = Instant::now();
    let tmp = temp_path(path);
    let mut file = open_tmp(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let r = write_all(store, &mut file, saved_at, threads, pace, stats, start).and_then(|rep| {
        file.sync_all()
            .map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| format!("rename {} to {}: {e}", tmp.display(), path.display()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(rep)
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|mut rep| {
        rep.duration = start.elapsed();
        rep
    })
}

/// Totals the save threads add up.
#[derive(Default)]
struct Totals {
    records: AtomicU64,
    mem_bytes: AtomicU64,
}

fn write_all(
    store: &Store,
    file: &mut File,
    saved_at: i64,
    threads: usize,
    pace: u32,
    stats: &SnapStats,
    start: Instant,
) -> Result<SaveReport, String> {
    let header = Header {
        saved_at,
        meta: store.snapshot_meta(),
        shards: store.shards() as u32,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let werr = |e: io::Error| format!("write: {e}");
    out.write_all(&header.encode()).map_err(werr)?;
    let mut bytes = HEADER_LEN as u64;
    let mut blocks = 0u64;
    let mut payload = 0u64;
    let threads = threads.clamp(1, store.shards().max(1));
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let totals = Totals::default();
    let cas_on = store.snapshot_meta().cas_enabled;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(threads * 2);
    let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(threads * 3);
    let result = std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let free_rx = free_rx.clone();
            let (next, abort, totals) = (&next, &abort, &totals);
            s.spawn(move || {
                let mut buf = SnapBuf::default();
                let fresh = || {
                    let mut b = free_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(BLOCK_TARGET + (64 << 10)));
                    b.clear();
                    b.resize(BLOCK_HDR, 0);
                    b
                };
                let mut blk = fresh();
                let mut count = 0u32;
                let mut mem = 0u64;
                let mut n = 0u64;
                let mut worked = Instant::now();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= store.shards() || abort.load(Ordering::Relaxed) {
                        break;
                    }
                    store.snapshot_shard(i, COPY_BATCH, &mut buf, &mut |it| {
                        if abort.load(Ordering::Relaxed) {
                            return;
                        }
                        let mut it = *it;
                        it.marks &= item::MARK_STALE | item::MARK_KEY_BINARY;
                        encode_record(&mut blk, &it);
                        count += 1;
                        n += 1;
                        mem += item::total_size(
                            it.key.len(),
                            it.value.len(),
                            it.flags,
                            u32::from(it.exptime != 0),
                            cas_on,
                        ) as u64;
                        if blk.len() >= BLOCK_TARGET {
                            seal_block(&mut blk, KIND_ITEMS, count);
                            let full = std::mem::replace(&mut blk, fresh());
                            count = 0;
                            if tx.send(full).is_err() {
                                abort.store(true, Ordering::Relaxed);
                            }
                            if pace > 0 {
                                std::thread::sleep(worked.elapsed() * pace);
                                worked = Instant::now();
                            }
                        }
                    });
                }
                if count > 0 {
                    seal_block(&mut blk, KIND_ITEMS, count);
                    let _ = tx.send(blk);
                }
                totals.records.fetch_add(n, Ordering::Relaxed);
                totals.mem_bytes.fetch_add(mem, Ordering::Relaxed);
            });
        }
        drop(tx);
        let mut last_log = Instant::now();
        let mut err = None;
        for blk in rx.iter() {
            if err.is_none() {
                if let Err(e) = out.write_all(&blk) {
                    err = Some(werr(e));
                    abort.store(true, Ordering::Relaxed);
                }
            }
            bytes += blk.len() as u64;
            blocks += 1;
            payload += (blk.len() - BLOCK_HDR) as u64;
            let recs = u64::from(rd_u32(&blk, 8));
            stats.bytes_written.store(bytes, Ordering::Relaxed);
            stats.items_written.fetch_add(recs, Ordering::Relaxed);
            let _ = free_tx.try_send(blk);
            if last_log.elapsed() >= Duration::from_secs(1) {
                last_log = Instant::now();
                log::info!(
                    "snapshot: {} items, {} MiB written, {:.1} s",
                    stats.items_written.load(Ordering::Relaxed),
                    bytes >> 20,
                    start.elapsed().as_secs_f64()
                );
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    });
    result?;
    let records = totals.records.load(Ordering::Relaxed);
    let mut end = vec![0u8; BLOCK_HDR + END_PAYLOAD];
    end[16..24].copy_from_slice(&records.to_le_bytes());
    end[24..32].copy_from_slice(&blocks.to_le_bytes());
    end[32..40].copy_from_slice(&payload.to_le_bytes());
    end[40..48].copy_from_slice(&totals.mem_bytes.load(Ordering::Relaxed).to_le_bytes());
    seal_block(&mut end, KIND_END, 0);
    out.write_all(&end).map_err(werr)?;
    out.flush().map_err(werr)?;
    bytes += end.len() as u64;
    stats.bytes_written.store(bytes, Ordering::Relaxed);
    Ok(SaveReport {
        items: records,
        bytes,
        duration: Duration::ZERO,
    })
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// The header, when it was readable.
    pub header: Option<Header>,
    /// Items stored.
    pub loaded: u64,
    /// Items not stored for lack of memory.
    pub dropped: u64,
    /// Items whose expiry had passed.
    pub expired: u64,
    /// Items above this server's `-I`.
    pub too_large: u64,
    /// Records of a key already stored with a newer CAS unique.
    pub duplicates: u64,
    /// Bytes read (the last pass).
    pub bytes_read: u64,
    /// Nothing was loaded: the file was refused or unreadable.
    pub refused: bool,
    /// The first problem met (refusal, bad block, truncation), if any.
    pub error: Option<String>,
    /// Wall time it took.
    pub duration: Duration,
}

#[derive(Default)]
struct Counts {
    loaded: AtomicU64,
    dropped: AtomicU64,
    expired: AtomicU64,
    too_large: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicBool,
}

/// The end block's figures.
#[derive(Debug, Clone, Copy)]
struct EndInfo {
    records: u64,
    blocks: u64,
    payload: u64,
    mem_bytes: u64,
}

fn read_end(file: &mut File, len: u64) -> Option<EndInfo> {
    let n = (BLOCK_HDR + END_PAYLOAD) as u64;
    if len < HEADER_LEN as u64 + n {
        return None;
    }
    file.seek(SeekFrom::Start(len - n)).ok()?;
    let mut b = vec![0u8; n as usize];
    file.read_exact(&mut b).ok()?;
    let ok = b[0] == KIND_END
        && rd_u32(&b, 4) as usize == END_PAYLOAD
        && rd_u32(&b, 12) == crc32(&[&b[..12], &b[BLOCK_HDR..]]);
    ok.then(|| EndInfo {
        records: rd_u64(&b, 16),
        blocks: rd_u64(&b, 24),
        payload: rd_u64(&b, 32),
        mem_bytes: rd_u64(&b, 40),
    })
}

/// Loads the snapshot at `path` into `store` (empty, not yet serving) with `threads`
/// threads, following the rules of the module doc. Never panics on a bad file: what
/// went wrong is in the report (and the counters of `stats`).
pub fn load(store: &Store, path: &Path, threads: usize, stats: &SnapStats) -> LoadReport {
    let start = Instant::now();
    let mut rep = load_inner(store, path, threads, start);
    rep.duration = start.elapsed();
    let st = stats;
    st.restore_loaded.store(rep.loaded, Ordering::Relaxed);
    st.restore_dropped.store(rep.dropped, Ordering::Relaxed);
    st.restore_expired.store(rep.expired, Ordering::Relaxed);
    st.restore_too_large.store(rep.too_large, Ordering::Relaxed);
    st.restore_duplicates
        .store(rep.duplicates, Ordering::Relaxed);
    st.restore_bytes_read
        .store(rep.bytes_read, Ordering::Relaxed);
    st.restore_duration_ms
        .store(rep.duration.as_millis() as u64, Ordering::Relaxed);
    if rep.error.is_some() {
        st.restore_errors.fetch_add(1, Ordering::Relaxed);
    }
    rep
}

fn load_inner(store: &Store, path: &Path, threads: usize, start: Instant) -> LoadReport {
    let mut rep = LoadReport::default();
    let refuse = |mut rep: LoadReport, msg: String| {
        rep.refused = true;
        rep.error = Some(msg);
        rep
    };
    let mut file = match open_for_load(path) {
        Ok(f) => f,
        Err(e) => return refuse(rep, e),
    };
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return refuse(rep, format!("cannot read: {e}")),
    };
    let mut hb = vec![0u8; HEADER_LEN];
    let got = match read_full(&mut file, &mut hb) {
        Ok(n) => n,
        Err(e) => return refuse(rep, format!("cannot read: {e}")),
    };
    let header = match Header::decode(&hb[..got]) {
        Ok(h) => h,
        Err(msg) => return refuse(rep, msg),
    };
    rep.header = Some(header.clone());
    let end = read_end(&mut file, len);
    // Does everything fit? Segments' unused ends: two open segments a shard, and
    // the tail of each closed one (a few percent).
    let need = match end {
        Some(e) => e.mem_bytes,
        None => len,
    };
    let limit = store.stats().limit_maxbytes;
    let slack = (store.shards() as u64) * 2 * (super::segment::SEG_BYTES as u64);
    let fits = need.saturating_mul(103) / 100 + slack <= limit;
    let passes: Vec<Option<u8>> = if fits {
        vec![None]
    } else {
        log::info!(
            "restore: the saved items ({} MiB) exceed -m: loading the hottest first",
            need >> 20
        );
        vec![Some(3), Some(2), Some(1), Some(0)]
    };
    store.restore_meta(&header.meta);
    if let (Some(e), true) = (end, fits) {
        // The count is the file's word: pre-size the index only for as many items
        // as the file's bytes could encode and -m could hold (a crafted count of
        // 2^40 must not become an allocation). The end block is checked against
        // the blocks at the end of the pass.
        let by_file = len / (RECORD_HDR as u64 + 1);
        let by_memory = limit / MIN_ITEM_BYTES;
        store.reserve(e.records.min(by_file).min(by_memory));
    }
    let counts = Counts::default();
    let threads = threads.max(1);
    for tier in passes {
        if let Err(e) = file.seek(SeekFrom::Start(HEADER_LEN as u64)) {
            rep.error = Some(format!("seek: {e}"));
            break;
        }
        let load = Load {
            store,
            file_len: len,
            end,
            threads,
            counts: &counts,
            start,
        };
        let (err, read) = load_pass(&load, &mut file, tier);
        rep.bytes_read = read;
        if let Some(e) = err {
            rep.error.get_or_insert(e);
        }
        if rep.error.is_some() {
            // A later pass would meet the same bad block: what was verified is in.
            break;
        }
    }
    if counts.malformed.load(Ordering::Relaxed) && rep.error.is_none() {
        rep.error = Some("a malformed record in a verified block".into());
    }
    rep.loaded = counts.loaded.load(Ordering::Relaxed);
    rep.dropped = counts.dropped.load(Ordering::Relaxed);
    rep.expired = counts.expired.load(Ordering::Relaxed);
    rep.too_large = counts.too_large.load(Ordering::Relaxed);
    rep.duplicates = counts.duplicates.load(Ordering::Relaxed);
    rep
}

/// Reads as much of `buf` as the file holds; returns the bytes read.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What every pass of a load shares: the store, the file's length and end block,
/// the storing threads, the counts, when the load started.
struct Load<'a> {
    store: &'a Store,
    file_len: u64,
    end: Option<EndInfo>,
    threads: usize,
    counts: &'a Counts,
    start: Instant,
}

/// One pass over the blocks (only the items of access counter `tier`, when given):
/// this thread reads and verifies, `load.threads` threads store. Returns the problem
/// that ended the pass early, if any, and the bytes read.
fn load_pass(load: &Load<'_>, file: &mut File, tier: Option<u8>) -> (Option<String>, u64) {
    let Load {
        store,
        file_len,
        end,
        threads,
        counts,
        start,
    } = *load;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(threads * 2);
    let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(threads * 3);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let rx = rx.clone();
            let free_tx = free_tx.clone();
            s.spawn(move || {
                for blk in rx.iter() {
                    store_block(store, &blk, tier, counts);
                    let _ = free_tx.try_send(blk);
                }
            });
        }
        drop(rx);
        let mut read = HEADER_LEN as u64;
        let mut blocks = 0u64;
        let mut records = 0u64;
        let mut payload = 0u64;
        let mut last_log = Instant::now();
        let mut reader = io::BufReader::with_capacity(1 << 20, file);
        let err = loop {
            let mut bh = [0u8; BLOCK_HDR];
            match read_full_buf(&mut reader, &mut bh) {
                Ok(0) => break Some("truncated: no end block".to_string()),
                Ok(n) if n < BLOCK_HDR => {
                    break Some(format!("truncated block header at byte {read}"))
                }
                Ok(_) => {}
                Err(e) => break Some(format!("read: {e}")),
            }
            let len = rd_u32(&bh, 4) as usize;
            // A length past the end of the file, or beyond the largest block the
            // format has, is a torn or corrupt header: never allocate for it.
            if len as u64 > file_len.saturating_sub(read + BLOCK_HDR as u64) || len > MAX_BLOCK {
                break Some(format!("truncated or corrupt block at byte {read}"));
            }
            let mut blk = free_rx.try_recv().unwrap_or_default();
            blk.clear();
            blk.resize(len, 0);
            match read_full_buf(&mut reader, &mut blk) {
                Ok(n) if n == len => {}
                Ok(_) => break Some(format!("truncated block at byte {read}")),
                Err(e) => break Some(format!("read: {e}")),
            }
            if rd_u32(&bh, 12) != crc32(&[&bh[..12], &blk]) {
                break Some(format!("corrupt block at byte {read} (checksum mismatch)"));
            }
            read += (BLOCK_HDR + len) as u64;
            match bh[0] {
                KIND_END => {
                    let ok = len == END_PAYLOAD
                        && end.is_some_and(|e| {
                            e.records == records && e.blocks == blocks && e.payload == payload
                        });
                    break (!ok).then(|| "the end block does not match the file".to_string());
                }
                KIND_ITEMS => {}
                k => break Some(format!("unknown block kind {k} at byte {read}")),
            }
            blocks += 1;
            records += u64::from(rd_u32(&bh, 8));
            payload += len as u64;
            if tx.send(blk).is_err() {
                break Some("restore threads stopped".into());
            }
            if last_log.elapsed() >= Duration::from_secs(1) {
                last_log = Instant::now();
                log::info!(
                    "restore: {} items loaded, {} MiB read, {:.1} s",
                    counts.loaded.load(Ordering::Relaxed),
                    read >> 20,
                    start.elapsed().as_secs_f64()
                );
            }
        };
        drop(tx);
        (err, read)
    })
}

fn read_full_buf(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Stores the records of one verified block (those of `tier` only, when given).
fn store_block(store: &Store, mut b: &[u8], tier: Option<u8>, c: &Counts) {
    let (mut loaded, mut dropped, mut expired, mut large, mut dup) = (0, 0, 0, 0, 0);
    while !b.is_empty() {
        let Some((it, n)) = decode_record(b) else {
            c.malformed.store(true, Ordering::Relaxed);
            break;
        };
        b = &b[n..];
        if tier.is_some_and(|t| t != it.freq) {
            continue;
        }
        match store.restore_item(&it) {
            super::Restored::Loaded => loaded += 1,
            super::Restored::NoMemory => dropped += 1,
            super::Restored::Expired => expired += 1,
            super::Restored::TooLarge => large += 1,
            super::Restored::Duplicate => dup += 1,
        }
    }
    c.loaded.fetch_add(loaded, Ordering::Relaxed);
    c.dropped.fetch_add(dropped, Ordering::Relaxed);
    c.expired.fetch_add(expired, Ordering::Relaxed);
    c.too_large.fetch_add(large, Ordering::Relaxed);
    c.duplicates.fetch_add(dup, Ordering::Relaxed);
}

#[cfg(test)]
#[path = "tests/snapshot_file.rs"]
mod tests;
