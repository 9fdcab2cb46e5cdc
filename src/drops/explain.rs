//! A logged packet read back as the file's terms: who sent it and to whom (a namespace, the
//! host, an address of the world), what it was (`tcp/22`, `icmp`), and why it was dropped,
//! with the entry of the file behind it and its line.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::oracle::{Flow, Party, denied_by};
use crate::topology::{Entry, Topology};

use super::nflog::Logged;

/// One drop, explained.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Drop {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The namespace (or `host`) at each end, when it is one of the topology's.
    pub from: Option<String>,
    pub to: Option<String>,
    pub proto: u8,
    /// The destination port (TCP, UDP, SCTP, UDP-Lite), or the ICMP type.
    pub port: Option<u16>,
    /// invalid, spoofed, egress, policy, closed, isolated, host.
    pub reason: String,
    /// The entry of the file that decided it, and where it is (`[[deny]] #1 at lab.toml:20`).
    pub entry: Option<Entry>,
    pub at: Option<String>,
    /// The entry's line in the file.
    pub line: Option<usize>,
    pub indev: Option<String>,
    pub outdev: Option<String>,
}

/// Addresses, protocol and port of the packet's first bytes.
fn headers(family: u8, p: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    if i32::from(family) == libc::AF_INET {
        let ihl = usize::from(p.first()? & 0x0f) * 4;
        let a: [u8; 4] = p.get(12..16)?.try_into().ok()?;
        let b: [u8; 4] = p.get(16..20)?.try_into().ok()?;
        // A fragment other than the first carries no transport header.
        let later = u16::from_be_bytes(p.get(6..8)?.try_into().ok()?) & 0x1fff != 0;
        let rest = if later {
            &[][..]
        } else {
            p.get(ihl..).unwrap_or(&[])
        };
        Some((
            Ipv4Addr::from(a).into(),
            Ipv4Addr::from(b).into(),
            *p.get(9)?,
            rest,
        ))
    } else {
        let a: [u8; 16] = p.get(8..24)?.try_into().ok()?;
        let b: [u8; 16] = p.get(24..40)?.try_into().ok()?;
        Some((
            Ipv6Addr::from(a).into(),
            Ipv6Addr::from(b).into(),
            *p.get(6)?,
            p.get(40..).unwrap_or(&[]),
        ))
    }
}

/// The destination port (or ICMP type) of a transport header.
fn port_of(proto: u8, l4: &[u8]) -> Option<u16> {
    match proto {
        6 | 17 | 132 | 136 => Some(u16::from_be_bytes(l4.get(2..4)?.try_into().ok()?)),
        1 | 58 => l4.first().map(|t| u16::from(*t)),
        _ => None,
    }
}

/// Interface names by index, asked of the kernel once each.
#[derive(Default)]
pub(crate) struct Names(HashMap<u32, Option<String>>);

impl Names {
    fn of(&mut self, i: Option<u32>) -> Option<String> {
        let i = i?;
        self.0
            .entry(i)
            .or_insert_with(|| {
                nix::net::if_::if_indextoname(i)
                    .ok()
                    .map(|c| c.to_string_lossy().into_owned())
            })
            .clone()
    }
}

/// Who an address is in the topology.
fn party(t: &Topology, a: IpAddr) -> Party {
    let v6 = a.is_ipv6();
    if let Some(n) = t.namespaces.iter().find(|n| n.addrs(v6).any(|x| x == a)) {
        return Party::Ns(n.name.clone(), a);
    }
    if t.bridges.iter().any(|b| b.gateway_addr(v6) == Some(a)) {
        return Party::Host(a);
    }
    Party::World(a)
}

fn name(p: &Party) -> Option<String> {
    match p {
        Party::Ns(n, _) => Some(n.clone()),
        Party::Host(_) => Some("host".into()),
        Party::World(_) => None,
    }
}

/// The bridge an interface is, or the bridge of the namespace whose host end it is.
fn bridge_of<'a>(t: &'a Topology, ifname: Option<&str>) -> Option<&'a str> {
    let i = ifname?;
    if let Some(b) = t.bridges.iter().find(|b| b.name == i) {
        return Some(&b.name);
    }
    t.namespaces
        .iter()
        .flat_map(|n| &n.ifaces)
        .find(|f| f.host_ifname == i)
        .map(|f| f.bridge.as_str())
}

/// The drop `l` of topology `t`, with `reason` from its prefix; None when its headers cannot
/// be read.
pub(crate) fn explain(t: &Topology, reason: &str, l: &Logged, names: &mut Names) -> Option<Drop> {
    let (src, dst, proto, l4) = headers(l.family, &l.packet)?;
    let port = port_of(proto, l4);
    let (indev, outdev) = (names.of(l.indev), names.of(l.outdev));
    // The input hook has no output device, the output hook no input device.
    let mut from = party(t, src);
    let mut to = party(t, dst);
    if l.outdev.is_none() {
        to = Party::Host(dst);
    }
    if l.indev.is_none() {
        from = Party::Host(src);
    }
    let mut reason = reason.to_string();
    let entry = match reason.as_str() {
        "policy" => {
            let f = Flow::new(from.clone(), to.clone(), proto, port.unwrap_or(0));
            denied_by(t, &f).and_then(|r| Entry::of_key(&r.key))
        }
        "closed" => {
            let (a, b) = (
                bridge_of(t, indev.as_deref()),
                bridge_of(t, outdev.as_deref()),
            );
            match (a, b) {
                (Some(a), Some(b)) if a == b && t.bridge(a).is_some_and(|x| x.isolate) => {
                    reason = "isolated".into();
                    Some(Entry::Isolate(a.to_string()))
                }
                _ => None,
            }
        }
        "egress" => bridge_of(t, indev.as_deref()).map(|b| Entry::Egress(b.to_string())),
        "host" => Some(Entry::Protect),
        "spoofed" => {
            let port = names.of(l.physindev);
            t.namespaces
                .iter()
                .find(|n| {
                    n.ifaces
                        .iter()
                        .any(|f| Some(&f.host_ifname) == port.as_ref())
                })
                .map(|n| Entry::Namespace(n.name.clone()))
        }
        _ => None,
    };
    let at = entry.as_ref().map(|e| t.origin(e));
    let line = entry.as_ref().and_then(|e| t.origins.line(e));
    Some(Drop {
        src,
        dst,
        from: name(&from),
        to: name(&to),
        proto,
        port,
        reason,
        entry,
        at,
        line,
        indev,
        outdev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn logged(prefix: &str, packet: Vec<u8>, indev: u32, outdev: Option<u32>) -> Logged {
        Logged {
            time: SystemTime::UNIX_EPOCH,
            prefix: prefix.into(),
            family: libc::AF_INET as u8,
            packet,
            indev: Some(indev),
            outdev,
            physindev: None,
        }
    }

    /// An IPv4 header of 20 bytes and a UDP header to `dport`.
    fn udp(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0x30, 0x39]);
        p.extend_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn a_denied_packet_names_its_deny_entry_and_line() {
        let text = "name = \"lab\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n\
             [namespaces.n1]\nbridge = \"br0\"\n[namespaces.n2]\nbridge = \"br0\"\n\n\
             [[deny]]\nfrom = \"n1\"\nto = \"n2\"\nports = [\"tcp/22\"]\n\n\
             [[deny]]\nfrom = \"n1\"\nto = \"n2\"\nports = [\"udp/53\"]\n";
        let t = crate::topology::parse(text, std::path::Path::new("lab.toml")).expect("valid");
        let (a, b) = (
            t.namespaces[0].addrs(false).next().expect("n1"),
            t.namespaces[1].addrs(false).next().expect("n2"),
        );
        let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) else {
            panic!("v4")
        };
        let mut names = Names::default();
        let l = logged(
            "nsfw:lab policy",
            udp(a.octets(), b.octets(), 53),
            1,
            Some(1),
        );
        let d = explain(&t, "policy", &l, &mut names).expect("explained");
        assert_eq!(
            (d.from.as_deref(), d.to.as_deref()),
            (Some("n1"), Some("n2"))
        );
        assert_eq!((d.proto, d.port), (17, Some(53)));
        assert_eq!(d.entry, Some(Entry::Deny(1)));
        assert_eq!(d.at.as_deref(), Some("[[deny]] #2 at lab.toml:15"));
        // To the host (no output device): the host is the destination whatever its address.
        let l = logged(
            "nsfw:lab host",
            udp(a.octets(), [192, 0, 2, 1], 22),
            1,
            None,
        );
        let d = explain(&t, "host", &l, &mut names).expect("explained");
        assert_eq!(d.to.as_deref(), Some("host"));
        assert_eq!(d.entry, Some(Entry::Protect));
        // Too short to hold an IPv4 header: nothing to say.
        let l = logged("nsfw:lab policy", vec![0x45, 0], 1, Some(1));
        assert!(explain(&t, "policy", &l, &mut names).is_none());
    }
}
