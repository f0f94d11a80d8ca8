//! `put`, `get`, `del` and `compaction`, and the request builders `txn` shares.

use std::io::Read;

use clap::Args;
use rampart_proto::etcdserverpb as pb;

use super::client::Client;
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt;
use crate::output::Printer;

/// The end of the range of keys starting with `key` (clientv3's `GetPrefixRangeEnd`).
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long)]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long)]
    pub ignore_lease: bool,
    /// <key> <value> (<value> can also be given from stdin)
    pub args: Vec<String>,
}

/// `stdin`: read the value from standard input when it is not an argument (not inside txn).
pub fn put_request(a: &PutArgs, stdin: bool) -> CtlResult<pb::PutRequest> {
    let usage = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = a.args.first() else {
        return Err(CtlError::bad_args(usage));
    };
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        match a.args.get(1) {
            Some(v) => value = v.as_bytes().to_vec(),
            None if stdin => {
                let _ = std::io::stdin().read_to_end(&mut value);
                if value.is_empty() {
                    return Err(CtlError::bad_args(usage));
                }
            }
            None => return Err(CtlError::bad_args(usage)),
        }
    }
    let lease = gofmt::parse_int(&a.lease, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long)]
    pub keys_only: bool,
    /// Get only the count
    #[arg(long)]
    pub count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long)]
    pub print_value_only: bool,
    /// <key> [range_end]
    pub args: Vec<String>,
}

pub fn range_request(a: &GetArgs) -> CtlResult<pb::RangeRequest> {
    let Some(key) = a.args.first() else {
        return Err(CtlError::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    };
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut req = pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        limit: a.limit,
        revision: a.rev.max(0),
        keys_only: a.keys_only,
        count_only: a.count_only,
        ..Default::default()
    };
    match a.consistency.as_str() {
        "s" => req.serializable = true,
        "l" => {}
        other => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!(
                    "unknown consistency flag {}",
                    gofmt::quote(other.as_bytes())
                ),
            ))
        }
    }
    if let Some(end) = a.args.get(1) {
        if a.prefix || a.from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = end.as_bytes().to_vec();
    }
    use pb::range_request::{SortOrder, SortTarget};
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort order {}", a.order),
            ))
        }
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort target {}", a.sort_by),
            ))
        }
    };
    // The server returns keys in ascending order anyway (clientv3 drops this sort).
    let order = if target == SortTarget::Key && order == SortOrder::Ascend {
        SortOrder::None
    } else {
        order
    };
    req.sort_order = order as i32;
    req.sort_target = target as i32;
    if a.prefix {
        if key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(key.as_bytes());
        }
    }
    if a.from_key {
        if key.is_empty() {
            req.key = vec![0];
        }
        req.range_end = vec![0];
    }
    Ok(req)
}

#[derive(Args, Debug, Clone)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long)]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// <key> [range_end]
    pub args: Vec<String>,
}

pub fn delete_request(a: &DelArgs) -> CtlResult<pb::DeleteRangeRequest> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let key = &a.args[0];
    let mut req = pb::DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        prev_kv: a.prev_kv,
        ..Default::default()
    };
    if let Some(end) = a.args.get(1) {
        if a.prefix || a.from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = end.as_bytes().to_vec();
    }
    if a.prefix {
        if key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(key.as_bytes());
        }
    }
    if a.from_key {
        if key.is_empty() {
            req.key = vec![0];
        }
        req.range_end = vec![0];
    }
    Ok(req)
}

pub async fn put(client: &Client, printer: &Printer, a: &PutArgs) -> CtlResult {
    let req = put_request(a, true)?;
    let resp = client
        .call_refreshing(|| {
            let (mut kv, req) = (client.kv(), req.clone());
            async move { kv.put(req).await }
        })
        .await?;
    printer.put(&resp)
}

pub async fn get(client: &Client, printer: &Printer, a: &GetArgs) -> CtlResult {
    let req = range_request(a)?;
    let resp = client
        .call_refreshing(|| {
            let (mut kv, req) = (client.kv(), req.clone());
            async move { kv.range(req).await }
        })
        .await?;
    let mut printer = *printer;
    if a.print_value_only {
        if !printer.is_simple() {
            return Err(CtlError::bad_args(
                "print-value-only is only for `--write-out=simple`",
            ));
        }
        printer.value_only = true;
    }
    printer.get(&resp)
}

pub async fn del(client: &Client, printer: &Printer, a: &DelArgs) -> CtlResult {
    let req = delete_request(a)?;
    let resp = client
        .call_refreshing(|| {
            let (mut kv, req) = (client.kv(), req.clone());
            async move { kv.delete_range(req).await }
        })
        .await?;
    printer.del(&resp)
}

#[derive(Args, Debug, Clone)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long)]
    pub physical: bool,
    /// <revision>
    pub args: Vec<String>,
}

pub async fn compaction(client: &Client, a: &CompactionArgs) -> CtlResult {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    }
    let rev = gofmt::parse_int(&a.args[0], 10).map_err(CtlError::error)?;
    client
        .call(client.kv().compact(pb::CompactionRequest {
            revision: rev,
            physical: a.physical,
        }))
        .await?;
    println!("compacted revision {rev}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
