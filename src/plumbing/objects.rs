//! What the kernel holds, as nsfw reads it back: a link, an address, a route, one network
//! namespace's worth of them, and a resolv.conf beside it. The same resource types as
//! `resources`, plus what only the kernel knows (ifindexes, veth peers, ownership marks).
//! Pure data: `observe` and `linkmsg` read them, `plan` compares them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::topology::Mac;

/// A link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    /// `bridge`, `veth`, ... (None for physical and loopback devices).
    pub kind: Option<String>,
    pub master: Option<u32>,
    pub mtu: u32,
    pub mac: Option<Mac>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// ARP switched off on it (IFF_NOARP): neighbours cannot find it.
    pub noarp: bool,
    pub alias: Option<String>,
    /// IFLA_LINK: for a veth, the peer's ifindex, in the peer's namespace; for a macvlan, its
    /// uplink's (in the uplink's namespace).
    pub peer_index: Option<u32>,
    /// IFLA_LINK_NETNSID: the namespace the peer (or uplink) is in, by the id this namespace
    /// knows it by, when that is another namespace; -1 when that namespace is being torn
    /// down (see `nsid`).
    pub link_netnsid: Option<i32>,
    /// For a macvlan or macvtap: its mode (IFLA_MACVLAN_MODE, MACVLAN_MODE_*).
    pub macvlan_mode: Option<u32>,
    /// Its per-interface settings nsfw manages, as the link dump carries them (the kernel's
    /// IPV4_DEVCONF/DEVCONF arrays): `ipv4.promote_secondaries` → "1". Read here, they cost
    /// no file access per namespace.
    #[serde(with = "conf_keys")]
    pub conf: BTreeMap<&'static str, String>,
    /// For a bridge: nf_call_iptables (its bridged traffic passes the IP hooks).
    pub nf_call: bool,
    /// For a bridge port: hairpin mode (frames may leave by the port they came in).
    pub hairpin: bool,
    /// For a bridge port: isolated (BR_ISOLATED): no frame passes to another isolated port.
    pub isolated: bool,
    /// The kind of its root qdisc (IFLA_QDISC: `noqueue`, `netem`, ...).
    pub qdisc: Option<String>,
    /// The MTUs its driver takes (IFLA_MIN_MTU, IFLA_MAX_MTU), where the kernel says.
    pub mtu_range: (Option<u32>, Option<u32>),
    /// For a VXLAN link: what it was made with.
    pub vxlan: Option<VxlanObs>,
}

/// A VXLAN link's VNI, source address (None: any) and UDP port, and the settings nsfw leaves
/// at the kernel's defaults (learning on, TTL 0: "auto") and someone may have changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct VxlanObs {
    pub id: u32,
    pub local: Option<IpAddr>,
    pub port: u16,
    pub learning: bool,
    pub ttl: u8,
    /// The first other attribute (its IFLA_VXLAN_* type) set otherwise than nsfw makes its
    /// tunnels (the kernel's defaults): `ttl inherit`, `dev`, `srcport`, `noudpcsum`...
    /// ([`VxlanObs::odd_name`]).
    pub odd: Option<u16>,
}

impl VxlanObs {
    /// A tunnel as the kernel makes it: learning, TTL auto.
    pub(crate) fn new(id: u32, local: Option<IpAddr>, port: u16) -> VxlanObs {
        VxlanObs {
            id,
            local,
            port,
            learning: true,
            ttl: 0,
            odd: None,
        }
    }

    /// Notes attribute `ty` (IFLA_VXLAN_*) of value `v` if it is not the kernel's default,
    /// which nsfw's tunnels keep. ID, LOCAL, PORT, TTL and LEARNING are read apart.
    pub(crate) fn note(&mut self, ty: u16, v: &[u8]) {
        let set = v.iter().any(|b| *b != 0);
        let odd = match ty {
            8 => <[u8; 4]>::try_from(v).map(u32::from_ne_bytes).ok() != Some(300),
            // Checksums on, local bypass on: the kernel's defaults.
            18 | 31 => !set,
            // Flags: present is set.
            23 | 24 | 27 => true,
            // A flag when asked for, a u8 when dumped (0: off).
            28 => v.is_empty() || set,
            _ => set,
        };
        if odd && vxlan_attr_name(ty).is_some() {
            self.odd.get_or_insert(ty);
        }
    }

    /// The attribute [`VxlanObs::odd`] names, as `ip link` calls it.
    pub(crate) fn odd_name(&self) -> Option<&'static str> {
        self.odd.and_then(vxlan_attr_name)
    }
}

/// The VXLAN attributes nsfw leaves at the kernel's defaults, as `ip link` names them.
fn vxlan_attr_name(ty: u16) -> Option<&'static str> {
    Some(match ty {
        2 | 16 => "group",
        3 => "dev",
        6 => "tos",
        8 => "ageing",
        9 => "maxaddress",
        10 => "srcport",
        11 => "proxy",
        12 => "rsc",
        13 => "l2miss",
        14 => "l3miss",
        18 => "noudpcsum",
        19 => "udp6zerocsumtx",
        20 => "udp6zerocsumrx",
        21 => "remcsumtx",
        22 => "remcsumrx",
        23 => "gbp",
        24 => "remcsum_nopartial",
        25 => "external",
        26 => "flowlabel",
        27 => "gpe",
        28 => "ttl inherit",
        29 => "df",
        30 => "vnifilter",
        31 => "nolocalbypass",
        32 => "flowlabel inherit",
        _ => return None,
    })
}

/// An all-zeros forwarding entry of a VXLAN link (`ifindex`): broadcast and unknown frames
/// go to `dst` too.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct Fdb {
    pub index: u32,
    pub dst: IpAddr,
    /// What the entry says beyond its destination (None: the link's own).
    pub via: Via,
}

/// An FDB entry's UDP port, VNI and outgoing device, where they are not the VXLAN link's
/// own (the kernel lists NDA_PORT, NDA_VNI, NDA_IFINDEX only then): a peer's entry is the
/// file's only when all three are None.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub(crate) struct Via {
    pub port: Option<u16>,
    pub vni: Option<u32>,
    pub dev: Option<u32>,
}

impl Via {
    pub(crate) fn is_own(&self) -> bool {
        *self == Via::default()
    }
}

impl std::fmt::Display for Via {
    /// ` port 9999 vni 300 via 7`, as `bridge fdb` shows them (empty for the link's own).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.port {
            write!(f, " port {p}")?;
        }
        if let Some(v) = self.vni {
            write!(f, " vni {v}")?;
        }
        if let Some(d) = self.dev {
            write!(f, " via ifindex {d}")?;
        }
        Ok(())
    }
}

/// An address on a link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) struct Addr {
    pub index: u32,
    pub net: IpNetwork,
    /// What an address taken from a physical port must get back verbatim (`plan::ports`):
    /// IFA_FLAGS, its scope, and the lifetimes left (seconds; u32::MAX is forever).
    pub flags: u32,
    pub scope: u8,
    pub valid: u32,
    pub preferred: u32,
    /// IFA_BROADCAST (None: the address has none) and IFA_RT_PRIORITY (the metric of its
    /// subnet's route; 0: none), given back as they were too.
    pub brd: Option<std::net::Ipv4Addr>,
    pub metric: u32,
}

/// A unicast route (of the main table, unless it is in `NodeObs::other_tables`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Route {
    pub dst: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Made by the kernel for an address's subnet (`proto kernel`): follows the address.
    pub kernel: bool,
    /// Made by nsfw (`proto 110`, see `resources::ROUTE_PROTO`).
    pub ours: bool,
    /// RTA_PRIORITY (0 when absent).
    pub metric: u32,
    /// RTN_* (unicast 1, blackhole 6, unreachable 7, prohibit 8).
    pub kind: u8,
    /// The rest of what `ip route` shows, so that a route taken from a physical port can be
    /// given back as it was: table, RTPROT_*, RT_SCOPE_*, RTNH_F_* (onlink).
    pub table: u32,
    pub proto: u8,
    pub scope: u8,
    pub flags: u32,
    /// RTA_PREFSRC (`src`).
    pub prefsrc: Option<IpAddr>,
    /// RTA_METRICS (`mtu`, `advmss`, …), by RTAX_* number.
    pub metrics: super::rtax::Metrics,
}

/// What one network namespace holds.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeObs {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<Route>,
    /// Routes of tables other than main and local (policy routing): only ever given back to a
    /// physical port, never diffed.
    pub other_tables: Vec<Route>,
    /// The sysctls asked for; None: no such setting.
    pub sysctls: BTreeMap<String, Option<String>>,
    /// The root qdiscs that are not the kernel's default, by ifindex: nsfw's (what they say)
    /// or someone else's (read only where the link dump shows a root other than noqueue).
    #[serde(skip)]
    pub qdiscs: BTreeMap<u32, super::qdisc::RootObs>,
    /// The all-zeros FDB entries of its VXLAN links (read only where there is one).
    #[serde(skip)]
    pub fdb: Vec<Fdb>,
}

impl NodeObs {
    pub(crate) fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub(crate) fn by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }

    /// The name of the link with `index`, if there is one.
    pub(crate) fn name_of(&self, index: u32) -> Option<&str> {
        self.by_index(index).map(|l| l.name.as_str())
    }
}

/// One named namespace.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct NsObs {
    /// The alias of its `lo`: `nsfw:<topology>` when nsfw made it.
    pub owner: Option<String>,
    /// Its contents, read when the caller said they matter (links are always read).
    pub node: NodeObs,
    /// Which namespace the name holds (as this run opened it, or as it stat'ed the name watch's
    /// memory vouched for): two names holding one namespace are one namespace configured twice.
    #[serde(skip)]
    pub id: Option<super::netns::NsId>,
}

/// Whose a namespace is, from its links: the alias of its `lo` (`nsfw:<topology>` when nsfw
/// made it).
pub(crate) fn owner_of(links: &[Link]) -> Option<String> {
    links
        .iter()
        .find(|l| l.name == "lo")
        .and_then(|l| l.alias.clone())
}

/// A resolv.conf under /etc/netns/NS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileObs {
    /// A regular UTF-8 file and its text.
    Text(String),
    /// Something nsfw does not read or write: a symlink, FIFO, directory, non-UTF-8 bytes.
    Other(String),
}

impl Link {
    /// A link of what its message's header says, before its attributes are read.
    pub(crate) fn bare(index: u32, up: bool, noarp: bool) -> Link {
        Link {
            index,
            name: String::new(),
            kind: None,
            master: None,
            mtu: 0,
            mac: None,
            conf: BTreeMap::new(),
            nf_call: false,
            hairpin: false,
            isolated: false,
            qdisc: None,
            mtu_range: (None, None),
            up,
            noarp,
            alias: None,
            peer_index: None,
            link_netnsid: None,
            macvlan_mode: None,
            vxlan: None,
        }
    }
}

/// A link's settings travel by name; read back, each name is one of those nsfw reads (an
/// unknown one is dropped: it would never be compared).
mod conf_keys {
    use std::collections::BTreeMap;

    use serde::de::{MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    const KEYS: [&str; 7] = [
        "ipv4.promote_secondaries",
        "ipv4.route_localnet",
        "ipv4.forwarding",
        "ipv6.accept_ra",
        "ipv6.disable_ipv6",
        "ipv6.forwarding",
        "ipv6.addr_gen_mode",
    ];

    pub(super) fn serialize<S: Serializer>(
        m: &BTreeMap<&'static str, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        m.serialize(s)
    }

    /// Keys other than [`KEYS`] are dropped. A key is matched where it lies, not copied out
    /// first: watch's answer carries seven of them for each of thousands of links.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<&'static str, String>, D::Error> {
        d.deserialize_map(Settings)
    }

    struct Settings;

    impl<'de> Visitor<'de> for Settings {
        type Value = BTreeMap<&'static str, String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of a link's settings")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(Key(k)) = m.next_key()? {
                let v: String = m.next_value()?;
                if let Some(k) = k {
                    out.insert(k, v);
                }
            }
            Ok(out)
        }
    }

    /// One of [`KEYS`], or None for any other key.
    struct Key(Option<&'static str>);

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            d.deserialize_str(KeyName)
        }
    }

    struct KeyName;

    impl Visitor<'_> for KeyName {
        type Value = Key;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a setting's name")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key, E> {
            Ok(Key(KEYS.iter().find(|x| **x == s).copied()))
        }
    }
}

#[cfg(test)]
impl Addr {
    /// Address `net` on link `index` as the kernel keeps one given by hand: no flags, forever.
    pub(crate) fn given(index: u32, net: &str) -> Addr {
        Addr {
            index,
            net: net.parse().expect("an address"),
            flags: 0,
            scope: 0,
            valid: u32::MAX,
            preferred: u32::MAX,
            brd: None,
            metric: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Conf(#[serde(with = "super::conf_keys")] BTreeMap<&'static str, String>);

    /// Watch's answer (postcard) and JSON alike: the known names kept, any other dropped.
    #[test]
    fn a_links_settings_keep_the_known_names_and_drop_the_others() {
        let json = r#"{"ipv6.accept_ra":"1","ipv4.bogus":"2","ipv4.forwarding":"0"}"#;
        let Conf(m) = serde_json::from_str(json).expect("a map");
        let want = BTreeMap::from([
            ("ipv4.forwarding", "0".to_string()),
            ("ipv6.accept_ra", "1".into()),
        ]);
        assert_eq!(m, want);
        let other: BTreeMap<String, String> = serde_json::from_str(json).expect("a map");
        let bytes = postcard::to_allocvec(&other).expect("encoded");
        let Conf(m) = postcard::from_bytes(&bytes).expect("decoded");
        assert_eq!(m, want);
        let Conf(back) = postcard::from_bytes(&postcard::to_allocvec(&Conf(m)).expect("encoded"))
            .expect("decoded");
        assert_eq!(back, want, "a round trip");
    }
}
