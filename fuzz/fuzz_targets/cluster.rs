//! `cluster`: the cluster configuration (ElastiCache's auto discovery) as parsed from
//! the wire (`ClusterConfig::parse_payload`: `config set cluster`, and what a
//! discovery client reads from `config get cluster`), from a `--cluster-config` file
//! (`ClusterConfig::parse_file`), entry by entry (`ClusterNode::parse`), and the
//! server's published state under a sequence of changes (`server::cluster::ClusterState`).
//!
//! Byte 0 picks: bit 0 = the state is writable (`--cluster-config-writable`). The rest
//! is one or more payloads separated by `0xff 0xff`; each is parsed every way, and
//! then given to the state as `config set cluster` (bit 1 of the payload's first
//! byte, when set, sends `config delete cluster` before it).
//!
//! Checked: nothing panics; a parsed configuration has 1..=`MAX_NODES` nodes, a
//! version at most `MAX_VERSION`, valid entries (host printable and at most 253
//! bytes, an IP address or nothing, a port above 0), and its payload parses back to
//! it; the file form agrees with the payload form where both accept; the state
//! refuses everything when read-only, publishes only versions below `MAX_VERSION`,
//! each higher than the one before (also across deletes), and keeps its version on
//! a refusal.
#![no_main]

use ferrocache::protocol::cluster::{ClusterConfig, ClusterNode, MAX_HOST, MAX_NODES, MAX_VERSION};
use ferrocache::server::cluster::{ClusterState, Refusal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let writable = opts & 1 != 0;
    let state = ClusterState::new(writable);
    let mut last = 0u64;
    for payload in split(rest) {
        let parsed = ClusterConfig::parse_payload(payload);
        if let Ok(c) = &parsed {
            check_config(c);
            let again = ClusterConfig::parse_payload(&c.payload()).expect("its own payload");
            assert_eq!(&again, c, "payload round trip");
        }
        if let Ok(text) = std::str::from_utf8(payload) {
            if let Ok((version, nodes)) = ClusterConfig::parse_file(text) {
                assert!(version.map_or(true, |v| v <= MAX_VERSION));
                check_config(&ClusterConfig {
                    version: version.unwrap_or(0),
                    nodes,
                });
            }
            for word in text.split_whitespace().take(64) {
                if let Ok(n) = ClusterNode::parse(word) {
                    check_node(&n);
                }
            }
        }
        // The server's state.
        if payload.first().is_some_and(|b| b & 2 != 0) {
            match state.delete() {
                Err(Refusal::ReadOnly) => assert!(!writable),
                Err(r) => panic!("delete refused: {r:?}"),
                Ok(_) => assert!(writable),
            }
            assert!(state.current().is_none() || !writable);
            assert_eq!(state.version(), last, "a delete keeps the version");
        }
        match state.set(payload) {
            Ok(v) => {
                assert!(writable, "a read-only state took a change");
                assert!(v > last, "version {v} after {last}");
                assert!(v < MAX_VERSION, "published {v}: nothing could follow it");
                let wanted = parsed.as_ref().map(|c| c.version).expect("parsed");
                assert_eq!(v, wanted.max(last + 1));
                let p = state.current().expect("published");
                assert_eq!(p.config.version, v);
                assert_eq!(p.payload, p.config.payload());
                last = v;
            }
            Err(Refusal::ReadOnly) => assert!(!writable),
            Err(Refusal::Bad(_)) => assert!(writable && parsed.is_err()),
            Err(Refusal::TooHigh(v)) => {
                assert!(v >= MAX_VERSION, "refused {v} as too high");
                assert!(parsed.is_ok());
            }
        }
        assert_eq!(state.version(), last);
    }
});

/// The payloads of an input: separated by `ff ff` (at most 32).
fn split(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() < 32 {
        match b.windows(2).position(|w| w == [0xff, 0xff]) {
            Some(i) => {
                out.push(&b[..i]);
                b = &b[i + 2..];
            }
            None => {
                out.push(b);
                break;
            }
        }
    }
    out
}

fn check_config(c: &ClusterConfig) {
    assert!(c.version <= MAX_VERSION, "version {}", c.version);
    assert!(!c.nodes.is_empty() && c.nodes.len() <= MAX_NODES);
    for n in &c.nodes {
        check_node(n);
    }
}

fn check_node(n: &ClusterNode) {
    assert!(!n.host.is_empty() && n.host.len() <= MAX_HOST, "{n:?}");
    assert!(
        n.host.bytes().all(|b| b.is_ascii_graphic() && b != b'|'),
        "{n:?}"
    );
    assert!(
        n.ip.is_empty() || n.ip.parse::<std::net::IpAddr>().is_ok(),
        "{n:?}"
    );
    assert!(n.port > 0);
    // The entry's text form parses back to it.
    assert_eq!(&ClusterNode::parse(&n.to_string()).expect("own entry"), n);
}
