//! The protocol dependencies nft writes before a header field (`meta nfproto ipv4` before
//! `ip saddr` in an inet table, `meta l4proto tcp` before `tcp dport`), decided once for both
//! directions: [`super::lower`] writes them when the rule has not established them yet, and
//! [`super::raise`] swallows exactly these again.

use super::fields::{
    ARPHRD_ETHER, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Field, MetaKey, NFPROTO_ARP, NFPROTO_IPV4,
    NFPROTO_IPV6, Proto,
};
use super::ir::{Expr, Family, Match, Op, Rhs};
use super::types::Value;

/// What the rule has established about the packet so far: nft adds a dependency only when it
/// is not already known, and reads header fields by it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoCtx {
    /// NFPROTO_IPV4 / NFPROTO_IPV6.
    pub network: Option<u8>,
    /// The IP protocol number.
    pub transport: Option<u8>,
    /// The link layer is Ethernet.
    pub ether: bool,
}

impl ProtoCtx {
    /// What the table's family says by itself.
    pub fn of(family: Family) -> ProtoCtx {
        match family {
            Family::Ip => ProtoCtx {
                network: Some(NFPROTO_IPV4),
                ..Default::default()
            },
            Family::Ip6 => ProtoCtx {
                network: Some(NFPROTO_IPV6),
                ..Default::default()
            },
            Family::Bridge | Family::Netdev => ProtoCtx {
                ether: true,
                ..Default::default()
            },
            Family::Inet => ProtoCtx::default(),
        }
    }

    /// Learns from a match: `meta nfproto ipv4`, `meta l4proto tcp`, `ip protocol tcp`, ...
    pub fn learn(&mut self, m: &Match) {
        let (Op::Eq, Rhs::Value(v)) = (m.op, &m.right) else {
            return;
        };
        match (&m.left, v) {
            (Expr::Meta(MetaKey::Nfproto), Value::NfProto(p)) => self.network = Some(*p),
            (Expr::Meta(MetaKey::Protocol), Value::EtherType(t))
            | (Expr::Payload(Field::EtherType), Value::EtherType(t)) => {
                self.network = match *t {
                    ETH_P_IP => Some(NFPROTO_IPV4),
                    ETH_P_IPV6 => Some(NFPROTO_IPV6),
                    ETH_P_ARP => Some(NFPROTO_ARP),
                    _ => None,
                }
            }
            (Expr::Meta(MetaKey::L4proto), Value::Proto(p))
            | (Expr::Payload(Field::IpProtocol), Value::Proto(p))
            | (Expr::Payload(Field::Ip6Nexthdr), Value::Proto(p)) => self.transport = Some(*p),
            (Expr::Meta(MetaKey::Iiftype), Value::ArpHrd(ARPHRD_ETHER)) => self.ether = true,
            _ => {}
        }
    }
}

fn eq(left: Expr, v: Value) -> Match {
    Match {
        left,
        op: Op::Eq,
        right: Rhs::Value(v),
    }
}

/// The network-layer dependency `nft` writes before a field of that layer in this family.
pub fn network_dependency(family: Family, nfproto: u8) -> Result<Option<Match>, String> {
    Ok(match family {
        Family::Inet if nfproto != NFPROTO_ARP => {
            Some(eq(Expr::Meta(MetaKey::Nfproto), Value::NfProto(nfproto)))
        }
        Family::Bridge | Family::Netdev => Some(eq(
            Expr::Meta(MetaKey::Protocol),
            Value::EtherType(match nfproto {
                NFPROTO_IPV4 => ETH_P_IP,
                NFPROTO_ARP => ETH_P_ARP,
                _ => ETH_P_IPV6,
            }),
        )),
        Family::Ip if nfproto == NFPROTO_IPV4 => None,
        Family::Ip6 if nfproto == NFPROTO_IPV6 => None,
        f => {
            return Err(format!(
                "{} headers cannot be matched in a table of family {}",
                match nfproto {
                    NFPROTO_IPV4 => "ip",
                    NFPROTO_ARP => "arp",
                    _ => "ip6",
                },
                f.as_str()
            ));
        }
    })
}

/// The dependencies `nft` writes before a field of `proto`, given what is known: e.g.
/// `meta nfproto ipv6` and `meta l4proto ipv6-icmp` before `icmpv6 type` in an inet table.
pub fn dependencies(family: Family, proto: Proto, ctx: &ProtoCtx) -> Result<Vec<Match>, String> {
    let mut deps = Vec::new();
    if proto == Proto::Ether && !ctx.ether {
        deps.push(eq(
            Expr::Meta(MetaKey::Iiftype),
            Value::ArpHrd(ARPHRD_ETHER),
        ));
    }
    if let Some(net) = proto.network()
        && ctx.network != Some(net)
        && let Some(d) = network_dependency(family, net)?
    {
        deps.push(d);
    }
    if let Some(l4) = proto.l4()
        && ctx.transport != Some(l4)
    {
        deps.push(eq(Expr::Meta(MetaKey::L4proto), Value::Proto(l4)));
    }
    Ok(deps)
}

/// The protocols whose fields an expression reads, in order.
pub fn protos(e: &Expr) -> Vec<Proto> {
    match e {
        Expr::Payload(f) => vec![f.proto()],
        Expr::Concat(v) => v.iter().flat_map(protos).collect(),
        _ => Vec::new(),
    }
}
