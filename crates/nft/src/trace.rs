//! nftables trace events (NFT_MSG_TRACE on the NFNLGRP_NFTRACE group): what the kernel reports
//! for a packet whose `meta nftrace` is set — each rule that gave a verdict, each chain
//! returned from, each base chain's policy — decoded from the message's attributes
//! (`enum nft_trace_attributes`, linux/netfilter/nf_tables.h). `nft monitor trace` reads the
//! same messages.

/// The multicast group of trace events.
pub const NFNLGRP_NFTRACE: u32 = libc::NFNLGRP_NFTRACE as u32;
/// NFT_MSG_TRACE in the nf_tables subsystem (NFNL_SUBSYS_NFTABLES = 10).
pub const NFT_MSG_TRACE: u16 = (10 << 8) | libc::NFT_MSG_TRACE as u16;

const TABLE: u16 = 1;
const CHAIN: u16 = 2;
const RULE_HANDLE: u16 = 3;
const TYPE: u16 = 4;
const VERDICT: u16 = 5;
const ID: u16 = 6;
const TRANSPORT_HEADER: u16 = 9;
const IIF: u16 = 10;
const OIF: u16 = 12;
const NFPROTO: u16 = 15;
const POLICY: u16 = 16;
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;

/// What an event reports (`enum nft_trace_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A base chain's policy decided.
    Policy,
    /// The end of a chain was reached: back to the chain that jumped.
    Return,
    /// A rule gave a verdict (or a jump).
    Rule,
    Other(u32),
}

/// A verdict as the kernel encodes it (NF_* and NFT_* codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Stolen,
    Queue,
    Continue,
    Break,
    Jump(String),
    Goto(String),
    Return,
    Other(i32),
}

impl Verdict {
    fn of(code: i32, chain: Option<String>) -> Verdict {
        let chain = chain.unwrap_or_default();
        match code {
            0 => Verdict::Drop,
            1 => Verdict::Accept,
            2 => Verdict::Stolen,
            3 => Verdict::Queue,
            -1 => Verdict::Continue,
            -2 => Verdict::Break,
            -3 => Verdict::Jump(chain),
            -4 => Verdict::Goto(chain),
            -5 => Verdict::Return,
            // NF_QUEUE with a queue number in the upper bits.
            c if c & 0xff == 3 => Verdict::Queue,
            c => Verdict::Other(c),
        }
    }

    /// Whether it ends the packet's way through this hook (accept ends only this base chain).
    pub fn is_final(&self) -> bool {
        matches!(self, Verdict::Drop | Verdict::Stolen | Verdict::Queue)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accept => write!(f, "accept"),
            Verdict::Drop => write!(f, "drop"),
            Verdict::Stolen => write!(f, "stolen"),
            Verdict::Queue => write!(f, "queue"),
            Verdict::Continue => write!(f, "continue"),
            Verdict::Break => write!(f, "break"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Return => write!(f, "return"),
            Verdict::Other(c) => write!(f, "verdict {c}"),
        }
    }
}

/// One trace event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The packet's trace id: every event of one packet (in one network namespace) shares it.
    pub id: u32,
    /// The table's family, as NFPROTO (nfgenmsg's family).
    pub family: u8,
    pub table: String,
    pub chain: String,
    /// The rule's handle, for rule events.
    pub handle: Option<u64>,
    pub kind: Kind,
    pub verdict: Option<Verdict>,
    /// The hook's protocol family (NFPROTO_IPV4 for an inet table's IPv4 packet).
    pub nfproto: Option<u32>,
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    /// A policy event's policy (0 drop, 1 accept).
    pub policy: Option<u32>,
    /// The packet's transport header as the event saw it (ports, ICMP type), when the hook
    /// knew it: whose packet an event is about, since anyone may set `meta nftrace`.
    pub transport: Option<Vec<u8>>,
}

/// Attributes of a netlink attribute stream: (type without the nested/byte-order flags, value).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    out
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn text(v: &[u8]) -> String {
    let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// Decodes one NFT_MSG_TRACE message (the bytes after its `nlmsghdr`); None when it is not
/// one (too short, no id).
pub fn parse(payload: &[u8]) -> Option<Event> {
    let family = *payload.first()?;
    let mut e = Event {
        id: 0,
        family,
        table: String::new(),
        chain: String::new(),
        handle: None,
        kind: Kind::Other(0),
        verdict: None,
        nfproto: None,
        iif: None,
        oif: None,
        policy: None,
        transport: None,
    };
    let mut id = None;
    for (ty, v) in attrs(payload.get(4..)?) {
        match ty {
            TABLE => e.table = text(v),
            CHAIN => e.chain = text(v),
            RULE_HANDLE => e.handle = Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?)),
            TYPE => {
                e.kind = match be32(v)? {
                    1 => Kind::Policy,
                    2 => Kind::Return,
                    3 => Kind::Rule,
                    k => Kind::Other(k),
                }
            }
            VERDICT => {
                let mut code = None;
                let mut chain = None;
                for (t, x) in attrs(v) {
                    match t {
                        VERDICT_CODE => code = be32(x).map(|c| c as i32),
                        VERDICT_CHAIN => chain = Some(text(x)),
                        _ => {}
                    }
                }
                e.verdict = code.map(|c| Verdict::of(c, chain));
            }
            ID => id = be32(v),
            IIF => e.iif = be32(v),
            OIF => e.oif = be32(v),
            NFPROTO => e.nfproto = be32(v),
            POLICY => e.policy = be32(v),
            TRANSPORT_HEADER => e.transport = Some(v.to_vec()),
            _ => {}
        }
    }
    e.id = id?;
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let len = 4 + v.len();
        let mut out = Vec::new();
        out.extend((len as u16).to_ne_bytes());
        out.extend(ty.to_ne_bytes());
        out.extend(v);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    #[test]
    fn a_rule_event_decodes() {
        let mut m = vec![1u8, 0, 0, 0];
        m.extend(attr(TABLE, b"nsfw_lab\0"));
        m.extend(attr(CHAIN, b"forward\0"));
        m.extend(attr(RULE_HANDLE, &42u64.to_be_bytes()));
        m.extend(attr(TYPE, &3u32.to_be_bytes()));
        let mut verdict = attr(VERDICT_CODE, &(-3i32).to_be_bytes());
        verdict.extend(attr(VERDICT_CHAIN, b"policy\0"));
        m.extend(attr(VERDICT | 0x8000, &verdict));
        m.extend(attr(ID, &7u32.to_be_bytes()));
        m.extend(attr(NFPROTO, &2u32.to_be_bytes()));
        let e = parse(&m).expect("an event");
        assert_eq!(e.id, 7);
        assert_eq!(e.family, 1);
        assert_eq!(
            (e.table.as_str(), e.chain.as_str()),
            ("nsfw_lab", "forward")
        );
        assert_eq!(e.handle, Some(42));
        assert_eq!(e.kind, Kind::Rule);
        assert_eq!(e.verdict, Some(Verdict::Jump("policy".into())));
        assert_eq!(e.nfproto, Some(2));
        assert_eq!(parse(&m[..4]), None, "no id");
    }
}
