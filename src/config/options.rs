//! memcached 1.6.18's option tables: the `getopt` string, the long names, our private
//! option codes, the `-o` sub-options memcached knows, the ones we act on.

use super::getopt::{HasArg, LongOpt};

/// Our private code for `--config` (not a memcached option).
pub(super) const OPT_CONFIG: char = '\u{10001}';
/// Our private code for `--sasl-pwdb` (not a memcached option).
pub(super) const OPT_SASL_PWDB: char = '\u{10002}';
/// Our private code for `--restore`.
pub(super) const OPT_RESTORE: char = '\u{10003}';
/// Our private code for `--snapshot-dir`.
pub(super) const OPT_SNAPSHOT_DIR: char = '\u{10004}';
/// Our private code for `--cluster-config`.
pub(super) const OPT_CLUSTER_CONFIG: char = '\u{10005}';
/// Our private code for `--cluster-config-readonly`.
pub(super) const OPT_CLUSTER_READONLY: char = '\u{10006}';
/// Our private code for `--metrics-listen`.
pub(super) const OPT_METRICS_LISTEN: char = '\u{10007}';
/// Our private code for `--cluster-config-writable`.
pub(super) const OPT_CLUSTER_WRITABLE: char = '\u{10008}';
/// Our private code for `--snapshot-limit`.
pub(super) const OPT_SNAPSHOT_LIMIT: char = '\u{10009}';

/// memcached 1.6.18's `getopt` string.
pub(super) const SHORTOPTS: &str = "a:AZp:s:U:m:Mc:khiVrvdl:u:P:f:n:t:D:LR:Cb:B:I:SFXWY:e:o:N:";

pub(super) const fn lo(name: &'static str, has_arg: HasArg, val: char) -> LongOpt {
    LongOpt { name, has_arg, val }
}

/// memcached 1.6.18's long options, in its order (which shows in the
/// "ambiguous" message), plus our `--config` and `--sasl-pwdb`.
pub(super) const LONGOPTS: &[LongOpt] = &[
    lo("unix-mask", HasArg::Required, 'a'),
    lo("enable-shutdown", HasArg::No, 'A'),
    lo("enable-ssl", HasArg::No, 'Z'),
    lo("port", HasArg::Required, 'p'),
    lo("unix-socket", HasArg::Required, 's'),
    lo("udp-port", HasArg::Required, 'U'),
    lo("memory-limit", HasArg::Required, 'm'),
    lo("disable-evictions", HasArg::No, 'M'),
    lo("conn-limit", HasArg::Required, 'c'),
    lo("lock-memory", HasArg::No, 'k'),
    lo("help", HasArg::No, 'h'),
    lo("license", HasArg::No, 'i'),
    lo("version", HasArg::No, 'V'),
    lo("enable-coredumps", HasArg::No, 'r'),
    lo("verbose", HasArg::Optional, 'v'),
    lo("daemon", HasArg::No, 'd'),
    lo("listen", HasArg::Required, 'l'),
    lo("user", HasArg::Required, 'u'),
    lo("pidfile", HasArg::Required, 'P'),
    lo("slab-growth-factor", HasArg::Required, 'f'),
    lo("slab-min-size", HasArg::Required, 'n'),
    lo("threads", HasArg::Required, 't'),
    lo("enable-largepages", HasArg::No, 'L'),
    lo("max-reqs-per-event", HasArg::Required, 'R'),
    lo("disable-cas", HasArg::No, 'C'),
    lo("listen-backlog", HasArg::Required, 'b'),
    lo("protocol", HasArg::Required, 'B'),
    lo("max-item-size", HasArg::Required, 'I'),
    lo("enable-sasl", HasArg::No, 'S'),
    lo("disable-flush-all", HasArg::No, 'F'),
    lo("disable-dumping", HasArg::No, 'X'),
    lo("disable-watch", HasArg::No, 'W'),
    lo("auth-file", HasArg::Required, 'Y'),
    lo("memory-file", HasArg::Required, 'e'),
    lo("extended", HasArg::Required, 'o'),
    lo("napi-ids", HasArg::Required, 'N'),
    lo("config", HasArg::Required, OPT_CONFIG),
    lo("sasl-pwdb", HasArg::Required, OPT_SASL_PWDB),
    lo("restore", HasArg::Required, OPT_RESTORE),
    lo("snapshot-dir", HasArg::Required, OPT_SNAPSHOT_DIR),
    lo("cluster-config", HasArg::Required, OPT_CLUSTER_CONFIG),
    lo("cluster-config-readonly", HasArg::No, OPT_CLUSTER_READONLY),
    lo("cluster-config-writable", HasArg::No, OPT_CLUSTER_WRITABLE),
    lo("snapshot-limit", HasArg::Required, OPT_SNAPSHOT_LIMIT),
    lo("metrics-listen", HasArg::Required, OPT_METRICS_LISTEN),
];

/// Every `-o` sub-option memcached 1.6.18 (Debian build: TLS and extstore,
/// no proxy) accepts (ours are [`OUR_SUBOPTS`]).
pub(super) const SUBOPTS: &[&str] = &[
    "maxconns_fast",
    "hashpower",
    "no_hashexpand",
    "slab_reassign",
    "slab_automove",
    "slab_automove_ratio",
    "slab_automove_window",
    "tail_repair_time",
    "hash_algorithm",
    "lru_crawler",
    "lru_crawler_sleep",
    "lru_crawler_tocrawl",
    "lru_maintainer",
    "hot_lru_pct",
    "warm_lru_pct",
    "hot_max_factor",
    "warm_max_factor",
    "temporary_ttl",
    "idle_timeout",
    "watcher_logbuf_size",
    "worker_logbuf_size",
    "slab_sizes",
    "slab_chunk_max",
    "track_sizes",
    "no_inline_ascii_resp",
    "modern",
    "no_modern",
    "no_chunked_items",
    "no_slab_reassign",
    "no_slab_automove",
    "no_maxconns_fast",
    "inline_ascii_resp",
    "no_lru_crawler",
    "no_lru_maintainer",
    "no_drop_privileges",
    "drop_privileges",
    "resp_obj_mem_limit",
    "read_buf_mem_limit",
    "ssl_chain_cert",
    "ssl_key",
    "ssl_verify_mode",
    "ssl_keyformat",
    "ssl_ciphers",
    "ssl_ca_cert",
    "ssl_wbuf_size",
    "ssl_session_cache",
    "ssl_kernel_tls",
    "ssl_min_version",
    "sock_cookie_id",
    "ext_path",
    "ext_page_size",
    "ext_wbuf_size",
    "ext_threads",
    "ext_io_depth",
    "ext_item_size",
    "ext_item_age",
    "ext_low_ttl",
    "ext_recache_rate",
    "ext_compact_under",
    "ext_drop_under",
    "ext_max_sleep",
    "ext_max_frag",
    "ext_drop_unread",
    "slab_automove_freeratio",
];

/// memcached's extstore options (its flash tier, built into Debian's memcached): the
/// `ext_*` entries of [`SUBOPTS`] and `slab_automove_freeratio`. ferrocache serves no
/// flash tier, so a start with any of them is refused: the operator would otherwise
/// get a server with only `-m` of the capacity configured.
pub(super) fn is_extstore_subopt(name: &str) -> bool {
    name.starts_with("ext_") || name == "slab_automove_freeratio"
}

/// The message a start with an extstore option stops with (exit 64, `EX_USAGE`).
pub(super) fn extstore_refusal(token: &str) -> String {
    format!(
        "-o {token}: extstore (memcached's external storage) is not served by ferrocache; \
         the cache would hold only the -m memory. Remove the ext_* options (or raise -m) \
         to start."
    )
}

/// Our own `-o` sub-options (accepted and acted on, besides memcached's).
pub(super) const OUR_SUBOPTS: &[&str] = &[
    "debugtime",
    "no_latency",
    "latency_sample",
    "metrics_timeout",
    "no_hotkeys",
    "no_sizing",
    "no_miss_reasons",
    "no_insight",
];

/// `-o` sub-options the server acts on; every other one is reported in
/// [`Config::ignored`].
pub(super) const SUBOPTS_USED: &[&str] = &[
    "maxconns_fast",
    "no_maxconns_fast",
    "idle_timeout",
    "read_buf_mem_limit",
    "slab_chunk_max",
];
