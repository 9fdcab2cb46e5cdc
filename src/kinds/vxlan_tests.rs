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
