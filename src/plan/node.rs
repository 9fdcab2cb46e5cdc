//! The diff inside one network namespace (the host's or a named one): its links (`links`),
//! addresses, routes, impairments and sysctls.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ipnetwork::IpNetwork;

use super::cx::Cx;
use crate::kinds::{AddAddr, DelAddr, DelRoute, SetNetem, SetRoute, SetSysctl};
use crate::plumbing::qdisc::RootObs;
use crate::plumbing::{Link, NodeObs};
use crate::rate::Shape;
use crate::resources::{LinkKind, Node, Place, RouteSpec};

/// Kernel-made IPv6 link-local addresses (fe80::/10) follow the link, not the file — unless
/// the plan itself wants one (an IPv6 bridge's).
fn kernel_made(net: &IpNetwork) -> bool {
    matches!(net, IpNetwork::V6(n) if n.ip().segments()[0] & 0xffc0 == 0xfe80)
}

/// One namespace as the diff sees it: the place, what is wanted there and what is.
struct Here<'x> {
    place: &'x Place,
    want: &'x Node,
    have: &'x NodeObs,
    /// The namespace is made in this run: nothing in it is there yet.
    fresh_ns: bool,
    /// Links made in this run: they hold nothing yet, their addresses and routes are all to
    /// add.
    fresh: BTreeSet<&'x str>,
    /// `have`'s links by name and by index, where there are many: the host's are looked up
    /// once per link the file names there, and at 1,000 namespaces a scan of its 1,000 links
    /// for each was a tenth of a run's CPU. A namespace's handful are scanned (maps built for
    /// each of 1,000 namespaces cost more than they save).
    index: Option<Index<'x>>,
}

/// Links by name and by index.
type Index<'x> = (HashMap<&'x str, &'x Link>, HashMap<u32, &'x Link>);

/// The number of links above which [`Here`] looks them up in maps.
const MANY: usize = 16;

impl<'x> Here<'x> {
    fn link(&self, name: &str) -> Option<&'x Link> {
        match &self.index {
            Some((by_name, _)) => by_name.get(name).copied(),
            None => self.have.link(name),
        }
    }

    fn by_index(&self, index: u32) -> Option<&'x Link> {
        match &self.index {
            Some((_, by_index)) => by_index.get(&index).copied(),
            None => self.have.by_index(index),
        }
    }

    fn name_of(&self, index: u32) -> Option<&'x str> {
        self.by_index(index).map(|l| l.name.as_str())
    }
}

pub(super) fn diff_node(cx: &mut Cx, place: &Place, want: &Node, have: Option<&NodeObs>) {
    let empty = NodeObs::default();
    let fresh_ns = place.ns().is_some_and(|n| cx.new_ns.contains(n));
    let have = if fresh_ns {
        &empty
    } else {
        have.unwrap_or(&empty)
    };
    let fresh: BTreeSet<&str> = want
        .links
        .keys()
        .map(String::as_str)
        .filter(|l| match place {
            Place::Host => cx.new_links.contains_key(*l),
            Place::Ns(ns) => {
                fresh_ns
                    || (!cx.new_pairs.is_empty()
                        && cx.new_pairs.contains(&(ns.clone(), l.to_string())))
            }
        })
        .collect();
    let here = Here {
        place,
        want,
        have,
        fresh_ns,
        fresh,
        index: (have.links.len() > MANY).then(|| {
            (
                have.links.iter().map(|l| (l.name.as_str(), l)).collect(),
                have.links.iter().map(|l| (l.index, l)).collect(),
            )
        }),
    };
    let mut brought_up: BTreeSet<String> = BTreeSet::new();
    if let Place::Ns(ns) = place {
        super::links::ns_links(cx, ns, want, have, &here.fresh, &mut brought_up);
    }
    let changed = addrs(cx, &here);
    // A route over a link whose addresses change, or that comes up, is put in place again.
    let again: BTreeSet<String> = changed.union(&brought_up).cloned().collect();
    routes(cx, &here, &again);
    shaping(cx, &here);
    sysctls(cx, &here);
}

/// Addresses, on the links the file names; the links whose addresses change.
fn addrs(cx: &mut Cx, h: &Here) -> BTreeSet<String> {
    let (want, have, place) = (h.want, h.have, h.place);
    // Borrowed: a namespace's addresses are compared without copying a name (at 1,000
    // namespaces, every copy is a thousand allocations a run).
    let wanted: BTreeSet<(&str, IpNetwork)> =
        want.addrs.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    let mut present: BTreeSet<(&str, IpNetwork)> = BTreeSet::new();
    for a in &have.addrs {
        let Some(name) = h.name_of(a.index) else {
            continue;
        };
        let ours = wanted.contains(&(name, a.net));
        // A port taken from another owner keeps its own addresses (see `ports`).
        let spec = want.links.get(name);
        let managed = spec.is_some_and(|s| !matches!(s.kind, LinkKind::Port { .. }));
        // A link made without link-local addressing has none: one the kernel gave it anyway
        // (a run killed before `addrgenmode none` reached it) goes.
        let no_ll = spec.is_some_and(|s| s.no_link_local);
        if managed && !h.fresh.contains(name) && (ours || no_ll || !kernel_made(&a.net)) {
            present.insert((name, a.net));
        }
    }
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for (ifname, net) in wanted.difference(&present) {
        changed.insert(ifname.to_string());
        cx.push(AddAddr {
            place: place.clone(),
            ifname: ifname.to_string(),
            net: *net,
            orig: None,
        });
    }
    for (ifname, net) in present.difference(&wanted) {
        changed.insert(ifname.to_string());
        cx.push(DelAddr {
            place: place.clone(),
            ifname: ifname.to_string(),
            net: *net,
        });
    }
    changed
}

/// Routes of the main table, by destination and metric. Inside nsfw's namespaces every route
/// is nsfw's to keep right; on the host only the ones the file names are looked at, and only
/// the ones nsfw made through links of this topology are its to remove (a `[host] routes`
/// entry taken out of the file). `again`: links under which a route is put in place again.
fn routes(cx: &mut Cx, h: &Here, again: &BTreeSet<String>) {
    let (want, have, place) = (h.want, h.have, h.place);
    let seen = seen_routes(h);
    for r in want.routes.values() {
        if in_the_way(cx, h, r) {
            continue;
        }
        let again = again.contains(&r.dev);
        match seen.get(&(r.dst, r.metric)) {
            Some(s) if s == r && !again => {}
            Some(s) if s == r => cx.push(SetRoute {
                place: place.clone(),
                route: r.clone(),
                old: None,
                again: true,
            }),
            other => cx.push(SetRoute {
                place: place.clone(),
                route: r.clone(),
                old: other.cloned(),
                again: false,
            }),
        }
    }
    let ours_on_host: BTreeSet<(IpNetwork, u32)> = have
        .routes
        .iter()
        .filter(|r| {
            r.ours
                && r.oif
                    .and_then(|i| h.by_index(i))
                    .is_some_and(|l| l.alias.as_deref() == Some(cx.d.mark.as_str()))
        })
        .map(|r| (r.dst, r.metric))
        .collect();
    let wanted: BTreeSet<(IpNetwork, u32)> =
        want.routes.values().map(|r| (r.dst, r.metric)).collect();
    for (key, s) in &seen {
        if place.ns().is_none() && !ours_on_host.contains(key) {
            continue;
        }
        if !wanted.contains(key) && !kernel_made(&s.dst) {
            cx.push(DelRoute {
                place: place.clone(),
                route: s.clone(),
            });
        }
    }
}

/// On the host, another owner's route where the file wants one of nsfw's own (a port's route
/// taken over is the file's by `plan::ports`): one at the same destination and metric, over a
/// link that is not nsfw's, is left alone and this route left out (true), named; one with a
/// lower metric comes first and makes nsfw's unused, which is said.
fn in_the_way(cx: &mut Cx, h: &Here, r: &RouteSpec) -> bool {
    if h.place.ns().is_some() || r.orig.is_some() {
        return false;
    }
    let nsfws = |oif: Option<u32>| {
        oif.and_then(|i| h.by_index(i))
            .is_some_and(|l| l.alias.as_deref() == Some(cx.d.mark.as_str()))
    };
    let theirs = h
        .have
        .routes
        .iter()
        .filter(|o| !o.ours && !o.kernel && o.dst == r.dst && o.metric <= r.metric);
    let mut held = false;
    let mut notes: Vec<(bool, String)> = Vec::new();
    for o in theirs {
        let dev = o.oif.and_then(|i| h.name_of(i)).unwrap_or("no device");
        if o.metric == r.metric && !nsfws(o.oif) {
            held = true;
            notes.push((true, format!(
                "{}: host route {}: a route of someone else's holds it (dev {dev}, proto {}): left alone, so nsfw's ({r}) is not set (remove that route, and apply again)",
                cx.file(),
                r.dst,
                o.proto
            )));
        } else if o.metric < r.metric {
            notes.push((false, format!(
                "{}: host route {}: a route of someone else's comes first (dev {dev}, metric {}): nsfw's ({r}, metric {}) is in place but unused while it is there",
                cx.file(),
                r.dst,
                o.metric,
                r.metric
            )));
        }
    }
    for (skip, n) in notes {
        match skip {
            true => cx.skip(n),
            false => cx.plan.warnings.push(n),
        }
    }
    held
}

/// The routes there, but the kernel's own and those over links made in this run, by
/// destination and metric.
fn seen_routes(h: &Here) -> BTreeMap<(IpNetwork, u32), RouteSpec> {
    let have = h.have;
    let mut seen = BTreeMap::new();
    for r in have.routes.iter().filter(|r| !r.kernel) {
        let dev = r.oif.and_then(|i| h.name_of(i)).unwrap_or("?").to_string();
        if h.fresh.contains(dev.as_str()) {
            continue;
        }
        seen.insert(
            (r.dst, r.metric),
            RouteSpec {
                dst: r.dst,
                via: r.gateway,
                dev,
                metric: r.metric,
                kind: r.kind,
                src: r.prefsrc,
                orig: None,
            },
        );
    }
    seen
}

/// Impairments and rate limits: nsfw's qdiscs where the file says so, none elsewhere, on
/// every link nsfw configures here (not a physical port: its qdiscs are its owner's). A root
/// of someone else's is left alone, and only this step is left out.
fn shaping(cx: &mut Cx, h: &Here) {
    for (ifname, spec) in &h.want.links {
        if matches!(spec.kind, LinkKind::Port { .. }) {
            continue;
        }
        let want = Shape {
            netem: h.want.netem.get(ifname).copied().unwrap_or_default(),
            rate: h.want.rates.get(ifname).copied(),
        };
        let link = match h.fresh.contains(ifname.as_str()) {
            true => None,
            false => h.link(ifname),
        };
        let old = match link.and_then(|l| h.have.qdiscs.get(&l.index)) {
            None => None,
            Some(RootObs::Foreign(what)) => {
                if !want.is_empty() {
                    let link = h.place.link(ifname);
                    cx.skip(format!(
                        "{}: {link}: its root qdisc ({what}) is not nsfw's: left alone, so \
                         {want} is not set there (remove it, and apply again)",
                        cx.file()
                    ));
                }
                continue;
            }
            Some(RootObs::Under(what)) => {
                // Whatever the file says, nsfw's tree cannot change without theirs.
                let link = h.place.link(ifname);
                cx.skip(format!(
                    "{}: {link}: a qdisc under nsfw's ({what}) is not nsfw's: left alone, and \
                     nsfw's above it unchanged (the file wants {want}; remove it, and apply \
                     again)",
                    cx.file()
                ));
                continue;
            }
            Some(RootObs::Ours(s)) => Some(s.clone()),
        };
        let differs = match &old {
            None => !want.is_empty(),
            Some(Ok(s)) => *s != want.as_read(),
            Some(Err(_)) => true,
        };
        if differs {
            cx.push(SetNetem {
                place: h.place.clone(),
                ifname: ifname.clone(),
                shape: want,
                old,
            });
        }
    }
}

fn sysctls(cx: &mut Cx, h: &Here) {
    let made_here = links_made_here(cx, h.place);
    for (key, spec) in &h.want.sysctls {
        // A setting of a link made in this run starts from the kernel's default, whatever
        // the link it replaces had.
        let made = h.fresh_ns || names_one_of(key, &made_here);
        let now = match made {
            true => None,
            false => h.have.sysctls.get(key).and_then(Option::as_deref),
        };
        if now == Some(spec.value.as_str()) || (made && spec.fresh == Some(spec.value.as_str())) {
            continue;
        }
        if now.is_none() && !made && key.ends_with(".addr_gen_mode") {
            // No IPv6 on the link (or in the kernel): no link-local address to keep off.
            continue;
        }
        if now.is_none() && !made && key == crate::compile::BRNF {
            // No such setting: br_netfilter is not loaded.
            if spec.value == "1" {
                cx.conflict(format!(
                    "{}: host.br_netfilter = \"on\": the br_netfilter module is not loaded (no /proc/sys/net/bridge); load it first, nsfw does not load modules",
                    cx.d.source
                ));
            }
            continue;
        }
        cx.push(SetSysctl {
            place: h.place.clone(),
            key: key.clone(),
            old: now.map(str::to_string),
            new: spec.value.clone(),
            restore: false,
        });
    }
}

/// The links this run makes at `place`, as a sysctl key names them (`.` as `/`).
fn links_made_here(cx: &Cx, place: &Place) -> HashSet<String> {
    let slashed = |l: &String| l.replace('.', "/");
    match place {
        Place::Host => cx.new_links.keys().map(slashed).collect(),
        Place::Ns(ns) => cx
            .new_pairs
            .range((ns.clone(), String::new())..)
            .take_while(|(n, _)| n == ns)
            .map(|(_, l)| slashed(l))
            .collect(),
    }
}

/// Whether sysctl `key` is a setting of one of the links `made` (the link a per-interface key
/// names: `net.ipv6.conf.LINK.addr_gen_mode`). A set, not a scan of the links for each key: at
/// a cold apply of 1,000 namespaces the host has ~1,000 keys and ~1,000 new links.
fn names_one_of(key: &str, made: &HashSet<String>) -> bool {
    crate::plumbing::sysctl::per_interface(key).is_some_and(|(_, d, _)| made.contains(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_a_link_only_where_a_per_interface_key_names_one() {
        let made: HashSet<String> = ["eth0", "veth/1", "conf", "ipv6", "net"]
            .map(String::from)
            .into();
        assert!(names_one_of("net.ipv6.conf.eth0.addr_gen_mode", &made));
        // `veth.1` as a sysctl key names it.
        assert!(names_one_of(
            "net.ipv4.conf.veth/1.promote_secondaries",
            &made
        ));
        assert!(!names_one_of(
            "net.ipv4.conf.eth1.promote_secondaries",
            &made
        ));
        // A link called `conf` or `ipv6` is not every per-interface key's link.
        assert!(!names_one_of(
            "net.ipv4.conf.br0.promote_secondaries",
            &made
        ));
        assert!(!names_one_of("net.ipv6.conf.veth-a1.addr_gen_mode", &made));
        assert!(names_one_of("net.ipv6.conf.conf.addr_gen_mode", &made));
        assert!(!names_one_of("net.ipv4.ip_forward", &made));
        use crate::plumbing::sysctl::is_dev;
        assert!(is_dev("veth/1", "veth.1") && is_dev("br0", "br0"));
        assert!(!is_dev("br0", "br1") && !is_dev("br", "br0") && !is_dev("veth/1", "veth-1"));
        assert!(!names_one_of(
            "net.ipv6.conf.eth0.addr_gen_mode",
            &HashSet::new()
        ));
    }
}
