//! `-w fields`: one `"Name" : value` line per field, as etcdctl's fields printer.

use rampart_proto::etcdserverpb as pb;
use rampart_proto::mvccpb;

use super::EpStatus;
use crate::gofmt::quote;

fn kv(prefix: &str, kv: &mvccpb::KeyValue) {
    println!("\"{prefix}Key\" : {}", quote(&kv.key));
    println!("\"{prefix}CreateRevision\" : {}", kv.create_revision);
    println!("\"{prefix}ModRevision\" : {}", kv.mod_revision);
    println!("\"{prefix}Version\" : {}", kv.version);
    println!("\"{prefix}Value\" : {}", quote(&kv.value));
    println!("\"{prefix}Lease\" : {}", kv.lease);
}

pub fn header(h: Option<&pb::ResponseHeader>) {
    let d = pb::ResponseHeader::default();
    let h = h.unwrap_or(&d);
    println!("\"ClusterID\" : {}", h.cluster_id);
    println!("\"MemberID\" : {}", h.member_id);
    println!("\"Revision\" : {}", h.revision);
    println!("\"RaftTerm\" : {}", h.raft_term);
}

pub fn del(r: &pb::DeleteRangeResponse) {
    header(r.header.as_ref());
    println!("\"Deleted\" : {}", r.deleted);
    for k in &r.prev_kvs {
        kv("Prev", k);
    }
}

pub fn get(r: &pb::RangeResponse) {
    header(r.header.as_ref());
    for k in &r.kvs {
        kv("", k);
    }
    println!("\"More\" : {}", r.more);
    println!("\"Count\" : {}", r.count);
}

pub fn put(r: &pb::PutResponse) {
    header(r.header.as_ref());
    if let Some(prev) = &r.prev_kv {
        kv("Prev", prev);
    }
}

pub fn txn(r: &pb::TxnResponse) {
    header(r.header.as_ref());
    println!("\"Succeeded\" : {}", r.succeeded);
    for op in &r.responses {
        match &op.response {
            Some(pb::response_op::Response::ResponseRange(g)) => get(g),
            Some(pb::response_op::Response::ResponsePut(x)) => put(x),
            Some(pb::response_op::Response::ResponseDeleteRange(d)) => del(d),
            other => println!("\"Unknown\" : {}", quote(format!("{other:?}").as_bytes())),
        }
    }
}

pub fn watch(r: &pb::WatchResponse) {
    header(r.header.as_ref());
    for e in &r.events {
        println!("\"Type\" : {}", super::simple::event_type_name(e.r#type));
        if let Some(prev) = &e.prev_kv {
            kv("Prev", prev);
        }
        if let Some(k) = &e.kv {
            kv("", k);
        }
    }
}

pub fn id_ttl(h: Option<&pb::ResponseHeader>, id: i64, ttl: i64) {
    header(h);
    println!("\"ID\" : {id}");
    println!("\"TTL\" : {ttl}");
}

pub fn time_to_live(r: &pb::LeaseTimeToLiveResponse) {
    id_ttl(r.header.as_ref(), r.id, r.ttl);
    println!("\"GrantedTTL\" : {}", r.granted_ttl);
    for k in &r.keys {
        println!("\"Key\" : {}", quote(k));
    }
}

pub fn member_list(r: &pb::MemberListResponse) {
    header(r.header.as_ref());
    for m in &r.members {
        println!("\"ID\" : {}", m.id);
        println!("\"Name\" : {}", quote(m.name.as_bytes()));
        for u in &m.peer_ur_ls {
            println!("\"PeerURL\" : {}", quote(u.as_bytes()));
        }
        for u in &m.client_ur_ls {
            println!("\"ClientURL\" : {}", quote(u.as_bytes()));
        }
        println!("\"IsLearner\" : {}", m.is_learner);
        println!();
    }
}

pub fn endpoint_status(list: &[EpStatus]) {
    for s in list {
        let r = &s.resp;
        header(r.header.as_ref());
        println!("\"Version\" : {}", quote(r.version.as_bytes()));
        println!("\"DBSize\" : {}", r.db_size);
        println!("\"Leader\" : {}", r.leader);
        println!("\"IsLearner\" : {}", r.is_learner);
        println!("\"RaftIndex\" : {}", r.raft_index);
        println!("\"RaftTerm\" : {}", r.raft_term);
        println!("\"RaftAppliedIndex\" : {}", r.raft_applied_index);
        println!("\"Errors\" : [{}]", r.errors.join(" "));
        println!("\"Endpoint\" : {}", quote(s.ep.as_bytes()));
        println!();
    }
}

pub fn alarm(r: &pb::AlarmResponse) {
    header(r.header.as_ref());
    for a in &r.alarms {
        println!("\"MemberID\" : {}", a.member_id);
        let name = match a.alarm {
            1 => "NOSPACE",
            2 => "CORRUPT",
            _ => "NONE",
        };
        println!("\"AlarmType\" : {name}");
        println!();
    }
}
