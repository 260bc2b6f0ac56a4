use super::*;

const LIMITS: Limits = Limits {
    item_size_max: 1 << 20,
    cas_enabled: true,
    buffer_room: usize::MAX,
};

fn raw(op: u8, keylen: u16, extlen: u8, bodylen: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![REQ_MAGIC, op];
    p.extend_from_slice(&keylen.to_be_bytes());
    p.push(extlen);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&bodylen.to_be_bytes());
    p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    p.extend_from_slice(&7u64.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn pkt(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let body = (extras.len() + key.len() + value.len()) as u32;
    raw(
        op,
        key.len() as u16,
        extras.len() as u8,
        body,
        &[extras, key, value].concat(),
    )
}

fn err_of(p: Parse<'_>) -> Option<(Status, usize, usize, bool)> {
    match p {
        Parse::Error {
            status,
            consumed,
            swallow,
            close,
            ..
        } => Some((status, consumed, swallow, close)),
        _ => None,
    }
}

#[test]
fn short_input_is_incomplete_and_bad_magic_closes() {
    let p = pkt(opcode::GET, b"key", &[], &[]);
    for n in 0..p.len() {
        assert_eq!(parse(&p[..n], &LIMITS), Parse::Incomplete, "prefix {n}");
    }
    let mut bad = p.clone();
    bad[0] = 0x81;
    assert_eq!(parse(&bad, &LIMITS), Parse::Close);
}

#[test]
fn get_forms() {
    let p = pkt(opcode::GETKQ, b"key", &[], &[]);
    let Parse::Request(r, used) = parse(&p, &LIMITS) else {
        panic!("not a request");
    };
    assert_eq!(used, p.len());
    assert_eq!(r.key, b"key");
    assert!(r.quiet);
    assert_eq!(r.header.opaque, 0x0102_0304);
    assert_eq!(r.header.cas, 7);
    assert_eq!(
        r.cmd,
        Command::Get {
            with_key: true,
            with_value: true,
            exptime: None
        }
    );
    let t = pkt(opcode::TOUCH, b"k", &9u32.to_be_bytes(), &[]);
    let Parse::Request(r, _) = parse(&t, &LIMITS) else {
        panic!("not a request");
    };
    assert_eq!(
        r.cmd,
        Command::Get {
            with_key: false,
            with_value: false,
            exptime: Some(9)
        }
    );
}

#[test]
fn storage_waits_for_value_and_refuses_too_large() {
    let ex = [0, 0, 0, 5, 0, 0, 0, 9];
    let p = pkt(opcode::SETQ, b"k", &ex, b"value");
    assert_eq!(parse(&p[..p.len() - 1], &LIMITS), Parse::Partial(p.len()));
    // A value larger than the connection may buffer: Out of memory, swallowed, the
    // old value of a SET unlinked.
    let room = Limits {
        buffer_room: p.len() - 1,
        ..LIMITS
    };
    let set = pkt(opcode::SET, b"k", &ex, b"value");
    match parse(&set[..34], &room) {
        Parse::Error {
            status,
            consumed,
            swallow,
            unlink,
            ..
        } => {
            assert_eq!((status, consumed, swallow), (Status::Enomem, 33, 5));
            assert_eq!(unlink, Some(&b"k"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&set, &room), Parse::Request(..)), "all here");
    let Parse::Request(r, used) = parse(&p, &LIMITS) else {
        panic!("not a request");
    };
    assert_eq!(used, p.len());
    assert_eq!(
        r.cmd,
        Command::Store {
            kind: StoreKind::Set,
            flags: 5,
            exptime: 9,
            value: b"value"
        }
    );
    // A value claimed far beyond -I is refused from the header alone.
    let big = raw(
        opcode::SET,
        1,
        8,
        9 + 0x7fff_0000,
        &[0, 0, 0, 0, 0, 0, 0, 0, b'k'],
    );
    match parse(&big, &LIMITS) {
        Parse::Error {
            status: Status::E2big,
            consumed: 33,
            swallow: 0x7fff_0000,
            close: false,
            unlink: Some(b"k"),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn length_errors() {
    // keylen > bodylen: unknown command, close.
    let p = raw(opcode::GET, 4, 0, 2, b"abcd");
    assert_eq!(
        err_of(parse(&p, &LIMITS)),
        Some((Status::UnknownCommand, 28, 0, true))
    );
    // key longer than 250: invalid arguments, close.
    let k = vec![b'k'; 251];
    let p = pkt(opcode::GET, &k, &[], &[]);
    assert_eq!(
        err_of(parse(&p, &LIMITS)),
        Some((Status::Einval, 275, 0, true))
    );
    // wrong shape for the opcode.
    let p = pkt(opcode::NOOP, &[], &[], b"x");
    assert_eq!(
        err_of(parse(&p, &LIMITS)),
        Some((Status::Einval, 24, 0, true))
    );
    let p = pkt(opcode::INCREMENT, b"k", &[0; 8], &[]);
    assert_eq!(
        err_of(parse(&p, &LIMITS)),
        Some((Status::Einval, 33, 0, true))
    );
    // unknown opcode: memcached discards bodylen more bytes.
    let p = pkt(0x55, b"ab", &[1], b"xyz");
    assert_eq!(
        err_of(parse(&p, &LIMITS)),
        Some((Status::UnknownCommand, 27, 6, false))
    );
    // SASL without SASL: unknown command, value discarded.
    let p = pkt(opcode::SASL_AUTH, b"PLAIN", &[], b"abc");
    assert_eq!(
        err_of(parse(&p, &LIMITS)),
        Some((Status::UnknownCommand, 29, 3, false))
    );
}

#[test]
fn sasl_forms_with_sasl_on() {
    fn on(b: &[u8]) -> Parse<'_> {
        parse_gated(b, &LIMITS, SaslGate::Authenticated)
    }
    fn closed(b: &[u8]) -> Parse<'_> {
        parse_gated(b, &LIMITS, SaslGate::Unauthenticated)
    }
    let p = pkt(opcode::SASL_AUTH, b"PLAIN", &[], b"\0u\0p");
    match closed(&p) {
        Parse::Request(r, used) => {
            assert_eq!(used, p.len());
            assert_eq!(r.key, b"PLAIN");
            assert_eq!(r.cmd, Command::SaslAuth { data: b"\0u\0p" });
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(closed(&p[..p.len() - 1]), Parse::Partial(p.len()));
    let p = pkt(opcode::SASL_STEP, b"SCRAM-SHA-256", &[], b"");
    assert!(matches!(
        on(&p),
        Parse::Request(
            Request {
                cmd: Command::SaslStep { data: b"" },
                ..
            },
            37
        )
    ));
    let p = pkt(opcode::SASL_LIST_MECHS, &[], &[], &[]);
    assert!(matches!(
        closed(&p),
        Parse::Request(
            Request {
                cmd: Command::SaslListMechs,
                ..
            },
            24
        )
    ));
    // A 33-byte mechanism: invalid arguments, the value discarded, connection kept.
    let p = pkt(opcode::SASL_AUTH, &[b'M'; 33], &[], b"abc");
    assert_eq!(err_of(on(&p)), Some((Status::Einval, 57, 3, false)));
    // A value over -I: out of memory, discarded.
    let big = vec![0u8; LIMITS.item_size_max];
    let p = pkt(opcode::SASL_AUTH, b"PLAIN", &[], &big);
    assert_eq!(
        err_of(on(&p[..40])),
        Some((Status::Enomem, 29, big.len(), false))
    );
    // Before authentication: data commands are refused and close; VERSION is served.
    for op in [
        opcode::GET,
        opcode::SET,
        opcode::NOOP,
        opcode::STAT,
        opcode::QUIT,
        0x55,
    ] {
        let p = raw(op, 0, 0, 0, &[]);
        assert_eq!(
            err_of(closed(&p)),
            Some((Status::AuthError, 24, 0, true)),
            "{op:#x}"
        );
    }
    let p = pkt(opcode::VERSION, &[], &[], &[]);
    assert!(matches!(
        closed(&p),
        Parse::Request(
            Request {
                cmd: Command::Version,
                ..
            },
            24
        )
    ));
    // Lengths that do not add up are judged first (unknown command), as memcached.
    let p = raw(opcode::GET, 4, 0, 2, b"abcd");
    assert_eq!(
        err_of(closed(&p)),
        Some((Status::UnknownCommand, 28, 0, true))
    );
}

#[test]
fn arith_and_flush_extras() {
    let ex = [
        &5u64.to_be_bytes()[..],
        &10u64.to_be_bytes(),
        &0xffff_ffffu32.to_be_bytes(),
    ]
    .concat();
    let p = pkt(opcode::DECREMENTQ, b"n", &ex, &[]);
    let Parse::Request(r, _) = parse(&p, &LIMITS) else {
        panic!("not a request");
    };
    assert!(r.quiet);
    assert_eq!(
        r.cmd,
        Command::Arith {
            incr: false,
            delta: 5,
            initial: 10,
            exptime: 0xffff_ffff
        }
    );
    let p = pkt(opcode::FLUSH, &[], &30u32.to_be_bytes(), &[]);
    let Parse::Request(r, _) = parse(&p, &LIMITS) else {
        panic!("not a request");
    };
    assert_eq!(r.cmd, Command::Flush { delay: 30 });
}

#[test]
fn reply_writers() {
    let h = Header {
        opcode: opcode::GETK,
        keylen: 1,
        extlen: 0,
        bodylen: 1,
        opaque: 9,
        cas: 0,
    };
    let mut out = Vec::new();
    write_hit(&mut out, &h, 3, Some(b"k"), Some(b"vv"), 0x10);
    assert_eq!(
        out,
        [
            &[0x81, 0x0c, 0, 1, 4, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9][..],
            &[0, 0, 0, 0, 0, 0, 0, 0x10],
            &[0, 0, 0, 3],
            b"kvv"
        ]
        .concat()
    );
    out.clear();
    write_error(&mut out, &h, Status::KeyEnoent);
    assert_eq!(out.len(), 24 + 9);
    assert_eq!(&out[6..8], &[0, 1]);
    assert_eq!(&out[24..], b"Not found");
}

/// Small xorshift PRNG (no crates).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Random packets (plausible and hostile): the parser never panics, never claims more
/// than it was given, never waits beyond header + extras + key + one item, and gives
/// the same verdict on every prefix that already holds what the verdict needed.
#[test]
fn random_packets_property() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let limits = Limits {
        item_size_max: 4096,
        cas_enabled: true,
        buffer_room: 3000,
    };
    for _ in 0..20_000 {
        let op = if rng.below(4) == 0 {
            rng.below(256) as u8
        } else {
            rng.below(0x25) as u8
        };
        let keylen = match rng.below(4) {
            0 => 0,
            1 => rng.below(300),
            _ => rng.below(12),
        } as u16;
        let extlen = match rng.below(4) {
            0 => [0u8, 4, 8, 20][rng.below(4) as usize],
            1 => rng.below(256) as u8,
            _ => 0,
        };
        let vlen = match rng.below(3) {
            0 => 0,
            1 => rng.below(64),
            _ => rng.below(6000),
        };
        let honest = extlen as u64 + keylen as u64 + vlen;
        let bodylen = match rng.below(5) {
            0 => rng.next() as u32,
            1 => rng.below(honest + 1) as u32,
            _ => honest as u32,
        };
        let have = (24 + rng.below(honest + 40)) as usize;
        let mut payload = vec![0u8; have.saturating_sub(24)];
        for b in payload.iter_mut() {
            *b = rng.next() as u8;
        }
        let mut p = raw(op, keylen, extlen, bodylen, &payload);
        if rng.below(50) == 0 {
            p[0] = rng.next() as u8;
        }
        let gate = [
            SaslGate::Off,
            SaslGate::Unauthenticated,
            SaslGate::Authenticated,
        ][rng.below(3) as usize];
        let verdict = parse_gated(&p, &limits, gate);
        if let (SaslGate::Unauthenticated, Parse::Request(r, _)) = (gate, verdict) {
            assert!(
                matches!(
                    r.cmd,
                    Command::Version
                        | Command::SaslListMechs
                        | Command::SaslAuth { .. }
                        | Command::SaslStep { .. }
                ),
                "served before authentication: {r:?}"
            );
        }
        match verdict {
            Parse::Incomplete => {
                let need_head = 24 + extlen as usize + keylen as usize;
                let bound = need_head + limits.item_size_max;
                assert!(p.len() < bound, "waits beyond one item: {p:?}");
            }
            Parse::Partial(frame) => {
                assert!(frame > p.len(), "partial but all here: {p:?}");
                assert!(frame <= limits.buffer_room, "waits beyond the room: {p:?}");
            }
            Parse::Close => assert_ne!(p[0], REQ_MAGIC),
            Parse::Request(r, used) => {
                assert!(used >= 24 && used <= p.len());
                assert_eq!(r.key.len(), keylen as usize);
                assert!(r.key.len() <= 250);
                // The same request is found in exactly its own bytes.
                assert_eq!(
                    parse_gated(&p[..used], &limits, gate),
                    Parse::Request(r, used)
                );
                // One byte short it waits, or, when the packet is more than the
                // connection could buffer, refuses it for lack of memory.
                let short = parse_gated(&p[..used - 1], &limits, gate);
                assert!(
                    matches!(short, Parse::Incomplete | Parse::Partial(_))
                        || (used > limits.buffer_room
                            && matches!(
                                short,
                                Parse::Error {
                                    status: Status::Enomem,
                                    ..
                                }
                            )),
                    "{short:?}"
                );
            }
            Parse::Error {
                consumed, status, ..
            } => {
                assert!(consumed >= 24 && consumed <= p.len());
                assert_ne!(status, Status::Success);
                assert_eq!(
                    err_of(parse_gated(&p[..consumed], &limits, gate)).map(|s| s.0),
                    Some(status)
                );
            }
        }
    }
}
