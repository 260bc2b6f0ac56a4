//! Expiry over real sockets, with the server's controllable clock (`-o debugtime`)
//! instead of sleeping: memcached's TTL rules (relative, 30-day boundary, absolute,
//! negative), and expired items reclaimed in the background without being read.
use crate::common;
use std::time::{Duration, Instant};

use crate::common::*;

fn server() -> Option<Server> {
    if targeting_reference() {
        common::skip("debugtime is ferrocache-only");
        return None;
    }
    Some(Server::ferrocache(&["-o", "debugtime"]))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn set(c: &mut Client, key: &str, exptime: i64) {
    c.roundtrip(
        format!("set {key} 0 {exptime} 1\r\nx\r\n").as_bytes(),
        b"STORED\r\n",
    );
}

fn hit(c: &mut Client, key: &str) -> bool {
    c.send(format!("get {key}\r\n").as_bytes());
    let r = c.read_until(b"END\r\n");
    r.starts_with(b"VALUE ")
}

fn advance(c: &mut Client, secs: i64) {
    c.roundtrip(format!("debugtime {secs}\r\n").as_bytes(), b"OK\r\n");
}

#[test]
fn ttl_rules_follow_memcached() {
    let Some(s) = server() else { return };
    let mut c = s.connect();
    const MONTH: i64 = 60 * 60 * 24 * 30;
    set(&mut c, "never", 0);
    set(&mut c, "rel", 100);
    set(&mut c, "month", MONTH); // the largest relative TTL
    set(&mut c, "abs", unix_now() + 200); // above 30 days: absolute unix time
    set(&mut c, "past", MONTH + 1); // absolute time in 1970: gone at once
    set(&mut c, "neg", -1); // negative: gone at once
    assert!(!hit(&mut c, "past"));
    assert!(!hit(&mut c, "neg"));
    advance(&mut c, 98);
    assert!(hit(&mut c, "rel"), "relative TTL 100 expired after 98 s");
    advance(&mut c, 3);
    assert!(!hit(&mut c, "rel"), "relative TTL 100 alive after 101 s");
    assert!(
        hit(&mut c, "abs"),
        "absolute expiry 200 s ahead gone after 101 s"
    );
    advance(&mut c, 102);
    assert!(!hit(&mut c, "abs"), "absolute expiry passed");
    advance(&mut c, MONTH - 210);
    assert!(hit(&mut c, "month"), "30-day TTL gone early");
    advance(&mut c, 20);
    assert!(!hit(&mut c, "month"), "30-day TTL still alive");
    assert!(hit(&mut c, "never"));
    // touch and gat move the expiry.
    set(&mut c, "t", 10);
    c.roundtrip(b"touch t 100\r\n", b"TOUCHED\r\n");
    advance(&mut c, 50);
    assert!(hit(&mut c, "t"));
    c.roundtrip(b"gat 10 t\r\n", b"VALUE t 0 1\r\nx\r\nEND\r\n");
    advance(&mut c, 11);
    assert!(!hit(&mut c, "t"));
    assert_eq!(c.stat("get_expired").as_deref(), Some("6"));
}

#[test]
fn expired_items_are_reclaimed_without_being_read() {
    let Some(s) = server() else { return };
    let mut c = s.connect();
    for i in 0..500 {
        set(&mut c, &format!("exp:{i}"), 10);
    }
    set(&mut c, "keep", 0);
    assert_eq!(c.stat("curr_items").as_deref(), Some("501"));
    advance(&mut c, 11);
    // The background crawler runs about once a second; give it a bounded while.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let items = c.stat("curr_items").unwrap_or_default();
        if items == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired items not reclaimed in the background: curr_items {items}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.stat("crawler_reclaimed").as_deref(), Some("500"));
    assert_eq!(c.stat("get_expired").as_deref(), Some("0"));
    assert!(hit(&mut c, "keep"));
}
