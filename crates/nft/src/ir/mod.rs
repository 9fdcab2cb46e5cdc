//! The nftables IR: tables of any family with their sets, maps and chains, and rules as lists
//! of statements. Pure data: `render` prints it as `nft list` does, `lower` turns rules into
//! kernel expressions the way nft 1.0.6 does, `raise` reads them back, and `batch` sends it
//! all. Here: a table's structure (family, chains, base chains, set declarations); in
//! `rule`, what rules are made of, and set elements (named sets and the anonymous sets
//! inside rules both hold them).

mod rule;

pub use super::fields::{CtKey, Field, MetaKey};
pub use super::types::{Datatype, Value};
pub use rule::*;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    #[default]
    Inet,
    Ip,
    Ip6,
    Bridge,
    /// Hooks on one device (ingress, egress), before and after the IP stack.
    Netdev,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
    /// The NFPROTO_* number of the family.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Netdev => 5,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }
    pub fn from_nfproto(n: u32) -> Option<Family> {
        [
            Family::Inet,
            Family::Ip,
            Family::Ip6,
            Family::Bridge,
            Family::Netdev,
        ]
        .into_iter()
        .find(|f| u32::from(f.nfproto()) == n)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    /// `flags dormant`: the table's base chains are not attached to their hooks.
    pub dormant: bool,
    /// nsfw's ownership mark on its own tables.
    pub comment: Option<String>,
    /// Named sets and maps, in declaration order (anonymous ones live inside rules).
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn new(family: Family, name: &str) -> Table {
        Table {
            family,
            name: name.to_string(),
            ..Default::default()
        }
    }
    /// "inet nsfw_lab"
    pub fn label(&self) -> String {
        format!("{} {}", self.family.as_str(), self.name)
    }
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// Present for base chains: what attaches the chain to a hook.
    pub base: Option<Base>,
    pub comment: Option<String>,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn new(name: &str, base: Option<Base>, rules: Vec<Rule>) -> Chain {
        Chain {
            name: name.to_string(),
            base,
            comment: None,
            rules,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
    pub fn from_name(s: &str) -> Option<ChainType> {
        [ChainType::Filter, ChainType::Nat, ChainType::Route]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// A device's name as a netdev chain names it (at most 15 bytes, IFNAMSIZ − 1), kept inline
/// so that a hook stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Device {
    len: u8,
    name: [u8; 15],
}

impl Device {
    /// None when `name` is empty or longer than an interface name can be.
    pub fn new(name: &str) -> Option<Device> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > 15 {
            return None;
        }
        let mut out = [0u8; 15];
        out[..b.len()].copy_from_slice(b);
        Some(Device {
            len: b.len() as u8,
            name: out,
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.name[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
    /// The netdev family's: frames as a device receives them, before anything else.
    Ingress(Device),
    /// The netdev family's: frames as a device is about to send them, whoever sent them
    /// (a macvlan child's, a packet socket's included).
    Egress(Device),
}

impl Hook {
    /// NF_INET_* (the bridge family numbers its hooks the same way); NF_NETDEV_* for the
    /// netdev family's.
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting | Hook::Ingress(_) => 0,
            Hook::Input | Hook::Egress(_) => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
    /// A hook of the inet, ip, ip6 or bridge family.
    pub fn from_number(n: u32) -> Option<Hook> {
        [
            Hook::Prerouting,
            Hook::Input,
            Hook::Forward,
            Hook::Output,
            Hook::Postrouting,
        ]
        .into_iter()
        .find(|h| h.number() == n)
    }
    /// A hook of the netdev family, on `device`.
    pub fn netdev(n: u32, device: Device) -> Option<Hook> {
        match n {
            0 => Some(Hook::Ingress(device)),
            1 => Some(Hook::Egress(device)),
            _ => None,
        }
    }
    /// The device of a netdev hook.
    pub fn device(self) -> Option<Device> {
        match self {
            Hook::Ingress(d) | Hook::Egress(d) => Some(d),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
            Hook::Ingress(_) => "ingress",
            Hook::Egress(_) => "egress",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// What makes a chain a base chain: it is attached to a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Base {
    pub ty: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Policy,
}

/// Standard priorities (nft's `filter`, `dstnat`, `srcnat`, ...).
pub mod prio {
    pub const RAW: i32 = -300;
    pub const MANGLE: i32 = -150;
    pub const DSTNAT: i32 = -100;
    pub const FILTER: i32 = 0;
    pub const SECURITY: i32 = 50;
    pub const SRCNAT: i32 = 100;
}

/// A named set or map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    /// The key: one datatype, or several for a concatenation (`ipv4_addr . inet_service`).
    pub key: Vec<Datatype>,
    /// Present for maps: what the elements map to.
    pub data: Option<SetData>,
    pub flags: SetFlags,
    /// The default timeout of elements, in milliseconds.
    pub timeout: Option<u64>,
    pub comment: Option<String>,
    pub elements: Vec<Element>,
}

impl Set {
    /// The set's declaration: everything but its elements (which are not copied).
    pub fn without_elements(&self) -> Set {
        Set {
            name: self.name.clone(),
            key: self.key.clone(),
            data: self.data.clone(),
            flags: self.flags,
            timeout: self.timeout,
            comment: self.comment.clone(),
            elements: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetFlags {
    pub constant: bool,
    /// Elements may be ranges and prefixes.
    pub interval: bool,
    /// Elements may time out (implied by a default timeout).
    pub timeout: bool,
    /// Every element carries a counter (nft's `counter` in the declaration): the kernel gives
    /// each element added a counter of its own, which a lookup that matches it increments.
    pub counter: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetData {
    /// A verdict map (`vmap`).
    Verdict,
    /// A map to values, possibly concatenated (`ipv4_addr . inet_service`).
    Values(Vec<Datatype>),
}
