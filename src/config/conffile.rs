//! Debian-style `memcached.conf`: one option per line.
//!
//! - `#` starts a comment (at the start of a line or after a space);
//! - blank lines and lines not starting with `-` are ignored (Debian's
//!   file has lines such as `logfile /var/log/memcached.log`);
//! - an option and its value sit on one line: `-m 64`, `-l 127.0.0.1`,
//!   `-o a=1,b`, `--port=11211`; the value is the rest of the line, so it
//!   may contain spaces;
//! - `-d` is ignored (the caller skips it).

/// One option line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The option and, if present, its value: one or two arguments.
    pub args: Vec<String>,
}

/// Removes a `#` comment that starts the line or follows white space.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// The option lines of a file's text.
pub(crate) fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if !line.starts_with('-') {
            continue;
        }
        let args = match line.find(|c: char| c.is_ascii_whitespace()) {
            Some(sp) => vec![line[..sp].to_string(), line[sp..].trim().to_string()],
            None => vec![line.to_string()],
        };
        out.push(Line {
            number: i + 1,
            args,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines() {
        let text = "# comment\n\nlogfile /var/log/x.log\n-m 64\n  -p   11211  # port\n-M\n\
                    -o a=1, b\n-D#\n--port=5\n";
        let got = lines(text);
        let want = vec![
            Line {
                number: 4,
                args: vec!["-m".into(), "64".into()],
            },
            Line {
                number: 5,
                args: vec!["-p".into(), "11211".into()],
            },
            Line {
                number: 6,
                args: vec!["-M".into()],
            },
            Line {
                number: 7,
                args: vec!["-o".into(), "a=1, b".into()],
            },
            Line {
                number: 8,
                args: vec!["-D#".into()],
            },
            Line {
                number: 9,
                args: vec!["--port=5".into()],
            },
        ];
        assert_eq!(got, want);
    }
}
