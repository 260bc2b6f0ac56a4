//! Command line and `memcached.conf`: memcached 1.6.18's flags, names,
//! defaults, messages and exit codes.
//!
//! [`parse_args`] reads the command line the way memcached's `main()` does:
//! glibc `getopt_long` over the same option string and long names (see
//! `getopt`), each value converted with C's `atoi`/`atof`/`strtol` rules
//! (so `-m 64k` is 64 megabytes, as in memcached), the same per-option checks
//! while parsing and the same cross-checks afterwards, with memcached's
//! messages and exit codes (1 for most option errors, 64 = `EX_USAGE` for the
//! later checks). `--config FILE` splices a Debian-style `memcached.conf` in
//! place (see `conffile`).
//!
//! Options memcached knows but we do not act on are accepted and listed in
//! [`Config::ignored`], so the server can log them. Warnings memcached prints
//! while starting anyway are in [`Config::warnings`].
//!
//! The files, bottom to top: `settings` (the `Config` itself and what follows from
//! it), `options` (memcached's option tables), `getopt`, `compat`, `conffile`, `help`
//! (`-h`, `-V`), `manpage`, `parse` (the command line into a `Config`).

pub mod compat;
mod conffile;
mod getopt;
mod help;
mod manpage;
mod options;
mod parse;
mod settings;

pub use help::version_text;
pub use manpage::man_page;
pub use parse::{parse_args, parse_args_as, parse_metrics_listen};
pub use settings::{
    Config, Invocation, ProtocolMode, DEFAULT_SNAPSHOT_LIMIT, EX_NOINPUT, EX_NOUSER, EX_OSERR,
    EX_USAGE, MEMCACHED_VERSION,
};

#[cfg(test)]
mod tests;
