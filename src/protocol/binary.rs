//! memcached 1.6.18's binary protocol: framing, validation and reply composition.
//!
//! [`parse`] looks at the front of a connection's read buffer and answers with one
//! [`Parse`]; like the text parser it is pure (no I/O, clock or store) and allocates
//! nothing. The rules follow memcached's `try_read_command_binary` and
//! `dispatch_bin_command`:
//!
//! 1. Fewer than 24 bytes: [`Parse::Incomplete`]. A first byte other than `0x80`:
//!    [`Parse::Close`] (no reply).
//! 2. The header, extras and key must have arrived (at most 24 + 255 + 65535 bytes);
//!    then the request is judged from them alone:
//!    - key or key + extras longer than the body: `UNKNOWN_COMMAND`, close;
//!    - key longer than 250: `EINVAL`, close;
//!    - lengths that do not fit the opcode: `EINVAL`, close;
//!    - unknown opcode: `UNKNOWN_COMMAND`, then memcached discards `bodylen` more
//!      bytes (counted after the extras and key it already consumed);
//!    - with SASL on ([`parse_gated`]) and the connection not yet authenticated,
//!      any opcode but `VERSION` and the SASL ones: `AUTH_ERROR`, close (checked
//!      right after the key/extras lengths, before anything else, as memcached);
//!    - SASL opcodes with SASL off: `UNKNOWN_COMMAND`, discarding the value. With
//!      SASL on, `SASL_AUTH`/`SASL_STEP` carry the mechanism as key (more than 32
//!      bytes: `EINVAL`, value discarded; a value over `-I`, or larger than the
//!      connection may buffer ([`Limits::buffer_room`]): `ENOMEM`, discarded) and the
//!      client's data as value, which is awaited whole ([`Parse::Partial`]).
//! 3. Storage commands (`SET ADD REPLACE APPEND PREPEND` and quiet forms) carry a
//!    value of `bodylen - extlen - keylen` bytes. A value that would make an item
//!    larger than `-I` is refused at once with `E2BIG`; its bytes are discarded as
//!    they arrive (and a `SET` unlinks the key's old value). A value within `-I`
//!    whose packet is larger than the connection may buffer now is refused the same
//!    way with `ENOMEM` (`Out of memory`, memcached's answer when it cannot allocate
//!    the item). Otherwise the whole value is awaited ([`Parse::Partial`] gives the
//!    packet's length), so nothing waits for more than one item's worth of bytes.
//! 4. Other opcodes consume only header + extras + key; whatever body bytes remain
//!    (memcached does not check them for `STAT`, `TOUCH`, `GAT*`) are read as the next
//!    request, as memcached does.
//!
//! Replies are composed by [`write_header`], [`write_error`] and friends into the
//! connection's write buffer: a 24-byte header, then extras, key and body.

#[cfg(test)]
mod tests;

pub use super::frame::Limits;
use super::frame::{item_size, KEY_MAX_LENGTH};

/// Request magic byte.
pub const REQ_MAGIC: u8 = 0x80;
/// Response magic byte.
pub const RES_MAGIC: u8 = 0x81;
/// Size of a request or response header.
pub const HEADER_LEN: usize = 24;

/// Opcodes memcached 1.6.18 knows.
pub mod opcode {
    /// GET
    pub const GET: u8 = 0x00;
    /// SET
    pub const SET: u8 = 0x01;
    /// ADD
    pub const ADD: u8 = 0x02;
    /// REPLACE
    pub const REPLACE: u8 = 0x03;
    /// DELETE
    pub const DELETE: u8 = 0x04;
    /// INCREMENT
    pub const INCREMENT: u8 = 0x05;
    /// DECREMENT
    pub const DECREMENT: u8 = 0x06;
    /// QUIT
    pub const QUIT: u8 = 0x07;
    /// FLUSH
    pub const FLUSH: u8 = 0x08;
    /// GETQ
    pub const GETQ: u8 = 0x09;
    /// NOOP
    pub const NOOP: u8 = 0x0a;
    /// VERSION
    pub const VERSION: u8 = 0x0b;
    /// GETK
    pub const GETK: u8 = 0x0c;
    /// GETKQ
    pub const GETKQ: u8 = 0x0d;
    /// APPEND
    pub const APPEND: u8 = 0x0e;
    /// PREPEND
    pub const PREPEND: u8 = 0x0f;
    /// STAT
    pub const STAT: u8 = 0x10;
    /// SETQ
    pub const SETQ: u8 = 0x11;
    /// ADDQ
    pub const ADDQ: u8 = 0x12;
    /// REPLACEQ
    pub const REPLACEQ: u8 = 0x13;
    /// DELETEQ
    pub const DELETEQ: u8 = 0x14;
    /// INCREMENTQ
    pub const INCREMENTQ: u8 = 0x15;
    /// DECREMENTQ
    pub const DECREMENTQ: u8 = 0x16;
    /// QUITQ
    pub const QUITQ: u8 = 0x17;
    /// FLUSHQ
    pub const FLUSHQ: u8 = 0x18;
    /// APPENDQ
    pub const APPENDQ: u8 = 0x19;
    /// PREPENDQ
    pub const PREPENDQ: u8 = 0x1a;
    /// TOUCH
    pub const TOUCH: u8 = 0x1c;
    /// GAT
    pub const GAT: u8 = 0x1d;
    /// GATQ
    pub const GATQ: u8 = 0x1e;
    /// SASL_LIST_MECHS
    pub const SASL_LIST_MECHS: u8 = 0x20;
    /// SASL_AUTH
    pub const SASL_AUTH: u8 = 0x21;
    /// SASL_STEP
    pub const SASL_STEP: u8 = 0x22;
    /// GATK
    pub const GATK: u8 = 0x23;
    /// GATKQ
    pub const GATKQ: u8 = 0x24;
    /// CONFIG_GET (ElastiCache's auto discovery; not memcached's): the key names the
    /// configuration (`cluster`).
    pub const CONFIG_GET: u8 = 0x60;
    /// CONFIG_SET (ElastiCache's): the value is the configuration's payload.
    pub const CONFIG_SET: u8 = 0x64;
    /// CONFIG_DELETE (ElastiCache's).
    pub const CONFIG_DELETE: u8 = 0x66;
}

/// Response status codes memcached sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// No error.
    Success = 0x00,
    /// Key not found.
    KeyEnoent = 0x01,
    /// Key exists (CAS mismatch, add on present key).
    KeyEexists = 0x02,
    /// Value too large.
    E2big = 0x03,
    /// Invalid arguments.
    Einval = 0x04,
    /// Item not stored.
    NotStored = 0x05,
    /// incr/decr on a non-numeric value.
    DeltaBadval = 0x06,
    /// Authentication required / failed (also: flush disabled).
    AuthError = 0x20,
    /// SASL exchange continues: the body is the server's challenge.
    AuthContinue = 0x21,
    /// Unknown command.
    UnknownCommand = 0x81,
    /// Out of memory.
    Enomem = 0x82,
}

impl Status {
    /// The body memcached sends with this error status.
    pub fn message(self) -> &'static str {
        match self {
            Status::Success => "",
            Status::KeyEnoent => "Not found",
            Status::KeyEexists => "Data exists for key.",
            Status::E2big => "Too large.",
            Status::Einval => "Invalid arguments",
            Status::NotStored => "Not stored.",
            Status::DeltaBadval => "Non-numeric server-side value for incr or decr",
            Status::AuthError => "Auth failure.",
            Status::AuthContinue => "",
            Status::UnknownCommand => "Unknown command",
            Status::Enomem => "Out of memory",
        }
    }
}

/// The fields of a request header a reply needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Opcode as sent (quiet forms included).
    pub opcode: u8,
    /// Key length.
    pub keylen: u16,
    /// Extras length.
    pub extlen: u8,
    /// Total body length (extras + key + value).
    pub bodylen: u32,
    /// Opaque, echoed in replies.
    pub opaque: u32,
    /// CAS as sent.
    pub cas: u64,
}

impl Header {
    /// Decodes the 24 header bytes (`buf` must hold them).
    fn read(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            opcode: b[1],
            keylen: u16::from_be_bytes([b[2], b[3]]),
            extlen: b[4],
            bodylen: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            cas: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        }
    }
}

/// Which plain storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// SET
    Set,
    /// ADD
    Add,
    /// REPLACE
    Replace,
    /// APPEND
    Append,
    /// PREPEND
    Prepend,
}

/// What a valid request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// GET/GETQ/GETK/GETKQ (`exptime` None) and TOUCH/GAT/GATQ/GATK/GATKQ (Some).
    Get {
        /// Reply with the key (GETK, GATK).
        with_key: bool,
        /// Reply with the value (all but TOUCH).
        with_value: bool,
        /// New expiry for touch forms.
        exptime: Option<u32>,
    },
    /// SET/ADD/REPLACE/APPEND/PREPEND and quiet forms.
    Store {
        /// Which.
        kind: StoreKind,
        /// Client flags (0 for append/prepend).
        flags: u32,
        /// Expiry as sent (0 for append/prepend).
        exptime: u32,
        /// The value.
        value: &'a [u8],
    },
    /// DELETE(Q).
    Delete,
    /// INCREMENT/DECREMENT(Q).
    Arith {
        /// Increment (else decrement).
        incr: bool,
        /// Amount.
        delta: u64,
        /// Value stored when the key is missing.
        initial: u64,
        /// Expiry of a created item; `0xffffffff`: do not create.
        exptime: u32,
    },
    /// QUIT(Q).
    Quit,
    /// FLUSH(Q), with its optional delay (0 when absent).
    Flush {
        /// Delay as sent.
        delay: u32,
    },
    /// NOOP.
    Noop,
    /// VERSION.
    Version,
    /// STAT with the group name in the key.
    Stat,
    /// SASL_LIST_MECHS (only with SASL on).
    SaslListMechs,
    /// SASL_AUTH: mechanism in the key, the client's initial response here.
    SaslAuth {
        /// The client's data (may be empty).
        data: &'a [u8],
    },
    /// SASL_STEP: the client's next message.
    SaslStep {
        /// The client's data.
        data: &'a [u8],
    },
    /// CONFIG_GET: the configuration named by the key.
    ConfigGet,
    /// CONFIG_SET: the configuration named by the key (extras, if any, ignored).
    ConfigSet {
        /// The payload.
        value: &'a [u8],
    },
    /// CONFIG_DELETE.
    ConfigDelete,
}

/// Where a connection stands with SASL, which decides what the parser lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslGate {
    /// SASL is off (`-S` not given): SASL opcodes are unknown commands.
    Off,
    /// SASL is on and this connection has not authenticated: only `VERSION` and the
    /// SASL opcodes are served; anything else is `AUTH_ERROR`, then close.
    Unauthenticated,
    /// SASL is on and this connection has authenticated.
    Authenticated,
}

/// Longest mechanism name a `SASL_AUTH`/`SASL_STEP` key may hold (memcached's
/// `MAX_SASL_MECH_LEN`).
pub const MAX_SASL_MECH_LEN: usize = 32;

/// A valid request, borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Its header.
    pub header: Header,
    /// Quiet form: success replies (and misses for gets) are suppressed.
    pub quiet: bool,
    /// The key (empty for keyless commands).
    pub key: &'a [u8],
    /// What it asks for.
    pub cmd: Command<'a>,
}

/// What [`parse`] found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse<'a> {
    /// Not a whole request yet: read more bytes and call again.
    Incomplete,
    /// A request with a body (a stored value, SASL data) whose header, extras and key
    /// have arrived but not all of its value: the whole packet is this many bytes.
    Partial(usize),
    /// A request and the number of bytes it took.
    Request(Request<'a>, usize),
    /// A request answered with an error packet without reaching the store.
    Error {
        /// Header of the refused request (opcode, opaque).
        header: Header,
        /// Status to send (body: [`Status::message`]).
        status: Status,
        /// Bytes of the buffer this took.
        consumed: usize,
        /// Further bytes to discard, which may not have arrived yet.
        swallow: usize,
        /// Close the connection after the reply.
        close: bool,
        /// Key whose old value must be removed (a `SET` refused as too large).
        unlink: Option<&'a [u8]>,
    },
    /// Close the connection without a reply (bad magic).
    Close,
}

/// memcached's "too large" arithmetic for a value of `vlen` bytes.
fn too_large(limits: &Limits, nkey: usize, flags: u32, vlen: usize) -> bool {
    item_size(nkey, flags, vlen + 2, limits.cas_enabled) > limits.item_size_max
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

/// Parses the request at the front of `buf` on a server without SASL.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parse<'a> {
    parse_gated(buf, limits, SaslGate::Off)
}

/// True when `reply` starts with an error packet as memcached's `write_bin_error`
/// writes it (a non-zero status and no key; a keyed miss of GETK is not one). memcached
/// transmits right after such a reply instead of batching it.
pub fn is_error_reply(reply: Option<&[u8]>) -> bool {
    match reply {
        Some(r) if r.len() >= HEADER_LEN => r[6..8] != [0, 0] && r[2..4] == [0, 0],
        _ => false,
    }
}

/// Parses the request at the front of `buf` for a connection in SASL state `gate`.
///
/// memcached keeps the number of body bytes it discards in an `int`: a count of 2 GiB
/// or more is negative there and nothing is discarded, so the error reply goes out at
/// once and the bytes that follow are read as the next request. A storage request
/// whose header announces such a value (a 4 GiB body) is `Too large.` that way.
pub fn parse_gated<'a>(buf: &'a [u8], limits: &Limits, gate: SaslGate) -> Parse<'a> {
    match parse_frame(buf, limits, gate) {
        Parse::Error {
            header,
            status,
            consumed,
            swallow,
            close,
            unlink,
        } if swallow > i32::MAX as usize => Parse::Error {
            header,
            status,
            consumed,
            swallow: 0,
            close,
            unlink,
        },
        parsed => parsed,
    }
}

fn parse_frame<'a>(buf: &'a [u8], limits: &Limits, gate: SaslGate) -> Parse<'a> {
    let Some(hb) = buf.get(..HEADER_LEN) else {
        return Parse::Incomplete;
    };
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(hb);
    if raw[0] != REQ_MAGIC {
        return Parse::Close;
    }
    let h = Header::read(&raw);
    let extlen = h.extlen as usize;
    let keylen = h.keylen as usize;
    let bodylen = h.bodylen as usize;
    let head = HEADER_LEN + extlen + keylen;
    let Some(front) = buf.get(..head) else {
        return Parse::Incomplete;
    };
    let extras = &front[HEADER_LEN..HEADER_LEN + extlen];
    let key = &front[HEADER_LEN + extlen..];
    let err = |status, swallow, close| Parse::Error {
        header: h,
        status,
        consumed: head,
        swallow,
        close,
        unlink: None,
    };
    if keylen > bodylen || keylen + extlen > bodylen {
        return err(Status::UnknownCommand, 0, true);
    }
    use opcode::*;
    if gate == SaslGate::Unauthenticated
        && !matches!(h.opcode, SASL_LIST_MECHS | SASL_AUTH | SASL_STEP | VERSION)
    {
        return err(Status::AuthError, 0, true);
    }
    if keylen > KEY_MAX_LENGTH {
        return err(Status::Einval, 0, true);
    }
    let quiet = matches!(
        h.opcode,
        SETQ | ADDQ
            | REPLACEQ
            | DELETEQ
            | INCREMENTQ
            | DECREMENTQ
            | QUITQ
            | FLUSHQ
            | APPENDQ
            | PREPENDQ
            | GETQ
            | GETKQ
            | GATQ
            | GATKQ
    );
    let req = |cmd| {
        Parse::Request(
            Request {
                header: h,
                quiet,
                key,
                cmd,
            },
            head,
        )
    };
    let einval = err(Status::Einval, 0, true);
    let empty = extlen == 0 && keylen == 0 && bodylen == 0;
    match h.opcode {
        VERSION if empty => req(Command::Version),
        NOOP if empty => req(Command::Noop),
        QUIT | QUITQ if empty => req(Command::Quit),
        FLUSH | FLUSHQ if keylen == 0 && bodylen == extlen && (extlen == 0 || extlen == 4) => {
            req(Command::Flush {
                delay: if extlen == 4 { be32(extras, 0) } else { 0 },
            })
        }
        GET | GETQ | GETK | GETKQ if extlen == 0 && bodylen == keylen && keylen > 0 => {
            req(Command::Get {
                with_key: matches!(h.opcode, GETK | GETKQ),
                with_value: true,
                exptime: None,
            })
        }
        TOUCH | GAT | GATQ | GATK | GATKQ if extlen == 4 && keylen != 0 => req(Command::Get {
            with_key: matches!(h.opcode, GATK | GATKQ),
            with_value: h.opcode != TOUCH,
            exptime: Some(be32(extras, 0)),
        }),
        DELETE | DELETEQ if keylen > 0 && extlen == 0 && bodylen == keylen => req(Command::Delete),
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ
            if keylen > 0 && extlen == 20 && bodylen == keylen + extlen =>
        {
            req(Command::Arith {
                incr: matches!(h.opcode, INCREMENT | INCREMENTQ),
                delta: be64(extras, 0),
                initial: be64(extras, 8),
                exptime: be32(extras, 16),
            })
        }
        STAT if extlen == 0 => req(Command::Stat),
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ
            if extlen == 8 && keylen != 0 && bodylen >= keylen + 8 =>
        {
            let kind = match h.opcode {
                SET | SETQ => StoreKind::Set,
                ADD | ADDQ => StoreKind::Add,
                _ => StoreKind::Replace,
            };
            storage(
                buf,
                h,
                quiet,
                key,
                kind,
                be32(extras, 0),
                be32(extras, 4),
                limits,
            )
        }
        APPEND | APPENDQ | PREPEND | PREPENDQ if keylen > 0 && extlen == 0 => {
            let kind = if matches!(h.opcode, APPEND | APPENDQ) {
                StoreKind::Append
            } else {
                StoreKind::Prepend
            };
            storage(buf, h, quiet, key, kind, 0, 0, limits)
        }
        SASL_LIST_MECHS if empty && gate == SaslGate::Off => err(Status::UnknownCommand, 0, false),
        SASL_LIST_MECHS if empty => req(Command::SaslListMechs),
        SASL_AUTH | SASL_STEP if extlen == 0 && keylen != 0 => {
            let vlen = bodylen - keylen;
            if gate == SaslGate::Off {
                err(Status::UnknownCommand, vlen, false)
            } else if keylen > MAX_SASL_MECH_LEN {
                err(Status::Einval, vlen, false)
            } else if too_large(limits, keylen, 0, vlen)
                || (head + vlen > buf.len() && head + vlen > limits.buffer_room)
            {
                err(Status::Enomem, vlen, false)
            } else {
                let Some(data) = buf.get(head..head + vlen) else {
                    return Parse::Partial(head + vlen);
                };
                let cmd = if h.opcode == SASL_AUTH {
                    Command::SaslAuth { data }
                } else {
                    Command::SaslStep { data }
                };
                Parse::Request(
                    Request {
                        header: h,
                        quiet,
                        key,
                        cmd,
                    },
                    head + vlen,
                )
            }
        }
        CONFIG_GET if extlen == 0 && keylen > 0 && bodylen == keylen => req(Command::ConfigGet),
        CONFIG_DELETE if extlen == 0 && keylen > 0 && bodylen == keylen => {
            req(Command::ConfigDelete)
        }
        CONFIG_SET if keylen > 0 && matches!(extlen, 0 | 4 | 8) => {
            let vlen = bodylen - keylen - extlen;
            if too_large(limits, keylen, 0, vlen)
                || (head + vlen > buf.len() && head + vlen > limits.buffer_room)
            {
                err(Status::E2big, vlen, false)
            } else {
                let Some(value) = buf.get(head..head + vlen) else {
                    return Parse::Partial(head + vlen);
                };
                Parse::Request(
                    Request {
                        header: h,
                        quiet,
                        key,
                        cmd: Command::ConfigSet { value },
                    },
                    head + vlen,
                )
            }
        }
        CONFIG_GET | CONFIG_SET | CONFIG_DELETE => einval,
        VERSION | NOOP | QUIT | QUITQ | FLUSH | FLUSHQ | GET | GETQ | GETK | GETKQ | TOUCH
        | GAT | GATQ | GATK | GATKQ | DELETE | DELETEQ | INCREMENT | INCREMENTQ | DECREMENT
        | DECREMENTQ | STAT | SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ | APPEND | APPENDQ
        | PREPEND | PREPENDQ | SASL_LIST_MECHS | SASL_AUTH | SASL_STEP => einval,
        // memcached discards `bodylen` bytes after the extras and key it already read.
        _ => err(Status::UnknownCommand, bodylen, false),
    }
}

/// A storage request: refuse a too-large value at once, else wait for all of it.
#[allow(clippy::too_many_arguments)]
fn storage<'a>(
    buf: &'a [u8],
    h: Header,
    quiet: bool,
    key: &'a [u8],
    kind: StoreKind,
    flags: u32,
    exptime: u32,
    limits: &Limits,
) -> Parse<'a> {
    let head = HEADER_LEN + h.extlen as usize + h.keylen as usize;
    let vlen = h.bodylen as usize - (h.extlen as usize + h.keylen as usize);
    let frame = head + vlen;
    let big = too_large(limits, key.len(), flags, vlen);
    if big || (frame > buf.len() && frame > limits.buffer_room) {
        // memcached's E2BIG, or its out-of-memory answer when it cannot allocate.
        return Parse::Error {
            header: h,
            status: if big { Status::E2big } else { Status::Enomem },
            consumed: head,
            swallow: vlen,
            close: false,
            unlink: (kind == StoreKind::Set).then_some(key),
        };
    }
    let Some(value) = buf.get(head..frame) else {
        return Parse::Partial(frame);
    };
    Parse::Request(
        Request {
            header: h,
            quiet,
            key,
            cmd: Command::Store {
                kind,
                flags,
                exptime,
                value,
            },
        },
        head + vlen,
    )
}

/// Appends a response header.
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    out: &mut Vec<u8>,
    opcode: u8,
    status: Status,
    extlen: u8,
    keylen: u16,
    bodylen: u32,
    opaque: u32,
    cas: u64,
) {
    out.push(RES_MAGIC);
    out.push(opcode);
    out.extend_from_slice(&keylen.to_be_bytes());
    out.push(extlen);
    out.push(0);
    out.extend_from_slice(&(status as u16).to_be_bytes());
    out.extend_from_slice(&bodylen.to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
}

/// Appends a success reply with no extras or key: `body` and `cas`.
pub fn write_ok(out: &mut Vec<u8>, h: &Header, body: &[u8], cas: u64) {
    write_header(
        out,
        h.opcode,
        Status::Success,
        0,
        0,
        body.len() as u32,
        h.opaque,
        cas,
    );
    out.extend_from_slice(body);
}

/// Appends an error reply: the status and memcached's message for it, CAS 0.
pub fn write_error(out: &mut Vec<u8>, h: &Header, status: Status) {
    let msg = status.message().as_bytes();
    write_header(out, h.opcode, status, 0, 0, msg.len() as u32, h.opaque, 0);
    out.extend_from_slice(msg);
}

/// Appends a hit for a get/touch form: flags extras, optional key, optional value.
pub fn write_hit(
    out: &mut Vec<u8>,
    h: &Header,
    flags: u32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    cas: u64,
) {
    let v = value.unwrap_or(&[]);
    write_hit_head(out, h, flags, key, v.len(), cas);
    out.extend_from_slice(v);
}

/// Appends a GET-family hit without its value: the header (counting `value_len`
/// bytes of value in the body), the flags and the key. The value's bytes are to
/// follow.
pub fn write_hit_head(
    out: &mut Vec<u8>,
    h: &Header,
    flags: u32,
    key: Option<&[u8]>,
    value_len: usize,
    cas: u64,
) {
    let k = key.unwrap_or(&[]);
    let body = 4 + k.len() + value_len;
    write_header(
        out,
        h.opcode,
        Status::Success,
        4,
        k.len() as u16,
        body as u32,
        h.opaque,
        cas,
    );
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(k);
}

/// Appends a GETK/GATK miss: status `KEY_ENOENT` with the key as key and body.
pub fn write_key_miss(out: &mut Vec<u8>, h: &Header, key: &[u8]) {
    write_header(
        out,
        h.opcode,
        Status::KeyEnoent,
        0,
        key.len() as u16,
        key.len() as u32,
        h.opaque,
        0,
    );
    out.extend_from_slice(key);
}

/// Appends one STAT packet (`name` as key, `value` as the rest of the body); an empty
/// name and value make the terminator.
pub fn write_stat(out: &mut Vec<u8>, h: &Header, name: &[u8], value: &[u8]) {
    write_header(
        out,
        h.opcode,
        Status::Success,
        0,
        name.len() as u16,
        (name.len() + value.len()) as u32,
        h.opaque,
        0,
    );
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}
