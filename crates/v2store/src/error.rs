//! etcd's v2 errors: codes, texts and HTTP statuses clients match on.

use serde::Serialize;

/// A v2 error as etcd sends it: `{"errorCode":100,"message":"Key not found","cause":"/foo","index":7}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{error_code}: {message} ({cause}) [{index}]")]
pub struct V2Error {
    #[serde(rename = "errorCode")]
    pub error_code: u32,
    pub message: String,
    pub cause: String,
    pub index: u64,
}

pub const KEY_NOT_FOUND: u32 = 100;
pub const TEST_FAILED: u32 = 101;
pub const NOT_FILE: u32 = 102;
pub const NOT_DIR: u32 = 104;
pub const NODE_EXIST: u32 = 105;
pub const ROOT_READ_ONLY: u32 = 107;
pub const DIR_NOT_EMPTY: u32 = 108;
pub const UNAUTHORIZED: u32 = 110;
pub const VALUE_REQUIRED: u32 = 200;
pub const PREV_VALUE_REQUIRED: u32 = 201;
pub const TTL_NAN: u32 = 202;
pub const INDEX_NAN: u32 = 203;
pub const INVALID_FIELD: u32 = 209;
pub const INVALID_FORM: u32 = 210;
pub const REFRESH_VALUE: u32 = 211;
pub const REFRESH_TTL_REQUIRED: u32 = 212;
pub const EVENT_INDEX_CLEARED: u32 = 401;

fn message(code: u32) -> &'static str {
    match code {
        KEY_NOT_FOUND => "Key not found",
        TEST_FAILED => "Compare failed",
        NOT_FILE => "Not a file",
        NOT_DIR => "Not a directory",
        NODE_EXIST => "Key already exists",
        ROOT_READ_ONLY => "Root is read only",
        DIR_NOT_EMPTY => "Directory not empty",
        UNAUTHORIZED => "The request requires user authentication",
        VALUE_REQUIRED => "Value is Required in POST form",
        PREV_VALUE_REQUIRED => "PrevValue is Required in POST form",
        TTL_NAN => "The given TTL in POST form is not a number",
        INDEX_NAN => "The given index in POST form is not a number",
        INVALID_FIELD => "Invalid field",
        INVALID_FORM => "Invalid POST form",
        REFRESH_VALUE => "Value provided on refresh",
        REFRESH_TTL_REQUIRED => "A TTL must be provided on refresh",
        EVENT_INDEX_CLEARED => "The event in requested index is outdated and cleared",
        _ => "Unknown error",
    }
}

impl V2Error {
    pub fn new(code: u32, cause: impl Into<String>, index: u64) -> V2Error {
        V2Error {
            error_code: code,
            message: message(code).to_string(),
            cause: cause.into(),
            index,
        }
    }

    /// The HTTP status etcd answers this error with.
    pub fn http_status(&self) -> u16 {
        match self.error_code {
            KEY_NOT_FOUND => 404,
            UNAUTHORIZED => 401,
            NOT_FILE | NOT_DIR | ROOT_READ_ONLY | DIR_NOT_EMPTY => 403,
            TEST_FAILED | NODE_EXIST => 412,
            200..=299 | EVENT_INDEX_CLEARED => 400,
            _ => 500,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
