//! A thin layer over `rtnetlink`: one connection per network namespace, dumps turned into
//! plain structs, and changes whose errors name the interface and namespace they concern.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{AsyncSocket, Socket, TokioSocket, protocols::NETLINK_ROUTE};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use super::netns;
use crate::topology::Mac;

/// `addrgenmode none`: no IPv6 link-local address on the veths nsfw makes. nsfw manages IPv4;
/// without this every new interface sends DAD, router solicitations and MLD reports that the
/// bridge floods to every other port, so bringing up N namespaces costs N² packet deliveries
/// (and kernel work under RTNL): apply of 4 × 250 namespaces cost 3.7 ms per namespace, against
/// 1.95 at 100; with addrgenmode none the cost per namespace stays flat.
pub fn no_ipv6_link_local() -> LinkAttribute {
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])])
}

/// A link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `bridge`, `veth`, ... (None for physical and loopback devices).
    pub kind: Option<String>,
    pub master: Option<u32>,
    pub mtu: u32,
    pub mac: Option<Mac>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    pub alias: Option<String>,
    /// For a veth: the peer's ifindex, in the peer's namespace.
    pub peer_index: Option<u32>,
    /// For a veth whose peer is in another namespace: that namespace's id as seen from here.
    pub peer_netnsid: Option<i32>,
}

/// An IPv4 address on a link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Addr {
    pub index: u32,
    pub net: Ipv4Network,
}

/// An IPv4 route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Network,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub kernel: bool,
}

/// A netlink connection to one network namespace.
pub struct Nl {
    handle: Handle,
    /// "host" or "namespace NAME": how errors name where they happened.
    pub place: String,
}

fn to_mac(b: &[u8]) -> Option<Mac> {
    <[u8; 6]>::try_from(b).ok().map(Mac)
}

impl Nl {
    /// A connection in the caller's own namespace (the host, for the main thread).
    pub fn host() -> Result<Nl> {
        let (conn, handle, _) =
            rtnetlink::new_connection().context("cannot open a netlink socket (are you root?)")?;
        tokio::spawn(conn);
        Ok(Nl {
            handle,
            place: "host".into(),
        })
    }

    /// A connection inside namespace `name`: the socket is opened by a thread inside it, and
    /// stays bound to that namespace wherever it is used from.
    pub fn in_ns(name: &str, fd: &OwnedFd) -> Result<Nl> {
        let what = format!("namespace {name} ({})", netns::path(name).display());
        let sock = netns::run_in(fd, &what, || {
            Socket::new(NETLINK_ROUTE).context("cannot open a netlink socket")
        })?;
        Self::from_socket(name, sock)
    }

    /// Wraps a socket already opened inside namespace `name`.
    pub fn from_socket(name: &str, sock: Socket) -> Result<Nl> {
        sock.set_non_blocking(true)
            .with_context(|| format!("namespace {name}: netlink socket"))?;
        let raw = sock.into_raw_fd();
        // SAFETY: `raw` was just released by an owned netlink socket; TokioSocket takes it over.
        let ts = unsafe { TokioSocket::from_raw_fd(raw) };
        debug_assert!(ts.socket_ref().as_raw_fd() == raw);
        let (conn, handle, _) = rtnetlink::from_socket(ts);
        tokio::spawn(conn);
        Ok(Nl {
            handle,
            place: format!("namespace {name}"),
        })
    }

    fn ctx(&self, what: &str) -> String {
        format!("{what} ({})", self.place)
    }

    pub async fn links(&self) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        // Statistics are the bulk of a link message and nsfw reads none of them.
        let mut s = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
            .execute();
        while let Some(m) = s
            .try_next()
            .await
            .with_context(|| self.ctx("cannot list interfaces"))?
        {
            out.push(parse_link(&m));
        }
        Ok(out)
    }

    /// The index of the link called `name`.
    pub async fn index_of(&self, name: &str) -> Result<u32> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(m.header.index),
            Ok(None) => Err(anyhow!("no interface {name} ({})", self.place)),
            Err(e) => Err(anyhow!(e)).with_context(|| self.ctx(&format!("no interface {name}"))),
        }
    }

    pub async fn addrs(&self) -> Result<Vec<Addr>> {
        let mut out = Vec::new();
        let mut s = self.handle.address().get().execute();
        while let Some(m) = s
            .try_next()
            .await
            .with_context(|| self.ctx("cannot list addresses"))?
        {
            if let Some(a) = parse_addr(&m) {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub async fn routes(&self) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut s = self.handle.route().get(msg).execute();
        while let Some(m) = s
            .try_next()
            .await
            .with_context(|| self.ctx("cannot list routes"))?
        {
            if let Some(r) = parse_route(&m) {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub async fn add_link(&self, what: &str, msg: LinkMessage) -> Result<()> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| self.ctx(what))
    }

    /// Creates a bridge, up, with its MTU, MAC and nsfw's alias.
    pub async fn add_bridge(&self, name: &str, mtu: u32, mac: Mac, alias: &str) -> Result<()> {
        let b = LinkBridge::new(name).mtu(mtu).address(mac.0.to_vec()).up();
        self.add_link(&format!("cannot create bridge {name}"), b.build())
            .await?;
        self.mark_new(name, LinkUnspec::new_with_name(name).alias(alias).build())
            .await
    }

    /// Creates a veth pair whose host end `host` joins bridge `master`, marked, and whose peer is
    /// born inside the namespace `peer_ns` as `peer`; both are left down. Neither can be created
    /// up: the kernel opens the peer before its other end exists (ENOTCONN), and addrgenmode
    /// can only be set by setlink, where it is applied after the link goes up — too late once
    /// the other end is up too, since the carrier comes on at once and a link-local address is
    /// made. So each end gets addrgenmode none while its peer is down, then goes up.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_veth(
        &self,
        host: &str,
        master: u32,
        mtu: u32,
        peer: &str,
        peer_ns: &OwnedFd,
        peer_mac: Mac,
        alias: &str,
    ) -> Result<()> {
        let p = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .address(peer_mac.0.to_vec())
            .setns_by_fd(peer_ns.as_raw_fd());
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_string())
            .mtu(mtu)
            .controller(master)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())))
            .build();
        self.add_link(&format!("cannot create veth {host} (peer {peer})"), msg)
            .await?;
        // Mark the host end (and give it addrgenmode none) while it is down; the caller brings
        // the peer up, then the host end (see `up_pair`).
        let mark = LinkUnspec::new_with_name(host)
            .alias(alias)
            .append_extra_attribute(no_ipv6_link_local())
            .build();
        self.mark_new(host, mark).await
    }

    /// Marks a link this run has just created; if that fails, deletes it again, since an
    /// unmarked link would look like somebody else's to the next run.
    async fn mark_new(&self, name: &str, msg: LinkMessage) -> Result<()> {
        if let Err(e) = self
            .set(&format!("cannot mark interface {name}"), msg)
            .await
        {
            if let Ok(i) = self.index_of(name).await {
                let _ = self.del_link(name, i).await;
            }
            return Err(e);
        }
        Ok(())
    }

    pub async fn set(&self, what: &str, msg: LinkMessage) -> Result<()> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .with_context(|| self.ctx(what))
    }

    pub async fn del_link(&self, name: &str, index: u32) -> Result<()> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            // Already gone (a veth goes with its peer): the goal is reached.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
            Err(e) => Err(anyhow!(e))
                .with_context(|| self.ctx(&format!("cannot delete interface {name}"))),
        }
    }

    pub async fn add_addr(&self, ifname: &str, index: u32, net: Ipv4Network) -> Result<()> {
        self.handle
            .address()
            .add(index, IpAddr::V4(net.ip()), net.prefix())
            .execute()
            .await
            .with_context(|| self.ctx(&format!("cannot add address {net} to {ifname}")))
    }

    pub async fn del_addr(&self, ifname: &str, index: u32, net: Ipv4Network) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = net.prefix();
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4(net.ip())));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(net.ip())));
        self.handle
            .address()
            .del(m)
            .execute()
            .await
            .with_context(|| self.ctx(&format!("cannot remove address {net} from {ifname}")))
    }

    pub async fn add_default_route(&self, gw: Ipv4Addr, oif: u32) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gw)
            .output_interface(oif)
            .build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .with_context(|| self.ctx(&format!("cannot add default route via {gw}")))
    }

    pub async fn add_route(&self, msg: RouteMessage, what: &str) -> Result<()> {
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .with_context(|| self.ctx(&format!("cannot add {what}")))
    }
}

/// What a blocking dump of one namespace found: its links, and (when asked) its IPv4
/// addresses and main-table routes.
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<Route>,
}

/// Dumps links, then — if `deep` says so for this namespace's owner mark — addresses and
/// routes, blocking, over a socket not yet handed to the async runtime. Used by the threads
/// that open namespaces, so that observing many namespaces runs on every core.
pub fn snapshot_blocking(
    sock: &Socket,
    place: &str,
    deep: &dyn Fn(Option<&str>) -> bool,
) -> Result<Snapshot> {
    let mut link_req = LinkMessage::default();
    link_req
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let mut links = Vec::new();
    for m in dump_blocking(
        sock,
        RouteNetlinkMessage::GetLink(link_req),
        place,
        "interfaces",
    )? {
        if let RouteNetlinkMessage::NewLink(l) = m {
            links.push(parse_link(&l));
        }
    }
    let owner = links
        .iter()
        .find(|l| l.name == "lo")
        .and_then(|l| l.alias.as_deref());
    let (mut addrs, mut routes) = (Vec::new(), Vec::new());
    if deep(owner) {
        let addr_req = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        for m in dump_blocking(sock, addr_req, place, "addresses")? {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                addrs.extend(parse_addr(&a));
            }
        }
        let route_req =
            RouteNetlinkMessage::GetRoute(RouteMessageBuilder::<Ipv4Addr>::new().build());
        for m in dump_blocking(sock, route_req, place, "routes")? {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                routes.extend(parse_route(&r));
            }
        }
    }
    Ok(Snapshot {
        links,
        addrs,
        routes,
    })
}

/// The message that brings a namespace's `lo` up with `mark` as its alias: the namespace's
/// ownership mark.
pub fn lo_mark(mark: &str) -> LinkMessage {
    LinkUnspec::new_with_name("lo").up().alias(mark).build()
}

/// `lo` up, with nsfw's alias on it (a namespace's mark), blocking: done by the thread that
/// has just made the namespace.
pub fn mark_lo_blocking(sock: &Socket, place: &str, mark: &str) -> Result<()> {
    use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    let ctx = || format!("cannot bring lo up ({place})");
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::SetLink(lo_mark(mark)));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.header.sequence_number = 1;
    req.finalize();
    let mut out = vec![0u8; req.buffer_len()];
    req.serialize(&mut out);
    sock.send_to(&out, &rtnetlink::sys::SocketAddr::new(0, 0), 0)
        .with_context(ctx)?;
    let mut buf = vec![0u64; 1024];
    // SAFETY: the Vec<u64> backs at least this many bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
    let n = sock.recv(&mut &mut bytes[..], 0).with_context(ctx)?;
    let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..n])
        .map_err(|e| anyhow!("{e}"))
        .with_context(ctx)?;
    match m.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(anyhow!("{e}")).with_context(ctx),
        NetlinkPayload::Error(_) => Ok(()),
        _ => bail!("{}: unexpected answer", ctx()),
    }
}

/// One dump request and its replies, blocking.
fn dump_blocking(
    sock: &Socket,
    req: RouteNetlinkMessage,
    place: &str,
    what: &str,
) -> Result<Vec<RouteNetlinkMessage>> {
    use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    let ctx = || format!("cannot list {what} ({place})");
    let mut msg = NetlinkMessage::from(req);
    msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut out = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut out);
    // Port 0: the kernel.
    let kernel = rtnetlink::sys::SocketAddr::new(0, 0);
    sock.send_to(&out, &kernel, 0).with_context(ctx)?;
    // Aligned for nlmsghdr; dump replies come in chunks far below this.
    let mut buf = vec![0u64; 8192];
    let mut found = Vec::new();
    loop {
        // SAFETY: the Vec<u64> backs at least this many bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
        let n = sock.recv(&mut &mut bytes[..], 0).with_context(ctx)?;
        let mut off = 0;
        while off < n {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[off..n])
                .map_err(|e| anyhow!("{e}"))
                .with_context(ctx)?;
            let len = m.header.length as usize;
            if len == 0 {
                bail!("{}: a zero-length netlink message", ctx());
            }
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(anyhow!("{}", e)).with_context(ctx);
                }
                NetlinkPayload::InnerMessage(inner) => found.push(inner),
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
}

fn parse_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        master: None,
        mtu: 0,
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
        alias: None,
        peer_index: None,
        peer_netnsid: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(b) => l.mac = to_mac(b),
            LinkAttribute::Controller(i) => l.master = Some(*i),
            LinkAttribute::IfAlias(s) => l.alias = Some(s.clone()),
            LinkAttribute::Link(i) => l.peer_index = Some(*i),
            LinkAttribute::LinkNetNsId(i) => l.peer_netnsid = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn parse_addr(m: &AddressMessage) -> Option<Addr> {
    if m.header.family != AddressFamily::Inet {
        return None;
    }
    let ip = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    })?;
    Some(Addr {
        index: m.header.index,
        net: Ipv4Network::new(ip, m.header.prefix_len).ok()?,
    })
}

fn parse_route(m: &RouteMessage) -> Option<Route> {
    if m.header.address_family != AddressFamily::Inet || m.header.kind != RouteType::Unicast {
        return None;
    }
    // Only the main table: local and broadcast routes live in the local table.
    let mut table = u32::from(m.header.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    if table != 254 {
        return None;
    }
    Some(Route {
        dst: Ipv4Network::new(dst, m.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        kernel: m.header.protocol == RouteProtocol::Kernel,
    })
}
