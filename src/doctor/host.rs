//! The host's side of doctor, beyond other tables' chains: iptables-legacy, forwarding and
//! br_netfilter, the neighbour table's limit, forwarding between the host's other
//! interfaces, routes that overlap the topology's subnets, listeners on published ports.

use anyhow::Result;
use ipnetwork::IpNetwork;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour_table::{NeighbourTableAttribute, NeighbourTableMessage};

use super::chains::Ruleset;
use super::flows::{Addr, Flow, Iface, Uplinks};
use super::{Finding, Severity};
use crate::plumbing::NodeObs;
use crate::plumbing::rtnl::Conn;
use crate::topology::{Topology, overlaps};
use nft::{Hook, ct_state};

fn problem(object: impl Into<String>, what: String, fix: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Problem,
        object: object.into(),
        what,
        fix: fix.into(),
    }
}

fn warning(object: impl Into<String>, what: String, fix: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Warning,
        ..problem(object, what, fix)
    }
}

/// The tables a /proc/net/ip*_tables_names file lists: those of x_tables (iptables-legacy)
/// made in this network namespace, which exist only once something used them.
fn legacy_names(f: &str) -> Vec<String> {
    std::fs::read_to_string(f)
        .map(|s| {
            s.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// iptables-legacy's tables of one family, with the command that shows them.
fn legacy_tables(rs: &Ruleset, v6: bool) -> (Vec<String>, &'static str) {
    if v6 {
        (
            legacy_names("/proc/net/ip6_tables_names"),
            "ip6tables-legacy",
        )
    } else if rs.state.legacy_tables.is_empty() {
        (legacy_names("/proc/net/ip_tables_names"), "iptables-legacy")
    } else {
        (rs.state.legacy_tables.clone(), "iptables-legacy")
    }
}

/// Why a flow nsfw lets through may still be dropped, in one family: iptables-legacy's
/// tables, whose rules nsfw cannot read (they are not nf_tables), named as the likely cause.
pub(crate) fn legacy_cause(rs: &Ruleset, v6: bool) -> Option<String> {
    let (tables, cmd) = legacy_tables(rs, v6);
    (!tables.is_empty()).then(|| {
        format!(
            "{cmd} tables are loaded ({}): their rules run beside nf_tables, where nsfw cannot read them; `{cmd} -S FORWARD` shows whether they drop it",
            tables.join(", ")
        )
    })
}

/// iptables-legacy's tables: outside nf_tables, where nsfw can neither read nor fix them.
pub(crate) fn legacy(out: &mut Vec<Finding>, rs: &Ruleset) {
    for (tables, cmd) in [legacy_tables(rs, false), legacy_tables(rs, true)] {
        if tables.is_empty() {
            continue;
        }
        out.push(warning(
            format!("{cmd} tables {}", tables.join(", ")),
            format!(
                "iptables-legacy tables are loaded ({}): their rules run beside nf_tables and may drop the topology's traffic; nsfw can neither see nor fix them",
                tables.join(", ")
            ),
            format!(
                "check `{cmd} -S` and `{cmd} -t nat -S`; move those rules to iptables-nft (iptables-legacy-save | iptables-nft-restore) or make sure they accept the topology's bridges"
            ),
        ));
    }
}

/// Forwarding and br_netfilter as the topology needs them.
pub(crate) fn sysctls(out: &mut Vec<Finding>, t: &Topology, rs: &Ruleset) -> Result<()> {
    let fwd = crate::plumbing::sysctl::read("net.ipv4.ip_forward")?;
    if t.host.ip_forward == Some(true) && fwd.as_deref() == Some("0") {
        out.push(problem(
            "sysctl net.ipv4.ip_forward",
            "net.ipv4.ip_forward = 0: the host routes nothing, so no namespace reaches beyond its bridge (the file needs forwarding)".into(),
            "`nsfw apply` turns it on; find what turned it off (/etc/sysctl.d, another network manager)",
        ));
    }
    if crate::firewall::judges_within_bridges(t) && rs.state.br_nf.is_none() {
        out.push(problem(
            "module br_netfilter",
            "the policy judges traffic between namespaces on one bridge (isolate, allow/deny), but br_netfilter is not loaded: that traffic never reaches nftables, so it is not enforced".into(),
            "modprobe br_netfilter (and add it to /etc/modules-load.d/); nsfw loads no modules",
        ));
    }
    Ok(())
}

/// The neighbour table is one for all network namespaces: every namespace holds an entry for
/// its gateway and the host one for each namespace, so 2 per namespace, per IP version. Past
/// gc_thresh3 the kernel refuses new entries ("neighbour table overflow") and namespaces lose
/// their way out.
pub(crate) fn neighbours(out: &mut Vec<Finding>, t: &Topology, host: &mut Conn) -> Result<()> {
    let v4 = t
        .namespaces
        .iter()
        .filter(|n| n.primary().is_some())
        .count();
    let v6 = t
        .namespaces
        .iter()
        .filter(|n| n.ifaces.iter().any(|i| i.address6.is_some()))
        .count();
    for m in host.dump(
        RouteNetlinkMessage::GetNeighbourTable(NeighbourTableMessage::default()),
        "neighbour tables",
    )? {
        let RouteNetlinkMessage::NewNeighbourTable(nt) = m else {
            continue;
        };
        let mut name = String::new();
        let mut thresh3 = None;
        for a in &nt.attributes {
            match a {
                NeighbourTableAttribute::Name(n) => name = n.clone(),
                NeighbourTableAttribute::Threshold3(v) => thresh3 = Some(*v),
                _ => {}
            }
        }
        let (count, key) = match name.as_str() {
            "arp_cache" => (v4, "net.ipv4.neigh.default"),
            "ndisc_cache" => (v6, "net.ipv6.neigh.default"),
            _ => continue,
        };
        let need = 2 * count as u64;
        let Some(limit) = thresh3 else { continue };
        if need > u64::from(limit) {
            let want = need.next_power_of_two() * 2;
            out.push(problem(
                format!("sysctl {key}.gc_thresh3"),
                format!(
                    "{key}.gc_thresh3 = {limit}, below the {need} neighbour entries {} namespaces need ({count} namespaces, one entry each way; the table is shared by every network namespace): past it the kernel refuses new entries (\"neighbour table overflow\") and namespaces lose their way out",
                    t.name
                ),
                format!(
                    "sysctl -w {key}.gc_thresh3={want} {key}.gc_thresh2={} {key}.gc_thresh1={}, and the same in /etc/sysctl.d/ to keep it",
                    want / 2,
                    want / 4
                ),
            ));
        }
    }
    Ok(())
}

/// The interface of the default route, per IP version.
pub(crate) fn uplinks(host: &NodeObs) -> Uplinks {
    let dev = |v6: bool| {
        host.routes
            .iter()
            .filter(|r| r.dst.prefix() == 0 && r.dst.is_ipv6() == v6 && r.kind == 1)
            .min_by_key(|r| r.metric)
            .and_then(|r| r.oif)
            .and_then(|i| host.name_of(i))
            .map(str::to_string)
    };
    (dev(false), dev(true))
}

/// The host's interfaces that are not nsfw's: up, with an address other than link-local.
fn others(host: &NodeObs, t: &Topology) -> Vec<String> {
    let mine: Vec<&str> = t
        .bridges
        .iter()
        .map(|b| b.name.as_str())
        .chain(
            t.namespaces
                .iter()
                .flat_map(|n| n.ifaces.iter().map(|i| i.host_ifname.as_str())),
        )
        .collect();
    host.links
        .iter()
        .filter(|l| l.up && l.name != "lo" && !mine.contains(&l.name.as_str()))
        .filter(|l| !l.alias.as_deref().is_some_and(|a| a.starts_with("nsfw")))
        .filter(|l| {
            host.addrs.iter().any(|a| {
                a.index == l.index
                    && match a.net {
                        IpNetwork::V4(n) => !n.ip().is_link_local(),
                        IpNetwork::V6(n) => (n.ip().segments()[0] & 0xffc0) != 0xfe80,
                    }
            })
        })
        .map(|l| l.name.clone())
        .collect()
}

/// With ip_forward on, the host routes between all its interfaces, not only nsfw's bridges:
/// nsfw judges its own bridges only. Each pair of the host's other interfaces whose traffic no
/// base chain drops is routed in the open.
pub(crate) fn forwarding_leak(
    out: &mut Vec<Finding>,
    t: &Topology,
    host: &NodeObs,
    rs: &Ruleset,
) -> Result<()> {
    let on = crate::plumbing::sysctl::read("net.ipv4.ip_forward")?.as_deref() == Some("1")
        || t.host.ip_forward == Some(true);
    if !on {
        return Ok(());
    }
    let ifs = others(host, t);
    let mut open = Vec::new();
    for a in &ifs {
        for b in &ifs {
            if a == b {
                continue;
            }
            let f = Flow {
                label: format!("{a} → {b}"),
                hook: Hook::Forward,
                v6: false,
                iif: Iface::Is(vec![a.clone()]),
                oif: Iface::Is(vec![b.clone()]),
                saddr: Addr::Unknown,
                daddr: Addr::Unknown,
                ct: ct_state::NEW,
                dnat: false,
                l4: None,
                bridged: false,
                ours: Vec::new(),
                our_ifaces: Vec::new(),
                accept: None,
                minor: false,
            };
            let judged = rs.judge_flows(t, std::slice::from_ref(&f));
            // Dropped but for what some rule may accept (Docker's published ports): not open.
            let dropped = judged.iter().any(|(_, v)| !v.blocked.is_empty());
            if !dropped {
                open.push(format!("{a} → {b}"));
            }
        }
    }
    if !open.is_empty() {
        out.push(warning(
            "sysctl net.ipv4.ip_forward",
            format!(
                "ip_forward = 1 (which {} needs) routes between all of the host's interfaces, not only nsfw's bridges, and no base chain drops this: {}",
                t.name,
                open.join(", ")
            ),
            format!(
                "drop what should not be routed, e.g. nft add table inet filter; nft add chain inet filter forward '{{ type filter hook forward priority 0; }}'; nft add rule inet filter forward iifname {{ {} }} oifname {{ {} }} drop",
                ifs.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", "),
                ifs.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(())
}

/// Routes of the host's main table that overlap a bridge's subnet through another interface:
/// one inside it takes part of the namespaces' addresses away; one around it loses that part
/// of its own network.
pub(crate) fn routes(out: &mut Vec<Finding>, t: &Topology, host: &NodeObs) {
    for b in &t.bridges {
        for v6 in [false, true] {
            let Some(subnet) = t.segment_subnet(&b.name, v6) else {
                continue;
            };
            for r in &host.routes {
                if r.dst.prefix() == 0 || r.dst.is_ipv6() != v6 || r.ours {
                    continue;
                }
                let dev = r.oif.and_then(|i| host.name_of(i)).unwrap_or("?");
                if dev == b.name || !overlaps(r.dst, subnet) {
                    continue;
                }
                let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                if r.dst.prefix() >= subnet.prefix() {
                    out.push(problem(
                        format!("route {}{via} dev {dev}", r.dst),
                        format!(
                            "the host routes {} (inside bridge {}'s {subnet}) out of {dev}: namespaces with those addresses get no replies",
                            r.dst, b.name
                        ),
                        format!(
                            "remove the route (it belongs to whatever made it), or move bridge {} to a subnet nothing else uses",
                            b.name
                        ),
                    ));
                } else {
                    out.push(warning(
                        format!("route {}{via} dev {dev}", r.dst),
                        format!(
                            "bridge {}'s {subnet} lies inside {} routed out of {dev}: the hosts of that network in {subnet} are out of the host's reach",
                            b.name, r.dst
                        ),
                        format!(
                            "move bridge {} to a subnet outside {} if anything there must be reached",
                            b.name, r.dst
                        ),
                    ));
                }
            }
        }
    }
}

/// Published ports a host process listens on.
pub(crate) fn listeners(out: &mut Vec<Finding>, t: &Topology) {
    if !crate::firewall::publish::any(t) {
        return;
    }
    let l = crate::plumbing::listeners::read();
    for w in crate::firewall::publish::shadowed_listeners(t, &l) {
        out.push(warning(
            "a listening socket on the host",
            w,
            "stop that service or publish another port",
        ));
    }
}
