//! A bridge's VXLAN tunnel read back into the file's `vxlan` key: its VNI, source address,
//! UDP port and the peers its all-zeros FDB entries name. What the key cannot say (no source
//! address, no static peer, a second tunnel, learning off, a TTL, an entry with its own port
//! or VNI) is a note; where the key itself cannot be written, the file carries it commented
//! out, for the user to complete.

use std::fmt::Write;
use std::net::IpAddr;

use crate::plumbing::{Link, NodeObs};
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
            "bridge {b}: VXLAN link {} not translated (a bridge has one tunnel in a file)",
            other.name
        ));
    }
    let mut peers = Vec::new();
    for f in host.fdb.iter().filter(|f| f.index == l.index) {
        match f.via.is_own() {
            true => peers.push(f.dst),
            false => notes.push(format!(
                "bridge {b}: VXLAN link {}: FDB entry dst {}{} not translated (a peer shares the tunnel's port and VNI)",
                l.name, f.dst, f.via
            )),
        }
    }
    peers.sort();
    peers.dedup();
    if !x.learning {
        notes.push(format!(
            "bridge {b}: VXLAN link {}: learning is off; nsfw's tunnel learns",
            l.name
        ));
    }
    if x.ttl != 0 {
        notes.push(format!(
            "bridge {b}: VXLAN link {}: ttl {} not translated (nsfw's tunnel keeps the kernel's, auto)",
            l.name, x.ttl
        ));
    }
    if l.name != format!("vx{}", x.id) {
        notes.push(format!(
            "bridge {b}: VXLAN link {} is named otherwise than nsfw names its tunnel (vx{}): remove it before `apply`, which refuses a second link of VNI {} and port {}",
            l.name, x.id, x.id, x.port
        ));
    }
    let missing = match (x.local, peers.is_empty()) {
        (Some(local), false) => {
            return Some(Tunnel::Key(Vxlan {
                id: x.id,
                local,
                peers,
                port: x.port,
                remote: Vec::new(),
            }));
        }
        (None, _) => "no local address (the file needs this host's underlay address)",
        (Some(_), true) => {
            "no static peer (no all-zeros FDB entry: a multicast group, or peers learnt only), and the file lists its peers"
        }
    };
    notes.push(format!(
        "bridge {b}: VXLAN link {} has {missing}: its `vxlan` key is written commented out, to complete",
        l.name
    ));
    let local = x.local.map_or("LOCAL".to_string(), |a| a.to_string());
    Some(Tunnel::Commented(key(x.id, &local, &peers, x.port)))
}
