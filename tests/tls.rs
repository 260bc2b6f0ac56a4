//! TLS in transit (`-Z`): the server against real TLS peers, side by side with
//! `memcached -Z` 1.6.18 started with certificates this test makes.
mod common;
use common::tls::*;
use common::*;

use std::io::{Read, Write};

fn tls_args(pki: &Pki) -> Vec<String> {
    vec![
        "-Z".into(),
        "-o".into(),
        format!(
            "ssl_chain_cert={},ssl_key={}",
            pki.server_cert, pki.server_key
        ),
    ]
}

#[test]
fn memcached_speaks_tls_with_the_test_certificates() {
    let pki = Pki::new("tls-mc");
    let args = tls_args(&pki);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(mc) = Server::memcached(&args) else {
        return;
    };
    let mut s = connect_tls(mc.port, client_config(&pki, false, &[])).expect("handshake");
    s.write_all(b"version\r\n").expect("write");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("read");
    assert_eq!(&buf[..n], b"VERSION 1.6.18\r\n");
}
