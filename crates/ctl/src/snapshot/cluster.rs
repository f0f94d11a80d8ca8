//! The new cluster a restore bootstraps: `--initial-cluster` parsed and checked as etcd's
//! `VerifyBootstrap` checks it, and member and cluster IDs derived as etcd derives them (the
//! restored member must compute the same IDs when it starts with the same flags).

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;

use sha1::{Digest, Sha1};

/// A restore's configuration problem, in etcd's words.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no valid URLs given")]
    NoUrls,
    #[error("parse {url:?}: {reason}")]
    Parse { url: String, reason: String },
    #[error("URL scheme must be http, https, unix, or unixs: {0}")]
    Scheme(String),
    #[error("URL address does not have the form \"host:port\": {0}")]
    HostPort(String),
    #[error("URL must not contain a path: {0}")]
    Path(String),
    #[error("couldn't find local name {0:?} in the initial cluster configuration")]
    NoLocalMember(String),
    #[error("--initial-cluster has {missing} but missing from --initial-advertise-peer-urls={advertised} ({why})")]
    MissingFromAdvertise {
        missing: String,
        advertised: String,
        why: String,
    },
    #[error(
        "--initial-advertise-peer-urls has {missing} but missing from --initial-cluster={umap}"
    )]
    MissingFromCluster { missing: String, umap: String },
    #[error("initial cluster {0} has duplicate url")]
    DuplicateUrl(String),
    #[error("initial cluster unset and no discovery URL found")]
    Unset,
    #[error("member exists with identical ID {0:x}")]
    DuplicateId(u64),
    #[error("cannot use 0 as member id")]
    ZeroId,
}

/// One member of the new cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    /// Sorted, as etcd keeps them.
    pub peer_urls: Vec<String>,
}

/// The new cluster: members sorted by ID (the order etcd lists, stores and logs them in).
#[derive(Debug, Clone)]
pub struct Cluster {
    pub id: u64,
    pub members: Vec<Member>,
}

/// etcd's `types.NewURLs`: each URL trimmed and checked; the list sorted.
pub fn parse_urls(list: &[String]) -> Result<Vec<String>, ClusterError> {
    if list.is_empty() {
        return Err(ClusterError::NoUrls);
    }
    let mut out = Vec::with_capacity(list.len());
    for raw in list {
        let s = raw.trim();
        let u = url::Url::parse(s).map_err(|e| ClusterError::Parse {
            url: s.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(u.scheme(), "http" | "https" | "unix" | "unixs") {
            return Err(ClusterError::Scheme(s.to_string()));
        }
        if u.host_str().is_none() || u.port().is_none() && !has_explicit_port(s) {
            return Err(ClusterError::HostPort(s.to_string()));
        }
        // Go keeps "http://h:1" with an empty path; the url crate reports it as "/".
        let path_given = s
            .split_once("://")
            .map(|(_, rest)| rest.contains('/'))
            .unwrap_or(false);
        if path_given {
            return Err(ClusterError::Path(s.to_string()));
        }
        out.push(s.to_string());
    }
    out.sort();
    Ok(out)
}

/// The url crate drops a port equal to the scheme's default ("http://h:80"); Go keeps it.
fn has_explicit_port(s: &str) -> bool {
    let rest = s.split_once("://").map(|(_, r)| r).unwrap_or(s);
    let host = rest.split('/').next().unwrap_or(rest);
    match host.rsplit_once(':') {
        Some((_, port)) => !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()),
        None => false,
    }
}

/// etcd's `types.NewURLsMap`: `name=url,name=url2,...`, URLs grouped by name.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<String>>, ClusterError> {
    let mut raw: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in s.split(',').filter(|p| !p.is_empty()) {
        let (name, url) = pair.split_once('=').unwrap_or((pair, ""));
        raw.entry(name.to_string())
            .or_default()
            .push(url.to_string());
    }
    raw.into_iter()
        .map(|(name, urls)| Ok((name, parse_urls(&urls)?)))
        .collect()
}

/// `name=url` pairs, sorted (etcd's `URLsMap.String`).
fn urls_map_string(map: &BTreeMap<String, Vec<String>>) -> String {
    let mut pairs: Vec<String> = map
        .iter()
        .flat_map(|(n, urls)| urls.iter().map(move |u| format!("{n}={u}")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// The URL with a host name resolved to an address (IPv4 first), as etcd compares peer URLs;
/// like etcd, `localhost` and IP addresses are left as written.
fn resolve(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host = rest.rsplit_once(':').map(|(h, _)| h).unwrap_or(rest);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" || bare.parse::<std::net::IpAddr>().is_ok() {
        return url.to_string();
    }
    let Ok(addrs) = rest.to_socket_addrs() else {
        return url.to_string();
    };
    let addrs: Vec<std::net::SocketAddr> = addrs.collect();
    match addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
        Some(a) => format!("{scheme}://{a}"),
        None => url.to_string(),
    }
}

fn go_quote_list(list: &[String]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|u| crate::gofmt::quote(u.as_bytes()))
        .collect();
    format!("[{}]", items.join(" "))
}

/// etcd's `netutil.URLStringsEqual` on sorted lists: equal, or why not.
fn urls_equal(a: &[String], b: &[String]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!(
            "len({}) != len({})",
            go_quote_list(a),
            go_quote_list(b)
        ));
    }
    if a == b {
        return Ok(());
    }
    let mut ra: Vec<String> = a.iter().map(|u| resolve(u)).collect();
    let mut rb: Vec<String> = b.iter().map(|u| resolve(u)).collect();
    ra.sort();
    rb.sort();
    for (x, y) in ra.iter().zip(&rb) {
        if x != y {
            return Err(format!(
                "resolved urls: {} != {}",
                crate::gofmt::quote(x.as_bytes()),
                crate::gofmt::quote(y.as_bytes())
            ));
        }
    }
    Ok(())
}

/// etcd's `VerifyBootstrap` for a restore.
pub fn verify_bootstrap(
    name: &str,
    peer_urls: &[String],
    initial: &BTreeMap<String, Vec<String>>,
) -> Result<(), ClusterError> {
    let Some(mine) = initial.get(name) else {
        return Err(ClusterError::NoLocalMember(name.to_string()));
    };
    // Both lists are sorted; equal as strings, or resolving to the same addresses.
    if let Err(why) = urls_equal(peer_urls, mine) {
        let missing: Vec<String> = mine
            .iter()
            .filter(|u| !peer_urls.contains(u))
            .map(|u| format!("{name}={u}"))
            .collect();
        if !missing.is_empty() {
            return Err(ClusterError::MissingFromAdvertise {
                missing: missing.join(","),
                advertised: peer_urls.join(","),
                why,
            });
        }
        let missing: Vec<String> = peer_urls
            .iter()
            .filter(|u| !mine.contains(u))
            .cloned()
            .collect();
        let mut umap = BTreeMap::new();
        umap.insert(name.to_string(), peer_urls.to_vec());
        return Err(ClusterError::MissingFromCluster {
            missing: missing.join(","),
            umap: urls_map_string(&umap),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    if !initial.values().flatten().all(|u| seen.insert(u.clone())) {
        return Err(ClusterError::DuplicateUrl(urls_map_string(initial)));
    }
    if urls_map_string(initial).is_empty() {
        return Err(ClusterError::Unset);
    }
    Ok(())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// etcd's member ID: SHA-1 of the sorted peer URLs and the cluster token (no time: members of
/// an initial cluster).
pub fn member_id(sorted_peer_urls: &[String], token: &str) -> u64 {
    let mut h = Sha1::new();
    for u in sorted_peer_urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// etcd's cluster ID: SHA-1 of the sorted member IDs, 8 big-endian bytes each.
pub fn cluster_id(sorted_ids: &[u64]) -> u64 {
    let mut h = Sha1::new();
    for id in sorted_ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

/// etcd's `NewClusterFromURLsMap`.
pub fn new_cluster(
    token: &str,
    initial: &BTreeMap<String, Vec<String>>,
) -> Result<Cluster, ClusterError> {
    let mut members: Vec<Member> = Vec::with_capacity(initial.len());
    for (name, urls) in initial {
        let id = member_id(urls, token);
        if members.iter().any(|m| m.id == id) {
            return Err(ClusterError::DuplicateId(id));
        }
        if id == 0 {
            return Err(ClusterError::ZeroId);
        }
        members.push(Member {
            id,
            name: name.clone(),
            peer_urls: urls.clone(),
        });
    }
    members.sort_by_key(|m| m.id);
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    Ok(Cluster {
        id: cluster_id(&ids),
        members,
    })
}

/// Go's `encoding/json` string: also escapes `<`, `>`, `&` and U+2028/2029.
pub fn go_json_string(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn json_string_list(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| go_json_string(s)).collect();
    format!("[{}]", items.join(","))
}

impl Member {
    /// The member as etcd marshals it into a ConfChange context (`membership.Member`).
    pub fn json(&self) -> String {
        let mut s = format!(
            "{{\"id\":{},\"peerURLs\":{}",
            self.id,
            json_string_list(&self.peer_urls)
        );
        if !self.name.is_empty() {
            s.push_str(&format!(",\"name\":{}", go_json_string(&self.name)));
        }
        s.push('}');
        s
    }

    /// `RaftAttributes` as the v2 store keeps them.
    pub fn raft_attributes_json(&self) -> String {
        format!("{{\"peerURLs\":{}}}", json_string_list(&self.peer_urls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ids_match_what_etcd_computed_for_the_same_flags() {
        // IDs etcdctl 3.4 logged restoring with these flags ("added member").
        let one = parse_initial_cluster("s1=http://127.0.0.1:23180").unwrap();
        let c = new_cluster("etcd-cluster", &one).unwrap();
        assert_eq!(c.members[0].id, 0xa87a472412f1f7e6);
        assert_eq!(c.id, 0xac3fda0a0b204aa5);
        let three =
            parse_initial_cluster("a=http://127.0.0.1:1,b=http://127.0.0.1:2,c=http://127.0.0.1:3")
                .unwrap();
        let c = new_cluster("tok", &three).unwrap();
        let ids: Vec<u64> = c.members.iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            vec![0x0b647f29678b82df, 0x1b86cb6f4861f3fd, 0xd1dd0451a6b74da3]
        );
        assert_eq!(c.id, 0xe6b49e3f120a2cdb);
    }

    #[test]
    fn bootstrap_checks_use_etcds_words() {
        let ic = parse_initial_cluster("default=http://localhost:2380").unwrap();
        let e = verify_bootstrap("foo", &s(&["http://localhost:2380"]), &ic).unwrap_err();
        assert_eq!(
            e.to_string(),
            "couldn't find local name \"foo\" in the initial cluster configuration"
        );
        let ic = parse_initial_cluster("a=http://10.0.0.1:2380,b=http://10.0.0.1:2380").unwrap();
        let e = verify_bootstrap("a", &s(&["http://10.0.0.1:2380"]), &ic).unwrap_err();
        assert!(e.to_string().contains("has duplicate url"), "{e}");
        let ic = parse_initial_cluster("a=http://10.0.0.1:2380").unwrap();
        let e = verify_bootstrap("a", &s(&["http://10.0.0.2:2380"]), &ic).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--initial-cluster has a=http://10.0.0.1:2380 but missing from --initial-advertise-peer-urls=http://10.0.0.2:2380"),
            "{e}"
        );
        assert!(verify_bootstrap("a", &s(&["http://10.0.0.1:2380"]), &ic).is_ok());
        assert!(matches!(
            parse_urls(&s(&["ftp://a:1"])),
            Err(ClusterError::Scheme(_))
        ));
        assert!(matches!(
            parse_urls(&s(&["http://a"])),
            Err(ClusterError::HostPort(_))
        ));
        assert!(matches!(
            parse_urls(&s(&["http://a:1/x"])),
            Err(ClusterError::Path(_))
        ));
        assert!(parse_urls(&s(&["http://a:80"])).is_ok());
    }

    #[test]
    fn member_json_is_etcds() {
        let m = Member {
            id: 12140093965792835558,
            name: "s1".into(),
            peer_urls: s(&["http://127.0.0.1:23180"]),
        };
        assert_eq!(
            m.json(),
            r#"{"id":12140093965792835558,"peerURLs":["http://127.0.0.1:23180"],"name":"s1"}"#
        );
        assert_eq!(go_json_string("a<b&"), r#""a\u003cb\u0026""#);
    }
}
