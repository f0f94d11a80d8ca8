//! The log lines etcdctl's restore prints on stderr: zap's production JSON encoder (level, epoch
//! seconds, caller, message, fields). Scripts and etcd's own e2e tests match on these lines
//! ("added member"), so they carry etcdctl's callers and field names.

use super::cluster::go_json_string;

/// A field value.
pub enum Field<'a> {
    Str(&'a str),
    Strs(&'a [String]),
    Int(i64),
}

/// One `"level":"info"` line.
pub fn info(caller: &str, msg: &str, fields: &[(&str, Field<'_>)]) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut line = format!(
        "{{\"level\":\"info\",\"ts\":{ts},\"caller\":{},\"msg\":{}",
        go_json_string(caller),
        go_json_string(msg)
    );
    for (key, value) in fields {
        let v = match value {
            Field::Str(s) => go_json_string(s),
            Field::Strs(list) => {
                let items: Vec<String> = list.iter().map(|s| go_json_string(s)).collect();
                format!("[{}]", items.join(","))
            }
            Field::Int(i) => i.to_string(),
        };
        line.push_str(&format!(",{}:{v}", go_json_string(key)));
    }
    line.push('}');
    eprintln!("{line}");
}
