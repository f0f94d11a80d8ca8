//! `watch`: one stream, one or more watchers (`-i` adds them from standard input), events
//! printed as they come, optionally running a command per event (`watch key -- cmd args`).

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;

use clap::{Args, Parser};
use rampart_proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use super::client::{status_text, Client};
use super::kv::prefix_end;
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt::quote;
use crate::output::Printer;

#[derive(Args, Debug, Clone, Default)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short, long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long)]
    pub prev_kv: bool,
    /// [key or prefix] [range_end]
    pub args: Vec<String>,
    /// [-- exec-command arg1 arg2 ...]
    #[arg(last = true)]
    pub exec: Vec<String>,
}

/// An interactive line: `watch [options] key [range_end] [-- command]`.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
enum InteractiveLine {
    Watch(WatchArgs),
}

fn bad_args(msg: &str) -> CtlError {
    CtlError::bad_args(msg)
}

/// The watch's key range from its arguments and `ETCDCTL_WATCH_KEY`/`_RANGE_END`.
fn create_request(
    a: &WatchArgs,
    env_key: &str,
    env_range: &str,
) -> Result<pb::WatchCreateRequest, String> {
    let mut args = a.args.clone();
    if !env_key.is_empty() {
        let mut from_env = vec![env_key.to_string()];
        if !env_range.is_empty() {
            from_env.push(env_range.to_string());
        }
        from_env.extend(args);
        args = from_env;
    }
    let Some(key) = args.first() else {
        return Err("bad number of arguments".to_string());
    };
    let mut req = pb::WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        start_revision: a.rev,
        prev_kv: a.prev_kv,
        ..Default::default()
    };
    if let Some(end) = args.get(1) {
        if a.prefix {
            return Err("`range_end` and `--prefix` are mutually exclusive".to_string());
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
    Ok(req)
}

fn create(req: pb::WatchCreateRequest) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(req)),
    }
}

/// Runs `exec` once per event with etcdctl's ETCD_WATCH_* variables.
fn run_exec(exec: &[String], resp: &pb::WatchResponse) -> CtlResult {
    for ev in &resp.events {
        let kv = ev.kv.clone().unwrap_or_default();
        let kind = crate::output::event_type_name(ev.r#type);
        let status = std::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env(
                "ETCD_WATCH_REVISION",
                resp.header
                    .as_ref()
                    .map(|h| h.revision)
                    .unwrap_or(0)
                    .to_string(),
            )
            .env("ETCD_WATCH_EVENT_TYPE", quote(kind.as_bytes()))
            .env("ETCD_WATCH_KEY", quote(&kv.key))
            .env("ETCD_WATCH_VALUE", quote(&kv.value))
            .status();
        let failed = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("{s}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            let args: Vec<String> = exec.iter().map(|a| quote(a.as_bytes())).collect();
            eprintln!("command [{}] error ({why})", args.join(" "));
            std::process::exit(1);
        }
    }
    Ok(())
}

/// Why the server ended a watcher, as clientv3's `WatchResponse.Err()` says it.
fn cancel_text(resp: &pb::WatchResponse) -> String {
    if resp.compact_revision != 0 {
        "etcdserver: mvcc: required revision has been compacted".to_string()
    } else if !resp.cancel_reason.is_empty() {
        resp.cancel_reason.clone()
    } else {
        "<nil>".to_string()
    }
}

/// Reads the stream and prints; returns when no watcher is left or the stream ends.
async fn print_responses(
    client: &Client,
    printer: Printer,
    mut stream: tonic::Streaming<pb::WatchResponse>,
    mut pending: mpsc::UnboundedReceiver<Vec<String>>,
    interactive: bool,
) -> CtlResult {
    let mut exec_of: HashMap<i64, Vec<String>> = HashMap::new();
    let mut waiting: VecDeque<Vec<String>> = VecDeque::new();
    loop {
        let item = stream.next().await;
        while let Ok(e) = pending.try_recv() {
            waiting.push_back(e);
        }
        let resp = match item {
            Some(Ok(r)) => r,
            Some(Err(status)) => {
                return Err(CtlError::error(status_text(&client.endpoint, &status)))
            }
            None => break,
        };
        if resp.created {
            exec_of.insert(resp.watch_id, waiting.pop_front().unwrap_or_default());
            if resp.events.is_empty() && !resp.canceled {
                continue;
            }
        }
        if resp.canceled {
            eprintln!("watch was canceled ({})", cancel_text(&resp));
        }
        let progress =
            resp.events.is_empty() && !resp.canceled && !resp.created && resp.compact_revision == 0;
        // A progress answer to `progress` (watch ID -1) goes to every watcher.
        let copies = if progress && resp.watch_id == -1 {
            exec_of.len().max(1)
        } else {
            1
        };
        for _ in 0..copies {
            if progress {
                println!(
                    "progress notify: {}",
                    resp.header.as_ref().map(|h| h.revision).unwrap_or(0)
                );
            }
            printer.watch(&resp)?;
        }
        if let Some(exec) = exec_of.get(&resp.watch_id) {
            if !exec.is_empty() {
                run_exec(exec, &resp)?;
            }
        }
        if resp.canceled {
            exec_of.remove(&resp.watch_id);
            if exec_of.is_empty() && !interactive {
                break;
            }
        }
    }
    Ok(())
}

pub async fn watch(
    client: &Client,
    printer: &Printer,
    a: &WatchArgs,
    raw_args: &[String],
) -> CtlResult {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(bad_args(&format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            quote(env_range.as_bytes())
        )));
    }
    let (req_tx, req_rx) = mpsc::unbounded_channel::<pb::WatchRequest>();
    let (exec_tx, exec_rx) = mpsc::unbounded_channel::<Vec<String>>();
    if !a.interactive {
        if raw_args.last().map(String::as_str) == Some("--") {
            return Err(bad_args(
                "bad number of arguments (found separator --, but no commands)",
            ));
        }
        if !env_key.is_empty() && !a.args.is_empty() {
            return Err(bad_args(
                "bad number of arguments (found conflicting environment key)",
            ));
        }
        let req = create_request(a, &env_key, &env_range).map_err(|e| bad_args(&e))?;
        let _ = exec_tx.send(a.exec.clone());
        let _ = req_tx.send(create(req));
    }
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(req_rx));
    request.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    // grpc-go servers send the response headers with the first message, so the call completes
    // only once a watch exists: run it beside the loop that creates the watches.
    let reader = tokio::spawn({
        let client = client.clone();
        let printer = *printer;
        let interactive = a.interactive;
        async move {
            let stream = match client.watch().watch(request).await {
                Ok(s) => s.into_inner(),
                Err(status) => return Err(CtlError::error(status_text(&client.endpoint, &status))),
            };
            print_responses(&client, printer, stream, exec_rx, interactive).await
        }
    });
    if a.interactive {
        let (line_tx, mut line_rx) = mpsc::unbounded_channel::<Option<String>>();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(l) => {
                        if line_tx.send(Some(l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = line_tx.send(None);
        });
        let base = a.clone();
        while let Some(line) = line_rx.recv().await {
            let Some(line) = line else {
                return Err(CtlError::new(
                    ExitCode::InvalidInput,
                    "Error reading watch request line: EOF",
                ));
            };
            let words = crate::gofmt::argify(&line).unwrap_or_default();
            match words.first().map(String::as_str) {
                Some("watch") => {
                    if words.len() < 2 && env_key.is_empty() {
                        eprintln!("Invalid command {line} (command type or key is not provided)");
                        continue;
                    }
                    let parsed = match InteractiveLine::try_parse_from(super::normalize_switches(
                        words.clone(),
                    )) {
                        Ok(InteractiveLine::Watch(w)) => w,
                        Err(e) => {
                            return Err(bad_args(
                                e.to_string().lines().next().unwrap_or("bad arguments"),
                            ))
                        }
                    };
                    let w = WatchArgs {
                        interactive: base.interactive,
                        ..parsed
                    };
                    if words.last().map(String::as_str) == Some("--") {
                        return Err(bad_args(
                            "bad number of arguments (found separator --, but no commands)",
                        ));
                    }
                    if w.args.is_empty() && env_key.is_empty() {
                        return Err(bad_args("bad number of arguments"));
                    }
                    if !w.args.is_empty() && !env_key.is_empty() && w.exec.is_empty() {
                        return Err(bad_args(
                            "bad number of arguments (found conflicting environment key)",
                        ));
                    }
                    match create_request(&w, &env_key, &env_range) {
                        Ok(req) => {
                            let _ = exec_tx.send(w.exec.clone());
                            let _ = req_tx.send(create(req));
                        }
                        Err(e) => eprintln!("Invalid command {line} ({e})"),
                    }
                }
                Some("progress") => {
                    let _ = req_tx.send(pb::WatchRequest {
                        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                            pb::WatchProgressRequest {},
                        )),
                    });
                }
                None => eprintln!("Invalid command: {line} (watch and progress supported)"),
                Some(_) => eprintln!("Invalid command {line} (only support watch)"),
            }
            if reader.is_finished() {
                break;
            }
        }
        drop(req_tx);
        return match reader.await {
            Ok(r) => r,
            Err(e) => Err(CtlError::error(e.to_string())),
        };
    }
    let result = reader.await;
    drop(req_tx);
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(CtlError::error(e.to_string())),
    }
    Err(CtlError::new(
        ExitCode::Interrupted,
        "watch is canceled by the server",
    ))
}
