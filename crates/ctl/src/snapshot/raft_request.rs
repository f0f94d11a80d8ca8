//! What a normal Raft entry of etcd 3.4 carries: a v2 request (`etcdserverpb.Request`, proposed
//! bare by etcd's v2 API) or an `InternalRaftRequest` (v3 requests, with a header; a v2
//! request inside it). Told apart as etcd does: the bytes are an `InternalRaftRequest` when
//! gogoproto decodes them as one, a bare `Request` otherwise.

use super::proto::{self, DecodeError, Wire};

/// `etcdserverpb.Request`: the fields a v2 write is applied with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Request {
    pub method: String,
    pub path: String,
    pub val: String,
    pub dir: bool,
    pub prev_value: String,
    pub prev_index: u64,
    pub prev_exist: Option<bool>,
    /// Unix nanoseconds; 0 = no expiry.
    pub expiration: i64,
    pub recursive: bool,
    /// SYNC's time, unix nanoseconds.
    pub time: i64,
    pub refresh: Option<bool>,
}

/// An entry's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    V2(V2Request),
    /// An `InternalRaftRequest` without a v2 request; `has_header` for v3 requests.
    Internal {
        has_header: bool,
    },
}

/// Wire types of `etcdserverpb.Request`'s fields.
fn request_schema(field: u32) -> Option<u64> {
    match field {
        1 | 5 | 7..=17 => Some(0),
        2..=4 | 6 => Some(2),
        _ => None,
    }
}

/// Wire types of `InternalRaftRequest`'s fields: the ID, and messages.
fn internal_schema(field: u32) -> Option<u64> {
    match field {
        1 => Some(0),
        2..=11 | 100 | 1000 | 1011 | 1012 | 1100..=1107 | 1200..=1204 => Some(2),
        _ => None,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn decode_request(b: &[u8]) -> Result<V2Request, DecodeError> {
    let fields = proto::fields(b)?;
    proto::check_wire_types(&fields, request_schema)?;
    let mut r = V2Request::default();
    for (num, v) in fields {
        match num {
            2 => r.method = text(v.bytes()),
            3 => r.path = text(v.bytes()),
            4 => r.val = text(v.bytes()),
            5 => r.dir = v.varint() != 0,
            6 => r.prev_value = text(v.bytes()),
            7 => r.prev_index = v.varint(),
            8 => r.prev_exist = Some(v.varint() != 0),
            9 => r.expiration = v.varint() as i64,
            12 => r.recursive = v.varint() != 0,
            15 => r.time = v.varint() as i64,
            17 => r.refresh = Some(v.varint() != 0),
            _ => {}
        }
    }
    Ok(r)
}

/// `InternalRaftRequest` as gogoproto decodes it, or why it does not.
fn decode_internal(b: &[u8]) -> Result<Payload, DecodeError> {
    let fields = proto::fields(b)?;
    proto::check_wire_types(&fields, internal_schema)?;
    let mut v2 = None;
    let mut has_header = false;
    for (num, v) in &fields {
        match (num, v) {
            (2, Wire::Bytes(inner)) => v2 = Some(decode_request(inner)?),
            (100, _) => has_header = true,
            _ => {}
        }
    }
    Ok(match v2 {
        Some(r) => Payload::V2(r),
        None => Payload::Internal { has_header },
    })
}

/// Decodes a normal entry's data (absent data decodes as an empty `InternalRaftRequest`).
pub fn decode(data: &[u8]) -> Result<Payload, DecodeError> {
    decode_internal(data).or_else(|_| decode_request(data).map(Payload::V2))
}

/// Whether `path` names a member's attributes (`/0/members/<hex id>/attributes`), matched
/// anywhere in the path as etcd's unanchored pattern does.
pub fn is_member_attributes(path: &str) -> bool {
    const PREFIX: &str = "/0/members/";
    const SUFFIX: &str = "/attributes";
    path.match_indices(PREFIX).any(|(at, _)| {
        let rest = &path[at + PREFIX.len()..];
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        (1..=16).contains(&hex) && rest[hex..].starts_with(SUFFIX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Vec<u8> {
        // As etcd's v2 API proposes it: every non-nullable field written.
        let mut b = Vec::new();
        proto::uint(&mut b, 1, 0x1234);
        proto::bytes(&mut b, 2, method.as_bytes());
        proto::bytes(&mut b, 3, path.as_bytes());
        proto::bytes(&mut b, 4, b"bar");
        proto::uint(&mut b, 5, 0);
        proto::bytes(&mut b, 6, b"");
        for f in [7, 9, 10, 11, 12, 13, 14, 15, 16] {
            proto::uint(&mut b, f, 0);
        }
        b
    }

    #[test]
    fn bare_v2_requests_internal_requests_and_v3_requests_are_told_apart() {
        for method in ["PUT", "POST", "DELETE", "QGET", "SYNC", "GET"] {
            let got = decode(&request(method, "/1/foo")).unwrap();
            let Payload::V2(r) = got else {
                panic!("{method}: {got:?}")
            };
            assert_eq!((r.method.as_str(), r.path.as_str()), (method, "/1/foo"));
            assert_eq!(r.val, "bar");
        }
        // A v3 put: header (field 100) and put (field 4).
        let mut v3 = Vec::new();
        proto::bytes(&mut v3, 100, &[0x08, 0x01]);
        proto::bytes(&mut v3, 4, &[0x0a, 0x01, b'k']);
        assert_eq!(decode(&v3).unwrap(), Payload::Internal { has_header: true });
        // A v2 request wrapped in an InternalRaftRequest.
        let mut wrapped = Vec::new();
        proto::uint(&mut wrapped, 1, 9);
        proto::bytes(&mut wrapped, 2, &request("PUT", "/0/version"));
        assert!(matches!(decode(&wrapped).unwrap(), Payload::V2(r) if r.path == "/0/version"));
        assert_eq!(
            decode(&[]).unwrap(),
            Payload::Internal { has_header: false }
        );
        assert!(decode(&[0x0a, 0x05, 1]).is_err());
    }

    #[test]
    fn member_attribute_paths_match_etcds_pattern() {
        assert!(is_member_attributes(
            "/0/members/8e9e05c52164694d/attributes"
        ));
        assert!(is_member_attributes("/x/0/members/a/attributes/y"));
        assert!(!is_member_attributes(
            "/0/members/8e9e05c52164694d/raftAttributes"
        ));
        assert!(!is_member_attributes(
            "/0/members/18e9e05c52164694d/attributes"
        ));
        assert!(!is_member_attributes("/0/members//attributes"));
        assert!(!is_member_attributes("/1/foo"));
    }
}
