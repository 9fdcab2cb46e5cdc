//! The fake kernel's plumbing: links, addresses, routes, sysctls and resolv.conf files of the
//! host and its namespaces, as an observation holds them, changed step by step as the
//! executor would change the kernel.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use ipnetwork::IpNetwork;

use crate::kinds::{
    AddAddr, CreateBridge, CreateNamespace, CreateVeth, DelAddr, DelRoute, DeleteLink,
    DeleteNamespace, LinkAttr, MarkNamespace, RemoveResolv, SetLink, SetNetem, SetRoute, SetSysctl,
    Step, WriteResolv,
};
use crate::plumbing::qdisc::RootObs;
use crate::plumbing::{self, Addr, Link, NodeObs, NsObs, Query, Route};
use crate::resources::{AddrOrig, Place, RouteSpec};
use crate::topology::Mac;

const IFA_F_PERMANENT: u32 = 0x80;
const RTPROT_KERNEL: u8 = 2;
const RT_SCOPE_LINK: u8 = 253;
pub(crate) const BRNF: &str = crate::compile::BRNF;

fn lo(mark: Option<&str>) -> Link {
    Link {
        name: "lo".into(),
        mtu: 65536,
        alias: mark.map(str::to_string),
        ..Link::bare(1, true, false)
    }
}

/// The plumbing as the kernel holds it: every namespace whole, every sysctl set (the ones
/// never set read as the kernel's defaults).
pub(crate) struct Net {
    pub(crate) o: plumbing::Observed,
    next_index: u32,
    /// A deleted namespace's veth pairs keep their host ends, as the kernel's do until it has
    /// torn the namespace down (or for good, while someone else's handle keeps it alive).
    pub(crate) lingering_peers: bool,
}

impl std::ops::Deref for Net {
    type Target = plumbing::Observed;
    fn deref(&self) -> &plumbing::Observed {
        &self.o
    }
}

impl std::ops::DerefMut for Net {
    fn deref_mut(&mut self) -> &mut plumbing::Observed {
        &mut self.o
    }
}

impl Net {
    /// A host with nothing but `lo`, br_netfilter loaded (bridge-nf-call-iptables 0).
    pub(crate) fn new() -> Net {
        let mut o = plumbing::Observed::default();
        o.host.links.push(lo(None));
        o.host.sysctls.insert(BRNF.into(), Some("0".into()));
        Net {
            o,
            next_index: 100,
            lingering_peers: false,
        }
    }

    /// A host sysctl as the kernel would read it.
    pub(crate) fn host_sysctl(&self, key: &str) -> Option<String> {
        read_sysctls(&self.o.host, &[key.to_string()])
            .remove(key)
            .flatten()
    }

    pub(crate) fn node_mut(&mut self, place: &Place) -> Result<&mut NodeObs> {
        match place {
            Place::Host => Ok(&mut self.o.host),
            Place::Ns(n) => self
                .o
                .namespaces
                .get_mut(n)
                .map(|ns| &mut ns.node)
                .ok_or_else(|| anyhow!("namespace {n}: no such namespace")),
        }
    }

    pub(crate) fn link_mut(&mut self, place: &Place, name: &str) -> Result<&mut Link> {
        self.node_mut(place)?
            .links
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| anyhow!("{}: no such device", place.link(name)))
    }

    fn index_of(&mut self, place: &Place, name: &str) -> Result<u32> {
        Ok(self.link_mut(place, name)?.index)
    }

    pub(super) fn new_index(&mut self) -> u32 {
        self.next_index += 1;
        self.next_index
    }

    /// The plumbing as `q` asks for it.
    pub(crate) fn view(&self, q: &Query) -> plumbing::Observed {
        let mut o = self.o.clone();
        o.host.sysctls = read_sysctls(&self.o.host, &q.host_sysctls);
        for (name, ns) in o.namespaces.iter_mut() {
            // What watch's memory vouches for is taken as it says (a fake namespace's inode
            // is 0), stale or not: the kernel is not read.
            let keys = (q.ns_sysctls)(name);
            let deep = |owner: Option<&str>| (q.deep)(name, owner);
            if let Some(v) = q.known.and_then(|k| k.vouch(name, 0, &deep, &keys)) {
                *ns = v;
                o.remembered.insert(name.clone());
                continue;
            }
            if (q.deep)(name, ns.owner.as_deref()) {
                ns.node.sysctls = read_sysctls(&ns.node, &(q.ns_sysctls)(name));
            } else {
                ns.node = NodeObs {
                    links: std::mem::take(&mut ns.node.links),
                    ..Default::default()
                };
            }
        }
        o
    }

    // house: dispatcher
    pub(crate) fn apply(&mut self, s: &Step, mark: &str) -> Result<()> {
        match s {
            Step::DeleteNamespace(DeleteNamespace { name, .. }) => self.delete_ns(name),
            Step::DeleteLink(DeleteLink { place, name, .. }) => self.delete_link(place, name),
            Step::RemoveResolv(RemoveResolv { ns }) => {
                self.o.resolv.remove(ns);
                self.o.etc_dirs.remove(ns);
                Ok(())
            }
            Step::CreateNamespace(CreateNamespace { name }) => self.create_ns(name, mark),
            Step::Adopt(crate::kinds::Adopt {
                what: crate::kinds::Adoptee::Link(name),
            }) => {
                let l = self
                    .o
                    .host
                    .links
                    .iter_mut()
                    .find(|l| &l.name == name)
                    .ok_or_else(|| anyhow!("{name}: no such link"))?;
                l.alias = Some(mark.to_string());
                Ok(())
            }
            Step::Adopt(crate::kinds::Adopt {
                what: crate::kinds::Adoptee::Namespace(name),
            })
            | Step::MarkNamespace(MarkNamespace { name }) => {
                let ns = self
                    .o
                    .namespaces
                    .get_mut(name)
                    .ok_or_else(|| anyhow!("namespace {name}: no such namespace"))?;
                ns.owner = Some(mark.to_string());
                let l = lo(Some(mark));
                match ns.node.links.iter_mut().find(|l| l.name == "lo") {
                    Some(have) => {
                        *have = Link {
                            index: have.index,
                            ..l
                        }
                    }
                    None => ns.node.links.push(l),
                }
                Ok(())
            }
            Step::CreateBridge(CreateBridge {
                name,
                mtu,
                mac,
                nf_call,
            }) => self.create_bridge(name, *mtu, *mac, *nf_call, mark),
            Step::CreateVeth(v) => self.create_veth(v, mark),
            Step::CreateMacvlan(m) => self.create_macvlan(m),
            Step::SetLink(SetLink { place, name, attrs }) => self.set_link(place, name, attrs),
            Step::AddAddr(AddAddr {
                place,
                ifname,
                net,
                orig,
            }) => self.add_addr(place, ifname, *net, orig.as_ref()),
            Step::DelAddr(DelAddr { place, ifname, net }) => self.del_addr(place, ifname, *net),
            Step::SetRoute(SetRoute { place, route, .. }) => self.set_route(place, route),
            Step::DelRoute(DelRoute { place, route }) => self.del_route(place, route),
            Step::SetSysctl(SetSysctl {
                place, key, new, ..
            }) => {
                super::ipv6off::set(self.node_mut(place)?, key, new);
                Ok(())
            }
            Step::WriteResolv(WriteResolv { ns, content }) => {
                let f = plumbing::FileObs::Text(content.clone());
                self.o.resolv.insert(ns.clone(), f);
                self.o.etc_dirs.insert(ns.clone());
                Ok(())
            }
            Step::ForgetNeighbours(_) | Step::Announce(_) => Ok(()),
            Step::CreateVxlan(v) => self.create_vxlan(v, mark),
            Step::AddFdb(f) => self.add_fdb(f),
            Step::DelFdb(f) => self.del_fdb(f),
            Step::SetNetem(SetNetem {
                place,
                ifname,
                shape,
                ..
            }) => {
                let l = self.link_mut(place, ifname)?;
                let index = l.index;
                let root = match (shape.netem.is_empty(), shape.rate.is_some()) {
                    (true, false) => "noqueue",
                    (true, true) => "tbf",
                    (false, _) => "netem",
                };
                l.qdisc = Some(root.into());
                let node = self.node_mut(place)?;
                match shape.is_empty() {
                    false => node
                        .qdiscs
                        .insert(index, RootObs::Ours(Ok(shape.as_read()))),
                    true => node.qdiscs.remove(&index),
                };
                Ok(())
            }
        }
    }

    fn create_ns(&mut self, name: &str, mark: &str) -> Result<()> {
        if self.o.namespaces.contains_key(name) {
            bail!("namespace {name}: File exists");
        }
        // A half-made one (a file that is no namespace) is what a re-creation replaces.
        self.o.unreachable.remove(name);
        let node = NodeObs {
            links: vec![lo(Some(mark))],
            ..Default::default()
        };
        let ns = NsObs {
            owner: Some(mark.to_string()),
            node,
            id: None,
        };
        self.o.namespaces.insert(name.to_string(), ns);
        Ok(())
    }

    /// A namespace goes with its links, and the host ends of the veth pairs into it.
    fn delete_ns(&mut self, name: &str) -> Result<()> {
        if self.o.unreachable.remove(name).is_some() {
            return Ok(());
        }
        let ns = self
            .o
            .namespaces
            .remove(name)
            .ok_or_else(|| anyhow!("namespace {name}: no such namespace"))?;
        let lingering = self.lingering_peers;
        for l in ns
            .node
            .links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("veth") && !lingering)
        {
            self.drop_peer(l);
        }
        Ok(())
    }

    fn delete_link(&mut self, place: &Place, name: &str) -> Result<()> {
        let node = self.node_mut(place)?;
        let at = node
            .links
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| anyhow!("{}: no such device", place.link(name)))?;
        let l = node.links.remove(at);
        forget_link(node, &l);
        if l.kind.as_deref() == Some("veth") {
            self.drop_peer(&l);
        }
        Ok(())
    }

    /// The other end of veth `l`, wherever it is (indexes are unique across the fake's
    /// namespaces, `lo` aside).
    fn drop_peer(&mut self, l: &Link) {
        let nodes = std::iter::once(&mut self.o.host)
            .chain(self.o.namespaces.values_mut().map(|n| &mut n.node));
        for node in nodes {
            let peer = node
                .links
                .iter()
                .position(|p| Some(p.index) == l.peer_index && p.peer_index == Some(l.index));
            if let Some(at) = peer {
                let p = node.links.remove(at);
                forget_link(node, &p);
            }
        }
    }

    fn create_bridge(
        &mut self,
        name: &str,
        mtu: u32,
        mac: Mac,
        nf_call: bool,
        mark: &str,
    ) -> Result<()> {
        if self.o.host.link(name).is_some() {
            bail!("{name}: File exists");
        }
        let l = Link {
            name: name.into(),
            kind: Some("bridge".into()),
            mtu,
            mac: Some(mac),
            alias: Some(mark.into()),
            nf_call,
            qdisc: Some("noqueue".into()),
            ..Link::bare(self.new_index(), true, false)
        };
        self.o.host.links.push(l);
        Ok(())
    }

    fn create_veth(&mut self, v: &CreateVeth, mark: &str) -> Result<()> {
        let CreateVeth {
            ns,
            host,
            peer,
            bridge,
            mtu,
            mac,
            host_mac,
            hairpin,
            no_link_local,
            isolated,
            ..
        } = v;
        if *no_link_local {
            let key = crate::compile::addr_gen_mode(host);
            self.o.host.sysctls.insert(key, Some("1".into()));
        }
        let master = match bridge.as_str() {
            "" => None,
            b => Some(self.index_of(&Place::Host, b)?),
        };
        let inside = Place::Ns(ns.clone());
        if self.o.host.link(host).is_some() || self.node_mut(&inside)?.link(peer).is_some() {
            bail!("{host} or {ns}:{peer}: File exists");
        }
        let (hi, pi) = (self.new_index(), self.new_index());
        let veth = |index: u32, peer: u32, name: &str, mac: Option<Mac>| Link {
            name: name.into(),
            kind: Some("veth".into()),
            mtu: *mtu,
            mac: Some(mac.unwrap_or(Mac([2, 0xfa, 0, 0, (index >> 8) as u8, index as u8]))),
            peer_index: Some(peer),
            qdisc: Some("noqueue".into()),
            ..Link::bare(index, true, false)
        };
        let h = Link {
            alias: Some(mark.into()),
            master,
            hairpin: *hairpin,
            isolated: *isolated,
            ..veth(hi, pi, host, *host_mac)
        };
        self.o.host.links.push(h);
        self.node_mut(&inside)?.links.push(veth(pi, hi, peer, *mac));
        Ok(())
    }

    /// A child of a host uplink, in its place (the shim, in the host, marked).
    fn create_macvlan(&mut self, m: &crate::kinds::CreateMacvlan) -> Result<()> {
        let Some(up) = self.o.host.link(&m.uplink).cloned() else {
            bail!("no interface {}", m.uplink);
        };
        if self.node_mut(&m.place)?.link(&m.name).is_some() {
            bail!("{}: File exists", m.place.link(&m.name));
        }
        let index = self.new_index();
        let l = Link {
            name: m.name.clone(),
            kind: Some(if m.tap { "macvtap" } else { "macvlan" }.into()),
            mtu: if m.mtu == 0 { up.mtu } else { m.mtu },
            mac: m.mac,
            peer_index: Some(up.index),
            macvlan_mode: Some(m.mode.number()),
            alias: Some(m.alias.clone()),
            qdisc: Some("noqueue".into()),
            ..Link::bare(index, true, false)
        };
        self.node_mut(&m.place)?.links.push(l);
        Ok(())
    }

    fn set_link(&mut self, place: &Place, name: &str, attrs: &[LinkAttr]) -> Result<()> {
        for a in attrs {
            let master = match a {
                LinkAttr::Master { new: Some(b), .. } => Some(self.index_of(place, b)?),
                _ => None,
            };
            let l = self.link_mut(place, name)?;
            match a {
                LinkAttr::Mtu { new, .. } => l.mtu = *new,
                LinkAttr::Mac { new, .. } => l.mac = Some(*new),
                LinkAttr::Up => l.up = true,
                LinkAttr::Down => l.up = false,
                LinkAttr::Arp => l.noarp = false,
                LinkAttr::NfCall { new } => l.nf_call = *new,
                LinkAttr::Hairpin { new } => l.hairpin = *new,
                LinkAttr::Isolated { new } => l.isolated = *new,
                LinkAttr::Master { .. } => l.master = master,
            }
        }
        Ok(())
    }

    fn add_addr(
        &mut self,
        place: &Place,
        ifname: &str,
        net: IpNetwork,
        orig: Option<&AddrOrig>,
    ) -> Result<()> {
        let index = self.index_of(place, ifname)?;
        let node = self.node_mut(place)?;
        if node.addrs.iter().any(|a| a.index == index && a.net == net) {
            bail!("{}: address {net}: File exists", place.link(ifname));
        }
        super::ipv6off::refuse(node, ifname, net)?;
        let ll = link_local(&net);
        node.addrs.push(Addr {
            index,
            net,
            flags: orig.map_or(IFA_F_PERMANENT, |o| o.flags),
            scope: orig.map_or(if ll { RT_SCOPE_LINK } else { 0 }, |o| o.scope),
            valid: orig.map_or(u32::MAX, |o| o.valid),
            preferred: orig.map_or(u32::MAX, |o| o.preferred),
            brd: orig.and_then(|o| o.brd),
            metric: orig.map_or(0, |o| o.metric),
        });
        let subnet = subnet(net);
        let has = |r: &Route| r.kernel && r.oif == Some(index) && r.dst == subnet;
        if !ll && subnet.prefix() < max_prefix(net) && !node.routes.iter().any(has) {
            node.routes.push(Route {
                dst: subnet,
                gateway: None,
                oif: Some(index),
                kernel: true,
                ours: false,
                metric: if net.is_ipv6() { 256 } else { 0 },
                kind: crate::resources::RTN_UNICAST,
                table: 254,
                proto: RTPROT_KERNEL,
                scope: if net.is_ipv6() { 0 } else { RT_SCOPE_LINK },
                flags: 0,
                prefsrc: (!net.is_ipv6()).then(|| net.ip()),
                metrics: [0; 18],
            });
        }
        Ok(())
    }

    fn del_addr(&mut self, place: &Place, ifname: &str, net: IpNetwork) -> Result<()> {
        let index = self.index_of(place, ifname)?;
        let node = self.node_mut(place)?;
        let before = node.addrs.len();
        node.addrs.retain(|a| !(a.index == index && a.net == net));
        if node.addrs.len() == before {
            bail!(
                "{}: address {net}: Cannot assign requested address",
                place.link(ifname)
            );
        }
        super::prefsrc::forget(node, index, net);
        // The subnet's route goes with the last address of the subnet on the link.
        let subnet = subnet(net);
        if !node
            .addrs
            .iter()
            .any(|a| a.index == index && self::subnet(a.net) == subnet)
        {
            node.routes
                .retain(|r| !(r.kernel && r.oif == Some(index) && r.dst == subnet));
        }
        Ok(())
    }

    fn set_route(&mut self, place: &Place, r: &RouteSpec) -> Result<()> {
        let oif = match r.kind {
            crate::resources::RTN_UNICAST => Some(self.index_of(place, &r.dev)?),
            _ => None,
        };
        let o = r.orig;
        let route = Route {
            dst: r.dst,
            gateway: r.via,
            oif,
            kernel: false,
            ours: o.is_none(),
            metric: r.metric,
            kind: r.kind,
            table: o.map_or(254, |o| o.table),
            proto: o.map_or(crate::resources::ROUTE_PROTO, |o| o.proto),
            scope: o.map_or(if r.via.is_some() { 0 } else { RT_SCOPE_LINK }, |o| o.scope),
            flags: o.map_or(0, |o| o.flags),
            prefsrc: r.src.or(o.and_then(|o| o.prefsrc)),
            metrics: o.map_or([0; 18], |o| o.metrics),
        };
        let node = self.node_mut(place)?;
        super::prefsrc::refuse(node, &route)?;
        // The kernel keys a route by table, destination and metric: a replacement.
        let same =
            |x: &Route| x.table == route.table && x.dst == route.dst && x.metric == route.metric;
        node.routes.retain(|x| !same(x));
        node.other_tables.retain(|x| !same(x));
        match route.table {
            254 => node.routes.push(route),
            _ => node.other_tables.push(route),
        }
        Ok(())
    }

    fn del_route(&mut self, place: &Place, r: &RouteSpec) -> Result<()> {
        let table = r.orig.map_or(254, |o| o.table);
        let node = self.node_mut(place)?;
        let same = |x: &Route| x.table == table && x.dst == r.dst && x.metric == r.metric;
        // A route already gone (with its link, deleted in the same run) is no error: the
        // request is sent so (`msgs::del_route`, ESRCH taken as done).
        node.routes.retain(|x| !same(x));
        node.other_tables.retain(|x| !same(x));
        Ok(())
    }
}

fn link_local(n: &IpNetwork) -> bool {
    matches!(n, IpNetwork::V6(a) if a.ip().is_unicast_link_local())
}

fn max_prefix(n: IpNetwork) -> u8 {
    if n.is_ipv6() { 128 } else { 32 }
}

fn subnet(n: IpNetwork) -> IpNetwork {
    IpNetwork::new(n.network(), n.prefix()).unwrap_or(n)
}

/// Whether sysctl `key` is one of interface `dev`'s (`net.ipv4.conf.DEV.leaf`).
fn of_link(key: &str, dev: &str) -> Option<bool> {
    let parts: Vec<&str> = key.split('.').collect();
    match parts[..] {
        ["net", _, "conf", d, _] => Some(d.replace('/', ".") == dev),
        _ => None,
    }
}

/// What goes with a link: its addresses and routes, its settings, its impairment; a
/// bridge's ports are let go.
fn forget_link(node: &mut NodeObs, l: &Link) {
    node.addrs.retain(|a| a.index != l.index);
    node.routes.retain(|r| r.oif != Some(l.index));
    node.other_tables.retain(|r| r.oif != Some(l.index));
    node.qdiscs.remove(&l.index);
    node.fdb.retain(|f| f.index != l.index);
    node.sysctls
        .retain(|k, _| of_link(k, &l.name) != Some(true));
    for p in node.links.iter_mut().filter(|p| p.master == Some(l.index)) {
        p.master = None;
    }
}

/// The sysctls `keys` of a namespace: what was set, or the kernel's default where the
/// setting exists (an interface's, once the interface is there).
fn read_sysctls(node: &NodeObs, keys: &[String]) -> BTreeMap<String, Option<String>> {
    let value = |k: &str| -> Option<String> {
        if let Some(v) = node.sysctls.get(k) {
            return v.clone();
        }
        let leaf = k.rsplit('.').next().unwrap_or_default();
        let dev = k.split('.').nth(3).unwrap_or_default().replace('/', ".");
        let exists = match of_link(k, &dev) {
            Some(_) => dev == "all" || dev == "default" || node.link(&dev).is_some(),
            None => k == crate::compile::IP_FORWARD,
        };
        exists.then(|| if leaf == "accept_ra" { "1" } else { "0" }.to_string())
    };
    keys.iter().map(|k| (k.clone(), value(k))).collect()
}
