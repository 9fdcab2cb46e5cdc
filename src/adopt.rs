//! `apply --adopt`: the objects a file describes that somebody built by hand (no nsfw mark)
//! are taken over in place rather than refused: each is marked (`kinds::adopt`) and the plan
//! is made over the observation as it will be once marked, so what already matches the file
//! is left alone (addresses, routes, the namespaces' processes) and only what differs
//! changes. The hand-written firewall lines `import` recognises and the file says again are
//! deleted in the same nftables batch that loads nsfw's table: there is no instant without
//! the NAT or the stateful forward.
//!
//! What is being adopted is written to the record before anything is marked; until the run
//! is done every run of that topology (apply, flush) takes those objects for its own, marked
//! or not: a killed adoption converges like a killed apply.

use anyhow::Result;

use crate::import::rules::{Found, Meaning};
use crate::kinds::{Adopt, Adoptee, Step};
use crate::plan::{Owner, Plan};
use crate::plumbing::{self, FileObs};
use crate::resources::{Desired, LinkKind, LinkSpec};
use crate::state::{Pending, Record};
use crate::topology::Topology;

/// What a run takes over.
#[derive(Debug, Default)]
pub(crate) struct Adoption {
    pub steps: Vec<Step>,
    pub pending: Pending,
    /// Hand-written rules the file replaces: deleted in the batch.
    pub rules: Vec<Found>,
    /// Those in iptables-legacy: removed right after the batch.
    pub legacy: Vec<Found>,
    /// Hand-written rules that concern the file's bridges but that it does not say: kept.
    pub kept: Vec<String>,
    /// Host forwarding switches found on: named in a warning (a flush leaves them on).
    pub sysctls: Vec<String>,
    /// Why a hand-made tunnel of the file's is not taken over: the run is refused.
    pub refused: Vec<String>,
}

fn unmarked(alias: Option<&str>) -> bool {
    alias.and_then(crate::owner::Mark::parse).is_none()
}

/// Whether host link `l` is what `spec` describes: a bridge for a bridge; for a veth's host
/// end, a veth whose peer is `peer` inside `peer_ns`; for a tunnel, a VXLAN link of its VNI,
/// local address and port with the kernel's learning and TTL.
fn same_kind(
    o: &plumbing::Observed,
    l: &plumbing::Link,
    spec: &LinkSpec,
    fdb: &std::collections::BTreeSet<(String, std::net::IpAddr)>,
) -> bool {
    match &spec.kind {
        LinkKind::Bridge => l.kind.as_deref() == Some("bridge"),
        LinkKind::Veth { peer_ns, peer, .. } => {
            l.kind.as_deref() == Some("veth")
                && o.namespaces.get(peer_ns).is_some_and(|ns| {
                    ns.node.link(peer).is_some_and(|p| {
                        p.peer_index == Some(l.index) && l.peer_index == Some(p.index)
                    })
                })
        }
        // A tunnel exactly as nsfw would make it (a drifted one would be made again, and
        // a hand-made object is never deleted on adoption).
        LinkKind::Vxlan { .. } => {
            crate::kinds::vxlan::not_adoptable(spec, l, &o.host.fdb, fdb).is_none()
        }
        _ => false,
    }
}

/// The unmarked objects of `d` that are taken over: every one when `adopt`, else those an
/// interrupted adoption of this topology was taking (the record).
pub(crate) fn find(d: &Desired, o: &plumbing::Observed, rec: &Record, adopt: bool) -> Adoption {
    let was = rec.adopting.get(&d.topology).cloned().unwrap_or_default();
    let mut a = Adoption::default();
    for name in d.namespaces.keys() {
        let Some(ns) = o.namespaces.get(name) else {
            continue;
        };
        if ns.owner.is_none() && (adopt || was.namespaces.contains(name)) {
            a.pending.namespaces.insert(name.clone());
            a.steps.push(
                Adopt {
                    what: Adoptee::Namespace(name.clone()),
                }
                .into(),
            );
        }
    }
    // By name once: a scan of the host's links per link of the file is O(N²) at N pairs.
    let host: std::collections::HashMap<&str, &plumbing::Link> =
        o.host.links.iter().map(|l| (l.name.as_str(), l)).collect();
    for (name, spec) in &d.host.links {
        let Some(l) = host.get(name.as_str()).copied() else {
            continue;
        };
        if l.alias.is_none() && adopt && !same_kind(o, l, spec, &d.host.fdb) {
            a.refused
                .extend(crate::kinds::vxlan::refusal(l, spec, &o.host.fdb, d));
        }
        if l.alias.is_none()
            && (adopt || was.links.contains_key(name))
            && same_kind(o, l, spec, &d.host.fdb)
        {
            let mac = l.mac.map(|m| m.to_string()).unwrap_or_default();
            a.pending.links.insert(name.clone(), mac);
            a.steps.push(
                Adopt {
                    what: Adoptee::Link(name.clone()),
                }
                .into(),
            );
        }
    }
    if adopt {
        for (k, want) in d.host.sysctls.iter().filter(|(_, s)| s.restore) {
            let have = o.host.sysctls.get(k).cloned().flatten();
            if (k.ends_with("forwarding") || k.ends_with("ip_forward"))
                && have.as_deref().map(str::trim) == Some(want.value.as_str())
                && !rec.sysctls.contains_key(k)
            {
                a.sysctls.push(k.clone());
            }
        }
    }
    for ns in d.resolv.keys() {
        if let Some(FileObs::Text(t)) = o.resolv.get(ns)
            && crate::owner::resolv_owner(t).is_none()
            && (adopt || was.files.contains(ns))
        {
            a.pending.files.insert(ns.clone());
        }
    }
    a
}

/// For a flush: what an interrupted adoption of each topology `who` owns was taking, by
/// topology.
pub(crate) fn find_for_flush(
    o: &plumbing::Observed,
    rec: &Record,
    who: Owner,
) -> Vec<(String, Adoption)> {
    let mut out = Vec::new();
    for (t, was) in rec.adopting.iter().filter(|(t, _)| who.owns_topology(t)) {
        let mut a = Adoption::default();
        for n in &was.namespaces {
            if o.namespaces.get(n).is_some_and(|ns| ns.owner.is_none()) {
                a.pending.namespaces.insert(n.clone());
            }
        }
        for l in was.links.keys() {
            if o.host.link(l).is_some_and(|l| l.alias.is_none()) {
                a.pending.links.insert(l.clone(), String::new());
            }
        }
        a.pending.files = was.files.clone();
        out.push((t.clone(), a));
    }
    out
}

/// The observation as it is once the adopted objects carry `mark` (and the adopted
/// resolv.conf files nsfw's first line): what the plan is made over.
pub(crate) fn as_marked<'o>(
    o: &'o plumbing::Observed,
    a: &Adoption,
    mark: &str,
    topology: &str,
) -> std::borrow::Cow<'o, plumbing::Observed> {
    // Nothing adopted (every run but an adoption's): the observation as it is, not a copy of
    // every namespace's links, addresses and routes (at 1,000 namespaces, a few ms of malloc).
    if a.pending.namespaces.is_empty() && a.pending.links.is_empty() && a.pending.files.is_empty() {
        return std::borrow::Cow::Borrowed(o);
    }
    let mut o = o.clone();
    for n in &a.pending.namespaces {
        if let Some(ns) = o.namespaces.get_mut(n) {
            ns.owner = Some(mark.to_string());
            if let Some(lo) = ns.node.links.iter_mut().find(|l| l.name == "lo") {
                lo.alias = Some(mark.to_string());
            }
        }
    }
    for l in o.host.links.iter_mut() {
        if a.pending.links.contains_key(&l.name) && unmarked(l.alias.as_deref()) {
            l.alias = Some(mark.to_string());
        }
    }
    for ns in &a.pending.files {
        if let Some(FileObs::Text(t)) = o.resolv.get_mut(ns)
            && crate::owner::resolv_owner(t).is_none()
        {
            // Marked, and different from what nsfw writes: the plan writes it as nsfw's.
            *t = crate::owner::resolv_file(topology, &format!("# adopted\n{t}"));
        }
    }
    std::borrow::Cow::Owned(o)
}

/// Whether topology `t` says what rule meaning `m` does.
fn says(t: &Topology, m: &Meaning) -> bool {
    let bridge = |what: &str| {
        t.bridges.iter().find(|b| {
            b.name == what
                || b.address.is_some_and(|a| {
                    what.parse::<ipnetwork::Ipv4Network>()
                        .is_ok_and(|n| n.network() == a.network() && n.prefix() == a.prefix())
                })
        })
    };
    let ns_of = |ip: std::net::IpAddr| {
        t.namespaces.iter().find(|n| {
            n.ifaces
                .iter()
                .any(|i| std::net::IpAddr::V4(i.address.ip()) == ip)
        })
    };
    match m {
        Meaning::Masquerade {
            subnet,
            uplink,
            not_out,
            ..
        } => bridge(&subnet.to_string()).is_some_and(|b| {
            b.masquerade
                && (uplink.is_none() || b.uplink == *uplink)
                && not_out.as_ref().is_none_or(|o| *o == b.name)
        }),
        Meaning::Stateful => true,
        Meaning::Egress { from } => bridge(from).is_some_and(|b| !b.egress_deny),
        Meaning::Inbound { to } => bridge(to).is_some(),
        // Everything the DNAT says, the file says again: the host address, both ports, the
        // protocol and the namespace; else it is not the same port forward and stays.
        Meaning::Publish {
            proto,
            host_addr,
            port,
            to,
            to_port,
        } => ns_of(*to).is_some_and(|n| {
            n.publish.iter().any(|p| {
                p.pairs().any(|pair| pair == (*port, *to_port))
                    && p.proto.to_string() == *proto
                    && p.host_addr == *host_addr
                    && p.v4
            })
        }),
        Meaning::Drop { from, to } if from == to => bridge(from).is_some_and(|b| b.isolate),
        Meaning::Drop { from, to } => {
            let (Ok(f), Ok(d)) = (from.parse(), to.parse()) else {
                return false;
            };
            match (ns_of(f), ns_of(d)) {
                (Some(a), Some(b)) => t.policy.iter().any(|r| {
                    r.action == crate::topology::Action::Deny
                        && r.from == crate::topology::Endpoint::Ns(a.name.clone())
                        && r.to == crate::topology::Endpoint::Ns(b.name.clone())
                }),
                _ => false,
            }
        }
    }
}

/// The hand-written rules of other owners that concern a topology (read by the engine's
/// `Kernel`, so that the fake kernel can hold some): nftables' and iptables-legacy's.
#[derive(Clone, Debug, Default)]
pub(crate) struct HandRules {
    pub nft: Vec<Found>,
    /// iptables-nft's filter chains, in order: whether a drop stays below an accept.
    pub nft_forward: crate::import::NftForward,
    pub legacy: crate::import::Legacy,
}

/// The bridges' names and subnets of `t`, which a rule must name to concern it.
pub(crate) fn lab_of(t: &Topology) -> (Vec<String>, Vec<ipnetwork::IpNetwork>) {
    let names: Vec<String> = t.bridges.iter().map(|b| b.name.clone()).collect();
    let subnets: Vec<ipnetwork::IpNetwork> = t
        .bridges
        .iter()
        .filter_map(|b| b.address)
        .map(|a| ipnetwork::IpNetwork::V4(crate::topology::subnet_of4(&a)))
        // Lines that name the lab only by its IPv6 subnet are named too (never removed).
        .chain(
            t.bridges
                .iter()
                .filter_map(|b| b.address6)
                .filter_map(|a| ipnetwork::IpNetwork::new(a.network().into(), a.prefix()).ok()),
        )
        .collect();
    (names, subnets)
}

/// Reads the hand-written rules that concern the bridges `names` and `subnets` off the host.
pub(crate) fn read_rules(names: &[String], subnets: &[ipnetwork::IpNetwork]) -> Result<HandRules> {
    Ok(HandRules {
        nft: crate::import::read_rules_for(names, subnets)?,
        nft_forward: crate::import::read_nft_forward()?,
        legacy: crate::import::read_legacy_for(names, subnets),
    })
}

/// The hand-written rules that concern `t`'s bridges and subnets, sorted into those `t` says
/// again (removed) and those it does not (kept, named).
pub(crate) fn rules(t: &Topology, a: &mut Adoption, hand: &HandRules) {
    let legacy = hand.legacy.clone();
    a.kept.extend(legacy.notes);
    // An accept in iptables-nft's filter chain with a drop below it that stays (a catch-all
    // `-j DROP`, `-o br0 -j DROP`): the hook's every base chain must accept, so it stays, as
    // in iptables-legacy. (A drop policy there is handled by nsfw's own placed accepts.)
    let removed_texts: Vec<&str> = hand
        .nft
        .iter()
        .filter(|f| f.meaning.as_ref().is_some_and(|m| says(t, m)))
        .map(|f| f.text.as_str())
        .collect();
    let nft_below = |f: &Found| {
        f.at.family == nft::Family::Ip
            && f.at.table == "filter"
            && matches!(
                f.meaning,
                Some(Meaning::Stateful | Meaning::Egress { .. } | Meaning::Inbound { .. })
            )
            && hand
                .nft_forward
                .drop_below(&f.at.chain, f.at.handle, &|t| removed_texts.contains(&t))
    };
    for f in hand.nft.iter().cloned() {
        match &f.meaning {
            Some(_) if nft_below(&f) => a.kept.push(format!(
                "{}: {} (handle {}) stays: a rule below it in that chain drops (or may drop) what it accepts, and without it the topology's forwarded traffic would be dropped there",
                f.at, f.text, f.at.handle
            )),
            Some(m) if says(t, m) => a.rules.push(f),
            _ => a.kept.push(format!(
                "{}: {} (handle {}) concerns this topology but the file does not say it: left in place",
                f.at, f.text, f.at.handle
            )),
        }
    }
    // A drop iptables-legacy keeps below an accept of the lab's traffic (a catch-all
    // `-j DROP`, `-o br0 -j DROP`, a jump to a chain that drops): without the accept the
    // traffic reaches it and is dropped, whatever nsfw's table says. Only a drop the file
    // says again (and so is removed) does not count.
    let blocked_below = |f: &Found| {
        legacy.blockers.iter().any(|b| {
            let below = (b.at.chain == f.at.chain && b.at.handle > f.at.handle)
                // An accept in DOCKER-USER ends only that chain's part: FORWARD goes on.
                || (f.at.chain == "DOCKER-USER" && b.at.chain == "FORWARD");
            b.at.family == f.at.family
                && b.at.table == f.at.table
                && below
                && !b.meaning.as_ref().is_some_and(|m| says(t, m))
        })
    };
    for f in legacy.found {
        // With iptables-legacy's FORWARD policy drop, or a drop below, its accepts are what
        // lets the lab's traffic through it (nsfw's table cannot): they stay.
        let accepts = matches!(
            f.meaning,
            Some(Meaning::Stateful | Meaning::Egress { .. } | Meaning::Inbound { .. })
        );
        let policy = accepts && legacy.forward_drop && f.at.family == nft::Family::Ip;
        let below = accepts && blocked_below(&f);
        match &f.meaning {
            Some(m) if says(t, m) && !policy && !below => a.legacy.push(f),
            Some(_) if policy => a.kept.push(format!(
                "{}: {} (rule {}) stays: iptables-legacy's FORWARD policy is drop, and without it the topology's forwarded traffic would be dropped there",
                f.at, f.text, f.at.handle
            )),
            Some(_) if below => a.kept.push(format!(
                "{}: {} (rule {}) stays: a rule below it in that chain drops (or may drop) what it accepts, and without it the topology's forwarded traffic would be dropped there",
                f.at, f.text, f.at.handle
            )),
            _ => a.kept.push(format!(
                "{}: {} (rule {}) concerns this topology but the file does not say it: left in place",
                f.at, f.text, f.at.handle
            )),
        }
    }
}

/// The adoption folded into the plan: the marks first, the rules' deletions in the batch,
/// the record naming what is being adopted until the run is done.
pub(crate) fn finish(p: &mut Plan, a: Adoption, topology: &str) {
    let mut steps = a.steps;
    steps.append(&mut p.steps);
    p.steps = steps;
    for f in &a.rules {
        p.nft.ops.push(nft::batch::Op::DeleteRule {
            family: f.at.family,
            table: f.at.table.clone(),
            chain: f.at.chain.clone(),
            handle: f.at.handle,
            what: format!("{} rule {} written by hand", f.at, f.text),
        });
        p.nft.lines.push(nft::diff::NftLine {
            foreign: true,
            ..nft::diff::NftLine::new(
                '-',
                "rule",
                &format!("{} {}", f.at.family.as_str(), f.at.table),
                Some(&f.at.chain),
                format!(
                    "{} (handle {}): written by hand, replaced by nsfw's table",
                    f.text, f.at.handle
                ),
            )
        });
    }
    for f in &a.legacy {
        let (Some(key), Some(family)) = (&f.at.legacy, legacy_family(f.at.family)) else {
            continue;
        };
        p.legacy.push(crate::plumbing::xtables::Removal {
            family,
            table: f.at.table.clone(),
            chain: f.at.chain.clone(),
            key: key.clone(),
        });
        p.nft.lines.push(nft::diff::NftLine {
            foreign: true,
            ..nft::diff::NftLine::new(
                '-',
                "rule",
                &format!("{} {}", f.at.family_name(), f.at.table),
                Some(&f.at.chain),
                format!(
                    "{} (rule {}): written by hand, replaced by nsfw's table (removed right after it is loaded)",
                    f.text, f.at.handle
                ),
            )
        });
    }
    p.conflicts.extend(a.refused);
    let mut pending = a.pending;
    pending.legacy_rules = !p.legacy.is_empty();
    p.warnings.extend(a.kept);
    // Whether it was on before the lab (Docker, a router) cannot be known: the record keeps
    // "on" as the original, so no flush turns off what another user may need.
    for k in a.sysctls {
        p.warnings.push(format!(
            "{k} is on already: nsfw cannot tell whether the lab turned it on, so its flush leaves it on (set it to 0 yourself if nothing else needs it)"
        ));
    }
    if !pending.is_empty() {
        p.record_during
            .adopting
            .insert(topology.to_string(), pending);
    }
    p.record_after.adopting.remove(topology);
}

fn legacy_family(f: nft::Family) -> Option<crate::plumbing::xtables::Family> {
    match f {
        nft::Family::Ip => Some(crate::plumbing::xtables::Family::V4),
        nft::Family::Ip6 => Some(crate::plumbing::xtables::Family::V6),
        _ => None,
    }
}

/// For a flush: the adoption's record entries go with what they name.
pub(crate) fn finish_flush(p: &mut Plan, who: Owner) {
    p.record_after.adopting.retain(|t, _| !who.owns_topology(t));
}

/// Whether namespace `place` had a default route of the family before the adoption.
fn had_default(o: &plumbing::Observed, place: &crate::resources::Place, v6: bool) -> bool {
    let crate::resources::Place::Ns(n) = place else {
        return true;
    };
    o.namespaces.get(n).is_none_or(|ns| {
        ns.node
            .routes
            .iter()
            .any(|r| r.dst.prefix() == 0 && r.dst.is_ipv6() == v6)
    })
}

/// Whether namespace `place` had a global IPv6 address before the adoption.
fn had_v6(o: &plumbing::Observed, place: &crate::resources::Place) -> bool {
    let crate::resources::Place::Ns(n) = place else {
        return true;
    };
    o.namespaces.get(n).is_none_or(|ns| {
        ns.node.addrs.iter().any(|a| match a.net {
            ipnetwork::IpNetwork::V6(n) => {
                n.ip().segments()[0] & 0xffc0 != 0xfe80 && !n.ip().is_loopback()
            }
            ipnetwork::IpNetwork::V4(_) => false,
        })
    })
}

/// Under `--adopt`, the plan only adds and changes: it never removes what was not nsfw's
/// before this run (an extra address, a route, a second veth inside an adopted namespace:
/// kept, and named), and it never removes what nsfw already holds (a topology of the same
/// name applied before, whose objects this file does not name: refused, since a file that
/// `import` wrote after the adoption would otherwise delete the lab). A plain `apply` of the
/// same file is how the user says "remove them". `o` is the observation before marking.
pub(crate) fn guard(p: &mut Plan, o: &plumbing::Observed, a: &Adoption, file: &str) {
    use crate::resources::Place;
    let adopted = |place: &Place| match place {
        Place::Ns(n) => a.pending.namespaces.contains(n),
        Place::Host => false,
    };
    let owned_ns = |n: &str| o.namespaces.get(n).is_some_and(|ns| ns.owner.is_some());
    let owned_link = |place: &Place, name: &str| match place {
        Place::Host => o
            .host
            .link(name)
            .is_some_and(|l| !unmarked(l.alias.as_deref())),
        Place::Ns(n) => owned_ns(n) && !a.pending.namespaces.contains(n),
    };
    let on_adopted_host_link = |place: &Place, ifname: &str| {
        matches!(place, Place::Host) && a.pending.links.contains_key(ifname)
    };
    // A host link that is not nsfw's, not adopted, yet sits on a bridge being adopted (a
    // tunnel `import` could not translate, a second tunnel, a hand-made port): the file does
    // not describe it, so it stays where it is rather than being let go of its bridge.
    let foreign_on_adopted = |s: &crate::kinds::SetLink| {
        matches!(s.place, Place::Host)
            && !a.pending.links.contains_key(&s.name)
            && o.host
                .link(&s.name)
                .is_some_and(|l| unmarked(l.alias.as_deref()))
            && s.attrs.iter().any(|at| {
                matches!(at, crate::kinds::LinkAttr::Master { old: Some(b), new: None }
                    if a.pending.links.contains_key(b))
            })
    };
    let mut keep = Vec::new();
    for s in std::mem::take(&mut p.steps) {
        if let Step::SetLink(l) = &s
            && foreign_on_adopted(l)
        {
            p.warnings.push(format!(
                "left out: {s} ({} is not nsfw's and {file} does not describe it: it stays on its bridge as it is; --adopt never changes a link it does not take over, though a later plain `nsfw apply` of {file} would let it go)",
                l.name
            ));
            p.left_out.push(s);
            continue;
        }
        let (already_nsfw, hand) = match &s {
            Step::DeleteNamespace(d) => (owned_ns(&d.name), !owned_ns(&d.name)),
            Step::DeleteLink(d) => (
                owned_link(&d.place, &d.name),
                adopted(&d.place) || !owned_link(&d.place, &d.name),
            ),
            // A link-local address goes as on any link of nsfw's (the kernel's, not the user's).
            Step::DelAddr(d) => (
                false,
                !matches!(d.net, ipnetwork::IpNetwork::V6(n) if n.ip().segments()[0] & 0xffc0 == 0xfe80)
                    && (adopted(&d.place) || on_adopted_host_link(&d.place, &d.ifname)),
            ),
            Step::DelRoute(d) => (false, adopted(&d.place)),
            // A default route or an IPv6 address where the namespace had none of that family:
            // the file cannot say "none" (import notes it), and adopting must not connect an
            // isolated namespace. Left out, named.
            Step::SetRoute(r) => (
                false,
                r.old.is_none()
                    && r.route.dst.prefix() == 0
                    && adopted(&r.place)
                    && !had_default(o, &r.place, r.route.dst.is_ipv6()),
            ),
            Step::AddAddr(d) => (
                false,
                d.net.is_ipv6() && adopted(&d.place) && !had_v6(o, &d.place),
            ),
            _ => (false, false),
        };
        if already_nsfw && !hand {
            p.conflicts.push(format!(
                "{file}: --adopt would remove {}, which nsfw already holds and this file does not name; --adopt never removes nsfw's objects (was this file written by `nsfw import` after an adoption? use the file that topology was applied from); run a plain `nsfw apply` if you mean to remove it",
                s.object()
            ));
        } else if hand {
            p.warnings.push(format!(
                "left out: {s} (--adopt changes nothing the lab did not have or name: it never removes what was not nsfw's, nor gives a namespace a default route or IPv6 it had none of; a later plain `nsfw apply` of {file} would)"
            ));
            p.left_out.push(s);
            continue;
        }
        keep.push(s);
    }
    p.steps = keep;
}

#[cfg(test)]
#[path = "adopt_tests.rs"]
mod tests;
