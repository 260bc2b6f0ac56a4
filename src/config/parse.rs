//! Parsing the command line and `memcached.conf` as memcached's `main()` does: each
//! option with its immediate checks, `-o` sub-options, `--config` files spliced in
//! place, the cross-checks at the end.

use std::path::PathBuf;

use super::conffile;
use super::getopt::Getopt;
use super::help::{license_text, version_text};
use super::manpage::man_page;
use super::options::*;
use super::settings::*;
use crate::num;

/// What parsing needs to remember besides the [`Config`] itself.
#[derive(Debug)]
pub(super) struct State {
    program: String,
    /// Raw `-l` string, comma-joined like memcached's `settings.inter`.
    inter: Option<String>,
    port: i32,
    udp_port: i32,
    tcp_specified: bool,
    udp_specified: bool,
    protocol_specified: bool,
    item_size_max: i64,
    slab_chunk_changed: bool,
    hot_lru_pct: i32,
    warm_lru_pct: i32,
    temp_lru: bool,
    lru_maintainer: bool,
    napi_ids: i32,
    /// Inside a `--config` file (which may not name another one).
    in_file: bool,
}

/// What one option does to the parse.
pub(super) enum Step {
    Continue,
    Stop(Invocation),
}

pub(super) type OptResult = Result<Step, (String, i32)>;

/// Parses the command line (without the program name). Messages that glibc
/// prefixes with the program name use `argv[0]` of this process.
pub fn parse_args(args: &[String]) -> Invocation {
    let program = std::env::args_os()
        .next()
        .map_or_else(|| "ferrocache".into(), |p| p.to_string_lossy().into_owned());
    parse_args_as(&program, args)
}

/// [`parse_args`] with an explicit program name (for getopt's messages).
pub fn parse_args_as(program: &str, args: &[String]) -> Invocation {
    // Ours, not memcached's, and only alone, so getopt's table and messages stay
    // memcached's: `ferrocache --man` prints the man page.
    if let [only] = args {
        if only == "--man" {
            return Invocation::Exit {
                stdout: man_page(),
                stderr: String::new(),
                code: 0,
            };
        }
    }
    let mut cfg = Config::default();
    let mut st = State {
        program: program.to_string(),
        inter: None,
        port: 11211,
        udp_port: 0,
        tcp_specified: false,
        udp_specified: false,
        protocol_specified: false,
        item_size_max: 1 << 20,
        slab_chunk_changed: false,
        hot_lru_pct: 20,
        warm_lru_pct: 40,
        temp_lru: false,
        lru_maintainer: true,
        napi_ids: 0,
        in_file: false,
    };
    match cfg.apply_args(&mut st, args) {
        Ok(Step::Continue) => {}
        Ok(Step::Stop(inv)) => return inv,
        Err((msg, code)) => return Invocation::error(msg, code),
    }
    match cfg.finish(&mut st) {
        Ok(()) => Invocation::Run(Box::new(cfg)),
        Err((msg, code)) => Invocation::error(msg, code),
    }
}

/// glibc's message for an option error, then memcached's own line.
pub(super) fn getopt_error(program: &str, msg: &str) -> (String, i32) {
    (format!("{program}: {msg}\nIllegal argument \"?\"\n"), 1)
}

impl Config {
    /// Runs every option of `args` through [`Config::apply_opt`].
    pub(super) fn apply_args(&mut self, st: &mut State, args: &[String]) -> OptResult {
        for item in Getopt::new(args, SHORTOPTS, LONGOPTS) {
            let (opt, val) = match item {
                Ok(p) => p,
                Err(msg) => return Err(getopt_error(&st.program, &msg)),
            };
            if let Step::Stop(inv) = self.apply_opt(st, opt, val.as_deref())? {
                return Ok(Step::Stop(inv));
            }
        }
        Ok(Step::Continue)
    }

    /// Applies one option, with memcached's immediate checks.
    pub(super) fn apply_opt(&mut self, st: &mut State, opt: char, val: Option<&str>) -> OptResult {
        let arg = val.unwrap_or("");
        let fail = |m: &str| Err((m.to_string(), 1));
        match opt {
            'a' => self.unix_mask = num::strtol_base(arg, 8) as u32,
            'A' => self.enable_shutdown = true,
            'Z' => self.tls = true,
            'p' => {
                st.port = num::atoi(arg);
                st.tcp_specified = true;
            }
            's' => self.unix_socket = Some(PathBuf::from(arg)),
            'U' => {
                st.udp_port = num::atoi(arg);
                st.udp_specified = true;
            }
            'm' => {
                // (size_t)atoi(optarg): -1 is 2^64 - 1 megabytes
                self.memory_limit_mb = num::atoi(arg) as i64 as u64;
            }
            'M' => self.disable_evictions = true,
            'c' => {
                let n = num::atoi(arg);
                if n <= 0 {
                    return fail("Maximum connections must be greater than 0");
                }
                self.max_conns = n as usize;
            }
            'k' => {
                self.lock_memory = true;
                self.ignored.push("-k".into());
            }
            'h' => {
                return Ok(Step::Stop(Invocation::Exit {
                    stdout: self.help_text(st.port, st.udp_port),
                    stderr: String::new(),
                    code: 0,
                }))
            }
            'i' => {
                return Ok(Step::Stop(Invocation::Exit {
                    stdout: license_text(),
                    stderr: String::new(),
                    code: 0,
                }))
            }
            'V' => {
                return Ok(Step::Stop(Invocation::Exit {
                    stdout: version_text(),
                    stderr: String::new(),
                    code: 0,
                }))
            }
            'r' => {
                self.enable_coredumps = true;
                self.ignored.push("-r".into());
            }
            'v' => self.verbose = self.verbose.saturating_add(1),
            'd' => self.daemonize = true,
            'l' => match &mut st.inter {
                // memcached skips a value already contained in the list.
                Some(inter) if inter.contains(arg) => {}
                Some(inter) => {
                    inter.push(',');
                    inter.push_str(arg);
                }
                None => st.inter = Some(arg.to_string()),
            },
            'u' => self.user = Some(arg.to_string()),
            'P' => self.pid_file = Some(PathBuf::from(arg)),
            'f' => {
                let f = num::atof(arg);
                if f.is_nan() || f <= 1.0 {
                    return fail("Factor must be greater than 1");
                }
                self.growth_factor = f;
            }
            'n' => {
                let n = num::atoi(arg);
                if n == 0 {
                    return fail("Chunk size must be greater than 0");
                }
                self.chunk_min = n.max(1) as usize;
            }
            't' => {
                let n = num::atoi(arg);
                if n <= 0 {
                    return fail("Number of threads must be greater than 0");
                }
                if n > 64 {
                    self.warnings.push(
                        "WARNING: Setting a high number of workerthreads is not recommended.\n \
                         Set this value to the number of cores in your machine or less."
                            .into(),
                    );
                }
                self.threads = n as usize;
            }
            'D' => {
                let Some(&b) = arg.as_bytes().first() else {
                    return fail("No delimiter specified");
                };
                self.prefix_delimiter = b;
                self.detail_enabled = true;
            }
            'L' => {
                self.large_pages = true;
                self.ignored.push("-L".into());
            }
            'R' => {
                let n = num::atoi(arg);
                if n == 0 {
                    return fail("Number of requests per event must be greater than 0");
                }
                self.reqs_per_event = n.max(1) as usize;
            }
            'C' => self.disable_cas = true,
            'b' => self.backlog = num::atoi(arg),
            'B' => {
                st.protocol_specified = true;
                self.protocol = match arg {
                    "auto" => ProtocolMode::Auto,
                    "binary" => ProtocolMode::Binary,
                    "ascii" => ProtocolMode::Ascii,
                    _ => {
                        return Err((
                            format!(
                                "Invalid value for binding protocol: {arg}\n \
                                 -- should be one of auto, binary, or ascii"
                            ),
                            EX_USAGE,
                        ))
                    }
                }
            }
            'I' => st.item_size_max = parse_item_size(arg),
            'S' => self.sasl = true,
            'F' => self.disable_flush_all = true,
            'X' => self.disable_dumping = true,
            'W' => self.disable_watch = true,
            'Y' => self.auth_file = Some(PathBuf::from(arg)),
            OPT_SASL_PWDB => self.sasl_pwdb = Some(PathBuf::from(arg)),
            'e' => self.memory_file = Some(PathBuf::from(arg)),
            OPT_RESTORE => self.restore_file = Some(PathBuf::from(arg)),
            OPT_SNAPSHOT_DIR => self.snapshot_dir = Some(PathBuf::from(arg)),
            OPT_CLUSTER_CONFIG => self.cluster_config = Some(PathBuf::from(arg)),
            OPT_CLUSTER_READONLY => self.cluster_config_readonly = true,
            OPT_CLUSTER_WRITABLE => self.cluster_config_writable = true,
            OPT_SNAPSHOT_LIMIT => match arg.parse::<u32>() {
                Ok(n) if n >= 1 => self.snapshot_limit = n,
                _ => {
                    return Err((
                        format!(
                        "{}: --snapshot-limit: expected a number of files (1 or more), got '{arg}'",
                        st.program
                    ),
                        EX_USAGE,
                    ))
                }
            },
            OPT_METRICS_LISTEN => match parse_metrics_listen(arg) {
                Some(hp) => self.metrics_listen = Some(hp),
                None => {
                    return Err((
                        format!(
                            "{}: --metrics-listen: expected [<host>:]<port>, got '{arg}'",
                            st.program
                        ),
                        EX_USAGE,
                    ))
                }
            },
            'o' => self.apply_subopts(st, arg)?,
            'N' => {
                let n = num::atoi(arg);
                if n <= 0 {
                    return fail("Maximum number of NAPI IDs must be greater than 0");
                }
                st.napi_ids = n;
                self.napi_ids = n as u32;
                self.ignored.push(format!("-N {arg}"));
            }
            OPT_CONFIG => {
                if st.in_file {
                    return Err((
                        format!(
                            "{}: --config cannot be used inside a config file",
                            st.program
                        ),
                        EX_USAGE,
                    ));
                }
                return self.apply_file(st, arg);
            }
            _ => {
                return Err(getopt_error(
                    &st.program,
                    &format!("invalid option -- '{opt}'"),
                ))
            }
        }
        Ok(Step::Continue)
    }

    /// Reads `path` as a `memcached.conf` and applies its options in place.
    pub(super) fn apply_file(&mut self, st: &mut State, path: &str) -> OptResult {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                format!("{}: cannot read config file {path}: {e}", st.program),
                EX_NOINPUT,
            )
        })?;
        st.in_file = true;
        let result = self.apply_conf_text(st, path, &text);
        st.in_file = false;
        result
    }

    /// Applies the options of a `memcached.conf` text; errors name the file
    /// and line (`FILE:LINE: message`).
    pub(super) fn apply_conf_text(&mut self, st: &mut State, path: &str, text: &str) -> OptResult {
        for line in conffile::lines(text) {
            let at = |msg: &str| format!("{path}:{}: {msg}", line.number);
            let mut getopt = Getopt::new(&line.args, SHORTOPTS, LONGOPTS);
            for item in getopt.by_ref() {
                let (opt, val) = match item {
                    Ok(p) => p,
                    Err(msg) => return Err((at(&msg), 1)),
                };
                if opt == 'd' {
                    // Debian's conf files are read by init scripts that
                    // daemonize on their own; `-d` there is ignored.
                    continue;
                }
                match self.apply_opt(st, opt, val.as_deref()) {
                    Ok(Step::Continue) => {}
                    Ok(Step::Stop(inv)) => return Ok(Step::Stop(inv)),
                    Err((msg, code)) => return Err((at(msg.trim_end()), code)),
                }
            }
            if let Some(extra) = getopt.skipped.first() {
                return Err((at(&format!("unexpected value '{extra}'")), EX_USAGE));
            }
        }
        Ok(Step::Continue)
    }

    /// Applies `-o a=1,b,...` with memcached's checks and messages.
    pub(super) fn apply_subopts(
        &mut self,
        st: &mut State,
        list: &str,
    ) -> Result<(), (String, i32)> {
        if list.is_empty() {
            return Ok(());
        }
        for token in list.split(',') {
            let (name, value) = match token.find('=') {
                Some(eq) => (&token[..eq], Some(&token[eq + 1..])),
                None => (token, None),
            };
            if !SUBOPTS.contains(&name) && !OUR_SUBOPTS.contains(&name) {
                return Err((format!("Illegal suboption \"{token}\""), 1));
            }
            self.apply_subopt(st, name, value)?;
            if is_extstore_subopt(name) {
                return Err((extstore_refusal(token), EX_USAGE));
            }
            self.extended
                .push((name.to_string(), value.map(str::to_string)));
            if !SUBOPTS_USED.contains(&name) && !OUR_SUBOPTS.contains(&name) {
                self.ignored.push(format!("-o {token}"));
            }
        }
        Ok(())
    }

    pub(super) fn apply_subopt(
        &mut self,
        st: &mut State,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), (String, i32)> {
        let err = |m: String| Err((m, 1));
        // Options whose value memcached requires, and its message when absent.
        let missing = match name {
            "hashpower" | "tail_repair_time" | "idle_timeout" => {
                Some(format!("Missing numeric argument for {name}"))
            }
            "lru_crawler_sleep" | "lru_crawler_tocrawl" => Some(format!("Missing {name} value")),
            "ext_path" => Some("missing argument to ext_path, ie: ext_path=/d/file:5G".into()),
            "slab_automove_ratio"
            | "slab_automove_window"
            | "hash_algorithm"
            | "hot_lru_pct"
            | "warm_lru_pct"
            | "hot_max_factor"
            | "warm_max_factor"
            | "temporary_ttl"
            | "watcher_logbuf_size"
            | "worker_logbuf_size"
            | "slab_chunk_max"
            | "read_buf_mem_limit"
            | "ssl_chain_cert"
            | "ssl_key"
            | "ssl_verify_mode"
            | "ssl_keyformat"
            | "ssl_ciphers"
            | "ssl_ca_cert"
            | "ssl_wbuf_size"
            | "ssl_min_version"
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
            | "ext_max_sleep"
            | "ext_max_frag"
            | "slab_automove_freeratio"
            | "latency_sample"
            | "metrics_timeout" => Some(format!("Missing {name} argument")),
            _ => None,
        };
        let v = match (value, missing) {
            (None, Some(m)) => return err(m),
            (Some(v), _) => v,
            (None, None) => "",
        };
        let unparsable = || Err((format!("could not parse argument to {name}"), 1));
        match name {
            "maxconns_fast" => self.maxconns_fast = true,
            "no_maxconns_fast" => self.maxconns_fast = false,
            "hashpower" => {
                let n = num::atoi(v);
                if n < 12 {
                    return err(format!("Initial hashtable multiplier of {n} is too low"));
                }
                if n > 32 {
                    return err(format!(
                        "Initial hashtable multiplier of {n} is too high\n\
                         Choose a value based on \"STAT hash_power_level\" from a running instance"
                    ));
                }
                self.hashpower_init = n as u32;
            }
            "slab_automove" if value.is_some() && !(0..=2).contains(&num::atoi(v)) => {
                return err("slab_automove must be between 0 and 2".into());
            }
            "slab_automove_ratio"
                if num::atof(v).is_nan() || num::atof(v) <= 0.0 || num::atof(v) > 1.0 =>
            {
                return err("slab_automove_ratio must be > 0 and < 1".into());
            }
            "slab_automove_window" if num::atoi(v) < 3 => {
                return err("slab_automove_window must be > 2".into());
            }
            "tail_repair_time" if num::atoi(v) < 10 => {
                return err("Cannot set tail_repair_time to less than 10 seconds".into());
            }
            "hash_algorithm" if !matches!(v, "jenkins" | "murmur3" | "xxh3") => {
                return err("Unknown hash_algorithm option (jenkins, murmur3, xxh3)".into());
            }
            "lru_crawler_sleep" if !(0..=1_000_000).contains(&num::atoi(v)) => {
                return err("LRU crawler sleep must be between 0 and 1 second".into());
            }
            "lru_crawler_tocrawl" if safe_strtoul(v).is_none() => {
                return err("lru_crawler_tocrawl takes a numeric 32bit value".into());
            }
            "lru_maintainer" => st.lru_maintainer = true,
            "no_lru_maintainer" => st.lru_maintainer = false,
            "hot_lru_pct" | "warm_lru_pct" => {
                let n = num::atoi(v);
                if !(1..80).contains(&n) {
                    return err(format!("{name} must be > 1 and < 80"));
                }
                if name == "hot_lru_pct" {
                    st.hot_lru_pct = n;
                } else {
                    st.warm_lru_pct = n;
                }
            }
            "hot_max_factor" | "warm_max_factor"
                if num::atof(v).is_nan() || num::atof(v) <= 0.0 =>
            {
                return err(format!("{name} must be > 0"));
            }
            "temporary_ttl" => st.temp_lru = true,
            "idle_timeout" => self.idle_timeout = num::atoi(v).max(0) as u32,
            "read_buf_mem_limit" => match safe_strtoul(v) {
                Some(n) => self.read_buf_mem_limit = Some(u64::from(n)),
                None => return unparsable(),
            },
            "watcher_logbuf_size" | "worker_logbuf_size" | "ssl_wbuf_size"
                if safe_strtoul(v).is_none() =>
            {
                return unparsable();
            }
            "slab_chunk_max" => match safe_strtol(v) {
                Some(n) if n > 0 => {
                    self.slab_chunk_max = n as usize;
                    st.slab_chunk_changed = true;
                }
                // memcached prints this and then crashes on 0; we stop.
                _ => return unparsable(),
            },
            "ssl_keyformat" if safe_strtol(v).is_none() => return unparsable(),
            "ssl_verify_mode" | "ssl_min_version" => {
                let what = if name == "ssl_verify_mode" {
                    "Invalid ssl_verify_mode. Use help to see valid options."
                } else {
                    "Invalid ssl_min_version. Use help to see valid options."
                };
                match safe_strtoul(v) {
                    None => return unparsable(),
                    Some(n) if n > 3 => return err(what.into()),
                    Some(_) => {}
                }
            }
            "resp_obj_mem_limit" => self.warnings.push(
                "DEPRECATED: resp_obj_mem_limit no longer used. See read_buf_mem_limit,".into(),
            ),
            "ext_page_size" | "ext_wbuf_size" | "ext_threads" | "ext_io_depth"
            | "ext_item_size" | "ext_item_age" | "ext_low_ttl" | "ext_recache_rate"
            | "ext_compact_under" | "ext_drop_under" | "ext_max_sleep"
                if safe_strtoul(v).is_none() =>
            {
                return unparsable();
            }
            "no_latency" => self.latency_sample = 0,
            "latency_sample" => match v.parse::<u32>() {
                Ok(n) => self.latency_sample = n,
                Err(_) => return unparsable(),
            },
            "metrics_timeout" => match v.parse::<u32>() {
                Ok(n) if n > 0 => self.metrics_timeout_secs = n,
                _ => return unparsable(),
            },
            "no_hotkeys" => self.insight.hotkeys = false,
            "no_sizing" => self.insight.sizing = false,
            "no_miss_reasons" => self.insight.miss_reasons = false,
            "no_insight" => {
                self.insight = crate::insight::InsightConfig {
                    hotkeys: false,
                    sizing: false,
                    miss_reasons: false,
                }
            }
            "debugtime" => {
                self.debugtime = true;
                if let Some(v) = value {
                    match v.parse::<i64>() {
                        Ok(n) => self.debugtime_offset = n,
                        Err(_) => return unparsable(),
                    }
                }
            }
            _ => {}
        }
        self.compat.apply(name, v);
        Ok(())
    }

    /// memcached's checks after all options are read, in its order.
    pub(super) fn finish(&mut self, st: &mut State) -> Result<(), (String, i32)> {
        let usage = |m: String| Err((m, EX_USAGE));
        if st.napi_ids > 0 && st.napi_ids as usize > self.threads {
            return usage(format!(
                "Number of napi_ids({}) cannot be greater than number of threads({})",
                st.napi_ids, self.threads
            ));
        }
        let item = st.item_size_max;
        if item < 1024 {
            return usage("Item max size cannot be less than 1024 bytes.".into());
        }
        if item as u64 > self.mem_limit_bytes() as u64 / 2 {
            return usage("Cannot set item size limit higher than 1/2 of memory max.".into());
        }
        if item > 1024 * 1024 * 1024 {
            return usage("Cannot set item size limit higher than a gigabyte.".into());
        }
        self.item_size_max = item as usize;
        if self.item_size_max > SLAB_PAGE_SIZE && !st.slab_chunk_changed {
            self.slab_chunk_max = SLAB_PAGE_SIZE / 2;
        }
        let chunk = self.slab_chunk_max;
        if chunk > self.item_size_max {
            return usage(format!(
                "slab_chunk_max (bytes: {chunk}) cannot be larger than -I (item_size_max {item})"
            ));
        }
        if self.item_size_max % chunk != 0 {
            return usage(format!(
                "-I (item_size_max: {item}) must be evenly divisible by slab_chunk_max (bytes: {chunk})"
            ));
        }
        if SLAB_PAGE_SIZE % chunk != 0 {
            return usage(format!(
                "slab_chunk_max (bytes: {chunk}) must divide evenly into {SLAB_PAGE_SIZE} (slab_page_size)"
            ));
        }
        if st.hot_lru_pct + st.warm_lru_pct > 80 {
            return usage("hot_lru_pct + warm_lru_pct cannot be more than 80% combined".into());
        }
        if st.temp_lru && !st.lru_maintainer {
            return usage("temporary_ttl requires lru_maintainer to be enabled".into());
        }
        if self.sasl {
            if !st.protocol_specified {
                self.protocol = ProtocolMode::Binary;
            } else if self.protocol != ProtocolMode::Binary {
                return usage(
                    "ERROR: You cannot allow the ASCII protocol while using SASL.".into(),
                );
            }
            if st.udp_port != 0 {
                return usage(
                    "ERROR: Cannot enable UDP while using binary SASL authentication.".into(),
                );
            }
        }
        if self.auth_file.is_some() {
            if !st.protocol_specified {
                self.protocol = ProtocolMode::Ascii;
            } else if self.protocol != ProtocolMode::Ascii {
                return usage(
                    "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens."
                        .into(),
                );
            }
            if st.udp_port != 0 {
                return usage(
                    "Cannot use UDP with ascii authentication enabled (-U 0 to disable)".into(),
                );
            }
        }
        if self.cluster_config_writable && self.cluster_config_readonly {
            return usage(
                "--cluster-config-writable and --cluster-config-readonly contradict each other"
                    .into(),
            );
        }
        if st.udp_specified && st.udp_port != 0 && !st.tcp_specified {
            st.port = st.udp_port;
        }
        if st.port > 65535 {
            return usage(format!("ERROR: Invalid port number {}.", st.port));
        }
        // memcached ends up on an ephemeral port for a negative -p.
        self.port = st.port.max(0) as u16;
        // memcached hands -U to the socket layer unchecked: it wraps.
        self.udp_port = st.udp_port as u16;
        if let Some(inter) = &st.inter {
            self.listen = inter
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        if self.hashpower_init > 0 {
            // memcached sizes its item lock table from the thread count and
            // refuses a hash table that is not bigger.
            let lock_power = match self.threads {
                0..=2 => 10,
                3 => 11,
                4 => 12,
                _ => 13,
            };
            if self.hashpower_init <= lock_power {
                return Err((
                    format!(
                        "Hash table power size ({}) cannot be equal to or less than item lock table ({lock_power})\n\
                         Item lock table grows with `-t N` (worker threadcount)\n\
                         Hash table grows with `-o hashpower=N` ",
                        self.hashpower_init
                    ),
                    1,
                ));
            }
        }
        Ok(())
    }
}

/// `-I` value: a number with an optional `k`/`m` suffix, computed in C
/// `int` arithmetic like memcached (so `2048m` wraps negative).
pub(super) fn parse_item_size(arg: &str) -> i64 {
    let (num, mult) = match arg.as_bytes().last() {
        Some(b'k' | b'K') => (&arg[..arg.len() - 1], 1024),
        Some(b'm' | b'M') => (&arg[..arg.len() - 1], 1024 * 1024),
        _ => (arg, 1),
    };
    num::atoi(num).wrapping_mul(mult) as i64
}

/// memcached's `safe_strtoul` ([`crate::num::strtoul`]) on an option's value.
pub(super) fn safe_strtoul(s: &str) -> Option<u32> {
    crate::num::strtoul(s.as_bytes())
}

/// memcached's `safe_strtol` ([`crate::num::strtol`]) on an option's value.
pub(super) fn safe_strtol(s: &str) -> Option<i32> {
    crate::num::strtol(s.as_bytes())
}

/// `--metrics-listen`'s value: `PORT` (127.0.0.1), `HOST:PORT` or `[V6]:PORT`.
pub fn parse_metrics_listen(arg: &str) -> Option<(String, u16)> {
    if let Ok(port) = arg.parse::<u16>() {
        return Some(("127.0.0.1".into(), port));
    }
    let (host, port) = arg.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}
