//! Where members live on the network. With root and `ip netns`, each member gets a network
//! namespace with its own address on a private bridge (`10.213.X.0/24`; the bridge end,
//! `.1`, is where the harness, its clients and its relays sit). Without them, every member is on
//! loopback and the relays are the only way to cut or slow its peer traffic.
//!
//! Names carry the harness's process id, so a namespace or bridge left by a process that died
//! (SIGKILL gives no chance to clean up) is recognised and removed by the next harness.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{run_command, HarnessError};

/// Namespace names start with this, then `<pid>-<n>-<member>`.
const NETNS_PREFIX: &str = "rrb-";
/// Bridge and veth names (at most 15 characters) start with these, then `<pid>x<n>`.
const BRIDGE_PREFIX: &str = "rb";
const VETH_PREFIX: &str = "rv";

/// Members' network placement.
pub enum Network {
    Namespaces(Namespaces),
    Loopback {
        /// Why namespaces were not used (said once when the cluster starts).
        reason: String,
    },
}

pub struct Namespaces {
    pub bridge: String,
    /// The bridge's address: the harness side of every member's link.
    pub gateway: Ipv4Addr,
    pub members: Vec<MemberLink>,
}

pub struct MemberLink {
    pub netns: String,
    /// The veth end on the bridge (set down to cut the member off).
    pub host_veth: String,
    pub address: Ipv4Addr,
}

impl Network {
    /// Namespaces for `members` members if possible, else loopback with the reason.
    pub fn create(members: usize, allow_namespaces: bool) -> Network {
        if !allow_namespaces {
            return Network::Loopback {
                reason: "network namespaces disabled by the caller".into(),
            };
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Network::Loopback {
                reason: "not running as root, so no network namespaces".into(),
            };
        }
        remove_stale();
        match Namespaces::create(members) {
            Ok(ns) => Network::Namespaces(ns),
            Err(e) => Network::Loopback {
                reason: format!("network namespaces unavailable ({e})"),
            },
        }
    }

    /// The address member `i` listens on.
    pub fn member_address(&self, i: usize) -> Ipv4Addr {
        match self {
            Network::Namespaces(ns) => ns.members[i].address,
            Network::Loopback { .. } => Ipv4Addr::LOCALHOST,
        }
    }

    /// The address relays listen on (reachable from every member).
    pub fn relay_address(&self) -> Ipv4Addr {
        match self {
            Network::Namespaces(ns) => ns.gateway,
            Network::Loopback { .. } => Ipv4Addr::LOCALHOST,
        }
    }

    /// Which member a connection from `ip` comes from (only namespaces tell members apart).
    pub fn member_of(&self, ip: std::net::IpAddr) -> Option<usize> {
        match self {
            Network::Namespaces(ns) => ns.members.iter().position(|m| ip == m.address),
            Network::Loopback { .. } => None,
        }
    }

    /// The namespace member `i` runs in.
    pub fn netns(&self, i: usize) -> Option<&str> {
        match self {
            Network::Namespaces(ns) => Some(ns.members[i].netns.as_str()),
            Network::Loopback { .. } => None,
        }
    }

    /// Takes member `i`'s link down (`up == false`) or up again: all its traffic, client and
    /// peer, stops. Returns false where there is no link to cut (loopback).
    pub fn set_link(&self, i: usize, up: bool) -> Result<bool, HarnessError> {
        let Network::Namespaces(ns) = self else {
            return Ok(false);
        };
        let state = if up { "up" } else { "down" };
        run_command("ip", &["link", "set", &ns.members[i].host_veth, state])?;
        Ok(true)
    }

    /// Whether `tc qdisc ... netem` works on a member link; the reason when it does not.
    pub fn netem_available(&self) -> Result<(), String> {
        let Network::Namespaces(ns) = self else {
            return Err("no member links on loopback".into());
        };
        let dev = &ns.members[0].host_veth;
        match run_command(
            "tc",
            &["qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"],
        ) {
            Ok(_) => {
                let _ = run_command("tc", &["qdisc", "del", "dev", dev, "root"]);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Network::Namespaces(ns) => format!(
                "network namespaces {} on bridge {} ({}/24)",
                ns.members
                    .iter()
                    .map(|m| format!("{}={}", m.netns, m.address))
                    .collect::<Vec<_>>()
                    .join(" "),
                ns.bridge,
                ns.gateway
            ),
            Network::Loopback { reason } => {
                format!("loopback addresses with relays in front of peer ports ({reason})")
            }
        }
    }
}

impl Namespaces {
    fn create(members: usize) -> Result<Namespaces, HarnessError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let bridge = format!("{BRIDGE_PREFIX}{pid}x{n}");
        // One /24 per harness instance; taken subnets are skipped.
        let used = run_command("ip", &["-o", "-4", "addr", "show"]).unwrap_or_default();
        let third = (0..250u32)
            .map(|k| ((pid + n * 37 + k) % 250 + 1) as u8)
            .find(|x| !used.contains(&format!("10.213.{x}.")))
            .ok_or_else(|| HarnessError::Command {
                command: "pick a subnet".into(),
                detail: "every 10.213.X.0/24 is in use".into(),
            })?;
        let gateway = Ipv4Addr::new(10, 213, third, 1);
        let mut created = Namespaces {
            bridge: bridge.clone(),
            gateway,
            members: Vec::new(),
        };
        // From here on, dropping `created` removes whatever was made, also on an error.
        run_command("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run_command(
            "ip",
            &["addr", "add", &format!("{gateway}/24"), "dev", &bridge],
        )?;
        run_command("ip", &["link", "set", &bridge, "up"])?;
        for i in 0..members {
            let netns = format!("{NETNS_PREFIX}{pid}-{n}-{i}");
            let host_veth = format!("{VETH_PREFIX}{pid}x{n}m{i}");
            let inner = format!("{VETH_PREFIX}{pid}x{n}n{i}");
            let address = Ipv4Addr::new(10, 213, third, 10 + i as u8);
            run_command("ip", &["netns", "add", &netns])?;
            created.members.push(MemberLink {
                netns: netns.clone(),
                host_veth: host_veth.clone(),
                address,
            });
            run_command(
                "ip",
                &[
                    "link", "add", &host_veth, "type", "veth", "peer", "name", &inner,
                ],
            )?;
            run_command("ip", &["link", "set", &inner, "netns", &netns])?;
            run_command(
                "ip",
                &[
                    "-n",
                    &netns,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    &inner,
                ],
            )?;
            run_command("ip", &["-n", &netns, "link", "set", &inner, "up"])?;
            run_command("ip", &["-n", &netns, "link", "set", "lo", "up"])?;
            run_command("ip", &["link", "set", &host_veth, "master", &bridge])?;
            run_command("ip", &["link", "set", &host_veth, "up"])?;
        }
        Ok(created)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the pair.
        for m in &self.members {
            let _ = run_command("ip", &["netns", "del", &m.netns]);
            let _ = run_command("ip", &["link", "del", &m.host_veth]);
        }
        let _ = run_command("ip", &["link", "del", &self.bridge]);
    }
}

/// Removes namespaces and bridges left by harness processes that no longer run.
fn remove_stale() {
    let alive = |pid: &str| {
        let Ok(p) = pid.parse::<i32>() else {
            return true;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let exists = unsafe { libc::kill(p, 0) } == 0;
        // A harness killed a moment ago can still be a zombie waiting for its parent.
        let zombie = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .unwrap_or(false);
        exists && !zombie
    };
    let netns = run_command("ip", &["netns", "list"]).unwrap_or_default();
    for name in netns.lines().filter_map(|l| l.split_whitespace().next()) {
        if let Some(rest) = name.strip_prefix(NETNS_PREFIX) {
            if !alive(rest.split('-').next().unwrap_or("")) {
                // Members of a harness that was killed outlive it: stop them first.
                let pids = run_command("ip", &["netns", "pids", name]).unwrap_or_default();
                for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    // SAFETY: kill has no memory preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let _ = run_command("ip", &["netns", "del", name]);
            }
        }
    }
    let links = run_command("ip", &["-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        let Some(name) = line
            .split(':')
            .nth(1)
            .map(|s| s.trim().split('@').next().unwrap_or(""))
        else {
            continue;
        };
        for prefix in [BRIDGE_PREFIX, VETH_PREFIX] {
            if let Some(rest) = name.strip_prefix(prefix) {
                let pid = rest.split('x').next().unwrap_or("");
                if pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty() && !alive(pid) {
                    let _ = run_command("ip", &["link", "del", name]);
                }
            }
        }
    }
}
