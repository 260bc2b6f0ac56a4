//! `load` subcommand (being written).

/// Options of `load`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `load`.
pub fn main(_args: Args) -> Result<(), String> {
    Err("not written yet".into())
}
