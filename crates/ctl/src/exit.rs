//! etcdctl's exit codes and its "Error: ..." reporting.

use std::fmt;

/// etcdctl 3.4's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Error = 1,
    BadConnection = 2,
    /// Bad input for `txn` and `watch`.
    InvalidInput = 3,
    /// A valid flag with an unsupported value.
    BadFeature = 4,
    Interrupted = 5,
    Io = 6,
    BadArgs = 128,
}

/// A command's failure: what to print after "Error: " and the exit code.
#[derive(Debug, thiserror::Error)]
pub struct CtlError {
    pub code: ExitCode,
    pub message: String,
    /// Already reported (e.g. per-endpoint failures on stderr): exit without printing.
    pub silent: bool,
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl CtlError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> CtlError {
        CtlError {
            code,
            message: message.into(),
            silent: false,
        }
    }

    pub fn error(message: impl Into<String>) -> CtlError {
        CtlError::new(ExitCode::Error, message)
    }

    pub fn bad_args(message: impl Into<String>) -> CtlError {
        CtlError::new(ExitCode::BadArgs, message)
    }

    /// Exit with `code` without another message.
    pub fn silent(code: ExitCode) -> CtlError {
        CtlError {
            code,
            message: String::new(),
            silent: true,
        }
    }

    pub fn with_code(mut self, code: ExitCode) -> CtlError {
        self.code = code;
        self
    }

    /// Prints the error as etcdctl does and returns the exit status.
    pub fn report(&self) -> i32 {
        if !self.silent {
            eprintln!("Error: {}", self.message);
        }
        self.code as i32
    }
}

pub type CtlResult<T = ()> = Result<T, CtlError>;
