//! `ferrocache passwd`: write a user's salted SCRAM entry into the credentials file.

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::process::ExitCode;

use super::db::{make_salted, split_line};
use super::scram::{ScramHash, DEFAULT_ITERATIONS, MAX_ITERATIONS};

const USAGE: &str = "usage: ferrocache passwd [--file FILE] [--mech scram-sha-256|scram-sha-1]... \
[--iterations N] USER\n\
Reads USER's password (one line) from stdin and writes salted SCRAM entries for USER to FILE\n\
(default: $MEMCACHED_SASL_PWDB), replacing USER's previous lines and keeping all others.\n\
--mech may be given twice for both hashes; default scram-sha-256.\n";

/// Largest password line read from stdin, in bytes.
const MAX_PASSWORD: u64 = 4096;

struct Args {
    file: String,
    hashes: Vec<ScramHash>,
    iterations: u32,
    user: String,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut file = None;
    let mut hashes = Vec::new();
    let mut iterations = DEFAULT_ITERATIONS;
    let mut user = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--file" | "-f" => file = Some(value("--file")?),
            "--mech" | "-m" => {
                let v = value("--mech")?;
                let h =
                    ScramHash::from_tag(&v).ok_or_else(|| format!("unknown mechanism '{v}'"))?;
                if !hashes.contains(&h) {
                    hashes.push(h);
                }
            }
            "--iterations" | "-i" => {
                let v = value("--iterations")?;
                iterations = v
                    .parse()
                    .ok()
                    .filter(|n| (DEFAULT_ITERATIONS..=MAX_ITERATIONS).contains(n))
                    .ok_or_else(|| {
                        format!("--iterations must be {DEFAULT_ITERATIONS}..={MAX_ITERATIONS}")
                    })?;
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option '{s}'")),
            s => {
                if user.replace(s.to_string()).is_some() {
                    return Err("only one USER".to_string());
                }
            }
        }
    }
    let user = user.ok_or_else(|| "USER is missing".to_string())?;
    if user.is_empty()
        || user.starts_with('#')
        || user
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "user name '{user}' must be non-empty, not start with '#', and have no ':', spaces or control characters"
        ));
    }
    let file = match file {
        Some(f) => f,
        None => std::env::var("MEMCACHED_SASL_PWDB")
            .map_err(|_| "no --file and MEMCACHED_SASL_PWDB is not set".to_string())?,
    };
    if hashes.is_empty() {
        hashes.push(ScramHash::Sha256);
    }
    Ok(Args {
        file,
        hashes,
        iterations,
        user,
    })
}

fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_PASSWORD + 1)
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    if line.len() as u64 > MAX_PASSWORD {
        return Err(format!("password longer than {MAX_PASSWORD} bytes"));
    }
    let pw = line
        .strip_suffix('\n')
        .unwrap_or(&line)
        .trim_end_matches('\r')
        .to_string();
    if pw.is_empty() {
        return Err("empty password (give it on stdin, one line)".to_string());
    }
    Ok(pw)
}

/// Replaces `user`'s lines in `old` by `new_lines` (at the place of the first old
/// one, or at the end), keeping every other line as it was.
pub(super) fn replace_user(old: &str, user: &str, new_lines: &[String]) -> String {
    let mut out = String::with_capacity(old.len() + 256);
    let mut placed = false;
    let put_new = |out: &mut String| {
        for l in new_lines {
            out.push_str(l);
            out.push('\n');
        }
    };
    for line in old.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let mine = matches!(split_line(body), Some(Ok((u, _))) if u == user);
        if mine {
            if !placed {
                put_new(&mut out);
                placed = true;
            }
            continue;
        }
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push('\n');
        }
    }
    if !placed {
        put_new(&mut out);
    }
    out
}

fn write_file(path: &str, contents: &str) -> Result<(), String> {
    let p = std::path::Path::new(path);
    let mode = match std::fs::metadata(p) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0o600,
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pwdb".to_string());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, p)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{path}: {e}"));
    }
    Ok(())
}

fn run(args: &[String]) -> Result<String, (String, u8)> {
    let a = parse(args).map_err(|m| {
        if m.is_empty() {
            (String::new(), 0)
        } else {
            (format!("ferrocache passwd: {m}\n{USAGE}"), 64)
        }
    })?;
    let fail = |m: String| (format!("ferrocache passwd: {m}"), 1);
    let old = match std::fs::read_to_string(&a.file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(fail(format!("{}: {e}", a.file))),
    };
    let password = read_password().map_err(fail)?;
    let mut lines = Vec::new();
    for &h in &a.hashes {
        let secret = make_salted(h, &password, a.iterations).map_err(fail)?;
        lines.push(format!("{}:{}", a.user, secret));
    }
    let new = replace_user(&old, &a.user, &lines);
    write_file(&a.file, &new).map_err(fail)?;
    let tags: Vec<&str> = a.hashes.iter().map(|h| h.tag()).collect();
    Ok(format!(
        "ferrocache passwd: wrote {} entry for '{}' to {}",
        tags.join(" and "),
        a.user,
        a.file
    ))
}

/// The `ferrocache passwd` subcommand (`args` are the words after `passwd`):
/// `ferrocache passwd [--file F] [--mech scram-sha-256|scram-sha-1]... [--iterations N] USER`.
///
/// Reads the password from stdin (one line), writes USER's salted SCRAM entries to F
/// (default `$MEMCACHED_SASL_PWDB`), replacing USER's previous lines (plain or salted)
/// and keeping all other lines and the file's mode (a new file gets mode 0600). The
/// file is replaced atomically (written beside it, then renamed). Prints one line
/// naming the user and file on stderr, nothing secret. Exit status: 0 done, 64 usage,
/// 1 other errors.
pub fn passwd_main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(msg) => {
            eprintln!("{msg}");
            ExitCode::SUCCESS
        }
        Err((_, 0)) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err((msg, code)) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}
