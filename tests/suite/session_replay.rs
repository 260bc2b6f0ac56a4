//! The connection's protocol state (`server::session::Session`) driven in-process, with
//! no socket: the recorded memcached 1.6.18 transcripts replayed byte-exact through it
//! — request by request, all of a connection's requests pipelined in one arrival, and
//! split at every byte — and quiet-mode inputs (binary `*Q` opcodes, meta `q`, text
//! `noreply`) compared against the installed memcached.
//!
//! `server::loopback::Loopback` feeds input the way `Conn` does: an arrival is read as
//! far as the session gives room, processed, and the replies are collected once the
//! arrival has been read and served (a short read is the end of a batch).
use crate::common::transcripts::*;
use crate::common::*;

use std::time::Duration;

use ferrocache::server::loopback::Loopback;
use ferrocache::server::session::Session;

/// A fresh server state for `args`.
fn rig(args: &[&str]) -> Loopback {
    Loopback::new(args).unwrap_or_else(|e| panic!("bad arguments {args:?}: {e}"))
}

/// Feeds `bytes` in arrivals of `chunk` bytes: the replies and whether it closed.
fn feed(rig: &mut Loopback, s: &mut Session, bytes: &[u8], chunk: usize) -> (Vec<u8>, bool) {
    let fed = rig.feed(s, bytes, &mut |_| chunk);
    (fed.replies, fed.closed)
}

/// How the input of a case is cut into arrivals.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// One arrival per recorded request (as the socket replay sends them).
    PerRequest,
    /// Every request of a connection in one arrival.
    Pipelined,
    /// One byte per arrival.
    EveryByte,
}

/// The case as arrivals: per connection, a list of (send, expect, closed, line).
/// One arrival of a case: what is sent, the replies, whether the server then closes,
/// and the golden's line.
type Exchange = (Vec<u8>, Vec<u8>, bool, usize);

fn connections(case: &Case) -> Vec<Vec<Exchange>> {
    let mut conns = vec![Vec::new()];
    for step in &case.steps {
        match step {
            Step::Sleep(secs) => conns.last_mut().expect("a connection").push((
                format!("debugtime {secs}\r\n").into_bytes(),
                b"OK\r\n".to_vec(),
                false,
                0,
            )),
            Step::Reconnect => conns.push(Vec::new()),
            Step::Exchange {
                send,
                expect,
                closed,
                line,
            } => conns.last_mut().expect("a connection").push((
                send.clone(),
                expect.clone(),
                *closed,
                *line,
            )),
        }
    }
    conns
}

fn same(case: &Case, got: &[u8], expect: &[u8]) -> bool {
    if case.cas_shape() {
        digits_as_pattern(got) == digits_as_pattern(expect)
    } else {
        got == expect
    }
}

/// Where in a connection's input memcached closes it when the input arrives a byte
/// at a time: at the 2049th byte of a request line without a newline, unless the line
/// is a retrieval (`get `/`gets ` after at most 100 spaces), whose long key lists it
/// reads on. Data blocks of storage commands are skipped.
fn long_line_close_at(input: &[u8]) -> Option<usize> {
    let limit = ferrocache::protocol::frame::MAX_LINE_WITHOUT_NEWLINE;
    let mut at = 0;
    while at < input.len() {
        let rest = &input[at..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        let spaces = line.iter().take_while(|&&b| b == b' ').count();
        let body = &line[spaces..];
        let retrieval = spaces <= 100 && (body.starts_with(b"get ") || body.starts_with(b"gets "));
        if line.len() > limit && !retrieval {
            return Some(at + limit);
        }
        at += end + 1;
        let words: Vec<&[u8]> = line
            .split(|&b| b == b' ' || b == b'\r')
            .filter(|w| !w.is_empty())
            .collect();
        let storage = [
            &b"set"[..],
            b"add",
            b"replace",
            b"append",
            b"prepend",
            b"cas",
        ];
        if words.len() >= 5 && storage.contains(&words[0]) {
            if let Some(n) = std::str::from_utf8(words[4])
                .ok()
                .and_then(|w| w.parse::<usize>().ok())
            {
                at += n + 2;
            }
        }
    }
    None
}

/// Runs one case; `Ok(true)` when a long line's close replaced its golden replies.
fn run_case(case: &Case, mode: Mode) -> Result<bool, String> {
    let mut args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    if case.has_sleep() {
        args.extend(["-o", "debugtime"]);
    }
    let mut rig = rig(&args);
    let mut adjusted = false;
    for conn in connections(case) {
        let mut s = rig.session();
        let exchanges: Vec<_> = if mode == Mode::Pipelined {
            // All of them in one arrival, up to the one the server closes after.
            let mut send = Vec::new();
            let mut expect = Vec::new();
            let mut closed = false;
            let line = conn.first().map_or(0, |c| c.3);
            for (sn, ex, cl, _) in &conn {
                send.extend_from_slice(sn);
                expect.extend_from_slice(ex);
                if *cl {
                    closed = true;
                    break;
                }
            }
            vec![(send, expect, closed, line)]
        } else {
            conn
        };
        let chunk = if mode == Mode::EveryByte {
            1
        } else {
            usize::MAX
        };
        let whole: Vec<u8> = exchanges.iter().flat_map(|e| e.0.clone()).collect();
        let close_at = long_line_close_at(&whole);
        let mut start = 0;
        for (send, mut expect, mut closed, line) in exchanges {
            let end = start + send.len();
            let closes_here = close_at.is_some_and(|at| (start..end).contains(&at));
            start = end;
            if mode == Mode::EveryByte && closes_here {
                adjusted = true;
                // memcached closes once 2049 bytes without a newline have arrived
                // (the goldens sent the line in one write; see
                // `long_lines_arriving_a_byte_at_a_time_close_as_in_memcached`).
                expect.clear();
                closed = true;
            }
            let (got, c) = feed(&mut rig, &mut s, &send, chunk);
            if !same(case, &got, &expect) || c != closed {
                return Err(format!(
                    "line {line} ({mode:?}), request {}:\n  expected {}{}\n  got      {}{}",
                    shorten(&send),
                    shorten(&expect),
                    if closed { " then close" } else { "" },
                    shorten(&got),
                    if c { " then close" } else { "" }
                ));
            }
            if c {
                break;
            }
        }
    }
    Ok(adjusted)
}

fn replay_all(mode: Mode) {
    let cases = load_cases();
    assert!(
        std::env::var("TRANSCRIPT_FILTER").is_ok() || cases.len() >= 140,
        "only {} transcript cases found",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut adjusted = 0;
    for case in &cases {
        match run_case(case, mode) {
            Ok(a) => adjusted += usize::from(a),
            Err(e) => failures.push(format!("{}: {e}", case.id)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} transcript cases failed in-process ({mode:?}):\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} transcript cases replayed in-process ({mode:?}); {adjusted} of them close at a \
         long line, as memcached does when it arrives a byte at a time",
        cases.len()
    );
}

#[test]
fn transcripts_replay_through_a_session_request_by_request() {
    replay_all(Mode::PerRequest);
}

#[test]
fn transcripts_replay_through_a_session_pipelined() {
    replay_all(Mode::Pipelined);
}

#[test]
fn transcripts_replay_through_a_session_split_at_every_byte() {
    replay_all(Mode::EveryByte);
}

/// A binary request: magic 0x80, `op`, key, extras, value, opaque.
fn bin(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut r = vec![0x80, op];
    r.extend_from_slice(&(key.len() as u16).to_be_bytes());
    r.push(extras.len() as u8);
    r.extend_from_slice(&[0, 0, 0]);
    r.extend_from_slice(&(body as u32).to_be_bytes());
    r.extend_from_slice(&opaque.to_be_bytes());
    r.extend_from_slice(&[0; 8]);
    r.extend_from_slice(extras);
    r.extend_from_slice(key);
    r.extend_from_slice(value);
    r
}

/// Flags and expiry extras of a binary store.
const STORE_EXTRAS: [u8; 8] = [0, 0, 0, 7, 0, 0, 0, 0];
/// Delta, initial value and expiry extras of a binary incr/decr.
const DELTA_EXTRAS: [u8; 20] = [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0];

/// Quiet-mode inputs: each is one connection's whole input.
fn quiet_scripts() -> Vec<(&'static str, Vec<u8>)> {
    let mut binary_gets = Vec::new();
    binary_gets.extend(bin(0x11, b"a", &STORE_EXTRAS, b"one", 1)); // SETQ
    binary_gets.extend(bin(0x11, b"b", &STORE_EXTRAS, b"two", 2)); // SETQ
    binary_gets.extend(bin(0x09, b"a", &[], &[], 3)); // GETQ hit
    binary_gets.extend(bin(0x09, b"zz", &[], &[], 4)); // GETQ miss: silent
    binary_gets.extend(bin(0x0d, b"b", &[], &[], 5)); // GETKQ hit
    binary_gets.extend(bin(0x0d, b"zz", &[], &[], 6)); // GETKQ miss: silent
    binary_gets.extend(bin(0x0a, &[], &[], &[], 7)); // NOOP
    let mut binary_errors = Vec::new();
    binary_errors.extend(bin(0x11, b"a", &STORE_EXTRAS, b"one", 1)); // SETQ
    binary_errors.extend(bin(0x12, b"a", &STORE_EXTRAS, b"x", 2)); // ADDQ exists: error shows
    binary_errors.extend(bin(0x14, b"zz", &[], &[], 3)); // DELETEQ miss: error shows
    binary_errors.extend(bin(0x15, b"n", &DELTA_EXTRAS, &[], 4)); // INCREMENTQ creates
    binary_errors.extend(bin(0x15, b"n", &DELTA_EXTRAS, &[], 5)); // INCREMENTQ
    binary_errors.extend(bin(0x00, b"n", &[], &[], 6)); // GET: 14
    binary_errors.extend(bin(0x19, b"zz", &STORE_EXTRAS, b"x", 7)); // APPENDQ miss
    binary_errors.extend(bin(0x0a, &[], &[], &[], 8)); // NOOP
    binary_errors.extend(bin(0x17, &[], &[], &[], 9)); // QUITQ: silent close
                                                       // Replies memcached has not sent yet when a bad magic byte closes the connection
                                                       // are dropped (a miss and a NOOP are sent at once, a VERSION waits).
    let mut bad_magic = bin(0x00, b"nope", &[], &[], 1);
    bad_magic.extend(bin(0x11, b"q", &STORE_EXTRAS, b"v", 2)); // SETQ
    bad_magic.extend(bin(0x0a, &[], &[], &[], 3)); // NOOP
    bad_magic.extend(bin(0x0b, &[], &[], &[], 4)); // VERSION
    bad_magic.extend([0x42; 24]);
    let meta = b"ms a 3 T0 F5 q\r\none\r\nmg a v f q\r\nmg zz v q\r\nmd zz q\r\n\
        ma zz q\r\nms a 1 I q\r\nx\r\nmg a v q\r\nmn\r\nmd a q\r\nmg a v\r\nmn\r\n"
        .to_vec();
    let text = b"set a 0 0 1 noreply\r\n1\r\nincr a 5 noreply\r\nincr zz 1 noreply\r\n\
        add a 0 0 1 noreply\r\nx\r\nappend a 0 0 2 noreply\r\n00\r\ndelete zz noreply\r\n\
        touch a 10 noreply\r\nget a\r\nbogus noreply\r\nquit\r\n"
        .to_vec();
    vec![
        ("binary GETQ/GETKQ/SETQ", binary_gets),
        ("binary quiet errors and QUITQ", binary_errors),
        ("binary replies before a bad magic byte", bad_magic),
        ("meta q", meta),
        ("text noreply", text),
    ]
}

#[test]
fn quiet_mode_inputs_match_memcached_in_process() {
    if !require_tool(MEMCACHED) {
        return;
    }
    let mut failures = Vec::new();
    for (name, input) in quiet_scripts() {
        let mc = Server::memcached(&[]).expect("memcached starts");
        let mut c = mc.connect();
        c.send(&input);
        let (want, want_closed) = c.read_quiet(Duration::from_millis(300));
        assert!(!want.is_empty(), "{name}: memcached sent nothing");
        // What a bad magic byte drops depends on what had been sent before it
        // arrived: a byte at a time, the VERSION reply had left already.
        let modes: &[(&str, usize)] = if name.contains("bad magic") {
            &[("one arrival", usize::MAX)]
        } else {
            &[("one arrival", usize::MAX), ("every byte", 1)]
        };
        for &(mode, chunk) in modes {
            let mut rig = rig(&[]);
            let mut s = rig.session();
            let (got, closed) = feed(&mut rig, &mut s, &input, chunk);
            if got != want || closed != want_closed {
                failures.push(format!(
                    "{name} ({mode}):\n  memcached {}{}\n  session   {}{}",
                    show(&want),
                    if want_closed { " then close" } else { "" },
                    show(&got),
                    if closed { " then close" } else { "" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn long_lines_arriving_a_byte_at_a_time_close_as_in_memcached() {
    if !require_tool(MEMCACHED) {
        return;
    }
    let long_set = [b"set ".to_vec(), vec![b'a'; 3000], b" 0 0 1\r\n".to_vec()].concat();
    let inputs: [(&str, Vec<u8>); 2] = [
        (
            "2048 bytes, then version",
            [vec![b'x'; 2048], b"version\r\n".to_vec()].concat(),
        ),
        ("a 3015-byte set line", long_set),
    ];
    for (name, input) in inputs {
        let mc = Server::memcached(&[]).expect("memcached starts");
        let mut c = mc.connect();
        // The first 2049 bytes, then (after memcached has read them) the rest.
        c.send(&input[..2049]);
        std::thread::sleep(Duration::from_millis(100));
        c.send(&input[2049..]);
        let (want, want_closed) = c.read_quiet(Duration::from_millis(300));
        assert_eq!(
            (show(&want), want_closed),
            (String::new(), true),
            "{name}: memcached"
        );
        let mut rig = rig(&[]);
        let mut s = rig.session();
        let (got, closed) = feed(&mut rig, &mut s, &input, 1);
        assert_eq!(
            (show(&got), closed),
            (String::new(), true),
            "{name}: session"
        );
    }
}

#[test]
fn a_session_counts_its_input_and_closes_after_quit() {
    let mut rig = rig(&[]);
    let mut s = rig.session();
    let (got, closed) = feed(
        &mut rig,
        &mut s,
        b"set k 0 0 2\r\nhi\r\nget k\r\n",
        usize::MAX,
    );
    assert_eq!(got, b"STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n");
    assert!(!closed);
    // The store is the server's: a second session sees the item.
    let mut other = rig.session();
    let (got, closed) = feed(&mut rig, &mut other, b"get k\r\nquit\r\nget k\r\n", 3);
    assert_eq!(got, b"VALUE k 0 2\r\nhi\r\nEND\r\n");
    assert!(closed, "quit closes, and what follows it is not served");
    assert_eq!(s.pending_output(), 0);
}

/// The session's own cases (they were unit tests of `src/server/session/mod.rs`).
mod session_cases {
    use ferrocache::server::loopback::Loopback;
    use ferrocache::server::session::{Stop, TURN_BYTES};

    fn rig(args: &[&str]) -> Loopback {
        Loopback::new(args).expect("arguments")
    }

    /// A binary request without extras or value.
    fn bin(op: u8, key: &[u8]) -> Vec<u8> {
        let mut r = vec![0x80, op];
        r.extend_from_slice(&(key.len() as u16).to_be_bytes());
        r.extend_from_slice(&[0; 4]);
        r.extend_from_slice(&(key.len() as u32).to_be_bytes());
        r.extend_from_slice(&[0; 12]);
        r.extend_from_slice(key);
        r
    }

    #[test]
    fn the_first_byte_decides_the_framing_for_good() {
        let mut lb = rig(&[]);
        let mut s = lb.session();
        // NOOP, then text: on a binary connection 'v' is a bad magic byte (once a
        // whole header's worth has arrived). As memcached 1.6.18 answers.
        let mut input = bin(0x0a, b"");
        input.extend_from_slice(&b"version\r\n".repeat(3));
        let fed = lb.feed(&mut s, &input, &mut |_| usize::MAX);
        assert!(fed.closed);
        assert_eq!(fed.replies.len(), 24, "the NOOP's reply only");
        assert_eq!(&fed.replies[..2], &[0x81, 0x0a]);
        let mut t = lb.session();
        let fed = lb.feed(&mut t, b"version\r\n", &mut |_| usize::MAX);
        assert_eq!(fed.replies, b"VERSION 1.6.18\r\n");
        assert!(!fed.closed);
    }

    #[test]
    fn replies_memcached_had_not_sent_are_dropped_at_a_bad_magic_byte() {
        let mut lb = rig(&[]);
        let mut s = lb.session();
        // A GET's miss (an error reply: sent at once), a NOOP (sent at once), then a
        // VERSION reply that waits, then a header of garbage. As memcached 1.6.18.
        let mut input = bin(0x00, b"nope");
        input.extend(bin(0x0a, b""));
        input.extend(bin(0x0b, b""));
        input.extend([0x42; 24]);
        let fed = lb.feed(&mut s, &input, &mut |_| usize::MAX);
        assert!(fed.closed);
        // 24 + "Not found" (9), then the NOOP's 24: the VERSION reply is dropped.
        assert_eq!(fed.replies.len(), 24 + 9 + 24, "{:?}", fed.replies);
        assert_eq!(lb.process(&mut s), Stop::Close { flush: true });
        assert_eq!(s.pending_output(), 0);
    }

    #[test]
    fn a_refused_data_block_is_swallowed_across_arrivals() {
        let mut lb = rig(&["-I", "1k", "-o", "slab_chunk_max=512"]);
        let mut s = lb.session();
        let mut input = b"set k 0 0 3\r\nold\r\nset k 0 0 3000\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'z', 3000));
        input.extend_from_slice(b"\r\nget k\r\n");
        let fed = lb.feed(&mut s, &input, &mut |_| 7);
        assert_eq!(
            String::from_utf8_lossy(&fed.replies),
            "STORED\r\nSERVER_ERROR object too large for cache\r\nEND\r\n"
        );
        assert_eq!(s.swallowing(), 0);
    }

    #[test]
    fn a_multi_get_suspended_by_back_pressure_resumes_at_the_next_key() {
        let mut lb = rig(&[]);
        let mut s = lb.session();
        let value = vec![b'v'; 20_000];
        let mut input = Vec::new();
        let mut keys = String::from("get");
        for i in 0..40 {
            input.extend_from_slice(format!("set k{i} 0 0 {}\r\n", value.len()).as_bytes());
            input.extend_from_slice(&value);
            input.extend_from_slice(b"\r\n");
            keys.push_str(&format!(" k{i}"));
        }
        let stored = lb.feed(&mut s, &input, &mut |_| usize::MAX);
        assert_eq!(stored.replies, b"STORED\r\n".repeat(40));
        keys.push_str("\r\n");
        let fed = lb.feed(&mut s, keys.as_bytes(), &mut |_| usize::MAX);
        let mut want = Vec::new();
        for i in 0..40 {
            want.extend_from_slice(format!("VALUE k{i} 0 {}\r\n", value.len()).as_bytes());
            want.extend_from_slice(&value);
            want.extend_from_slice(b"\r\n");
        }
        want.extend_from_slice(b"END\r\n");
        // 800 KB of replies: more than a turn (256 KiB), so it was suspended.
        assert!(want.len() > 3 * TURN_BYTES);
        assert!(fed.replies == want, "every value once, in order, one END");
    }

    #[test]
    fn watch_turns_the_session_into_a_stream_of_log_lines() {
        let mut lb = rig(&[]);
        let mut w = lb.session();
        let fed = lb.feed(&mut w, b"watch mutations\r\nget ignored\r\n", &mut |_| {
            usize::MAX
        });
        assert_eq!(fed.replies, b"OK\r\n");
        assert!(w.is_watching());
        let mut c = lb.session();
        let fed = lb.feed(&mut c, b"set wk 0 0 1\r\nx\r\n", &mut |_| usize::MAX);
        assert_eq!(fed.replies, b"STORED\r\n");
        assert!(w.fill_watch(), "the queue is empty after one line");
        let line = String::from_utf8_lossy(w.output()).into_owned();
        assert!(
            line.starts_with("ts=") && line.contains("type=item_store key=wk status=stored"),
            "{line}"
        );
    }
}
