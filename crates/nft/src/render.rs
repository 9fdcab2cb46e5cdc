//! The IR in `nft` syntax, exactly as `nft list` (nft 1.0.6) prints it: table layout, set and
//! map declarations with their elements (sorted and wrapped as nft does), base chain headers
//! with named priorities, and every statement. `nsfw show` prints this and `nft -f` loads it.

use std::fmt::{self, Display, Formatter, Write};

use super::elems::print_order;
use super::ir::*;
use super::symbols::{self, ICMP_CODES, ICMPV6_CODES, ICMPX_CODES, LOG_LEVELS, duration, lookup};
use super::types::be;

fn value(v: &Value) -> String {
    symbols::value(v, false)
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            // A field nft has no name for is written as the raw load it lists (`@th,192,16`).
            Expr::Payload(fl) if fl.name().starts_with('@') => write!(f, "{}", fl.name()),
            Expr::Payload(fl) => write!(f, "{} {}", fl.proto().name(), fl.name()),
            Expr::Meta(k) if k.unqualified() => write!(f, "{}", k.name()),
            Expr::Meta(k) => write!(f, "meta {}", k.name()),
            Expr::Ct(k) => write!(f, "ct {}", k.name()),
            Expr::Fib(fib) => {
                let names = [
                    (fib::SADDR, "saddr"),
                    (fib::DADDR, "daddr"),
                    (fib::MARK, "mark"),
                    (fib::IIF, "iif"),
                    (fib::OIF, "oif"),
                ];
                let parts: Vec<&str> = names
                    .iter()
                    .filter(|(b, _)| fib.flags & b != 0)
                    .map(|(_, n)| *n)
                    .collect();
                let result = match fib.result {
                    FibResult::Oif => "oif",
                    FibResult::Oifname => "oifname",
                    FibResult::Type => "type",
                };
                write!(f, "fib {} {result}", parts.join(" . "))
            }
            Expr::Concat(v) => {
                let parts: Vec<String> = v.iter().map(|e| e.to_string()).collect();
                write!(f, "{}", parts.join(" . "))
            }
        }
    }
}

/// One component of an element key: a value, a prefix (address and mark types), or a range.
fn component(a: &Value, b: Option<&Value>) -> String {
    match b {
        Some(b) if b != a => {
            let (lo, hi) = (a.big_endian_bytes(), b.big_endian_bytes());
            match be::range_prefix(&lo, &hi) {
                Some(plen) if a.datatype().prefix_type() => format!("{}/{plen}", value(a)),
                _ => format!("{}-{}", symbols::value(a, true), symbols::value(b, true)),
            }
        }
        _ => value(a),
    }
}

fn values(v: &[Value]) -> String {
    v.iter().map(value).collect::<Vec<_>>().join(" . ")
}

/// An element as nft prints it: key, timeout, comment, then `: data` for maps.
pub fn element(e: &Element) -> String {
    element_counted(e, false)
}

/// An element, with the counter of a set declared `counter` after its key as `nft list`
/// prints it (a table as loaded: the count is zero, the IR holds no count).
fn element_counted(e: &Element, counter: bool) -> String {
    let mut s = e
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| component(k, e.key_end.as_ref().and_then(|end| end.get(i))))
        .collect::<Vec<_>>()
        .join(" . ");
    if counter {
        s.push_str(" counter packets 0 bytes 0");
    }
    if let Some(t) = e.timeout {
        let _ = write!(s, " timeout {}", duration(t));
    }
    if let Some(c) = &e.comment {
        let _ = write!(s, " comment \"{c}\"");
    }
    match &e.data {
        Some(ElemData::Verdict(v)) => {
            let _ = write!(s, " : {v}");
        }
        Some(ElemData::Values(v)) => {
            let _ = write!(s, " : {}", values(v));
        }
        None => {}
    }
    s
}

/// `{ a, b }`; named sets wrap lines as nft's calculate_delim does, by key type.
fn element_list(
    types: &[Datatype],
    interval: bool,
    els: &[Element],
    anonymous: bool,
    counter: bool,
) -> String {
    let per_line = match types {
        _ if anonymous => usize::MAX,
        [t] => match t {
            Datatype::NfProto
            | Datatype::InetProto
            | Datatype::InetService
            | Datatype::Mark
            | Datatype::Ifindex
            | Datatype::CtDir => 5,
            Datatype::Ipv4Addr | Datatype::CtState | Datatype::CtStatus | Datatype::PktType => 2,
            _ => 1,
        },
        _ => 1,
    };
    let mut s = String::from("{ ");
    let mut count = 0;
    for (i, e) in print_order(types, interval, els).into_iter().enumerate() {
        if i > 0 {
            if count < per_line {
                s.push_str(", ");
            } else {
                count = 0;
                s.push_str(",\n\t\t\t     ");
            }
        }
        s.push_str(&element_counted(e, counter));
        count += 1;
    }
    s.push_str(" }");
    s
}

impl Display for SetRef {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SetRef::Named(n) => write!(f, "@{n}"),
            SetRef::Anon(els) => {
                let types: Vec<Datatype> = els
                    .first()
                    .map(|e| e.key.iter().map(Value::datatype).collect())
                    .unwrap_or_default();
                let interval = els.iter().any(|e| e.key_end.is_some());
                write!(f, "{}", element_list(&types, interval, els, true, false))
            }
        }
    }
}

impl Display for Match {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => match &self.right {
                // `ct state == established`: a single flag compared exactly (nft's
                // must_print_eq_op).
                Rhs::Value(v) if v.datatype().is_bitmask() => " == ",
                _ => " ",
            },
            Op::Flags => " ",
            Op::Neq => " != ",
            Op::Lt => " < ",
            Op::Gt => " > ",
            Op::Lte => " <= ",
            Op::Gte => " >= ",
        };
        let right = match &self.right {
            Rhs::Value(v) => value(v),
            // iifname "br*": a name compared over its first bytes.
            Rhs::Prefix(Value::Ifname(n), _) => format!("\"{n}*\""),
            Rhs::Prefix(v, plen) => format!("{}/{plen}", value(v)),
            Rhs::Range(a, b) => format!("{}-{}", symbols::value(a, true), symbols::value(b, true)),
            Rhs::Set(s) => s.to_string(),
        };
        write!(f, "{}{op}{right}", self.left)
    }
}

impl Display for Verdict {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => write!(f, "accept"),
            Verdict::Drop => write!(f, "drop"),
            Verdict::Continue => write!(f, "continue"),
            Verdict::Return => write!(f, "return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

impl Display for Arg {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Value(v) => write!(f, "{}", value(v)),
            Arg::Expr(e) => write!(f, "{e}"),
        }
    }
}

fn nat_flags(flags: u32) -> String {
    let names: Vec<&str> = [
        (nat::RANDOM, "random"),
        (nat::FULLY_RANDOM, "fully-random"),
        (nat::PERSISTENT, "persistent"),
    ]
    .iter()
    .filter(|(b, _)| flags & b != 0)
    .map(|(_, n)| *n)
    .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" {}", names.join(","))
    }
}

fn port_nat(word: &str, p: &PortNat) -> String {
    let mut s = word.to_string();
    match p.ports {
        Some((a, b)) if a == b => {
            let _ = write!(s, " to :{a}");
        }
        Some((a, b)) => {
            let _ = write!(s, " to :{a}-{b}");
        }
        None => {}
    }
    s + &nat_flags(p.flags)
}

fn code(tbl: &[(u8, &'static str)], c: u8) -> String {
    lookup(tbl, c).map(str::to_string).unwrap_or(c.to_string())
}

/// nft's log flags (NF_LOG_*).
fn log_flags(fl: u32) -> String {
    const ALL: u32 = 0x2f;
    if fl & ALL == ALL {
        return " flags all".into();
    }
    let mut s = String::new();
    if fl & 3 != 0 {
        s.push_str(" flags tcp");
        let mut d = " ";
        if fl & 1 != 0 {
            s.push_str(" sequence");
            d = ",";
        }
        if fl & 2 != 0 {
            let _ = write!(s, "{d}options");
        }
    }
    if fl & 4 != 0 {
        s.push_str(" flags ip options");
    }
    if fl & 8 != 0 {
        s.push_str(" flags skuid");
    }
    if fl & 0x20 != 0 {
        s.push_str(" flags ether");
    }
    s
}

fn limit(l: &Limit) -> String {
    let unit = match l.per {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        86400 => "day",
        604800 => "week",
        _ => "error",
    };
    let over = if l.over { "over " } else { "" };
    if !l.bytes {
        let mut s = format!("limit rate {over}{}/{unit}", l.rate);
        if l.burst != 0 && l.burst != 5 {
            let _ = write!(s, " burst {} packets", l.burst);
        }
        return s;
    }
    // nft's get_rate: the largest of bytes, kbytes, mbytes that divides evenly.
    let rate = |mut v: u64| {
        let mut i = 0;
        let names = ["bytes", "kbytes", "mbytes"];
        while v != 0 && i < 2 && v.is_multiple_of(1024) {
            v /= 1024;
            i += 1;
        }
        format!("{v} {}", names[i])
    };
    let mut s = format!("limit rate {over}{}/{unit}", rate(l.rate));
    if l.burst != 0 {
        let _ = write!(s, " burst {}", rate(u64::from(l.burst)));
    }
    s
}

impl Display for Stmt {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Match(m) => write!(f, "{m}"),
            Stmt::Counter(c) => write!(f, "counter packets {} bytes {}", c.packets, c.bytes),
            Stmt::Log(l) => {
                write!(f, "log")?;
                if let Some(p) = &l.prefix {
                    write!(f, " prefix \"{p}\"")?;
                }
                if let Some(g) = l.group {
                    write!(f, " group {g}")?;
                } else {
                    if l.level != 4 {
                        let name = LOG_LEVELS.get(l.level as usize).copied().unwrap_or("?");
                        write!(f, " level {name}")?;
                    }
                    write!(f, "{}", log_flags(l.flags))?;
                }
                Ok(())
            }
            Stmt::Limit(l) => write!(f, "{}", limit(l)),
            Stmt::Reject(r) => match r {
                Reject::Default => write!(f, "reject"),
                Reject::Icmp(c) => write!(f, "reject with icmp {}", code(ICMP_CODES, *c)),
                Reject::Icmpv6(c) => write!(f, "reject with icmpv6 {}", code(ICMPV6_CODES, *c)),
                Reject::Icmpx(c) => write!(f, "reject with icmpx {}", code(ICMPX_CODES, *c)),
                Reject::TcpReset => write!(f, "reject with tcp reset"),
            },
            Stmt::MetaSet(k, a) if k.unqualified() => write!(f, "{} set {a}", k.name()),
            Stmt::MetaSet(k, a) => write!(f, "meta {} set {a}", k.name()),
            Stmt::CtSet(k, a) => write!(f, "ct {} set {a}", k.name()),
            Stmt::Notrack => write!(f, "notrack"),
            Stmt::Nat(n) => {
                write!(
                    f,
                    "{}",
                    match n.kind {
                        NatKind::Snat => "snat",
                        NatKind::Dnat => "dnat",
                    }
                )?;
                match n.family {
                    Some(NatFamily::Ip) => write!(f, " ip")?,
                    Some(NatFamily::Ip6) => write!(f, " ip6")?,
                    None => {}
                }
                match &n.to {
                    NatTo::Addr(a) => write!(f, " to {}", value(a))?,
                    NatTo::AddrPort(a @ Value::Ipv6(_), p) => write!(f, " to [{}]:{p}", value(a))?,
                    NatTo::AddrPort(a, p) => write!(f, " to {}:{p}", value(a))?,
                    NatTo::Port(p) => write!(f, " to :{p}")?,
                    NatTo::Map(k, s) => write!(f, " to {k} map {s}")?,
                }
                write!(f, "{}", nat_flags(n.flags))
            }
            Stmt::Masquerade(p) => write!(f, "{}", port_nat("masquerade", p)),
            Stmt::Redirect(p) => write!(f, "{}", port_nat("redirect", p)),
            Stmt::Verdict(v) => write!(f, "{v}"),
            Stmt::Vmap(k, s) => write!(f, "{k} vmap {s}"),
            Stmt::Unreadable(t) => write!(f, "{t}"),
        }
    }
}

impl Display for Rule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.stmts.iter().map(|s| s.to_string()).collect();
        write!(f, "{}", parts.join(" "))?;
        if let Some(c) = &self.comment {
            if !self.stmts.is_empty() {
                write!(f, " ")?;
            }
            write!(f, "comment \"{c}\"")?;
        }
        Ok(())
    }
}

/// nft's prio2str: a standard priority's name within ±10 of it, when it fits the hook.
pub(crate) fn priority(family: Family, hook: Hook, prio: i32) -> String {
    let std: &[(i32, &str)] = if family == Family::Bridge {
        &[
            (-300, "dstnat"),
            (-200, "filter"),
            (100, "out"),
            (300, "srcnat"),
        ]
    } else {
        &[
            (prio::RAW, "raw"),
            (prio::MANGLE, "mangle"),
            (prio::DSTNAT, "dstnat"),
            (prio::FILTER, "filter"),
            (prio::SECURITY, "security"),
            (prio::SRCNAT, "srcnat"),
        ]
    };
    let fits = |std: i32| -> bool {
        if family == Family::Bridge {
            return match std {
                -300 => hook == Hook::Prerouting,
                -200 => true,
                100 => hook == Hook::Output,
                300 => hook == Hook::Postrouting,
                _ => false,
            };
        }
        match std {
            prio::DSTNAT => hook == Hook::Prerouting,
            prio::SRCNAT => hook == Hook::Postrouting,
            _ => true,
        }
    };
    for (v, name) in std {
        if (prio - v).abs() <= 10 {
            if !fits(*v) {
                break;
            }
            let off = prio - v;
            return match off {
                0 => name.to_string(),
                o if o > 0 => format!("{name} + {o}"),
                o => format!("{name} - {}", -o),
            };
        }
    }
    prio.to_string()
}

impl Base {
    /// `type filter hook forward priority filter; policy accept;`
    pub fn header(&self, family: Family) -> String {
        let device = match self.hook.device() {
            Some(d) => format!(" device \"{}\"", d.as_str()),
            None => String::new(),
        };
        format!(
            "type {} hook {}{device} priority {}; policy {};",
            self.ty.as_str(),
            self.hook.as_str(),
            priority(family, self.hook, self.priority),
            match self.policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            }
        )
    }
}

impl Set {
    /// The set's declaration and elements, in the layout of `nft list table`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "\t{} {} {{\n\t\ttype {}",
            if self.data.is_some() { "map" } else { "set" },
            self.name,
            self.key
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(" . ")
        );
        match &self.data {
            Some(SetData::Verdict) => s.push_str(" : verdict"),
            Some(SetData::Values(v)) => {
                let names: Vec<&str> = v.iter().map(|t| t.name()).collect();
                let _ = write!(s, " : {}", names.join(" . "));
            }
            None => {}
        }
        s.push('\n');
        let mut flags = Vec::new();
        if self.flags.constant {
            flags.push("constant");
        }
        if self.flags.interval {
            flags.push("interval");
        }
        // "timeout" is implied by a default timeout.
        if self.flags.timeout && self.timeout.is_none() {
            flags.push("timeout");
        }
        if !flags.is_empty() {
            let _ = writeln!(s, "\t\tflags {}", flags.join(","));
        }
        if let Some(t) = self.timeout {
            let _ = writeln!(s, "\t\ttimeout {}", duration(t));
        }
        if self.flags.counter {
            s.push_str("\t\tcounter\n");
        }
        if let Some(c) = &self.comment {
            let _ = writeln!(s, "\t\tcomment \"{c}\"");
        }
        if !self.elements.is_empty() {
            let _ = writeln!(
                s,
                "\t\telements = {}",
                element_list(
                    &self.key,
                    self.flags.interval,
                    &self.elements,
                    false,
                    self.flags.counter
                )
            );
        }
        s.push_str("\t}\n");
        s
    }
}

impl Chain {
    /// The chain in the layout of `nft list table`.
    pub fn render(&self, family: Family) -> String {
        let mut s = format!("\tchain {} {{\n", self.name);
        if let Some(c) = &self.comment {
            let _ = writeln!(s, "\t\tcomment \"{c}\"");
        }
        if let Some(b) = &self.base {
            let _ = writeln!(s, "\t\t{}", b.header(family));
        }
        for r in &self.rules {
            let _ = writeln!(s, "\t\t{r}");
        }
        s.push_str("\t}\n");
        s
    }
}

impl Display for Table {
    /// The table in the layout of `nft list table`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {} {} {{", self.family.as_str(), self.name)?;
        let mut delim = "";
        if self.dormant {
            writeln!(f, "\tflags dormant")?;
            delim = "\n";
        }
        if let Some(c) = &self.comment {
            writeln!(f, "\tcomment \"{c}\"")?;
        }
        for s in &self.sets {
            write!(f, "{delim}{}", s.render())?;
            delim = "\n";
        }
        for c in &self.chains {
            write!(f, "{delim}{}", c.render(self.family))?;
            delim = "\n";
        }
        writeln!(f, "}}")
    }
}
