//! The datatypes of nftables values (nft's `TYPE_*`, datatype.h) and typed values of them.
//!
//! One table ([`DATATYPES`]) says, per datatype, its id (what set declarations carry, 6 bits per
//! component of a concatenation), its name in `nft` syntax, its length in bytes and the byte
//! order the kernel holds it in; a [`Value`] turns into the bytes of a register and back.

use std::net::{Ipv4Addr, Ipv6Addr};

/// How the kernel holds a value in a register: network order (addresses, ports) or the host's
/// own (marks, conntrack state, interface indexes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// Verdicts and concatenations (nft's BYTEORDER_INVALID).
    None,
    Host,
    Big,
}

impl ByteOrder {
    /// The number nft writes in a set's userdata (NFTNL_UDATA_SET_KEYBYTEORDER).
    pub fn udata(self) -> u32 {
        match self {
            ByteOrder::None => 0,
            ByteOrder::Host => 1,
            ByteOrder::Big => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Datatype {
    Verdict,
    NfProto,
    Ipv4Addr,
    Ipv6Addr,
    EtherAddr,
    EtherType,
    InetProto,
    InetService,
    IcmpType,
    Mark,
    Ifindex,
    ArpHrd,
    CtState,
    CtDir,
    CtStatus,
    Icmpv6Type,
    PktType,
    FibAddr,
    Boolean,
    Ifname,
    /// A 16-bit integer in host order, as nft's `integer` type holds `ct zone`.
    Integer16,
    /// 16 bits read from a packet as they stand (network order), as nft lists a raw load
    /// (`@th,192,16 != 0x201`).
    Bits16,
    /// 24 bits read from a packet as they stand (network order): a VXLAN header's VNI
    /// (`@th,96,24`).
    Bits24,
}

/// One datatype: (type, nft's TYPE_* id, name, bytes, byte order, bitmask?).
type Desc = (Datatype, u32, &'static str, usize, ByteOrder, bool);

/// Every datatype nsfw knows, with the facts of nftables' datatype.c.
pub const DATATYPES: &[Desc] = &[
    (Datatype::Verdict, 1, "verdict", 4, ByteOrder::None, false),
    (Datatype::NfProto, 2, "nf_proto", 1, ByteOrder::Host, false),
    (Datatype::Ipv4Addr, 7, "ipv4_addr", 4, ByteOrder::Big, false),
    (
        Datatype::Ipv6Addr,
        8,
        "ipv6_addr",
        16,
        ByteOrder::Big,
        false,
    ),
    (
        Datatype::EtherAddr,
        9,
        "ether_addr",
        6,
        ByteOrder::Big,
        false,
    ),
    (
        Datatype::EtherType,
        10,
        "ether_type",
        2,
        ByteOrder::Big,
        false,
    ),
    (
        Datatype::InetProto,
        12,
        "inet_proto",
        1,
        ByteOrder::Big,
        false,
    ),
    (
        Datatype::InetService,
        13,
        "inet_service",
        2,
        ByteOrder::Big,
        false,
    ),
    (
        Datatype::IcmpType,
        14,
        "icmp_type",
        1,
        ByteOrder::Big,
        false,
    ),
    (Datatype::Mark, 19, "mark", 4, ByteOrder::Host, false),
    (
        Datatype::Ifindex,
        20,
        "iface_index",
        4,
        ByteOrder::Host,
        false,
    ),
    (
        Datatype::ArpHrd,
        21,
        "iface_type",
        2,
        ByteOrder::Host,
        false,
    ),
    (Datatype::CtState, 26, "ct_state", 4, ByteOrder::Host, true),
    (Datatype::CtDir, 27, "ct_dir", 1, ByteOrder::Host, false),
    (
        Datatype::CtStatus,
        28,
        "ct_status",
        4,
        ByteOrder::Host,
        true,
    ),
    (
        Datatype::Icmpv6Type,
        29,
        "icmpv6_type",
        1,
        ByteOrder::Big,
        false,
    ),
    (Datatype::PktType, 31, "pkt_type", 1, ByteOrder::Host, false),
    (
        Datatype::FibAddr,
        38,
        "fib_addrtype",
        4,
        ByteOrder::Host,
        false,
    ),
    (Datatype::Boolean, 39, "boolean", 1, ByteOrder::Host, false),
    (Datatype::Ifname, 41, "ifname", 16, ByteOrder::Host, false),
    (Datatype::Integer16, 4, "integer", 2, ByteOrder::Host, false),
    (Datatype::Bits16, 4, "integer", 2, ByteOrder::Big, false),
    (Datatype::Bits24, 4, "integer", 3, ByteOrder::Big, false),
];

/// Bits per component in a concatenated key type (datatype.h TYPE_BITS).
const TYPE_BITS: u32 = 6;
/// The data type of a verdict map (NFT_DATA_VERDICT).
pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

impl Datatype {
    fn desc(self) -> &'static Desc {
        // Every variant has a row; the fallback is never taken.
        DATATYPES
            .iter()
            .find(|d| d.0 == self)
            .unwrap_or(&DATATYPES[0])
    }
    pub fn id(self) -> u32 {
        self.desc().1
    }
    pub fn name(self) -> &'static str {
        self.desc().2
    }
    /// Length in bytes.
    pub fn size(self) -> usize {
        self.desc().3
    }
    pub fn byteorder(self) -> ByteOrder {
        self.desc().4
    }
    /// Flag types (`ct state`, `ct status`): `ct state established,related` tests any bit.
    pub fn is_bitmask(self) -> bool {
        self.desc().5
    }
    /// An integer the kernel holds in host order: lookups in interval sets and range
    /// comparisons need it converted to network order first.
    pub fn host_integer(self) -> bool {
        self.byteorder() == ByteOrder::Host && self != Datatype::Ifname
    }
    /// Types nft prints ranges of as prefixes (`10.0.0.0/8`, `0x00000010/28`): DTYPE_F_PREFIX.
    pub fn prefix_type(self) -> bool {
        matches!(
            self,
            Datatype::Ipv4Addr | Datatype::Ipv6Addr | Datatype::Mark
        )
    }
    pub fn from_id(id: u32) -> Option<Datatype> {
        DATATYPES.iter().find(|d| d.1 == id).map(|d| d.0)
    }
}

/// The key type of a set of these components: nft's concat_subtype_add, first component in the
/// highest bits.
pub fn concat_type(types: &[Datatype]) -> u32 {
    types
        .iter()
        .fold(0u32, |acc, t| (acc << TYPE_BITS) | t.id())
}

/// The components of a (possibly concatenated) key type.
pub fn split_type(mut ty: u32) -> Option<Vec<Datatype>> {
    let mut v = Vec::new();
    while ty != 0 {
        v.push(Datatype::from_id(ty & ((1 << TYPE_BITS) - 1))?);
        ty >>= TYPE_BITS;
    }
    v.reverse();
    (!v.is_empty()).then_some(v)
}

/// Registers are 32 bits wide: each component of a concatenation starts on a new one.
pub fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// The key length of a concatenation: every component padded to whole registers.
pub fn concat_len(types: &[Datatype]) -> usize {
    if types.len() == 1 {
        types[0].size()
    } else {
        types.iter().map(|t| padded(t.size())).sum()
    }
}

/// A typed value. Its datatype decides its bytes, its byte order and how `nft` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    NfProto(u8),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Ether([u8; 6]),
    EtherType(u16),
    /// An IP protocol number (`tcp` is 6).
    Proto(u8),
    /// A port.
    Port(u16),
    IcmpType(u8),
    Mark(u32),
    Ifindex(u32),
    ArpHrd(u16),
    CtState(u32),
    CtDir(u8),
    CtStatus(u32),
    Icmpv6Type(u8),
    PktType(u8),
    FibAddr(u32),
    Bool(bool),
    Ifname(String),
    /// A conntrack zone.
    U16(u16),
    /// Two bytes of a packet, big-endian (`0x201`: bytes 02 01).
    Bits16(u16),
    /// Three bytes of a packet, big-endian (a VNI: `100` is bytes 00 00 64); only the low
    /// 24 bits are kept.
    Bits24(u32),
}

impl Value {
    pub fn datatype(&self) -> Datatype {
        match self {
            Value::NfProto(_) => Datatype::NfProto,
            Value::Ipv4(_) => Datatype::Ipv4Addr,
            Value::Ipv6(_) => Datatype::Ipv6Addr,
            Value::Ether(_) => Datatype::EtherAddr,
            Value::EtherType(_) => Datatype::EtherType,
            Value::Proto(_) => Datatype::InetProto,
            Value::Port(_) => Datatype::InetService,
            Value::IcmpType(_) => Datatype::IcmpType,
            Value::Mark(_) => Datatype::Mark,
            Value::Ifindex(_) => Datatype::Ifindex,
            Value::ArpHrd(_) => Datatype::ArpHrd,
            Value::CtState(_) => Datatype::CtState,
            Value::CtDir(_) => Datatype::CtDir,
            Value::CtStatus(_) => Datatype::CtStatus,
            Value::Icmpv6Type(_) => Datatype::Icmpv6Type,
            Value::PktType(_) => Datatype::PktType,
            Value::FibAddr(_) => Datatype::FibAddr,
            Value::Bool(_) => Datatype::Boolean,
            Value::Ifname(_) => Datatype::Ifname,
            Value::U16(_) => Datatype::Integer16,
            Value::Bits16(_) => Datatype::Bits16,
            Value::Bits24(_) => Datatype::Bits24,
        }
    }

    /// The bytes of the value as a register holds it (its datatype's length and byte order).
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16);
        self.put(&mut b, false);
        b
    }

    /// Appends [`Value::bytes`] (`big_endian`: [`Value::big_endian_bytes`]) to `out`: sets
    /// of 10,000 elements are encoded without an allocation per value.
    pub fn put(&self, out: &mut Vec<u8>, big_endian: bool) {
        let start = out.len();
        match self {
            Value::NfProto(v)
            | Value::Proto(v)
            | Value::IcmpType(v)
            | Value::CtDir(v)
            | Value::Icmpv6Type(v)
            | Value::PktType(v) => out.push(*v),
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::Ipv4(a) => out.extend_from_slice(&a.octets()),
            Value::Ipv6(a) => out.extend_from_slice(&a.octets()),
            Value::Ether(m) => out.extend_from_slice(m),
            Value::EtherType(v) | Value::Port(v) | Value::Bits16(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Value::Bits24(v) => out.extend_from_slice(&v.to_be_bytes()[1..]),
            Value::ArpHrd(v) | Value::U16(v) => out.extend_from_slice(&v.to_ne_bytes()),
            Value::Mark(v)
            | Value::Ifindex(v)
            | Value::CtState(v)
            | Value::CtStatus(v)
            | Value::FibAddr(v) => out.extend_from_slice(&v.to_ne_bytes()),
            Value::Ifname(s) => {
                let n = s.len().min(15);
                out.extend_from_slice(&s.as_bytes()[..n]);
                out.resize(start + 16, 0);
            }
        }
        if big_endian && self.datatype().host_integer() && cfg!(target_endian = "little") {
            out[start..].reverse();
        }
    }

    /// A value of `ty` from register bytes (exactly the datatype's length; interface names may
    /// be shorter).
    pub fn from_bytes(ty: Datatype, b: &[u8]) -> Option<Value> {
        let arr = |n: usize| -> Option<&[u8]> { (b.len() == n).then_some(b) };
        let u32ne = || -> Option<u32> { Some(u32::from_ne_bytes(arr(4)?.try_into().ok()?)) };
        let u16be = || -> Option<u16> { Some(u16::from_be_bytes(arr(2)?.try_into().ok()?)) };
        let u8v = || -> Option<u8> { Some(arr(1)?[0]) };
        Some(match ty {
            Datatype::Verdict => return None,
            Datatype::NfProto => Value::NfProto(u8v()?),
            Datatype::Ipv4Addr => Value::Ipv4(Ipv4Addr::from(<[u8; 4]>::try_from(arr(4)?).ok()?)),
            Datatype::Ipv6Addr => Value::Ipv6(Ipv6Addr::from(<[u8; 16]>::try_from(arr(16)?).ok()?)),
            Datatype::EtherAddr => Value::Ether(arr(6)?.try_into().ok()?),
            Datatype::EtherType => Value::EtherType(u16be()?),
            Datatype::InetProto => Value::Proto(u8v()?),
            Datatype::InetService => Value::Port(u16be()?),
            Datatype::IcmpType => Value::IcmpType(u8v()?),
            Datatype::Mark => Value::Mark(u32ne()?),
            Datatype::Ifindex => Value::Ifindex(u32ne()?),
            Datatype::ArpHrd => Value::ArpHrd(u16::from_ne_bytes(arr(2)?.try_into().ok()?)),
            Datatype::CtState => Value::CtState(u32ne()?),
            Datatype::CtDir => Value::CtDir(u8v()?),
            Datatype::CtStatus => Value::CtStatus(u32ne()?),
            Datatype::Icmpv6Type => Value::Icmpv6Type(u8v()?),
            Datatype::PktType => Value::PktType(u8v()?),
            Datatype::FibAddr => Value::FibAddr(u32ne()?),
            Datatype::Boolean => Value::Bool(*b.first()? != 0),
            Datatype::Integer16 => Value::U16(u16::from_ne_bytes(arr(2)?.try_into().ok()?)),
            Datatype::Bits16 => Value::Bits16(u16::from_be_bytes(arr(2)?.try_into().ok()?)),
            Datatype::Bits24 => {
                let b = arr(3)?;
                Value::Bits24(u32::from_be_bytes([0, b[0], b[1], b[2]]))
            }
            Datatype::Ifname => {
                if b.len() > 16 {
                    return None;
                }
                let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                Value::Ifname(String::from_utf8(b[..end].to_vec()).ok()?)
            }
        })
    }

    /// The bytes in network order, as interval sets and range comparisons hold them (nft
    /// converts host-order integers with a byteorder expression first).
    pub fn big_endian_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16);
        self.put(&mut b, true);
        b
    }

    /// The inverse of [`Value::big_endian_bytes`].
    pub fn from_big_endian(ty: Datatype, b: &[u8]) -> Option<Value> {
        if ty.host_integer() && cfg!(target_endian = "little") {
            let mut r = b.to_vec();
            r.reverse();
            Value::from_bytes(ty, &r)
        } else {
            Value::from_bytes(ty, b)
        }
    }
}

/// Arithmetic on big-endian byte strings, for interval ends (`end + 1`) and prefixes.
pub mod be {
    /// `b + 1`; None when it overflows (the end of the range is the largest value).
    pub fn succ(b: &[u8]) -> Option<Vec<u8>> {
        let mut v = b.to_vec();
        for byte in v.iter_mut().rev() {
            if *byte == 0xff {
                *byte = 0;
            } else {
                *byte += 1;
                return Some(v);
            }
        }
        None
    }

    /// `b - 1`; None for zero.
    pub fn pred(b: &[u8]) -> Option<Vec<u8>> {
        let mut v = b.to_vec();
        for byte in v.iter_mut().rev() {
            if *byte == 0 {
                *byte = 0xff;
            } else {
                *byte -= 1;
                return Some(v);
            }
        }
        None
    }

    /// A mask of `plen` leading one bits over `len` bytes.
    pub fn prefix_mask(len: usize, plen: u32) -> Vec<u8> {
        (0..len)
            .map(|i| {
                let bits = plen.saturating_sub(i as u32 * 8).min(8);
                if bits == 0 { 0 } else { 0xffu8 << (8 - bits) }
            })
            .collect()
    }

    /// The prefix length when `mask` is leading ones then zeros.
    pub fn mask_prefix(mask: &[u8]) -> Option<u32> {
        let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
        (prefix_mask(mask.len(), ones) == mask).then_some(ones)
    }

    /// When [lo, hi] is exactly one prefix block, its length.
    pub fn range_prefix(lo: &[u8], hi: &[u8]) -> Option<u32> {
        if lo.len() != hi.len() {
            return None;
        }
        (0..=lo.len() as u32 * 8).rev().find(|plen| {
            let mask = prefix_mask(lo.len(), *plen);
            and(lo, &mask) == lo && or_not(lo, &mask) == hi
        })
    }

    pub fn and(a: &[u8], m: &[u8]) -> Vec<u8> {
        a.iter().zip(m).map(|(x, y)| x & y).collect()
    }
    pub fn or_not(a: &[u8], m: &[u8]) -> Vec<u8> {
        a.iter().zip(m).map(|(x, y)| x | !y).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_types_pack_six_bits_per_component() {
        let t = [
            Datatype::Ipv4Addr,
            Datatype::InetProto,
            Datatype::InetService,
        ];
        assert_eq!(concat_type(&t), 0x730d);
        assert_eq!(split_type(0x730d), Some(t.to_vec()));
        assert_eq!(concat_len(&t), 12);
        assert_eq!(concat_type(&[Datatype::Ifname, Datatype::Ifname]), 0xa69);
    }

    /// A VNI is three bytes on the wire and in a register (padded to four in a
    /// concatenation), and reads back as itself.
    #[test]
    fn a_vni_is_three_big_endian_bytes() {
        let v = Value::Bits24(0x0001_0064);
        assert_eq!(v.bytes(), vec![1, 0, 0x64]);
        assert_eq!(Value::from_bytes(Datatype::Bits24, &[1, 0, 0x64]), Some(v));
        assert_eq!(concat_len(&[Datatype::InetService, Datatype::Bits24]), 8);
    }

    #[test]
    fn prefixes_and_ranges() {
        assert_eq!(be::prefix_mask(4, 20), vec![0xff, 0xff, 0xf0, 0]);
        assert_eq!(be::mask_prefix(&[0xff, 0xf0, 0, 0]), Some(12));
        assert_eq!(be::mask_prefix(&[0xff, 0x0f, 0, 0]), None);
        assert_eq!(
            be::range_prefix(&[10, 0, 0, 0], &[10, 255, 255, 255]),
            Some(8)
        );
        assert_eq!(be::range_prefix(&[10, 0, 0, 0], &[10, 0, 0, 9]), None);
        assert_eq!(be::range_prefix(&[1, 2, 3, 4], &[1, 2, 3, 4]), Some(32));
        assert_eq!(be::succ(&[0, 0xff]), Some(vec![1, 0]));
        assert_eq!(be::succ(&[0xff, 0xff]), None);
    }

    #[test]
    fn values_round_trip_through_bytes() {
        for v in [
            Value::Ipv4("10.1.2.3".parse().expect("ipv4")),
            Value::Port(8080),
            Value::Mark(0x10),
            Value::Ifname("br0".into()),
            Value::CtState(6),
            Value::Proto(6),
        ] {
            assert_eq!(Value::from_bytes(v.datatype(), &v.bytes()), Some(v.clone()));
            assert_eq!(
                Value::from_big_endian(v.datatype(), &v.big_endian_bytes()),
                Some(v.clone())
            );
        }
        assert_eq!(Value::Port(80).bytes(), vec![0, 80]);
        assert_eq!(Value::Mark(0x10).big_endian_bytes(), vec![0, 0, 0, 0x10]);
    }
}
