//! `rampart pki ...` (to be written by the PKI work).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct PkiArgs {}

pub fn run(_args: PkiArgs) -> ExitCode {
    ExitCode::FAILURE
}
