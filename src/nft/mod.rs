//! An nftables IR small enough to read at a glance: tables, chains (with hook, priority and
//! policy), rules of typed matches and a verdict. It renders to `nft` syntax (`nsfw show`, diffs)
//! and encodes through `nftnl` into one batch ([`encode`]), sent and acknowledged over `mnl`
//! ([`netlink`]), which also dumps tables back from the kernel for comparison.

pub mod decode;
pub mod encode;
pub mod netlink;

use std::fmt;

use ipnetwork::Ipv4Network;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Inet,
    Ip,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Forward,
    Postrouting,
}

/// What makes a chain a base chain: it is attached to a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Base {
    pub ty: ChainType,
    pub hook: Hook,
    pub priority: i32,
    /// nsfw's base chains always accept by default: it judges only its own bridges' traffic.
    pub policy_accept: bool,
}

/// Conntrack states, as the bits of the kernel's `ct state` key.
pub mod ct {
    pub const INVALID: u32 = 1;
    pub const ESTABLISHED: u32 = 2;
    pub const RELATED: u32 = 4;
    pub const NEW: u32 = 8;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `iifname "br0"` (`!=` when `eq` is false)
    IifName { name: String, eq: bool },
    /// `oifname "br0"`
    OifName { name: String, eq: bool },
    /// `ct state established,related`: any of the bits in the mask.
    CtState(u32),
    /// `ip saddr 10.10.0.0/24`
    Saddr(Ipv4Network),
    /// `ip daddr 10.10.0.0/24`
    Daddr(Ipv4Network),
    /// `tcp dport 22` / `udp sport 53` (`proto` is the IP protocol number: 6 tcp, 17 udp)
    Port { proto: u8, dport: bool, port: u16 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Jump(String),
    Masquerade,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub verdict: Verdict,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, verdict: Verdict) -> Rule {
        Rule {
            matches,
            verdict,
            comment: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    /// The table's comment: nsfw's ownership mark on its own tables.
    pub comment: Option<String>,
    pub chains: Vec<Chain>,
}

fn ct_names(mask: u32) -> String {
    let mut v = Vec::new();
    for (bit, name) in [
        (ct::INVALID, "invalid"),
        (ct::ESTABLISHED, "established"),
        (ct::RELATED, "related"),
        (ct::NEW, "new"),
    ] {
        if mask & bit != 0 {
            v.push(name);
        }
    }
    v.join(",")
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = |eq: bool| if eq { "" } else { "!= " };
        match self {
            Match::IifName { name, eq } => write!(f, "iifname {}{name:?}", op(*eq)),
            Match::OifName { name, eq } => write!(f, "oifname {}{name:?}", op(*eq)),
            Match::CtState(m) => write!(f, "ct state {}", ct_names(*m)),
            Match::Saddr(n) => write!(f, "ip saddr {}", show_net(n)),
            Match::Daddr(n) => write!(f, "ip daddr {}", show_net(n)),
            Match::Port { proto, dport, port } => {
                let p = match proto {
                    6 => "tcp".to_string(),
                    17 => "udp".to_string(),
                    n => format!("meta l4proto {n} th"),
                };
                write!(f, "{p} {} {port}", if *dport { "dport" } else { "sport" })
            }
        }
    }
}

/// `nft` prints a /32 as a bare address.
fn show_net(n: &Ipv4Network) -> String {
    if n.prefix() == 32 {
        n.ip().to_string()
    } else {
        format!("{}/{}", n.network(), n.prefix())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => write!(f, "accept"),
            Verdict::Drop => write!(f, "drop"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Masquerade => write!(f, "masquerade"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            write!(f, "{m} ")?;
        }
        write!(f, "{}", self.verdict)?;
        if let Some(c) = &self.comment {
            write!(f, " comment {c:?}")?;
        }
        Ok(())
    }
}

impl Base {
    /// The header line of a base chain, as `nft list` prints it.
    pub fn header(&self) -> String {
        let ty = match self.ty {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        };
        let hook = match self.hook {
            Hook::Forward => "forward",
            Hook::Postrouting => "postrouting",
        };
        let prio = match (self.ty, self.hook, self.priority) {
            (ChainType::Filter, _, 0) => "filter".to_string(),
            (ChainType::Nat, Hook::Postrouting, 100) => "srcnat".to_string(),
            (_, _, p) => p.to_string(),
        };
        let policy = if self.policy_accept { "accept" } else { "drop" };
        format!("type {ty} hook {hook} priority {prio}; policy {policy};")
    }
}

impl fmt::Display for Table {
    /// The table in the layout of `nft list table`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {} {} {{", self.family.as_str(), self.name)?;
        if let Some(c) = &self.comment {
            writeln!(f, "\tcomment {c:?}")?;
        }
        for (i, c) in self.chains.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(b) = &c.base {
                writeln!(f, "\t\t{}", b.header())?;
            }
            for r in &c.rules {
                writeln!(f, "\t\t{r}")?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}
