//! `member add|remove|update|list|promote`.

use clap::Subcommand;
use rampart_proto::etcdserverpb as pb;

use super::client::Client;
use crate::exit::{CtlError, CtlResult};
use crate::gofmt;
use crate::output::Printer;

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Adds a member into the cluster
    Add {
        /// comma separated peer URLs for the new member.
        #[arg(long, default_value = "")]
        peer_urls: String,
        /// indicates if the new member is raft learner
        #[arg(long)]
        learner: bool,
        args: Vec<String>,
    },
    /// Removes a member from the cluster
    Remove { args: Vec<String> },
    /// Updates a member in the cluster
    Update {
        /// comma separated peer URLs for the updated member.
        #[arg(long, default_value = "")]
        peer_urls: String,
        args: Vec<String>,
    },
    /// Lists all members in the cluster
    List,
    /// Promotes a non-voting member in the cluster
    Promote { args: Vec<String> },
}

fn member_id(args: &[String]) -> CtlResult<u64> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("member ID is not provided"));
    }
    gofmt::parse_uint(&args[0], 16)
        .map_err(|e| CtlError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

pub async fn run(client: &Client, printer: &Printer, cmd: &MemberCmd) -> CtlResult {
    match cmd {
        MemberCmd::Add {
            peer_urls,
            learner,
            args,
        } => {
            let Some(name) = args.first() else {
                return Err(CtlError::bad_args("member name not provided"));
            };
            if args.len() > 1 {
                let mut ev = "too many arguments".to_string();
                for s in args {
                    if s.to_lowercase().starts_with("http") {
                        ev.push_str(&format!(", did you mean --peer-urls={s}"));
                    }
                }
                return Err(CtlError::bad_args(ev));
            }
            if peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let urls: Vec<String> = peer_urls.split(',').map(str::to_string).collect();
            let resp = client
                .call(client.cluster().member_add(pb::MemberAddRequest {
                    peer_ur_ls: urls,
                    is_learner: *learner,
                }))
                .await?;
            printer.member_add(&resp)?;
            if printer.is_simple() {
                let new_id = resp.member.as_ref().map(|m| m.id).unwrap_or(0);
                let mut conf = Vec::new();
                for m in &resp.members {
                    for u in &m.peer_ur_ls {
                        let n = if m.id == new_id { name } else { &m.name };
                        conf.push(format!("{n}={u}"));
                    }
                }
                println!();
                println!("ETCD_NAME={}", gofmt::quote(name.as_bytes()));
                println!(
                    "ETCD_INITIAL_CLUSTER={}",
                    gofmt::quote(conf.join(",").as_bytes())
                );
                println!(
                    "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
                    gofmt::quote(peer_urls.as_bytes())
                );
                println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            }
            Ok(())
        }
        MemberCmd::Remove { args } => {
            let id = member_id(args)?;
            let resp = client
                .call(
                    client
                        .cluster()
                        .member_remove(pb::MemberRemoveRequest { id }),
                )
                .await?;
            printer.member_changed("removed from", id, resp.header.as_ref(), &resp)
        }
        MemberCmd::Update { peer_urls, args } => {
            let id = member_id(args)?;
            if peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let resp = client
                .call(client.cluster().member_update(pb::MemberUpdateRequest {
                    id,
                    peer_ur_ls: peer_urls.split(',').map(str::to_string).collect(),
                }))
                .await?;
            printer.member_changed("updated in", id, resp.header.as_ref(), &resp)
        }
        MemberCmd::List => {
            let resp = client
                .call(client.cluster().member_list(pb::MemberListRequest {}))
                .await?;
            printer.member_list(&resp)
        }
        MemberCmd::Promote { args } => {
            let id = member_id(args)?;
            let resp = client
                .call(
                    client
                        .cluster()
                        .member_promote(pb::MemberPromoteRequest { id }),
                )
                .await?;
            printer.member_changed("promoted in", id, resp.header.as_ref(), &resp)
        }
    }
}
