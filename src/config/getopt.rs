//! A small `getopt_long(3)` work-alike (glibc flavour), so that option
//! errors read exactly like memcached's: `invalid option -- 'z'`,
//! `option requires an argument -- 'p'`, `unrecognized option '--bogus'`,
//! `option '--dis' is ambiguous; possibilities: ...`.
//!
//! Behaviour copied from glibc by observation, not by code:
//! - short options may be bundled (`-vvd`) and take their value attached
//!   (`-p11211`) or from the next argument (`-p 11211`);
//! - long options take `--name=value` or `--name value` (required values),
//!   only `--name=value` for optional values, and may be abbreviated to any
//!   unambiguous prefix;
//! - arguments that are not options are skipped (memcached ignores them);
//! - `--` ends option processing.

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HasArg {
    /// Never.
    No,
    /// Always.
    Required,
    /// Only as `--name=value`.
    Optional,
}

/// A long option: its name, whether it takes a value, and the short
/// option character it stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LongOpt {
    /// Name without the leading `--`.
    pub name: &'static str,
    /// Value requirement.
    pub has_arg: HasArg,
    /// Equivalent short option (or a private code above `'\u{100}'`).
    pub val: char,
}

/// One parsed option: its short character and its value, if any.
pub(crate) type Parsed = (char, Option<String>);

/// Iterates over the options of an argument list.
pub(crate) struct Getopt<'a> {
    args: &'a [String],
    shortopts: &'static str,
    longopts: &'static [LongOpt],
    /// Index of the argument being looked at.
    idx: usize,
    /// Byte offset inside a bundle of short options (0 = not in a bundle).
    pos: usize,
    done: bool,
    /// Arguments that were not options (glibc permutes them to the end;
    /// memcached ignores them).
    pub skipped: Vec<String>,
}

impl<'a> Getopt<'a> {
    /// Prepares to parse `args` (without the program name).
    pub(crate) fn new(
        args: &'a [String],
        shortopts: &'static str,
        longopts: &'static [LongOpt],
    ) -> Self {
        Getopt {
            args,
            shortopts,
            longopts,
            idx: 0,
            pos: 0,
            done: false,
            skipped: Vec::new(),
        }
    }

    /// What `c` needs, if it is a known short option.
    fn short_kind(&self, c: char) -> Option<HasArg> {
        if c == ':' {
            return None;
        }
        let mut it = self.shortopts.char_indices().peekable();
        while let Some((_, ch)) = it.next() {
            let mut colons = 0;
            while let Some(&(_, ':')) = it.peek() {
                colons += 1;
                it.next();
            }
            if ch == c {
                return Some(match colons {
                    0 => HasArg::No,
                    1 => HasArg::Required,
                    _ => HasArg::Optional,
                });
            }
        }
        None
    }

    fn next_short(&mut self) -> Result<Parsed, String> {
        let arg = &self.args[self.idx];
        let rest = &arg[self.pos..];
        let c = rest.chars().next().unwrap_or('?');
        self.pos += c.len_utf8();
        let at_end = self.pos >= arg.len();
        let kind = self.short_kind(c);
        match kind {
            None => {
                if at_end {
                    self.idx += 1;
                    self.pos = 0;
                }
                Err(format!("invalid option -- '{c}'"))
            }
            Some(HasArg::No) => {
                if at_end {
                    self.idx += 1;
                    self.pos = 0;
                }
                Ok((c, None))
            }
            Some(HasArg::Optional) => {
                let val = if at_end {
                    None
                } else {
                    Some(arg[self.pos..].to_string())
                };
                self.idx += 1;
                self.pos = 0;
                Ok((c, val))
            }
            Some(HasArg::Required) => {
                if !at_end {
                    let val = arg[self.pos..].to_string();
                    self.idx += 1;
                    self.pos = 0;
                    return Ok((c, Some(val)));
                }
                self.idx += 1;
                self.pos = 0;
                match self.args.get(self.idx) {
                    Some(v) => {
                        self.idx += 1;
                        Ok((c, Some(v.clone())))
                    }
                    None => Err(format!("option requires an argument -- '{c}'")),
                }
            }
        }
    }

    fn next_long(&mut self) -> Result<Parsed, String> {
        let arg = &self.args[self.idx];
        self.idx += 1;
        let body = &arg[2..];
        let (name, inline) = match body.find('=') {
            Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
            None => (body, None),
        };
        let found = match self.longopts.iter().find(|o| o.name == name) {
            Some(o) => *o,
            None => {
                let matches: Vec<&LongOpt> = self
                    .longopts
                    .iter()
                    .filter(|o| !name.is_empty() && o.name.starts_with(name))
                    .collect();
                match matches.len() {
                    0 => return Err(format!("unrecognized option '--{body}'")),
                    1 => *matches[0],
                    _ => {
                        let list: Vec<String> =
                            matches.iter().map(|o| format!(" '--{}'", o.name)).collect();
                        return Err(format!(
                            "option '--{body}' is ambiguous; possibilities:{}",
                            list.concat()
                        ));
                    }
                }
            }
        };
        match found.has_arg {
            HasArg::No => match inline {
                Some(_) => Err(format!(
                    "option '--{}' doesn't allow an argument",
                    found.name
                )),
                None => Ok((found.val, None)),
            },
            HasArg::Optional => Ok((found.val, inline.map(str::to_string))),
            HasArg::Required => match inline {
                Some(v) => Ok((found.val, Some(v.to_string()))),
                None => match self.args.get(self.idx) {
                    Some(v) => {
                        self.idx += 1;
                        Ok((found.val, Some(v.clone())))
                    }
                    None => Err(format!("option '--{}' requires an argument", found.name)),
                },
            },
        }
    }
}

impl Iterator for Getopt<'_> {
    /// `Ok((short option, value))`, or `Err(message)` where the message
    /// lacks the leading `program: ` that glibc prints.
    type Item = Result<Parsed, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.pos > 0 {
            return Some(self.next_short());
        }
        loop {
            let arg = match self.args.get(self.idx) {
                Some(a) => a,
                None => {
                    self.done = true;
                    return None;
                }
            };
            if arg == "--" {
                self.idx += 1;
                self.done = true;
                return None;
            }
            if arg.starts_with("--") {
                return Some(self.next_long());
            }
            if arg.len() > 1 && arg.starts_with('-') {
                self.pos = 1;
                return Some(self.next_short());
            }
            // Not an option: glibc permutes it to the end; memcached ignores it.
            self.skipped.push(arg.clone());
            self.idx += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &[LongOpt] = &[
        LongOpt {
            name: "port",
            has_arg: HasArg::Required,
            val: 'p',
        },
        LongOpt {
            name: "disable-cas",
            has_arg: HasArg::No,
            val: 'C',
        },
        LongOpt {
            name: "disable-evictions",
            has_arg: HasArg::No,
            val: 'M',
        },
        LongOpt {
            name: "verbose",
            has_arg: HasArg::Optional,
            val: 'v',
        },
    ];

    fn run(args: &[&str]) -> Vec<Result<Parsed, String>> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Getopt::new(&args, "p:vdCM", LONG).collect()
    }

    #[test]
    fn forms() {
        assert_eq!(
            run(&["-p11", "-p", "12", "--port=13", "--port", "14", "--po=15"]),
            vec![
                Ok(('p', Some("11".into()))),
                Ok(('p', Some("12".into()))),
                Ok(('p', Some("13".into()))),
                Ok(('p', Some("14".into()))),
                Ok(('p', Some("15".into()))),
            ]
        );
        assert_eq!(
            run(&["-vvd", "x", "-", "-vp9"]),
            vec![
                Ok(('v', None)),
                Ok(('v', None)),
                Ok(('d', None)),
                Ok(('v', None)),
                Ok(('p', Some("9".into()))),
            ]
        );
        assert_eq!(
            run(&["--verbose", "3", "--verbose=2"]),
            vec![Ok(('v', None)), Ok(('v', Some("2".into())))]
        );
        assert_eq!(run(&["--", "-z"]), vec![]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            run(&["-vz"]),
            vec![Ok(('v', None)), Err("invalid option -- 'z'".into())]
        );
        assert_eq!(
            run(&["-p"]),
            vec![Err("option requires an argument -- 'p'".into())]
        );
        assert_eq!(
            run(&["--port"]),
            vec![Err("option '--port' requires an argument".into())]
        );
        assert_eq!(
            run(&["--bogus=1"]),
            vec![Err("unrecognized option '--bogus=1'".into())]
        );
        assert_eq!(
            run(&["--disable-cas=1"]),
            vec![Err(
                "option '--disable-cas' doesn't allow an argument".into()
            )]
        );
        assert_eq!(
            run(&["--dis"]),
            vec![Err(
                "option '--dis' is ambiguous; possibilities: '--disable-cas' '--disable-evictions'"
                    .into()
            )]
        );
    }
}
