//! This process's CPUs and CPU time, for pinning and for the load generator's own cost.

/// First two CPUs this process may run on.
pub fn two_cpus() -> Option<(usize, usize)> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let mut it = (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false));
    Some((it.next()?, it.next()?))
}

/// CPU time (user + system) this process has used so far.
pub fn own_cpu_time() -> std::time::Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let us = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            std::time::Duration::from_secs_f64(us(u.user_time()) + us(u.system_time()))
        }
        Err(_) => std::time::Duration::ZERO,
    }
}
