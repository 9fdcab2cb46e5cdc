//! A bridge's VXLAN tunnel read back into the file's `vxlan` key: its VNI, source address,
//! UDP port and the peers its all-zeros FDB entries name. What the key cannot say (no source
//! address, no static peer) or a tunnel that is not exactly what nsfw makes (learning off, a
//! TTL, `ttl inherit` or another attribute nsfw leaves at the kernel's default, an entry
//! with its own port or VNI) is a note, and the file carries the key commented out: `apply
//! --adopt` then leaves the tunnel on its bridge as it is. A second tunnel is a note.

use std::fmt::Write;
use std::net::IpAddr;

use crate::plumbing::{Link, NodeObs, VxlanObs};
use crate::topology::Vxlan;

/// What import makes of a bridge's tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tunnel {
    /// The `vxlan` key, as nsfw would make the tunnel.
    Key(Vxlan),
    /// The key's line commented out: it needs what the host does not say.
    Commented(String),
}

impl Tunnel {
    /// The `vxlan = { ... }` line (commented out when it cannot stand).
    pub(crate) fn line(&self) -> String {
        match self {
            Tunnel::Key(v) => key(v.id, &v.local.to_string(), &v.peers, v.port),
            Tunnel::Commented(l) => format!("# {l}"),
        }
    }

    /// The bridge's MTU when the file says none: the encapsulation's cost off 1500.
    pub(crate) fn default_mtu(&self) -> u32 {
        match self {
            Tunnel::Key(v) => crate::topology::UNDERLAY_MTU - v.overhead(),
            Tunnel::Commented(_) => 1500,
        }
    }
}

fn key(id: u32, local: &str, peers: &[IpAddr], port: u16) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let mut s = format!(
        "vxlan = {{ id = {id}, local = \"{local}\", peers = [{}]",
        peers.join(", ")
    );
    if port != crate::topology::VXLAN_PORT {
        let _ = write!(s, ", port = {port}");
    }
    s + " }"
}

/// The tunnel on bridge `br` (index `ix`), if any; what does not fit goes to `notes`.
pub(crate) fn read(host: &NodeObs, br: &Link, notes: &mut Vec<String>) -> Option<Tunnel> {
    let mut tunnels = host
        .links
        .iter()
        .filter(|l| l.master == Some(br.index))
        .filter_map(|l| {
            l.vxlan
                .filter(|_| l.kind.as_deref() == Some("vxlan"))
                .map(|x| (l, x))
        });
    let (l, x) = tunnels.next()?;
    let b = &br.name;
    for (other, _) in tunnels {
        notes.push(format!(
            "bridge {b}: VXLAN link {} not translated (a bridge has one tunnel in a file): it stays on {b} as it is",
            other.name
        ));
    }
    let (peers, unlike) = peers_and_unlike(host, l, &x);
    let local = x.local.map_or("LOCAL".to_string(), |a| a.to_string());
    let missing = match (x.local, peers.is_empty()) {
        (Some(local), false) if unlike.is_empty() => {
            return Some(Tunnel::Key(Vxlan {
                id: x.id,
                local,
                peers,
                port: x.port,
                remote: Vec::new(),
            }));
        }
        (Some(_), false) => None,
        (None, _) => Some("no local address (the file needs this host's underlay address)"),
        (Some(_), true) => Some(
            "no static peer (no all-zeros FDB entry: a multicast group, or peers learnt only), and the file lists its peers",
        ),
    };
    if let Some(missing) = missing {
        notes.push(format!(
            "bridge {b}: VXLAN link {} has {missing}: its `vxlan` key is written commented out, to complete (until then the tunnel stays on {b} as it is)",
            l.name
        ));
    }
    if !unlike.is_empty() {
        notes.push(format!(
            "bridge {b}: VXLAN link {} is not a tunnel as nsfw makes it: {}; its `vxlan` key is written commented out, and the tunnel stays on {b} as it is",
            l.name,
            unlike.join("; ")
        ));
    }
    Some(Tunnel::Commented(key(x.id, &local, &peers, x.port)))
}

/// The tunnel's peers (its all-zeros FDB entries with its own port, VNI and device, sorted),
/// and what makes it another tunnel than nsfw's: `apply --adopt` would refuse it, so the key
/// is written commented out and the tunnel stays on its bridge as it is.
fn peers_and_unlike(host: &NodeObs, l: &Link, x: &VxlanObs) -> (Vec<IpAddr>, Vec<String>) {
    let mut peers = Vec::new();
    let mut unlike = Vec::new();
    for f in host.fdb.iter().filter(|f| f.index == l.index) {
        if f.via.is_own() {
            peers.push(f.dst);
            continue;
        }
        // The device by name, as `bridge fdb` shows it (` via under`).
        let own = crate::plumbing::Via { dev: None, ..f.via };
        let dev = f.via.dev.map(|d| {
            let name = host
                .name_of(d)
                .map_or(format!("ifindex {d}"), str::to_string);
            format!(" via {name}")
        });
        unlike.push(format!(
            "an all-zeros FDB entry with its own port, VNI or device (dst {}{own}{})",
            f.dst,
            dev.unwrap_or_default()
        ));
    }
    peers.sort();
    peers.dedup();
    if !x.learning {
        unlike.push("learning off (nsfw's tunnel learns)".to_string());
    }
    if x.ttl != 0 {
        unlike.push(format!(
            "ttl {} (nsfw's tunnel keeps the kernel's, auto)",
            x.ttl
        ));
    }
    if let Some(odd) = x.odd_name() {
        unlike.push(format!(
            "`{odd}` set (nsfw's tunnel keeps the kernel's default)"
        ));
    }
    if l.name != format!("vx{}", x.id) {
        unlike.push(format!("another name than nsfw gives it (vx{})", x.id));
    }
    (peers, unlike)
}
