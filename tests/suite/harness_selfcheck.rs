//! The harness itself works against the reference memcached.
use crate::common::*;

#[test]
fn reference_memcached_answers_version() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let mut c = mc.connect();
    let line = c.line("version\r\n");
    assert!(line.starts_with("VERSION 1.6."), "{line}");
}
