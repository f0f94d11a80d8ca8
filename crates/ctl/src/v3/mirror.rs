//! `make-mirror`: copies the source's keys (or a prefix) to a destination cluster, then follows
//! the source's changes, one destination txn per source revision.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use clap::Args;
use rampart_proto::etcdserverpb as pb;
use rampart_proto::mvccpb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use super::client::{status_text, Client};
use super::global::ConnSettings;
use super::kv::prefix_end;
use crate::exit::{CtlError, CtlResult};

#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long, default_value = "")]
    dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long)]
    no_dest_prefix: bool,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long)]
    dest_cert: Option<String>,
    /// Identify secure client using this TLS key file
    #[arg(long)]
    dest_key: Option<String>,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long)]
    dest_cacert: Option<String>,
    /// Disable transport security for client connections
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    dest_insecure_transport: bool,
    /// <destination>
    args: Vec<String>,
}

/// Batch size of the initial copy.
const BATCH: i64 = 1000;

pub async fn make_mirror(source: &Client, settings: &ConnSettings, a: &MirrorArgs) -> CtlResult {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args(
            "make-mirror takes one destination argument",
        ));
    }
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let any_tls = a.dest_cert.is_some() || a.dest_key.is_some() || a.dest_cacert.is_some();
    let dest_settings = ConnSettings {
        endpoints: vec![a.args[0].clone()],
        tls: Some(rampart_tls::ClientTlsOptions {
            trusted_ca_file: a.dest_cacert.clone().map(Into::into),
            cert_file: a.dest_cert.clone().map(Into::into),
            key_file: a.dest_key.clone().map(Into::into),
            server_name_override: None,
            insecure_skip_verify: false,
        }),
        tls_by_default: any_tls || !a.dest_insecure_transport,
        auth: None,
        ..settings.clone()
    };
    let dest = Client::connect(&dest_settings).await?;
    let dest_prefix = if a.no_dest_prefix {
        String::new()
    } else if a.dest_prefix.is_empty() {
        a.prefix.clone()
    } else {
        a.dest_prefix.clone()
    };
    let rename = |key: &[u8]| -> Vec<u8> {
        let k = String::from_utf8_lossy(key);
        k.replacen(&a.prefix, &dest_prefix, 1).into_bytes()
    };
    let total = Arc::new(AtomicI64::new(0));
    {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                println!("{}", total.load(Ordering::Relaxed));
            }
        });
    }
    let (key, end) = if a.prefix.is_empty() {
        (vec![0u8], vec![0u8])
    } else {
        (
            a.prefix.as_bytes().to_vec(),
            prefix_end(a.prefix.as_bytes()),
        )
    };
    // The initial copy, at one revision.
    let first = source
        .call(source.kv().range(pb::RangeRequest {
            key: key.clone(),
            range_end: end.clone(),
            limit: 1,
            ..Default::default()
        }))
        .await?;
    let rev = first.header.as_ref().map(|h| h.revision).unwrap_or(0);
    let mut from = key.clone();
    loop {
        let page = source
            .call(source.kv().range(pb::RangeRequest {
                key: from.clone(),
                range_end: end.clone(),
                limit: BATCH,
                revision: rev,
                ..Default::default()
            }))
            .await?;
        for kv in &page.kvs {
            dest.call(dest.kv().put(pb::PutRequest {
                key: rename(&kv.key),
                value: kv.value.clone(),
                ..Default::default()
            }))
            .await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                from = last.key.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    // Then every change after that revision.
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key,
                range_end: end,
                start_revision: rev + 1,
                ..Default::default()
            },
        )),
    });
    let mut stream = source
        .watch()
        .watch(UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| CtlError::error(status_text(&source.endpoint, &s)))?
        .into_inner();
    while let Some(item) = stream.next().await {
        let w = item.map_err(|s| CtlError::error(status_text(&source.endpoint, &s)))?;
        if w.compact_revision != 0 {
            return Err(CtlError::error(
                "etcdserver: mvcc: required revision has been compacted",
            ));
        }
        let mut ops: Vec<pb::RequestOp> = Vec::new();
        let mut last_rev = 0;
        for ev in &w.events {
            let kv = ev.kv.clone().unwrap_or_default();
            if last_rev != 0 && kv.mod_revision > last_rev {
                dest.call(dest.kv().txn(pb::TxnRequest {
                    compare: vec![],
                    success: std::mem::take(&mut ops),
                    failure: vec![],
                }))
                .await?;
            }
            last_rev = kv.mod_revision;
            let request = if ev.r#type == mvccpb::event::EventType::Delete as i32 {
                pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: rename(&kv.key),
                    ..Default::default()
                })
            } else {
                pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: rename(&kv.key),
                    value: kv.value,
                    ..Default::default()
                })
            };
            ops.push(pb::RequestOp {
                request: Some(request),
            });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            dest.call(dest.kv().txn(pb::TxnRequest {
                compare: vec![],
                success: ops,
                failure: vec![],
            }))
            .await?;
        }
    }
    drop(tx);
    Err(CtlError::error("watch is canceled by the server"))
}
