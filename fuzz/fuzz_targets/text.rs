//! `text`: the ASCII front door, `protocol::ascii::parse` (text and meta commands),
//! fed as a connection reads: whole, and split at the points the input's header
//! chooses (see `ferrocache_fuzz::Input`). Header options: bit 0 = CAS enabled,
//! bits 1-2 = `-I` from `ITEM_SIZES`, bit 3 = a buffer room (`Limits::buffer_room`)
//! of `ROOM` bytes (else unbounded).
#![no_main]

use ferrocache::protocol::ascii::{self, Parse, Request};
use ferrocache::protocol::frame::{errors, Limits, StoreRefusal, UnlinkKey};
use ferrocache::protocol::meta::MetaKind;
use ferrocache::protocol::text::{Command, ConfigCmd};
use ferrocache::protocol::text::{KEY_MAX_LENGTH, MAX_LINE_WITHOUT_NEWLINE};
use ferrocache_fuzz::{assert_same, at, drive, find_nl, within, Input, Outcome, ITEM_SIZES};
use libfuzzer_sys::fuzz_target;

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
    let mut step = |buf: &[u8]| step(buf, &limits);
    let whole = drive(input.stream, &[], &mut step);
    if !input.chunks.is_empty() {
        let split = drive(input.stream, &input.chunks, &mut step);
        assert_same(&whole, &split, "text");
    }
});

/// A key as the parser hands it over: 1..=250 bytes, no space, no `\n`, no NUL.
fn check_key(key: &[u8], what: &str) {
    assert!(
        !key.is_empty() && key.len() <= KEY_MAX_LENGTH,
        "{what}: key length {}",
        key.len()
    );
    assert!(
        !key.iter().any(|&b| b == b' ' || b == b'\n' || b == 0),
        "{what}: key {key:?} holds a separator"
    );
}

/// One parser call, with the invariants of a single result checked.
fn step(buf: &[u8], limits: &Limits) -> Outcome {
    let r = ascii::parse(buf, limits);
    let nl = find_nl(buf);
    match &r {
        Parse::Incomplete => {
            match nl {
                // Rule 2: without a `\n`, at most 2048 bytes wait, unless a multi-get.
                None => {
                    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
                    let rest = &buf[spaces..];
                    assert!(
                        buf.len() <= MAX_LINE_WITHOUT_NEWLINE
                            || (spaces <= 100
                                && (rest.starts_with(b"get ") || rest.starts_with(b"gets "))),
                        "Incomplete with {} bytes and no newline",
                        buf.len()
                    );
                }
                // A whole line: only a data block is awaited, and never one larger
                // than an item (larger ones are refused from the line alone).
                Some(nl) => assert!(
                    buf.len() < nl + 1 + limits.item_size_max,
                    "Incomplete with a line of {} bytes and {} buffered (-I {})",
                    nl + 1,
                    buf.len(),
                    limits.item_size_max
                ),
            }
            // A whole line never waits: storage requests announce their frame
            // (`Parse::Partial`) instead.
            assert!(nl.is_none(), "Incomplete with a whole line buffered");
            Outcome::Incomplete { need: None }
        }
        Parse::Partial(n) => {
            let n = *n;
            let nl = nl.unwrap_or_else(|| panic!("Partial({n}) without a whole line"));
            assert!(n > buf.len(), "Partial({n}) with {} buffered", buf.len());
            assert!(
                n < nl + 1 + limits.item_size_max,
                "Partial({n}): a frame larger than an item (-I {})",
                limits.item_size_max
            );
            assert!(
                n <= limits.buffer_room,
                "Partial({n}) beyond the buffer room"
            );
            Outcome::Incomplete { need: Some(n) }
        }
        Parse::Close => {
            let timing = match nl {
                None => {
                    assert!(
                        buf.len() > MAX_LINE_WITHOUT_NEWLINE,
                        "Close with only {} bytes and no newline",
                        buf.len()
                    );
                    true
                }
                Some(nl) => {
                    // Rule 7, the only close of a whole line: an HTTP request.
                    assert!(
                        buf[..nl].windows(5).any(|w| w == b"HTTP/"),
                        "Close of a line without HTTP/: {:?}",
                        String::from_utf8_lossy(&buf[..nl])
                    );
                    false
                }
            };
            Outcome::Close { timing }
        }
        Parse::Request(cmd, consumed) => {
            let consumed = *consumed;
            let what = summary(&r, buf);
            let nl = nl.unwrap_or_else(|| panic!("a request without a newline: {what}"));
            assert!(
                consumed > nl && consumed <= buf.len(),
                "{what}: consumed {consumed}"
            );
            check_command(cmd, &buf[..consumed], nl, &what);
            no_lookahead(buf, consumed, &r, limits, &what);
            Outcome::Frame {
                consumed,
                swallow: 0,
                close: false,
                repr: what,
                timing: false,
            }
        }
        Parse::Error {
            reply,
            consumed,
            swallow,
            unlink,
            ..
        } => {
            let (consumed, swallow) = (*consumed, *swallow);
            let what = format!("{r:?}");
            let repr = summary(&r, buf);
            let nl = nl.unwrap_or_else(|| panic!("an error without a newline: {what}"));
            assert!(consumed > nl && consumed <= buf.len(), "{what}");
            if let Some(reply) = reply {
                assert!(
                    !reply.is_empty() && !reply.contains(['\r', '\n']),
                    "{what}: bad reply line"
                );
            }
            let refused = match r {
                Parse::Error { refused, .. } => refused,
                _ => None,
            };
            let no_memory = refused == Some(StoreRefusal::NoMemory);
            // A refusal that counts in `stats` comes with its reply (or none, for
            // noreply) and swallows the data block.
            if let Some(why) = refused {
                let want = match why {
                    StoreRefusal::TooLarge => errors::TOO_LARGE,
                    StoreRefusal::NoMemory => errors::NO_MEMORY,
                };
                assert!(
                    matches!(reply, None) || *reply == Some(want),
                    "{what}: {why:?} with another reply"
                );
                assert!(swallow > 0, "{what}: {why:?} without a swallow");
            }
            if matches!(reply, Some(errors::TOO_LARGE) | Some(errors::NO_MEMORY)) {
                assert!(refused.is_some(), "{what}: refused but not counted");
            }
            // An error that swallows (a storage request refused from its line, also
            // a meta `ms` with bad flags) consumes its line only.
            if swallow > 0 {
                assert_eq!(
                    consumed,
                    nl + 1,
                    "{what}: an error that swallows consumes its line only"
                );
            }
            if let Some(u) = unlink {
                // Only a set / ms refused as too large unlinks.
                assert!(
                    swallow > 0
                        && matches!(
                            reply,
                            None | Some(errors::TOO_LARGE) | Some(errors::NO_MEMORY)
                        ),
                    "{what}: unlinks without being too large"
                );
                assert!(within(u.raw(), &buf[..consumed]), "{what}: unlink key");
                if let UnlinkKey::Plain(k) = u {
                    check_key(k, &what);
                }
                let _ = u.key();
            }
            no_lookahead(buf, consumed, &r, limits, &what);
            Outcome::Frame {
                consumed,
                swallow,
                close: false,
                repr,
                timing: no_memory,
            }
        }
    }
}

/// The request checks that follow from the `Command` documentation.
fn check_command(req: &Request<'_>, frame: &[u8], nl: usize, what: &str) {
    let line_only = |what: &str| assert_eq!(frame.len(), nl + 1, "{what}: took more than its line");
    let cmd = match req {
        Request::Text(cmd) => cmd,
        Request::Meta(m) => {
            let key = m.key();
            assert!(key.len() <= KEY_MAX_LENGTH, "{what}: meta key too long");
            if m.kind != MetaKind::Noop {
                assert!(!key.is_empty(), "{what}: meta request without a key");
            }
            for w in m.flag_words() {
                assert!(!w.is_empty(), "{what}: empty flag word");
                assert!(
                    within(w, &frame[..nl]),
                    "{what}: flag word outside the line"
                );
            }
            if m.kind == MetaKind::Set {
                assert_eq!(
                    frame.len(),
                    nl + 1 + m.data.len() + 2,
                    "{what}: ms frame length"
                );
                assert!(within(m.data, frame), "{what}: ms data outside the frame");
                assert_eq!(
                    m.bad_chunk,
                    !frame.ends_with(b"\r\n"),
                    "{what}: bad_chunk does not match the block's end"
                );
            } else {
                line_only(what);
                assert!(m.data.is_empty(), "{what}: data on a non-ms request");
            }
            return;
        }
    };
    match cmd {
        Command::Get { keys, .. } | Command::Gat { keys, .. } => {
            line_only(what);
            let mut n = 0;
            for k in *keys {
                check_key(k, what);
                assert!(within(k, frame), "{what}: key outside the line");
                n += 1;
            }
            // `get` needs a key (arity); `gat <exptime>` alone is memcached's `END`.
            if matches!(cmd, Command::Get { .. }) {
                assert!(n > 0, "{what}: a get without keys");
            }
        }
        Command::Store { key, data, .. } => {
            check_key(key, what);
            assert!(within(key, &frame[..nl]), "{what}: key outside the line");
            // Rule 6: `<bytes>` bytes right after the line, then `\r\n`, nothing else.
            assert_eq!(frame.len(), nl + 1 + data.len() + 2, "{what}: frame length");
            assert!(within(data, frame), "{what}: data outside the frame");
            assert_eq!(
                data.as_ptr() as usize,
                frame[nl + 1..].as_ptr() as usize,
                "{what}: data does not start after the line"
            );
            assert!(
                frame.ends_with(b"\r\n"),
                "{what}: data block not ended by \\r\\n"
            );
        }
        Command::Delete { key, .. } | Command::Arith { key, .. } | Command::Touch { key, .. } => {
            line_only(what);
            check_key(key, what);
            assert!(within(key, frame), "{what}: key outside the line");
        }
        Command::Config(c) => match c {
            ConfigCmd::Get { key } | ConfigCmd::Delete { key, .. } => {
                line_only(what);
                check_key(key, what);
                assert!(within(key, frame), "{what}: key outside the line");
            }
            ConfigCmd::Set { key, data, .. } => {
                check_key(key, what);
                assert!(within(key, &frame[..nl]), "{what}: key outside the line");
                assert_eq!(frame.len(), nl + 1 + data.len() + 2, "{what}: frame length");
                assert!(
                    frame.ends_with(b"\r\n"),
                    "{what}: data block not ended by \\r\\n"
                );
            }
        },
        Command::Stats { args } => {
            line_only(what);
            assert!(within(args, frame), "{what}: args outside the line");
            assert!(
                !args.starts_with(b" ") && !args.ends_with(b" "),
                "{what}: args not trimmed"
            );
        }
        Command::CacheMemlimit { megabytes, .. } => {
            line_only(what);
            assert!(
                (8..=1_000_000_000).contains(megabytes),
                "{what}: memlimit out of range"
            );
        }
        Command::FlushAll { .. }
        | Command::Version
        | Command::Verbosity { .. }
        | Command::Quit
        | Command::RefreshCerts { .. }
        | Command::Snapshot { .. }
        | Command::Shutdown { .. }
        | Command::DebugTime { .. }
        | Command::LruCrawler(_)
        | Command::SlabsAutomove { .. }
        | Command::Watch { .. } => line_only(what),
    }
}

/// The parser decides from the frame alone: with exactly the frame's bytes buffered
/// it must give the same answer (so it never answers `Incomplete` to a whole frame,
/// and never looks past what it consumes).
fn no_lookahead(buf: &[u8], consumed: usize, full: &Parse<'_>, limits: &Limits, what: &str) {
    if consumed == buf.len() {
        return;
    }
    let again = ascii::parse(&buf[..consumed], limits);
    assert_eq!(
        summary(&again, buf),
        summary(full, buf),
        "{what}: a different answer with only the frame's {consumed} bytes buffered"
    );
}

/// Everything a result says, with borrowed bytes as offsets from `base` (see `at`);
/// `consumed` and `swallow` left out (the driver adds their sum).
fn summary(r: &Parse<'_>, base: &[u8]) -> String {
    match r {
        Parse::Incomplete => "incomplete".into(),
        Parse::Partial(n) => format!("partial {n}"),
        Parse::Close => "close".into(),
        Parse::Error { reply, unlink, .. } => {
            let reply = (
                reply,
                matches!(
                    r,
                    Parse::Error {
                        refused: Some(StoreRefusal::NoMemory),
                        ..
                    }
                ),
            );
            let unlink = match unlink {
                None => "-".to_string(),
                Some(UnlinkKey::Plain(k)) => format!("plain {}", at(k, base)),
                Some(UnlinkKey::Base64(k)) => format!("base64 {}", at(k, base)),
            };
            format!("error {reply:?} unlink {unlink}")
        }
        Parse::Request(Request::Meta(m), _) => {
            let words: Vec<String> = m.flag_words().iter().map(|w| at(w, base)).collect();
            format!(
                "meta {:?} key {:?} words {words:?} flags {:?} mode {:?} incr {} data {} \
                 bad_chunk {}",
                m.kind,
                m.key(),
                m.flags,
                m.mode,
                m.incr,
                at(m.data, base),
                m.bad_chunk
            )
        }
        Parse::Request(Request::Text(cmd), _) => match cmd {
            Command::Get { keys, cas } => format!("get {} cas {cas}", at(keys.0, base)),
            Command::Gat { exptime, keys, cas } => {
                format!("gat {exptime} {} cas {cas}", at(keys.0, base))
            }
            Command::Store {
                cmd,
                key,
                flags,
                exptime,
                data,
                noreply,
            } => format!(
                "store {cmd:?} {} {flags} {exptime} {} {noreply}",
                at(key, base),
                at(data, base)
            ),
            Command::Delete { key, noreply } => format!("delete {} {noreply}", at(key, base)),
            Command::Arith {
                key,
                incr,
                delta,
                noreply,
            } => format!("arith {} {incr} {delta} {noreply}", at(key, base)),
            Command::Touch {
                key,
                exptime,
                noreply,
            } => format!("touch {} {exptime} {noreply}", at(key, base)),
            Command::Stats { args } => format!("stats {}", at(args, base)),
            Command::Config(ConfigCmd::Get { key }) => format!("config get {}", at(key, base)),
            Command::Config(ConfigCmd::Delete { key, noreply }) => {
                format!("config delete {} {noreply}", at(key, base))
            }
            Command::Config(ConfigCmd::Set {
                key,
                flags,
                data,
                noreply,
            }) => format!(
                "config set {} {flags} {} {noreply}",
                at(key, base),
                at(data, base)
            ),
            // The rest hold no borrowed bytes.
            other => format!("{other:?}"),
        },
    }
}
