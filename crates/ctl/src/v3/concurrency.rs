//! `lock` and `elect`: clientv3's concurrency recipes (a lease-backed session, keys under
//! `<name>/<lease id>`, the oldest key wins), built on KV, Watch and Lease only, so they work
//! against any v3 server.

use std::time::Duration;

use clap::Args;
use rampart_proto::etcdserverpb as pb;
use rampart_proto::mvccpb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use super::client::{status_text, Client};
use super::kv::prefix_end;
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::output::Printer;

#[derive(Args, Debug)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value_t = 10)]
    ttl: i64,
    /// <lockname> [exec-command arg1 arg2 ...]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short, long)]
    listen: bool,
    /// <election-name> [proposal]
    args: Vec<String>,
}

/// A lease kept alive in the background; its end is reported on `expired`.
struct Session {
    lease: i64,
    expired: mpsc::UnboundedReceiver<()>,
}

impl Session {
    async fn new(client: &Client, ttl: i64) -> CtlResult<Session> {
        let grant = client
            .call(
                client
                    .lease()
                    .lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }),
            )
            .await?;
        let lease = grant.id;
        let (expired_tx, expired) = mpsc::unbounded_channel();
        let client = client.clone();
        tokio::spawn(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(pb::LeaseKeepAliveRequest { id: lease });
            let Ok(resp) = client
                .lease()
                .lease_keep_alive(UnboundedReceiverStream::new(rx))
                .await
            else {
                let _ = expired_tx.send(());
                return;
            };
            let mut stream = resp.into_inner();
            while let Some(Ok(r)) = stream.next().await {
                if r.ttl <= 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_secs((r.ttl as u64 / 3).max(1))).await;
                if tx.send(pb::LeaseKeepAliveRequest { id: lease }).is_err() {
                    break;
                }
            }
            let _ = expired_tx.send(());
        });
        Ok(Session { lease, expired })
    }

    async fn close(&self, client: &Client) {
        let _ = client
            .call(
                client
                    .lease()
                    .lease_revoke(pb::LeaseRevokeRequest { id: self.lease }),
            )
            .await;
    }
}

fn create_rev_is(key: &[u8], rev: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(pb::compare::TargetUnion::CreateRevision(rev)),
    }
}

fn op_range(r: pb::RangeRequest) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(r)),
    }
}

fn op_put(key: &[u8], value: &[u8], lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn get_key(key: &[u8]) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

/// The oldest (or newest) key under the prefix, optionally created no later than `max_create`.
fn by_create(pfx: &[u8], descend: bool, max_create: i64) -> pb::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    pb::RangeRequest {
        key: pfx.to_vec(),
        range_end: prefix_end(pfx),
        limit: 1,
        sort_order: if descend {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    }
}

fn first_kv(resp: &pb::ResponseOp) -> Option<&mvccpb::KeyValue> {
    match &resp.response {
        Some(pb::response_op::Response::ResponseRange(r)) => r.kvs.first(),
        _ => None,
    }
}

/// Waits until `key` is deleted, watching from `rev`.
async fn wait_delete(client: &Client, key: &[u8], rev: i64) -> CtlResult {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: key.to_vec(),
                start_revision: rev,
                ..Default::default()
            },
        )),
    });
    let mut stream = client
        .watch()
        .watch(UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| CtlError::error(status_text(&client.endpoint, &s)))?
        .into_inner();
    while let Some(item) = stream.next().await {
        let resp = item.map_err(|s| CtlError::error(status_text(&client.endpoint, &s)))?;
        if resp
            .events
            .iter()
            .any(|e| e.r#type == mvccpb::event::EventType::Delete as i32)
        {
            return Ok(());
        }
        if resp.canceled {
            break;
        }
    }
    drop(tx);
    Err(CtlError::error("lost watcher waiting for delete"))
}

/// Waits until every key under the prefix created at or before `max_create` is gone.
async fn wait_deletes(client: &Client, pfx: &[u8], max_create: i64) -> CtlResult {
    loop {
        let resp = client
            .call(client.kv().range(by_create(pfx, true, max_create)))
            .await?;
        let Some(last) = resp.kvs.first() else {
            return Ok(());
        };
        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        wait_delete(client, &last.key, rev).await?;
    }
}

/// Takes `<name>/<lease>` in the queue; returns (key, revision of the acquiring txn).
async fn acquire(
    client: &Client,
    name: &str,
    session: &Session,
    value: &[u8],
) -> CtlResult<(Vec<u8>, i64, bool)> {
    let pfx = format!("{name}/").into_bytes();
    let my_key = format!("{name}/{:x}", session.lease).into_bytes();
    let resp = client
        .call(client.kv().txn(pb::TxnRequest {
            compare: vec![create_rev_is(&my_key, 0)],
            success: vec![
                op_put(&my_key, value, session.lease),
                op_range(by_create(&pfx, false, 0)),
            ],
            failure: vec![
                op_range(get_key(&my_key)),
                op_range(by_create(&pfx, false, 0)),
            ],
        }))
        .await?;
    let header_rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    let (my_rev, same_value) = if resp.succeeded {
        (header_rev, true)
    } else {
        let kv = resp
            .responses
            .first()
            .and_then(first_kv)
            .cloned()
            .unwrap_or_default();
        (kv.create_revision, kv.value == value)
    };
    let owner_rev = resp
        .responses
        .get(1)
        .and_then(first_kv)
        .map(|kv| kv.create_revision);
    if owner_rev.is_some_and(|r| r != my_rev) {
        wait_deletes(client, &pfx, my_rev - 1).await?;
    }
    Ok((
        my_key,
        if resp.succeeded { header_rev } else { my_rev },
        same_value,
    ))
}

async fn unlock(client: &Client, key: &[u8]) -> CtlResult {
    let mut kv = client.kv();
    client
        .call(kv.delete_range(pb::DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        }))
        .await
        .map(|_| ())
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

pub async fn lock(client: &Client, printer: &Printer, a: &LockArgs) -> CtlResult {
    let Some(name) = a.args.first() else {
        return Err(CtlError::bad_args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    let mut session = Session::new(client, a.ttl).await?;
    let (key, rev) = tokio::select! {
        r = acquire(client, name, &session, b"") => { let (k, rev, _) = r?; (k, rev) }
        _ = interrupted() => { session.close(client).await; return Err(CtlError::error("context canceled")); }
    };
    if a.args.len() > 1 {
        let status = tokio::process::Command::new(&a.args[1])
            .args(&a.args[2..])
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).into_owned())
            .env("ETCD_LOCK_REV", rev.to_string())
            .status()
            .await;
        let unlocked = unlock(client, &key).await;
        session.close(client).await;
        match status {
            Ok(s) if s.success() => return unlocked,
            Ok(s) => return Err(CtlError::error(s.to_string())),
            Err(e) => return Err(CtlError::error(e.to_string())),
        }
    }
    let held = client.call(client.kv().range(get_key(&key))).await?;
    if held.kvs.is_empty() {
        return Err(CtlError::error("lock lost on init"));
    }
    printer.get(&held)?;
    tokio::select! {
        _ = interrupted() => {
            unlock(client, &key).await?;
            session.close(client).await;
            Ok(())
        }
        _ = session.expired.recv() => Err(CtlError::error("session expired")),
    }
}

pub async fn elect(client: &Client, printer: &Printer, a: &ElectArgs) -> CtlResult {
    if a.args.len() != 1 && a.args.len() != 2 {
        return Err(CtlError::bad_args(
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    let name = &a.args[0];
    if a.args.len() == 1 {
        if !a.listen {
            return Err(CtlError::bad_args("no proposal argument but -l not set"));
        }
        return tokio::select! {
            r = observe(client, printer, name) => r,
            _ = interrupted() => Ok(()),
        };
    }
    if a.listen {
        return Err(CtlError::bad_args("proposal given but -l is set"));
    }
    let proposal = a.args[1].as_bytes();
    let mut session = Session::new(client, 60).await?;
    let (key, leader_rev) = tokio::select! {
        r = acquire(client, name, &session, proposal) => {
            let (k, rev, same) = r?;
            if !same {
                // Proclaim: our key existed with another value (a resumed session).
                client.call(client.kv().txn(pb::TxnRequest {
                    compare: vec![create_rev_is(&k, rev)],
                    success: vec![op_put(&k, proposal, session.lease)],
                    failure: vec![],
                })).await?;
            }
            (k, rev)
        }
        _ = interrupted() => { session.close(client).await; return Err(CtlError::error("context canceled")); }
    };
    let resp = client.call(client.kv().range(get_key(&key))).await?;
    printer.get(&resp)?;
    tokio::select! {
        _ = interrupted() => {}
        _ = session.expired.recv() => return Err(CtlError::error("elect: session expired")),
    }
    // Resign: delete our key if it is still the one we created.
    client
        .call(client.kv().txn(pb::TxnRequest {
            compare: vec![create_rev_is(&key, leader_rev)],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: key.clone(),
                        ..Default::default()
                    },
                )),
            }],
            failure: vec![],
        }))
        .await?;
    session.close(client).await;
    Ok(())
}

/// Prints the leader (the oldest key under the prefix) and every change of it.
async fn observe(client: &Client, printer: &Printer, name: &str) -> CtlResult {
    let pfx = format!("{name}/").into_bytes();
    loop {
        let resp = client
            .call(client.kv().range(by_create(&pfx, false, 0)))
            .await?;
        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        let Some(leader) = resp.kvs.first().cloned() else {
            // No leader yet: wait for the first put under the prefix.
            wait_event(
                client,
                &pfx,
                Some(prefix_end(&pfx)),
                rev + 1,
                mvccpb::event::EventType::Put,
            )
            .await?;
            continue;
        };
        printer.get(&resp)?;
        // Follow the leader's key until it is deleted.
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: leader.key.clone(),
                    start_revision: rev + 1,
                    ..Default::default()
                },
            )),
        });
        let mut stream = client
            .watch()
            .watch(UnboundedReceiverStream::new(rx))
            .await
            .map_err(|s| CtlError::error(status_text(&client.endpoint, &s)))?
            .into_inner();
        'follow: while let Some(item) = stream.next().await {
            let w = item.map_err(|s| CtlError::error(status_text(&client.endpoint, &s)))?;
            for ev in &w.events {
                if ev.r#type == mvccpb::event::EventType::Delete as i32 {
                    break 'follow;
                }
                if let Some(kv) = &ev.kv {
                    printer.get(&pb::RangeResponse {
                        header: w.header.clone(),
                        kvs: vec![kv.clone()],
                        more: false,
                        count: 1,
                    })?;
                }
            }
        }
        drop(tx);
    }
}

async fn wait_event(
    client: &Client,
    key: &[u8],
    range_end: Option<Vec<u8>>,
    rev: i64,
    kind: mvccpb::event::EventType,
) -> CtlResult {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: key.to_vec(),
                range_end: range_end.unwrap_or_default(),
                start_revision: rev,
                ..Default::default()
            },
        )),
    });
    let mut stream = client
        .watch()
        .watch(UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| CtlError::error(status_text(&client.endpoint, &s)))?
        .into_inner();
    while let Some(item) = stream.next().await {
        let w = item.map_err(|s| CtlError::error(status_text(&client.endpoint, &s)))?;
        if w.events.iter().any(|e| e.r#type == kind as i32) {
            return Ok(());
        }
    }
    drop(tx);
    Err(CtlError::new(ExitCode::Error, "elect: observer lost"))
}
