//! What one replay of a `hitratio` trace counted: one server (or the in-process store),
//! one cache size.

/// One server's result in one cell.
#[derive(Default)]
pub struct Row {
    /// `memcached`, `ferrocache` or `inproc`.
    pub server: &'static str,
    /// Requests replayed.
    pub requests: u64,
    /// Value bytes of all requests (a hit or a miss of a key counts its value length).
    pub request_bytes: u64,
    /// Requests that missed.
    pub misses: u64,
    /// Value bytes of the requests that missed (the byte miss ratio's numerator).
    pub miss_bytes: u64,
    /// Misses that were the first request of their key.
    pub first_misses: u64,
    /// First requests that hit: must be 0 on a fresh server.
    pub first_hits: u64,
    /// Misses of TTL keys whose last set was at least ttl - 1 s before.
    pub expired_misses: u64,
    /// Stores the server refused (out of memory, too large).
    pub set_failures: u64,
    /// Requests whose get was sent again after their key's set in the same batch.
    pub deferred: u64,
    /// `evictions` at the end.
    pub evictions: u64,
    /// `curr_items` at the end.
    pub curr_items: u64,
    /// `bytes` at the end.
    pub bytes: u64,
    /// `total_malloced` at the end.
    pub total_malloced: u64,
    /// `get_misses` at the end.
    pub server_get_misses: u64,
    /// `get_expired` at the end.
    pub get_expired: u64,
    /// `reclaimed` at the end.
    pub reclaimed: u64,
    /// `slabs_moved` at the end.
    pub slabs_moved: u64,
    /// Resident memory at the end (in-process: the store's segments and index).
    pub rss: u64,
    /// Server CPU seconds over the replay.
    pub cpu: f64,
    /// Wall seconds of the replay.
    pub elapsed: f64,
    /// Worst lag behind a paced replay's schedule, seconds.
    pub max_lag: f64,
}

impl Row {
    /// Misses / requests.
    pub fn miss_ratio(&self) -> f64 {
        self.misses as f64 / self.requests.max(1) as f64
    }
    /// Missed value bytes / requested value bytes.
    pub fn byte_miss_ratio(&self) -> f64 {
        self.miss_bytes as f64 / self.request_bytes.max(1) as f64
    }
    /// Misses no cache could have avoided are left out: first requests, and requests of
    /// a TTL key after its expiry (the client's TTL forces a miss there).
    pub fn avoidable(&self) -> u64 {
        self.misses
            .saturating_sub(self.first_misses)
            .saturating_sub(self.expired_misses)
    }
    /// Avoidable misses / requests.
    pub fn avoidable_ratio(&self) -> f64 {
        self.avoidable() as f64 / self.requests.max(1) as f64
    }
}
