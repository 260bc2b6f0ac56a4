//! `session`: a whole connection, `server::session::Session::process`, in-process
//! against a fresh server state (store, counters, buffer budget) per run: the stream
//! is fed as a connection reads it (as much as the session gives room for, then
//! served, the replies taken after each arrival), whole and split at the points the
//! input's header chooses (see `ferrocache_fuzz::Input`).
//!
//! Header options: bit 0 = `-C` (no CAS), bits 1-2 = `-I` from `ITEM_SIZES`, bit 3 =
//! `-B binary` (else auto-negotiated).
//!
//! Checked: nothing panics; every run ends (libFuzzer's `-timeout` catches a loop);
//! no reply follows a close; the read buffer stays within one item plus the multi-get
//! allowance; and, when neither run closed and the stream asks nothing whose answer
//! depends on time or process state (`stats` in text or binary, `watch`,
//! `lru_crawler`, `verbosity`, `shutdown`, `debugtime`), the whole and the split run
//! reply byte for byte the same.
#![no_main]

use ferrocache::server::loopback::Loopback;
use ferrocache::server::session::Stop;
use ferrocache_fuzz::{Input, MAX_READS};
use libfuzzer_sys::fuzz_target;

/// `-I` values as the command line spells them, in `ITEM_SIZES` order, with the
/// `slab_chunk_max` memcached then requires (at most half of `-I`).
const ITEM_ARGS: [(&str, &str); 4] = [
    ("1m", "slab_chunk_max=524288"),
    ("1k", "slab_chunk_max=512"),
    ("2k", "slab_chunk_max=1024"),
    ("16k", "slab_chunk_max=8192"),
];

/// Requests whose replies depend on time, the process or other connections (the
/// last: a binary STAT request, magic 0x80 and opcode 0x10, whose `rusage_*` and
/// `time` differ between the two runs).
const STATEFUL: [&[u8]; 7] = [
    b"stat",
    b"watch",
    b"lru_crawler",
    b"verbosity",
    b"shutdown",
    b"debugtime",
    &[0x80, 0x10],
];

/// One connection's run: the replies and whether the server closed.
struct Outcome {
    replies: Vec<u8>,
    closed: bool,
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let (item, chunk) = ITEM_ARGS[usize::from(input.opts >> 1) & 3];
    let mut args = vec!["-m", "2", "-I", item, "-o", chunk];
    if input.opts & 1 != 0 {
        args.push("-C");
    }
    if input.opts & 8 != 0 {
        args.extend(["-B", "binary"]);
    }
    let whole = run(&args, input.stream, &[]);
    if input.chunks.is_empty() {
        return;
    }
    let split = run(&args, input.stream, &input.chunks);
    let stateful = STATEFUL.iter().any(|w| within_bytes(input.stream, w));
    if !whole.closed && !split.closed && !stateful {
        assert!(
            whole.replies == split.replies,
            "whole and split replies differ:\n  whole {:?}\n  split {:?}",
            String::from_utf8_lossy(&whole.replies),
            String::from_utf8_lossy(&split.replies)
        );
    }
});

fn within_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Feeds `stream` to a new session on a new server state, in arrivals of the sizes
/// in `chunks` (in turn, at most `MAX_READS`, then the rest; all at once when empty).
fn run(args: &[&str], stream: &[u8], chunks: &[usize]) -> Outcome {
    let mut rig = Loopback::new(args).unwrap_or_else(|e| panic!("bad arguments {args:?}: {e}"));
    let item_max = rig.shared.config.item_size_max;
    let mut session = rig.session();
    let fed = rig.feed(&mut session, stream, &mut |i| {
        if chunks.is_empty() || i >= MAX_READS {
            usize::MAX
        } else {
            chunks[i % chunks.len()]
        }
    });
    assert!(
        fed.max_room <= item_max + (8 << 20) + (16 << 10),
        "read buffer grew to {} bytes",
        fed.max_room
    );
    if fed.closed {
        // A closed session serves nothing more.
        assert_eq!(
            rig.process(&mut session),
            Stop::Close { flush: true },
            "processing after a close"
        );
        assert_eq!(session.pending_output(), 0, "a reply after the close");
    }
    Outcome {
        replies: fed.replies,
        closed: fed.closed,
    }
}
