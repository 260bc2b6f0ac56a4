//! `compare` subcommand (being written).

/// Options of `compare`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `compare`.
pub fn main(_args: Args) -> Result<(), String> {
    Err("not written yet".into())
}
