//! memcached's meta commands on a [`NodeConn`] ([`super::Protocol::Meta`]).
//!
//! ```text
//!  get          mg <key> v f c                       VA <n> f<flags> c<cas> / EN
//!  get_many     mg <key> v f c q O<i> ... mn         VA <n> f c O<i> (hits only) ... MN
//!  set/add/...  ms <key> <n> F<flags> T<ttl> [M<E|R|A|P>] [C<cas>]   HD / NS / EX / NF
//!  delete       md <key> [C<cas>]                    HD / NF / EX
//!  mark stale   md <key> I                           HD / NF
//!  incr/decr    ma <key> D<delta> M<I|D> v           VA <n> <number> / NF
//!  touch        mg <key> T<ttl>                      HD / EN
//!  lease        mg <key> v f c N<vivify> [R<window>] VA <n> f c [W] [X] [Z]
//! ```
//!
//! Reply flags are read by letter, whatever their order. `CLIENT_ERROR`,
//! `SERVER_ERROR` and `ERROR` lines are [`Error::Server`]; in a pipelined `get_many`
//! the first one is kept until `MN`, so the connection is left between requests.

use std::io::Write;

use super::error::{Error, Result};
use super::node::{proto_err, Item, NodeConn, StoreOp, StoreOutcome};

/// One meta reply line (and its value, for `VA`).
struct MetaReply {
    code: [u8; 2],
    value: Option<Vec<u8>>,
    flags: Vec<(u8, Vec<u8>)>,
}

impl MetaReply {
    fn has(&self, f: u8) -> bool {
        self.flags.iter().any(|(g, _)| *g == f)
    }

    fn num(&self, f: u8) -> Result<u64> {
        match self.flags.iter().find(|(g, _)| *g == f) {
            None => Ok(0),
            Some((_, tok)) => {
                parse_u64(tok).ok_or_else(|| proto_err(format!("bad meta flag {}", f as char)))
            }
        }
    }

    fn code_str(&self) -> String {
        String::from_utf8_lossy(&self.code).into_owned()
    }

    /// The item of a `VA` reply to `mg ... v f c`.
    fn into_item(self) -> Result<Item> {
        let flags = self.num(b'f')?;
        let cas = self.num(b'c')?;
        let value = self.value.unwrap_or_default();
        Ok(Item {
            value,
            flags: u32::try_from(flags).map_err(|_| proto_err("client flags over 32 bits"))?,
            cas,
        })
    }
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

/// What `mg <key> v f c N<vivify> [R<window>]` answered: the item (a placeholder of
/// 0 bytes when the node just created it), and the recache flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The item as read (value, client flags, CAS unique).
    pub item: Item,
    /// `W`: this caller won the right to (re)load the item.
    pub won: bool,
    /// `X`: the item was marked stale (`md I`).
    pub stale: bool,
    /// `Z`: another caller already won; it is (re)loading the item.
    pub taken: bool,
}

impl NodeConn {
    fn meta_reply(&mut self) -> Result<MetaReply> {
        let line = self.text_reply()?;
        if line.len() < 2 || (line.len() > 2 && line[2] != b' ') {
            return Err(proto_err(format!(
                "bad meta reply {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        let code = [line[0], line[1]];
        let mut words = line[2..].split(|&b| b == b' ').filter(|w| !w.is_empty());
        let value = if &code == b"VA" {
            let len = words
                .next()
                .and_then(parse_u64)
                .ok_or_else(|| proto_err("bad VA length"))? as usize;
            Some(self.read_data_block(len)?)
        } else {
            None
        };
        let flags = words.map(|w| (w[0], w[1..].to_vec())).collect();
        Ok(MetaReply { code, value, flags })
    }

    fn meta_send(&mut self, cmd: &[u8], key: &[u8], rest: std::fmt::Arguments<'_>) -> Result<()> {
        self.out.extend_from_slice(cmd);
        self.out.push(b' ');
        self.out.extend_from_slice(key);
        let _ = self.out.write_fmt(rest);
        self.out.extend_from_slice(b"\r\n");
        self.flush_out()
    }

    fn unexpected(r: &MetaReply, what: &str) -> Error {
        proto_err(format!("unexpected {what} reply {}", r.code_str()))
    }

    /// `mg <key> v f c`.
    pub(super) fn meta_get(&mut self, key: &[u8]) -> Result<Option<Item>> {
        self.meta_send(b"mg", key, format_args!(" v f c"))?;
        let r = self.meta_reply()?;
        match &r.code {
            b"VA" => Ok(Some(r.into_item()?)),
            b"EN" => Ok(None),
            _ => Err(Self::unexpected(&r, "mg")),
        }
    }

    /// Pipelined `mg <key> v f c q O<i>` for every key, ended by `mn`.
    pub(super) fn meta_get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<(Vec<u8>, Item)>> {
        if let [key] = keys {
            return Ok(self
                .meta_get(key)?
                .map(|item| (key.to_vec(), item))
                .into_iter()
                .collect());
        }
        for (i, k) in keys.iter().enumerate() {
            self.out.extend_from_slice(b"mg ");
            self.out.extend_from_slice(k);
            let _ = write!(self.out, " v f c q O{i}\r\n");
        }
        self.out.extend_from_slice(b"mn\r\n");
        self.flush_out()?;
        let mut found = Vec::new();
        let mut first_error = None;
        loop {
            let r = match self.meta_reply() {
                Ok(r) => r,
                Err(e @ Error::Server(_)) => {
                    first_error.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match &r.code {
                b"MN" => return first_error.map_or(Ok(found), Err),
                b"EN" => {}
                b"VA" => {
                    let i = r.num(b'O')? as usize;
                    let Some(key) = keys.get(i) else {
                        return Err(proto_err("mg opaque out of range"));
                    };
                    found.push((key.to_vec(), r.into_item()?));
                }
                _ => return Err(Self::unexpected(&r, "mg")),
            }
        }
    }

    /// `ms` in the mode's form.
    pub(super) fn meta_store(
        &mut self,
        mode: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: u32,
    ) -> Result<StoreOutcome> {
        self.out.extend_from_slice(b"ms ");
        self.out.extend_from_slice(key);
        let _ = write!(self.out, " {}", value.len());
        match mode {
            // Append and prepend keep the item's flags and TTL (as the text commands).
            StoreOp::Append => self.out.extend_from_slice(b" MA"),
            StoreOp::Prepend => self.out.extend_from_slice(b" MP"),
            StoreOp::Set => {
                let _ = write!(self.out, " F{flags} T{ttl}");
            }
            StoreOp::Add => {
                let _ = write!(self.out, " F{flags} T{ttl} ME");
            }
            StoreOp::Replace => {
                let _ = write!(self.out, " F{flags} T{ttl} MR");
            }
            StoreOp::Cas(c) => {
                let _ = write!(self.out, " F{flags} T{ttl} C{c}");
            }
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
        self.flush_out()?;
        let r = self.meta_reply()?;
        match &r.code {
            b"HD" => Ok(StoreOutcome::Stored),
            b"NS" => Ok(StoreOutcome::NotStored),
            b"EX" => Ok(StoreOutcome::Exists),
            b"NF" => Ok(StoreOutcome::NotFound),
            _ => Err(Self::unexpected(&r, "ms")),
        }
    }

    /// `md <key> [C<cas>]`: true when deleted (false: missing, or the CAS differs).
    pub(super) fn meta_delete(&mut self, key: &[u8], cas: Option<u64>) -> Result<bool> {
        match cas {
            Some(c) => self.meta_send(b"md", key, format_args!(" C{c}"))?,
            None => self.meta_send(b"md", key, format_args!(""))?,
        }
        let r = self.meta_reply()?;
        match &r.code {
            b"HD" => Ok(true),
            b"NF" | b"EX" => Ok(false),
            _ => Err(Self::unexpected(&r, "md")),
        }
    }

    /// `md <key> I`: marks the item stale (it is served with `X`, and the next `mg`
    /// with `N`/`R` wins the recache), its expiry unchanged; false when missing.
    pub(super) fn meta_mark_stale(&mut self, key: &[u8]) -> Result<bool> {
        self.meta_send(b"md", key, format_args!(" I"))?;
        let r = self.meta_reply()?;
        match &r.code {
            b"HD" => Ok(true),
            b"NF" => Ok(false),
            _ => Err(Self::unexpected(&r, "md I")),
        }
    }

    /// `ma <key> D<delta> M<I|D> v`; `None` when the key is missing.
    pub(super) fn meta_arith(&mut self, incr: bool, key: &[u8], delta: u64) -> Result<Option<u64>> {
        let mode = if incr { 'I' } else { 'D' };
        self.meta_send(b"ma", key, format_args!(" D{delta} M{mode} v"))?;
        let r = self.meta_reply()?;
        match &r.code {
            b"VA" => r
                .value
                .as_deref()
                .and_then(parse_u64)
                .map(Some)
                .ok_or_else(|| proto_err("bad ma value")),
            b"NF" => Ok(None),
            _ => Err(Self::unexpected(&r, "ma")),
        }
    }

    /// `mg <key> T<ttl>`; false when the key is missing.
    pub(super) fn meta_touch(&mut self, key: &[u8], ttl: u32) -> Result<bool> {
        self.meta_send(b"mg", key, format_args!(" T{ttl}"))?;
        let r = self.meta_reply()?;
        match &r.code {
            b"HD" => Ok(true),
            b"EN" => Ok(false),
            _ => Err(Self::unexpected(&r, "mg T")),
        }
    }

    /// `mg <key> v f c N<vivify> [R<recache>]` (`R` only when `recache` > 0). `None`
    /// only when the node did not create the placeholder on a miss.
    pub(super) fn meta_lease(
        &mut self,
        key: &[u8],
        vivify: u32,
        recache: u32,
    ) -> Result<Option<Lease>> {
        let vivify = vivify.max(1);
        if recache > 0 {
            self.meta_send(b"mg", key, format_args!(" v f c N{vivify} R{recache}"))?;
        } else {
            self.meta_send(b"mg", key, format_args!(" v f c N{vivify}"))?;
        }
        let r = self.meta_reply()?;
        match &r.code {
            b"VA" => {
                let (won, stale, taken) = (r.has(b'W'), r.has(b'X'), r.has(b'Z'));
                Ok(Some(Lease {
                    item: r.into_item()?,
                    won,
                    stale,
                    taken,
                }))
            }
            b"EN" => Ok(None),
            _ => Err(Self::unexpected(&r, "mg N")),
        }
    }
}
