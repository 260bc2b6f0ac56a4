//! `auth`: everything a client (or a credentials file) can feed to authentication.
//! Byte 0 (mod 5) picks the mode, the rest is the mode's input:
//!
//! 0. `protocol::text::auth::parse_auth` (`-Y` framing) as a connection reads:
//!    an `Input` (split header + stream, see `ferrocache_fuzz::Input`).
//! 1. `auth::AuthFile::parse` (the `-Y` file) on the bytes.
//! 2. `auth::AuthDb::from_str` (the SASL credentials file) on the bytes (UTF-8 only).
//! 3. `auth::AuthSession` with arbitrary client messages: byte 1 picks the mechanism
//!    (0 PLAIN, 1 SCRAM-SHA-256, 2 SCRAM-SHA-1, 3 the first message is the
//!    mechanism name; bit 2 lower-cases it), then messages separated by `ff ff`:
//!    the `SASL_AUTH` value, then each `SASL_STEP` value.
//! 4. `auth::AuthSession` against the `sasl` crate's real client, whose messages the
//!    input may corrupt (see `valid_client`).
//!
//! The credentials database is built once: salted SCRAM entries with 1-3 PBKDF2
//! iterations (so an exchange costs microseconds) and, for PLAIN only, a plain entry.
#![no_main]

use std::sync::OnceLock;

use ferrocache::auth::{
    format_salted, AuthDb, AuthFile, AuthSession, ScramHash, Step, AUTHENTICATED,
};
use ferrocache::protocol::text::auth::{
    parse_auth, AuthParse, BAD_TERMINATION, BAD_TOKEN_FORMAT, UNAUTHENTICATED,
};
use ferrocache_fuzz::{assert_same, drive, find_nl, split_messages, within, Input, Outcome};
use libfuzzer_sys::fuzz_target;
use sasl::client::mechanisms::Scram as ScramClient;
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::ChannelBinding;
use sasl::secret::{Pbkdf2Sha1, Pbkdf2Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => ascii_auth(rest),
        1 => auth_file(rest),
        2 => credentials_file(rest),
        3 => raw_session(rest),
        _ => valid_client(rest),
    }
});

// ---------------------------------------------------------------- credentials

/// (user, password, hashes with a salted entry, plain entry).
const USERS: [(&str, &str, &[ScramHash], bool); 4] = [
    (
        "bob",
        "builder",
        &[ScramHash::Sha256, ScramHash::Sha1],
        false,
    ),
    ("carol", "s3cret", &[ScramHash::Sha1], false),
    ("dave", "pa:ss w0rd", &[ScramHash::Sha256], false),
    ("alice", "wonderland", &[], true),
];

struct Dbs {
    /// Salted entries only: SCRAM from a plain password costs 4096 PBKDF2
    /// iterations, which would slow the target down a thousandfold.
    salted: AuthDb,
    /// The same plus alice's plain password; used for PLAIN only.
    mixed: AuthDb,
}

fn dbs() -> &'static Dbs {
    static DBS: OnceLock<Dbs> = OnceLock::new();
    DBS.get_or_init(|| {
        let mut salted = String::from("# fuzz credentials\n");
        for (i, (user, pw, hashes, _)) in USERS.iter().enumerate() {
            for (j, &hash) in hashes.iter().enumerate() {
                let iterations = (i + j) as u32 % 3 + 1;
                let salt = format!("salt-{user}-{j}");
                let key = match hash {
                    ScramHash::Sha256 => {
                        Pbkdf2Sha256::derive(pw, salt.as_bytes(), iterations).map(|s| s.digest)
                    }
                    ScramHash::Sha1 => {
                        Pbkdf2Sha1::derive(pw, salt.as_bytes(), iterations).map(|s| s.digest)
                    }
                }
                .expect("derive");
                let field = format_salted(hash, iterations, salt.as_bytes(), &key);
                salted.push_str(&format!("{user}:{field}\n"));
            }
        }
        let mut mixed = salted.clone();
        for (user, pw, _, plain) in USERS {
            if plain {
                mixed.push_str(&format!("{user}:{pw}\r\n"));
            }
        }
        Dbs {
            salted: AuthDb::from_str(&salted, "salted").expect("salted db"),
            mixed: AuthDb::from_str(&mixed, "mixed").expect("mixed db"),
        }
    })
}

fn password_of(user: &str) -> Option<&'static str> {
    USERS.iter().find(|u| u.0 == user).map(|u| u.1)
}

// ---------------------------------------------------------------- mode 0

fn ascii_auth(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let whole = drive(input.stream, &[], &mut ascii_step);
    if !input.chunks.is_empty() {
        let split = drive(input.stream, &input.chunks, &mut ascii_step);
        assert_same(&whole, &split, "parse_auth");
    }
}

/// memcached's 16 KiB read buffer and 2048-byte line rule (module doc of text::auth).
const BLOCK_MAX: usize = 16 * 1024;
const LINE_MAX: usize = 2048;

fn ascii_step(buf: &[u8]) -> Outcome {
    let r = parse_auth(buf);
    let nl = find_nl(buf);
    let what = format!("{r:?}");
    match r {
        AuthParse::Incomplete => {
            match nl {
                _ if buf.len() < 2 => {}
                None => assert!(
                    buf.len() <= LINE_MAX,
                    "{what}: {} bytes, no newline",
                    buf.len()
                ),
                Some(nl) => assert!(
                    buf.len() - (nl + 1) < BLOCK_MAX,
                    "{what}: waits with {} block bytes buffered",
                    buf.len() - (nl + 1)
                ),
            }
            Outcome::Incomplete { need: None }
        }
        AuthParse::Close => {
            let timing = match nl {
                None => buf.len() > LINE_MAX,
                Some(nl) => buf.len() - (nl + 1) >= BLOCK_MAX,
            };
            assert!(timing, "{what}: close with {} bytes buffered", buf.len());
            assert!(buf.len() >= 2, "{what}");
            Outcome::Close { timing: true }
        }
        AuthParse::Refuse { reply, consumed } => {
            let nl = nl.unwrap_or_else(|| panic!("{what}: no newline"));
            assert!(consumed > nl && consumed <= buf.len(), "{what}");
            assert!(
                [UNAUTHENTICATED, BAD_TERMINATION, BAD_TOKEN_FORMAT].contains(&reply),
                "{what}: unknown reply"
            );
            if reply == UNAUTHENTICATED {
                assert_eq!(
                    consumed,
                    nl + 1,
                    "{what}: a refused line takes the line only"
                );
            } else {
                assert!(consumed >= nl + 3, "{what}: no data block");
            }
            if reply == BAD_TOKEN_FORMAT {
                assert!(buf[..consumed].ends_with(b"\r\n"), "{what}");
            }
            auth_no_lookahead(buf, consumed, &r, &what);
            Outcome::Frame {
                consumed,
                swallow: 0,
                close: false,
                repr: format!("refuse {reply}"),
                timing: false,
            }
        }
        AuthParse::Credentials {
            user,
            password,
            consumed,
        } => {
            let nl = nl.unwrap_or_else(|| panic!("{what}: no newline"));
            assert!(consumed >= nl + 3 && consumed <= buf.len(), "{what}");
            let frame = &buf[..consumed];
            assert!(
                frame.ends_with(b"\r\n"),
                "{what}: block not ended by \\r\\n"
            );
            let block = &frame[nl + 1..consumed - 2];
            for w in [user, password] {
                assert!(!w.is_empty(), "{what}: empty word");
                assert!(within(w, block), "{what}: word outside the data block");
                assert!(
                    !w.iter().any(|&b| b == b' ' || b == 0),
                    "{what}: separator in a word"
                );
            }
            assert!(
                (user.as_ptr() as usize) < (password.as_ptr() as usize),
                "{what}: user after password"
            );
            auth_no_lookahead(buf, consumed, &r, &what);
            Outcome::Frame {
                consumed,
                swallow: 0,
                close: false,
                repr: what,
                timing: false,
            }
        }
    }
}

fn auth_no_lookahead(buf: &[u8], consumed: usize, full: &AuthParse<'_>, what: &str) {
    if consumed == buf.len() {
        return;
    }
    let again = parse_auth(&buf[..consumed]);
    if consumed < 2 {
        // memcached waits for 2 bytes before it looks ("\n" alone waits).
        assert_eq!(again, AuthParse::Incomplete, "{what}");
    } else {
        assert_eq!(
            &again, full,
            "{what}: different with only the frame's bytes buffered"
        );
    }
}

// ---------------------------------------------------------------- mode 1

/// The `-Y` file rules of `auth/authfile.rs`'s module documentation.
fn auth_file(data: &[u8]) {
    let parsed = AuthFile::parse(data);
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut entries = Vec::new();
    let mut malformed = false;
    for l in &lines {
        let l = l.split(|&b| b == 0).next().unwrap_or(&[]);
        match l.iter().position(|&b| b == b':') {
            None => malformed = true,
            Some(c) => {
                let pass = &l[c + 1..];
                let pass = pass.split(|&b| b == b'\r').next().unwrap_or(&[]);
                entries.push((&l[..c], pass));
            }
        }
    }
    match parsed {
        None => assert!(malformed, "a well-formed file refused: {data:?}"),
        Some(f) => {
            assert!(!malformed, "a malformed file accepted: {data:?}");
            assert_eq!(f.len(), entries.len(), "entry count of {data:?}");
            assert_eq!(f.is_empty(), entries.is_empty());
            for (u, p) in entries {
                assert!(
                    f.check(u, p),
                    "entry {u:?}:{p:?} does not check in {data:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- mode 2

/// The credentials file rules of `auth/mod.rs`'s module documentation.
fn credentials_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AuthDb::from_str(text, "fuzz") {
        Err(e) => assert!(e.starts_with("fuzz"), "error without the file name: {e}"),
        Ok(db) => {
            assert!(!db.is_empty(), "an empty database loaded");
            assert!(
                [
                    "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN",
                    "SCRAM-SHA-256 PLAIN",
                    "SCRAM-SHA-1 PLAIN"
                ]
                .contains(&db.mechanisms()),
                "mechanisms {:?}",
                db.mechanisms()
            );
            let mut users = std::collections::HashSet::new();
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                let (user, rest) = line.split_once(':').expect("a loaded line has a ':'");
                assert!(!user.is_empty(), "empty user loaded");
                users.insert(user);
                let secret = rest.split(':').next().unwrap_or("");
                assert!(!secret.is_empty(), "empty secret loaded");
                // Plain entries only: a salted one costs its iterations (up to 10^7).
                if !secret.starts_with("$scram-") {
                    assert!(
                        db.check_password(user, secret),
                        "{user}:{secret} does not check"
                    );
                    let wrong = format!("{secret}\u{1}");
                    assert!(
                        !db.check_password(user, &wrong),
                        "{user}: a wrong password checks"
                    );
                }
            }
            assert_eq!(db.len(), users.len(), "user count");
            assert!(!db.check_password("", ""));
        }
    }
}

// ---------------------------------------------------------------- sessions

/// Checks what every step result implies about the session, and returns it.
fn checked(s: &AuthSession, step: Step, had_success: bool) -> Step {
    match &step {
        Step::Continue(_) => {
            assert!(!s.is_done(), "Continue but done");
            if !had_success {
                assert_eq!(s.user(), None, "a user before success");
            }
        }
        Step::Success(body) => {
            assert_eq!(body, AUTHENTICATED, "success body");
            assert!(s.is_done(), "Success but not done");
            let u = s.user().expect("Success without a user");
            assert!(password_of(u).is_some(), "authenticated as unknown {u:?}");
        }
        Step::Failure => {
            assert!(s.is_done(), "Failure but not done");
            if !had_success {
                assert_eq!(s.user(), None, "a user after failure");
            }
        }
        // Only an exchange started with a notify on a database that defers its
        // derivations (a server's) waits; these never do.
        Step::Pending => panic!("Pending without a derivation queue"),
    }
    step
}

/// One `step` of the session, checked.
fn step_checked(s: &mut AuthSession, msg: &[u8], had_success: bool) -> Step {
    let step = s.step(msg);
    checked(s, step, had_success)
}

/// A PLAIN message that may succeed: `[authzid] NUL authcid NUL password`, authzid
/// empty or the user, the user's password exactly.
fn plain_ok(msg: &[u8], user: &str) -> bool {
    let parts: Vec<&[u8]> = msg.split(|&b| b == 0).collect();
    parts.len() == 3
        && (parts[0].is_empty() || parts[0] == parts[1])
        && parts[1] == user.as_bytes()
        && password_of(user).is_some_and(|p| parts[2] == p.as_bytes())
}

const MECHS: [&[u8]; 3] = [b"PLAIN", b"SCRAM-SHA-256", b"SCRAM-SHA-1"];

fn raw_session(data: &[u8]) {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let mut msgs = split_messages(rest).into_iter();
    let mut mech = match cfg & 3 {
        3 => msgs.next().unwrap_or_default().to_vec(),
        i => MECHS[usize::from(i)].to_vec(),
    };
    if cfg & 4 != 0 {
        mech.make_ascii_lowercase();
    }
    let plain = mech.eq_ignore_ascii_case(b"PLAIN");
    let db = if plain { &dbs().mixed } else { &dbs().salted };
    let initial = msgs.next().unwrap_or_default();
    let (mut s, first) = AuthSession::start(db, &mech, initial);
    if !MECHS.iter().any(|m| m.eq_ignore_ascii_case(&mech)) {
        assert_eq!(first, Step::Failure, "unknown mechanism {mech:?} accepted");
    }
    if initial.is_empty() && first != Step::Failure {
        assert_eq!(first, Step::Continue(Vec::new()), "empty initial response");
    }
    let mut last_msg = initial;
    let mut success = false;
    let mut step = checked(&s, first, false);
    loop {
        if let Step::Success(_) = step {
            assert!(!success, "two successes");
            success = true;
            let u = s.user().unwrap_or_default();
            // Without the server's nonce nothing but PLAIN can succeed.
            assert!(plain, "{mech:?} succeeded with made-up messages");
            assert!(
                plain_ok(last_msg, u),
                "PLAIN {last_msg:?} authenticated {u:?}"
            );
        }
        let Some(m) = msgs.next() else { break };
        let done = s.is_done();
        step = step_checked(&mut s, m, success);
        if done {
            assert_eq!(step, Step::Failure, "a step after the end did not fail");
        }
        last_msg = m;
    }
}

// ---------------------------------------------------------------- mode 4

/// A real client (the `sasl` crate's SCRAM, or a PLAIN message) against the server
/// session; the input picks mechanism, user, password and corruptions:
///
/// ```text
/// byte 0  bits 0-1 mechanism (0/3 SCRAM-SHA-256, 1 SCRAM-SHA-1, 2 PLAIN)
///         bit 2 channel binding "y" (else "n"), bit 3 empty SASL_AUTH value
///         (client-first sent as a step), bits 4-5 the last step: empty ack,
///         "x", none, an ack then one more step
/// byte 1  user (index into USERS, 4+ = unknown "mallory")
/// byte 2  bit 0: use the wrong password (the first segment below)
/// rest    segments split by ff ff: wrong password, SCRAM first-message extensions,
///         corruptions of the first message, corruptions of the final message
///         (pairs: position, byte; byte 0xfe deletes)
/// ```
fn valid_client(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let (cfg, who, pwsel) = (data[0], data[1], data[2]);
    let segs = split_messages(&data[3..]);
    let seg = |i: usize| segs.get(i).copied().unwrap_or_default();
    let user = USERS.get(usize::from(who)).map_or("mallory", |u| u.0);
    let right = password_of(user).unwrap_or("x");
    let wrong_pw = String::from_utf8_lossy(seg(0)).into_owned();
    let pw = if pwsel & 1 != 0 {
        wrong_pw.as_str()
    } else {
        right
    };
    let pw_right = password_of(user) == Some(pw);
    let mut first_fix = seg(2).to_vec();
    let mut final_fix = seg(3).to_vec();
    first_fix.truncate(16);
    final_fix.truncate(16);
    let corrupted = !first_fix.is_empty() || !final_fix.is_empty();
    let ack = (cfg >> 4) & 3;
    let hash = match cfg & 3 {
        2 => return plain_client(user, pw, &first_fix, cfg & 8 != 0),
        1 => ScramHash::Sha1,
        _ => ScramHash::Sha256,
    };
    let cb = if cfg & 4 != 0 {
        ChannelBinding::Unsupported
    } else {
        ChannelBinding::None
    };
    let ext = String::from_utf8_lossy(seg(1)).into_owned();
    let mut client: Box<dyn sasl::client::Mechanism> = match hash {
        ScramHash::Sha256 => Box::new(
            ScramClient::<Sha256>::new(user, pw, cb)
                .expect("client")
                .with_first_extensions(ext.clone()),
        ),
        ScramHash::Sha1 => Box::new(
            ScramClient::<Sha1>::new(user, pw, cb)
                .expect("client")
                .with_first_extensions(ext.clone()),
        ),
    };
    let db = &dbs().salted;
    let mech = MECHS[if hash == ScramHash::Sha256 { 1 } else { 2 }];
    let mut first = client.initial();
    let clean_first = first.clone();
    corrupt(&mut first, &first_fix);
    let (mut s, step) = if cfg & 8 != 0 {
        let (mut s, step) = AuthSession::start(db, mech, b"");
        assert_eq!(step, Step::Continue(Vec::new()), "empty SASL_AUTH value");
        let step = s.step(&first);
        (s, step)
    } else {
        AuthSession::start(db, mech, &first)
    };
    let known_hash = USERS.iter().any(|u| u.0 == user && u.2.contains(&hash));
    let must_succeed = !corrupted && pw_right && known_hash && ext.is_empty();
    let step = checked(&s, step, false);
    let Step::Continue(server_first) = step else {
        assert!(!must_succeed, "{user}: client-first refused: {step:?}");
        return;
    };
    // RFC 5802: the server nonce starts with the client's nonce.
    if first == clean_first && ext.is_empty() {
        let cnonce = field(&first, b"r=").unwrap_or_default();
        let snonce = field(&server_first, b"r=").unwrap_or_default();
        assert!(
            snonce.len() > cnonce.len() && snonce.starts_with(cnonce),
            "server nonce {snonce:?} does not extend {cnonce:?}"
        );
    }
    // The unknown user gets 4096 iterations, like a plain-password one: the real
    // client would spend milliseconds deriving. Stop there.
    let iterations: u32 = field(&server_first, b"i=")
        .and_then(|i| std::str::from_utf8(i).ok()?.parse().ok())
        .unwrap_or(u32::MAX);
    if iterations > 16 {
        // Only a user without a salted entry for this hash (unknown, or plain-only).
        let ident = server_identity(&first).unwrap_or_default();
        assert!(
            !USERS.iter().any(|u| u.0 == ident && u.2.contains(&hash)),
            "{ident}: {iterations} iterations"
        );
        return;
    }
    let Ok(mut fin) = client.response(&server_first) else {
        assert!(!must_succeed, "the client refused the server-first message");
        return;
    };
    let clean_fin = fin.clone();
    corrupt(&mut fin, &final_fix);
    let step = step_checked(&mut s, &fin, false);
    let Step::Continue(server_final) = step else {
        assert!(!must_succeed, "{user}: a right proof refused: {step:?}");
        return;
    };
    // RFC 5802 5.1: the server verifies the channel binding (`c=`) and that the nonce
    // (`r=`) is the one it sent: a final message accepted starts with both unchanged.
    {
        let cut = |m: &[u8]| {
            let mut attrs = m.splitn(3, |&b| b == b',');
            let c = attrs.next().unwrap_or_default().to_vec();
            let r = attrs.next().unwrap_or_default().to_vec();
            (c, r)
        };
        assert!(
            cut(&fin) == cut(&clean_fin),
            "a client-final message with another channel binding or nonce accepted: \
             {:?} (the client sent {:?})",
            String::from_utf8_lossy(&fin),
            String::from_utf8_lossy(&clean_fin)
        );
    }
    // Only a client that knew the password of the user the server took from the
    // (maybe corrupted) first message gets here, and the server proves it knew it too.
    // (PBKDF2-HMAC pads its key with zeros: "pw" and "pw\0" derive the same key.)
    let ident = server_identity(&first);
    assert!(
        ident.as_deref().and_then(password_of) == Some(pw.trim_end_matches('\0')),
        "{ident:?}: accepted a proof made with password {pw:?}"
    );
    if !corrupted {
        assert!(
            client.success(&server_final).is_ok(),
            "bad server signature"
        );
    }
    match ack {
        0 | 3 => {
            let step = step_checked(&mut s, b"", false);
            assert_eq!(step, Step::Success(AUTHENTICATED.to_vec()), "empty ack");
            assert_eq!(s.user(), ident.as_deref());
            if ack == 3 {
                assert_eq!(step_checked(&mut s, b"", true), Step::Failure);
            }
        }
        1 => {
            assert_eq!(
                step_checked(&mut s, b"x", false),
                Step::Failure,
                "non-empty ack"
            );
            assert_eq!(s.user(), None);
        }
        _ => assert!(!s.is_done() && s.user().is_none()),
    }
}

fn plain_client(user: &str, pw: &str, fix: &[u8], empty_initial: bool) {
    let mut msg = format!("\0{user}\0{pw}").into_bytes();
    corrupt(&mut msg, fix);
    let db = &dbs().mixed;
    let (mut s, step) = if empty_initial {
        let (mut s, step) = AuthSession::start(db, b"PLAIN", b"");
        assert_eq!(step, Step::Continue(Vec::new()));
        let step = s.step(&msg);
        (s, step)
    } else {
        AuthSession::start(db, b"PLAIN", &msg)
    };
    let step = checked(&s, step, false);
    let ok = match s.user() {
        Some(u) => plain_ok(&msg, u),
        None => false,
    };
    match step {
        Step::Success(_) => assert!(ok, "PLAIN {msg:?} authenticated {:?}", s.user()),
        _ => assert!(
            !msg.split(|&b| b == 0)
                .nth(1)
                .is_some_and(|u| { std::str::from_utf8(u).is_ok_and(|u| plain_ok(&msg, u)) }),
            "PLAIN {msg:?} refused"
        ),
    }
    assert_eq!(step_checked(&mut s, &msg, ok), Step::Failure);
}

/// Applies (position, byte) pairs: byte 0xfe deletes, others overwrite.
fn corrupt(msg: &mut Vec<u8>, fix: &[u8]) {
    for p in fix.chunks_exact(2) {
        if msg.is_empty() {
            return;
        }
        let at = usize::from(p[0]) % msg.len();
        if p[1] == 0xfe {
            msg.remove(at);
        } else {
            msg[at] = p[1];
        }
    }
}

/// The value of SCRAM attribute `name` (`b"r="`) in a message.
fn field<'a>(msg: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    msg.split(|&b| b == b',').find_map(|f| f.strip_prefix(name))
}

/// The user a SCRAM server takes from a client-first message: after the gs2 header
/// (two commas), the last `n=` attribute (the `sasl` crate reads the attributes into
/// a map).
fn server_identity(first: &[u8]) -> Option<String> {
    let mut commas = 0;
    let at = first.iter().position(|&b| {
        commas += usize::from(b == b',');
        commas == 2
    })?;
    let bare = std::str::from_utf8(&first[at + 1..]).ok()?;
    bare.rsplit(',')
        .filter_map(|a| a.split_once('='))
        .find(|(k, _)| *k == "n")
        .map(|(_, v)| v.to_string())
}
