//! `member list|add|remove|update` over `/v2/members`, and `cluster-health`.

use clap::Subcommand;
use serde_json::Value;

use super::{exit, Ctx, V2Error};
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt::quote;

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// enumerate existing cluster members
    List { args: Vec<String> },
    /// add a new member to the etcd cluster
    Add { args: Vec<String> },
    /// remove an existing member from the etcd cluster
    Remove { args: Vec<String> },
    /// update an existing member in the etcd cluster
    Update { args: Vec<String> },
}

fn die(msg: &str) -> CtlError {
    eprintln!("{msg}");
    CtlError::silent(ExitCode::Error)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn get_json(ctx: &Ctx, path: &str) -> Result<Value, String> {
    let r = ctx
        .client
        .request("GET", path, None, Some(ctx.total_timeout))
        .await?;
    if r.status >= 400 {
        return Err(String::from_utf8_lossy(&r.body).trim().to_string());
    }
    serde_json::from_slice(&r.body).map_err(|e| e.to_string())
}

async fn list(ctx: &Ctx) -> Result<Vec<Value>, String> {
    let v = get_json(ctx, "/v2/members").await?;
    Ok(v["members"].as_array().cloned().unwrap_or_default())
}

pub async fn member(ctx: &Ctx, cmd: &MemberCmd) -> CtlResult {
    match cmd {
        MemberCmd::List { args } => {
            if !args.is_empty() {
                return Err(die("No arguments accepted"));
            }
            let members = list(ctx).await.map_err(|e| die(&e))?;
            let leader = get_json(ctx, "/v2/members/leader")
                .await
                .map_err(|e| die(&format!("Failed to get leader:  {e}")))?;
            let leader_id = leader["id"].as_str().unwrap_or("").to_string();
            for m in &members {
                let id = m["id"].as_str().unwrap_or("");
                let name = m["name"].as_str().unwrap_or("");
                let peers = strings(&m["peerURLs"]).join(",");
                if name.is_empty() {
                    println!("{id}[unstarted]: peerURLs={peers}");
                } else {
                    println!(
                        "{id}: name={name} peerURLs={peers} clientURLs={} isLeader={}",
                        strings(&m["clientURLs"]).join(","),
                        id == leader_id
                    );
                }
            }
            Ok(())
        }
        MemberCmd::Add { args } => {
            if args.len() != 2 {
                return Err(die("Provide a name and a single member peerURL"));
            }
            let body = serde_json::json!({ "peerURLs": [args[1]] }).to_string();
            let r = post_json(ctx, "POST", "/v2/members", body)
                .await
                .map_err(|e| die(&e))?;
            let new_id = r["id"].as_str().unwrap_or("").to_string();
            let new_name = &args[0];
            println!("Added member named {new_name} with ID {new_id} to cluster");
            let members = list(ctx).await.map_err(|e| die(&e))?;
            let mut conf = Vec::new();
            for m in &members {
                for u in strings(&m["peerURLs"]) {
                    let mut n = m["name"].as_str().unwrap_or("").to_string();
                    if m["id"].as_str() == Some(new_id.as_str()) {
                        n = new_name.clone();
                    }
                    conf.push(format!("{n}={u}"));
                }
            }
            println!();
            println!("ETCD_NAME={}", quote(new_name.as_bytes()));
            println!("ETCD_INITIAL_CLUSTER={}", quote(conf.join(",").as_bytes()));
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            Ok(())
        }
        MemberCmd::Remove { args } => {
            if args.len() != 1 {
                return Err(die("Provide a single member ID"));
            }
            let id = &args[0];
            let members = list(ctx).await.map_err(|e| {
                die(&format!(
                    "Error while verifying ID against known members: {e}"
                ))
            })?;
            let mut found = false;
            for m in &members {
                if m["id"].as_str() == Some(id.as_str()) {
                    found = true;
                }
                if m["name"].as_str() == Some(id.as_str()) {
                    let mid = m["id"].as_str().unwrap_or("");
                    eprintln!("Found a member named {id}; if this is correct, please use its ID, eg:\n\tetcdctl member remove {mid}");
                    eprintln!("For more details, read the documentation at https://github.com/etcd-io/etcd/blob/master/Documentation/runtime-configuration.md#remove-a-member\n");
                }
            }
            if !found {
                return Err(die(&format!(
                    "Couldn't find a member in the cluster with an ID of {id}."
                )));
            }
            let r = ctx
                .client
                .request(
                    "DELETE",
                    &format!("/v2/members/{id}"),
                    None,
                    Some(ctx.total_timeout),
                )
                .await
                .map_err(|e| die(&e))?;
            if r.status >= 400 {
                eprint!(
                    "Received an error trying to remove member {id}: {}",
                    String::from_utf8_lossy(&r.body).trim()
                );
                return Err(CtlError::silent(ExitCode::Error));
            }
            println!("Removed member {id} from cluster");
            Ok(())
        }
        MemberCmd::Update { args } => {
            if args.len() != 2 {
                return Err(die(
                    "Provide an ID and a list of comma separated peerURL (0xabcd http://example.com,http://example1.com)",
                ));
            }
            let urls: Vec<&str> = args[1].split(',').collect();
            let body = serde_json::json!({ "peerURLs": urls }).to_string();
            post_json(ctx, "PUT", &format!("/v2/members/{}", args[0]), body)
                .await
                .map_err(|e| die(&e))?;
            println!("Updated member with ID {} in cluster", args[0]);
            Ok(())
        }
    }
}

async fn post_json(ctx: &Ctx, method: &str, path: &str, body: String) -> Result<Value, String> {
    // The members API takes JSON; the keys API helper sends forms, so send by hand.
    let r = ctx
        .client
        .request_json(method, path, body, ctx.total_timeout)
        .await?;
    if r.status >= 400 {
        let text = String::from_utf8_lossy(&r.body).trim().to_string();
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        return Err(msg);
    }
    if r.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&r.body).map_err(|e| e.to_string())
}

pub async fn cluster_health(ctx: &Ctx, forever: bool) -> CtlResult {
    let members = match list(ctx).await {
        Ok(m) => m,
        Err(e) => {
            println!("cluster may be unhealthy: failed to list members");
            return Err(ctx.fail(exit::SERVER_ERROR, V2Error::Other(e)));
        }
    };
    loop {
        let mut healthy = 0;
        for m in &members {
            let id = m["id"].as_str().unwrap_or("");
            let urls = strings(&m["clientURLs"]);
            if urls.is_empty() {
                println!("member {id} is unreachable: no available published client urls");
                continue;
            }
            let mut checked = false;
            for url in &urls {
                let resp = match ctx.client.request_one(url, "GET", "/health", None).await {
                    Ok(r) => r,
                    Err(e) => {
                        println!("failed to check the health of member {id} on {url}: {e}");
                        continue;
                    }
                };
                let v: Value = match serde_json::from_slice(&resp.body) {
                    Ok(v) => v,
                    Err(e) => {
                        println!("failed to check the health of member {id} on {url}: {e}");
                        continue;
                    }
                };
                checked = true;
                let ok =
                    v["health"].as_str() == Some("true") || v["health"].as_bool() == Some(true);
                if ok {
                    println!("member {id} is healthy: got healthy result from {url}");
                    healthy += 1;
                } else {
                    println!("member {id} is unhealthy: got unhealthy result from {url}");
                }
                break;
            }
            if !checked {
                println!(
                    "member {id} is unreachable: [{}] are all unreachable",
                    urls.join(" ")
                );
            }
        }
        if healthy == members.len() {
            println!("cluster is healthy");
        } else if healthy == 0 {
            println!("cluster is unavailable");
        } else {
            println!("cluster is degraded");
        }
        if !forever {
            if healthy == members.len() {
                return Ok(());
            }
            // etcdctl 2's ExitClusterNotHealthy.
            return Err(CtlError::silent(ExitCode::Interrupted));
        }
        println!("\nnext check after 10 second...\n");
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    }
}
