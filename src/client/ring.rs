//! Server lists and key → node placement, compatible key for key with the clients that
//! people already run against memcached clusters.
//!
//! A [`Ring`] is built once per set of live nodes and then answers [`Ring::locate`] in
//! `O(log points)` for the continuum-based distributions. Everything here is pure: no
//! I/O, no DNS, no clock — a host name is hashed exactly as written in the server list.
//!
//! # The continuum
//!
//! The consistent distributions put a number of *points* per node on a circle of 32-bit
//! hash values. A point is a hash of a per-node string such as `"127.0.0.1:21311-7"`. A
//! key's hash lands somewhere on the circle and belongs to the node of the first point
//! at or after it, wrapping from the end of the circle back to its first point:
//!
//! ```text
//!  0                                                                  2^32-1
//!  |--A-----B--------C----A-------B---C---------A-------B------C---A----|
//!                 ^                                                  ^
//!           hash(key1) ─► C (next point)          hash(key2) ─► past the
//!                                                  last point: wraps to A
//! ```
//!
//! Removing a node deletes only its points, so only the keys that it held move (to the
//! next point's node); every other key stays where it was.
//!
//! # Distributions
//!
//! | [`Distribution`] | compatible with | points per node | point string | key hash |
//! | --- | --- | --- | --- | --- |
//! | `ketama-weighted` (default) | libmemcached weighted ketama, pylibmc `{"ketama_weighted": True}`, twemproxy `distribution: ketama` + `hash: md5`, libketama | 160 × weight share (4 per MD5 digest) | `host:port-i`, `host-i` at port 11211 | [`ketama_hash`] |
//! | `ketama` | libmemcached `CONSISTENT_KETAMA`, pylibmc `{"ketama": True}` | 100 (or as `ketama-weighted` when a weight is > 1) | same as above, hashed with [`one_at_a_time`] | [`one_at_a_time`] |
//! | `spymemcached` | spymemcached 2.12 `KetamaNodeLocator` + `KETAMA_HASH` | 160 (4 per MD5 digest) | `ip:port-i` | [`ketama_hash`] |
//! | `modula` | libmemcached `MODULA` (pylibmc's default) | – | – | [`one_at_a_time`] `% live nodes` |
//! | `rendezvous` | pymemcache `HashClient` (`RendezvousHash`) | – | `host:port-key` | [`murmur3_32`], highest score wins |
//!
//! IPv6 hosts are written `[::1]:11212` in a server list; like pylibmc and pymemcache,
//! the hashed strings use the bare address (`::1:11212-0`, rendezvous `::1:11212-key`),
//! while spymemcached hashes Java's spelling of it (`[0:0:0:0:0:0:0:1]:11212-0`).

use md5::{Digest, Md5};
use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The port a node gets when its entry has none, and the one libmemcached leaves out
/// of its point strings.
pub const DEFAULT_PORT: u16 = 11211;

/// Points per node of libmemcached's unweighted `CONSISTENT_KETAMA` ring.
const POINTS_PER_SERVER: u32 = 100;
/// Points per node (at an equal weight share) of the MD5 rings: libketama's 160.
const POINTS_PER_SERVER_KETAMA: u32 = 160;

/// How keys are spread over nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distribution {
    /// Classic weighted ketama as libketama, libmemcached (`KETAMA_WEIGHTED`), pylibmc
    /// `{"ketama_weighted": True}` and twemproxy (`distribution: ketama`, `hash: md5`)
    /// place keys: MD5 points scaled by weight, MD5 key hash.
    #[default]
    KetamaWeighted,
    /// pylibmc `{"ketama": True}` (libmemcached `CONSISTENT_KETAMA`, not weighted): 100
    /// one-at-a-time points per node and a one-at-a-time key hash; as in libmemcached, a
    /// node weight above 1 switches the points to the weighted MD5 ring (the key hash
    /// stays one-at-a-time).
    Ketama,
    /// spymemcached's `KetamaNodeLocator` with `DefaultHashAlgorithm.KETAMA_HASH`: 160
    /// MD5 points per node named `ip:port-i`, weights ignored.
    Spymemcached,
    /// libmemcached's `MODULA` with its default hash: `one_at_a_time(key) % live nodes`.
    Modula,
    /// pymemcache `HashClient`'s rendezvous (highest random weight) hashing with
    /// MurmurHash3: the node whose `murmur3_32("host:port-key")` is highest wins.
    Rendezvous,
}

impl Distribution {
    /// Every distribution, in the order of the list of valid names.
    pub const ALL: [Distribution; 5] = [
        Distribution::KetamaWeighted,
        Distribution::Ketama,
        Distribution::Spymemcached,
        Distribution::Modula,
        Distribution::Rendezvous,
    ];

    /// The name [`FromStr`] accepts for this distribution (e.g. `"ketama-weighted"`).
    pub fn name(self) -> &'static str {
        match self {
            Distribution::KetamaWeighted => "ketama-weighted",
            Distribution::Ketama => "ketama",
            Distribution::Spymemcached => "spymemcached",
            Distribution::Modula => "modula",
            Distribution::Rendezvous => "rendezvous",
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Distribution {
    type Err = String;

    /// Parses a distribution name (ASCII case-insensitive); the error lists the valid
    /// names.
    fn from_str(s: &str) -> Result<Distribution, String> {
        let want = s.trim();
        Distribution::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(want))
            .ok_or_else(|| {
                let names: Vec<&str> = Distribution::ALL.iter().map(|d| d.name()).collect();
                format!(
                    "unknown distribution {s:?}: expected one of {} (default {})",
                    names.join(", "),
                    Distribution::default().name()
                )
            })
    }
}

/// One node as written in a server list: `host:port[:weight]` (host kept as written,
/// never resolved; port default 11211 if omitted; weight default 1, must be >= 1; IPv6
/// as `[::1]:11211[:w]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Host name or address as written; an IPv6 address without its brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Relative weight (>= 1); used by the weighted ketama rings only.
    pub weight: u32,
}

impl NodeSpec {
    /// Parses `host`, `host:port`, `host:port:weight`, `[v6]`, `[v6]:port` or
    /// `[v6]:port:weight`. Errors name the entry and what is wrong with it.
    pub fn parse(s: &str) -> Result<NodeSpec, String> {
        let entry = s.trim();
        let bad = |why: &str| Err(format!("bad server {entry:?}: {why}"));
        if entry.is_empty() {
            return bad("empty entry");
        }
        let (host, rest): (&str, Vec<&str>) = if let Some(inner) = entry.strip_prefix('[') {
            let Some((host, after)) = inner.split_once(']') else {
                return bad("missing ']' after the IPv6 address");
            };
            let rest = match after {
                "" => Vec::new(),
                _ => match after.strip_prefix(':') {
                    Some(r) => r.split(':').collect(),
                    None => return bad("expected ':' after ']'"),
                },
            };
            if !host.contains(':') {
                return bad("only IPv6 addresses go in brackets");
            }
            (host, rest)
        } else {
            let mut parts = entry.split(':');
            let host = parts.next().unwrap_or("");
            let rest: Vec<&str> = parts.collect();
            if rest.len() > 2 {
                return bad("too many ':' (write IPv6 addresses as [addr]:port)");
            }
            (host, rest)
        };
        if host.is_empty() {
            return bad("empty host");
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '[' | ']' | '/'))
        {
            return bad("invalid character in host");
        }
        if rest.len() > 2 {
            return bad("too many ':' fields (expected host:port[:weight])");
        }
        let port = match rest.first() {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return bad("port must be a number from 1 to 65535"),
            },
        };
        let weight = match rest.get(1) {
            None => 1,
            Some(w) => match w.parse::<u32>() {
                Ok(weight) if weight >= 1 && w.bytes().all(|b| b.is_ascii_digit()) => weight,
                _ => return bad("weight must be a whole number >= 1"),
            },
        };
        Ok(NodeSpec {
            host: host.to_string(),
            port,
            weight,
        })
    }

    /// `host:port` as written (for IPv6 `[h]:port`): what `locate` prints and what keys
    /// are hashed against (the hashed strings use the bare IPv6 address, as pylibmc and
    /// pymemcache do; see the module docs).
    pub fn name(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// libmemcached's point string: `"host:port-i"`, or `"host-i"` at port 11211.
    fn libmemcached_point(&self, i: u32) -> String {
        if self.port == DEFAULT_PORT {
            format!("{}-{}", self.host, i)
        } else {
            format!("{}:{}-{}", self.host, self.port, i)
        }
    }

    /// The node part of spymemcached's point string: Java's
    /// `InetSocketAddress.toString()` minus its leading `/`, i.e. `ip:port` for an IPv4
    /// literal and `[0:0:0:0:0:0:0:1]:port` for an IPv6 one (JDK 14+). A host name would
    /// be `name/ip:port` after a DNS lookup, which this pure module does not do.
    fn spymemcached_node(&self) -> String {
        if let Ok(v4) = self.host.parse::<Ipv4Addr>() {
            return format!("{v4}:{}", self.port);
        }
        if let Ok(v6) = self.host.parse::<Ipv6Addr>() {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return format!("{v4}:{}", self.port);
            }
            let groups: Vec<String> = v6.segments().iter().map(|g| format!("{g:x}")).collect();
            return format!("[{}]:{}", groups.join(":"), self.port);
        }
        format!("{}:{}", self.host, self.port)
    }

    /// pymemcache's `HashClient` node name: `"%s:%s" % (host, port)` with the brackets
    /// of an IPv6 address removed.
    fn pymemcache_node(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Parses a comma- and/or whitespace-separated list; error on empty list or bad entry.
pub fn parse_servers(list: &str) -> Result<Vec<NodeSpec>, String> {
    let nodes = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(NodeSpec::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Err("empty server list".to_string());
    }
    Ok(nodes)
}

/// How a continuum hashes a key.
#[derive(Debug, Clone, Copy)]
enum KeyHash {
    Md5,
    OneAtATime,
}

impl KeyHash {
    fn hash(self, key: &[u8]) -> u32 {
        match self {
            KeyHash::Md5 => ketama_hash(key),
            KeyHash::OneAtATime => one_at_a_time(key),
        }
    }
}

/// One live node of a rendezvous ring.
#[derive(Debug, Clone)]
struct RendezvousNode {
    /// `"host:port-"` as pymemcache hashes it (see [`pymemcache_chars`]).
    prefix: Vec<u8>,
    /// The node name, compared when two scores tie (pymemcache keeps the larger name).
    name: String,
    /// Index into the node list given at construction.
    index: u32,
}

#[derive(Debug, Clone)]
enum Strategy {
    /// No live node.
    Empty,
    /// Exactly one live node takes every key (libmemcached does not even hash then).
    Single(u32),
    /// Sorted `(point, node index)`; a key goes to the first point >= its hash.
    Continuum {
        points: Vec<(u32, u32)>,
        key_hash: KeyHash,
    },
    /// Indices of the live nodes in list order.
    Modula { live: Vec<u32> },
    /// The live nodes in list order.
    Rendezvous { nodes: Vec<RendezvousNode> },
}

/// The key → node map for one set of live nodes.
#[derive(Debug, Clone)]
pub struct Ring {
    dist: Distribution,
    strategy: Strategy,
}

impl Ring {
    /// All nodes live.
    pub fn new(dist: Distribution, nodes: &[NodeSpec]) -> Ring {
        Ring::with_live(dist, nodes, &vec![true; nodes.len()])
    }

    /// Only nodes with `live[i] == true` take part (libmemcached's REMOVE_FAILED_SERVERS
    /// rebuilds the continuum from the live servers only, total weight of the live
    /// ones); indices returned by locate are indices into `nodes`.
    ///
    /// A node missing from `live` (shorter slice) counts as not live. For `modula` the
    /// live nodes are renumbered (`hash % live count`); libmemcached itself keeps
    /// modula over all servers and lets requests to a dead one fail. For `ketama`, the
    /// switch to the weighted ring looks at every node's weight, live or not, as
    /// libmemcached sets it when a server is added.
    pub fn with_live(dist: Distribution, nodes: &[NodeSpec], live: &[bool]) -> Ring {
        let live_idx: Vec<usize> = (0..nodes.len())
            .filter(|&i| live.get(i).copied().unwrap_or(false))
            .collect();
        let strategy = match live_idx.len() {
            0 => Strategy::Empty,
            1 => Strategy::Single(live_idx[0] as u32),
            _ => match dist {
                Distribution::KetamaWeighted => Strategy::Continuum {
                    points: weighted_md5_points(nodes, &live_idx),
                    key_hash: KeyHash::Md5,
                },
                Distribution::Ketama => {
                    let points = if nodes.iter().any(|n| n.weight > 1) {
                        weighted_md5_points(nodes, &live_idx)
                    } else {
                        one_at_a_time_points(nodes, &live_idx)
                    };
                    Strategy::Continuum {
                        points,
                        key_hash: KeyHash::OneAtATime,
                    }
                }
                Distribution::Spymemcached => Strategy::Continuum {
                    points: spymemcached_points(nodes, &live_idx),
                    key_hash: KeyHash::Md5,
                },
                Distribution::Modula => Strategy::Modula {
                    live: live_idx.iter().map(|&i| i as u32).collect(),
                },
                Distribution::Rendezvous => Strategy::Rendezvous {
                    nodes: live_idx
                        .iter()
                        .map(|&i| {
                            let name = nodes[i].pymemcache_node();
                            let mut prefix = pymemcache_chars(name.as_bytes()).into_owned();
                            prefix.push(b'-');
                            RendezvousNode {
                                prefix,
                                name,
                                index: i as u32,
                            }
                        })
                        .collect(),
                },
            },
        };
        Ring { dist, strategy }
    }

    /// Index (into the `nodes` given at construction) of the node that holds `key`;
    /// None when no node is live.
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        match &self.strategy {
            Strategy::Empty => None,
            Strategy::Single(i) => Some(*i as usize),
            Strategy::Continuum { points, key_hash } => {
                let h = key_hash.hash(key);
                let at = points.partition_point(|&(value, _)| value < h);
                points.get(at).or(points.first()).map(|&(_, i)| i as usize)
            }
            Strategy::Modula { live } => {
                let h = one_at_a_time(key);
                Some(live[(h % live.len() as u32) as usize] as usize)
            }
            Strategy::Rendezvous { nodes } => {
                let key = pymemcache_chars(key);
                let mut best: Option<(u32, &RendezvousNode)> = None;
                for node in nodes {
                    let bytes = node.prefix.iter().chain(key.iter()).copied();
                    let score = murmur3_32_iter(bytes, 0);
                    let wins = match best {
                        None => true,
                        Some((top, winner)) => {
                            score > top || (score == top && node.name > winner.name)
                        }
                    };
                    if wins {
                        best = Some((score, node));
                    }
                }
                best.map(|(_, node)| node.index as usize)
            }
        }
    }

    /// The distribution this ring was built with.
    pub fn distribution(&self) -> Distribution {
        self.dist
    }
}

/// libmemcached's weighted continuum (`update_continuum` with `ketama.weighted_`): per
/// live server `floor(weight/total * 160/4 * live + 1e-10) * 4` points, computed in
/// single precision as libmemcached does, 4 per MD5 digest of the point string.
fn weighted_md5_points(nodes: &[NodeSpec], live: &[usize]) -> Vec<(u32, u32)> {
    let total: u64 = live.iter().map(|&i| u64::from(nodes[i].weight)).sum();
    let n_live = live.len() as f32;
    let mut points = Vec::new();
    for &i in live {
        let pct = nodes[i].weight as f32 / total as f32;
        let share = pct * POINTS_PER_SERVER_KETAMA as f32 / 4.0 * n_live;
        let per_server = (f64::from(share) + 0.000_000_000_1).floor() as u32 * 4;
        points.reserve(per_server as usize);
        for p in 0..per_server / 4 {
            let digest = Md5::digest(nodes[i].libmemcached_point(p).as_bytes());
            for chunk in digest.chunks_exact(4) {
                let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                points.push((value, i as u32));
            }
        }
    }
    points.sort_unstable();
    points
}

/// libmemcached's unweighted `CONSISTENT_KETAMA` continuum: 100 points per live server,
/// point i = one_at_a_time of the point string.
fn one_at_a_time_points(nodes: &[NodeSpec], live: &[usize]) -> Vec<(u32, u32)> {
    let mut points = Vec::with_capacity(live.len() * POINTS_PER_SERVER as usize);
    for &i in live {
        for p in 0..POINTS_PER_SERVER {
            let value = one_at_a_time(nodes[i].libmemcached_point(p).as_bytes());
            points.push((value, i as u32));
        }
    }
    points.sort_unstable();
    points
}

/// spymemcached's `KetamaNodeLocator.setKetamaNodes` with `KETAMA_HASH`: for each node
/// in list order, 40 MD5 digests of `"ip:port-i"`, 4 little-endian points each, put
/// into a `TreeMap` where a later node's equal point replaces an earlier one.
fn spymemcached_points(nodes: &[NodeSpec], live: &[usize]) -> Vec<(u32, u32)> {
    let mut points = Vec::with_capacity(live.len() * POINTS_PER_SERVER_KETAMA as usize);
    for &i in live {
        let node = nodes[i].spymemcached_node();
        for p in 0..POINTS_PER_SERVER_KETAMA / 4 {
            let digest = Md5::digest(format!("{node}-{p}").as_bytes());
            for chunk in digest.chunks_exact(4) {
                let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                points.push((value, i as u32));
            }
        }
    }
    points.sort_unstable();
    // Of equal points keep the last inserted: insertion is node-major, so the one with
    // the highest node index, which sorts last in its run.
    let mut kept: Vec<(u32, u32)> = Vec::with_capacity(points.len());
    for p in points {
        match kept.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => kept.push(p),
        }
    }
    kept
}

/// What pymemcache's pure-Python `murmur3_32` sees of a string: one byte per character,
/// the low 8 bits of its code point. ASCII (all pymemcache accepts by default) is
/// unchanged; other valid UTF-8 (`allow_unicode_keys=True`) becomes one byte per
/// character; invalid UTF-8 is hashed as it is.
fn pymemcache_chars(s: &[u8]) -> Cow<'_, [u8]> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    match std::str::from_utf8(s) {
        Ok(text) => Cow::Owned(text.chars().map(|c| (u32::from(c) & 0xff) as u8).collect()),
        Err(_) => Cow::Borrowed(s),
    }
}

/// Bob Jenkins' one-at-a-time hash, libmemcached's default (`hashkit_one_at_a_time`).
///
/// libhashkit adds each byte as a C `char`, which is signed on x86-64 Linux, so a byte
/// of 0x80 or more is sign-extended (`0xc3` adds `0xffffffc3`); this does the same,
/// matching pylibmc/libmemcached there for non-ASCII keys and host names.
pub fn one_at_a_time(data: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in data {
        h = h.wrapping_add(b as i8 as u32);
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

/// The ketama key hash: the first 4 bytes of MD5(data) read as a little-endian u32
/// (libketama, libmemcached `MEMCACHED_HASH_MD5`, twemproxy `md5`, spymemcached
/// `KETAMA_HASH`).
pub fn ketama_hash(data: &[u8]) -> u32 {
    let d = Md5::digest(data);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// MurmurHash3 x86 32-bit of `data` (pymemcache's `murmur3_32`, which `HashClient`
/// uses with seed 0).
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    murmur3_32_iter(data.iter().copied(), seed)
}

/// [`murmur3_32`] over bytes from an iterator (hashes `prefix ++ key` without a copy).
fn murmur3_32_iter(bytes: impl Iterator<Item = u8>, seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    fn mix(k: u32) -> u32 {
        k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
    }
    let mut h = seed;
    let mut len: u32 = 0;
    let mut block = [0u8; 4];
    let mut filled = 0;
    for b in bytes {
        block[filled] = b;
        filled += 1;
        len = len.wrapping_add(1);
        if filled == 4 {
            h ^= mix(u32::from_le_bytes(block));
            h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
            filled = 0;
        }
    }
    if filled > 0 {
        let mut tail = [0u8; 4];
        tail[..filled].copy_from_slice(&block[..filled]);
        h ^= mix(u32::from_le_bytes(tail));
    }
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
