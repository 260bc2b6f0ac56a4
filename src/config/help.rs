//! `-h`, `-V` and `-i`: memcached's help layout with our options, the version and
//! license lines; the rows the man page is made from.

use std::fmt::Write as _;

use super::settings::*;

impl Config {
    /// `-h`: memcached's layout, our options only. Defaults shown are the
    /// values parsed so far, as memcached does.
    pub(super) fn help_text(&self, port: i32, udp_port: i32) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", version_text().trim_end());
        let rows = self.help_rows(port, udp_port, &self.threads.to_string());
        for (flag, text) in rows {
            for (i, line) in text.lines().enumerate() {
                if i == 0 {
                    if flag.len() >= 26 {
                        let _ = writeln!(s, "{flag} {line}");
                    } else {
                        let _ = writeln!(s, "{flag:<26}{line}");
                    }
                } else {
                    let _ = writeln!(s, "{:<26}{line}", "");
                }
            }
        }
        for (name, text) in EXTENDED_HELP {
            for (i, line) in text.lines().enumerate() {
                if i == 0 {
                    let _ = writeln!(s, "   - {:<21}{line}", format!("{name}:"));
                } else {
                    let _ = writeln!(s, "{:<26}{line}", "");
                }
            }
        }
        let _ = writeln!(s, "   {EXTENDED_IGNORED}");
        s
    }

    /// The rows of `-h`, flags and text (lines broken for a terminal), the defaults
    /// taken from `self` and the arguments; the man page ([`man_page`]) is made from
    /// the same rows.
    pub(super) fn help_rows(
        &self,
        port: i32,
        udp_port: i32,
        threads: &str,
    ) -> Vec<(String, String)> {
        vec![
            ("-p, --port=<num>".into(), format!("TCP port to listen on (default: {port})")),
            ("-U, --udp-port=<num>".into(), format!("UDP port to listen on (default: {udp_port}, off)")),
            ("-s, --unix-socket=<file>".into(), "UNIX socket to listen on (disables network support)".into()),
            ("-a, --unix-mask=<mask>".into(), format!("access mask for UNIX socket, in octal (default: {:o})", self.unix_mask)),
            ("-A, --enable-shutdown".into(), "enable ascii \"shutdown\" command".into()),
            ("-l, --listen=<addr>".into(), "interface to listen on (default: INADDR_ANY)\nmay be repeated, or a comma separated list; <addr>:<port> sets the port\nif TLS/SSL is enabled, 'notls' prefix can be used to\ndisable for specific listeners (-l notls:<ip>:<port>)".into()),
            ("-d, --daemon".into(), "run as a daemon".into()),
            ("-u, --user=<user>".into(), "assume identity of <username> (only when run as root)".into()),
            ("-m, --memory-limit=<num>".into(), format!("item memory in megabytes (default: {})", self.memory_limit_mb)),
            ("-M, --disable-evictions".into(), "return error on memory exhausted instead of evicting".into()),
            ("-c, --conn-limit=<num>".into(), format!("max simultaneous connections (default: {})", self.max_conns)),
            ("-v, --verbose".into(), "verbose (print errors/warnings while in event loop)".into()),
            ("-vv".into(), "very verbose (also print client commands/responses)".into()),
            ("-vvv".into(), "extremely verbose (internal state transitions)".into()),
            ("-h, --help".into(), "print this help and exit".into()),
            ("-V, --version".into(), "print version and exit".into()),
            ("-P, --pidfile=<file>".into(), "save PID in <file>, only used with -d option".into()),
            ("-f, --slab-growth-factor=<num>".into(), format!("chunk size growth factor (default: {:.2})", self.growth_factor)),
            ("-n, --slab-min-size=<bytes>".into(), format!("min space used for key+value+flags (default: {})", self.chunk_min)),
            ("-D <char>".into(), "Use <char> as the delimiter between key prefixes and IDs.\nThis is used for per-prefix stats reporting. The default is\n\":\" (colon). If this option is specified, stats collection\nis turned on automatically; if not, then it may be turned on\nby sending the \"stats detail on\" command to the server.".into()),
            ("-t, --threads=<num>".into(), format!("number of threads to use (default: {threads})")),
            ("-R, --max-reqs-per-event".into(), format!("maximum number of requests per event, limits the\nrequests processed per connection to prevent\nstarvation (default: {})", self.reqs_per_event)),
            ("-C, --disable-cas".into(), "disable use of CAS".into()),
            ("-b, --listen-backlog=<num>".into(), format!("set the backlog queue limit (default: {})", self.backlog)),
            ("-B, --protocol=<name>".into(), "protocol - one of ascii, binary, or auto (default: auto-negotiate)".into()),
            ("-I, --max-item-size=<num>".into(), "adjusts max item size\n(default: 1m, min: 1k, max: 1024m)".into()),
            ("-S, --enable-sasl".into(), "require SASL authentication (binary protocol only)".into()),
            ("-e, --memory-file=<file>".into(), "warm restart: a graceful stop (SIGUSR1) saves the\ncache to <file>, a start loads it (then removes it)".into()),
            ("--restore=<file>".into(), "load the snapshot <file> at start (the file is kept)".into()),
            ("--snapshot-dir=<dir>".into(), "serve the \"snapshot <name>\" command and SIGUSR2:\nonline snapshots written into <dir>".into()),
            ("--cluster-config=<file>".into(), "serve this node list to \"config get cluster\"\n(auto discovery: host|ip|port or host:port entries;\nreloaded on SIGHUP)".into()),
            ("--snapshot-limit=<num>".into(), format!("most snapshot files --snapshot-dir may hold; a\nsnapshot beyond them is refused (default: {DEFAULT_SNAPSHOT_LIMIT})")),
            ("--cluster-config-writable".into(), "serve \"config set|delete cluster\": let clients change\nthe node list discovery clients follow (off by\ndefault; with -S or -Y, authenticated clients only)".into()),
            ("--cluster-config-readonly".into(), "refuse \"config set|delete cluster\" (the default)".into()),
            ("--metrics-listen=<addr>".into(), "serve Prometheus metrics over HTTP (GET /metrics) on\n[<host>:]<port>; a bare port listens on 127.0.0.1".into()),
            ("--sasl-pwdb=<file>".into(), "SASL credentials (user:password lines, or salted\nentries from 'ferrocache passwd'); default:\n$MEMCACHED_SASL_PWDB".into()),
            ("-Y, --auth-file=<file>".into(), "require ASCII authentication with user:password\nlines from <file> (text protocol only)".into()),
            ("-Z, --enable-ssl".into(), "enable TLS/SSL (TLS 1.2 and 1.3; see the ssl_* options)".into()),
            ("-F, --disable-flush-all".into(), "disable flush_all command".into()),
            ("-X, --disable-dumping".into(), "disable stats cachedump and lru_crawler metadump".into()),
            ("-W  --disable-watch".into(), "disable watch commands (live logging)".into()),
            ("--config=<file>".into(), "read options from a memcached.conf file (one option\nper line, '#' comments); later options override it".into()),
            ("--man".into(), "print the manual page (roff) and exit; only as the\nsole argument: ferrocache --man | man -l -".into()),
            ("-o, --extended".into(), "comma separated list of extended options\nmost options have a 'no_' prefix to disable".into()),
        ]
    }
}

/// The served `-o` sub-options in `-h` and the man page: name and text.
pub(super) const EXTENDED_HELP: &[(&str, &str)] = &[
    (
        "maxconns_fast",
        "immediately close new connections after limit (default: enabled)",
    ),
    (
        "idle_timeout",
        "timeout for idle connections. (default: 0, no timeout)",
    ),
    (
        "read_buf_mem_limit",
        "megabytes all connection buffers may hold together (read\n\
         buffers, values being received, replies waiting);\n\
         0 = unlimited (default: -m / 8, from 32 to 1024)",
    ),
    (
        "slab_chunk_max",
        "(EXPERIMENTAL) maximum slab size in bytes. (default: 524288)",
    ),
    (
        "latency_sample",
        "time one request in <n> for the latency histograms\n\
         (stats latency, /metrics); 1 = every request (default: 16)",
    ),
    (
        "no_latency",
        "no latency histograms (nothing counted or timed)",
    ),
    (
        "metrics_timeout",
        "seconds a /metrics client may take to send its request\n\
         before it gets 408 (default: 5)",
    ),
    (
        "debugtime",
        "enable the \"debugtime\" command (moves the server clock; testing only);\n\
         debugtime=<s> also starts the clock <s> seconds ahead",
    ),
    (
        "no_hotkeys",
        "do not keep the hot-key sketches (stats hotkeys)",
    ),
    (
        "no_sizing",
        "do not simulate other cache sizes (stats sizing)",
    ),
    (
        "no_miss_reasons",
        "do not split get misses into evicted / never stored",
    ),
    ("no_insight", "no_hotkeys, no_sizing and no_miss_reasons"),
    ("ssl_chain_cert", "certificate chain file in PEM format"),
    (
        "ssl_key",
        "private key file (PEM, or DER with ssl_keyformat=2)",
    ),
    (
        "ssl_keyformat",
        "private key format: 1 (PEM) or 2 (DER) (default: PEM)",
    ),
    (
        "ssl_verify_mode",
        "peer certificate verification mode, default is 0(None).\n\
         valid values are 0(None), 1(Request), 2(Require)\n\
         or 3(Once); 1-3 need ssl_ca_cert",
    ),
    (
        "ssl_ciphers",
        "TLS 1.2 cipher list (OpenSSL names, mapped to rustls)",
    ),
    ("ssl_ca_cert", "PEM format file of acceptable client CA's"),
    (
        "ssl_wbuf_size",
        "size in kilobytes of per-connection SSL output buffer\n\
         (default: 16; at least 64 KiB are used)",
    ),
    (
        "ssl_session_cache",
        "enable server-side SSL session cache, to support session\n\
         resumption",
    ),
    ("ssl_kernel_tls", "accepted; kernel TLS offload is not used"),
    (
        "ssl_min_version",
        "minimum protocol version to accept (default: tlsv1.2)\n\
         valid values are 2(tlsv1.2) or 3(tlsv1.3).",
    ),
];

/// The last line of the `-o` list in `-h`.
pub(super) const EXTENDED_IGNORED: &str =
    "other memcached -o options, and -k -r -L -N, are accepted and ignored.";

/// `-V` output.
/// The `-V` line: `ferrocache X.Y.Z (memcached 1.6.18 compatible)` and a newline.
pub fn version_text() -> String {
    format!(
        "ferrocache {} (memcached {MEMCACHED_VERSION} compatible)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `-i` output.
pub(super) fn license_text() -> String {
    format!(
        "{}\nferrocache is distributed under the BSD 3-Clause license.\n",
        version_text()
    )
}
