//! etcd-ca compatible command lines (to be written by the PKI work).
use std::ffi::OsString;
use std::process::ExitCode;

pub fn run(_args: Vec<OsString>) -> ExitCode {
    ExitCode::FAILURE
}
