//! The VXLAN kinds' text, JSON, stage and requests, for review (`tests/golden/kinds/vxlan.txt`,
//! `NSFW_BLESS=1` writes it): kept apart from the other kinds' goldens so that each kind's
//! golden changes alone.

use std::fmt::Write as _;

use super::{AddFdb, At, CreateVxlan, DelFdb, Indexes, Step};
use crate::plumbing::Via;
use crate::topology::Mac;

fn steps() -> Vec<Step> {
    let peer = "192.0.2.11".parse().expect("ip");
    vec![
        Step::CreateVxlan(CreateVxlan {
            name: "vx100".into(),
            id: 100,
            local: "192.0.2.10".parse().expect("ip"),
            port: 4789,
            mtu: 1450,
            mac: Mac([2, 0, 0, 0, 0, 0x64]),
            master: "br0".into(),
        }),
        Step::AddFdb(AddFdb {
            link: "vx100".into(),
            dst: peer,
        }),
        Step::DelFdb(DelFdb {
            link: "vx100".into(),
            index: 12,
            dst: "2001:db8::12".parse().expect("ip"),
            via: Via {
                port: Some(9999),
                vni: None,
                dev: None,
            },
            why: "not a peer in the file",
        }),
    ]
}

#[test]
fn the_vxlan_kinds_read_and_lower_as_before() {
    let ix: Indexes = [("br0".to_string(), 10), ("vx100".to_string(), 12)].into();
    let at = At::new("nsfw:lab", &ix);
    let mut out = String::new();
    for s in steps() {
        let json = serde_json::to_string(&s.json()).expect("json");
        let (stage, mark, object) = (s.stage(), s.mark(), s.object());
        writeln!(out, "{s}\n  {stage:?} {mark} [{object}]\n  {json}").expect("write");
        for r in s.requests(&at).expect("requests").expect("built") {
            let ok = if r.ok.is_empty() {
                String::new()
            } else {
                format!(" ok_if {:?}", r.ok)
            };
            writeln!(
                out,
                "  {} [flags {:#x}{ok}]\n    {:?}",
                r.what, r.flags, r.msg
            )
            .expect("write");
        }
    }
    crate::testdata::golden("kinds/vxlan.txt", &out);
}

/// The kernel's defaults, as a tunnel made with only id, local and port dumps them, are not
/// odd; each attribute set otherwise is, named as `ip link` names it (the first one kept).
#[test]
fn an_attribute_off_the_kernels_default_is_named() {
    let mut x = crate::plumbing::VxlanObs::new(100, None, 4789);
    for (ty, v) in [
        (2u16, &[0u8; 4][..]),
        (3, &0u32.to_ne_bytes()[..]),
        (8, &300u32.to_ne_bytes()[..]),
        (10, &[0, 0, 0, 0][..]),
        (18, &[1][..]),
        (28, &[0][..]),
        (31, &[1][..]),
    ] {
        x.note(ty, v);
    }
    assert_eq!(x.odd_name(), None);
    for (ty, v, name) in [
        (28u16, &[1u8][..], "ttl inherit"),
        (28, &[][..], "ttl inherit"),
        (3, &2u32.to_ne_bytes()[..], "dev"),
        (8, &100u32.to_ne_bytes()[..], "ageing"),
        (10, &[0x03, 0xe8, 0x07, 0xd0][..], "srcport"),
        (18, &[0][..], "noudpcsum"),
        (6, &[1][..], "tos"),
        (31, &[0][..], "nolocalbypass"),
    ] {
        let mut x = crate::plumbing::VxlanObs::new(100, None, 4789);
        x.note(ty, v);
        x.note(8, &100u32.to_ne_bytes());
        assert_eq!(x.odd_name(), Some(name), "{ty}");
    }
}
