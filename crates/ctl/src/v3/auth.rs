//! `user ...`, `role ...` and `auth enable|disable`.

use std::io::BufRead;

use clap::Subcommand;
use rampart_proto::authpb;
use rampart_proto::etcdserverpb as pb;

use super::client::Client;
use super::kv::prefix_end;
use crate::exit::{CtlError, CtlResult};
use crate::output::Printer;

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Adds a new user
    Add {
        /// Read password from stdin instead of interactive terminal
        #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long, default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only)
        #[arg(long)]
        no_password: bool,
        args: Vec<String>,
    },
    /// Deletes a user
    Delete { args: Vec<String> },
    /// Gets detailed information of a user
    Get {
        /// Show permissions of roles granted to the user
        #[arg(long)]
        detail: bool,
        args: Vec<String>,
    },
    /// Lists all users
    List { args: Vec<String> },
    /// Changes password of user
    Passwd {
        /// If true, read password from stdin instead of interactive terminal
        #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
        interactive: bool,
        args: Vec<String>,
    },
    /// Grants a role to a user
    GrantRole { args: Vec<String> },
    /// Revokes a role from a user
    RevokeRole { args: Vec<String> },
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// Adds a new role
    Add { args: Vec<String> },
    /// Deletes a role
    Delete { args: Vec<String> },
    /// Gets detailed information of a role
    Get { args: Vec<String> },
    /// Lists all roles
    List { args: Vec<String> },
    /// Grants a key to a role
    GrantPermission {
        /// grant a prefix permission
        #[arg(long)]
        prefix: bool,
        /// grant a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long)]
        from_key: bool,
        args: Vec<String>,
    },
    /// Revokes a key from a role
    RevokePermission {
        /// revoke a prefix permission
        #[arg(long)]
        prefix: bool,
        /// revoke a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long)]
        from_key: bool,
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Enables authentication
    Enable { args: Vec<String> },
    /// Disables authentication
    Disable { args: Vec<String> },
}

/// A password: one word from standard input (`--interactive=false`) or asked twice.
fn read_password(name: &str, interactive: bool) -> CtlResult<String> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if !interactive {
        let _ = stdin.lock().read_line(&mut line);
        return Ok(line.split_whitespace().next().unwrap_or("").to_string());
    }
    eprint!("Password of {name}: ");
    let _ = stdin.lock().read_line(&mut line);
    let first = line.trim_end_matches(['\n', '\r']).to_string();
    if first.is_empty() {
        return Err(CtlError::bad_args("empty password"));
    }
    eprint!("Type password of {name} again for confirmation: ");
    let mut again = String::new();
    let _ = stdin.lock().read_line(&mut again);
    if again.trim_end_matches(['\n', '\r']) != first {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(first)
}

fn one_arg(args: &[String], what: &str) -> CtlResult<String> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(what));
    }
    Ok(args[0].clone())
}

fn print_range(key: &[u8], end: &[u8]) {
    let k = String::from_utf8_lossy(key);
    let e = String::from_utf8_lossy(end);
    if end != b"\x00" {
        print!("\t[{k}, {e})");
    } else {
        print!("\t[{k}, <open ended>");
    }
    if prefix_end(key) == end {
        print!(" (prefix {k})");
    }
    println!();
}

fn print_role(role: &str, perms: &[authpb::Permission]) {
    println!("Role {role}");
    for (title, kinds) in [("KV Read:", [0, 2]), ("KV Write:", [1, 2])] {
        println!("{title}");
        for p in perms.iter().filter(|p| kinds.contains(&p.perm_type)) {
            if p.range_end.is_empty() {
                println!("\t{}", String::from_utf8_lossy(&p.key));
            } else {
                print_range(&p.key, &p.range_end);
            }
        }
    }
}

pub async fn user(client: &Client, printer: &Printer, cmd: &UserCmd) -> CtlResult {
    let auth = client.auth();
    match cmd {
        UserCmd::Add {
            interactive,
            new_user_password,
            no_password,
            args,
        } => {
            let arg = one_arg(args, "user add command requires user name as its argument")?;
            let (user, password) = if *no_password {
                (arg, String::new())
            } else if !new_user_password.is_empty() {
                (arg, new_user_password.clone())
            } else if let Some((u, p)) = arg.split_once(':') {
                if u.is_empty() {
                    return Err(CtlError::bad_args("empty user name is not allowed"));
                }
                (u.to_string(), p.to_string())
            } else {
                let p = read_password(&arg, *interactive)?;
                (arg, p)
            };
            let r = client
                .call(auth.clone().user_add(pb::AuthUserAddRequest {
                    name: user.clone(),
                    password,
                    options: Some(authpb::UserAddOptions {
                        no_password: *no_password,
                    }),
                }))
                .await?;
            printer.auth(
                "etcdserverpb.AuthUserAddResponse",
                &r,
                r.header.as_ref(),
                || println!("User {user} created"),
            )
        }
        UserCmd::Delete { args } => {
            let name = one_arg(
                args,
                "user delete command requires user name as its argument",
            )?;
            let r = client
                .call(
                    auth.clone()
                        .user_delete(pb::AuthUserDeleteRequest { name: name.clone() }),
                )
                .await?;
            printer.auth(
                "etcdserverpb.AuthUserDeleteResponse",
                &r,
                r.header.as_ref(),
                || println!("User {name} deleted"),
            )
        }
        UserCmd::Get { detail, args } => {
            let name = one_arg(args, "user get command requires user name as its argument")?;
            let r = client
                .call(
                    auth.clone()
                        .user_get(pb::AuthUserGetRequest { name: name.clone() }),
                )
                .await?;
            if *detail {
                println!("User: {name}");
                for role in &r.roles {
                    println!();
                    let rr = client
                        .call(
                            auth.clone()
                                .role_get(pb::AuthRoleGetRequest { role: role.clone() }),
                        )
                        .await?;
                    printer.auth(
                        "etcdserverpb.AuthRoleGetResponse",
                        &rr,
                        rr.header.as_ref(),
                        || print_role(role, &rr.perm),
                    )?;
                }
                return Ok(());
            }
            printer.auth(
                "etcdserverpb.AuthUserGetResponse",
                &r,
                r.header.as_ref(),
                || {
                    print!("User: {name}\nRoles:");
                    for role in &r.roles {
                        print!(" {role}");
                    }
                    println!();
                },
            )
        }
        UserCmd::List { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "user list command requires no arguments",
                ));
            }
            let r = client
                .call(auth.clone().user_list(pb::AuthUserListRequest {}))
                .await?;
            printer.auth(
                "etcdserverpb.AuthUserListResponse",
                &r,
                r.header.as_ref(),
                || {
                    for u in &r.users {
                        println!("{u}");
                    }
                },
            )
        }
        UserCmd::Passwd { interactive, args } => {
            let name = one_arg(
                args,
                "user passwd command requires user name as its argument",
            )?;
            let password = read_password(&name, *interactive)?;
            let r = client
                .call(
                    auth.clone()
                        .user_change_password(pb::AuthUserChangePasswordRequest { name, password }),
                )
                .await?;
            printer.auth(
                "etcdserverpb.AuthUserChangePasswordResponse",
                &r,
                r.header.as_ref(),
                || println!("Password updated"),
            )
        }
        UserCmd::GrantRole { args } => {
            if args.len() != 2 {
                return Err(CtlError::bad_args(
                    "user grant command requires user name and role name as its argument",
                ));
            }
            let r = client
                .call(auth.clone().user_grant_role(pb::AuthUserGrantRoleRequest {
                    user: args[0].clone(),
                    role: args[1].clone(),
                }))
                .await?;
            printer.auth(
                "etcdserverpb.AuthUserGrantRoleResponse",
                &r,
                r.header.as_ref(),
                || println!("Role {} is granted to user {}", args[1], args[0]),
            )
        }
        UserCmd::RevokeRole { args } => {
            if args.len() != 2 {
                return Err(CtlError::bad_args(
                    "user revoke-role requires user name and role name as its argument",
                ));
            }
            let r = client
                .call(
                    auth.clone()
                        .user_revoke_role(pb::AuthUserRevokeRoleRequest {
                            name: args[0].clone(),
                            role: args[1].clone(),
                        }),
                )
                .await?;
            printer.auth(
                "etcdserverpb.AuthUserRevokeRoleResponse",
                &r,
                r.header.as_ref(),
                || println!("Role {} is revoked from user {}", args[1], args[0]),
            )
        }
    }
}

/// The permission's key range from `key [endkey]` and `--prefix`/`--from-key`.
fn perm_range(args: &[String], prefix: bool, from_key: bool) -> CtlResult<(Vec<u8>, Vec<u8>)> {
    let key = args[0].as_bytes().to_vec();
    if prefix && from_key {
        return Err(CtlError::bad_args(
            "--from-key and --prefix flags are mutually exclusive",
        ));
    }
    if key.is_empty() {
        let end = if prefix || from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((vec![0], end));
    }
    if args.len() == 1 {
        let end = if prefix {
            prefix_end(&key)
        } else if from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((key, end));
    }
    if prefix {
        return Err(CtlError::bad_args(
            "unexpected endkey argument with --prefix flag",
        ));
    }
    if from_key {
        return Err(CtlError::bad_args(
            "unexpected endkey argument with --from-key flag",
        ));
    }
    Ok((key, args[1].as_bytes().to_vec()))
}

pub async fn role(client: &Client, printer: &Printer, cmd: &RoleCmd) -> CtlResult {
    let auth = client.auth();
    match cmd {
        RoleCmd::Add { args } => {
            let name = one_arg(args, "role add command requires role name as its argument")?;
            let r = client
                .call(
                    auth.clone()
                        .role_add(pb::AuthRoleAddRequest { name: name.clone() }),
                )
                .await?;
            printer.auth(
                "etcdserverpb.AuthRoleAddResponse",
                &r,
                r.header.as_ref(),
                || println!("Role {name} created"),
            )
        }
        RoleCmd::Delete { args } => {
            let role = one_arg(
                args,
                "role delete command requires role name as its argument",
            )?;
            let r = client
                .call(
                    auth.clone()
                        .role_delete(pb::AuthRoleDeleteRequest { role: role.clone() }),
                )
                .await?;
            printer.auth(
                "etcdserverpb.AuthRoleDeleteResponse",
                &r,
                r.header.as_ref(),
                || println!("Role {role} deleted"),
            )
        }
        RoleCmd::Get { args } => {
            let role = one_arg(args, "role get command requires role name as its argument")?;
            let r = client
                .call(
                    auth.clone()
                        .role_get(pb::AuthRoleGetRequest { role: role.clone() }),
                )
                .await?;
            printer.auth(
                "etcdserverpb.AuthRoleGetResponse",
                &r,
                r.header.as_ref(),
                || print_role(&role, &r.perm),
            )
        }
        RoleCmd::List { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "role list command requires no arguments",
                ));
            }
            let r = client
                .call(auth.clone().role_list(pb::AuthRoleListRequest {}))
                .await?;
            printer.auth(
                "etcdserverpb.AuthRoleListResponse",
                &r,
                r.header.as_ref(),
                || {
                    for role in &r.roles {
                        println!("{role}");
                    }
                },
            )
        }
        RoleCmd::GrantPermission {
            prefix,
            from_key,
            args,
        } => {
            if args.len() < 3 {
                return Err(CtlError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = match args[1].to_uppercase().as_str() {
                "READ" => 0,
                "WRITE" => 1,
                "READWRITE" => 2,
                _ => {
                    return Err(CtlError::bad_args(format!(
                        "invalid permission type: {}",
                        args[1]
                    )))
                }
            };
            let (key, range_end) = perm_range(&args[2..], *prefix, *from_key)?;
            let r = client
                .call(
                    auth.clone()
                        .role_grant_permission(pb::AuthRoleGrantPermissionRequest {
                            name: args[0].clone(),
                            perm: Some(authpb::Permission {
                                perm_type,
                                key,
                                range_end,
                            }),
                        }),
                )
                .await?;
            printer.auth(
                "etcdserverpb.AuthRoleGrantPermissionResponse",
                &r,
                r.header.as_ref(),
                || println!("Role {} updated", args[0]),
            )
        }
        RoleCmd::RevokePermission {
            prefix,
            from_key,
            args,
        } => {
            if args.len() < 2 {
                return Err(CtlError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let (key, range_end) = perm_range(&args[1..], *prefix, *from_key)?;
            let r = client
                .call(
                    auth.clone()
                        .role_revoke_permission(pb::AuthRoleRevokePermissionRequest {
                            role: args[0].clone(),
                            key: key.clone(),
                            range_end: range_end.clone(),
                        }),
                )
                .await?;
            printer.auth(
                "etcdserverpb.AuthRoleRevokePermissionResponse",
                &r,
                r.header.as_ref(),
                || {
                    let k = &args[1];
                    if range_end.is_empty() {
                        println!("Permission of key {k} is revoked from role {}", args[0]);
                    } else if range_end != b"\x00" {
                        println!(
                            "Permission of range [{k}, {}) is revoked from role {}",
                            String::from_utf8_lossy(&range_end),
                            args[0]
                        );
                    } else {
                        println!(
                            "Permission of range [{k}, <open ended> is revoked from role {}",
                            args[0]
                        );
                    }
                },
            )
        }
    }
}

pub async fn auth(client: &Client, cmd: &AuthCmd) -> CtlResult {
    let auth = client.auth();
    match cmd {
        AuthCmd::Enable { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "auth enable command does not accept any arguments",
                ));
            }
            loop {
                match client
                    .call(auth.clone().auth_enable(pb::AuthEnableRequest {}))
                    .await
                {
                    Ok(_) => break,
                    // etcdctl creates the root role when it is missing, then tries again.
                    Err(e) if e.message == "etcdserver: root user does not have root role" => {
                        client
                            .call(auth.clone().role_add(pb::AuthRoleAddRequest {
                                name: "root".into(),
                            }))
                            .await?;
                        client
                            .call(auth.clone().user_grant_role(pb::AuthUserGrantRoleRequest {
                                user: "root".into(),
                                role: "root".into(),
                            }))
                            .await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            println!("Authentication Enabled");
            Ok(())
        }
        AuthCmd::Disable { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "auth disable command does not accept any arguments",
                ));
            }
            client
                .call(auth.clone().auth_disable(pb::AuthDisableRequest {}))
                .await?;
            println!("Authentication Disabled");
            Ok(())
        }
    }
}
