//! `-w json`: what Go's `encoding/json` makes of etcdctl's response values — protobuf field
//! names, zero values left out, bytes in base64, enums as numbers — plus the hand-shaped
//! objects of the client library's own response types (lease, watch, endpoint lists).

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use rampart_proto::etcdserverpb as pb;

use super::{EpHashKv, EpHealth, EpStatus};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(rampart_proto::FILE_DESCRIPTOR_SET)
            .expect("the compiled-in descriptor set decodes")
    })
}

/// A protobuf message as Go's `json.Marshal` of the gogo-generated struct writes it.
pub fn message<M: prost::Message>(type_name: &str, m: &M) -> String {
    let Some(desc) = pool().get_message_by_name(type_name) else {
        return "null".to_string();
    };
    let Ok(dynamic) = DynamicMessage::decode(desc, m.encode_to_vec().as_slice()) else {
        return "null".to_string();
    };
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .use_enum_numbers(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(true);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    if dynamic.serialize_with_options(&mut ser, &options).is_err() {
        return "null".to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| "null".to_string())
}

pub fn string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn header_fields(h: Option<&pb::ResponseHeader>) -> Vec<(String, String)> {
    let Some(h) = h else { return Vec::new() };
    let mut out = Vec::new();
    if h.cluster_id != 0 {
        out.push(("cluster_id".to_string(), h.cluster_id.to_string()));
    }
    if h.member_id != 0 {
        out.push(("member_id".to_string(), h.member_id.to_string()));
    }
    if h.revision != 0 {
        out.push(("revision".to_string(), h.revision.to_string()));
    }
    if h.raft_term != 0 {
        out.push(("raft_term".to_string(), h.raft_term.to_string()));
    }
    out
}

fn object(fields: &[(String, String)]) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", string(k)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// clientv3's response types embed `*pb.ResponseHeader`, so its fields sit at the top level.
pub fn flat_header(h: Option<&pb::ResponseHeader>, rest: &[(&str, String)]) -> String {
    let mut fields = header_fields(h);
    fields.extend(rest.iter().map(|(k, v)| (k.to_string(), v.clone())));
    object(&fields)
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

pub fn time_to_live(r: &pb::LeaseTimeToLiveResponse) -> String {
    let keys = if r.keys.is_empty() {
        "null".to_string()
    } else {
        let k: Vec<String> = r
            .keys
            .iter()
            .map(|k| format!("\"{}\"", base64(k)))
            .collect();
        format!("[{}]", k.join(","))
    };
    flat_header(
        r.header.as_ref(),
        &[
            ("id", r.id.to_string()),
            ("ttl", r.ttl.to_string()),
            ("granted-ttl", r.granted_ttl.to_string()),
            ("keys", keys),
        ],
    )
}

pub fn leases(r: &pb::LeaseLeasesResponse) -> String {
    let items: Vec<String> = r
        .leases
        .iter()
        .map(|l| format!("{{\"id\":{}}}", l.id))
        .collect();
    let list = if r.leases.is_empty() {
        "null".to_string()
    } else {
        format!("[{}]", items.join(","))
    };
    flat_header(r.header.as_ref(), &[("leases", list)])
}

/// clientv3's WatchResponse: `Header`, `Events`, `CompactRevision`, `Canceled`, `Created`.
pub fn watch(r: &pb::WatchResponse) -> String {
    let header = r
        .header
        .as_ref()
        .map(|h| message("etcdserverpb.ResponseHeader", h))
        .unwrap_or_else(|| "{}".to_string());
    let events = if r.events.is_empty() {
        "null".to_string()
    } else {
        let e: Vec<String> = r
            .events
            .iter()
            .map(|e| message("mvccpb.Event", e))
            .collect();
        format!("[{}]", e.join(","))
    };
    format!(
        "{{\"Header\":{header},\"Events\":{events},\"CompactRevision\":{},\"Canceled\":{},\"Created\":{}}}",
        r.compact_revision, r.canceled, r.created
    )
}

/// TxnResponse: the `responses` oneof appears as Go writes the wrapper: `{"Response":{"ResponsePut":{...}}}`.
pub fn txn(r: &pb::TxnResponse) -> String {
    let mut fields = Vec::new();
    if let Some(h) = &r.header {
        fields.push((
            "header".to_string(),
            message("etcdserverpb.ResponseHeader", h),
        ));
    }
    if r.succeeded {
        fields.push(("succeeded".to_string(), "true".to_string()));
    }
    if !r.responses.is_empty() {
        let ops: Vec<String> = r
            .responses
            .iter()
            .map(|op| {
                let inner = match &op.response {
                    Some(pb::response_op::Response::ResponseRange(x)) => {
                        format!(
                            "{{\"ResponseRange\":{}}}",
                            message("etcdserverpb.RangeResponse", x)
                        )
                    }
                    Some(pb::response_op::Response::ResponsePut(x)) => {
                        format!(
                            "{{\"ResponsePut\":{}}}",
                            message("etcdserverpb.PutResponse", x)
                        )
                    }
                    Some(pb::response_op::Response::ResponseDeleteRange(x)) => format!(
                        "{{\"ResponseDeleteRange\":{}}}",
                        message("etcdserverpb.DeleteRangeResponse", x)
                    ),
                    Some(pb::response_op::Response::ResponseTxn(x)) => {
                        format!("{{\"ResponseTxn\":{}}}", txn(x))
                    }
                    None => "null".to_string(),
                };
                format!("{{\"Response\":{inner}}}")
            })
            .collect();
        fields.push(("responses".to_string(), format!("[{}]", ops.join(","))));
    }
    object(&fields)
}

pub fn endpoint_health(list: &[EpHealth]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|h| {
            let mut s = format!(
                "{{\"endpoint\":{},\"health\":{},\"took\":{}",
                string(&h.ep),
                h.health,
                string(&h.took)
            );
            if !h.error.is_empty() {
                s.push_str(&format!(",\"error\":{}", string(&h.error)));
            }
            s.push('}');
            s
        })
        .collect();
    format!("[{}]", items.join(","))
}

pub fn endpoint_status(list: &[EpStatus]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|s| {
            format!(
                "{{\"Endpoint\":{},\"Status\":{}}}",
                string(&s.ep),
                message("etcdserverpb.StatusResponse", &s.resp)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

pub fn endpoint_hashkv(list: &[EpHashKv]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|h| {
            format!(
                "{{\"Endpoint\":{},\"HashKV\":{}}}",
                string(&h.ep),
                message("etcdserverpb.HashKVResponse", &h.resp)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_go() {
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn range_response_as_go_json() {
        let r = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
            kvs: vec![rampart_proto::mvccpb::KeyValue {
                key: b"abc".to_vec(),
                value: b"123".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            message("etcdserverpb.RangeResponse", &r),
            r#"{"header":{"cluster_id":1,"member_id":2,"revision":3,"raft_term":4},"kvs":[{"key":"YWJj","create_revision":2,"mod_revision":2,"version":1,"value":"MTIz"}],"count":1}"#
        );
    }
}
