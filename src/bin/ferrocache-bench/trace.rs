//! Workload traces for `hitratio`: deterministic (seeded) request sequences of key ids,
//! value sizes and TTLs, and their export in libCacheSim's `oracleGeneral` binary format.
//!
//! Workload names (`--workloads`):
//!
//! | name | keys | popularity | value bytes | other |
//! |---|---|---|---|---|
//! | `zipf<S>-fixed` | 4M | Zipf(S) | 100 | |
//! | `zipf<S>-narrow` | 4M | Zipf(S) | 200..=400 uniform | |
//! | `zipf<S>-wide` | 2M | Zipf(S) | 50..8192, `50·(8192/50)^(u²)`: median 178, mean 924, p90 3.1k | |
//! | `zipf<S>-wide4k`, `-wide16k`, `-wide64k` | 2M | Zipf(S) | heavy tails: 40..N KiB, `40·(N/40)^(u²)` (16k: median 179, mean 1.3k, p90 5.1k; 64k: median 254, mean 4.3k, p99 53k) | popularity independent of size |
//! | `zipf<S>-bands` | 12k | Zipf(S) (`zipf0-bands`: uniform) | a quarter of the keys each in 40..300 B, 300 B..5 KB, 5..50 KB, 50..200 KB (uniform within a band) | values up to 200 KB |
//! | `zipf<S>-uniform2k` | 2M | Zipf(S) | 50..=2048 uniform | the old single-run `hitratio` shape |
//! | `scan` | 2M | Zipf(0.99) | narrow | after every 80k Zipf requests a scan of 20k never-seen keys (20% of requests are one-hit wonders) |
//! | `shift-size` | 2M + 2M | Zipf(0.9) | first half 100..=300, second half 1500..=4000 | the second half uses other keys: the application starts storing larger objects |
//! | `shift-hot` | 2M | Zipf(0.99) | narrow | four phases; in phase p rank r is key (r + p·K/4) mod K: the hot set moves three times |
//! | `ttl` | 2M | Zipf(0.9) | narrow | per key: 40% no TTL, 20% each 2 s, 5 s, 10 s; replayed at a fixed request rate (see `hitratio --ttl-rate`) so expiry happens on wall time at the same request index for both servers |
//!
//! `S` is any exponent (`zipf0.6`, `zipf0.9`, `zipf0.99`, `zipf1.2` are the defaults).
//! `<name>@<keys>` gives one workload its own key space (`zipf1.0-wide16k@300k`).
//! A key id `i` is the key `key:%010d` (14 bytes). The value size and TTL are functions
//! of the key id (a hash), so every set of a key stores the same value.

use crate::textconn::{mix64, SplitMix64};
use crate::zipf::{KeyChooser, Rng};
use std::io::Write as _;

/// Length of every key (`key:` + 10 digits).
pub const KEY_LEN: u32 = 14;
/// Bytes memcached 1.6 accounts per item beyond key and value (its `bytes` stat): 48 B
/// `struct item`, 8 B CAS, the key's terminating NUL and the value's stored `\r\n`
/// (measured: a 14-byte key with a 100-byte value counts 173 bytes; client flags 0,
/// which memcached does not store).
pub const MC_ITEM_OVERHEAD: u32 = 59;
/// Largest value any workload stores (the top of the `bands` sizes).
pub const MAX_VALUE: usize = 200_000;
/// Largest value of the `wide` sizes.
const WIDE_MAX: u32 = 8192;

/// One request of a trace.
#[derive(Clone, Copy, Debug)]
pub struct Req {
    /// Key id (the key is `key:%010d`; the `obj_id` of the exported trace).
    pub key: u32,
    /// Value length of this key.
    pub vlen: u32,
    /// TTL in seconds of this key (0 = none).
    pub ttl: u32,
    /// First request of this key in the trace (a compulsory miss for any cache).
    pub first: bool,
}

/// Value sizes of a workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sizes {
    /// Always the same size.
    Fixed(u32),
    /// Uniform over `lo..=hi`.
    Uniform(u32, u32),
    /// `lo..=hi` bytes, skewed towards small with a heavy tail: `lo·(hi/lo)^(u²)` for u
    /// uniform in [0,1) (`wide` is 50..8192).
    Wide(u32, u32),
    /// Four bands with a quarter of the keys each: 40..300 B, 300 B..5 KB, 5..50 KB,
    /// 50..200 KB, uniform within the band.
    Bands,
}

/// The `bands` sizes: (lo, hi) of each band.
const BANDS: [(u32, u32); 4] = [(40, 300), (300, 5_000), (5_000, 50_000), (50_000, 200_000)];

impl Sizes {
    /// The value size of key `key` (a hash of the key and `salt`).
    pub fn of(self, key: u32, salt: u64) -> u32 {
        let h = mix64(key as u64 ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match self {
            Sizes::Fixed(n) => n,
            Sizes::Uniform(lo, hi) => lo + (h % (hi - lo + 1) as u64) as u32,
            Sizes::Wide(lo, hi) => {
                let u = SplitMix64::new(h).next_f64();
                let l = (hi as f64 / lo as f64).ln();
                ((lo as f64 * (l * u * u).exp()) as u32).clamp(lo, hi)
            }
            Sizes::Bands => {
                let (lo, hi) = BANDS[(h % 4) as usize];
                lo + ((h >> 8) % (hi - lo + 1) as u64) as u32
            }
        }
    }

    fn name(self) -> String {
        match self {
            Sizes::Fixed(n) => format!("{n} B"),
            Sizes::Uniform(lo, hi) => format!("{lo}..={hi} B uniform"),
            Sizes::Wide(lo, hi) => format!("{lo}..{hi} B, {lo}*({hi}/{lo})^(u^2)"),
            Sizes::Bands => "a quarter each in 40..300 B, 300..5000 B, 5..50 KB, 50..200 KB".into(),
        }
    }
}

const NARROW: Sizes = Sizes::Uniform(200, 400);

/// A workload shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// Zipf(s) over the key space, value sizes `sizes`.
    Zipf(f64, Sizes),
    /// Zipf(0.99) hot set, scans of one-hit-wonder keys.
    Scan,
    /// Small values, then larger values on other keys.
    ShiftSize,
    /// The hot set moves.
    ShiftHot,
    /// Mixed TTLs, paced.
    Ttl,
}

/// A named workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Its name on the command line.
    pub name: String,
    /// What it does.
    pub shape: Shape,
    /// Key space (of each phase, for `shift-size`).
    pub keys: u64,
}

/// The default workload list.
pub const DEFAULT_WORKLOADS: &str = "zipf0.6-fixed,zipf0.6-narrow,zipf0.6-wide,\
zipf0.9-fixed,zipf0.9-narrow,zipf0.9-wide,zipf0.99-fixed,zipf0.99-narrow,zipf0.99-wide,\
zipf1.2-fixed,zipf1.2-narrow,zipf1.2-wide,scan,shift-size,shift-hot,ttl";

/// Scan: Zipf requests between two scans.
const SCAN_EVERY: u64 = 80_000;
/// Scan: keys per scan.
const SCAN_LEN: u64 = 20_000;
/// TTL classes of the `ttl` workload (seconds) and their shares in percent.
const TTL_MIX: [(u32, u64); 4] = [(0, 40), (2, 20), (5, 20), (10, 20)];

impl Workload {
    /// Parses one name; `keys` overrides the default key space.
    pub fn parse(name: &str, keys: Option<u64>) -> Result<Workload, String> {
        let full = name.trim();
        // `<name>@<keys>`: this workload's own key space (`300k`, `2m` or a number).
        let (n, own_keys) = match full.split_once('@') {
            Some((n, k)) => (
                n,
                Some(
                    parse_count(k)
                        .ok_or_else(|| format!("workload {full:?}: bad key space {k:?}"))?,
                ),
            ),
            None => (full, None),
        };
        let (shape, default_keys) = match n {
            "scan" => (Shape::Scan, 2_000_000),
            "shift-size" => (Shape::ShiftSize, 2_000_000),
            "shift-hot" => (Shape::ShiftHot, 2_000_000),
            "ttl" => (Shape::Ttl, 2_000_000),
            _ => {
                let rest = n
                    .strip_prefix("zipf")
                    .ok_or_else(|| format!("unknown workload {n:?}"))?;
                let (s, sizes) = rest.split_once('-').ok_or_else(|| {
                    format!(
                        "workload {n:?}: expected zipf<S>-<fixed|narrow|wide|wide4k|wide16k|wide64k|bands|uniform2k>"
                    )
                })?;
                let s: f64 = s
                    .parse()
                    .map_err(|_| format!("workload {n:?}: bad exponent {s:?}"))?;
                if !(s.is_finite() && (0.0..=5.0).contains(&s)) {
                    return Err(format!("workload {n:?}: exponent must be in 0..=5"));
                }
                let (sizes, k) = match sizes {
                    "fixed" => (Sizes::Fixed(100), 4_000_000),
                    "narrow" => (NARROW, 4_000_000),
                    "wide" => (Sizes::Wide(50, WIDE_MAX), 2_000_000),
                    "wide4k" => (Sizes::Wide(40, 4096), 2_000_000),
                    "wide16k" => (Sizes::Wide(40, 16_384), 2_000_000),
                    "wide64k" => (Sizes::Wide(40, 65_536), 2_000_000),
                    "bands" => (Sizes::Bands, 12_000),
                    "uniform2k" => (Sizes::Uniform(50, 2048), 2_000_000),
                    _ => {
                        return Err(format!(
                            "workload {n:?}: sizes must be fixed, narrow, wide, wide4k, wide16k, wide64k, bands or uniform2k"
                        ))
                    }
                };
                (Shape::Zipf(s, sizes), k)
            }
        };
        let keys = own_keys.or(keys).unwrap_or(default_keys);
        if keys == 0 || keys > 1_000_000_000 {
            return Err(format!(
                "workload {n}: key space {keys} out of range 1..=1e9"
            ));
        }
        Ok(Workload {
            name: full.to_string(),
            shape,
            keys,
        })
    }

    /// Parses a comma-separated list.
    pub fn parse_list(list: &str, keys: Option<u64>) -> Result<Vec<Workload>, String> {
        let v = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| Workload::parse(s, keys))
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() {
            return Err("--workloads: no workload given".into());
        }
        Ok(v)
    }

    /// Whether the replay must follow wall time (TTLs).
    pub fn paced(&self) -> bool {
        self.shape == Shape::Ttl
    }

    /// One line saying what the workload is.
    pub fn describe(&self) -> String {
        let k = self.keys;
        match &self.shape {
            Shape::Zipf(s, sizes) => format!("Zipf({s}) over {k} keys, values {}", sizes.name()),
            Shape::Scan => format!(
                "Zipf(0.99) over {k} keys, values {}; after every {SCAN_EVERY} requests a scan of {SCAN_LEN} new keys requested once",
                NARROW.name()
            ),
            Shape::ShiftSize => format!(
                "Zipf(0.9) over {k} keys with values 100..=300 B, then (second half) over {k} other keys with values 1500..=4000 B"
            ),
            Shape::ShiftHot => format!(
                "Zipf(0.99) over {k} keys, values {}; 4 phases, the hot set moves by {} keys each phase",
                NARROW.name(),
                k / 4
            ),
            Shape::Ttl => format!(
                "Zipf(0.9) over {k} keys, values {}; TTL per key 40% none, 20% 2 s, 20% 5 s, 20% 10 s",
                NARROW.name()
            ),
        }
    }

    /// Generates the trace: `requests` requests, seeded by `seed` and the workload name.
    pub fn generate(&self, requests: u64, seed: u64) -> Result<Trace, String> {
        let salt = name_hash(&self.name);
        let mut rng = Rng::new(seed ^ salt);
        let k = self.keys;
        let n = requests as usize;
        // Key ids (at most 2k + requests: shift-size's second phase, scan keys) fit u32.
        if 2 * k + requests >= u32::MAX as u64 {
            return Err(format!("{}: key space plus requests too large", self.name));
        }
        let mut reqs: Vec<Req> = Vec::with_capacity(n);
        let push = |reqs: &mut Vec<Req>, key: u64, vlen: u32, ttl: u32| {
            reqs.push(Req {
                key: key as u32,
                vlen,
                ttl,
                first: false,
            })
        };
        match &self.shape {
            Shape::Zipf(s, sizes) => {
                let z = KeyChooser::zipf(k, *s)?;
                for _ in 0..n {
                    let key = z.sample(&mut rng);
                    push(&mut reqs, key, sizes.of(key as u32, salt), 0);
                }
            }
            Shape::Scan => {
                let z = KeyChooser::zipf(k, 0.99)?;
                let mut next_scan_key = k;
                let mut since = 0u64;
                while reqs.len() < n {
                    if since == SCAN_EVERY {
                        for _ in 0..SCAN_LEN {
                            if reqs.len() == n {
                                break;
                            }
                            let key = next_scan_key;
                            next_scan_key += 1;
                            push(&mut reqs, key, NARROW.of(key as u32, salt), 0);
                        }
                        since = 0;
                        continue;
                    }
                    let key = z.sample(&mut rng);
                    push(&mut reqs, key, NARROW.of(key as u32, salt), 0);
                    since += 1;
                }
            }
            Shape::ShiftSize => {
                let z = KeyChooser::zipf(k, 0.9)?;
                let small = Sizes::Uniform(100, 300);
                let large = Sizes::Uniform(1500, 4000);
                for i in 0..n {
                    let r = z.sample(&mut rng);
                    if i < n / 2 {
                        push(&mut reqs, r, small.of(r as u32, salt), 0);
                    } else {
                        let key = k + r;
                        push(&mut reqs, key, large.of(key as u32, salt), 0);
                    }
                }
            }
            Shape::ShiftHot => {
                let z = KeyChooser::zipf(k, 0.99)?;
                for i in 0..n {
                    let phase = (i as u64 * 4 / n.max(1) as u64).min(3);
                    let key = (z.sample(&mut rng) + phase * (k / 4)) % k;
                    push(&mut reqs, key, NARROW.of(key as u32, salt), 0);
                }
            }
            Shape::Ttl => {
                let z = KeyChooser::zipf(k, 0.9)?;
                for _ in 0..n {
                    let key = z.sample(&mut rng);
                    push(
                        &mut reqs,
                        key,
                        NARROW.of(key as u32, salt),
                        ttl_of(key as u32, salt),
                    );
                }
            }
        }
        // Mark first requests (compulsory misses).
        let max_key = reqs.iter().map(|r| r.key).max().unwrap_or(0) as usize;
        let mut seen = vec![false; max_key + 1];
        let mut distinct = 0u64;
        let mut distinct_bytes = 0u64;
        for r in &mut reqs {
            if !seen[r.key as usize] {
                seen[r.key as usize] = true;
                r.first = true;
                distinct += 1;
                distinct_bytes += mc_item_size(r) as u64;
            }
        }
        Ok(Trace {
            name: self.name.clone(),
            describe: self.describe(),
            paced: self.paced(),
            reqs,
            distinct,
            distinct_bytes,
        })
    }
}

/// `300k`, `2m` or a plain number.
fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' => (&s[..s.len() - 1], 1_000),
        b'm' => (&s[..s.len() - 1], 1_000_000),
        _ => (&s[..], 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// TTL of key `key` in the `ttl` workload.
fn ttl_of(key: u32, salt: u64) -> u32 {
    let h = mix64(key as u64 ^ salt ^ 0x5151_7777_0000_0001) % 100;
    let mut acc = 0;
    for (ttl, share) in TTL_MIX {
        acc += share;
        if h < acc {
            return ttl;
        }
    }
    0
}

/// FNV-1a of a workload name: each workload has its own random stream.
fn name_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Item size as memcached accounts it: key + value + its 59-byte overhead.
pub fn mc_item_size(r: &Req) -> u32 {
    KEY_LEN + r.vlen + MC_ITEM_OVERHEAD
}

/// The bytes every value is cut from: `abc…` repeated, long enough for [`MAX_VALUE`]
/// at any of the 26 starting offsets.
pub fn value_pattern() -> Vec<u8> {
    (0..MAX_VALUE + 26).map(|j| b'a' + (j % 26) as u8).collect()
}

/// The value of request `r`: `vlen` bytes of the pattern from offset `key * 7 % 26`, the
/// same for every set of the key.
pub fn value_of<'a>(pat: &'a [u8], r: &Req) -> &'a [u8] {
    let off = (r.key as usize).wrapping_mul(7) % 26;
    &pat[off..off + r.vlen as usize]
}

/// Appends the key of id `id`: `key:%010d`.
pub fn push_key(buf: &mut Vec<u8>, id: u32) {
    buf.extend_from_slice(b"key:");
    let mut d = [b'0'; 10];
    let mut v = id;
    for i in (0..10).rev() {
        d[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    buf.extend_from_slice(&d);
}

/// A generated trace.
pub struct Trace {
    /// Workload name.
    pub name: String,
    /// What the workload is.
    pub describe: String,
    /// Replayed at a fixed request rate (wall time matters: TTLs).
    pub paced: bool,
    /// The requests.
    pub reqs: Vec<Req>,
    /// Distinct keys (= first requests = compulsory misses).
    pub distinct: u64,
    /// Sum of the memcached item sizes of the distinct keys.
    pub distinct_bytes: u64,
}

impl Trace {
    /// Writes the trace in libCacheSim's `oracleGeneral` format: per request a packed
    /// little-endian 24-byte record `{u32 clock_time; u64 obj_id; u32 obj_size; i64
    /// next_access_vtime}`. `clock_time` = request index / `rate` (seconds: the paced
    /// replay's wall time), `obj_id` = key id, `obj_size` = [`mc_item_size`],
    /// `next_access_vtime` = index of the next request of the same key, -1 if none.
    pub fn write_oracle_general(&self, path: &std::path::Path, rate: f64) -> Result<(), String> {
        let n = self.reqs.len();
        let max_key = self.reqs.iter().map(|r| r.key).max().unwrap_or(0) as usize;
        let mut next_seen = vec![-1i64; max_key + 1];
        let mut next = vec![-1i64; n];
        for i in (0..n).rev() {
            let k = self.reqs[i].key as usize;
            next[i] = next_seen[k];
            next_seen[k] = i as i64;
        }
        drop(next_seen);
        let f =
            std::fs::File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut rec = [0u8; 24];
        for (i, r) in self.reqs.iter().enumerate() {
            let ts = (i as f64 / rate) as u32;
            rec[0..4].copy_from_slice(&ts.to_le_bytes());
            rec[4..12].copy_from_slice(&(r.key as u64).to_le_bytes());
            rec[12..16].copy_from_slice(&mc_item_size(r).to_le_bytes());
            rec[16..24].copy_from_slice(&next[i].to_le_bytes());
            w.write_all(&rec)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        w.flush()
            .map_err(|e| format!("write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_deterministic_and_first_flags_match() {
        for name in ["zipf0.9-wide", "scan", "shift-size", "shift-hot", "ttl"] {
            let w = Workload::parse(name, Some(10_000)).unwrap();
            let a = w.generate(50_000, 3).unwrap();
            let b = w.generate(50_000, 3).unwrap();
            assert_eq!(a.reqs.len(), 50_000);
            assert!(a
                .reqs
                .iter()
                .zip(&b.reqs)
                .all(|(x, y)| x.key == y.key && x.vlen == y.vlen));
            let firsts = a.reqs.iter().filter(|r| r.first).count() as u64;
            assert_eq!(firsts, a.distinct, "{name}");
            // Value size and TTL are functions of the key.
            let mut m = std::collections::HashMap::new();
            for r in &a.reqs {
                assert_eq!(*m.entry(r.key).or_insert((r.vlen, r.ttl)), (r.vlen, r.ttl));
                assert!(r.vlen >= 50 && r.vlen <= WIDE_MAX);
            }
        }
    }

    #[test]
    fn a_workload_may_name_its_key_space() {
        let w = Workload::parse("zipf1.0-wide16k@300k", Some(5)).unwrap();
        assert_eq!((w.keys, w.name.as_str()), (300_000, "zipf1.0-wide16k@300k"));
        assert_eq!(
            Workload::parse("zipf0-bands@2m", None).unwrap().keys,
            2_000_000
        );
        assert_eq!(Workload::parse("zipf0-bands", None).unwrap().keys, 12_000);
        assert!(Workload::parse("zipf0-bands@x", None).is_err());
        let sizes: Vec<u32> = (0..40_000).map(|k| Sizes::Bands.of(k, 3)).collect();
        for (lo, hi) in BANDS {
            let n = sizes.iter().filter(|&&v| v >= lo && v <= hi).count();
            assert!((9_000..=11_000).contains(&n), "{lo}..{hi}: {n}");
        }
    }

    #[test]
    fn wide_sizes_are_skewed_small() {
        let mut v: Vec<u32> = (0..100_000)
            .map(|k| Sizes::Wide(50, WIDE_MAX).of(k, 1))
            .collect();
        v.sort_unstable();
        let median = v[v.len() / 2];
        assert!((150..=210).contains(&median), "median {median}");
        assert!(*v.last().unwrap() <= 8192 && v[0] >= 50);
    }

    #[test]
    fn oracle_general_records() {
        let w = Workload::parse("zipf1.2-fixed", Some(100)).unwrap();
        let t = w.generate(1000, 1).unwrap();
        let dir = std::env::temp_dir().join(format!("fc-trace-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.bin");
        t.write_oracle_general(&p, 100.0).unwrap();
        let b = std::fs::read(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(b.len(), 24 * 1000);
        let rec = |i: usize| {
            let r = &b[i * 24..i * 24 + 24];
            (
                u32::from_le_bytes(r[0..4].try_into().unwrap()),
                u64::from_le_bytes(r[4..12].try_into().unwrap()),
                u32::from_le_bytes(r[12..16].try_into().unwrap()),
                i64::from_le_bytes(r[16..24].try_into().unwrap()),
            )
        };
        for i in 0..1000 {
            let (ts, id, size, next) = rec(i);
            assert_eq!(ts, (i / 100) as u32);
            assert_eq!(id, t.reqs[i].key as u64);
            assert_eq!(size, 14 + 100 + 59);
            if next >= 0 {
                assert!(next as usize > i);
                assert_eq!(rec(next as usize).1, id);
                assert!(t.reqs[i + 1..next as usize]
                    .iter()
                    .all(|r| r.key as u64 != id));
            } else {
                assert!(t.reqs[i + 1..].iter().all(|r| r.key as u64 != id));
            }
        }
    }
}
