//! One connection to one node, speaking memcached's text, binary or meta protocol
//! (meta commands: [`super::meta`]), with SASL (binary) at connect time, over plain
//! TCP or TLS ([`super::tls`]).
//!
//! Every method sends one request (or one pipelined batch) and reads its whole reply,
//! so a connection returned to the pool is always between requests. Any error that
//! leaves the stream in an unknown state ([`Error::Io`], [`Error::Protocol`]) means
//! the connection must be dropped, never pooled.

use crate::protocol::binary::{opcode, Status, HEADER_LEN, REQ_MAGIC, RES_MAGIC};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

// The binary protocol's response statuses, as numbers to match on.
const OK: u16 = Status::Success as u16;
const NOT_FOUND: u16 = Status::KeyEnoent as u16;
const EXISTS: u16 = Status::KeyEexists as u16;
const NOT_STORED: u16 = Status::NotStored as u16;
const AUTH_ERROR: u16 = Status::AuthError as u16;
const AUTH_CONTINUE: u16 = Status::AuthContinue as u16;

use super::error::{Error, Result};
use super::ring::NodeSpec;
use super::tls::{Connector, Stream, TlsOptions};

/// Longest key memcached accepts ([`crate::limits::KEY_MAX_LENGTH`]).
pub const KEY_MAX: usize = crate::limits::KEY_MAX_LENGTH;
/// Longest reply line read (a `VALUE` header or a stats line).
const LINE_MAX: usize = 64 * 1024;
/// Largest value read back (memcached's `-I` maximum is 1 GiB).
pub(super) const VALUE_MAX: usize = 1 << 30;

/// Which protocol to speak to nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// memcached's text protocol (no authentication).
    #[default]
    Text,
    /// memcached's binary protocol (required for SASL).
    Binary,
    /// memcached's meta commands (`mg`, `ms`, `md`, `ma`, `mn`; memcached ≥ 1.6):
    /// the operations of [`Protocol::Text`], plus the stampede protection of
    /// [`super::CacheAside`] (`mg` flags `N`/`R`, reply flags `W`/`X`/`Z`). Keys follow
    /// the text rules; `flush_all`, `stats` and `version` are sent as text commands.
    Meta,
}

/// SASL credentials (binary protocol only).
#[derive(Debug, Clone)]
pub struct SaslAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Mechanism to use; `None`: the strongest the node lists of SCRAM-SHA-256,
    /// SCRAM-SHA-1 and PLAIN.
    pub mechanism: Option<String>,
}

/// How to open connections.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// Protocol.
    pub protocol: Protocol,
    /// Time allowed for the TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed for each read or write.
    pub io_timeout: Duration,
    /// SASL credentials, if the nodes require them.
    pub auth: Option<SaslAuth>,
    /// TLS to every node (`None`: plain TCP). The handshake follows the TCP connect;
    /// each of its reads and writes is bounded by `io_timeout`, the whole handshake
    /// by `connect_timeout + io_timeout`. SASL, if set, runs over it.
    pub tls: Option<TlsOptions>,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            protocol: Protocol::Text,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            auth: None,
            tls: None,
        }
    }
}

/// A stored value as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The bytes.
    pub value: Vec<u8>,
    /// Client flags.
    pub flags: u32,
    /// CAS unique (for [`super::Client::cas`]).
    pub cas: u64,
}

/// Which storage command: the same set, add, replace, append, prepend and cas the
/// server's store implements.
pub use crate::op::StoreOp;

/// What a storage command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored.
    Stored,
    /// Not stored (add on a present key, replace/append/prepend on a missing one).
    NotStored,
    /// CAS mismatch: someone changed the item since it was read.
    Exists,
    /// CAS on a missing key.
    NotFound,
}

/// Checks a key before anything is sent.
pub fn check_key(key: &[u8], protocol: Protocol) -> Result<()> {
    if key.is_empty() || key.len() > KEY_MAX {
        return Err(Error::BadKey);
    }
    if protocol != Protocol::Binary && key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Error::BadKey);
    }
    Ok(())
}

/// One open connection.
pub struct NodeConn {
    pub(super) stream: BufReader<Stream>,
    pub(super) protocol: Protocol,
    pub(super) out: Vec<u8>,
}

impl std::fmt::Debug for NodeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConn")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

pub(super) fn proto_err(what: impl Into<String>) -> Error {
    Error::Protocol(what.into())
}

impl NodeConn {
    /// Connects to `spec` (the host as written, resolved now), runs the TLS
    /// handshake when `tls` is given (built from `opts.tls` by the client) and
    /// authenticates.
    pub(super) fn connect(
        spec: &NodeSpec,
        opts: &ConnOptions,
        tls: Option<&Connector>,
    ) -> Result<NodeConn> {
        let host = spec.host.trim_start_matches('[').trim_end_matches(']');
        let mut last = None;
        let mut stream = None;
        for addr in (host, spec.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, opts.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(Error::Io(e)),
            (None, None) => return Err(proto_err(format!("{}: no address", spec.name()))),
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(opts.io_timeout))?;
        stream.set_write_timeout(Some(opts.io_timeout))?;
        let stream = match tls {
            None => Stream::Plain(stream),
            Some(tls) => tls.handshake(
                stream,
                host,
                &spec.name(),
                opts.connect_timeout + opts.io_timeout,
            )?,
        };
        let mut conn = NodeConn {
            stream: BufReader::with_capacity(16 * 1024, stream),
            protocol: opts.protocol,
            out: Vec::new(),
        };
        if let Some(auth) = &opts.auth {
            if opts.protocol != Protocol::Binary {
                return Err(Error::Auth("SASL needs the binary protocol".into()));
            }
            conn.authenticate(auth)?;
        }
        Ok(conn)
    }

    pub(super) fn flush_out(&mut self) -> Result<()> {
        let stream = self.stream.get_mut();
        // TLS: `flush` sends what rustls still holds of the last records.
        let r = stream.write_all(&self.out).and_then(|()| stream.flush());
        self.out.clear();
        Ok(r?)
    }

    // ---- text protocol ------------------------------------------------------

    pub(super) fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = (&mut self.stream)
            .take(LINE_MAX as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if !line.ends_with(b"\r\n") {
            return Err(proto_err("reply line not ended by CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    /// A one-line reply; `SERVER_ERROR`/`CLIENT_ERROR`/`ERROR` become errors.
    pub(super) fn text_reply(&mut self) -> Result<Vec<u8>> {
        let line = self.read_line()?;
        if line.starts_with(b"SERVER_ERROR")
            || line.starts_with(b"CLIENT_ERROR")
            || line == b"ERROR"
        {
            return Err(Error::Server(String::from_utf8_lossy(&line).into_owned()));
        }
        Ok(line)
    }

    /// Reads a text-protocol data block of `len` bytes and its `\r\n`.
    pub(super) fn read_data_block(&mut self, len: usize) -> Result<Vec<u8>> {
        if len > VALUE_MAX {
            return Err(proto_err("value too large"));
        }
        let mut value = self.read_exact_vec(len + 2)?;
        if !value.ends_with(b"\r\n") {
            return Err(proto_err("value not ended by CRLF"));
        }
        value.truncate(len);
        Ok(value)
    }

    pub(super) fn read_exact_vec(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.stream.read_exact(&mut v)?;
        Ok(v)
    }

    fn text_get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<(Vec<u8>, Item)>> {
        self.out.extend_from_slice(b"gets");
        for k in keys {
            self.out.push(b' ');
            self.out.extend_from_slice(k);
        }
        self.out.extend_from_slice(b"\r\n");
        self.flush_out()?;
        let mut found = Vec::new();
        loop {
            let line = self.text_reply()?;
            if line == b"END" {
                return Ok(found);
            }
            let mut w = line.split(|&b| b == b' ');
            let (Some(b"VALUE"), Some(key), Some(flags), Some(len)) =
                (w.next(), w.next(), w.next(), w.next())
            else {
                return Err(proto_err("bad VALUE line"));
            };
            let num = |b: &[u8]| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
            };
            let (Some(flags), Some(len)) = (num(flags), num(len)) else {
                return Err(proto_err("bad VALUE numbers"));
            };
            let cas = w.next().and_then(num).unwrap_or(0);
            let value = self.read_data_block(len as usize)?;
            found.push((
                key.to_vec(),
                Item {
                    value,
                    flags: flags as u32,
                    cas,
                },
            ));
        }
    }

    fn text_store(
        &mut self,
        mode: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: u32,
    ) -> Result<StoreOutcome> {
        let cmd: &[u8] = match mode {
            StoreOp::Set => b"set",
            StoreOp::Add => b"add",
            StoreOp::Replace => b"replace",
            StoreOp::Append => b"append",
            StoreOp::Prepend => b"prepend",
            StoreOp::Cas(_) => b"cas",
        };
        self.out.extend_from_slice(cmd);
        self.out.push(b' ');
        self.out.extend_from_slice(key);
        let _ = write!(self.out, " {flags} {ttl} {}", value.len());
        if let StoreOp::Cas(c) = mode {
            let _ = write!(self.out, " {c}");
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
        self.flush_out()?;
        match self.text_reply()?.as_slice() {
            b"STORED" => Ok(StoreOutcome::Stored),
            b"NOT_STORED" => Ok(StoreOutcome::NotStored),
            b"EXISTS" => Ok(StoreOutcome::Exists),
            b"NOT_FOUND" => Ok(StoreOutcome::NotFound),
            other => Err(proto_err(format!(
                "unexpected store reply {:?}",
                String::from_utf8_lossy(other)
            ))),
        }
    }

    fn text_simple(&mut self, line: &[u8], yes: &[u8], no: &[u8]) -> Result<bool> {
        self.out.extend_from_slice(line);
        self.flush_out()?;
        let reply = self.text_reply()?;
        if reply == yes {
            Ok(true)
        } else if reply == no {
            Ok(false)
        } else {
            Err(proto_err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(&reply)
            )))
        }
    }

    pub(super) fn text_stats(&mut self, group: &str) -> Result<Vec<(String, String)>> {
        if group.is_empty() {
            self.out.extend_from_slice(b"stats\r\n");
        } else {
            let _ = write!(self.out, "stats {group}\r\n");
        }
        self.flush_out()?;
        let mut stats = Vec::new();
        loop {
            let line = self.text_reply()?;
            if line == b"END" {
                return Ok(stats);
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let Some(rest) = line.strip_prefix("STAT ") else {
                return Err(proto_err(format!("unexpected stats line {line:?}")));
            };
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            stats.push((k.to_string(), v.to_string()));
        }
    }

    // ---- binary protocol ----------------------------------------------------

    pub(super) fn bin_request(
        &mut self,
        op: u8,
        key: &[u8],
        extras: &[u8],
        value: &[u8],
        cas: u64,
    ) {
        let body = extras.len() + key.len() + value.len();
        self.out.extend_from_slice(&[REQ_MAGIC, op]);
        self.out
            .extend_from_slice(&(key.len() as u16).to_be_bytes());
        self.out.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
        self.out.extend_from_slice(&(body as u32).to_be_bytes());
        self.out.extend_from_slice(&0u32.to_be_bytes());
        self.out.extend_from_slice(&cas.to_be_bytes());
        self.out.extend_from_slice(extras);
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(value);
    }

    pub(super) fn bin_response(&mut self) -> Result<BinResponse> {
        let h = self.read_exact_vec(HEADER_LEN)?;
        if h[0] != RES_MAGIC {
            return Err(proto_err(format!("bad response magic {:#x}", h[0])));
        }
        let keylen = u16::from_be_bytes([h[2], h[3]]) as usize;
        let extlen = h[4] as usize;
        let status = u16::from_be_bytes([h[6], h[7]]);
        let bodylen = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let cas = u64::from_be_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]);
        if bodylen > VALUE_MAX || keylen + extlen > bodylen {
            return Err(proto_err("bad response lengths"));
        }
        let mut body = self.read_exact_vec(bodylen)?;
        let value = body.split_off(extlen + keylen);
        let key = body.split_off(extlen);
        Ok(BinResponse {
            opcode: h[1],
            status,
            extras: body,
            key,
            value,
            cas,
        })
    }

    /// A single-response request: `Ok(response)` for any status the caller handles.
    pub(super) fn bin_call(
        &mut self,
        op: u8,
        key: &[u8],
        extras: &[u8],
        value: &[u8],
        cas: u64,
    ) -> Result<BinResponse> {
        self.bin_request(op, key, extras, value, cas);
        self.flush_out()?;
        self.bin_response()
    }

    fn bin_get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<(Vec<u8>, Item)>> {
        for k in keys {
            self.bin_request(opcode::GETKQ, k, &[], &[], 0);
        }
        self.bin_request(opcode::NOOP, &[], &[], &[], 0); // ends the batch
        self.flush_out()?;
        let mut found = Vec::new();
        // An error for one key is kept until the NOOP, so the connection is left
        // between requests (and can be pooled) whatever happened.
        let mut first_error = None;
        loop {
            let r = self.bin_response()?;
            match (r.opcode, r.status) {
                (opcode::NOOP, OK) => return first_error.map_or(Ok(found), Err),
                (opcode::GETKQ, OK) if r.extras.len() == 4 => {
                    let flags =
                        u32::from_be_bytes([r.extras[0], r.extras[1], r.extras[2], r.extras[3]]);
                    found.push((
                        r.key,
                        Item {
                            value: r.value,
                            flags,
                            cas: r.cas,
                        },
                    ))
                }
                (opcode::GETKQ, NOT_FOUND) => {}
                // The node closes after an authentication error.
                (_, AUTH_ERROR) => return Err(bin_error(AUTH_ERROR, &r.value)),
                (opcode::GETKQ, s) => {
                    first_error.get_or_insert(bin_error(s, &r.value));
                }
                (op, s) => {
                    return Err(proto_err(format!(
                        "unexpected response {op:#x} status {s:#x} in a multi-get"
                    )))
                }
            }
        }
    }

    fn bin_store(
        &mut self,
        mode: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: u32,
    ) -> Result<StoreOutcome> {
        let mut extras = [0u8; 8];
        extras[..4].copy_from_slice(&flags.to_be_bytes());
        extras[4..].copy_from_slice(&ttl.to_be_bytes());
        let (op, extras, cas): (u8, &[u8], u64) = match mode {
            StoreOp::Set => (opcode::SET, &extras, 0),
            StoreOp::Add => (opcode::ADD, &extras, 0),
            StoreOp::Replace => (opcode::REPLACE, &extras, 0),
            StoreOp::Append => (opcode::APPEND, &[], 0),
            StoreOp::Prepend => (opcode::PREPEND, &[], 0),
            StoreOp::Cas(c) => (opcode::SET, &extras, c),
        };
        let r = self.bin_call(op, key, extras, value, cas)?;
        match (mode, r.status) {
            (_, OK) => Ok(StoreOutcome::Stored),
            (StoreOp::Cas(_), NOT_FOUND) => Ok(StoreOutcome::NotFound),
            (StoreOp::Cas(_), EXISTS) => Ok(StoreOutcome::Exists),
            (StoreOp::Add, EXISTS) | (StoreOp::Replace, NOT_FOUND) | (_, NOT_STORED) => {
                Ok(StoreOutcome::NotStored)
            }
            (_, s) => Err(bin_error(s, &r.value)),
        }
    }

    fn authenticate(&mut self, auth: &SaslAuth) -> Result<()> {
        use sasl::client::mechanisms::{Plain, Scram};
        use sasl::client::Mechanism;
        use sasl::common::scram::{Sha1, Sha256};
        use sasl::common::ChannelBinding;
        let listed = self.bin_call(opcode::SASL_LIST_MECHS, &[], &[], &[], 0)?;
        if listed.status != OK {
            return Err(Error::Auth(format!(
                "SASL_LIST_MECHS status {:#x}",
                listed.status
            )));
        }
        let offered = String::from_utf8_lossy(&listed.value).to_ascii_uppercase();
        let offered: Vec<&str> = offered.split_whitespace().collect();
        let mech = match &auth.mechanism {
            Some(m) => m.to_ascii_uppercase(),
            None => ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
                .into_iter()
                .find(|m| offered.contains(m))
                .ok_or_else(|| Error::Auth(format!("no common mechanism in {offered:?}")))?
                .to_string(),
        };
        let (u, p) = (auth.username.as_str(), auth.password.as_str());
        let mut client: Box<dyn Mechanism> = match mech.as_str() {
            "PLAIN" => Box::new(Plain::new(u, p)),
            "SCRAM-SHA-256" => Box::new(
                Scram::<Sha256>::new(u, p, ChannelBinding::Unsupported)
                    .map_err(|e| Error::Auth(format!("{e:?}")))?,
            ),
            "SCRAM-SHA-1" => Box::new(
                Scram::<Sha1>::new(u, p, ChannelBinding::Unsupported)
                    .map_err(|e| Error::Auth(format!("{e:?}")))?,
            ),
            other => return Err(Error::Auth(format!("unsupported mechanism {other}"))),
        };
        let mut r = self.bin_call(
            opcode::SASL_AUTH,
            mech.as_bytes(),
            &[],
            &client.initial(),
            0,
        )?;
        let mut continues = 0;
        loop {
            match r.status {
                OK => return Ok(()),
                AUTH_CONTINUE if continues < 4 => {
                    continues += 1;
                    // SCRAM: the first challenge is the server-first message; the
                    // second carries the server's signature, which the client checks
                    // and acknowledges with an empty step.
                    let answer = if mech.starts_with("SCRAM") && continues == 2 {
                        client
                            .success(&r.value)
                            .map_err(|e| Error::Auth(format!("server signature: {e:?}")))?;
                        Vec::new()
                    } else if mech == "PLAIN" {
                        client.initial()
                    } else {
                        client
                            .response(&r.value)
                            .map_err(|e| Error::Auth(format!("{e:?}")))?
                    };
                    r = self.bin_call(opcode::SASL_STEP, mech.as_bytes(), &[], &answer, 0)?;
                }
                s => {
                    return Err(Error::Auth(format!(
                        "status {s:#x} {}",
                        String::from_utf8_lossy(&r.value)
                    )))
                }
            }
        }
    }

    // ---- operations ---------------------------------------------------------

    /// Reads several keys in one round trip; returns the hits.
    pub fn get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<(Vec<u8>, Item)>> {
        match self.protocol {
            Protocol::Text => self.text_get_many(keys),
            Protocol::Binary => self.bin_get_many(keys),
            Protocol::Meta => self.meta_get_many(keys),
        }
    }

    /// A storage command.
    pub fn store(
        &mut self,
        mode: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: u32,
    ) -> Result<StoreOutcome> {
        match self.protocol {
            Protocol::Text => self.text_store(mode, key, value, flags, ttl),
            Protocol::Binary => self.bin_store(mode, key, value, flags, ttl),
            Protocol::Meta => self.meta_store(mode, key, value, flags, ttl),
        }
    }

    /// Deletes a key; false when it was not there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        match self.protocol {
            Protocol::Text => {
                let mut line = b"delete ".to_vec();
                line.extend_from_slice(key);
                line.extend_from_slice(b"\r\n");
                self.text_simple(&line, b"DELETED", b"NOT_FOUND")
            }
            Protocol::Binary => {
                let r = self.bin_call(opcode::DELETE, key, &[], &[], 0)?;
                bin_bool(&r)
            }
            Protocol::Meta => self.meta_delete(key, None),
        }
    }

    /// incr/decr; `None` when the key is missing.
    pub fn arith(&mut self, incr: bool, key: &[u8], delta: u64) -> Result<Option<u64>> {
        match self.protocol {
            Protocol::Text => {
                let _ = write!(self.out, "{} ", if incr { "incr" } else { "decr" });
                self.out.extend_from_slice(key);
                let _ = write!(self.out, " {delta}\r\n");
                self.flush_out()?;
                let reply = self.text_reply()?;
                if reply == b"NOT_FOUND" {
                    return Ok(None);
                }
                std::str::from_utf8(&reply)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map(Some)
                    .ok_or_else(|| proto_err("bad incr/decr reply"))
            }
            Protocol::Binary => {
                let mut extras = [0u8; 20];
                extras[..8].copy_from_slice(&delta.to_be_bytes());
                extras[16..].copy_from_slice(&u32::MAX.to_be_bytes()); // do not create
                let op = if incr {
                    opcode::INCREMENT
                } else {
                    opcode::DECREMENT
                };
                let r = self.bin_call(op, key, &extras, &[], 0)?;
                match r.status {
                    OK if r.value.len() == 8 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&r.value);
                        Ok(Some(u64::from_be_bytes(b)))
                    }
                    NOT_FOUND => Ok(None),
                    s => Err(bin_error(s, &r.value)),
                }
            }
            Protocol::Meta => self.meta_arith(incr, key, delta),
        }
    }

    /// Sets a new expiry; false when the key is missing.
    pub fn touch(&mut self, key: &[u8], ttl: u32) -> Result<bool> {
        match self.protocol {
            Protocol::Text => {
                let mut line = b"touch ".to_vec();
                line.extend_from_slice(key);
                let _ = write!(line, " {ttl}\r\n");
                self.text_simple(&line, b"TOUCHED", b"NOT_FOUND")
            }
            Protocol::Binary => {
                let r = self.bin_call(opcode::TOUCH, key, &ttl.to_be_bytes(), &[], 0)?;
                bin_bool(&r)
            }
            Protocol::Meta => self.meta_touch(key, ttl),
        }
    }

    /// `flush_all` with an optional delay.
    pub fn flush_all(&mut self, delay: u32) -> Result<()> {
        match self.protocol {
            Protocol::Text | Protocol::Meta => {
                let line = format!("flush_all {delay}\r\n");
                self.out.extend_from_slice(line.as_bytes());
                self.flush_out()?;
                match self.text_reply()?.as_slice() {
                    b"OK" => Ok(()),
                    other => Err(proto_err(format!(
                        "flush_all: {:?}",
                        String::from_utf8_lossy(other)
                    ))),
                }
            }
            Protocol::Binary => {
                let r = self.bin_call(opcode::FLUSH, &[], &delay.to_be_bytes(), &[], 0)?;
                match r.status {
                    OK => Ok(()),
                    s => Err(bin_error(s, &r.value)),
                }
            }
        }
    }

    /// `stats [group]` as name/value pairs.
    pub fn stats(&mut self, group: &str) -> Result<Vec<(String, String)>> {
        match self.protocol {
            Protocol::Text | Protocol::Meta => self.text_stats(group),
            Protocol::Binary => {
                self.bin_request(opcode::STAT, group.as_bytes(), &[], &[], 0);
                self.flush_out()?;
                let mut stats = Vec::new();
                loop {
                    let r = self.bin_response()?;
                    if r.status != OK {
                        return Err(bin_error(r.status, &r.value));
                    }
                    if r.key.is_empty() {
                        return Ok(stats);
                    }
                    stats.push((
                        String::from_utf8_lossy(&r.key).into_owned(),
                        String::from_utf8_lossy(&r.value).into_owned(),
                    ));
                }
            }
        }
    }

    /// The node's version string.
    pub fn version(&mut self) -> Result<String> {
        match self.protocol {
            Protocol::Text | Protocol::Meta => {
                self.out.extend_from_slice(b"version\r\n");
                self.flush_out()?;
                let line = self.text_reply()?;
                let line = String::from_utf8_lossy(&line).into_owned();
                line.strip_prefix("VERSION ")
                    .map(str::to_string)
                    .ok_or_else(|| proto_err(format!("version: {line:?}")))
            }
            Protocol::Binary => {
                let r = self.bin_call(opcode::VERSION, &[], &[], &[], 0)?;
                match r.status {
                    OK => Ok(String::from_utf8_lossy(&r.value).into_owned()),
                    s => Err(bin_error(s, &r.value)),
                }
            }
        }
    }
}

/// One binary response.
pub(super) struct BinResponse {
    opcode: u8,
    pub(super) status: u16,
    extras: Vec<u8>,
    key: Vec<u8>,
    pub(super) value: Vec<u8>,
    cas: u64,
}

pub(super) fn bin_error(status: u16, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    if status == AUTH_ERROR {
        Error::Auth(text.into_owned())
    } else {
        Error::Server(format!("status {status:#x}: {text}"))
    }
}

fn bin_bool(r: &BinResponse) -> Result<bool> {
    match r.status {
        OK => Ok(true),
        NOT_FOUND => Ok(false),
        s => Err(bin_error(s, &r.value)),
    }
}
