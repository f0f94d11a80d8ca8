//! `txn`: compares, then success and failure requests, read from standard input as etcdctl does
//! (each section ends with an empty line; `-i` prompts for them).

use std::io::BufRead;

use clap::{Args, Parser};
use rampart_proto::etcdserverpb as pb;

use super::client::Client;
use super::kv::{self, DelArgs, GetArgs, PutArgs};
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt;
use crate::output::Printer;

#[derive(Args, Debug, Clone)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short, long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub interactive: bool,
    pub args: Vec<String>,
}

/// One request line inside a txn, parsed with the same flags as the commands.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
enum TxnRequest {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

fn invalid(e: impl Into<String>) -> CtlError {
    CtlError::new(ExitCode::InvalidInput, e)
}

/// Reads one line; etcdctl gives up on end of input inside a section.
fn read_line(input: &mut impl BufRead) -> CtlResult<String> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(_) if line.ends_with('\n') => Ok(line.trim().to_string()),
        Ok(_) => Err(invalid("EOF")),
        Err(e) => Err(invalid(e.to_string())),
    }
}

pub fn parse_compare(line: &str) -> Result<pb::Compare, String> {
    let malformed = || format!("malformed comparison: {line}");
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let rest = rest.trim_start();
    let (key, rest) = take_quoted(rest).ok_or_else(malformed)?;
    let rest = rest.strip_prefix(')').ok_or_else(malformed)?.trim_start();
    let op_len = rest.find(char::is_whitespace).ok_or_else(malformed)?;
    let (op, rest) = rest.split_at(op_len);
    let (val, _) = take_quoted(rest.trim_start()).ok_or_else(malformed)?;
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match op {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => return Err(format!("malformed comparison: {line} (unknown op {op})")),
    };
    let number = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("invalid txn compare request: {line}"))
    };
    let (target, union) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(number(&val)?)),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number(&val)?),
        ),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number(&val)?)),
        "val" | "value" => (CompareTarget::Value, TargetUnion::Value(val.into_bytes())),
        "lease" => (
            CompareTarget::Lease,
            TargetUnion::Lease(
                gofmt::parse_int(&val, 16)
                    .map_err(|_| format!("invalid txn compare request: {line}"))?,
            ),
        ),
        other => {
            return Err(format!(
                "malformed comparison: {line} (unknown target {other})"
            ))
        }
    };
    Ok(pb::Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

/// A Go-quoted string at the start of `s`, and what follows it.
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let quote = s.chars().next()?;
    if quote != '"' && quote != '`' {
        return None;
    }
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == '"' => i += 2,
            c if c == quote as u8 => {
                let lit = &s[..=i];
                return Some((gofmt::unquote(lit)?, &s[i + 1..]));
            }
            _ => i += 1,
        }
    }
    None
}

pub fn parse_request(line: &str) -> Result<pb::RequestOp, String> {
    use pb::request_op::Request;
    let words = gofmt::argify(line).map_err(|_| format!("invalid txn request: {line}"))?;
    if words.len() < 2 {
        return Err(format!("invalid txn compare request: {line}"));
    }
    let parsed = TxnRequest::try_parse_from(super::normalize_switches(words))
        .map_err(|_| format!("invalid txn request: {line}"))?;
    let request = match parsed {
        TxnRequest::Put(a) => {
            Request::RequestPut(kv::put_request(&a, false).map_err(|e| e.message)?)
        }
        TxnRequest::Get(a) => Request::RequestRange(kv::range_request(&a).map_err(|e| e.message)?),
        TxnRequest::Del(a) => {
            Request::RequestDeleteRange(kv::delete_request(&a).map_err(|e| e.message)?)
        }
    };
    Ok(pb::RequestOp {
        request: Some(request),
    })
}

fn read_requests(input: &mut impl BufRead) -> CtlResult<Vec<pb::RequestOp>> {
    let mut ops = Vec::new();
    loop {
        let line = read_line(input)?;
        if line.is_empty() {
            return Ok(ops);
        }
        ops.push(parse_request(&line).map_err(invalid)?);
    }
}

pub async fn txn(client: &Client, printer: &Printer, a: &TxnArgs) -> CtlResult {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let prompt = |s: &str| {
        if a.interactive {
            println!("{s}");
        }
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    prompt("compares:");
    let mut compare = Vec::new();
    loop {
        let line = read_line(&mut input)?;
        if line.is_empty() {
            break;
        }
        compare.push(parse_compare(&line).map_err(invalid)?);
    }
    prompt("success requests (get, put, del):");
    let success = read_requests(&mut input)?;
    prompt("failure requests (get, put, del):");
    let failure = read_requests(&mut input)?;
    let resp = client
        .call(client.kv().txn(pb::TxnRequest {
            compare,
            success,
            failure,
        }))
        .await?;
    printer.txn(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compares_as_etcdctl() {
        let c = parse_compare(r#"mod("key1") > "0""#).unwrap();
        assert_eq!(c.key, b"key1");
        assert_eq!(
            c.target_union,
            Some(pb::compare::TargetUnion::ModRevision(0))
        );
        let c = parse_compare(r#"value("k") = "v 1""#).unwrap();
        assert_eq!(
            c.target_union,
            Some(pb::compare::TargetUnion::Value(b"v 1".to_vec()))
        );
        assert!(parse_compare("bogus").is_err());
    }

    #[test]
    fn parses_requests_as_etcdctl() {
        let op = parse_request(r#"put key1 "overwrote-key1""#).unwrap();
        match op.request {
            Some(pb::request_op::Request::RequestPut(p)) => assert_eq!(p.value, b"overwrote-key1"),
            other => panic!("{other:?}"),
        }
        assert!(parse_request("get").is_err());
        assert!(parse_request("frob a b").is_err());
    }
}
