//! Shared pieces of the fuzz targets: the input layout (a small header that picks
//! limits and split points, then the byte stream) and the connection-like streaming
//! loop that feeds a parser chunk by chunk and compares the outcome with feeding the
//! whole stream at once.
//!
//! Input layout of the streaming targets (`text`, `binary`, `auth` mode 0):
//!
//! ```text
//! byte 0      low nibble N: number of chunk-size bytes that follow (0: no split)
//!             high nibble: target options (limits, ...)
//! bytes 1..=N chunk sizes: byte b means a read of b + 1 bytes; the sizes repeat
//!             until the stream is used up
//! rest        the byte stream a client sends
//! ```

/// The header and the stream of one input.
pub struct Input<'a> {
    /// The high nibble of byte 0 (target options).
    pub opts: u8,
    /// Read sizes, repeated in turn (empty: the whole stream in one read).
    pub chunks: Vec<usize>,
    /// What the client sends.
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits `data` into header and stream (`None` for an empty input).
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&first, rest) = data.split_first()?;
        let n = usize::from(first & 0x0f).min(rest.len());
        let chunks = rest[..n].iter().map(|&b| usize::from(b) + 1).collect();
        Some(Input {
            opts: first >> 4,
            chunks,
            stream: &rest[n..],
        })
    }
}

/// `-I` values the targets pick from (memcached accepts 1k..1024m; 1m is the default).
pub const ITEM_SIZES: [usize; 4] = [1 << 20, 1024, 2048, 16 * 1024];

/// The buffer room (`Limits::buffer_room`) the targets' option bit 3 picks: more
/// than a line, less than the larger items, so both answers (wait, refuse) happen.
pub const ROOM: usize = 3000;

/// What one parser call made of the front of the buffer, reduced to what must not
/// depend on how the bytes arrived.
pub enum Outcome {
    /// Read more. `need`: the parser said how long the whole frame is (a storage
    /// request whose line or header has arrived, not all of its data).
    Incomplete {
        /// The whole frame's length, when known.
        need: Option<usize>,
    },
    /// A request or an error reply.
    Frame {
        /// Bytes of the buffer it took.
        consumed: usize,
        /// Bytes to discard after them (possibly not arrived yet).
        swallow: usize,
        /// The connection closes after this reply.
        close: bool,
        /// A description that must be the same however the stream was split; it
        /// must not mention `consumed`/`swallow` separately (only their sum, which
        /// the driver adds), because an error may either consume a data block that
        /// is already buffered or swallow it as it arrives.
        repr: String,
        /// True when the answer depends on how much happened to be buffered: a
        /// refusal for lack of buffer room, which another split of the stream may
        /// answer as a request of the same length.
        timing: bool,
    },
    /// Close without a reply.
    Close {
        /// True when the close depends on how much happened to be buffered (a long
        /// line without `\n`, a data block larger than a read buffer): a split run
        /// may then close where the one-read run went on.
        timing: bool,
    },
}

/// One frame as the driver recorded it.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The parser's answer (see [`Outcome::Frame`]).
    pub repr: String,
    /// `consumed + swallow`.
    pub took: usize,
    /// See [`Outcome::Frame`].
    pub timing: bool,
}

/// What a run of the streaming loop saw.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    /// One entry per frame.
    pub events: Vec<Event>,
    /// How the run ended: `None` (input used up), `Some(true)` closed by a
    /// timing-dependent close, `Some(false)` by any other close.
    pub closed: Option<bool>,
    /// Bytes left unparsed at the end (empty after a close).
    pub leftover: Vec<u8>,
    /// Bytes still to be swallowed at the end.
    pub swallow: usize,
}

/// Split reads per run; the rest of the stream then comes in one read.
pub const MAX_READS: usize = 256;

/// Feeds `stream` to `step` as a connection would: reads of the sizes in `chunks`
/// (in turn, at most [`MAX_READS`]; the whole stream at once when empty), after
/// each read parsing from the front until the parser needs more, skipping `swallow`
/// bytes across reads, and stopping at a close.
///
/// Checks on the way: a frame consumes 1..=buffered bytes; a frame whose length the
/// parser announced (`Incomplete { need }`) is answered with that length, the
/// announcement stays the same until then, and nothing waits once that many bytes
/// are buffered.
pub fn drive(stream: &[u8], chunks: &[usize], step: &mut dyn FnMut(&[u8]) -> Outcome) -> Run {
    let mut run = Run {
        events: Vec::new(),
        closed: None,
        leftover: Vec::new(),
        swallow: 0,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0; // front of the unparsed bytes in buf
    let mut pos = 0; // next stream byte to read
    let mut turn = 0;
    let mut announced: Option<usize> = None;
    loop {
        // Parse everything that can be parsed now.
        loop {
            if run.swallow > 0 {
                let k = run.swallow.min(buf.len() - start);
                start += k;
                run.swallow -= k;
                if run.swallow > 0 {
                    break;
                }
            }
            if start == buf.len() {
                break;
            }
            let avail = buf.len() - start;
            match step(&buf[start..]) {
                Outcome::Incomplete { need } => {
                    if let Some(n) = need {
                        assert!(n > avail, "announced a frame of {n} with {avail} buffered");
                        if let Some(a) = announced {
                            assert_eq!(a, n, "the announced frame length changed");
                        }
                        announced = Some(n);
                    } else {
                        assert!(announced.is_none(), "announced a frame, then forgot it");
                    }
                    break;
                }
                Outcome::Close { timing } => {
                    assert!(announced.is_none(), "announced a frame, then closed");
                    // What was read past a close depends on the reads: not compared.
                    run.closed = Some(timing);
                    return run;
                }
                Outcome::Frame {
                    consumed,
                    swallow,
                    close,
                    repr,
                    timing,
                } => {
                    assert!(consumed > 0, "a frame consumed nothing: {repr}");
                    assert!(
                        consumed <= avail,
                        "consumed {consumed} > buffered {avail}: {repr}"
                    );
                    if let Some(n) = announced.take() {
                        assert_eq!(
                            consumed + swallow,
                            n,
                            "announced {n} bytes, took {consumed} + {swallow}: {repr}"
                        );
                    }
                    run.events.push(Event {
                        repr,
                        took: consumed + swallow,
                        timing,
                    });
                    start += consumed;
                    run.swallow = swallow;
                    if close {
                        run.closed = Some(false);
                        return run;
                    }
                }
            }
        }
        if pos == stream.len() {
            break;
        }
        // Drop what was parsed, then read the next chunk.
        buf.drain(..start);
        start = 0;
        // Reads of the chosen sizes, at most MAX_READS of them (a long stream read
        // a byte at a time would cost quadratic parsing), then the rest at once.
        let n = if chunks.is_empty() || turn == MAX_READS {
            stream.len() - pos
        } else {
            let n = chunks[turn % chunks.len()];
            turn += 1;
            n.min(stream.len() - pos)
        };
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
    }
    run.leftover = buf[start..].to_vec();
    run
}

/// Checks that splitting the stream into reads changed nothing: `split` must equal
/// `whole` (one read of everything), frame by frame, except that
/// - a timing-dependent frame (a refusal for lack of buffer room) in either run may
///   stand for any frame of the same length in the other;
/// - a timing-dependent close in the split run may come where the one-read run had
///   the whole frame and went on; the frames before it must still agree.
pub fn assert_same(whole: &Run, split: &Run, what: &str) {
    let same =
        |a: &Event, b: &Event| a.took == b.took && (a.repr == b.repr || a.timing || b.timing);
    let k = split.events.len();
    let prefix_ok = whole.events.len() >= k
        && whole.events[..k]
            .iter()
            .zip(&split.events)
            .all(|(a, b)| same(a, b));
    if split.closed == Some(true) {
        assert!(
            prefix_ok,
            "{what}: frames before a close differ between one read and split reads\n\
             one read: {whole:#?}\nsplit:    {split:#?}"
        );
        return;
    }
    assert!(
        prefix_ok
            && whole.events.len() == k
            && whole.closed == split.closed
            && whole.leftover == split.leftover
            && whole.swallow == split.swallow,
        "{what}: one read and split reads disagree\none read: {whole:#?}\nsplit:    {split:#?}"
    );
}

/// Whether the known, reported issue `id` is listed in `$FUZZ_KNOWN_ISSUES`
/// (comma-separated): its check is then skipped, so a long campaign can look for
/// other bugs while that one waits for its fix. Unset in CI and `run.sh` by default.
pub fn known_issue(id: &str) -> bool {
    static LIST: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        std::env::var("FUZZ_KNOWN_ISSUES")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .iter()
    .any(|k| k == id)
}

/// Whether `inner` lies inside `outer` (same memory).
pub fn within(inner: &[u8], outer: &[u8]) -> bool {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

/// A slice of the buffer as `@offset+len` from `base` (the front of the buffer the
/// parser was given): equal in two runs exactly when the bytes are, since both see
/// the same stream from the same frame start. Cheaper than formatting the bytes.
pub fn at(s: &[u8], base: &[u8]) -> String {
    if s.is_empty() {
        return "@-".to_string();
    }
    assert!(within(s, base), "a slice outside the buffer");
    format!(
        "@{}+{}",
        s.as_ptr() as usize - base.as_ptr() as usize,
        s.len()
    )
}

/// Position of the first `\n`.
pub fn find_nl(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// Splits `data` on the two-byte separator `0xff 0xff` (never valid UTF-8, so it
/// costs the SASL messages nothing that could matter).
pub fn split_messages(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut s = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xff && data[i + 1] == 0xff {
            out.push(&data[s..i]);
            i += 2;
            s = i;
        } else {
            i += 1;
        }
    }
    out.push(&data[s..]);
    out
}
