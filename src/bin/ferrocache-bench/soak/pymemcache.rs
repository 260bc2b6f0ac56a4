//! pymemcache in a child process.

use super::state::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The pymemcache loop: argv = host, port, seconds. Values are
/// `key|len|crc32 hex|payload` and every hit is checked; exit 1 on any corruption or
/// error, 0 otherwise.
pub(super) const PY_SCRIPT: &str = r#"
import random, sys, time, zlib
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + secs
rng = random.Random(11)
ops = hits = misses = corrupt = errors = cycles = reported = 0

def make(key, n):
    payload = rng.randbytes(n)
    return b"%s|%d|%08x|" % (key, n, zlib.crc32(payload)) + payload

def good(key, v):
    parts = v.split(b"|", 3)
    if len(parts) != 4 or parts[0] != key:
        return False
    try:
        n, c = int(parts[1]), int(parts[2], 16)
    except ValueError:
        return False
    return n == len(parts[3]) and c == zlib.crc32(parts[3])

def report(msg):
    global reported
    if reported < 20:
        print("pymemcache: " + msg, file=sys.stderr, flush=True)
        reported += 1

while time.monotonic() < deadline:
    c = Client((host, port), connect_timeout=5, timeout=5)
    cycles += 1
    try:
        for _ in range(rng.randint(200, 500)):
            key = b"py:%d" % rng.randrange(500)
            r = rng.random()
            if r < 0.5:
                v = c.get(key)
                if v is None:
                    misses += 1
                else:
                    hits += 1
                    if not good(key, v):
                        corrupt += 1
                        report("corrupt value for %r: %r" % (key, v[:80]))
            elif r < 0.9:
                c.set(key, make(key, rng.randint(20, 4000)), expire=rng.choice([0, 0, 2, 5]))
            else:
                c.delete(key)
            ops += 1
            if ops % 20 == 0:
                time.sleep(0.002)
            if time.monotonic() >= deadline:
                break
    except (MemcacheError, OSError) as e:
        errors += 1
        report("error: %r" % (e,))
        time.sleep(0.1)
    finally:
        c.close()
print("%d ops, %d connect-use-close cycles, %d hits, %d misses, %d corrupt, %d errors"
      % (ops, cycles, hits, misses, corrupt, errors), flush=True)
sys.exit(1 if corrupt or errors else 0)
"#;

/// Whether `/usr/bin/python3` can import pymemcache.
pub(super) fn pymemcache_available() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import pymemcache"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process killed and reaped if it is still running when this is dropped.
pub(super) struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub(super) fn pymemcache_thread(sh: &Shared) {
    // The child holds one connection at a time.
    let _held = Held::new(sh);
    let secs = sh.deadline.saturating_duration_since(Instant::now());
    let spawned = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PY_SCRIPT)
        .arg(sh.addr.ip().to_string())
        .arg(sh.addr.port().to_string())
        .arg(format!("{:.1}", secs.as_secs_f64()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(c) => ChildGuard(c),
        Err(e) => return sh.fail(Fail::Error, "pymemcache", format!("spawn python3: {e}")),
    };
    let limit = sh.deadline + Duration::from_secs(30);
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() > limit || sh.stop.load(Ordering::Relaxed) => {
                // Dropping the guard kills and reaps it.
                return sh.fail(
                    Fail::Error,
                    "pymemcache",
                    "the child did not finish in time; killed",
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return sh.fail(Fail::Error, "pymemcache", format!("wait: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.0.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let out = out.trim();
    if status.success() {
        println!("soak: pymemcache: {out}");
    } else {
        sh.fail(
            Fail::Error,
            "pymemcache",
            format!("exited with {status}: {out}"),
        );
    }
}
