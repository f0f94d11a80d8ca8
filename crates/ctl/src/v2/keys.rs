//! The v2 key commands: `set get ls mk mkdir setdir rm rmdir update updatedir watch exec-watch`,
//! printed as etcdctl 2 does (`-o simple|extended|json`).

use std::io::Read;

use clap::Args;
use serde_json::Value;

use super::http::{form, key_path, HttpResponse};
use super::{exit, Ctx, V2Error};
use crate::exit::{CtlError, CtlResult, ExitCode};

#[derive(Args, Debug)]
pub struct KeyArg {
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// key time-to-live in seconds
    #[arg(long, default_value_t = 0)]
    ttl: i64,
    /// previous value
    #[arg(long, default_value = "")]
    swap_with_value: String,
    /// previous index
    #[arg(long, default_value_t = 0)]
    swap_with_index: u64,
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MkArgs {
    /// create in-order key under directory <key>
    #[arg(long)]
    in_order: bool,
    /// key time-to-live in seconds
    #[arg(long, default_value_t = 0)]
    ttl: i64,
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// key time-to-live in seconds
    #[arg(long, default_value_t = 0)]
    ttl: i64,
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DirArgs {
    /// key time-to-live in seconds
    #[arg(long, default_value_t = 0)]
    ttl: i64,
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// removes the key if it is an empty directory or a key-value pair
    #[arg(long)]
    dir: bool,
    /// removes the key and all child keys(if it is a directory)
    #[arg(short, long)]
    recursive: bool,
    /// previous value
    #[arg(long, default_value = "")]
    with_value: String,
    /// previous index
    #[arg(long, default_value_t = 0)]
    with_index: u64,
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// returns result in sorted order
    #[arg(long)]
    sort: bool,
    /// require quorum for get request
    #[arg(short, long)]
    quorum: bool,
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// returns result in sorted order
    #[arg(long)]
    sort: bool,
    /// returns all key names recursively for the given path
    #[arg(short, long)]
    recursive: bool,
    /// append slash (/) to directories
    #[arg(short = 'p')]
    p: bool,
    /// require quorum for get request
    #[arg(short, long)]
    quorum: bool,
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// forever watch a key until CTRL+C
    #[arg(short, long)]
    forever: bool,
    /// watch after the given index
    #[arg(long, default_value_t = 0)]
    after_index: u64,
    /// returns all values for key and child keys
    #[arg(short, long)]
    recursive: bool,
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecWatchArgs {
    /// watch after the given index
    #[arg(long, default_value_t = 0)]
    after_index: u64,
    /// watch all values for key and child keys
    #[arg(short, long)]
    recursive: bool,
    #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
    args: Vec<String>,
}

/// The v2 client's error text: `100: Key not found (/foo) [7]`.
pub fn error_text(json: &str) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(v) => format!(
            "{}: {} ({}) [{}]",
            v["errorCode"].as_u64().unwrap_or(0),
            v["message"].as_str().unwrap_or(""),
            v["cause"].as_str().unwrap_or(""),
            v["index"].as_u64().unwrap_or(0)
        ),
        Err(_) => json.to_string(),
    }
}

/// A parsed keys-API answer.
pub struct KeysResponse {
    pub action: String,
    pub node: Value,
    pub prev_node: Option<Value>,
    pub index: u64,
}

fn bad_args(msg: &str) -> CtlError {
    eprintln!("Error:  {msg}");
    CtlError::silent(ExitCode::Error)
}

fn arg_or_stdin(args: &[String], i: usize) -> Option<String> {
    if let Some(v) = args.get(i) {
        return Some(v.clone());
    }
    let mut s = String::new();
    let _ = std::io::stdin().read_to_string(&mut s);
    (!s.is_empty()).then_some(s)
}

fn parse(resp: HttpResponse) -> Result<KeysResponse, V2Error> {
    let text = String::from_utf8_lossy(&resp.body).trim_end().to_string();
    let v: Value = serde_json::from_str(&text).map_err(|_| {
        V2Error::Other(
            "client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint".into(),
        )
    })?;
    if resp.status >= 400 || v.get("errorCode").is_some() {
        return Err(V2Error::Server(text));
    }
    Ok(KeysResponse {
        action: v["action"].as_str().unwrap_or("").to_string(),
        node: v["node"].clone(),
        prev_node: v.get("prevNode").cloned().filter(|n| !n.is_null()),
        index: resp.etcd_index,
    })
}

async fn call(
    ctx: &Ctx,
    method: &str,
    key: &str,
    query: &[(&str, String)],
    body: Option<String>,
) -> CtlResult<KeysResponse> {
    let mut path = format!("/v2/keys{}", key_path(key));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&form(query));
    }
    let resp = ctx
        .client
        .request(method, &path, body, Some(ctx.total_timeout))
        .await
        .map_err(|e| ctx.fail(exit::BAD_CONNECTION, V2Error::Other(e)))?;
    parse(resp).map_err(|e| ctx.fail(exit::SERVER_ERROR, e))
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A node as Go's `json.Marshal(client.Node)`.
fn node_json(n: &Value) -> String {
    let mut out = format!("{{\"key\":{}", json_string(n["key"].as_str().unwrap_or("")));
    if n["dir"].as_bool() == Some(true) {
        out.push_str(",\"dir\":true");
    }
    out.push_str(&format!(
        ",\"value\":{}",
        json_string(n["value"].as_str().unwrap_or(""))
    ));
    match n.get("nodes").and_then(Value::as_array) {
        Some(children) => {
            let c: Vec<String> = children.iter().map(node_json).collect();
            out.push_str(&format!(",\"nodes\":[{}]", c.join(",")));
        }
        None => out.push_str(",\"nodes\":null"),
    }
    out.push_str(&format!(
        ",\"createdIndex\":{},\"modifiedIndex\":{}",
        n["createdIndex"].as_u64().unwrap_or(0),
        n["modifiedIndex"].as_u64().unwrap_or(0)
    ));
    if let Some(exp) = n.get("expiration").and_then(Value::as_str) {
        out.push_str(&format!(",\"expiration\":{}", json_string(exp)));
    }
    if let Some(ttl) = n.get("ttl").and_then(Value::as_i64).filter(|t| *t != 0) {
        out.push_str(&format!(",\"ttl\":{ttl}"));
    }
    out.push('}');
    out
}

fn value_of(n: &Value) -> &str {
    n["value"].as_str().unwrap_or("")
}

/// etcdctl 2's `printResponseKey`.
pub fn print_response(r: &KeysResponse, format: &str) {
    match format {
        "simple" => {
            if r.action != "delete" {
                println!("{}", value_of(&r.node));
            } else {
                println!(
                    "PrevNode.Value: {}",
                    r.prev_node.as_ref().map(value_of).unwrap_or("")
                );
            }
        }
        "extended" => {
            println!("Key: {}", r.node["key"].as_str().unwrap_or(""));
            println!(
                "Created-Index: {}",
                r.node["createdIndex"].as_u64().unwrap_or(0)
            );
            println!(
                "Modified-Index: {}",
                r.node["modifiedIndex"].as_u64().unwrap_or(0)
            );
            if let Some(prev) = &r.prev_node {
                println!("PrevNode.Value: {}", value_of(prev));
            }
            println!("TTL: {}", r.node["ttl"].as_i64().unwrap_or(0));
            println!("Index: {}", r.index);
            if r.action != "delete" {
                println!();
                println!("{}", value_of(&r.node));
            }
        }
        "json" => println!(
            "{{\"action\":{},\"node\":{},\"prevNode\":{}}}",
            json_string(&r.action),
            node_json(&r.node),
            r.prev_node
                .as_ref()
                .map(node_json)
                .unwrap_or_else(|| "null".into())
        ),
        other => eprintln!("Unsupported output format: {other}"),
    }
}

fn is_dir(n: &Value) -> bool {
    n["dir"].as_bool() == Some(true)
}

fn ttl_pair(ttl: i64) -> Option<(&'static str, String)> {
    (ttl != 0).then(|| ("ttl", ttl.to_string()))
}

pub async fn set(ctx: &Ctx, a: &SetArgs) -> CtlResult {
    let Some(key) = a.args.first() else {
        return Err(bad_args("key required"));
    };
    let Some(value) = arg_or_stdin(&a.args, 1) else {
        return Err(bad_args("value required"));
    };
    let mut body = vec![("value", value)];
    body.extend(ttl_pair(a.ttl));
    let mut query = Vec::new();
    if !a.swap_with_value.is_empty() {
        query.push(("prevValue", a.swap_with_value.clone()));
    }
    if a.swap_with_index != 0 {
        query.push(("prevIndex", a.swap_with_index.to_string()));
    }
    let r = call(ctx, "PUT", key, &query, Some(form(&body))).await?;
    print_response(&r, &ctx.output);
    Ok(())
}

pub async fn update(ctx: &Ctx, a: &UpdateArgs) -> CtlResult {
    let Some(key) = a.args.first() else {
        return Err(bad_args("key required"));
    };
    let Some(value) = arg_or_stdin(&a.args, 1) else {
        return Err(bad_args("value required"));
    };
    let mut body = vec![("value", value)];
    body.extend(ttl_pair(a.ttl));
    let r = call(
        ctx,
        "PUT",
        key,
        &[("prevExist", "true".into())],
        Some(form(&body)),
    )
    .await?;
    print_response(&r, &ctx.output);
    Ok(())
}

pub async fn mk(ctx: &Ctx, a: &MkArgs) -> CtlResult {
    let Some(key) = a.args.first() else {
        return Err(bad_args("key required"));
    };
    let Some(value) = arg_or_stdin(&a.args, 1) else {
        return Err(bad_args("value required"));
    };
    let mut body = vec![("value", value)];
    body.extend(ttl_pair(a.ttl));
    let r = if a.in_order {
        call(ctx, "POST", key, &[], Some(form(&body))).await?
    } else {
        call(
            ctx,
            "PUT",
            key,
            &[("prevExist", "false".into())],
            Some(form(&body)),
        )
        .await?
    };
    print_response(&r, &ctx.output);
    Ok(())
}

/// `mkdir` (must not exist), `setdir` (either), `updatedir` (must exist).
pub async fn dir(ctx: &Ctx, a: &DirArgs, prev_exist: Option<bool>) -> CtlResult {
    let Some(key) = a.args.first() else {
        return Err(bad_args("key required"));
    };
    let mut body = vec![("dir", "true".to_string())];
    body.extend(ttl_pair(a.ttl));
    let query: Vec<(&str, String)> = prev_exist
        .map(|p| ("prevExist", p.to_string()))
        .into_iter()
        .collect();
    let r = call(ctx, "PUT", key, &query, Some(form(&body))).await?;
    if ctx.output != "simple" {
        print_response(&r, &ctx.output);
    }
    Ok(())
}

pub async fn rm(ctx: &Ctx, a: &RmArgs) -> CtlResult {
    let Some(key) = a.args.first() else {
        return Err(bad_args("key required"));
    };
    let mut query = Vec::new();
    if a.dir {
        query.push(("dir", "true".to_string()));
    }
    if a.recursive {
        query.push(("recursive", "true".to_string()));
    }
    if !a.with_value.is_empty() {
        query.push(("prevValue", a.with_value.clone()));
    }
    if a.with_index != 0 {
        query.push(("prevIndex", a.with_index.to_string()));
    }
    let r = call(ctx, "DELETE", key, &query, None).await?;
    if !is_dir(&r.node) || ctx.output != "simple" {
        print_response(&r, &ctx.output);
    }
    Ok(())
}

pub async fn rmdir(ctx: &Ctx, a: &KeyArg) -> CtlResult {
    let Some(key) = a.args.first() else {
        return Err(bad_args("key required"));
    };
    let r = call(ctx, "DELETE", key, &[("dir", "true".into())], None).await?;
    if !is_dir(&r.node) || ctx.output != "simple" {
        print_response(&r, &ctx.output);
    }
    Ok(())
}

fn read_query(sort: bool, recursive: bool, quorum: bool) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if recursive {
        q.push(("recursive", "true".to_string()));
    }
    if sort {
        q.push(("sorted", "true".to_string()));
    }
    if quorum {
        q.push(("quorum", "true".to_string()));
    }
    q
}

pub async fn get(ctx: &Ctx, a: &GetArgs) -> CtlResult {
    let Some(key) = a.args.first() else {
        return Err(bad_args("key required"));
    };
    let r = call(ctx, "GET", key, &read_query(a.sort, false, a.quorum), None).await?;
    if is_dir(&r.node) {
        eprintln!("{}: is a directory", r.node["key"].as_str().unwrap_or(""));
        return Err(CtlError::silent(ExitCode::Error));
    }
    print_response(&r, &ctx.output);
    Ok(())
}

fn print_tree(n: &Value, slash: bool) {
    let key = n["key"].as_str().unwrap_or("");
    if is_dir(n) && slash {
        println!("{key}/");
    } else {
        println!("{key}");
    }
    if let Some(children) = n.get("nodes").and_then(Value::as_array) {
        for c in children {
            print_tree(c, slash);
        }
    }
}

pub async fn ls(ctx: &Ctx, a: &LsArgs) -> CtlResult {
    let key = a.args.first().cloned().unwrap_or_else(|| "/".to_string());
    let r = call(
        ctx,
        "GET",
        &key,
        &read_query(a.sort, a.recursive, a.quorum),
        None,
    )
    .await?;
    if ctx.output == "simple" {
        if !is_dir(&r.node) {
            println!("{}", r.node["key"].as_str().unwrap_or(""));
        }
        if let Some(children) = r.node.get("nodes").and_then(Value::as_array) {
            for c in children {
                print_tree(c, a.p);
            }
        }
    } else {
        print_response(&r, &ctx.output);
    }
    Ok(())
}

/// Long-polls for the next change after `after` (0: from now).
async fn next_change(ctx: &Ctx, key: &str, recursive: bool, after: u64) -> CtlResult<KeysResponse> {
    let mut query = vec![("wait", "true".to_string())];
    if recursive {
        query.push(("recursive", "true".to_string()));
    }
    if after > 0 {
        query.push(("waitIndex", (after + 1).to_string()));
    }
    let path = format!("/v2/keys{}?{}", key_path(key), form(&query));
    let resp = ctx
        .client
        .request("GET", &path, None, None)
        .await
        .map_err(|e| ctx.fail(exit::SERVER_ERROR, V2Error::Other(e)))?;
    parse(resp).map_err(|e| ctx.fail(exit::SERVER_ERROR, e))
}

pub async fn watch(ctx: &Ctx, a: &WatchArgs) -> CtlResult {
    let Some(key) = a.args.first() else {
        return Err(bad_args("key required"));
    };
    let mut after = a.after_index;
    loop {
        let r = next_change(ctx, key, a.recursive, after).await?;
        after = r.node["modifiedIndex"].as_u64().unwrap_or(after);
        if is_dir(&r.node) {
            continue;
        }
        if a.recursive {
            println!("[{}] {}", r.action, r.node["key"].as_str().unwrap_or(""));
        }
        print_response(&r, &ctx.output);
        if !a.forever {
            return Ok(());
        }
    }
}

pub async fn exec_watch(ctx: &Ctx, a: &ExecWatchArgs) -> CtlResult {
    if a.args.len() < 2 {
        return Err(bad_args("key and command to exec required"));
    }
    let sep = a.args.iter().skip(1).position(|s| s == "--").is_some();
    let (key, command) = if sep {
        let i = a
            .args
            .iter()
            .skip(1)
            .position(|s| s == "--")
            .map(|i| i + 1)
            .unwrap_or(1);
        (a.args[0].clone(), a.args[i + 1..].to_vec())
    } else {
        (
            a.args[a.args.len() - 1].clone(),
            a.args[..a.args.len() - 1].to_vec(),
        )
    };
    if command.is_empty() {
        return Err(bad_args("key and command to exec required"));
    }
    let mut after = a.after_index;
    loop {
        let r = next_change(ctx, &key, a.recursive, after).await?;
        after = r.node["modifiedIndex"].as_u64().unwrap_or(after);
        if is_dir(&r.node) {
            eprintln!(
                "Ignored dir {} change",
                r.node["key"].as_str().unwrap_or("")
            );
            continue;
        }
        let child = std::process::Command::new(&command[0])
            .args(&command[1..])
            .env("ETCD_WATCH_ACTION", &r.action)
            .env("ETCD_WATCH_MODIFIED_INDEX", after.to_string())
            .env("ETCD_WATCH_KEY", r.node["key"].as_str().unwrap_or(""))
            .env("ETCD_WATCH_VALUE", value_of(&r.node))
            .spawn();
        match child {
            Ok(mut c) => {
                std::thread::spawn(move || {
                    let _ = c.wait();
                });
            }
            Err(e) => {
                eprint!("{e}");
                std::process::exit(1);
            }
        }
    }
}
