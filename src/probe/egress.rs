//! What `verify` checks on a live host beyond the file's own segments when `[verify] targets`
//! names nothing: that the namespaces of each masquerading bridge get out, NATed, to the
//! host's default gateway. An echo from 10.10.0.2 that the gateway answers went out of the
//! host and came back to the address it was sent from: the gateway has no way to 10.10.0.0/24
//! of its own, so the answer also says the masquerade did its work.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Result;

use super::{Check, Origin, Probe};
use crate::oracle::{Flow, Party, decide};
use crate::plumbing::observe::read_node;
use crate::plumbing::rtnl::Conn;
use crate::topology::{ICMP, Topology};

/// Namespaces up to this many are each checked; past it, one per bridge (unless the policy
/// names namespaces), as with `[verify] targets`.
const FROM_ALL_MAX: usize = 16;

/// The host's IPv4 default route: its next hop and the interface it leaves through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Gateway {
    pub addr: IpAddr,
    pub dev: String,
}

/// The host's IPv4 default route of the lowest metric with a next hop, read over rtnetlink.
pub(crate) fn default_gateway() -> Result<Option<Gateway>> {
    let mut c = Conn::open("host")?;
    let host = read_node(&mut c)?;
    Ok(host
        .routes
        .iter()
        .filter(|r| r.dst.prefix() == 0 && r.dst.is_ipv4() && r.kind == 1)
        .filter(|r| r.gateway.is_some())
        .min_by_key(|r| r.metric)
        .and_then(|r| {
            Some(Gateway {
                addr: r.gateway?,
                dev: host.name_of(r.oif?)?.to_string(),
            })
        }))
}

/// An echo to the gateway from the namespaces of every bridge that masquerades, expected to
/// get through where the file lets them out (and out of `dev`, with `egress_via`).
pub(crate) fn gateway_checks(t: &Topology, gw: &Gateway) -> Vec<Check> {
    let mut out = Vec::new();
    // A gateway on one of the file's own segments (a bridge that took a NIC's addresses and
    // routes) is reached by bridging, not through the host: not the way out.
    if t.bridges.iter().any(|b| {
        b.name == gw.dev
            || b.address
                .is_some_and(|a| ipnetwork::IpNetwork::V4(a).contains(gw.addr))
    }) {
        return out;
    }
    let all = t.namespaces.len() <= FROM_ALL_MAX || !t.policy.is_empty();
    let forwarding = t.host.ip_forward == Some(true);
    let mut seen = BTreeSet::new();
    for n in t.namespaces.iter().filter(|n| !n.forward) {
        let Some(i) = n.primary() else { continue };
        let Some(b) = t.bridge(&i.bridge) else {
            continue;
        };
        if !b.masquerade || (!all && !seen.insert(b.name.clone())) {
            continue;
        }
        let via_ok = b.egress_via.is_empty() || b.egress_via.contains(&gw.dev);
        let from = Party::Ns(n.name.clone(), IpAddr::V4(i.address.ip()));
        out.push(Check {
            from: Origin::Ns(n.name.clone()),
            to_label: format!("default gateway ({})", gw.dev),
            to: gw.addr,
            probe: Probe::Ping,
            expect: forwarding
                && via_ok
                && decide(t, &Flow::new(from, Party::World(gw.addr), ICMP, 0)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(text: &str) -> Topology {
        crate::topology::parse(text, std::path::Path::new("t.toml")).expect("valid")
    }

    const TWO: &str = "name = \"t\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[bridges.br1]\naddress = \"10.20.0.1/24\"\n[namespaces.a]\nbridge = \"br0\"\n[namespaces.b]\nbridge = \"br1\"\n";

    fn gw(dev: &str) -> Gateway {
        Gateway {
            addr: "198.51.100.2".parse().expect("ip"),
            dev: dev.into(),
        }
    }

    #[test]
    fn the_namespaces_of_masquerading_bridges_ping_the_gateway_as_the_file_says() {
        let c = gateway_checks(&topology(TWO), &gw("eth0"));
        // br1 does not masquerade: whether the gateway routes back to it is not nsfw's to say.
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].expect && c[0].from == Origin::Ns("a".into()));
        assert_eq!(c[0].to_label, "default gateway (eth0)");
        let denied = TWO.replace(
            "masquerade = true\n",
            "masquerade = true\negress = \"deny\"\n",
        );
        assert!(!gateway_checks(&topology(&denied), &gw("eth0"))[0].expect);
        let via = TWO.replace(
            "masquerade = true\n",
            "masquerade = true\negress_via = [\"up0\"]\n",
        );
        assert!(!gateway_checks(&topology(&via), &gw("eth0"))[0].expect);
        assert!(gateway_checks(&topology(&via), &gw("up0"))[0].expect);
        // Through one of the file's bridges: not the way out.
        assert!(gateway_checks(&topology(TWO), &gw("br0")).is_empty());
    }
}
