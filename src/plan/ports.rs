//! Physical ports (`ports = ["eth1"]` on a bridge): interfaces nsfw does not own, enslaved to
//! one of its bridges. A port with addresses or routes is refused (they would stop working)
//! unless the bridge says `take_addresses = true`: then they move to the bridge, the way
//! people do it by hand, and the write-ahead record keeps what was taken — every address with
//! its flags and lifetimes, every route through the port of every table with its protocol,
//! metric, scope and source (`kinds::port` reads them) — before anything changes, so that
//! letting the port go (it leaves the file, or flush, even after a crash) gives it back as it
//! was. The kernel drops a port's IPv4 routes with its last address, so the record is the
//! only copy. The kernel lets a bridge's ports go when the bridge is deleted; everything else
//! here is steps like any other.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::cx::Cx;
use crate::kinds::port::{addrs_of, has_addr, has_route, put_addr, put_route, routes_of};
use crate::kinds::{Announce, DelAddr, LinkAttr, SetLink, bridge};
use crate::plumbing::{Link, Observed};
use crate::resources::{LinkKind, Node, Place};
use crate::state::{KeptAddr, KeptRoute, Record, Taken};
use crate::topology::Mac;
use crate::topology::Topology;
use ipnetwork::IpNetwork;

/// What the file wants of a port.
#[derive(Clone)]
struct Want {
    bridge: String,
    take: bool,
    /// The bridge's MTU, and whether the file says it (the port is then set to it).
    mtu: u32,
    mtu_set: bool,
}

/// The ports the file wants.
type Wanted = BTreeMap<String, Want>;

impl<'a> Cx<'a> {
    /// The ports the file wants, with their bridge, `take_addresses` and MTU.
    fn wanted_ports(&self) -> Wanted {
        self.d
            .host
            .links
            .values()
            .filter_map(|s| match (&s.kind, &s.master) {
                (
                    LinkKind::Port {
                        take_addresses,
                        mtu_set,
                    },
                    Some(br),
                ) => Some((
                    s.name.clone(),
                    Want {
                        bridge: br.clone(),
                        take: *take_addresses,
                        mtu: s.mtu,
                        mtu_set: *mtu_set,
                    },
                )),
                _ => None,
            })
            .collect()
    }

    /// The host as the file wants it, plus the addresses bridges hold for the ports they took
    /// from (so that the diff keeps them on the bridge). The routes they hold are not nsfw's
    /// (they keep their own protocol): `ports` checks them.
    pub(super) fn with_taken(&self, rec: &Record) -> Node {
        let mut host = self.d.host.clone();
        let wanted = self.wanted_ports();
        let mut v6 = std::collections::BTreeSet::new();
        for (port, t) in &rec.taken {
            if t.topology != self.d.topology
                || wanted.get(port).map(|w| &w.bridge) != Some(&t.bridge)
            {
                continue;
            }
            for a in &t.addrs {
                host.addrs.insert((t.bridge.clone(), a.net));
            }
            if t.addrs.iter().any(|a| a.net.is_ipv6()) {
                v6.insert(t.bridge.clone());
            }
        }
        // A bridge taking a port's IPv6 addresses in this run.
        for (port, w) in &wanted {
            if w.take
                && let Some(l) = self.o.host.link(port)
                && addrs_of(&self.o.host, l.index)
                    .iter()
                    .any(|a| a.net.is_ipv6())
            {
                v6.insert(w.bridge.clone());
            }
        }
        // A bridge holding IPv6 addresses needs IPv6 on, as one with `address6` (compile):
        // switched off by hand, or by the host's `default` for a bridge made in this run, the
        // kernel refuses them.
        for br in v6 {
            host.sysctls.insert(
                crate::plumbing::sysctl::key_for("net.ipv6.conf", &br, "disable_ipv6"),
                crate::resources::SysctlSpec {
                    value: "0".into(),
                    restore: false,
                    fresh: None,
                },
            );
        }
        host
    }

    /// Enslaves the wanted ports (taking their addresses and routes where allowed), and lets
    /// go of the ports this run's owner took from and no longer wants, giving back what was
    /// taken.
    pub(super) fn ports(&mut self, rec: &Record) {
        let wanted = self.wanted_ports();
        let mut taken_now: BTreeMap<String, Taken> = BTreeMap::new();
        for (port, want) in &wanted {
            if let Some(t) = self.port(port, want, rec) {
                taken_now.insert(port.clone(), t);
            }
        }
        let given_back = self.give_back(rec, &wanted);
        let (during, after) = (&mut self.plan.record_during, &mut self.plan.record_after);
        for (p, t) in taken_now {
            during.taken.insert(p.clone(), t.clone());
            after.taken.insert(p, t);
        }
        for p in given_back {
            after.taken.remove(&p);
        }
    }

    /// One wanted port: enslaved (what it carries taken when the bridge says
    /// `take_addresses`, its MTU set to the bridge's), kept as it is, or a conflict. What this
    /// run takes from it.
    fn port(&mut self, port: &str, want: &Want, rec: &Record) -> Option<Taken> {
        let (br, take) = (want.bridge.as_str(), want.take);
        let o = self.o;
        let key = format!("{}: bridges.{br}.ports", self.file());
        let l = self.takeable(&key, port)?;
        let ours = o
            .host
            .link(br)
            .filter(|b| b.alias.as_deref() == Some(self.d.mark.as_str()))
            .map(|b| b.index);
        if let (Some(m), Some(bi)) = (l.master, ours)
            && m == bi
        {
            return self.held(port, want, l, bi, rec);
        }
        if let Some(m) = l.master {
            let other = o.host.name_of(m).unwrap_or("another bridge");
            self.conflict(format!(
                "{key}: {port} is already a port of {other}; release it first"
            ));
            return None;
        }
        let addrs = addrs_of(&o.host, l.index);
        let routes = routes_of(&o.host, l.index);
        if (!addrs.is_empty() || !routes.is_empty()) && !take {
            self.refuse(&key, port, br, &addrs, &routes);
            return None;
        }
        if !self.mtu_fits(&key, port, l, want) || !self.v6_fits(&key, port, want, &addrs, &routes) {
            return None;
        }
        // The MTU first: the port joins the bridge already at the segment's MTU.
        let mut attrs = mtu_attr(l, want.mtu);
        attrs.push(LinkAttr::Master {
            old: None,
            new: Some(br.to_string()),
        });
        if !l.up {
            attrs.push(LinkAttr::Up);
        }
        self.push(SetLink {
            place: Place::Host,
            name: port.to_string(),
            attrs,
        });
        let mtu = (l.mtu != want.mtu).then_some(l.mtu);
        if addrs.is_empty() && routes.is_empty() && mtu.is_none() && l.up {
            return None;
        }
        self.take(port, br, &addrs, &routes);
        Some(Taken {
            topology: self.d.topology.clone(),
            bridge: br.to_string(),
            addrs,
            routes,
            mtu,
            down: !l.up,
        })
    }

    /// A port the bridge holds already: the segment's MTU changed in the file, or someone
    /// changed the port's since (a mixed segment loses full-size frames): set. The MTU it had
    /// before nsfw first changed it is what it gets back (what this run takes, if that is
    /// now). What was taken from it stays on the bridge.
    fn held(&mut self, port: &str, want: &Want, l: &Link, bi: u32, rec: &Record) -> Option<Taken> {
        let br = want.bridge.as_str();
        let key = format!("{}: bridges.{br}.ports", self.file());
        let none = Taken::default();
        let t = rec.taken.get(port).unwrap_or(&none);
        if !self.mtu_in_range(&key, port, l, want)
            || !self.v6_fits(&key, port, want, &t.addrs, &t.routes)
        {
            return None;
        }
        let mut attrs = mtu_attr(l, want.mtu);
        let first_change = !attrs.is_empty() && rec.taken.get(port).and_then(|t| t.mtu).is_none();
        if !l.up {
            attrs.push(LinkAttr::Up);
        }
        if !attrs.is_empty() {
            self.push(SetLink {
                place: Place::Host,
                name: port.to_string(),
                attrs,
            });
        }
        if let Some(t) = rec.taken.get(port) {
            self.keep_taken(port, br, l.index, bi, t);
        }
        first_change.then(|| Taken {
            mtu: Some(l.mtu),
            ..rec.taken.get(port).cloned().unwrap_or_else(|| Taken {
                topology: self.d.topology.clone(),
                bridge: br.to_string(),
                ..Taken::default()
            })
        })
    }

    /// Whether port `l` may be set to the segment's MTU: the file says it (else one of
    /// another MTU is refused: which of the two was meant is not guessed), and its driver
    /// takes it (else the kernel would refuse it half-way through the run). A conflict if not.
    fn mtu_fits(&mut self, key: &str, port: &str, l: &Link, want: &Want) -> bool {
        let br = want.bridge.as_str();
        if l.mtu != want.mtu && !want.mtu_set {
            self.conflict(format!(
                "{key}: {port} has MTU {} and bridge {br} {} (the default: [bridges.{br}] has no `mtu`); one MTU per L2 segment, or full-size frames are lost. Set mtu = {} on [bridges.{br}] to run the segment at the port's MTU (the namespaces on it take it too), or the MTU every port should be set to",
                l.mtu, want.mtu, l.mtu
            ));
            return false;
        }
        self.mtu_in_range(key, port, l, want)
    }

    /// Whether port `l`'s driver takes the segment's MTU (IFLA_MIN_MTU, IFLA_MAX_MTU): else
    /// the kernel would refuse it half-way through the run. A conflict if not.
    fn mtu_in_range(&mut self, key: &str, port: &str, l: &Link, want: &Want) -> bool {
        if let (Some(lo), Some(hi)) = l.mtu_range
            && (want.mtu < lo || (hi > 0 && want.mtu > hi))
        {
            self.conflict(format!(
                "{key}: {port} takes an MTU of {lo}-{hi} (its driver says), not the {} of [bridges.{}]; set mtu within that range",
                want.mtu, want.bridge
            ));
            return false;
        }
        true
    }

    /// Whether what is taken from `port` can live on a bridge of the segment's MTU: below
    /// 1280 the kernel has no IPv6 on a link, so its IPv6 addresses and routes would be lost
    /// half-way through the run (the port is enslaved at that MTU first). A conflict if not.
    fn v6_fits(
        &mut self,
        key: &str,
        port: &str,
        want: &Want,
        addrs: &[KeptAddr],
        routes: &[KeptRoute],
    ) -> bool {
        if want.mtu >= 1280 || !want.take {
            return true;
        }
        let v6: Vec<String> = addrs
            .iter()
            .map(|a| a.net)
            .chain(routes.iter().map(|r| r.dst))
            .filter(IpNetwork::is_ipv6)
            .map(|n| n.to_string())
            .collect();
        if v6.is_empty() {
            return true;
        }
        self.conflict(format!(
            "{key}: {port} carries IPv6 ({}), and bridge {} with mtu = {} cannot: the kernel has no IPv6 on a link below MTU 1280. Set mtu >= 1280 on [bridges.{}], or remove the IPv6 addresses and routes from {port}",
            v6.join(", "),
            want.bridge,
            want.mtu,
            want.bridge
        ));
        false
    }

    /// The host's interface `port`, if it may be a port at all: there, no bridge and none of
    /// nsfw's own (a conflict otherwise).
    fn takeable(&mut self, key: &str, port: &str) -> Option<&'a Link> {
        let Some(l) = self.host_link(port) else {
            self.conflict(format!("{key}: there is no interface {port} on the host"));
            return None;
        };
        if l.alias
            .as_deref()
            .and_then(crate::owner::topology_of)
            .is_some()
            || bridge::is(l)
        {
            self.conflict(format!(
                "{key}: {port} is a bridge or one of nsfw's own interfaces, not a port to take"
            ));
            return None;
        }
        Some(l)
    }

    /// A port that carries addresses or routes, and no `take_addresses`: a conflict naming
    /// them.
    fn refuse(
        &mut self,
        key: &str,
        port: &str,
        br: &str,
        addrs: &[KeptAddr],
        routes: &[KeptRoute],
    ) {
        let mut what: Vec<String> = addrs.iter().map(|a| a.net.to_string()).collect();
        if let Some(g) = routes
            .iter()
            .find(|r| r.dst.prefix() == 0)
            .and_then(|r| r.gateway)
        {
            what.push(format!("the default route via {g}"));
        }
        let others = routes.iter().filter(|r| r.dst.prefix() != 0).count();
        if others > 0 {
            what.push(format!("{others} other route(s)"));
        }
        self.conflict(format!(
            "{key}: {port} carries {}: as a bridge port they would stop working. Remove them, or set take_addresses = true on [bridges.{br}] to move them to the bridge while it holds the port",
            what.join(", ")
        ));
    }

    /// What `port` carries moves to bridge `br`: each address added to the bridge in the
    /// host build and removed from the port in the host finish, before the routes go to the
    /// bridge.
    fn take(&mut self, port: &str, br: &str, addrs: &[KeptAddr], routes: &[KeptRoute]) {
        let mac = self.d.host.links.get(br).and_then(|l| l.mac);
        for a in addrs {
            self.push(put_addr(br, a));
            self.announce(br, a.net, mac);
            self.push(DelAddr {
                place: Place::Host,
                ifname: port.to_string(),
                net: a.net,
            });
        }
        for r in routes {
            self.push(put_route(r, br));
        }
    }

    /// Given back: ports this owner took from that the file no longer holds on that bridge,
    /// what is missing of what was taken put back. The ports given back.
    fn give_back(&mut self, rec: &Record, wanted: &Wanted) -> Vec<String> {
        let o = self.o;
        let mut given_back = Vec::new();
        for (port, t) in &rec.taken {
            if !self.who.owns_topology(&t.topology)
                || wanted.get(port).map(|w| &w.bridge) == Some(&t.bridge)
            {
                continue;
            }
            given_back.push(port.clone());
            let Some(l) = o.host.link(port) else {
                continue; // gone: nothing to give back to
            };
            for a in &t.addrs {
                if !has_addr(&o.host, l.index, a.net) {
                    self.push(put_addr(port, a));
                    self.announce(port, a.net, l.mac);
                }
            }
            for r in &t.routes {
                if !has_route(&o.host, l.index, r) {
                    self.push(put_route(r, port));
                }
            }
            let mut attrs = t.mtu.map(|m| mtu_attr(l, m)).unwrap_or_default();
            if t.down && l.up {
                attrs.push(LinkAttr::Down);
            }
            {
                if !attrs.is_empty() {
                    self.push(SetLink {
                        place: Place::Host,
                        name: port.clone(),
                        attrs,
                    });
                }
            }
        }
        given_back
    }

    /// Address `net` announced on `ifname` (at `mac`) once it is there: it moved.
    fn announce(&mut self, ifname: &str, net: IpNetwork, mac: Option<Mac>) {
        if let Some(mac) = mac {
            self.push(Announce {
                place: Place::Host,
                ifname: ifname.to_string(),
                port: None,
                net,
                mac,
            });
        }
    }

    /// A port the bridge holds: what was taken from it stays on the bridge. A run killed
    /// half-way may have left an address on the port too (the port's goes: the subnet is the
    /// bridge's now), or a route not yet on the bridge; someone may have deleted one since.
    fn keep_taken(&mut self, port: &str, br: &str, port_ix: u32, br_ix: u32, t: &Taken) {
        if t.topology != self.d.topology || t.bridge != br {
            return;
        }
        let o = self.o;
        for a in &t.addrs {
            if has_addr(&o.host, port_ix, a.net) {
                self.push(DelAddr {
                    place: Place::Host,
                    ifname: port.to_string(),
                    net: a.net,
                });
            }
        }
        for r in &t.routes {
            if !has_route(&o.host, br_ix, r) {
                self.push(put_route(r, br));
            }
        }
    }
}

/// The MTU change that brings link `l` to `mtu`, if any.
fn mtu_attr(l: &Link, mtu: u32) -> Vec<LinkAttr> {
    if l.mtu == mtu {
        return Vec::new();
    }
    vec![LinkAttr::Mtu {
        old: l.mtu,
        new: mtu,
    }]
}

/// `t` with each bridge's `lan` filled: for each port it takes addresses from, the networks
/// of what the port carries now (a first apply: the firewall goes in before the port is
/// taken) and of what the record says was taken from it (held by the bridge meanwhile) —
/// only what really is the LAN behind the port (`kinds::port::networks`), and nothing that
/// overlaps what a bridge sends (the LAN must not vouch for the namespaces' addresses, nor
/// open them to the world: `firewall::lan`). With a warning for each network left out.
pub(crate) fn with_lan<'t>(
    t: &'t Topology,
    o: &Observed,
    rec: &Record,
) -> (Cow<'t, Topology>, Vec<String>) {
    if !t.bridges.iter().any(|b| b.take_addresses) {
        return (Cow::Borrowed(t), Vec::new()); // no copy of a file of 100k allows for nothing
    }
    let mut warnings = Vec::new();
    let mut lans = BTreeMap::new();
    for b in t.bridges.iter().filter(|b| b.take_addresses) {
        let others: Vec<IpNetwork> = t
            .bridges
            .iter()
            .flat_map(|x| [t.sources_via(&x.name, false), t.sources_via(&x.name, true)])
            .flatten()
            .collect();
        let mut lan = Vec::new();
        let mut left = Vec::new();
        for p in &b.ports {
            let mut addrs = Vec::new();
            let mut routes = Vec::new();
            if let Some(l) = o.host.link(p) {
                addrs = addrs_of(&o.host, l.index);
                routes = routes_of(&o.host, l.index);
            }
            if let Some(k) = rec.taken.get(p).filter(|k| k.bridge == b.name) {
                addrs.extend(k.addrs.iter().copied());
                routes.extend(k.routes.iter().copied());
            }
            let (trusted, out) = crate::kinds::port::networks(&addrs, &routes);
            left.extend(out);
            for n in trusted {
                match others
                    .iter()
                    .find(|x| x.contains(n.ip()) || n.contains(x.ip()))
                {
                    Some(x) => left.push(format!("{n} (overlaps {x}, the topology's own)")),
                    None => lan.push(n),
                }
            }
        }
        lan.sort();
        lan.dedup();
        left.sort();
        left.dedup();
        if !left.is_empty() {
            warnings.push(format!(
                "[bridges.{}] take_addresses: not trusted as sources of the LAN behind {}: {} (anti-spoofing drops them from {}; only connected subnets and main-table routes via a next hop on the port, no broader than /8, are the LAN)",
                b.name,
                b.ports.join(", "),
                left.join(", "),
                b.name
            ));
        }
        lans.insert(b.name.clone(), lan);
    }
    let mut t = t.clone();
    for b in t.bridges.iter_mut() {
        if let Some(lan) = lans.remove(&b.name) {
            b.lan = lan;
        }
    }
    (Cow::Owned(t), warnings)
}
