//! memcached settings that describe memcached's own machinery (its LRU maintainer,
//! slab mover, crawler pacing, extstore, log buffers, TLS options before TLS is
//! served): ferrocache accepts them with `-o` and has no use for them, and keeps
//! them only so `stats settings` prints what memcached 1.6.18 would print for the
//! same command line (memcached's defaults when not given, the given value in
//! memcached's units and format when given). What ferrocache itself does is in the
//! other [`super::Config`] fields.

/// The `-o` settings kept for `stats settings` only (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct CompatSettings {
    /// `slab_automove` (0..2; also set at run time by `slabs automove`).
    pub slab_automove: u32,
    /// `slab_automove_ratio`.
    pub slab_automove_ratio: f64,
    /// `slab_automove_window`.
    pub slab_automove_window: u32,
    /// `lru_crawler_sleep` (microseconds).
    pub lru_crawler_sleep: u32,
    /// `lru_crawler_tocrawl`.
    pub lru_crawler_tocrawl: u32,
    /// `tail_repair_time`.
    pub tail_repair_time: u32,
    /// `hash_algorithm`.
    pub hash_algorithm: String,
    /// `hot_lru_pct`.
    pub hot_lru_pct: i32,
    /// `warm_lru_pct`.
    pub warm_lru_pct: i32,
    /// `hot_max_factor`.
    pub hot_max_factor: f64,
    /// `warm_max_factor`.
    pub warm_max_factor: f64,
    /// `temporary_ttl` given (memcached's `temp_lru`).
    pub temp_lru: bool,
    /// `temporary_ttl`.
    pub temporary_ttl: u32,
    /// `watcher_logbuf_size` in bytes (given in KiB).
    pub watcher_logbuf_size: u64,
    /// `worker_logbuf_size` in bytes (given in KiB).
    pub worker_logbuf_size: u64,
    /// `track_sizes`.
    pub track_sizes: bool,
    /// `inline_ascii_resp`.
    pub inline_ascii_response: bool,
    /// `slab_automove_freeratio`.
    pub slab_automove_freeratio: f64,
    /// `ssl_chain_cert`.
    pub ssl_chain_cert: Option<String>,
    /// `ssl_key`.
    pub ssl_key: Option<String>,
    /// `ssl_verify_mode`.
    pub ssl_verify_mode: u32,
    /// `ssl_keyformat`.
    pub ssl_keyformat: i64,
    /// `ssl_ciphers`.
    pub ssl_ciphers: Option<String>,
    /// `ssl_ca_cert`.
    pub ssl_ca_cert: Option<String>,
    /// `ssl_wbuf_size` in bytes (given in KiB).
    pub ssl_wbuf_size: u64,
    /// `ssl_session_cache`.
    pub ssl_session_cache: bool,
    /// `ssl_kernel_tls`.
    pub ssl_kernel_tls: bool,
    /// `ssl_min_version` (0 = TLS 1.0 .. 3 = TLS 1.3).
    pub ssl_min_version: u32,
}

impl Default for CompatSettings {
    fn default() -> Self {
        CompatSettings {
            slab_automove: 1,
            slab_automove_ratio: 0.8,
            slab_automove_window: 30,
            lru_crawler_sleep: 100,
            lru_crawler_tocrawl: 0,
            tail_repair_time: 0,
            hash_algorithm: "murmur3".into(),
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            hot_max_factor: 0.2,
            warm_max_factor: 2.0,
            temp_lru: false,
            temporary_ttl: 61,
            watcher_logbuf_size: 256 * 1024,
            worker_logbuf_size: 64 * 1024,
            track_sizes: false,
            inline_ascii_response: false,
            slab_automove_freeratio: 0.01,
            ssl_chain_cert: None,
            ssl_key: None,
            ssl_verify_mode: 0,
            ssl_keyformat: 1,
            ssl_ciphers: None,
            ssl_ca_cert: None,
            ssl_wbuf_size: 16 * 1024,
            ssl_session_cache: false,
            ssl_kernel_tls: false,
            ssl_min_version: 2,
        }
    }
}

/// C's `atoi`/`strtoul` leniency for values memcached reads with them: leading
/// digits, anything after ignored, 0 when none.
fn lenient_u64(v: &str) -> u64 {
    let digits: String = v
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

/// C's `atof` leniency: the longest leading float, 0 when none.
fn lenient_f64(v: &str) -> f64 {
    let v = v.trim_start();
    (1..=v.len())
        .rev()
        .filter(|&n| v.is_char_boundary(n))
        .find_map(|n| v[..n].parse::<f64>().ok())
        .unwrap_or(0.0)
}

impl CompatSettings {
    /// Records one `-o name[=value]` that memcached's checks have accepted.
    pub fn apply(&mut self, name: &str, value: &str) {
        let n = || lenient_u64(value);
        let n32 = || n().min(u64::from(u32::MAX)) as u32;
        match name {
            "slab_automove" => self.slab_automove = if value.is_empty() { 1 } else { n32() },
            "no_slab_automove" => self.slab_automove = 0,
            "slab_automove_ratio" => self.slab_automove_ratio = lenient_f64(value),
            "slab_automove_window" => self.slab_automove_window = n32(),
            "lru_crawler_sleep" => self.lru_crawler_sleep = n32(),
            "lru_crawler_tocrawl" => self.lru_crawler_tocrawl = n32(),
            "tail_repair_time" => self.tail_repair_time = n32(),
            "hash_algorithm" => self.hash_algorithm = value.to_string(),
            "hot_lru_pct" => self.hot_lru_pct = n32() as i32,
            "warm_lru_pct" => self.warm_lru_pct = n32() as i32,
            "hot_max_factor" => self.hot_max_factor = lenient_f64(value),
            "warm_max_factor" => self.warm_max_factor = lenient_f64(value),
            "temporary_ttl" => {
                self.temp_lru = true;
                self.temporary_ttl = n32();
            }
            "watcher_logbuf_size" => self.watcher_logbuf_size = n() * 1024,
            "worker_logbuf_size" => self.worker_logbuf_size = n() * 1024,
            "track_sizes" => self.track_sizes = true,
            "inline_ascii_resp" => self.inline_ascii_response = true,
            "no_inline_ascii_resp" => self.inline_ascii_response = false,
            "slab_automove_freeratio" => self.slab_automove_freeratio = lenient_f64(value),
            "ssl_chain_cert" => self.ssl_chain_cert = Some(value.to_string()),
            "ssl_key" => self.ssl_key = Some(value.to_string()),
            "ssl_verify_mode" => self.ssl_verify_mode = n32(),
            "ssl_keyformat" => self.ssl_keyformat = n() as i64,
            "ssl_ciphers" => self.ssl_ciphers = Some(value.to_string()),
            "ssl_ca_cert" => self.ssl_ca_cert = Some(value.to_string()),
            "ssl_wbuf_size" => self.ssl_wbuf_size = n() * 1024,
            "ssl_session_cache" => self.ssl_session_cache = true,
            "ssl_kernel_tls" => self.ssl_kernel_tls = true,
            "ssl_min_version" => self.ssl_min_version = n32(),
            _ => {}
        }
    }

    /// memcached's name for a TLS version number.
    pub fn ssl_version_name(v: u32) -> &'static str {
        match v {
            0 => "tlsv1",
            1 => "tlsv1.1",
            2 => "tlsv1.2",
            _ => "tlsv1.3",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_values_in_memcached_units() {
        let mut c = CompatSettings::default();
        c.apply("watcher_logbuf_size", "128");
        c.apply("temporary_ttl", "90");
        c.apply("slab_automove_ratio", "0.5x");
        c.apply("no_slab_automove", "");
        assert_eq!(c.watcher_logbuf_size, 128 * 1024);
        assert!(c.temp_lru);
        assert_eq!(c.temporary_ttl, 90);
        assert_eq!(c.slab_automove_ratio, 0.5);
        assert_eq!(c.slab_automove, 0);
        assert_eq!(lenient_u64("12abc"), 12);
        assert_eq!(lenient_f64("abc"), 0.0);
    }
}
