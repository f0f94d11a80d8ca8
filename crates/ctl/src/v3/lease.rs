//! `lease grant|revoke|timetolive|list|keep-alive`.

use std::time::Duration;

use clap::{Args, Subcommand};
use rampart_proto::etcdserverpb as pb;
use tokio_stream::StreamExt;

use super::client::{status_text, Client};
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt;
use crate::output::Printer;

#[derive(Subcommand, Debug)]
pub enum LeaseCmd {
    /// Creates leases
    Grant { args: Vec<String> },
    /// Revokes leases
    Revoke { args: Vec<String> },
    /// Get lease information
    Timetolive {
        /// Get keys attached to this lease
        #[arg(long)]
        keys: bool,
        args: Vec<String>,
    },
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    KeepAlive(KeepAliveArgs),
}

#[derive(Args, Debug)]
pub struct KeepAliveArgs {
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(long)]
    once: bool,
    args: Vec<String>,
}

fn lease_id(arg: &str) -> CtlResult<i64> {
    gofmt::parse_int(arg, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

pub async fn run(client: &Client, printer: &Printer, cmd: &LeaseCmd) -> CtlResult {
    match cmd {
        LeaseCmd::Grant { args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("lease grant command needs TTL argument"));
            }
            let ttl = gofmt::parse_int(&args[0], 10)
                .map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
            let resp = client
                .call(
                    client
                        .lease()
                        .lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }),
                )
                .await
                .map_err(|e| CtlError::error(format!("failed to grant lease ({})", e.message)))?;
            printer.grant(&resp)
        }
        LeaseCmd::Revoke { args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("lease revoke command needs 1 argument"));
            }
            let id = lease_id(&args[0])?;
            let resp = client
                .call(client.lease().lease_revoke(pb::LeaseRevokeRequest { id }))
                .await
                .map_err(|e| CtlError::error(format!("failed to revoke lease ({})", e.message)))?;
            printer.revoke(id, &resp)
        }
        LeaseCmd::Timetolive { keys, args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args(
                    "lease timetolive command needs lease ID as argument",
                ));
            }
            let id = lease_id(&args[0])?;
            let resp = client
                .call(
                    client
                        .lease()
                        .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys: *keys }),
                )
                .await
                .map_err(|e| e.with_code(ExitCode::BadConnection))?;
            printer.time_to_live(&resp, *keys)
        }
        LeaseCmd::List => {
            let resp = client
                .call(client.lease().lease_leases(pb::LeaseLeasesRequest {}))
                .await
                .map_err(|e| e.with_code(ExitCode::BadConnection))?;
            printer.leases(&resp)
        }
        LeaseCmd::KeepAlive(a) => keep_alive(client, printer, a).await,
    }
}

async fn keep_alive(client: &Client, printer: &Printer, a: &KeepAliveArgs) -> CtlResult {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args(
            "lease keep-alive command needs lease ID as argument",
        ));
    }
    let id = lease_id(&a.args[0])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = tx.send(pb::LeaseKeepAliveRequest { id });
    let mut stream = client
        .call(
            client
                .lease()
                .lease_keep_alive(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)),
        )
        .await
        .map_err(|e| e.with_code(ExitCode::BadConnection))?;
    loop {
        let resp = match stream.next().await {
            Some(Ok(r)) => r,
            Some(Err(status)) => {
                return Err(CtlError::new(
                    ExitCode::BadConnection,
                    status_text(&client.endpoint, &status),
                ))
            }
            None => break,
        };
        if resp.ttl <= 0 {
            if a.once {
                return Err(CtlError::new(
                    ExitCode::BadConnection,
                    "etcdserver: requested lease not found",
                ));
            }
            break;
        }
        printer.keep_alive(&resp)?;
        if a.once {
            return Ok(());
        }
        // clientv3 renews a third of the TTL in.
        let next = Duration::from_secs((resp.ttl as u64 / 3).max(1));
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(next).await;
            let _ = tx.send(pb::LeaseKeepAliveRequest { id });
        });
    }
    if printer.is_simple() {
        println!("lease {id:016x} expired or revoked.");
    }
    Ok(())
}
