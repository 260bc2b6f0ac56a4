//! Settings shared by the criterion benches: short runs, so that `cargo bench` over all
//! three bench files takes a couple of minutes on a 2-core machine. Command-line flags
//! (`cargo bench --bench store -- --measurement-time 5`) still override them.

use std::time::Duration;

use criterion::Criterion;

/// Criterion with a 1 s warm-up, 2 s of measurement and 30 samples per bench.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}
