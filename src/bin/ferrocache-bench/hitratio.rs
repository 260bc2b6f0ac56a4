//! `hitratio` subcommand (being written).

/// Options of `hitratio`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `hitratio`.
pub fn main(_args: Args) -> Result<(), String> {
    Err("not written yet".into())
}
