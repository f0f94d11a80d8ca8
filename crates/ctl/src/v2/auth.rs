//! v2 `user`, `role` and `auth` commands over `/v2/auth`.

use clap::Subcommand;
use serde_json::{json, Value};

use super::Ctx;
use crate::exit::{CtlError, CtlResult, ExitCode};

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// add a new user for the etcd cluster
    Add { args: Vec<String> },
    /// get details for a user
    Get { args: Vec<String> },
    /// list all current users
    List { args: Vec<String> },
    /// remove a user for the etcd cluster
    Remove { args: Vec<String> },
    /// grant roles to a user
    Grant {
        /// List of roles to grant or revoke
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        args: Vec<String>,
    },
    /// revoke roles for a user
    Revoke {
        /// List of roles to grant or revoke
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        args: Vec<String>,
    },
    /// change password for a user
    Passwd { args: Vec<String> },
}

#[derive(Args, Debug, Clone)]
pub struct PermArgs {
    /// Path granted for the role to access
    #[arg(long, default_value = "")]
    path: String,
    /// Grant read-only access
    #[arg(long)]
    read: bool,
    /// Grant write-only access
    #[arg(long)]
    write: bool,
    /// Grant read-write access
    #[arg(long, alias = "rw")]
    readwrite: bool,
    args: Vec<String>,
}

use clap::Args;

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// add a new role for the etcd cluster
    Add { args: Vec<String> },
    /// get details for a role
    Get { args: Vec<String> },
    /// list all roles
    List { args: Vec<String> },
    /// remove a role from the etcd cluster
    Remove { args: Vec<String> },
    /// grant path matches to an etcd role
    Grant(PermArgs),
    /// revoke path matches for an etcd role
    Revoke(PermArgs),
}

#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// enable authentication
    Enable { args: Vec<String> },
    /// disable authentication
    Disable { args: Vec<String> },
}

fn die(msg: &str) -> CtlError {
    eprintln!("{msg}");
    CtlError::silent(ExitCode::Error)
}

/// One call to the auth API; a failure is the server's `message`.
async fn call(ctx: &Ctx, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let resp = match body {
        Some(b) => {
            ctx.client
                .request_json(method, path, b.to_string(), ctx.total_timeout)
                .await?
        }
        None => {
            ctx.client
                .request(method, path, None, Some(ctx.total_timeout))
                .await?
        }
    };
    let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    if resp.status >= 400 {
        return Err(v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).trim().to_string()));
    }
    Ok(v)
}

fn name(args: &[String], what: &str) -> CtlResult<String> {
    match args {
        [one] => Ok(one.clone()),
        _ => Err(die(what)),
    }
}

fn no_args(args: &[String]) -> CtlResult {
    if args.is_empty() {
        Ok(())
    } else {
        Err(die("No arguments accepted"))
    }
}

fn ask(prompt: &str) -> String {
    use std::io::BufRead;
    eprint!("{prompt}");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    line.trim_end_matches(['\n', '\r']).to_string()
}

/// Role names from a user object: plain strings (old servers) or `{"role": ...}` objects.
fn role_names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    r.as_str()
                        .map(str::to_string)
                        .or_else(|| r["role"].as_str().map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub async fn user(ctx: &Ctx, cmd: &UserCmd) -> CtlResult {
    let user_path = |n: &str| {
        format!(
            "/v2/auth/users/{}",
            super::http::key_path(n).trim_start_matches('/')
        )
    };
    match cmd {
        UserCmd::List { args } => {
            no_args(args)?;
            let v = call(ctx, "GET", "/v2/auth/users", None)
                .await
                .map_err(|e| die(&e))?;
            let users = v["users"].as_array().cloned().unwrap_or_default();
            for u in users {
                match u.as_str() {
                    Some(s) => println!("{s}"),
                    None => println!("{}", u["user"].as_str().unwrap_or("")),
                }
            }
            Ok(())
        }
        UserCmd::Add { args } => {
            let arg = name(args, "Please provide a username")?;
            let (user, pass) = match arg.split_once(':') {
                Some((u, p)) => (u.to_string(), p.to_string()),
                None => (arg.clone(), ask("New password: ")),
            };
            call(
                ctx,
                "PUT",
                &user_path(&user),
                Some(json!({"user": user, "password": pass})),
            )
            .await
            .map_err(|e| die(&e))?;
            println!("User {user} created");
            Ok(())
        }
        UserCmd::Remove { args } => {
            let user = name(args, "Please provide a username")?;
            call(ctx, "DELETE", &user_path(&user), None)
                .await
                .map_err(|e| die(&e))?;
            println!("User {user} removed");
            Ok(())
        }
        UserCmd::Passwd { args } => {
            let user = name(args, "Please provide a username")?;
            let pass = ask("New password: ");
            call(
                ctx,
                "PUT",
                &user_path(&user),
                Some(json!({"user": user, "password": pass})),
            )
            .await
            .map_err(|e| die(&e))?;
            println!("Password updated");
            Ok(())
        }
        UserCmd::Grant { roles, args } | UserCmd::Revoke { roles, args } => {
            let user = name(args, "Please provide a username")?;
            if roles.is_empty() {
                return Err(die("No roles specified; please use `--roles`"));
            }
            let field = if matches!(cmd, UserCmd::Grant { .. }) {
                "grant"
            } else {
                "revoke"
            };
            call(
                ctx,
                "PUT",
                &user_path(&user),
                Some(json!({"user": user, field: roles})),
            )
            .await
            .map_err(|e| die(&e))?;
            println!("User {user} updated");
            Ok(())
        }
        UserCmd::Get { args } => {
            let user = name(args, "Please provide a username")?;
            let v = call(ctx, "GET", &user_path(&user), None)
                .await
                .map_err(|e| die(&e))?;
            println!("User: {}", v["user"].as_str().unwrap_or(&user));
            println!("Roles: {}", role_names(&v["roles"]).join(" "));
            Ok(())
        }
    }
}

fn paths(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The path as Go's `CanonicalURLPath`: leading slash, no `.`/`..`/doubled slashes, a trailing
/// slash kept.
fn canonical(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

pub async fn role(ctx: &Ctx, cmd: &RoleCmd) -> CtlResult {
    let role_path = |n: &str| {
        format!(
            "/v2/auth/roles/{}",
            super::http::key_path(n).trim_start_matches('/')
        )
    };
    match cmd {
        RoleCmd::List { args } => {
            no_args(args)?;
            let v = call(ctx, "GET", "/v2/auth/roles", None)
                .await
                .map_err(|e| die(&e))?;
            for r in v["roles"].as_array().cloned().unwrap_or_default() {
                match r.as_str() {
                    Some(s) => println!("{s}"),
                    None => println!("{}", r["role"].as_str().unwrap_or("")),
                }
            }
            Ok(())
        }
        RoleCmd::Add { args } => {
            let role = name(args, "Please provide a role name")?;
            if call(ctx, "GET", &role_path(&role), None).await.is_ok() {
                return Err(die(&format!("Role {role} already exists")));
            }
            call(ctx, "PUT", &role_path(&role), Some(json!({"role": role})))
                .await
                .map_err(|e| die(&e))?;
            println!("Role {role} created");
            Ok(())
        }
        RoleCmd::Remove { args } => {
            let role = name(args, "Please provide a role name")?;
            call(ctx, "DELETE", &role_path(&role), None)
                .await
                .map_err(|e| die(&e))?;
            println!("Role {role} removed");
            Ok(())
        }
        RoleCmd::Get { args } => {
            let role = name(args, "Please provide a role name")?;
            let v = call(ctx, "GET", &role_path(&role), None)
                .await
                .map_err(|e| die(&e))?;
            println!("Role: {}", v["role"].as_str().unwrap_or(&role));
            println!("KV Read:");
            for p in paths(&v["permissions"]["kv"]["read"]) {
                println!("\t{p}");
            }
            println!("KV Write:");
            for p in paths(&v["permissions"]["kv"]["write"]) {
                println!("\t{p}");
            }
            Ok(())
        }
        RoleCmd::Grant(p) | RoleCmd::Revoke(p) => {
            let grant = matches!(cmd, RoleCmd::Grant(_));
            if p.path.is_empty() {
                return Err(die("No path specified; please use `--path`"));
            }
            if canonical(&p.path) != p.path {
                return Err(die(&format!(
                    "Not canonical path; please use `--path={}`",
                    canonical(&p.path)
                )));
            }
            if [p.read, p.write, p.readwrite]
                .iter()
                .filter(|b| **b)
                .count()
                != 1
            {
                return Err(die(
                    "Please specify exactly one of --read, --write or --readwrite",
                ));
            }
            let role = name(&p.args, "Please provide a role name")?;
            let current = call(ctx, "GET", &role_path(&role), None)
                .await
                .map_err(|e| die(&e))?;
            let (read, write) = match (p.read, p.write) {
                (true, _) => (vec![p.path.clone()], vec![]),
                (_, true) => (vec![], vec![p.path.clone()]),
                _ => (vec![p.path.clone()], vec![p.path.clone()]),
            };
            let field = if grant { "grant" } else { "revoke" };
            let updated = call(
                ctx,
                "PUT",
                &role_path(&role),
                Some(json!({"role": role, field: {"kv": {"read": read, "write": write}}})),
            )
            .await
            .map_err(|e| die(&e))?;
            if updated["permissions"] == current["permissions"] {
                print!(
                    "{}",
                    if grant {
                        "Role unchanged; already granted"
                    } else {
                        "Role unchanged; already revoked"
                    }
                );
            }
            println!("Role {role} updated");
            Ok(())
        }
    }
}

pub async fn auth(ctx: &Ctx, cmd: &AuthCmd) -> CtlResult {
    let (args, method, done) = match cmd {
        AuthCmd::Enable { args } => (args, "PUT", "Authentication Enabled"),
        AuthCmd::Disable { args } => (args, "DELETE", "Authentication Disabled"),
    };
    no_args(args)?;
    let resp = ctx
        .client
        .request(method, "/v2/auth/enable", None, Some(ctx.total_timeout))
        .await
        .map_err(|e| die(&e))?;
    if resp.status >= 400 {
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        return Err(die(v["message"].as_str().unwrap_or("auth: request failed")));
    }
    println!("{done}");
    Ok(())
}
