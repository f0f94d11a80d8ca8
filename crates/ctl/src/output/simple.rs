//! `-w simple`, etcdctl's default: values as they are, one per line.

use rampart_proto::etcdserverpb as pb;
use rampart_proto::mvccpb;

use super::Printer;

/// etcdctl's `--hex` form: every byte as `\xNN`.
fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("\\x{x:02x}")).collect()
}

/// Writes raw bytes (values need not be UTF-8) followed by a newline.
fn line(b: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b);
    let _ = out.write_all(b"\n");
}

pub fn print_kv(p: &Printer, kv: &mvccpb::KeyValue) {
    let (k, v) = if p.hex {
        (
            hex_bytes(&kv.key).into_bytes(),
            hex_bytes(&kv.value).into_bytes(),
        )
    } else {
        (kv.key.clone(), kv.value.clone())
    };
    if !p.value_only {
        line(&k);
    }
    line(&v);
}

pub fn get(p: &Printer, r: &pb::RangeResponse) {
    for kv in &r.kvs {
        print_kv(p, kv);
    }
}

pub fn put(p: &Printer, r: &pb::PutResponse) {
    println!("OK");
    if let Some(prev) = &r.prev_kv {
        print_kv(p, prev);
    }
}

pub fn del(p: &Printer, r: &pb::DeleteRangeResponse) {
    println!("{}", r.deleted);
    for kv in &r.prev_kvs {
        print_kv(p, kv);
    }
}

pub fn txn(p: &Printer, r: &pb::TxnResponse) {
    println!("{}", if r.succeeded { "SUCCESS" } else { "FAILURE" });
    for op in &r.responses {
        println!();
        match &op.response {
            Some(pb::response_op::Response::ResponseRange(g)) => get(p, g),
            Some(pb::response_op::Response::ResponsePut(x)) => put(p, x),
            Some(pb::response_op::Response::ResponseDeleteRange(d)) => del(p, d),
            Some(pb::response_op::Response::ResponseTxn(_)) | None => {
                println!("unexpected response {op:?}")
            }
        }
    }
}

pub fn event_type_name(t: i32) -> &'static str {
    if t == mvccpb::event::EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    }
}

pub fn watch(p: &Printer, r: &pb::WatchResponse) {
    for e in &r.events {
        println!("{}", event_type_name(e.r#type));
        if let Some(prev) = &e.prev_kv {
            print_kv(p, prev);
        }
        if let Some(kv) = &e.kv {
            print_kv(p, kv);
        }
    }
}

pub fn time_to_live(r: &pb::LeaseTimeToLiveResponse, keys: bool) {
    if r.granted_ttl == 0 && r.ttl == -1 {
        println!("lease {:016x} already expired", r.id);
        return;
    }
    let mut txt = format!(
        "lease {:016x} granted with TTL({}s), remaining({}s)",
        r.id, r.granted_ttl, r.ttl
    );
    if keys {
        let ks: Vec<String> = r
            .keys
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        txt.push_str(&format!(", attached keys([{}])", ks.join(" ")));
    }
    println!("{txt}");
}

/// Go's `%+v` of an AlarmMember: its protobuf text form.
pub fn alarm(r: &pb::AlarmResponse) {
    for a in &r.alarms {
        let name = match a.alarm {
            1 => "NOSPACE",
            2 => "CORRUPT",
            _ => "NONE",
        };
        let mut s = String::new();
        if a.member_id != 0 {
            s.push_str(&format!("memberID:{} ", a.member_id));
        }
        if a.alarm != 0 {
            s.push_str(&format!("alarm:{name} "));
        }
        println!("{s}");
    }
}
