//! `--man` and `--completions SHELL` for ferrocache-cli and ferrocache-bench, from
//! their clap definitions (clap_mangen, clap_complete): what the Debian package
//! installs (`contrib/deb/build.sh`). Answered only as the sole arguments, before the
//! command line is parsed, so they need none of the required options.

use std::io::Write;
use std::process::ExitCode;

/// When `args` (without the program name) is `--man` or `--completions SHELL`, prints
/// the man page (roff) or the completion script for `cmd` and returns the exit code.
pub fn answer(cmd: clap::Command, args: &[String]) -> Option<ExitCode> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut out = std::io::stdout().lock();
    match args.as_slice() {
        ["--man"] => {
            let ok = clap_mangen::Man::new(cmd).render(&mut out).is_ok() && out.flush().is_ok();
            Some(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ["--completions", shell] => match shell.parse::<clap_complete::Shell>() {
            Ok(shell) => {
                let mut cmd = cmd;
                let name = cmd.get_name().to_string();
                clap_complete::generate(shell, &mut cmd, name, &mut out);
                Some(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("--completions: {e} (bash, zsh, fish, elvish, powershell)");
                Some(ExitCode::from(2))
            }
        },
        _ => None,
    }
}
