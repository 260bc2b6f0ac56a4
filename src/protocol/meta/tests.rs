use super::*;
use crate::protocol::ascii::{self, Parse, Request};
use crate::protocol::frame::Limits;

const LIMITS: Limits = Limits {
    item_size_max: 1024 * 1024,
    cas_enabled: true,
    buffer_room: usize::MAX,
};

fn p(input: &[u8]) -> Parse<'_> {
    ascii::parse(input, &LIMITS)
}

fn req(input: &[u8]) -> (MetaRequest<'_>, usize) {
    match p(input) {
        Parse::Request(Request::Meta(r), n) => (*r, n),
        other => panic!("{other:?}"),
    }
}

fn error(input: &[u8]) -> (Option<&'static str>, usize, usize) {
    match p(input) {
        Parse::Error {
            reply,
            consumed,
            swallow,
            ..
        } => (reply, consumed, swallow),
        other => panic!("{other:?}"),
    }
}

#[test]
fn get_flags_in_order() {
    let (r, n) = req(b"mg foo v k O123 t\r\nnext");
    assert_eq!(n, 19);
    assert_eq!(r.kind, MetaKind::Get);
    assert_eq!(r.key(), b"foo");
    assert!(r.flags.value);
    let words: Vec<&[u8]> = r.flag_words().to_vec();
    assert_eq!(words, vec![&b"v"[..], b"k", b"O123", b"t"]);
}

#[test]
fn errors_as_memcached() {
    assert_eq!(error(b"mg\r\n").0, Some("ERROR"));
    assert_eq!(error(b"me\r\n").0, Some(errors::BAD_FORMAT));
    let long = format!("mg {} v\r\n", "a".repeat(251));
    assert_eq!(error(long.as_bytes()).0, Some(errors::BAD_FORMAT));
    assert_eq!(error(b"mg a v v\r\n").0, Some(DUPLICATE));
    assert_eq!(error(b"mg a E1\r\n").0, Some(INVALID));
    assert_eq!(error(b"mg a \x80\r\n").0, Some(DUPLICATE));
    assert_eq!(error(b"mg a Tx\r\n").0, Some(BAD_TOKEN));
    assert_eq!(error(b"mg a b\r\n").0, Some(BAD_KEY));
    assert_eq!(error(b"md a x\r\n").0, Some(INVALID_OR_DUPLICATE));
    assert_eq!(error(b"ma a Dx\r\n").0, Some(INVALID_OR_DUPLICATE));
    assert_eq!(error(b"ma a Mx\r\n").0, Some(MA_MODE));
    let many = b"mg a v 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\r\n";
    assert_eq!(error(many).0, Some(MG_TOO_LONG));
    let ok = b"mg a v P1 L2 O3 k s t f c h l u q N1 R2 T3\r\n";
    assert!(matches!(p(ok), Parse::Request(..)));
}

#[test]
fn set_frames_the_data_block() {
    let (r, n) = req(b"ms k 3 T10 F5\r\nabc\r\nmn\r\n");
    assert_eq!(n, 20);
    assert_eq!(r.data, b"abc");
    assert_eq!(r.flags.ttl, Some(10));
    assert_eq!(r.flags.client_flags, 5);
    assert!(!r.bad_chunk);
    assert!(matches!(p(b"ms k 3\r\nab"), Parse::Partial(13)));
    let (r, n) = req(b"ms k 2\r\nabc\r\n");
    assert!(r.bad_chunk);
    assert_eq!(n, 12);
    // Bad length: nothing swallowed.
    assert_eq!(error(b"ms k x\r\nab\r\n"), (Some(errors::BAD_FORMAT), 8, 0));
    assert_eq!(error(b"ms k\r\n"), (Some(errors::BAD_FORMAT), 6, 0));
    // Flag errors swallow the block.
    assert_eq!(error(b"ms k 2 MX\r\nab\r\n"), (Some(MS_MODE), 15, 0));
    assert_eq!(
        error(b"ms k 2 Fx\r\nab\r\n"),
        (Some(errors::BAD_FORMAT), 15, 0)
    );
    // Too large: swallowed as it arrives.
    let (reply, consumed, swallow) = error(b"ms k 2000000\r\n");
    assert_eq!(reply, Some(errors::TOO_LARGE));
    assert_eq!((consumed, swallow), (14, 2_000_002));
}

#[test]
fn base64_keys() {
    let (r, _) = req(b"mg YWJj b k\r\n");
    assert_eq!(r.key(), b"abc");
    let (r, _) = req(b"mg YQ==YQ== b\r\n");
    assert_eq!(r.key(), b"a");
    let (r, _) = req(b"mg YW=j b\r\n");
    assert_eq!(r.key(), b"a`");
    for bad in [&b"YQ"[..], b"Y===", b"====", b"YWJjZA", b"Y\x80=="] {
        let mut out = [0u8; 250];
        assert_eq!(base64_decode(bad, &mut out), None, "{bad:?}");
    }
    let mut enc = Vec::new();
    base64_encode(&mut enc, b"a`");
    assert_eq!(enc, b"YWA=");
}

#[test]
fn noop_takes_anything() {
    let (r, n) = req(b"mn extra words\r\n");
    assert_eq!(r.kind, MetaKind::Noop);
    assert_eq!(n, 16);
}

#[test]
fn random_meta_lines_never_panic_or_overconsume() {
    // A small deterministic generator (xorshift), no extra dependency.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let pieces: [&[u8]; 24] = [
        b"mg",
        b"ms",
        b"md",
        b"ma",
        b"mn",
        b"me",
        b" ",
        b"  ",
        b"k",
        b"v",
        b"O12",
        b"T-1",
        b"N5",
        b"R",
        b"C9",
        b"q",
        b"b",
        b"YQ==",
        b"MA",
        b"Mz",
        b"D18446744073709551616",
        b"3",
        b"\r\n",
        b"\x00",
    ];
    for _ in 0..20_000 {
        let mut buf = Vec::new();
        let len = next() % 12;
        for _ in 0..len {
            buf.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            if next() % 5 == 0 {
                buf.push((next() & 0xff) as u8);
            }
        }
        match ascii::parse(&buf, &LIMITS) {
            Parse::Request(_, n) => assert!(n > 0 && n <= buf.len()),
            Parse::Error { consumed, .. } => assert!(consumed > 0 && consumed <= buf.len()),
            Parse::Incomplete | Parse::Partial(_) | Parse::Close => {}
        }
    }
}

#[test]
fn an_ms_larger_than_the_buffer_room_is_refused_as_out_of_memory() {
    let room = Limits {
        buffer_room: 50,
        ..LIMITS
    };
    match ascii::parse(b"ms kk 60 T0\r\nabc", &room) {
        Parse::Error {
            reply,
            consumed,
            swallow,
            unlink,
            refused,
        } => {
            assert_eq!(reply, Some("SERVER_ERROR out of memory storing object"));
            assert_eq!((consumed, swallow), (13, 62));
            assert_eq!(unlink.map(|u| u.raw().to_vec()), Some(b"kk".to_vec()));
            assert_eq!(
                refused,
                Some(crate::protocol::frame::StoreRefusal::NoMemory)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ascii::parse(b"ms kk 30\r\n", &room),
        Parse::Partial(42)
    ));
}
