use netlink_packet_core::{Emitable, Parseable};

use super::*;

fn sent(n: &Netem) -> TcMessage {
    let req = set_netem("a", 7, n);
    let RouteNetlinkMessage::NewQueueDiscipline(m) = req.msg else {
        panic!("not a new qdisc");
    };
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf);
    TcMessage::parse(&buf[..]).expect("parse our own message")
}

#[test]
fn encoding_round_trips() {
    for n in [
        Netem::default(),
        Netem {
            latency_us: Some(20_000),
            jitter_us: Some(5_000),
            loss_ppm: Some(10_000),
            rate_bps: Some(10_000_000),
        },
        Netem {
            latency_us: Some(u32::MAX),
            jitter_us: Some(7),
            loss_ppm: Some(999_999),
            rate_bps: Some(u64::MAX - 7),
        },
    ] {
        assert_eq!(parse(&sent(&n)), Some((7, Some(n.normalized()))));
    }
    // Zeros read back as absent: the kernel does not tell them apart.
    let zeros = Netem {
        latency_us: Some(0),
        loss_ppm: Some(0),
        ..Netem::default()
    };
    assert_eq!(parse(&sent(&zeros)), Some((7, Some(Netem::default()))));
    assert!(zeros.is_empty());
}

/// A qdisc someone put under nsfw's tbf is theirs: the interface's tree is named, not read as
/// nsfw's drift (whose repair would delete it); nsfw's own netem-over-tbf is still nsfw's.
#[test]
fn a_foreign_child_under_nsfws_tbf_is_not_nsfws() {
    let q = |parent: TcHandle, major: u16, kind: &str| {
        let mut m = TcMessage::default();
        m.header.index = 3;
        m.header.parent = parent;
        m.header.handle = handle(major, 0);
        m.attributes.push(TcAttribute::Kind(kind.to_string()));
        m
    };
    let root = q(TcHandle::ROOT, QDISC_ROOT, "tbf");
    let theirs = q(handle(QDISC_ROOT, 1), 0x20, "pfifo");
    let got = roots(&[root.clone(), theirs]);
    assert_eq!(got.get(&3), Some(&RootObs::Under("pfifo 20:".into())));
    let netem = q(TcHandle::ROOT, QDISC_ROOT, "netem");
    let ours = q(handle(QDISC_ROOT, 1), QDISC_CHILD, "tbf");
    let got = roots(&[netem, ours.clone()]);
    assert!(matches!(got.get(&3), Some(RootObs::Ours(_))), "{got:?}");
    // Below nsfw's inner tbf, anything is someone else's.
    let deeper = q(handle(QDISC_CHILD, 1), 0x30, "bfifo");
    let got = roots(&[root, ours, deeper]);
    assert_eq!(got.get(&3), Some(&RootObs::Under("bfifo 30:".into())));
}
