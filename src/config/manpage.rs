//! `ferrocache --man`: the manual page, in roff (`man(7)` macros), made from the
//! rows `ferrocache -h` prints ([`Config::help_rows`], [`EXTENDED_HELP`]), so the two
//! cannot disagree. Defaults are the built-in ones; the thread count, which depends
//! on the machine, reads "number of cores".

use std::fmt::Write as _;

use super::help::{EXTENDED_HELP, EXTENDED_IGNORED};
use super::settings::{Config, MEMCACHED_VERSION};

/// Escapes text for roff: backslashes, hyphens (so they stay hyphens, not
/// typographic dashes, and `man` searches find the flags), and a leading `.` or `'`
/// (which would start a request).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// A flag column of `-h` (`-p, --port=<num>`, `-D <char>`, `-W  --disable-watch`)
/// as a roff tag line: flags bold, `<placeholders>` italic.
fn flag_tag(flag: &str) -> String {
    let mut out = String::new();
    let words: Vec<&str> = flag.split_whitespace().collect();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let (word, comma) = match word.strip_suffix(',') {
            Some(w) => (w, ","),
            None => (*word, ""),
        };
        // A bare `-W  --disable-watch` (memcached's spelling) reads as a list too.
        let comma = if comma.is_empty() && i + 1 < words.len() && words[i + 1].starts_with('-') {
            ","
        } else {
            comma
        };
        if let Some(ph) = word.strip_prefix('<').and_then(|w| w.strip_suffix('>')) {
            let _ = write!(out, "\\fI{}\\fR", escape(ph));
        } else {
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (word, None),
            };
            let _ = write!(out, "\\fB{}\\fR", escape(name));
            if let Some(v) = value {
                let v = v.trim_start_matches('<').trim_end_matches('>');
                let _ = write!(out, "=\\fI{}\\fR", escape(v));
            }
        }
        out.push_str(comma);
    }
    out
}

/// Help text broken for a terminal, as one paragraph for roff to fill.
fn paragraph(text: &str) -> String {
    let joined: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    escape(&joined.join(" "))
}

/// The manual page, `ferrocache(1)`, as roff source (`man -l` shows it).
pub fn man_page() -> String {
    let cfg = Config::default();
    let version = env!("CARGO_PKG_VERSION");
    let mut s = String::new();
    let _ = writeln!(
        s,
        ".\\\" ferrocache(1), printed by `ferrocache --man` from the table `ferrocache -h` prints."
    );
    let _ = writeln!(
        s,
        ".TH FERROCACHE 1 \"\" \"ferrocache {}\" \"User Commands\"",
        escape(version)
    );
    s.push_str(
        ".SH NAME\nferrocache \\- a memcached\\-compatible, multi\\-threaded cache server\n",
    );
    s.push_str(
        ".SH SYNOPSIS\n\
         .B ferrocache\n\
         [\\fIoptions\\fR]\n\
         .br\n\
         .B ferrocache passwd\n\
         [\\fIoptions\\fR] \\fIuser\\fR\n\
         .br\n\
         .B ferrocache \\-\\-man\n",
    );
    let _ = writeln!(
        s,
        ".SH DESCRIPTION\n\
         \\fBferrocache\\fR is a cache server that speaks memcached's text, meta and binary \
         protocols and takes memcached {mc}'s options, with the same names, meanings and \
         defaults. Options may also come from a Debian\\-style \\fImemcached.conf\\fR \
         (\\fB\\-\\-config\\fR): one option per line, \\fB#\\fR comments, lines that do not \
         start with \\fB\\-\\fR ignored, \\fB\\-d\\fR ignored.\n\
         .PP\n\
         \\fBferrocache passwd\\fR reads a password on standard input and writes salted SCRAM \
         entries for a user into a SASL credentials file; \\fBferrocache passwd \\-\\-help\\fR \
         prints its options. \\fBferrocache \\-\\-man\\fR, given alone, prints this page.",
        mc = escape(MEMCACHED_VERSION)
    );
    s.push_str(".SH OPTIONS\n");
    for (flag, text) in cfg.help_rows(11211, 0, "number of cores") {
        let _ = writeln!(s, ".TP\n{}\n{}", flag_tag(&flag), paragraph(&text));
    }
    s.push_str(".SS Extended options\nGiven to \\fB\\-o\\fR as a comma separated list, \\fIname\\fR or \\fIname\\fR=\\fIvalue\\fR; those served:\n");
    for (name, text) in EXTENDED_HELP {
        let _ = writeln!(s, ".TP\n\\fB{}\\fR\n{}", escape(name), paragraph(text));
    }
    let _ = writeln!(s, ".PP\n{}", paragraph(EXTENDED_IGNORED));
    s.push_str(
        ".SH FILES\n\
         .TP\n\
         .I /etc/memcached.conf\n\
         Debian's configuration file, read with \\fB\\-\\-config /etc/memcached.conf\\fR \
         (so by the systemd unit \\fIferrocache.service\\fR).\n\
         .SH ENVIRONMENT\n\
         .TP\n\
         .B MEMCACHED_SASL_PWDB\n\
         SASL credentials file when \\fB\\-\\-sasl\\-pwdb\\fR is not given.\n\
         .TP\n\
         .B RUST_LOG\n\
         Log filter, as an alternative to \\fB\\-v\\fR.\n\
         .TP\n\
         .B NOTIFY_SOCKET\n\
         Set by systemd for \\fBType=notify\\fR: \\fBREADY=1\\fR is sent once every listener \
         is bound, \\fBSTOPPING=1\\fR when the server begins to stop.\n\
         .SH SEE ALSO\n\
         .BR memcached (1),\n\
         .BR systemd.service (5)\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_tags() {
        assert_eq!(
            flag_tag("-p, --port=<num>"),
            "\\fB\\-p\\fR, \\fB\\-\\-port\\fR=\\fInum\\fR"
        );
        assert_eq!(flag_tag("-D <char>"), "\\fB\\-D\\fR \\fIchar\\fR");
        assert_eq!(
            flag_tag("-W  --disable-watch"),
            "\\fB\\-W\\fR, \\fB\\-\\-disable\\-watch\\fR"
        );
        assert_eq!(flag_tag("-vv"), "\\fB\\-vv\\fR");
    }

    #[test]
    fn escapes() {
        assert_eq!(escape(".x a-b \\"), "\\&.x a\\-b \\e");
        assert_eq!(paragraph("one\n  two\n"), "one two");
    }

    #[test]
    fn page_has_every_row_and_no_machine_default() {
        let page = man_page();
        assert!(page.starts_with(".\\\""));
        assert!(page.contains(".TH FERROCACHE 1"));
        assert!(page.contains("(default: number of cores)"));
        for (name, _) in EXTENDED_HELP {
            assert!(
                page.contains(&format!("\\fB{}\\fR", escape(name))),
                "{name}"
            );
        }
        // No line may start a roff request by accident.
        for line in page.lines() {
            assert!(!line.starts_with('\''), "{line}");
        }
    }
}
