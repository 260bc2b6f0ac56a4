//! Expected messages and exit codes were taken from memcached 1.6.18 run
//! with the same arguments (its `argv[0]` replaced by `memcached`).

use super::options::*;
use super::parse::*;
use super::settings::*;
use crate::num::{atof as c_atof, atoi as c_atoi};
use std::path::PathBuf;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn run_v(v: &[String]) -> Invocation {
    parse_args_as("memcached", v)
}

fn cfg(s: &str) -> Config {
    cfg_v(&args(s))
}

fn cfg_v(v: &[String]) -> Config {
    match run_v(v) {
        Invocation::Run(c) => *c,
        Invocation::Exit { stderr, code, .. } => panic!("{v:?}: exit {code}: {stderr}"),
    }
}

/// (whole stderr, code) of a failing parse.
fn fail_v(v: &[String]) -> (String, i32) {
    match run_v(v) {
        Invocation::Run(_) => panic!("{v:?} parsed"),
        Invocation::Exit {
            stdout,
            stderr,
            code,
        } => {
            assert!(stdout.is_empty());
            (stderr, code)
        }
    }
}

/// (first stderr line, code) of a failing parse.
fn fail(s: &str) -> (String, i32) {
    let (e, code) = fail_v(&args(s));
    (e.lines().next().unwrap_or("").to_string(), code)
}

fn exit_ok(s: &str) -> String {
    match run_v(&args(s)) {
        Invocation::Exit {
            stdout,
            stderr,
            code,
        } => {
            assert_eq!((code, stderr.as_str()), (0, ""));
            stdout
        }
        Invocation::Run(_) => panic!("{s} did not exit"),
    }
}

#[test]
fn defaults() {
    let c = cfg("");
    assert_eq!(c.port, 11211);
    assert_eq!(c.udp_port, 0);
    assert!(c.listen.is_empty());
    assert_eq!(c.memory_limit_mb, 64);
    assert_eq!(c.mem_limit_bytes(), 64 << 20);
    assert_eq!(c.max_conns, 1024);
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    assert_eq!(c.threads, cores);
    assert_eq!(c.item_size_max, 1 << 20);
    assert_eq!(c.slab_chunk_max, 512 * 1024);
    assert_eq!(c.protocol, ProtocolMode::Auto);
    assert_eq!(c.unix_mask, 0o700);
    assert!(c.maxconns_fast);
    assert!(c.ignored.is_empty() && c.warnings.is_empty());
    assert_eq!(c.log_level(), log::LevelFilter::Warn);
}

#[test]
fn flag_forms() {
    for form in [
        "-p11212",
        "-p 11212",
        "--port=11212",
        "--port 11212",
        "--po=11212",
        "-vp11212",
    ] {
        assert_eq!(cfg(form).port, 11212, "{form}");
    }
    let c = cfg("-vvd");
    assert_eq!((c.verbose, c.daemonize), (2, true));
    assert_eq!(c.log_level(), log::LevelFilter::Debug);
    assert_eq!(cfg("-v").log_level(), log::LevelFilter::Info);
    assert_eq!(cfg("-vvv").log_level(), log::LevelFilter::Trace);
    assert_eq!(cfg("-v -v -v -v").log_level(), log::LevelFilter::Trace);
    assert_eq!(cfg("--verbose").verbose, 1);
    assert_eq!(cfg("--verbose=2").verbose, 1);
    // Non-options are ignored; `--` ends the options.
    assert_eq!(cfg("foo - -p 5 bar").port, 5);
    assert_eq!(cfg("-p 5 -- -z").port, 5);
}

#[test]
fn every_flag() {
    let c = cfg(
        "-p 1 -U 2 -s /tmp/x.sock -a 755 -A -m 100 -M -c 500 -t 2 -R 7 -B ascii -I 2m -C \
         -f 1.5 -n 64 -b 50 -F -u nobody -P /tmp/x.pid -d -v -D # -X -W",
    );
    assert_eq!((c.port, c.udp_port), (1, 2));
    assert_eq!(c.unix_socket, Some(PathBuf::from("/tmp/x.sock")));
    assert_eq!(c.unix_mask, 0o755);
    assert!(c.enable_shutdown && c.disable_evictions && c.disable_cas && c.disable_flush_all);
    assert_eq!(c.memory_limit_mb, 100);
    assert_eq!((c.max_conns, c.threads, c.reqs_per_event), (500, 2, 7));
    assert_eq!(c.protocol, ProtocolMode::Ascii);
    assert_eq!(c.item_size_max, 2 << 20);
    assert_eq!(c.slab_chunk_max, 512 * 1024);
    assert_eq!((c.growth_factor, c.chunk_min, c.backlog), (1.5, 64, 50));
    assert_eq!(c.user.as_deref(), Some("nobody"));
    assert_eq!(c.pid_file, Some(PathBuf::from("/tmp/x.pid")));
    assert!(c.daemonize && c.verbose == 1);
    assert_eq!((c.prefix_delimiter, c.detail_enabled), (b'#', true));
    assert!(c.disable_dumping && c.disable_watch);
    assert!(c.ignored.is_empty());

    let c = cfg(
        "--unix-mask=750 --enable-shutdown --udp-port=3 --memory-limit=10 \
         --disable-evictions --conn-limit=9 --threads=3 --max-reqs-per-event=4 \
         --protocol=binary --max-item-size=2k --disable-cas --slab-growth-factor=2 \
         --slab-min-size=30 --listen-backlog=8 --disable-flush-all --user=u --pidfile=p \
         --daemon --listen=127.0.0.1 --unix-socket=s --disable-dumping --disable-watch \
         --extended=slab_chunk_max=1024",
    );
    assert_eq!((c.unix_mask, c.udp_port, c.port), (0o750, 3, 3));
    assert_eq!((c.memory_limit_mb, c.max_conns, c.threads), (10, 9, 3));
    assert_eq!((c.protocol, c.item_size_max), (ProtocolMode::Binary, 2048));
    assert_eq!(c.listen, vec!["127.0.0.1".to_string()]);
    assert_eq!(c.slab_chunk_max, 1024);
}

#[test]
fn c_conversions_like_memcached() {
    // -m is atoi: no unit suffixes.
    assert_eq!(cfg("-m 64k").memory_limit_mb, 64);
    assert_eq!(cfg("-m 128m").memory_limit_mb, 128);
    assert_eq!(c_atoi("99999999999"), 1_215_752_191);
    assert_eq!(c_atoi("  -12x"), -12);
    assert_eq!(c_atoi("abc"), 0);
    assert_eq!(c_atof("0x2"), 2.0);
    assert_eq!(c_atof("1.5x"), 1.5);
    assert_eq!(c_atof("abc"), 0.0);
    assert_eq!(cfg("-f 0x2").growth_factor, 2.0);
    // -I: k/m suffixes, C int arithmetic.
    assert_eq!(cfg("-I 2K -o slab_chunk_max=1024").item_size_max, 2048);
    assert_eq!(cfg("-I 1M").item_size_max, 1 << 20);
    assert_eq!(cfg("-I 1.5m").item_size_max, 1 << 20);
    assert_eq!(cfg("-I 1024m -m 4096").item_size_max, 1 << 30);
    // -a is octal strtol.
    assert_eq!(cfg("-a invalid").unix_mask, 0);
    assert_eq!(cfg("-a 999").unix_mask, 0);
    // Accepted by memcached although odd.
    assert_eq!(cfg("-U -1").udp_port, 65535);
    assert_eq!(cfg("-p -1").port, 0);
    assert_eq!(cfg("-R -1").reqs_per_event, 1);
    assert_eq!(cfg("-n -1").chunk_min, 1);
    assert_eq!(cfg("-b -5").backlog, -5);
    assert_eq!(cfg("-D ab").prefix_delimiter, b'a');
    assert_eq!(cfg("-p 0").port, 0);
}

#[test]
fn listen_lists() {
    let c = cfg("-l 127.0.0.1,127.0.0.1:23460 -l 127.0.0.1 -p 7");
    assert_eq!(c.listen, vec!["127.0.0.1", "127.0.0.1:23460"]);
    assert_eq!(
        c.listen_targets(),
        vec![
            (Some("127.0.0.1".to_string()), 7),
            (Some("127.0.0.1".to_string()), 23460)
        ]
    );
    let c = cfg("-l ::1 -l [::1]:9 -l host");
    assert_eq!(
        c.listen_targets(),
        vec![
            (Some("::1".to_string()), 11211),
            (Some("::1".to_string()), 9),
            (Some("host".to_string()), 11211)
        ]
    );
    // memcached drops a -l value contained in the list so far (strstr).
    assert_eq!(cfg("-l [::1]:9 -l ::1").listen, vec!["[::1]:9"]);
    assert_eq!(cfg("").listen_targets(), vec![(None, 11211)]);
    assert!(cfg("-s /tmp/s").listen_targets().is_empty());
    // -U without -p: memcached uses the UDP port for TCP too.
    let c = cfg("-U 23462");
    assert_eq!((c.port, c.udp_port), (23462, 23462));
    let c = cfg("-U 23462 -p 5");
    assert_eq!((c.port, c.udp_port), (5, 23462));
}

#[test]
fn option_value_errors() {
    let cases: &[(&str, &str, i32)] = &[
        ("-c 0", "Maximum connections must be greater than 0", 1),
        ("-c -5", "Maximum connections must be greater than 0", 1),
        ("-c abc", "Maximum connections must be greater than 0", 1),
        ("-t 0", "Number of threads must be greater than 0", 1),
        ("-t abc", "Number of threads must be greater than 0", 1),
        ("-B http", "Invalid value for binding protocol: http", 64),
        (
            "-I 1000",
            "Item max size cannot be less than 1024 bytes.",
            64,
        ),
        (
            "-I abc",
            "Item max size cannot be less than 1024 bytes.",
            64,
        ),
        ("-I 1g", "Item max size cannot be less than 1024 bytes.", 64),
        (
            "-I 2048m -m 8192",
            "Item max size cannot be less than 1024 bytes.",
            64,
        ),
        (
            "-I 2000m",
            "Cannot set item size limit higher than 1/2 of memory max.",
            64,
        ),
        (
            "-I 256m -m 64",
            "Cannot set item size limit higher than 1/2 of memory max.",
            64,
        ),
        (
            "-m 0",
            "Cannot set item size limit higher than 1/2 of memory max.",
            64,
        ),
        (
            "-m 1g",
            "Cannot set item size limit higher than 1/2 of memory max.",
            64,
        ),
        (
            "-I 2000m -m 8192",
            "Cannot set item size limit higher than a gigabyte.",
            64,
        ),
        (
            "-I 1025m -m 4096",
            "Cannot set item size limit higher than a gigabyte.",
            64,
        ),
        (
            "-I 2k",
            "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 2048)",
            64,
        ),
        (
            "-R 0",
            "Number of requests per event must be greater than 0",
            1,
        ),
        (
            "-R abc",
            "Number of requests per event must be greater than 0",
            1,
        ),
        ("-f 1", "Factor must be greater than 1", 1),
        ("-f abc", "Factor must be greater than 1", 1),
        ("-n 0", "Chunk size must be greater than 0", 1),
        ("-n abc", "Chunk size must be greater than 0", 1),
        ("-p 99999", "ERROR: Invalid port number 99999.", 64),
        ("-p 65536", "ERROR: Invalid port number 65536.", 64),
        (
            "-N abc",
            "Maximum number of NAPI IDs must be greater than 0",
            1,
        ),
        (
            "-N 5 -t 4",
            "Number of napi_ids(5) cannot be greater than number of threads(4)",
            64,
        ),
        (
            "-S -B ascii",
            "ERROR: You cannot allow the ASCII protocol while using SASL.",
            64,
        ),
        (
            "-S -U 5",
            "ERROR: Cannot enable UDP while using binary SASL authentication.",
            64,
        ),
        (
            "-Y /f -B binary",
            "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.",
            64,
        ),
        (
            "-Y /f -U 5",
            "Cannot use UDP with ascii authentication enabled (-U 0 to disable)",
            64,
        ),
    ];
    for (a, msg, code) in cases {
        assert_eq!(fail(a), (msg.to_string(), *code), "{a}");
    }
    assert_eq!(
        fail_v(&args("-B http")).0,
        "Invalid value for binding protocol: http\n -- should be one of auto, binary, or ascii\n"
    );
    let empty_d = vec!["-D".to_string(), String::new()];
    assert_eq!(fail_v(&empty_d), ("No delimiter specified\n".into(), 1));
    // -h after an error is never reached; before one, it wins.
    assert_eq!(fail("-c 0 -h").1, 1);
}

#[test]
fn getopt_errors() {
    let cases: &[(&str, &str)] = &[
        ("-b", "memcached: option requires an argument -- 'b'"),
        ("-p", "memcached: option requires an argument -- 'p'"),
        ("-o", "memcached: option requires an argument -- 'o'"),
        ("-z", "memcached: invalid option -- 'z'"),
        ("-vvvz", "memcached: invalid option -- 'z'"),
        ("-zh", "memcached: invalid option -- 'z'"),
        ("--port", "memcached: option '--port' requires an argument"),
        ("--bogus", "memcached: unrecognized option '--bogus'"),
        ("--bogus=1", "memcached: unrecognized option '--bogus=1'"),
        (
            "--help=3",
            "memcached: option '--help' doesn't allow an argument",
        ),
        (
            "--dis",
            "memcached: option '--dis' is ambiguous; possibilities: '--disable-evictions' \
             '--disable-cas' '--disable-flush-all' '--disable-dumping' '--disable-watch'",
        ),
    ];
    for (a, msg) in cases {
        let (stderr, code) = fail_v(&args(a));
        assert_eq!(stderr, format!("{msg}\nIllegal argument \"?\"\n"), "{a}");
        assert_eq!(code, 1);
    }
}

#[test]
fn warnings_and_ignored() {
    let c = cfg("-t 300");
    assert_eq!(c.threads, 300);
    assert_eq!(
        c.warnings,
        vec![
            "WARNING: Setting a high number of workerthreads is not recommended.\n \
             Set this value to the number of cores in your machine or less."
        ]
    );
    assert!(cfg("-t 64").warnings.is_empty());
    let c = cfg("-k -r -L -e /tmp/m -N 1 -o hash_algorithm=jenkins,idle_timeout=5,modern");
    assert_eq!(
        c.ignored,
        vec![
            "-k",
            "-r",
            "-L",
            "-N 1",
            "-o hash_algorithm=jenkins",
            "-o modern"
        ]
    );
    assert_eq!(c.idle_timeout, 5);
    assert_eq!(c.extended.len(), 3);
    assert_eq!(
        c.memory_file.as_deref(),
        Some(std::path::Path::new("/tmp/m"))
    );
    let c = cfg("--restore /tmp/r --snapshot-dir /tmp/d -o debugtime=500");
    assert_eq!(
        c.restore_file.as_deref(),
        Some(std::path::Path::new("/tmp/r"))
    );
    assert_eq!(
        c.snapshot_dir.as_deref(),
        Some(std::path::Path::new("/tmp/d"))
    );
    assert!(c.debugtime);
    assert_eq!(c.debugtime_offset, 500);
    let c = cfg("-S");
    assert!(c.sasl);
    assert_eq!(c.protocol, ProtocolMode::Binary);
    let c = cfg("-Y /f -Z -X");
    assert_eq!(c.protocol, ProtocolMode::Ascii);
    assert!(c.tls && c.disable_dumping);
    assert_eq!(
        cfg("-o resp_obj_mem_limit=5").warnings,
        vec!["DEPRECATED: resp_obj_mem_limit no longer used. See read_buf_mem_limit,"]
    );
}

#[test]
fn sub_options() {
    let c = cfg("-o debugtime,idle_timeout=30,no_maxconns_fast,hashpower=16 -t 4");
    assert!(c.debugtime);
    assert_eq!(c.idle_timeout, 30);
    assert!(!c.maxconns_fast);
    assert_eq!(c.hashpower_init, 16);
    assert_eq!(cfg("-o idle_timeout=-5").idle_timeout, 0);
    assert_eq!(cfg("-o idle_timeout=abc").idle_timeout, 0);
    assert!(cfg("-o hashpower=20=3 -t 4").hashpower_init == 20);
    // Every memcached 1.6.18 sub-option is accepted with a sane value.
    for o in SUBOPTS.iter().chain(OUR_SUBOPTS) {
        let v = match *o {
            "hashpower" => "hashpower=20".to_string(),
            "slab_automove" | "ssl_verify_mode" | "ssl_min_version" => format!("{o}=1"),
            "slab_automove_ratio"
            | "hot_max_factor"
            | "warm_max_factor"
            | "slab_automove_freeratio"
            | "ext_max_frag" => format!("{o}=0.5"),
            "slab_automove_window" | "tail_repair_time" | "hot_lru_pct" | "warm_lru_pct" => {
                format!("{o}=20")
            }
            "hash_algorithm" => "hash_algorithm=xxh3".into(),
            "slab_chunk_max" => "slab_chunk_max=16384".into(),
            "ext_path" => "ext_path=/tmp/x:1G".into(),
            "ssl_chain_cert" | "ssl_key" | "ssl_ciphers" | "ssl_ca_cert" => format!("{o}=x"),
            "idle_timeout"
            | "lru_crawler_sleep"
            | "lru_crawler_tocrawl"
            | "temporary_ttl"
            | "watcher_logbuf_size"
            | "worker_logbuf_size"
            | "read_buf_mem_limit"
            | "latency_sample"
            | "metrics_timeout"
            | "ssl_keyformat"
            | "ssl_wbuf_size"
            | "ext_page_size"
            | "ext_wbuf_size"
            | "ext_threads"
            | "ext_io_depth"
            | "ext_item_size"
            | "ext_item_age"
            | "ext_low_ttl"
            | "ext_recache_rate"
            | "ext_compact_under"
            | "ext_drop_under"
            | "ext_max_sleep" => format!("{o}=10"),
            _ => o.to_string(),
        };
        let a = format!("-t 4 -o {v}");
        if is_extstore_subopt(o) {
            // Accepted by memcached, refused here: no flash tier is served.
            let (msg, code) = fail(&a);
            assert_eq!(code, EX_USAGE, "{a}");
            assert!(msg.starts_with(&format!("-o {v}: extstore")), "{a}: {msg}");
            continue;
        }
        let c = cfg(&a);
        assert_eq!(c.extended.len(), 1, "{a}");
    }
    let cases: &[(&str, &str, i32)] = &[
        (
            "-o unknown_option",
            "Illegal suboption \"unknown_option\"",
            1,
        ),
        ("-o foo=1", "Illegal suboption \"foo=1\"", 1),
        (
            "-o proxy_config=x",
            "Illegal suboption \"proxy_config=x\"",
            1,
        ),
        ("-o ,", "Illegal suboption \"\"", 1),
        (
            "-o idle_timeout=5,,track_sizes",
            "Illegal suboption \"\"",
            1,
        ),
        (
            "-o hashpower=99",
            "Initial hashtable multiplier of 99 is too high",
            1,
        ),
        (
            "-o hashpower=5",
            "Initial hashtable multiplier of 5 is too low",
            1,
        ),
        (
            "-o hashpower=abc",
            "Initial hashtable multiplier of 0 is too low",
            1,
        ),
        ("-o hashpower", "Missing numeric argument for hashpower", 1),
        (
            "-t 5 -o hashpower=13",
            "Hash table power size (13) cannot be equal to or less than item lock table (13)",
            1,
        ),
        (
            "-t 4 -o hashpower=12",
            "Hash table power size (12) cannot be equal to or less than item lock table (12)",
            1,
        ),
        (
            "-o idle_timeout",
            "Missing numeric argument for idle_timeout",
            1,
        ),
        ("-o slab_chunk_max", "Missing slab_chunk_max argument", 1),
        (
            "-o slab_chunk_max=abc",
            "could not parse argument to slab_chunk_max",
            1,
        ),
        (
            "-o slab_chunk_max=1000",
            "-I (item_size_max: 1048576) must be evenly divisible by slab_chunk_max (bytes: 1000)",
            64,
        ),
        (
            "-o slab_chunk_max=2097152",
            "slab_chunk_max (bytes: 2097152) cannot be larger than -I (item_size_max 1048576)",
            64,
        ),
        (
            "-I 3m -o slab_chunk_max=3145728 -m 64",
            "slab_chunk_max (bytes: 3145728) must divide evenly into 1048576 (slab_page_size)",
            64,
        ),
        (
            "-o slab_automove=3",
            "slab_automove must be between 0 and 2",
            1,
        ),
        (
            "-o slab_automove_ratio=0",
            "slab_automove_ratio must be > 0 and < 1",
            1,
        ),
        (
            "-o slab_automove_ratio=1.5",
            "slab_automove_ratio must be > 0 and < 1",
            1,
        ),
        (
            "-o slab_automove_window=2",
            "slab_automove_window must be > 2",
            1,
        ),
        (
            "-o tail_repair_time=5",
            "Cannot set tail_repair_time to less than 10 seconds",
            1,
        ),
        (
            "-o hash_algorithm=foo",
            "Unknown hash_algorithm option (jenkins, murmur3, xxh3)",
            1,
        ),
        (
            "-o lru_crawler_sleep=2000000",
            "LRU crawler sleep must be between 0 and 1 second",
            1,
        ),
        (
            "-o lru_crawler_tocrawl=abc",
            "lru_crawler_tocrawl takes a numeric 32bit value",
            1,
        ),
        ("-o hot_lru_pct=80", "hot_lru_pct must be > 1 and < 80", 1),
        ("-o warm_lru_pct=0", "warm_lru_pct must be > 1 and < 80", 1),
        (
            "-o hot_lru_pct=79",
            "hot_lru_pct + warm_lru_pct cannot be more than 80% combined",
            64,
        ),
        ("-o hot_max_factor=0", "hot_max_factor must be > 0", 1),
        ("-o warm_max_factor=-1", "warm_max_factor must be > 0", 1),
        (
            "-o temporary_ttl=5,no_lru_maintainer",
            "temporary_ttl requires lru_maintainer to be enabled",
            64,
        ),
        (
            "-o watcher_logbuf_size=abc",
            "could not parse argument to watcher_logbuf_size",
            1,
        ),
        (
            "-o read_buf_mem_limit=abc",
            "could not parse argument to read_buf_mem_limit",
            1,
        ),
        (
            "-o ssl_verify_mode=9",
            "Invalid ssl_verify_mode. Use help to see valid options.",
            1,
        ),
        (
            "-o ssl_min_version=9",
            "Invalid ssl_min_version. Use help to see valid options.",
            1,
        ),
        ("-o ext_page_size", "Missing ext_page_size argument", 1),
        (
            "-o ext_page_size=abc",
            "could not parse argument to ext_page_size",
            1,
        ),
        (
            "-o ext_path",
            "missing argument to ext_path, ie: ext_path=/d/file:5G",
            1,
        ),
        (
            "-o slab_automove_freeratio",
            "Missing slab_automove_freeratio argument",
            1,
        ),
        ("-o lru_crawler_sleep", "Missing lru_crawler_sleep value", 1),
    ];
    for (a, msg, code) in cases {
        assert_eq!(fail(a), (msg.to_string(), *code), "{a}");
    }
    assert_eq!(
        fail_v(&args("-o hashpower=99")).0,
        "Initial hashtable multiplier of 99 is too high\n\
         Choose a value based on \"STAT hash_power_level\" from a running instance\n"
    );
    // An empty -o list is fine.
    assert!(cfg_v(&["-o".to_string(), String::new()])
        .extended
        .is_empty());
}

#[test]
fn help_and_version() {
    let v = exit_ok("-V");
    assert_eq!(
        v,
        format!(
            "ferrocache {} (memcached 1.6.18 compatible)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(exit_ok("--version"), v);
    assert_eq!(exit_ok("-Vh"), v);
    let h = exit_ok("-h");
    assert!(h.starts_with(&v));
    assert!(h.contains("-s, --unix-socket=<file>"));
    assert!(h.contains("-p, --port=<num>          TCP port to listen on (default: 11211)"));
    assert_eq!(exit_ok("-p 5 -hz"), exit_ok("-p 5 --help"));
    assert!(exit_ok("-p 5 -h").contains("(default: 5)"));
    assert!(exit_ok("-i").contains("BSD"));
}

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ferrocache-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn config_file() {
    let f = temp_file(
        "a.conf",
        "# memcached.conf\n\n-d\nlogfile /var/log/memcached.log\n-m 100\n  -p 11300 # port\n\
         -l 127.0.0.1\n-o idle_timeout=9,debugtime\n-vv\n-M\n--conn-limit=77\n",
    );
    let c = cfg(&format!("--config {f}"));
    assert!(!c.daemonize);
    assert_eq!((c.memory_limit_mb, c.port, c.max_conns), (100, 11300, 77));
    assert_eq!(c.listen, vec!["127.0.0.1"]);
    assert_eq!(c.idle_timeout, 9);
    assert!(c.debugtime);
    assert_eq!(c.verbose, 2);
    assert!(c.disable_evictions);
    // Later command-line flags override the file; earlier ones are overridden.
    let c = cfg(&format!("-m 50 -p 1 --config={f} -m 128"));
    assert_eq!((c.memory_limit_mb, c.port), (128, 11300));
    // -d on the command line still counts.
    assert!(cfg(&format!("--config {f} -d")).daemonize);
}

#[test]
fn config_file_errors() {
    let f = temp_file("b.conf", "# x\n-m 64\n-c 0\n");
    assert_eq!(
        fail(&format!("--config {f}")),
        (
            format!("{f}:3: Maximum connections must be greater than 0"),
            1
        )
    );
    let f = temp_file("c.conf", "-m 64\n-z\n");
    assert_eq!(
        fail(&format!("--config {f}")),
        (format!("{f}:2: invalid option -- 'z'"), 1)
    );
    let f = temp_file("d.conf", "-M yes\n");
    assert_eq!(
        fail(&format!("--config {f}")),
        (format!("{f}:1: unexpected value 'yes'"), 64)
    );
    let f = temp_file("e.conf", "-o bogus\n");
    assert_eq!(
        fail(&format!("--config {f}")),
        (format!("{f}:1: Illegal suboption \"bogus\""), 1)
    );
    let f = temp_file("f.conf", "--config /etc/other.conf\n");
    assert_eq!(fail(&format!("--config {f}")).1, 64);
    // Cross-checks after parsing are not tied to a line.
    let f = temp_file("g.conf", "-m 1\n");
    assert_eq!(
        fail(&format!("--config {f}")),
        (
            "Cannot set item size limit higher than 1/2 of memory max.".into(),
            64
        )
    );
    let (msg, code) = fail("--config /nonexistent/ferrocache.conf");
    assert_eq!(code, EX_NOINPUT);
    assert!(
        msg.starts_with("memcached: cannot read config file /nonexistent/ferrocache.conf: "),
        "{msg}"
    );
    assert_eq!(
        fail("--config").0,
        "memcached: option '--config' requires an argument"
    );
}

#[test]
fn repo_memcached_conf() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/memcached.conf");
    let c = cfg(&format!("--config {path}"));
    assert_eq!(c.listen_targets(), vec![(Some("127.0.0.1".into()), 11211)]);
    assert_eq!((c.memory_limit_mb, c.max_conns), (64, 1024));
    assert_eq!(c.user.as_deref(), Some("nobody"));
    assert!(!c.daemonize);
    assert!(c.ignored.is_empty());
}

/// memcached 1.6.18's `stats settings` names, in order (from a live server);
/// ours is this list minus the lines we drop.
const MEMCACHED_SETTINGS: &[&str] = &[
    "maxbytes",
    "maxconns",
    "tcpport",
    "udpport",
    "inter",
    "verbosity",
    "oldest",
    "evictions",
    "domain_socket",
    "umask",
    "shutdown_command",
    "growth_factor",
    "chunk_size",
    "num_threads",
    "num_threads_per_udp",
    "stat_key_prefix",
    "detail_enabled",
    "reqs_per_event",
    "cas_enabled",
    "tcp_backlog",
    "binding_protocol",
    "auth_enabled_sasl",
    "auth_enabled_ascii",
    "item_size_max",
    "maxconns_fast",
    "hashpower_init",
    "slab_reassign",
    "slab_automove",
    "slab_automove_ratio",
    "slab_automove_window",
    "slab_chunk_max",
    "lru_crawler",
    "lru_crawler_sleep",
    "lru_crawler_tocrawl",
    "tail_repair_time",
    "flush_enabled",
    "dump_enabled",
    "hash_algorithm",
    "lru_maintainer_thread",
    "lru_segmented",
    "hot_lru_pct",
    "warm_lru_pct",
    "hot_max_factor",
    "warm_max_factor",
    "temp_lru",
    "temporary_ttl",
    "idle_timeout",
    "watcher_logbuf_size",
    "worker_logbuf_size",
    "read_buf_mem_limit",
    "track_sizes",
    "inline_ascii_response",
    "ext_item_size",
    "ext_item_age",
    "ext_low_ttl",
    "ext_recache_rate",
    "ext_wbuf_size",
    "ext_compact_under",
    "ext_drop_under",
    "ext_max_sleep",
    "ext_max_frag",
    "slab_automove_freeratio",
    "ext_drop_unread",
    "ssl_enabled",
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
    "num_napi_ids",
    "memory_file",
];

#[test]
fn settings_stats_order_and_values() {
    let c = cfg("-l 127.0.0.1 -p 23458 -t 4");
    let ours = c.settings_stats();
    // Same relative order as memcached, no names of our own.
    let mut pos = 0;
    for (name, _) in &ours {
        let at = MEMCACHED_SETTINGS[pos..]
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} out of order or unknown"));
        pos += at + 1;
    }
    // Values memcached printed for `-l 127.0.0.1 -p 23458 -U 0` (4 threads), but
    // where a fact about ferrocache differs (commented).
    let want: &[(&str, &str)] = &[
        ("maxbytes", "67108864"),
        ("maxconns", "1024"),
        ("tcpport", "23458"),
        ("udpport", "0"),
        ("inter", "127.0.0.1"),
        ("verbosity", "0"),
        ("oldest", "0"),
        ("evictions", "on"),
        ("domain_socket", "NULL"),
        ("umask", "700"),
        ("shutdown_command", "no"),
        ("growth_factor", "1.25"),
        ("chunk_size", "48"),
        ("num_threads", "4"),
        ("num_threads_per_udp", "4"),
        ("stat_key_prefix", ":"),
        ("detail_enabled", "no"),
        ("reqs_per_event", "20"),
        ("cas_enabled", "yes"),
        ("tcp_backlog", "1024"),
        ("binding_protocol", "auto-negotiate"),
        ("auth_enabled_sasl", "no"),
        ("auth_enabled_ascii", "no"),
        ("item_size_max", "1048576"),
        ("maxconns_fast", "yes"),
        ("hashpower_init", "0"),
        // no slab pages to reassign
        ("slab_reassign", "no"),
        ("slab_automove", "1"),
        ("slab_automove_ratio", "0.80"),
        ("slab_automove_window", "30"),
        ("slab_chunk_max", "524288"),
        ("lru_crawler", "yes"),
        ("lru_crawler_sleep", "100"),
        ("lru_crawler_tocrawl", "0"),
        ("tail_repair_time", "0"),
        ("flush_enabled", "yes"),
        ("dump_enabled", "yes"),
        ("hash_algorithm", "murmur3"),
        // no LRU maintainer
        ("lru_maintainer_thread", "no"),
        // S3-FIFO, not a segmented LRU
        ("lru_segmented", "no"),
        ("hot_lru_pct", "20"),
        ("warm_lru_pct", "40"),
        ("hot_max_factor", "0.20"),
        ("warm_max_factor", "2.00"),
        ("temp_lru", "no"),
        ("temporary_ttl", "61"),
        ("idle_timeout", "0"),
        ("watcher_logbuf_size", "262144"),
        ("worker_logbuf_size", "65536"),
        // memcached: 0 (unlimited); ours is the buffer budget, 32 MiB at -m 64
        ("read_buf_mem_limit", "33554432"),
        ("track_sizes", "no"),
        ("inline_ascii_response", "no"),
        ("ext_item_size", "512"),
        ("ext_item_age", "4294967295"),
        ("ext_low_ttl", "0"),
        ("ext_recache_rate", "2000"),
        ("ext_wbuf_size", "4194304"),
        ("ext_compact_under", "0"),
        ("ext_drop_under", "0"),
        ("ext_max_sleep", "1000000"),
        ("ext_max_frag", "0.80"),
        ("slab_automove_freeratio", "0.010"),
        ("ext_drop_unread", "no"),
        ("ssl_enabled", "no"),
        ("ssl_chain_cert", "(null)"),
        ("ssl_key", "(null)"),
        ("ssl_verify_mode", "0"),
        ("ssl_keyformat", "1"),
        ("ssl_ciphers", "NULL"),
        ("ssl_ca_cert", "NULL"),
        ("ssl_wbuf_size", "16384"),
        ("ssl_session_cache", "no"),
        ("ssl_kernel_tls", "no"),
        ("ssl_min_version", "tlsv1.2"),
        ("num_napi_ids", "(null)"),
        ("memory_file", "(null)"),
    ];
    let got: Vec<(&str, &str)> = ours.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(got, want);

    // Values memcached printed for a custom command line.
    let c = cfg(
        "-l 127.0.0.1,127.0.0.1:23460 -l 127.0.0.1 -p 23459 -U 0 -m 100 -c 500 -t 2 -R 7 \
         -B ascii -I 2m -M -C -f 1.5 -n 64 -b 50 -F -A -D # -vv -o idle_timeout=30",
    );
    let s: std::collections::HashMap<&str, String> = c.settings_stats().into_iter().collect();
    for (n, v) in [
        ("maxbytes", "104857600"),
        ("maxconns", "500"),
        ("tcpport", "23459"),
        ("inter", "127.0.0.1,127.0.0.1:23460"),
        ("verbosity", "2"),
        ("evictions", "off"),
        ("shutdown_command", "yes"),
        ("growth_factor", "1.50"),
        ("chunk_size", "64"),
        ("num_threads", "2"),
        ("num_threads_per_udp", "1"),
        ("stat_key_prefix", "#"),
        ("detail_enabled", "yes"),
        ("reqs_per_event", "7"),
        ("cas_enabled", "no"),
        ("tcp_backlog", "50"),
        ("binding_protocol", "ascii"),
        ("item_size_max", "2097152"),
        ("slab_chunk_max", "524288"),
        ("flush_enabled", "no"),
        ("idle_timeout", "30"),
    ] {
        assert_eq!(s[n], v, "{n}");
    }
    let c = cfg("-s /tmp/mcsock/sock -a 755");
    let s: std::collections::HashMap<&str, String> = c.settings_stats().into_iter().collect();
    assert_eq!(s["domain_socket"], "/tmp/mcsock/sock");
    assert_eq!(s["umask"], "755");
    assert_eq!(s["inter"], "NULL");
    let s: std::collections::HashMap<&str, String> = cfg("-o slab_chunk_max=16")
        .settings_stats()
        .into_iter()
        .collect();
    assert_eq!(s["slab_chunk_max"], "16");
}

#[test]
fn read_buf_mem_limit_sets_the_buffer_budget() {
    assert_eq!(cfg("-m 64").conn_buffer_limit(), 32 << 20);
    assert_eq!(cfg("-m 1024").conn_buffer_limit(), 128 << 20);
    assert_eq!(cfg("-m 65536").conn_buffer_limit(), 1024 << 20);
    assert_eq!(cfg("-o read_buf_mem_limit=5").conn_buffer_limit(), 5 << 20);
    assert_eq!(
        cfg("-o read_buf_mem_limit=0").conn_buffer_limit(),
        usize::MAX
    );
    assert!(cfg("-o read_buf_mem_limit=5").ignored.is_empty());
}

#[test]
fn metrics_listen_and_latency_options() {
    let c = cfg("--metrics-listen 9150");
    assert_eq!(c.metrics_listen, Some(("127.0.0.1".to_string(), 9150)));
    let c = cfg("--metrics-listen=0.0.0.0:9150 -o latency_sample=1,metrics_timeout=2");
    assert_eq!(c.metrics_listen, Some(("0.0.0.0".to_string(), 9150)));
    assert_eq!((c.latency_sample, c.metrics_timeout_secs), (1, 2));
    let c = cfg("--metrics-listen [::1]:9150 -o no_latency");
    assert_eq!(c.metrics_listen, Some(("::1".to_string(), 9150)));
    assert_eq!(c.latency_sample, 0);
    let c = cfg("");
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.latency_sample, crate::latency::DEFAULT_SAMPLE);
    assert_eq!(c.metrics_timeout_secs, 5);
    for bad in ["x", ":1", "h:", "h:70000", "::1:80", "[::1]", "[::1:80"] {
        assert_eq!(parse_metrics_listen(bad), None, "{bad}");
    }
    assert_eq!(
        parse_metrics_listen("localhost:1"),
        Some(("localhost".into(), 1))
    );
}
