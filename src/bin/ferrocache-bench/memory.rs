//! `memory` subcommand (being written).

/// Options of `memory`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `memory`.
pub fn main(_args: Args) -> Result<(), String> {
    Err("not written yet".into())
}
