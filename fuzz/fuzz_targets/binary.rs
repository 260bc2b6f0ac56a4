//! `binary`: `protocol::binary::parse_gated` for each `SaslGate`, fed as a
//! connection reads: whole, and split at the points the input's header chooses (see
//! `ferrocache_fuzz::Input`). Header options: bit 0 = CAS enabled, bits 1-2 = `-I`
//! from `ITEM_SIZES`, bit 3 = a buffer room (`Limits::buffer_room`) of `ROOM` bytes
//! (else unbounded).
#![no_main]

use ferrocache::protocol::binary::{
    self, opcode::*, Command, Limits, Parse, SaslGate, Status, HEADER_LEN, MAX_SASL_MECH_LEN,
    REQ_MAGIC,
};
use ferrocache::protocol::text::KEY_MAX_LENGTH;
use ferrocache_fuzz::{assert_same, at, drive, within, Input, Outcome, ITEM_SIZES};
use libfuzzer_sys::fuzz_target;

const GATES: [SaslGate; 3] = [
    SaslGate::Off,
    SaslGate::Unauthenticated,
    SaslGate::Authenticated,
];

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let limits = Limits {
        cas_enabled: input.opts & 1 != 0,
        item_size_max: ITEM_SIZES[usize::from(input.opts >> 1) & 3],
        buffer_room: if input.opts & 8 != 0 {
            ferrocache_fuzz::ROOM
        } else {
            usize::MAX
        },
    };
    for gate in GATES {
        let mut step = |buf: &[u8]| step(buf, &limits, gate);
        let whole = drive(input.stream, &[], &mut step);
        if !input.chunks.is_empty() {
            let split = drive(input.stream, &input.chunks, &mut step);
            assert_same(&whole, &split, &format!("binary {gate:?}"));
        }
    }
});

fn is_sasl(op: u8) -> bool {
    matches!(op, SASL_LIST_MECHS | SASL_AUTH | SASL_STEP)
}

fn is_quiet(op: u8) -> bool {
    matches!(
        op,
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
    )
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One parser call, with the invariants of a single result checked.
fn step(buf: &[u8], limits: &Limits, gate: SaslGate) -> Outcome {
    let r = binary::parse_gated(buf, limits, gate);
    // Gates only differ on what they are about: SASL opcodes (Off vs Authenticated)
    // and opcodes other than VERSION and SASL (Unauthenticated vs Authenticated).
    if buf.len() >= HEADER_LEN {
        let op = buf[1];
        if gate == SaslGate::Off && !is_sasl(op) {
            let other = binary::parse_gated(buf, limits, SaslGate::Authenticated);
            assert_eq!(
                r, other,
                "gate Off and Authenticated differ on opcode {op:#x}"
            );
        }
        if gate == SaslGate::Unauthenticated && (is_sasl(op) || op == VERSION) {
            let other = binary::parse_gated(buf, limits, SaslGate::Authenticated);
            assert_eq!(
                r, other,
                "gates Unauthenticated and Authenticated differ on opcode {op:#x}"
            );
        }
    }
    match r {
        Parse::Incomplete => {
            // Rule 1-3: wait for the header, then header + extras + key, then at most
            // one item's value (a larger one is refused at once).
            if buf.len() >= HEADER_LEN && buf[0] == REQ_MAGIC {
                let head = HEADER_LEN + usize::from(buf[4]) + be16(buf, 2);
                assert!(
                    buf.len() < head + limits.item_size_max,
                    "Incomplete with {} bytes buffered, head {head}, -I {}",
                    buf.len(),
                    limits.item_size_max
                );
            }
            assert!(
                buf.len() < HEADER_LEN || buf[0] == REQ_MAGIC,
                "Incomplete with a whole header of bad magic"
            );
            // Only header, extras and key are waited for (then `Parse::Partial`).
            if buf.len() >= HEADER_LEN {
                let head = HEADER_LEN + usize::from(buf[4]) + be16(buf, 2);
                assert!(
                    buf.len() < head,
                    "Incomplete with header, extras and key here"
                );
            }
            Outcome::Incomplete { need: None }
        }
        Parse::Partial(n) => {
            let head = HEADER_LEN + usize::from(buf[4]) + be16(buf, 2);
            assert!(
                buf.len() >= head,
                "Partial({n}) before header, extras and key"
            );
            assert!(n > buf.len(), "Partial({n}) with {} buffered", buf.len());
            assert!(
                n < head + limits.item_size_max,
                "Partial({n}): larger than an item (-I {})",
                limits.item_size_max
            );
            assert!(
                n <= limits.buffer_room,
                "Partial({n}) beyond the buffer room"
            );
            assert_eq!(
                n,
                HEADER_LEN + be32(buf, 8) as usize,
                "Partial({n}): not the packet length"
            );
            Outcome::Incomplete { need: Some(n) }
        }
        Parse::Close => {
            assert!(
                buf.len() >= HEADER_LEN && buf[0] != REQ_MAGIC,
                "Close without a whole header of bad magic"
            );
            Outcome::Close { timing: false }
        }
        Parse::Request(req, consumed) => {
            let what = format!("{req:?}");
            let h = req.header;
            check_header(buf, &h, &what);
            let head = HEADER_LEN + usize::from(h.extlen) + usize::from(h.keylen);
            assert!(
                consumed >= head && consumed <= buf.len(),
                "{what}: consumed {consumed}"
            );
            assert!(req.key.len() <= KEY_MAX_LENGTH, "{what}: key too long");
            assert_eq!(
                req.key,
                &buf[head - usize::from(h.keylen)..head],
                "{what}: key"
            );
            assert_eq!(req.quiet, is_quiet(h.opcode), "{what}: quiet flag");
            assert!(
                usize::from(h.keylen) + usize::from(h.extlen) <= h.bodylen as usize,
                "{what}: key and extras longer than the body"
            );
            if gate == SaslGate::Unauthenticated {
                assert!(
                    is_sasl(h.opcode) || h.opcode == VERSION,
                    "{what}: served before authentication"
                );
            }
            let sasl_cmd = matches!(
                req.cmd,
                Command::SaslListMechs | Command::SaslAuth { .. } | Command::SaslStep { .. }
            );
            if gate == SaslGate::Off {
                assert!(!sasl_cmd, "{what}: a SASL command with SASL off");
            }
            match req.cmd {
                Command::Store { value, .. } => {
                    let vlen = h.bodylen as usize - usize::from(h.extlen) - usize::from(h.keylen);
                    assert_eq!(value.len(), vlen, "{what}: value length");
                    assert_eq!(consumed, head + vlen, "{what}: consumed");
                    assert!(within(value, &buf[head..consumed]), "{what}: value");
                    assert!(!req.key.is_empty(), "{what}: store without a key");
                }
                Command::SaslAuth { data } | Command::SaslStep { data } => {
                    let vlen = h.bodylen as usize - usize::from(h.keylen);
                    assert_eq!(h.extlen, 0, "{what}: SASL extras");
                    assert_eq!(data.len(), vlen, "{what}: SASL data length");
                    assert_eq!(consumed, head + vlen, "{what}: consumed");
                    assert!(within(data, &buf[head..consumed]), "{what}: SASL data");
                    assert!(
                        !req.key.is_empty() && req.key.len() <= MAX_SASL_MECH_LEN,
                        "{what}: mechanism length"
                    );
                }
                Command::ConfigSet { value } => {
                    let vlen = h.bodylen as usize - usize::from(h.extlen) - usize::from(h.keylen);
                    assert_eq!(value.len(), vlen, "{what}: config value length");
                    assert_eq!(consumed, head + vlen, "{what}: consumed");
                    assert!(within(value, &buf[head..consumed]), "{what}: config value");
                    assert!(!req.key.is_empty(), "{what}: config set without a key");
                }
                Command::Get { .. }
                | Command::Delete
                | Command::Arith { .. }
                | Command::ConfigGet
                | Command::ConfigDelete => {
                    assert_eq!(consumed, head, "{what}: consumed");
                    assert!(!req.key.is_empty(), "{what}: keyed command without a key");
                }
                _ => assert_eq!(consumed, head, "{what}: consumed"),
            }
            no_lookahead(buf, consumed, &r, limits, gate, &what);
            Outcome::Frame {
                consumed,
                swallow: 0,
                close: false,
                repr: request_repr(&req, buf),
                timing: false,
            }
        }
        Parse::Error {
            header,
            status,
            consumed,
            swallow,
            close,
            unlink,
        } => {
            let what = format!("{r:?}");
            check_header(buf, &header, &what);
            let head = HEADER_LEN + usize::from(header.extlen) + usize::from(header.keylen);
            assert_eq!(
                consumed, head,
                "{what}: an error takes header, extras and key"
            );
            assert!(consumed <= buf.len(), "{what}");
            assert!(
                status != Status::Success,
                "{what}: error with success status"
            );
            if close {
                assert_eq!(swallow, 0, "{what}: swallows and closes");
            }
            if let Some(k) = unlink {
                // Too large, or (with a buffer room) no room for the value.
                assert!(
                    matches!(header.opcode, SET | SETQ)
                        && (status == Status::E2big || status == Status::Enomem),
                    "{what}: unlink from something else than a too large SET"
                );
                assert_eq!(k, &buf[head - usize::from(header.keylen)..head], "{what}");
            }
            if status == Status::AuthError {
                assert_eq!(gate, SaslGate::Unauthenticated, "{what}: AUTH_ERROR");
                assert!(close, "{what}: AUTH_ERROR without close");
            }
            no_lookahead(buf, consumed, &r, limits, gate, &what);
            Outcome::Frame {
                consumed,
                swallow,
                close,
                repr: format!("error {header:?} {status:?} close {close} unlink {unlink:?}"),
                // Enomem also answers a value the connection had no room to buffer.
                timing: status == Status::Enomem,
            }
        }
    }
}

/// The header fields are the bytes sent.
fn check_header(buf: &[u8], h: &binary::Header, what: &str) {
    assert_eq!(buf[0], REQ_MAGIC, "{what}: magic");
    assert_eq!(h.opcode, buf[1], "{what}: opcode");
    assert_eq!(usize::from(h.keylen), be16(buf, 2), "{what}: keylen");
    assert_eq!(h.extlen, buf[4], "{what}: extlen");
    assert_eq!(h.bodylen, be32(buf, 8), "{what}: bodylen");
    assert_eq!(h.opaque, be32(buf, 12), "{what}: opaque");
    assert_eq!(
        h.cas,
        u64::from(be32(buf, 16)) << 32 | u64::from(be32(buf, 20)),
        "{what}: cas"
    );
}

/// The answer depends on the frame's bytes only: with exactly those buffered the
/// parser gives the same answer (never `Incomplete` to a whole frame).
fn no_lookahead(
    buf: &[u8],
    consumed: usize,
    full: &Parse<'_>,
    limits: &Limits,
    gate: SaslGate,
    what: &str,
) {
    if consumed == buf.len() {
        return;
    }
    let again = binary::parse_gated(&buf[..consumed], limits, gate);
    assert_eq!(
        &again, full,
        "{what}: a different answer with only the frame's {consumed} bytes buffered"
    );
}

/// The request with borrowed bytes as offsets (see `ferrocache_fuzz::at`).
fn request_repr(req: &binary::Request<'_>, base: &[u8]) -> String {
    let cmd = match req.cmd {
        Command::Store {
            kind,
            flags,
            exptime,
            value,
        } => format!("store {kind:?} {flags} {exptime} {}", at(value, base)),
        Command::SaslAuth { data } => format!("sasl-auth {}", at(data, base)),
        Command::SaslStep { data } => format!("sasl-step {}", at(data, base)),
        Command::ConfigSet { value } => format!("config-set {}", at(value, base)),
        other => format!("{other:?}"),
    };
    format!(
        "request {:?} quiet {} key {} {cmd}",
        req.header,
        req.quiet,
        at(req.key, base)
    )
}
