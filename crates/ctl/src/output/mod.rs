//! etcdctl's output formats (`-w simple|fields|json|protobuf|table`), each in its own file, and
//! the dispatch from a command's result to the chosen one. Formats a command does not support
//! fail as etcdctl's do ("table not supported as output format").

mod fields;
mod json;
mod simple;
mod table;

use prost::Message;
use rampart_proto::etcdserverpb as pb;

use crate::exit::{CtlError, CtlResult, ExitCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Fields,
    Json,
    Protobuf,
    Table,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "simple" => Format::Simple,
            "fields" => Format::Fields,
            "json" => Format::Json,
            "protobuf" => Format::Protobuf,
            "table" => Format::Table,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Fields => "fields",
            Format::Json => "json",
            Format::Protobuf => "protobuf",
            Format::Table => "table",
        }
    }
}

/// One endpoint's health (`endpoint health`).
#[derive(Debug, Clone)]
pub struct EpHealth {
    pub ep: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

/// One endpoint's status (`endpoint status`).
#[derive(Debug, Clone)]
pub struct EpStatus {
    pub ep: String,
    pub resp: pb::StatusResponse,
}

/// One endpoint's KV hash (`endpoint hashkv`).
#[derive(Debug, Clone)]
pub struct EpHashKv {
    pub ep: String,
    pub resp: pb::HashKvResponse,
}

/// Prints results in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    /// `get --print-value-only`.
    pub value_only: bool,
}

fn unsupported(format: Format) -> CtlError {
    CtlError::new(
        ExitCode::BadFeature,
        format!("{} not supported as output format", format.name()),
    )
}

/// `-w protobuf`: the response's wire bytes.
fn write_protobuf<M: Message>(m: &M) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&m.encode_to_vec());
    let _ = out.flush();
}

/// The formats every RPC response supports: simple and fields are per response; json and
/// protobuf are the message itself; table is not supported.
macro_rules! rpc_output {
    ($self:ident, $msg:expr, $type_name:expr, $simple:expr, $fields:expr) => {{
        match $self.format {
            Format::Simple => {
                $simple;
                Ok(())
            }
            Format::Fields => {
                $fields;
                Ok(())
            }
            Format::Json => {
                println!("{}", json::message($type_name, $msg));
                Ok(())
            }
            Format::Protobuf => {
                write_protobuf($msg);
                Ok(())
            }
            Format::Table => Err(unsupported(Format::Table)),
        }
    }};
}

impl Printer {
    pub fn is_simple(&self) -> bool {
        self.format == Format::Simple
    }

    pub fn get(&self, r: &pb::RangeResponse) -> CtlResult {
        rpc_output!(
            self,
            r,
            "etcdserverpb.RangeResponse",
            simple::get(self, r),
            fields::get(r)
        )
    }

    pub fn put(&self, r: &pb::PutResponse) -> CtlResult {
        rpc_output!(
            self,
            r,
            "etcdserverpb.PutResponse",
            simple::put(self, r),
            fields::put(r)
        )
    }

    pub fn del(&self, r: &pb::DeleteRangeResponse) -> CtlResult {
        rpc_output!(
            self,
            r,
            "etcdserverpb.DeleteRangeResponse",
            simple::del(self, r),
            fields::del(r)
        )
    }

    pub fn txn(&self, r: &pb::TxnResponse) -> CtlResult {
        match self.format {
            Format::Json => {
                println!("{}", json::txn(r));
                Ok(())
            }
            _ => rpc_output!(
                self,
                r,
                "etcdserverpb.TxnResponse",
                simple::txn(self, r),
                fields::txn(r)
            ),
        }
    }

    pub fn watch(&self, r: &pb::WatchResponse) -> CtlResult {
        match self.format {
            Format::Simple => {
                simple::watch(self, r);
                Ok(())
            }
            Format::Fields => {
                fields::watch(r);
                Ok(())
            }
            Format::Json => {
                println!("{}", json::watch(r));
                Ok(())
            }
            Format::Protobuf => {
                write_protobuf(r);
                Ok(())
            }
            Format::Table => Err(unsupported(Format::Table)),
        }
    }

    pub fn grant(&self, r: &pb::LeaseGrantResponse) -> CtlResult {
        match self.format {
            Format::Simple => println!("lease {:016x} granted with TTL({}s)", r.id, r.ttl),
            Format::Fields => fields::id_ttl(r.header.as_ref(), r.id, r.ttl),
            Format::Json => println!(
                "{}",
                json::flat_header(
                    r.header.as_ref(),
                    &[
                        ("ID", r.id.to_string()),
                        ("TTL", r.ttl.to_string()),
                        ("Error", json::string(&r.error))
                    ]
                )
            ),
            Format::Protobuf => write_protobuf(r),
            Format::Table => return Err(unsupported(Format::Table)),
        }
        Ok(())
    }

    pub fn revoke(&self, id: i64, r: &pb::LeaseRevokeResponse) -> CtlResult {
        rpc_output!(
            self,
            r,
            "etcdserverpb.LeaseRevokeResponse",
            println!("lease {id:016x} revoked"),
            fields::header(r.header.as_ref())
        )
    }

    pub fn keep_alive(&self, r: &pb::LeaseKeepAliveResponse) -> CtlResult {
        match self.format {
            Format::Simple => println!("lease {:016x} keepalived with TTL({})", r.id, r.ttl),
            Format::Fields => fields::id_ttl(r.header.as_ref(), r.id, r.ttl),
            Format::Json => println!(
                "{}",
                json::flat_header(
                    r.header.as_ref(),
                    &[("ID", r.id.to_string()), ("TTL", r.ttl.to_string())]
                )
            ),
            Format::Protobuf => write_protobuf(r),
            Format::Table => return Err(unsupported(Format::Table)),
        }
        Ok(())
    }

    pub fn time_to_live(&self, r: &pb::LeaseTimeToLiveResponse, keys: bool) -> CtlResult {
        match self.format {
            Format::Simple => simple::time_to_live(r, keys),
            Format::Fields => fields::time_to_live(r),
            Format::Json => println!("{}", json::time_to_live(r)),
            Format::Protobuf => write_protobuf(r),
            Format::Table => return Err(unsupported(Format::Table)),
        }
        Ok(())
    }

    pub fn leases(&self, r: &pb::LeaseLeasesResponse) -> CtlResult {
        match self.format {
            Format::Simple => {
                println!("found {} leases", r.leases.len());
                for l in &r.leases {
                    println!("{:016x}", l.id);
                }
            }
            Format::Fields => {
                fields::header(r.header.as_ref());
                for l in &r.leases {
                    println!("\"ID\" : {}", l.id);
                }
            }
            Format::Json => println!("{}", json::leases(r)),
            Format::Protobuf => write_protobuf(r),
            Format::Table => return Err(unsupported(Format::Table)),
        }
        Ok(())
    }

    pub fn member_add(&self, r: &pb::MemberAddResponse) -> CtlResult {
        let cluster = r.header.as_ref().map(|h| h.cluster_id).unwrap_or(0);
        let id = r.member.as_ref().map(|m| m.id).unwrap_or(0);
        match self.format {
            Format::Simple => println!("Member {id:16x} added to cluster {cluster:16x}"),
            Format::Json => println!("{}", json::message("etcdserverpb.MemberAddResponse", r)),
            Format::Protobuf => write_protobuf(r),
            other => return Err(unsupported(other)),
        }
        Ok(())
    }

    pub fn member_changed(
        &self,
        verb: &str,
        id: u64,
        header: Option<&pb::ResponseHeader>,
        msg: &impl MemberChange,
    ) -> CtlResult {
        let cluster = header.map(|h| h.cluster_id).unwrap_or(0);
        match self.format {
            Format::Simple => println!("Member {id:16x} {verb} cluster {cluster:16x}"),
            Format::Json => println!("{}", json::message(msg.type_name(), msg)),
            Format::Protobuf => write_protobuf(msg),
            other => return Err(unsupported(other)),
        }
        Ok(())
    }

    pub fn member_list(&self, r: &pb::MemberListResponse) -> CtlResult {
        match self.format {
            Format::Simple => {
                for row in table::member_rows(r) {
                    println!("{}", row.join(", "));
                }
            }
            Format::Fields => fields::member_list(r),
            Format::Json => println!("{}", json::message("etcdserverpb.MemberListResponse", r)),
            Format::Protobuf => write_protobuf(r),
            Format::Table => print!("{}", table::member_list(r)),
        }
        Ok(())
    }

    pub fn endpoint_health(&self, list: &[EpHealth]) -> CtlResult {
        match self.format {
            Format::Simple => {
                for h in list {
                    if h.error.is_empty() {
                        eprintln!(
                            "{} is healthy: successfully committed proposal: took = {}",
                            h.ep, h.took
                        );
                    } else {
                        eprintln!(
                            "{} is unhealthy: failed to commit proposal: {}",
                            h.ep, h.error
                        );
                    }
                }
            }
            Format::Fields => {
                for h in list {
                    println!("\"Endpoint\" : {}", crate::gofmt::quote(h.ep.as_bytes()));
                    println!("\"Health\" : {}", h.health);
                    println!("\"Took\" : {}", h.took);
                    println!("\"Error\" : {}", h.error);
                    println!();
                }
            }
            Format::Json => println!("{}", json::endpoint_health(list)),
            Format::Table => print!("{}", table::endpoint_health(list)),
            Format::Protobuf => return Err(unsupported(Format::Protobuf)),
        }
        Ok(())
    }

    pub fn endpoint_status(&self, list: &[EpStatus]) -> CtlResult {
        match self.format {
            Format::Simple => {
                for row in table::status_rows(list) {
                    println!("{}", row.join(", "));
                }
            }
            Format::Fields => fields::endpoint_status(list),
            Format::Json => println!("{}", json::endpoint_status(list)),
            Format::Table => print!("{}", table::endpoint_status(list)),
            Format::Protobuf => return Err(unsupported(Format::Protobuf)),
        }
        Ok(())
    }

    pub fn endpoint_hashkv(&self, list: &[EpHashKv]) -> CtlResult {
        match self.format {
            Format::Simple => {
                for h in list {
                    println!("{}, {}", h.ep, h.resp.hash);
                }
            }
            Format::Fields => {
                for h in list {
                    fields::header(h.resp.header.as_ref());
                    println!("\"Endpoint\" : {}", crate::gofmt::quote(h.ep.as_bytes()));
                    println!("\"Hash\" : {}", h.resp.hash);
                    println!();
                }
            }
            Format::Json => println!("{}", json::endpoint_hashkv(list)),
            Format::Table => print!("{}", table::endpoint_hashkv(list)),
            Format::Protobuf => return Err(unsupported(Format::Protobuf)),
        }
        Ok(())
    }

    pub fn alarm(&self, r: &pb::AlarmResponse) -> CtlResult {
        rpc_output!(
            self,
            r,
            "etcdserverpb.AlarmResponse",
            simple::alarm(r),
            fields::alarm(r)
        )
    }

    pub fn move_leader(&self, leader: u64, target: u64, r: &pb::MoveLeaderResponse) -> CtlResult {
        match self.format {
            Format::Simple => {
                println!("Leadership transferred from {leader:x} to {target:x}");
                Ok(())
            }
            Format::Json => {
                println!("{}", json::message("etcdserverpb.MoveLeaderResponse", r));
                Ok(())
            }
            Format::Protobuf => {
                write_protobuf(r);
                Ok(())
            }
            other => Err(unsupported(other)),
        }
    }

    /// `snapshot status`: etcdctl's `DBStatus` in every format but protobuf.
    pub fn db_status(&self, s: &crate::snapshot::DbStatus) -> CtlResult {
        let row = vec![
            format!("{:x}", s.hash),
            s.revision.to_string(),
            s.total_key.to_string(),
            crate::gofmt::humanize_bytes(s.total_size.max(0) as u64),
        ];
        match self.format {
            Format::Simple => println!("{}", row.join(", ")),
            Format::Table => print!(
                "{}",
                table::render(&["hash", "revision", "total keys", "total size"], &[row])
            ),
            Format::Json => println!(
                "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
                s.hash, s.revision, s.total_key, s.total_size
            ),
            Format::Fields => {
                println!("\"Hash\" : {}", s.hash);
                println!("\"Revision\" : {}", s.revision);
                println!("\"Keys\" : {}", s.total_key);
                println!("\"Size\" : {}", s.total_size);
            }
            Format::Protobuf => return Err(unsupported(Format::Protobuf)),
        }
        Ok(())
    }

    /// Responses of the auth commands: `simple` is the given line(s), others the message.
    pub fn auth<M: Message>(
        &self,
        type_name: &str,
        msg: &M,
        header: Option<&pb::ResponseHeader>,
        simple: impl FnOnce(),
    ) -> CtlResult {
        rpc_output!(self, msg, type_name, simple(), fields::header(header))
    }
}

/// Member remove/update/promote responses.
pub trait MemberChange: Message {
    fn type_name(&self) -> &'static str;
}

impl MemberChange for pb::MemberRemoveResponse {
    fn type_name(&self) -> &'static str {
        "etcdserverpb.MemberRemoveResponse"
    }
}
impl MemberChange for pb::MemberUpdateResponse {
    fn type_name(&self) -> &'static str {
        "etcdserverpb.MemberUpdateResponse"
    }
}
impl MemberChange for pb::MemberPromoteResponse {
    fn type_name(&self) -> &'static str {
        "etcdserverpb.MemberPromoteResponse"
    }
}

pub use simple::event_type_name;
