//! What the kernel can load into a register, one table per kind: header fields (payload),
//! meta keys and conntrack keys, with their kernel numbers, `nft` names and datatypes. Encoding,
//! decoding and rendering all read these tables.

use super::types::Datatype;

/// Where a header field is read from (enum nft_payload_bases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderBase {
    Link = 0,
    Network = 1,
    Transport = 2,
}

/// The protocol a header field belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Ether,
    Ip,
    Ip6,
    Tcp,
    Udp,
    /// Any transport header with ports at the usual offsets (`th dport`).
    Th,
    Icmp,
    Icmpv6,
    /// ARP over Ethernet, IPv4 (a bridge table's frames).
    Arp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Ether => "ether",
            Proto::Ip => "ip",
            Proto::Ip6 => "ip6",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Th => "th",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "icmpv6",
            Proto::Arp => "arp",
        }
    }
    /// The IP protocol number of a transport protocol.
    pub fn l4(self) -> Option<u8> {
        match self {
            Proto::Tcp => Some(6),
            Proto::Udp => Some(17),
            Proto::Icmp => Some(1),
            Proto::Icmpv6 => Some(58),
            _ => None,
        }
    }
    /// The network protocol a protocol can only travel over (NFPROTO_IPV4 / _IPV6).
    pub fn network(self) -> Option<u8> {
        match self {
            Proto::Ip | Proto::Icmp => Some(NFPROTO_IPV4),
            Proto::Ip6 | Proto::Icmpv6 => Some(NFPROTO_IPV6),
            Proto::Arp => Some(NFPROTO_ARP),
            _ => None,
        }
    }
}

pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;
pub const NFPROTO_ARP: u8 = 3;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ARPHRD_ETHER: u16 = 1;

/// A header field nsfw matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    EtherDaddr,
    EtherSaddr,
    EtherType,
    IpProtocol,
    IpSaddr,
    IpDaddr,
    Ip6Nexthdr,
    Ip6Saddr,
    Ip6Daddr,
    TcpSport,
    TcpDport,
    UdpSport,
    UdpDport,
    ThSport,
    ThDport,
    IcmpType,
    Icmpv6Type,
    /// The target address of a neighbour solicitation or advertisement (`icmpv6 taddr`).
    Icmpv6Taddr,
    /// The first option of a neighbour solicitation or advertisement: its type and length
    /// bytes (`@th,192,16`), and the link-layer address it carries (`@th,208,48`). `nft` has
    /// no name for them; they render as the raw loads it lists.
    Icmpv6NdOpt,
    Icmpv6NdOptLladdr,
    /// The same for a router solicitation, whose options start at offset 8.
    Icmpv6RsOpt,
    Icmpv6RsOptLladdr,
    /// The sender's hardware and protocol address of an ARP packet (`arp saddr ether`,
    /// `arp saddr ip`).
    ArpSaddrEther,
    ArpSaddrIp,
    /// A VXLAN header's VNI, after the 8-byte UDP header and 4 bytes of flags (`@th,96,24`).
    /// `nft` has no name for it either.
    VxlanVni,
    /// The next-header byte of an IPv6 packet's first extension header (`@nh,320,8`): after
    /// `ip6 nexthdr ipv6-frag` or `hop-by-hop`, what the fragment or hop-by-hop header says
    /// comes next. `nft` names it only as an `exthdr`, which this crate does not speak.
    Ip6Ext0Nexthdr,
    /// Bytes 2–3 of that header (`@nh,336,16`): in a fragment header, the offset (top 13
    /// bits) and the flags. Below 8: the first fragment.
    Ip6FragOffFlags,
}

/// (field, protocol, name, base, offset, length, datatype), from nftables' proto.c templates.
type FieldDesc = (Field, Proto, &'static str, HeaderBase, u32, u32, Datatype);

pub const FIELDS: &[FieldDesc] = &[
    (
        Field::EtherDaddr,
        Proto::Ether,
        "daddr",
        HeaderBase::Link,
        0,
        6,
        Datatype::EtherAddr,
    ),
    (
        Field::EtherSaddr,
        Proto::Ether,
        "saddr",
        HeaderBase::Link,
        6,
        6,
        Datatype::EtherAddr,
    ),
    (
        Field::EtherType,
        Proto::Ether,
        "type",
        HeaderBase::Link,
        12,
        2,
        Datatype::EtherType,
    ),
    (
        Field::IpProtocol,
        Proto::Ip,
        "protocol",
        HeaderBase::Network,
        9,
        1,
        Datatype::InetProto,
    ),
    (
        Field::IpSaddr,
        Proto::Ip,
        "saddr",
        HeaderBase::Network,
        12,
        4,
        Datatype::Ipv4Addr,
    ),
    (
        Field::IpDaddr,
        Proto::Ip,
        "daddr",
        HeaderBase::Network,
        16,
        4,
        Datatype::Ipv4Addr,
    ),
    (
        Field::Ip6Nexthdr,
        Proto::Ip6,
        "nexthdr",
        HeaderBase::Network,
        6,
        1,
        Datatype::InetProto,
    ),
    (
        Field::Ip6Saddr,
        Proto::Ip6,
        "saddr",
        HeaderBase::Network,
        8,
        16,
        Datatype::Ipv6Addr,
    ),
    (
        Field::Ip6Daddr,
        Proto::Ip6,
        "daddr",
        HeaderBase::Network,
        24,
        16,
        Datatype::Ipv6Addr,
    ),
    (
        Field::TcpSport,
        Proto::Tcp,
        "sport",
        HeaderBase::Transport,
        0,
        2,
        Datatype::InetService,
    ),
    (
        Field::TcpDport,
        Proto::Tcp,
        "dport",
        HeaderBase::Transport,
        2,
        2,
        Datatype::InetService,
    ),
    (
        Field::UdpSport,
        Proto::Udp,
        "sport",
        HeaderBase::Transport,
        0,
        2,
        Datatype::InetService,
    ),
    (
        Field::UdpDport,
        Proto::Udp,
        "dport",
        HeaderBase::Transport,
        2,
        2,
        Datatype::InetService,
    ),
    (
        Field::ThSport,
        Proto::Th,
        "sport",
        HeaderBase::Transport,
        0,
        2,
        Datatype::InetService,
    ),
    (
        Field::ThDport,
        Proto::Th,
        "dport",
        HeaderBase::Transport,
        2,
        2,
        Datatype::InetService,
    ),
    (
        Field::IcmpType,
        Proto::Icmp,
        "type",
        HeaderBase::Transport,
        0,
        1,
        Datatype::IcmpType,
    ),
    (
        Field::Icmpv6Type,
        Proto::Icmpv6,
        "type",
        HeaderBase::Transport,
        0,
        1,
        Datatype::Icmpv6Type,
    ),
    // Before `taddr`: a 2-byte load at offset 8 is the router solicitation's option, not a
    // prefix of the target address (which nsfw never loads in part).
    (
        Field::Icmpv6RsOpt,
        Proto::Icmpv6,
        "@th,64,16",
        HeaderBase::Transport,
        8,
        2,
        Datatype::Bits16,
    ),
    (
        Field::Icmpv6RsOptLladdr,
        Proto::Icmpv6,
        "@th,80,48",
        HeaderBase::Transport,
        10,
        6,
        Datatype::EtherAddr,
    ),
    (
        Field::VxlanVni,
        Proto::Udp,
        "@th,96,24",
        HeaderBase::Transport,
        12,
        3,
        Datatype::Bits24,
    ),
    (
        Field::Ip6Ext0Nexthdr,
        Proto::Ip6,
        "@nh,320,8",
        HeaderBase::Network,
        40,
        1,
        Datatype::InetProto,
    ),
    (
        Field::Ip6FragOffFlags,
        Proto::Ip6,
        "@nh,336,16",
        HeaderBase::Network,
        42,
        2,
        Datatype::Bits16,
    ),
    (
        Field::Icmpv6NdOpt,
        Proto::Icmpv6,
        "@th,192,16",
        HeaderBase::Transport,
        24,
        2,
        Datatype::Bits16,
    ),
    (
        Field::Icmpv6NdOptLladdr,
        Proto::Icmpv6,
        "@th,208,48",
        HeaderBase::Transport,
        26,
        6,
        Datatype::EtherAddr,
    ),
    (
        Field::Icmpv6Taddr,
        Proto::Icmpv6,
        "taddr",
        HeaderBase::Transport,
        8,
        16,
        Datatype::Ipv6Addr,
    ),
    (
        Field::ArpSaddrEther,
        Proto::Arp,
        "saddr ether",
        HeaderBase::Network,
        8,
        6,
        Datatype::EtherAddr,
    ),
    (
        Field::ArpSaddrIp,
        Proto::Arp,
        "saddr ip",
        HeaderBase::Network,
        14,
        4,
        Datatype::Ipv4Addr,
    ),
];

impl Field {
    fn desc(self) -> &'static FieldDesc {
        FIELDS.iter().find(|d| d.0 == self).unwrap_or(&FIELDS[0])
    }
    pub fn proto(self) -> Proto {
        self.desc().1
    }
    pub fn name(self) -> &'static str {
        self.desc().2
    }
    pub fn base(self) -> HeaderBase {
        self.desc().3
    }
    pub fn offset(self) -> u32 {
        self.desc().4
    }
    /// Length in bytes.
    pub fn size(self) -> u32 {
        self.desc().5
    }
    pub fn datatype(self) -> Datatype {
        self.desc().6
    }
    /// The field of `proto` at (base, offset) whose bytes start there and are at least `len`
    /// long: a shorter load is a prefix match on the field.
    pub fn at(proto: Proto, base: HeaderBase, offset: u32, len: u32) -> Option<Field> {
        FIELDS
            .iter()
            .find(|d| d.1 == proto && d.3 == base && d.4 == offset && len <= d.5)
            .map(|d| d.0)
    }
}

/// Meta keys (enum nft_meta_keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaKey {
    Protocol,
    Mark,
    Iif,
    Oif,
    Iifname,
    Oifname,
    Iiftype,
    Nfproto,
    L4proto,
    Ibrname,
    Obrname,
    Pkttype,
    /// The packet's trace flag: set, the kernel reports every chain and rule it meets.
    Nftrace,
}

/// (key, kernel number, name, datatype, printed without `meta`?)
type MetaDesc = (MetaKey, u32, &'static str, Datatype, bool);

pub const META_KEYS: &[MetaDesc] = &[
    (MetaKey::Protocol, 1, "protocol", Datatype::EtherType, false),
    (MetaKey::Mark, 3, "mark", Datatype::Mark, false),
    (MetaKey::Iif, 4, "iif", Datatype::Ifindex, true),
    (MetaKey::Oif, 5, "oif", Datatype::Ifindex, true),
    (MetaKey::Iifname, 6, "iifname", Datatype::Ifname, true),
    (MetaKey::Oifname, 7, "oifname", Datatype::Ifname, true),
    (MetaKey::Iiftype, 8, "iiftype", Datatype::ArpHrd, false),
    (MetaKey::Nfproto, 15, "nfproto", Datatype::NfProto, false),
    (MetaKey::L4proto, 16, "l4proto", Datatype::InetProto, false),
    (MetaKey::Ibrname, 17, "ibrname", Datatype::Ifname, false),
    (MetaKey::Obrname, 18, "obrname", Datatype::Ifname, false),
    (MetaKey::Pkttype, 19, "pkttype", Datatype::PktType, false),
    (MetaKey::Nftrace, 12, "nftrace", Datatype::Boolean, false),
];

impl MetaKey {
    fn desc(self) -> &'static MetaDesc {
        META_KEYS
            .iter()
            .find(|d| d.0 == self)
            .unwrap_or(&META_KEYS[0])
    }
    pub fn number(self) -> u32 {
        self.desc().1
    }
    pub fn name(self) -> &'static str {
        self.desc().2
    }
    pub fn datatype(self) -> Datatype {
        self.desc().3
    }
    /// `iifname "br0"` rather than `meta iifname "br0"`.
    pub fn unqualified(self) -> bool {
        self.desc().4
    }
    pub fn from_number(n: u32) -> Option<MetaKey> {
        META_KEYS.iter().find(|d| d.1 == n).map(|d| d.0)
    }
}

/// Conntrack keys (enum nft_ct_keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CtKey {
    State,
    Direction,
    Status,
    Mark,
    /// The conntrack zone (set before conntrack sees the packet).
    Zone,
}

type CtDesc = (CtKey, u32, &'static str, Datatype);

pub const CT_KEYS: &[CtDesc] = &[
    (CtKey::State, 0, "state", Datatype::CtState),
    (CtKey::Direction, 1, "direction", Datatype::CtDir),
    (CtKey::Status, 2, "status", Datatype::CtStatus),
    (CtKey::Mark, 3, "mark", Datatype::Mark),
    (CtKey::Zone, 17, "zone", Datatype::Integer16),
];

impl CtKey {
    fn desc(self) -> &'static CtDesc {
        CT_KEYS.iter().find(|d| d.0 == self).unwrap_or(&CT_KEYS[0])
    }
    pub fn number(self) -> u32 {
        self.desc().1
    }
    pub fn name(self) -> &'static str {
        self.desc().2
    }
    pub fn datatype(self) -> Datatype {
        self.desc().3
    }
    pub fn from_number(n: u32) -> Option<CtKey> {
        CT_KEYS.iter().find(|d| d.1 == n).map(|d| d.0)
    }
}
