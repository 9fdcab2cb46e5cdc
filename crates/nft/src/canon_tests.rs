use super::*;
use crate::elems::{concat_bytes, to_kernel};
use crate::ir::{SetFlags, Verdict};
use crate::types::Value;

const EVERY_TYPE: [Datatype; 20] = [
    Datatype::Verdict,
    Datatype::NfProto,
    Datatype::Ipv4Addr,
    Datatype::Ipv6Addr,
    Datatype::EtherAddr,
    Datatype::EtherType,
    Datatype::InetProto,
    Datatype::InetService,
    Datatype::IcmpType,
    Datatype::Mark,
    Datatype::Ifindex,
    Datatype::ArpHrd,
    Datatype::CtState,
    Datatype::CtDir,
    Datatype::CtStatus,
    Datatype::Icmpv6Type,
    Datatype::PktType,
    Datatype::FibAddr,
    Datatype::Boolean,
    Datatype::Ifname,
];

/// What `canon_bytes` must agree with: decoding and encoding again.
fn round_trip(types: &[Datatype], b: &[u8], interval: bool) -> Option<Vec<u8>> {
    concat_bytes(types, &split(types, b, interval).ok()?, interval).ok()
}

/// Byte strings of `len` that exercise every special case: zeros, ones, a name with garbage
/// after its NUL, a full-length name, invalid UTF-8, a boolean of 2.
fn samples(len: usize) -> Vec<Vec<u8>> {
    let mut v = vec![vec![0; len], vec![0xff; len], vec![1; len], vec![2; len]];
    let mut name = vec![0u8; len];
    for (i, c) in b"eth0".iter().enumerate().take(len) {
        name[i] = *c;
    }
    v.push(name.clone());
    if len > 6 {
        name[6] = b'x';
        v.push(name);
    }
    let mut counting: Vec<u8> = (1..=len as u8).collect();
    v.push(counting.clone());
    if let Some(last) = counting.last_mut() {
        *last = 0;
    }
    v.push(counting);
    v
}

#[test]
fn canonical_bytes_are_exactly_what_decoding_and_encoding_give() {
    let mut shapes: Vec<Vec<Datatype>> = EVERY_TYPE.iter().map(|t| vec![*t]).collect();
    for t in EVERY_TYPE {
        shapes.push(vec![Datatype::InetProto, t]);
        shapes.push(vec![t, Datatype::Ipv4Addr]);
    }
    for types in &shapes {
        let len = concat_len(types);
        for b in samples(len).into_iter().chain([vec![0; len + 1]]) {
            for interval in [false, true] {
                let want = round_trip(types, &b, interval);
                let got = canon_bytes(types, b.clone(), interval).ok();
                assert_eq!(got, want, "{types:?} {b:?} interval {interval}");
                if is_canonical(types, &b) {
                    assert_eq!(want.as_deref(), Some(&b[..]), "{types:?} {b:?}");
                }
            }
        }
    }
}

fn ports(interval: bool) -> Set {
    Set {
        name: "p".into(),
        key: vec![Datatype::InetService],
        flags: SetFlags {
            interval,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn port_range(a: u16, b: u16) -> Element {
    Element {
        key: vec![Value::Port(a)],
        key_end: (a != b).then(|| vec![Value::Port(b)]),
        ..Default::default()
    }
}

#[test]
fn nft_and_nsfw_encodings_of_an_interval_set_are_one_canonical_form() {
    let set = ports(true);
    let els = vec![
        port_range(80, 80),
        port_range(1000, 1999),
        port_range(2000, 65535),
    ];
    // nsfw writes the ranges without nft's leading end element.
    let nsfw = to_kernel(&set, &els, false).expect("encode");
    let nft = to_kernel(&set, &els, true).expect("encode");
    assert_ne!(nsfw, nft);
    let a = canonical(&set, nsfw).expect("canonical");
    let b = canonical(&set, nft).expect("canonical");
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|k| !k.end && k.key_end.is_some()));
    assert_eq!(decode_all(&set, &a).expect("decode"), els);
    // Shuffled as a dump may give them, the same.
    let mut shuffled = to_kernel(&set, &els, true).expect("encode");
    shuffled.reverse();
    assert_eq!(canonical(&set, shuffled).expect("canonical"), a);
}

#[test]
fn defaults_and_unused_parts_are_dropped() {
    let set = Set {
        timeout: Some(60_000),
        data: Some(SetData::Verdict),
        ..ports(false)
    };
    let k = |timeout, chain: Option<&str>| KElem {
        key: vec![0, 80],
        key_end: None,
        end: false,
        data: Some(KData::Verdict(
            crate::expr::verdict::ACCEPT,
            chain.map(str::to_string),
        )),
        timeout,
        comment: None,
    };
    let a = canonical(&set, vec![k(Some(60_000), Some("x"))]).expect("canonical");
    let b = canonical(&set, vec![k(None, None)]).expect("canonical");
    assert_eq!(a, b);
    assert_eq!(
        decode(&set, &a[0]).expect("decode").data,
        Some(ElemData::Verdict(Verdict::Accept))
    );
    // A timeout of its own stays.
    let c = canonical(&set, vec![k(Some(5_000), None)]).expect("canonical");
    assert_ne!(a, c);
}

#[test]
fn elements_that_decode_to_nothing_are_errors() {
    let set = Set {
        key: vec![Datatype::Ifname],
        ..ports(false)
    };
    let bad = KElem {
        key: vec![0xff; 16],
        key_end: None,
        end: false,
        data: None,
        timeout: None,
        comment: None,
    };
    assert!(canonical(&set, vec![bad.clone()]).is_err());
    assert!(from_kernel(&set, &[bad]).is_err());
}
