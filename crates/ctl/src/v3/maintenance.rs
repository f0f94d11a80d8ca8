//! `alarm list|disarm`, `defrag`, `move-leader`, `snapshot save` and `version`.

use std::io::Write;

use clap::Subcommand;
use rampart_proto::etcdserverpb as pb;
use tokio_stream::StreamExt;

use super::client::{status_text, Client};
use super::endpoint;
use super::global::ConnSettings;
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt;
use crate::output::Printer;

/// The etcd release whose etcdctl we stand in for (scripts compare it).
pub const ETCDCTL_VERSION: &str = "3.4.23";
pub const API_VERSION: &str = "3.4";

#[derive(Subcommand, Debug)]
pub enum AlarmCmd {
    /// Disarms all alarms
    Disarm { args: Vec<String> },
    /// Lists all alarms
    List { args: Vec<String> },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Stores an etcd node backend snapshot to a given file
    Save { args: Vec<String> },
    /// Restores an etcd member snapshot to an etcd directory
    Restore(crate::snapshot::RestoreArgs),
    /// Gets backend snapshot status of a given file
    Status { args: Vec<String> },
}

pub async fn alarm(client: &Client, printer: &Printer, cmd: &AlarmCmd) -> CtlResult {
    use pb::alarm_request::AlarmAction;
    let resp = match cmd {
        AlarmCmd::List { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "alarm list command accepts no arguments",
                ));
            }
            client
                .call(client.maintenance().alarm(pb::AlarmRequest {
                    action: AlarmAction::Get as i32,
                    member_id: 0,
                    alarm: 0,
                }))
                .await?
        }
        AlarmCmd::Disarm { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "alarm disarm command accepts no arguments",
                ));
            }
            // clientv3 lists the alarms and deactivates each one.
            let list = client
                .call(client.maintenance().alarm(pb::AlarmRequest {
                    action: AlarmAction::Get as i32,
                    member_id: 0,
                    alarm: 0,
                }))
                .await?;
            let mut last = list.clone();
            for a in &list.alarms {
                last = client
                    .call(client.maintenance().alarm(pb::AlarmRequest {
                        action: AlarmAction::Deactivate as i32,
                        member_id: a.member_id,
                        alarm: a.alarm,
                    }))
                    .await?;
            }
            last
        }
    };
    printer.alarm(&resp)
}

pub async fn defrag(
    settings: &ConnSettings,
    cluster: bool,
    data_dir: &Option<String>,
) -> CtlResult {
    if let Some(dir) = data_dir {
        eprintln!(
            "Failed to defragment etcd data[{dir}] (offline defragmentation is not supported: defragment the running member without --data-dir)"
        );
        return Err(CtlError::silent(ExitCode::Error));
    }
    let mut failures = 0;
    for ep in endpoint::endpoints(settings, cluster).await? {
        let result = match Client::connect_one(settings, &ep).await {
            Ok(c) => {
                c.call(c.maintenance().defragment(pb::DefragmentRequest {}))
                    .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => println!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}] ({})", e.message);
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(CtlError::silent(ExitCode::Error));
    }
    Ok(())
}

pub async fn move_leader(settings: &ConnSettings, printer: &Printer, args: &[String]) -> CtlResult {
    if args.len() != 1 {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    }
    let target = gofmt::parse_uint(&args[0], 16).map_err(CtlError::bad_args)?;
    for ep in &settings.endpoints {
        let client = Client::connect_one(settings, ep).await?;
        let status = client
            .call(client.maintenance().status(pb::StatusRequest {}))
            .await?;
        let me = status.header.as_ref().map(|h| h.member_id).unwrap_or(0);
        if me == status.leader {
            let resp = client
                .call(
                    client
                        .maintenance()
                        .move_leader(pb::MoveLeaderRequest { target_id: target }),
                )
                .await?;
            return printer.move_leader(status.leader, target, &resp);
        }
    }
    Err(CtlError::bad_args(format!(
        "no leader endpoint given at [{}]",
        settings.endpoints.join(" ")
    )))
}

pub async fn snapshot(settings: &ConnSettings, cmd: &SnapshotCmd) -> CtlResult {
    let args = match cmd {
        SnapshotCmd::Save { args } => args,
        // Offline commands: dispatched before any connection settings are needed.
        SnapshotCmd::Restore(_) | SnapshotCmd::Status { .. } => return Ok(()),
    };
    if args.len() != 1 {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    }
    if settings.endpoints.len() != 1 {
        return Err(CtlError::bad_args(format!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            settings.endpoints.join(" ")
        )));
    }
    let path = &args[0];
    let part = format!("{path}.part");
    let client = Client::connect(settings).await?;
    let mut stream = client
        .call(client.maintenance().snapshot(pb::SnapshotRequest {}))
        .await?;
    let mut file = std::fs::File::create(&part)
        .map_err(|e| CtlError::error(format!("could not open {part} ({e})")))?;
    let mut total = 0u64;
    // A byte counter on a terminal (hidden when stderr is not one).
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {bytes} received ({bytes_per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    while let Some(item) = stream.next().await {
        let chunk = item.map_err(|s| CtlError::error(status_text(&client.endpoint, &s)))?;
        file.write_all(&chunk.blob)
            .map_err(|e| CtlError::error(format!("could not write {part} ({e})")))?;
        total += chunk.blob.len() as u64;
        bar.set_position(total);
    }
    bar.finish_and_clear();
    file.sync_all()
        .map_err(|e| CtlError::error(format!("could not sync {part} ({e})")))?;
    std::fs::rename(&part, path)
        .map_err(|e| CtlError::error(format!("could not rename {part} to {path} ({e})")))?;
    eprintln!(
        "fetched snapshot: {} ({})",
        client.endpoint,
        gofmt::humanize_bytes(total)
    );
    println!("Snapshot saved at {path}");
    Ok(())
}

pub fn version() -> CtlResult {
    println!("etcdctl version: {ETCDCTL_VERSION}");
    println!("API version: {API_VERSION}");
    Ok(())
}
