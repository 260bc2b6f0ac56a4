//! `ferrocache::client` against real servers started by the test: every operation on
//! both protocols, SASL, cache-aside and write-through helpers.
use crate::common::*;

use std::cell::Cell;
use std::time::Duration;

use ferrocache::client::cache::NEGATIVE_FLAGS;
use ferrocache::client::{Client, ClientConfig, Error, Protocol, SaslAuth, StoreOutcome};

fn client(servers: &[&Server], protocol: Protocol) -> Client {
    let list: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let mut cfg = ClientConfig::new(&list.join(",")).expect("server list");
    cfg.conn.protocol = protocol;
    cfg.conn.io_timeout = Duration::from_secs(2);
    Client::new(cfg).expect("client")
}

fn all_operations(c: &Client) {
    c.flush_all(0).expect("flush");
    assert_eq!(c.get(b"k1").expect("get"), None);
    c.set(b"k1", b"v1", 42, 0).expect("set");
    let it = c.get(b"k1").expect("get").expect("hit");
    assert_eq!((it.value.as_slice(), it.flags), (&b"v1"[..], 42));
    assert!(it.cas != 0);
    assert!(!c.add(b"k1", b"x", 0, 0).expect("add"));
    assert!(c.add(b"k2", b"two", 0, 0).expect("add"));
    assert!(c.replace(b"k2", b"TWO", 0, 0).expect("replace"));
    assert!(!c.replace(b"nope", b"x", 0, 0).expect("replace"));
    assert!(c.append(b"k2", b"-end").expect("append"));
    assert!(c.prepend(b"k2", b"start-").expect("prepend"));
    assert!(!c.append(b"nope", b"x").expect("append missing"));
    assert_eq!(
        c.get(b"k2").expect("get").expect("hit").value,
        b"start-TWO-end"
    );
    // CAS: the unique read back wins once, then is stale.
    let cas = c.get(b"k1").expect("get").expect("hit").cas;
    assert_eq!(
        c.cas(b"k1", b"v2", 0, 0, cas).expect("cas"),
        StoreOutcome::Stored
    );
    assert_eq!(
        c.cas(b"k1", b"v3", 0, 0, cas).expect("cas"),
        StoreOutcome::Exists
    );
    assert_eq!(
        c.cas(b"nope", b"v3", 0, 0, 1).expect("cas"),
        StoreOutcome::NotFound
    );
    // Counters.
    c.set(b"n", b"10", 0, 0).expect("set");
    assert_eq!(c.incr(b"n", 5).expect("incr"), Some(15));
    assert_eq!(c.decr(b"n", 20).expect("decr"), Some(0));
    assert_eq!(c.incr(b"missing", 1).expect("incr"), None);
    assert!(c.touch(b"n", 100).expect("touch"));
    assert!(!c.touch(b"missing", 100).expect("touch"));
    assert!(c.delete(b"n").expect("delete"));
    assert!(!c.delete(b"n").expect("delete"));
    // Many keys across nodes, with a large value.
    let big = vec![b'b'; 300_000];
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("many:{i}").into_bytes()).collect();
    for (i, k) in keys.iter().enumerate() {
        let v = if i == 7 { big.clone() } else { k.clone() };
        c.set(k, &v, i as u32, 0).expect("set many");
    }
    let mut ask: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    ask.push(b"many:absent");
    let got = c.get_many(&ask).expect("get_many");
    assert_eq!(got.len(), 200);
    for (i, k) in keys.iter().enumerate() {
        let it = &got[k];
        assert_eq!(it.flags, i as u32);
        assert_eq!(it.value, if i == 7 { big.clone() } else { k.clone() });
    }
    // Keys the client refuses before sending.
    assert!(matches!(c.get(b""), Err(Error::BadKey)));
    assert!(matches!(c.get(&[b'k'; 251]), Err(Error::BadKey)));
    // Stats and versions from every node.
    for (name, r) in c.stats("") {
        let stats = r.unwrap_or_else(|e| panic!("stats {name}: {e}"));
        assert!(stats.iter().any(|(k, _)| k == "curr_items"), "{name}");
    }
    for (name, r) in c.versions() {
        assert!(r.is_ok(), "version {name}");
    }
}

#[test]
fn every_operation_text_and_binary() {
    let servers = [
        Server::ferrocache(&[]),
        Server::ferrocache(&[]),
        Server::ferrocache(&[]),
    ];
    let refs: Vec<&Server> = servers.iter().collect();
    for protocol in [Protocol::Text, Protocol::Binary] {
        let c = client(&refs, protocol);
        all_operations(&c);
        // Keys with spaces are fine in binary only.
        let spaced = c.set(b"a key", b"v", 0, 0);
        match protocol {
            Protocol::Text | Protocol::Meta => assert!(matches!(spaced, Err(Error::BadKey))),
            Protocol::Binary => assert!(spaced.is_ok()),
        }
    }
}

#[test]
fn every_operation_against_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    for protocol in [Protocol::Text, Protocol::Binary] {
        all_operations(&client(&[&mc], protocol));
    }
}

#[test]
fn sasl_binary_client() {
    let dir = std::env::temp_dir().join(format!("ferrocache-client-sasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pwdb = dir.join("pwdb");
    std::fs::write(&pwdb, "app:s3cret\n").expect("pwdb");
    let srv = Server::ferrocache(&["-S", "--sasl-pwdb", pwdb.to_str().expect("path")]);
    for mech in [None, Some("PLAIN"), Some("SCRAM-SHA-1")] {
        let mut cfg = ClientConfig::new(&format!("127.0.0.1:{}", srv.port)).expect("cfg");
        cfg.conn.protocol = Protocol::Binary;
        cfg.conn.auth = Some(SaslAuth {
            username: "app".into(),
            password: "s3cret".into(),
            mechanism: mech.map(str::to_string),
        });
        let c = Client::new(cfg.clone()).expect("client");
        c.set(b"secret-data", b"x", 0, 0)
            .expect("authenticated set");
        assert_eq!(
            c.get(b"secret-data").expect("get").expect("hit").value,
            b"x"
        );
        cfg.conn.auth = Some(SaslAuth {
            username: "app".into(),
            password: "wrong".into(),
            mechanism: mech.map(str::to_string),
        });
        let bad = Client::new(cfg).expect("client");
        assert!(
            matches!(bad.get(b"secret-data"), Err(Error::Auth(_))),
            "{mech:?}"
        );
        // A refused login is not a node failure: the node stays in the ring.
        assert!(bad.node_status()[0].live);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_aside_and_write_through() {
    let servers = [Server::ferrocache(&[]), Server::ferrocache(&[])];
    let refs: Vec<&Server> = servers.iter().collect();
    let c = client(&refs, Protocol::Text);
    let calls = Cell::new(0);
    let load = |v: Option<&str>| {
        calls.set(calls.get() + 1);
        Ok::<_, String>(v.map(|s| s.as_bytes().to_vec()))
    };
    // Loaded once, then served from the cache.
    for _ in 0..3 {
        let v = c
            .get_or_set_with(b"user:1", 60, || load(Some("Ada")))
            .expect("load");
        assert_eq!(v.as_deref(), Some(&b"Ada"[..]));
    }
    assert_eq!(calls.get(), 1);
    // Without negative caching a missing row is looked up every time...
    calls.set(0);
    for _ in 0..3 {
        assert_eq!(
            c.get_or_set_with(b"user:2", 60, || load(None))
                .expect("load"),
            None
        );
    }
    assert_eq!(calls.get(), 3);
    // ... with it, once per negative TTL; the marker is an empty value with NEGATIVE_FLAGS.
    calls.set(0);
    let neg = c.cache_aside(60).negative_ttl(30);
    for _ in 0..3 {
        assert_eq!(
            neg.get_or_load(b"user:3", || load(None)).expect("load"),
            None
        );
    }
    assert_eq!(calls.get(), 1);
    let marker = c.get(b"user:3").expect("get").expect("marker");
    assert_eq!((marker.value.len(), marker.flags), (0, NEGATIVE_FLAGS));
    // Loader errors are returned and nothing is cached.
    let err = c.get_or_set_with(b"user:4", 60, || {
        Err::<Option<Vec<u8>>, _>("db down".to_string())
    });
    assert_eq!(err, Err("db down".to_string()));
    assert_eq!(c.get(b"user:4").expect("get"), None);
    // Write-through: the record first, then the cache; a failed write leaves the cache alone.
    let mut db = Vec::new();
    neg.write_through(b"user:3", b"Grace", |v| {
        db.push(v.to_vec());
        Ok::<_, String>(())
    })
    .expect("write");
    assert_eq!(db, vec![b"Grace".to_vec()]);
    assert_eq!(
        neg.get_or_load(b"user:3", || load(None)).expect("read"),
        Some(b"Grace".to_vec())
    );
    let r = neg.write_through(b"user:3", b"Nope", |_| {
        Err::<(), _>("constraint".to_string())
    });
    assert!(r.is_err());
    assert_eq!(c.get(b"user:3").expect("get").expect("hit").value, b"Grace");
    neg.delete_through(b"user:3", || Ok::<_, String>(()))
        .expect("delete");
    assert_eq!(c.get(b"user:3").expect("get"), None);
}

#[test]
fn cache_down_still_serves_the_loader() {
    // A node that is not listening: every cache operation fails, the loader's value
    // is still returned.
    let port = free_port();
    let mut cfg = ClientConfig::new(&format!("127.0.0.1:{port}")).expect("cfg");
    cfg.conn.connect_timeout = Duration::from_millis(200);
    let c = Client::new(cfg).expect("client");
    let v = c
        .get_or_set_with(b"k", 10, || Ok::<_, String>(Some(b"fresh".to_vec())))
        .expect("loader value");
    assert_eq!(v.as_deref(), Some(&b"fresh"[..]));
    assert!(c.node_status()[0].errors >= 1);
}

/// Set-on-write between two writers: writer 1 commits v1, writer 2 commits v2 and
/// caches it, then writer 1's cache write arrives. A plain set would leave v1 cached
/// (older than the database); `write_through` finds the item changed since it looked
/// and deletes it instead, whether the key was cached before or not.
fn write_through_conflict(protocol: Protocol) {
    let srv = Server::ferrocache(&[]);
    let c = client(&[&srv], protocol);
    let cache = c.cache_aside(60);
    for cached_before in [true, false] {
        c.flush_all(0).expect("flush");
        if cached_before {
            c.set(b"row", b"v0", 0, 60).expect("set");
        }
        let db = std::cell::RefCell::new(Vec::new());
        let stored = cache
            .write_through_with(b"row", || {
                db.borrow_mut().push("v1"); // writer 1 commits
                cache // writer 2, start to end
                    .write_through(b"row", b"v2", |_| {
                        db.borrow_mut().push("v2");
                        Ok::<_, String>(())
                    })
                    .expect("writer 2");
                assert_eq!(c.get(b"row").expect("get").expect("hit").value, b"v2");
                Ok::<_, String>(b"v1".to_vec())
            })
            .expect("writer 1");
        assert_eq!(stored, b"v1");
        assert_eq!(*db.borrow(), ["v1", "v2"]);
        assert_eq!(
            c.get(b"row").expect("get"),
            None,
            "{protocol:?}, cached before: {cached_before}: v1 must not stay cached"
        );
        // Without a concurrent writer the new value is cached.
        cache
            .write_through(b"row", b"v3", |_| Ok::<_, String>(()))
            .expect("write");
        assert_eq!(c.get(b"row").expect("get").expect("hit").value, b"v3");
    }
    assert_eq!(c.node_status()[0].errors, 0);
}

#[test]
fn write_through_conflict_text() {
    write_through_conflict(Protocol::Text);
}

#[test]
fn write_through_conflict_binary() {
    write_through_conflict(Protocol::Binary);
}

#[test]
fn write_through_conflict_meta() {
    write_through_conflict(Protocol::Meta);
}
