//! memcached's ASCII authentication file (`-Y FILE`): `user:password` lines, checked
//! by the text protocol's authentication `set` (see `protocol::text::auth`).
//!
//! The rules are memcached 1.6.18's (`authfile.c`), so an existing file means the
//! same here:
//!
//! - Each line is `user:password`: the user is everything before the first `:`, the
//!   password everything after it up to `\r`, `\n` or the end of the file (so a
//!   password may contain `:`).
//! - A line without a `:` — a blank line included — makes the whole file malformed:
//!   the server refuses to start (`Authfile [F] has a malformed entry. Should be
//!   'user:password'`).
//! - A file that cannot be opened stops the server too; an empty file is accepted
//!   (and then nobody can authenticate), as in memcached.
//!
//! Two deliberate differences, both where memcached loses data silently: memcached
//! keeps only the first 8 entries and drops the last byte of a file that does not
//! end in a newline; here every entry counts and the last byte is kept.
//!
//! Passwords are compared in constant time ([`super::ct_eq`]), and every entry is
//! compared, so timing does not tell which users exist.
//!
//! A running server holds the file as a [`LiveAuthFile`]: SIGHUP loads the file again
//! and, as memcached does, swaps the new entries in only when the load succeeded (a
//! missing or malformed file leaves the old entries in force). Connections that have
//! already authenticated stay authenticated.

use std::sync::Arc;

use parking_lot::RwLock;

use super::scram::ct_eq;

/// The loaded `-Y` file.
#[derive(Clone, Debug, Default)]
pub struct AuthFile {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why `-Y FILE` could not be loaded; [`AuthFileError::message`] is memcached's text.
#[derive(Debug)]
pub enum AuthFileError {
    /// The file could not be opened.
    Open(String, std::io::Error),
    /// A line has no `:`.
    Malformed(String),
}

impl AuthFileError {
    /// memcached's stderr text for this failure (exit status 1, `EXIT_FAILURE`).
    pub fn message(&self) -> String {
        match self {
            AuthFileError::Open(path, e) => {
                let why = os_text(e);
                format!("Could not open authfile [{path}] for reading, error {why}: {why}\n")
            }
            // memcached prints this one without a newline.
            AuthFileError::Malformed(path) => {
                format!("Authfile [{path}] has a malformed entry. Should be 'user:password'")
            }
        }
    }
}

/// The OS's text for an error, without Rust's ` (os error N)` suffix.
fn os_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl AuthFile {
    /// Reads `path`. A read error after a successful open (a directory, say) leaves
    /// the file empty, as memcached's `fgets` loop does.
    pub fn load(path: &str) -> Result<AuthFile, AuthFileError> {
        use std::io::Read;
        let mut file =
            std::fs::File::open(path).map_err(|e| AuthFileError::Open(path.to_string(), e))?;
        let mut bytes = Vec::new();
        if let Err(e) = file.read_to_end(&mut bytes) {
            log::warn!("authfile {path}: {e}; no entries loaded");
            return Ok(AuthFile::default());
        }
        AuthFile::parse(&bytes).ok_or_else(|| AuthFileError::Malformed(path.to_string()))
    }

    /// Parses file contents; `None` when a line is malformed.
    pub fn parse(bytes: &[u8]) -> Option<AuthFile> {
        let mut entries = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let end = rest.iter().position(|&b| b == b'\n');
            let line = &rest[..end.unwrap_or(rest.len())];
            rest = end.map_or(&[][..], |e| &rest[e + 1..]);
            // memcached stops reading a line at a NUL byte.
            let line = line.split(|&b| b == 0).next().unwrap_or(&[]);
            let colon = line.iter().position(|&b| b == b':')?;
            let user = &line[..colon];
            let pass = &line[colon + 1..];
            let pass = pass.split(|&b| b == b'\r').next().unwrap_or(&[]);
            entries.push((user.to_vec(), pass.to_vec()));
        }
        Some(AuthFile { entries })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `user` / `password` match an entry. Every entry is compared.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let mut found = false;
        for (u, p) in &self.entries {
            // Both comparisons always run (no short-circuit on the user).
            let user_ok = ct_eq(u, user);
            let pass_ok = ct_eq(p, password);
            found |= user_ok & pass_ok;
        }
        found
    }
}

/// The `-Y` entries a running server checks passwords against, replaced whole when
/// the file is reloaded (SIGHUP). A check sees either the old entries or the new ones,
/// never a mix.
#[derive(Debug, Default)]
pub struct LiveAuthFile {
    current: RwLock<Arc<AuthFile>>,
}

impl LiveAuthFile {
    /// Starts with `file`'s entries.
    pub fn new(file: AuthFile) -> LiveAuthFile {
        LiveAuthFile {
            current: RwLock::new(Arc::new(file)),
        }
    }

    /// The entries in force now.
    pub fn snapshot(&self) -> Arc<AuthFile> {
        self.current.read().clone()
    }

    /// Puts `file`'s entries in force for every check from now on.
    pub fn replace(&self, file: AuthFile) {
        *self.current.write() = Arc::new(file);
    }

    /// Loads `path` again and, if that worked, puts its entries in force; returns the
    /// number of entries now in force. On failure the old entries stay (memcached's
    /// rule) and the error says why.
    pub fn reload(&self, path: &str) -> Result<usize, AuthFileError> {
        let file = AuthFile::load(path)?;
        let n = file.len();
        self.replace(file);
        Ok(n)
    }

    /// Number of entries in force.
    pub fn len(&self) -> usize {
        self.current.read().len()
    }

    /// Whether no entry is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `user` / `password` match an entry in force (see [`AuthFile::check`]).
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        self.snapshot().check(user, password)
    }
}

impl Clone for LiveAuthFile {
    /// A copy holding the entries in force now; later reloads of either do not
    /// reach the other.
    fn clone(&self) -> LiveAuthFile {
        LiveAuthFile {
            current: RwLock::new(self.snapshot()),
        }
    }
}

impl From<AuthFile> for LiveAuthFile {
    fn from(file: AuthFile) -> LiveAuthFile {
        LiveAuthFile::new(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_swaps_only_a_good_file() {
        let dir = std::env::temp_dir().join(format!("ferrocache-authfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("auth");
        let path_s = path.to_string_lossy().into_owned();
        std::fs::write(&path, "alice:old\n").unwrap();
        let live = LiveAuthFile::new(AuthFile::load(&path_s).unwrap());
        assert!(live.check(b"alice", b"old"));
        std::fs::write(&path, "alice:new\nbob:pw\n").unwrap();
        assert_eq!(live.reload(&path_s).unwrap(), 2);
        assert!(live.check(b"alice", b"new") && !live.check(b"alice", b"old"));
        // Malformed, then missing: the entries in force stay.
        std::fs::write(&path, "alice:newer\nno colon\n").unwrap();
        assert!(matches!(
            live.reload(&path_s),
            Err(AuthFileError::Malformed(_))
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(live.reload(&path_s), Err(AuthFileError::Open(..))));
        assert!(live.check(b"alice", b"new") && live.check(b"bob", b"pw"));
        assert_eq!(live.len(), 2);
        let copy = live.clone();
        live.replace(AuthFile::default());
        assert!(live.is_empty() && copy.check(b"bob", b"pw"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_as_memcached_reads_them() {
        let f = AuthFile::parse(b"alice:secret\r\nbob:pw:with:colons\ncarol:last").unwrap();
        assert_eq!(f.len(), 3);
        assert!(f.check(b"alice", b"secret"));
        assert!(!f.check(b"alice", b"secret\r"));
        assert!(f.check(b"bob", b"pw:with:colons"));
        assert!(f.check(b"carol", b"last"));
        assert!(!f.check(b"carol", b"las"));
        assert!(!f.check(b"alice", b"secreX"));
        assert!(!f.check(b"mallory", b"secret"));
        assert!(!f.check(b"", b""));
    }

    #[test]
    fn malformed_and_empty() {
        assert!(AuthFile::parse(b"alice:secret\n\nbob:pw\n").is_none());
        assert!(AuthFile::parse(b"nocolon\n").is_none());
        let empty = AuthFile::parse(b"").unwrap();
        assert!(empty.is_empty());
        assert!(!empty.check(b"", b""));
        // Empty user or password load but can never match a two-token payload.
        let odd = AuthFile::parse(b":empty\nnopw:\n").unwrap();
        assert_eq!(odd.len(), 2);
    }

    #[test]
    fn more_than_eight_entries_all_count() {
        let text: String = (0..12).map(|i| format!("u{i}:p{i}\n")).collect();
        let f = AuthFile::parse(text.as_bytes()).unwrap();
        assert!(f.check(b"u11", b"p11"));
    }

    #[test]
    fn messages() {
        let e = AuthFile::load("/nonexistent/ferrocache-authfile").unwrap_err();
        assert_eq!(
            e.message(),
            "Could not open authfile [/nonexistent/ferrocache-authfile] for reading, \
             error No such file or directory: No such file or directory\n"
        );
        assert_eq!(
            AuthFileError::Malformed("/x".into()).message(),
            "Authfile [/x] has a malformed entry. Should be 'user:password'"
        );
    }
}
