//! `endpoint health|status|hashkv` (each endpoint on its own connection; `--cluster` takes the
//! endpoints from the member list).

use std::time::Instant;

use clap::Subcommand;
use rampart_proto::etcdserverpb as pb;

use super::client::Client;
use super::global::ConnSettings;
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt;
use crate::output::{EpHashKv, EpHealth, EpStatus, Printer};

#[derive(Subcommand, Debug)]
pub enum EndpointCmd {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

/// The endpoints to visit: as given, or every member's client URLs with `--cluster`.
pub async fn endpoints(settings: &ConnSettings, cluster: bool) -> CtlResult<Vec<String>> {
    if !cluster {
        return Ok(settings.endpoints.clone());
    }
    let mut no_auth = settings.clone();
    no_auth.auth = None;
    let client = Client::connect(&no_auth).await?;
    let members = client
        .call(client.cluster().member_list(pb::MemberListRequest {}))
        .await
        .map_err(|e| {
            CtlError::error(format!(
                "failed to fetch endpoints from etcd cluster member list: {}",
                e.message
            ))
        })?;
    Ok(members
        .members
        .iter()
        .flat_map(|m| m.client_ur_ls.clone())
        .collect())
}

pub async fn run(
    settings: &ConnSettings,
    printer: &Printer,
    cluster: bool,
    cmd: &EndpointCmd,
) -> CtlResult {
    let eps = endpoints(settings, cluster).await?;
    match cmd {
        EndpointCmd::Health => health(settings, printer, &eps).await,
        EndpointCmd::Status => {
            let mut list = Vec::new();
            let mut failed = false;
            for ep in &eps {
                let result = match Client::connect_one(settings, ep).await {
                    Ok(c) => c.call(c.maintenance().status(pb::StatusRequest {})).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(resp) => list.push(EpStatus {
                        ep: ep.clone(),
                        resp,
                    }),
                    Err(e) => {
                        failed = true;
                        eprintln!("Failed to get the status of endpoint {ep} ({})", e.message);
                    }
                }
            }
            printer.endpoint_status(&list)?;
            if failed {
                return Err(CtlError::silent(ExitCode::Error));
            }
            Ok(())
        }
        EndpointCmd::Hashkv { rev } => {
            let mut list = Vec::new();
            let mut last_err = None;
            for ep in &eps {
                let result = match Client::connect_one(settings, ep).await {
                    Ok(c) => {
                        c.call(
                            c.maintenance()
                                .hash_kv(pb::HashKvRequest { revision: *rev }),
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(resp) => list.push(EpHashKv {
                        ep: ep.clone(),
                        resp,
                    }),
                    Err(e) => {
                        eprintln!("Failed to get the hash of endpoint {ep} ({})", e.message);
                        last_err = Some(e);
                    }
                }
            }
            printer.endpoint_hashkv(&list)?;
            match last_err {
                Some(e) => Err(e.with_code(ExitCode::Error)),
                None => Ok(()),
            }
        }
    }
}

async fn health(settings: &ConnSettings, printer: &Printer, eps: &[String]) -> CtlResult {
    let checks = eps.iter().map(|ep| async move {
        let client = match Client::connect_one(settings, ep).await {
            Ok(c) => c,
            Err(e) => {
                return EpHealth {
                    ep: ep.clone(),
                    health: false,
                    took: String::new(),
                    error: e.message,
                }
            }
        };
        let start = Instant::now();
        let result = client
            .call(client.kv().range(pb::RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            }))
            .await;
        let took = gofmt::duration_string(start.elapsed());
        match result {
            Ok(_) => EpHealth {
                ep: ep.clone(),
                health: true,
                took,
                error: String::new(),
            },
            // Permission denied still went through consensus.
            Err(e) if e.message == "etcdserver: permission denied" => EpHealth {
                ep: ep.clone(),
                health: true,
                took,
                error: String::new(),
            },
            Err(e) => EpHealth {
                ep: ep.clone(),
                health: false,
                took,
                error: e.message,
            },
        }
    });
    let list = futures::future::join_all(checks).await;
    printer.endpoint_health(&list)?;
    if list.iter().any(|h| !h.error.is_empty()) {
        return Err(CtlError::error("unhealthy cluster"));
    }
    Ok(())
}
