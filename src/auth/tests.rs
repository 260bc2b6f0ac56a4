//! Unit tests: credentials parsing, PLAIN, SCRAM against the `sasl` crate's client.

use super::db::*;
use super::scram::*;
use super::session::*;
use super::*;
use sasl::client::mechanisms::{Plain as PlainClient, Scram as ScramClient};
use sasl::client::Mechanism as ClientMech;
use sasl::common::scram::ScramProvider;
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::ChannelBinding;

fn db(text: &str) -> AuthDb {
    match AuthDb::from_str(text, "pwdb") {
        Ok(d) => d,
        Err(e) => panic!("load failed: {e}"),
    }
}

fn err(text: &str) -> String {
    match AuthDb::from_str(text, "pwdb") {
        Ok(_) => panic!("loaded but should not: {text:?}"),
        Err(e) => e,
    }
}

#[test]
fn parses_memcached_format() {
    let d = db("alice:wonderland\r\n\n   \n# comment:line\nbob:builder:extra:tokens");
    assert_eq!(d.len(), 2);
    assert!(d.check_password("alice", "wonderland"));
    assert!(d.check_password("bob", "builder"));
    assert!(!d.check_password("bob", "builder:extra"));
    assert!(!d.check_password("alice", "wonderland\r"));
    assert_eq!(d.mechanisms(), "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN");
}

#[test]
fn bad_lines_name_file_and_line() {
    assert_eq!(err("a:b\nnocolon\n"), "pwdb:2: expected user:password");
    assert_eq!(err("\n\n:pw"), "pwdb:3: empty user name");
    assert!(err("a:\n").starts_with("pwdb:1: empty password"));
    assert!(err("a:b\na:c\n").starts_with("pwdb:2: user 'a' already"));
    assert!(err("a:$scram-md5$1$AA==$AA==").contains("pwdb:1: unknown salted entry type"));
    assert!(err("a:$scram-sha-256$0$AAAA$AAAA").contains("pwdb:1: iterations"));
    assert!(err("a:$scram-sha-256$4096$AAAA").starts_with("pwdb:1: a salted entry is"));
    assert!(err("a:$scram-sha-256$4096$!!$AAAA").contains("salt"));
    assert!(err("a:$scram-sha-256$4096$AAAA$AAAA").contains("must be 32 bytes, not 3"));
    let s = make_salted(ScramHash::Sha256, "pw", 4096).unwrap_or_default();
    assert!(err(&format!("a:pw\na:{s}")).starts_with("pwdb:2:"));
    assert_eq!(
        err(""),
        "pwdb: no credentials (expected user:password lines)"
    );
    assert_eq!(
        err("# only\n\n"),
        "pwdb: no credentials (expected user:password lines)"
    );
}

#[test]
fn load_reports_missing_file_and_non_utf8() {
    let e = AuthDb::load("/nonexistent/ferrocache-pwdb")
        .err()
        .unwrap_or_default();
    assert!(e.starts_with("/nonexistent/ferrocache-pwdb: "), "{e}");
    let path = std::env::temp_dir().join(format!("ferrocache-auth-utf8-{}", std::process::id()));
    std::fs::write(&path, b"a:b\nc:\xff\n").unwrap_or(());
    let p = path.to_string_lossy().into_owned();
    let e = AuthDb::load(&p).err().unwrap_or_default();
    assert_eq!(e, format!("{p}:2: not UTF-8"));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn mechanisms_follow_entries() {
    let s256 = make_salted(ScramHash::Sha256, "pw", 4096).unwrap_or_default();
    let s1 = make_salted(ScramHash::Sha1, "pw", 4096).unwrap_or_default();
    assert_eq!(db(&format!("a:{s256}")).mechanisms(), "SCRAM-SHA-256 PLAIN");
    assert_eq!(db(&format!("a:{s1}")).mechanisms(), "SCRAM-SHA-1 PLAIN");
    assert_eq!(
        db(&format!("a:{s1}\na:{s256}")).mechanisms(),
        "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN"
    );
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"", b""));
    assert!(ct_eq(b"secret", b"secret"));
    assert!(!ct_eq(b"secret", b"secreT"));
    assert!(!ct_eq(b"secret", b"Secret"));
    assert!(!ct_eq(b"secret", b"secrets"));
    assert!(!ct_eq(b"", b"x"));
}

fn plain(d: &AuthDb, payload: &[u8]) -> (Step, Option<String>) {
    let (s, step) = AuthSession::start(d, b"PLAIN", payload);
    (step, s.user().map(str::to_string))
}

#[test]
fn plain_mechanism() {
    let d = db("alice:wonderland\n");
    let ok = Step::Success(AUTHENTICATED.to_vec());
    assert_eq!(
        plain(&d, b"\0alice\0wonderland"),
        (ok.clone(), Some("alice".into()))
    );
    assert_eq!(plain(&d, b"alice\0alice\0wonderland").0, ok);
    assert_eq!(plain(&d, b"bob\0alice\0wonderland").0, Step::Failure);
    assert_eq!(plain(&d, b"\0alice\0wonderlan").0, Step::Failure);
    assert_eq!(plain(&d, b"\0alice\0wonderland\0").0, Step::Failure);
    assert_eq!(plain(&d, b"\0bob\0wonderland").0, Step::Failure);
    assert_eq!(plain(&d, b"\0alice").0, Step::Failure);
    assert_eq!(plain(&d, b"\0alice\0\xff").0, Step::Failure);
    // Mechanism names are case-insensitive; unknown ones fail.
    assert_eq!(
        AuthSession::start(&d, b"plain", b"\0alice\0wonderland").1,
        ok
    );
    assert_eq!(AuthSession::start(&d, b"CRAM-MD5", b"x").1, Step::Failure);
    // The sasl crate's PLAIN client.
    let mut c = PlainClient::new("alice", "wonderland");
    assert_eq!(AuthSession::start(&d, b"PLAIN", &c.initial()).1, ok);
    // Empty initial response: an empty challenge, then the response as a step.
    let (mut s, step) = AuthSession::start(&d, b"PLAIN", b"");
    assert_eq!(step, Step::Continue(Vec::new()));
    assert_eq!(s.step(b"\0alice\0wonderland"), ok);
    assert_eq!(s.user(), Some("alice"));
    assert!(s.is_done());
    assert_eq!(s.step(b"\0alice\0wonderland"), Step::Failure);
}

#[test]
fn plain_against_salted_entries() {
    for hash in [ScramHash::Sha256, ScramHash::Sha1] {
        let s = make_salted(hash, "s3cret", 4096).unwrap_or_default();
        let d = db(&format!("carol:{s}\n"));
        assert!(d.check_password("carol", "s3cret"));
        assert!(!d.check_password("carol", "s3cre"));
        assert_eq!(
            plain(&d, b"\0carol\0s3cret").0,
            Step::Success(AUTHENTICATED.to_vec())
        );
        assert_eq!(plain(&d, b"\0carol\0wrong").0, Step::Failure);
    }
}

/// Runs a full SCRAM exchange with the sasl crate's client; returns the user on success.
fn scram<S: ScramProvider>(
    d: &AuthDb,
    mech: &[u8],
    user: &str,
    pw: &str,
    cb: ChannelBinding,
) -> Option<String> {
    let mut c = ScramClient::<S>::new(user, pw, cb).ok()?;
    let (mut s, step) = AuthSession::start(d, mech, &c.initial());
    let Step::Continue(challenge) = step else {
        return None;
    };
    let client_final = c.response(&challenge).ok()?;
    let Step::Continue(server_final) = s.step(&client_final) else {
        return None;
    };
    // The client verifies the server's signature: the server knew the password too.
    c.success(&server_final).ok()?;
    assert_eq!(s.step(b""), Step::Success(AUTHENTICATED.to_vec()));
    s.user().map(str::to_string)
}

#[test]
fn scram_from_plain_entry() {
    let d = db("alice:wonderland\n");
    for cb in [ChannelBinding::None, ChannelBinding::Unsupported] {
        assert_eq!(
            scram::<Sha256>(&d, b"SCRAM-SHA-256", "alice", "wonderland", cb.clone()),
            Some("alice".to_string())
        );
        assert_eq!(
            scram::<Sha1>(&d, b"SCRAM-SHA-1", "alice", "wonderland", cb.clone()),
            Some("alice".to_string())
        );
        assert_eq!(
            scram::<Sha256>(&d, b"SCRAM-SHA-256", "alice", "wrong", cb.clone()),
            None
        );
        assert_eq!(
            scram::<Sha1>(&d, b"SCRAM-SHA-1", "alice", "wrong", cb.clone()),
            None
        );
        assert_eq!(
            scram::<Sha256>(&d, b"SCRAM-SHA-256", "bob", "wonderland", cb),
            None
        );
    }
}

#[test]
fn scram_from_salted_entry_written_by_passwd() {
    let s256 = make_salted(ScramHash::Sha256, "pa:ss word", 4096).unwrap_or_default();
    let s1 = make_salted(ScramHash::Sha1, "pa:ss word", 4096).unwrap_or_default();
    let file = passwd::replace_user(
        "# keep me\nalice:wonderland\ndave:old\n",
        "dave",
        &[format!("dave:{s256}"), format!("dave:{s1}")],
    );
    assert!(file.starts_with("# keep me\nalice:wonderland\ndave:$scram-sha-256$4096$"));
    let d = db(&file);
    let cb = ChannelBinding::None;
    assert_eq!(
        scram::<Sha256>(&d, b"SCRAM-SHA-256", "dave", "pa:ss word", cb.clone()),
        Some("dave".to_string())
    );
    assert_eq!(
        scram::<Sha1>(&d, b"SCRAM-SHA-1", "dave", "pa:ss word", cb.clone()),
        Some("dave".to_string())
    );
    assert_eq!(
        scram::<Sha256>(&d, b"SCRAM-SHA-256", "dave", "old", cb.clone()),
        None
    );
    assert_eq!(
        scram::<Sha1>(&d, b"SCRAM-SHA-1", "dave", "pa:ss", cb.clone()),
        None
    );
    // Only a SHA-1 entry: SCRAM-SHA-256 is not listed and fails for that user.
    let d1 = db(&format!("erin:{s1}\n"));
    assert_eq!(d1.mechanisms(), "SCRAM-SHA-1 PLAIN");
    assert_eq!(
        scram::<Sha256>(&d1, b"SCRAM-SHA-256", "erin", "pa:ss word", cb),
        None
    );
}

#[test]
fn scram_rejects_malformed_and_out_of_order_messages() {
    let d = db("alice:wonderland\n");
    let fail = |mech: &[u8], msg: &[u8]| AuthSession::start(&d, mech, msg).1;
    assert_eq!(fail(b"SCRAM-SHA-256", b"garbage"), Step::Failure);
    assert_eq!(
        fail(b"SCRAM-SHA-256", b"p=tls-unique,,n=alice,r=abc"),
        Step::Failure
    );
    assert_eq!(
        fail(b"SCRAM-SHA-256", b"n,a=bob,n=alice,r=abc"),
        Step::Failure
    );
    assert_eq!(fail(b"SCRAM-SHA-256", b"n,,n=alice"), Step::Failure);
    assert!(matches!(
        fail(b"SCRAM-SHA-256", b"n,a=alice,n=alice,r=abc"),
        Step::Continue(_)
    ));
    // An unknown user is not told apart at the first message: it fails at the proof.
    let mut c = match ScramClient::<Sha256>::new("mallory", "x", ChannelBinding::None) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    let (mut s, step) = AuthSession::start(&d, b"SCRAM-SHA-256", &c.initial());
    let Step::Continue(ch) = step else {
        panic!("unknown user refused at the first message")
    };
    let fin = c.response(&ch).unwrap_or_default();
    assert_eq!(s.step(&fin), Step::Failure);
    // Empty initial: the client-first message comes as a step.
    let (mut s, step) = AuthSession::start(&d, b"SCRAM-SHA-1", b"");
    assert_eq!(step, Step::Continue(Vec::new()));
    assert!(matches!(s.step(b"n,,n=alice,r=abc"), Step::Continue(_)));
    // A bad proof ends the exchange; later steps fail too.
    assert_eq!(s.step(b"c=biws,r=abc,p=AAAA"), Step::Failure);
    assert!(s.is_done());
    assert_eq!(s.step(b""), Step::Failure);
    // A non-empty acknowledgement after the server-final message fails.
    let mut c = match ScramClient::<Sha256>::new("alice", "wonderland", ChannelBinding::None) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    let (mut s, step) = AuthSession::start(&d, b"SCRAM-SHA-256", &c.initial());
    let Step::Continue(ch) = step else {
        panic!("no challenge")
    };
    let fin = c.response(&ch).unwrap_or_default();
    assert!(matches!(s.step(&fin), Step::Continue(_)));
    assert_eq!(s.step(b"x"), Step::Failure);
    assert_eq!(s.user(), None);
}

/// RFC 5802 §5.1: a client-final message that does not repeat the channel binding
/// header or the combined nonce is refused, even with a valid proof (the sasl crate's
/// server does not check them; found by the fuzzer, tests/data/fuzz/auth).
#[test]
fn scram_final_must_repeat_channel_binding_and_nonce() {
    let d = db("alice:wonderland\n");
    let run = |tamper: &dyn Fn(Vec<u8>) -> Vec<u8>| -> Step {
        let Ok(mut c) = ScramClient::<Sha256>::new("alice", "wonderland", ChannelBinding::None)
        else {
            panic!("client");
        };
        let (mut s, step) = AuthSession::start(&d, b"SCRAM-SHA-256", &c.initial());
        let Step::Continue(challenge) = step else {
            panic!("no server-first");
        };
        let Ok(client_final) = c.response(&challenge) else {
            panic!("client-final");
        };
        s.step(&tamper(client_final))
    };
    assert!(matches!(run(&|m| m), Step::Continue(_)), "untouched");
    // One byte of the nonce changed.
    let nonce = |mut m: Vec<u8>| {
        let at = m.windows(3).position(|w| w == b",r=").map_or(0, |i| i + 5);
        m[at] = b'~';
        m
    };
    assert_eq!(run(&nonce), Step::Failure);
    // Another channel binding header.
    let cbind = |m: Vec<u8>| {
        let rest = m.iter().position(|&b| b == b',').map_or(0, |i| i);
        [b"c=garbage".to_vec(), m[rest..].to_vec()].concat()
    };
    assert_eq!(run(&cbind), Step::Failure);
    // The proof alone.
    let proof_only = |m: Vec<u8>| {
        let at = m.windows(3).position(|w| w == b",p=").map_or(0, |i| i + 1);
        m[at..].to_vec()
    };
    assert_eq!(run(&proof_only), Step::Failure);
}
