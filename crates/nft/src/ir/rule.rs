//! Rules: statements in order (matches of an expression against a value, prefix, range or
//! set; counters, logs, limits, rejects, NAT, verdicts, verdict maps), and the elements of
//! sets, which named sets and anonymous sets inside rules both hold.

use crate::fields::{CtKey, Field, MetaKey};
use crate::types::{Datatype, Value};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Element {
    /// The key, one value per component of the set's key.
    pub key: Vec<Value>,
    /// For ranges and prefixes in interval sets: the last key of the range (inclusive).
    pub key_end: Option<Vec<Value>>,
    pub data: Option<ElemData>,
    /// Milliseconds, when it differs from the set's default.
    pub timeout: Option<u64>,
    pub comment: Option<String>,
}

impl Element {
    /// An element with one key.
    pub fn key(key: Vec<Value>) -> Element {
        Element {
            key,
            ..Default::default()
        }
    }
    /// A map element.
    pub fn map(key: Vec<Value>, data: ElemData) -> Element {
        Element {
            key,
            data: Some(data),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElemData {
    Verdict(Verdict),
    Values(Vec<Value>),
}

/// A rule: statements in order, and a comment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(stmts: Vec<Stmt>) -> Rule {
        Rule {
            stmts,
            comment: None,
        }
    }
}

/// What a rule does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Match(Match),
    Counter(Counter),
    Log(Log),
    Limit(Limit),
    Reject(Reject),
    /// `meta mark set 0x1`
    MetaSet(MetaKey, Arg),
    /// `ct mark set meta mark`
    CtSet(CtKey, Arg),
    Notrack,
    Nat(Nat),
    Masquerade(PortNat),
    Redirect(PortNat),
    Verdict(Verdict),
    /// `iifname . oifname vmap @dispatch`
    Vmap(Expr, SetRef),
    /// Something nsfw cannot read back, shown as what the kernel holds. It equals no rule nsfw
    /// builds.
    Unreadable(String),
}

/// A relational match: `ip saddr 10.0.0.0/8`, `tcp dport != 22`, `ct state established,related`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub left: Expr,
    pub op: Op,
    pub right: Rhs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Lt,
    Gt,
    Lte,
    Gte,
    /// Any of the flags is set (`ct state established,related`); bitmask types only.
    Flags,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rhs {
    Value(Value),
    /// `10.0.0.0/8`: the value and the prefix length.
    Prefix(Value, u32),
    /// `1000-2000`, inclusive.
    Range(Value, Value),
    /// `@name` or `{ 80, 443 }`.
    Set(SetRef),
}

/// What a match, map or statement reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Payload(Field),
    Meta(MetaKey),
    Ct(CtKey),
    Fib(Fib),
    /// `ip saddr . meta l4proto . th dport`
    Concat(Vec<Expr>),
}

/// `fib saddr . iif oif`: a route lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fib {
    /// fib::SADDR | fib::IIF ...
    pub flags: u32,
    pub result: FibResult,
    /// Only whether a result exists (`... oif missing`).
    pub present: bool,
}

pub mod fib {
    pub const SADDR: u32 = 1;
    pub const DADDR: u32 = 2;
    pub const MARK: u32 = 4;
    pub const IIF: u32 = 8;
    pub const OIF: u32 = 16;
    pub const PRESENT: u32 = 32;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibResult {
    Oif = 1,
    Oifname = 2,
    Type = 3,
}

impl Expr {
    /// The datatype of what the expression loads.
    pub fn datatype(&self) -> Datatype {
        match self {
            Expr::Payload(f) => f.datatype(),
            Expr::Meta(k) => k.datatype(),
            Expr::Ct(k) => k.datatype(),
            Expr::Fib(f) if f.present => Datatype::Boolean,
            Expr::Fib(f) => match f.result {
                FibResult::Oif => Datatype::Ifindex,
                FibResult::Oifname => Datatype::Ifname,
                FibResult::Type => Datatype::FibAddr,
            },
            Expr::Concat(v) => v.first().map(Expr::datatype).unwrap_or(Datatype::Verdict),
        }
    }
    /// The datatypes of its components (one for a plain expression).
    pub fn datatypes(&self) -> Vec<Datatype> {
        match self {
            Expr::Concat(v) => v.iter().map(Expr::datatype).collect(),
            e => vec![e.datatype()],
        }
    }
}

/// A set a rule looks up in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetRef {
    Named(String),
    /// An anonymous set, inline (`{ 80, 443 }`); a map when its elements carry data.
    Anon(Vec<Element>),
}

/// A value or an expression, for statements that set something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Value(Value),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
}

/// `counter`. Its numbers are what the kernel counted: two counters are always equal.
#[derive(Clone, Copy, Debug, Default, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl PartialEq for Counter {
    fn eq(&self, _: &Counter) -> bool {
        true
    }
}

/// `log prefix "x " level info` / `log group 2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub prefix: Option<String>,
    /// Syslog level; 4 (warn) is the default and is not printed. Unused with a group.
    pub level: u32,
    /// nflog group: the packet goes to userspace instead of the kernel log.
    pub group: Option<u16>,
    /// NF_LOG_* flags (tcp sequence, options, ...).
    pub flags: u32,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            prefix: None,
            level: 4,
            group: None,
            flags: 0,
        }
    }
}

/// `limit rate over 10/second burst 5 packets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Packets, or bytes when `bytes`, per `per` seconds.
    pub rate: u64,
    /// 1, 60, 3600, 86400 or 604800.
    pub per: u64,
    /// Packets (default 5) or bytes (default 0).
    pub burst: u32,
    pub bytes: bool,
    /// `over`: match when the rate is exceeded.
    pub over: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Plain `reject`: ICMP port unreachable in the family's own ICMP.
    Default,
    /// `reject with icmp <code>`
    Icmp(u8),
    /// `reject with icmpv6 <code>`
    Icmpv6(u8),
    /// `reject with icmpx <code>`
    Icmpx(u8),
    /// `reject with tcp reset` (needs a match on TCP before it, as nft writes it).
    TcpReset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
}

/// `snat`/`dnat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nat {
    pub kind: NatKind,
    /// `ip`/`ip6` after the keyword; nft prints it in inet tables and for maps.
    pub family: Option<NatFamily>,
    pub to: NatTo,
    /// nat::RANDOM | nat::FULLY_RANDOM | nat::PERSISTENT
    pub flags: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatFamily {
    Ip,
    Ip6,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatTo {
    /// `to 10.0.0.1`
    Addr(Value),
    /// `to 10.0.0.1:80`, `to [fd00::1]:80`
    AddrPort(Value, u16),
    /// `to :8080`: the port only, the address kept.
    Port(u16),
    /// `to ip daddr . meta l4proto . th dport map @pub4`: the address, or the address and
    /// port when the map's data is `ipv4_addr . inet_service`.
    Map(Expr, SetRef),
}

/// NF_NAT_RANGE_* flags nsfw writes.
pub mod nat {
    pub const RANDOM: u32 = 4;
    pub const PERSISTENT: u32 = 8;
    pub const FULLY_RANDOM: u32 = 16;
}

/// `masquerade to :1024-2048 random` / `redirect to :8080`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortNat {
    /// (min, max); equal for one port.
    pub ports: Option<(u16, u16)>,
    pub flags: u32,
}

/// Conntrack state bits (`ct state`).
pub mod ct_state {
    pub const INVALID: u32 = 1;
    pub const ESTABLISHED: u32 = 2;
    pub const RELATED: u32 = 4;
    pub const NEW: u32 = 8;
    pub const UNTRACKED: u32 = 64;
}

/// Conntrack status bits (`ct status`).
pub mod ct_status {
    pub const EXPECTED: u32 = 1;
    pub const SEEN_REPLY: u32 = 2;
    pub const ASSURED: u32 = 4;
    pub const CONFIRMED: u32 = 8;
    pub const SNAT: u32 = 16;
    pub const DNAT: u32 = 32;
    pub const DYING: u32 = 512;
}

/// Short constructors for the statements nsfw writes most.
impl Stmt {
    /// `left == value` (printed without the operator).
    pub fn eq(left: Expr, v: Value) -> Stmt {
        Stmt::Match(Match {
            left,
            op: Op::Eq,
            right: Rhs::Value(v),
        })
    }
    /// `left != value`
    pub fn neq(left: Expr, v: Value) -> Stmt {
        Stmt::Match(Match {
            left,
            op: Op::Neq,
            right: Rhs::Value(v),
        })
    }
    /// `left 10.0.0.0/8`
    pub fn prefix(left: Expr, v: Value, plen: u32) -> Stmt {
        Stmt::Match(Match {
            left,
            op: Op::Eq,
            right: Rhs::Prefix(v, plen),
        })
    }
    /// `ct state established,related`
    pub fn ct_state(bits: u32) -> Stmt {
        Stmt::Match(Match {
            left: Expr::Ct(CtKey::State),
            op: Op::Flags,
            right: Rhs::Value(Value::CtState(bits)),
        })
    }
    pub fn iifname(name: &str, eq: bool) -> Stmt {
        let e = Expr::Meta(MetaKey::Iifname);
        let v = Value::Ifname(name.to_string());
        if eq { Stmt::eq(e, v) } else { Stmt::neq(e, v) }
    }
    pub fn oifname(name: &str, eq: bool) -> Stmt {
        let e = Expr::Meta(MetaKey::Oifname);
        let v = Value::Ifname(name.to_string());
        if eq { Stmt::eq(e, v) } else { Stmt::neq(e, v) }
    }
}
