//! `guard`: under --adopt the plan removes nothing that was not nsfw's, and refuses to remove
//! what nsfw already holds.

use super::{Adoption, guard};
use crate::kinds::{DelAddr, DeleteLink, DeleteNamespace, Step};
use crate::plan::Plan;
use crate::plumbing::{Link, NsObs, Observed};
use crate::resources::Place;

fn ns(owner: Option<&str>) -> NsObs {
    NsObs {
        owner: owner.map(str::to_string),
        ..Default::default()
    }
}

fn del_ns(name: &str) -> Step {
    DeleteNamespace {
        name: name.into(),
        takes: vec![],
        why: "not in the file",
    }
    .into()
}

/// A topology `lab` applied (or adopted) before, and a file of the same name that names
/// none of it (what `import` wrote after the adoption): refused, nothing removed.
#[test]
fn adopt_refuses_to_remove_what_nsfw_already_holds() {
    let mut o = Observed::default();
    o.namespaces.insert("ns1".into(), ns(Some("nsfw:lab")));
    o.host.links.push(Link {
        name: "br0".into(),
        kind: Some("bridge".into()),
        alias: Some("nsfw:lab".into()),
        ..Link::bare(3, true, false)
    });
    let mut p = Plan {
        steps: vec![
            del_ns("ns1"),
            DeleteLink {
                place: Place::Host,
                name: "br0".into(),
                index: 3,
                kind: Some("bridge".into()),
                why: "not in the file",
            }
            .into(),
        ],
        ..Default::default()
    };
    guard(&mut p, &o, &Adoption::default(), "lab.toml");
    assert_eq!(p.conflicts.len(), 2, "{:?}", p.conflicts);
    assert!(
        p.conflicts[0].contains("namespace ns1"),
        "{:?}",
        p.conflicts
    );
    assert!(p.conflicts[1].contains("br0"), "{:?}", p.conflicts);
}

/// What the adopted namespace holds beyond the file (a second address, a route, a second
/// veth) stays, and is named.
#[test]
fn adopt_keeps_what_the_file_does_not_name_in_an_adopted_namespace() {
    let mut o = Observed::default();
    o.namespaces.insert("ns1".into(), ns(None));
    let mut a = Adoption::default();
    a.pending.namespaces.insert("ns1".into());
    let at = Place::Ns("ns1".into());
    let mut p = Plan {
        steps: vec![
            DelAddr {
                place: at.clone(),
                ifname: "eth0".into(),
                net: "10.10.0.50/24".parse().unwrap(),
            }
            .into(),
            DeleteLink {
                place: at.clone(),
                name: "extra0".into(),
                index: 9,
                kind: Some("veth".into()),
                why: "not in the file",
            }
            .into(),
        ],
        ..Default::default()
    };
    guard(&mut p, &o, &a, "lab.toml");
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("10.10.0.50/24"), "{:?}", p.warnings);
}

/// ip_forward found on may have been on before the lab (Docker): the adoption keeps the
/// original the plan recorded ("1"), so a flush leaves it on, and says so.
#[test]
fn adopted_ip_forward_stays_on_at_flush() {
    let k = crate::compile::IP_FORWARD.to_string();
    let mut p = Plan::default();
    for r in [&mut p.record_during, &mut p.record_after] {
        let e = r.sysctls.entry(k.clone()).or_default();
        e.original = "1".into();
        e.users.insert("lab".into());
    }
    let a = Adoption {
        sysctls: vec![k.clone()],
        ..Default::default()
    };
    super::finish(&mut p, a, "lab");
    assert_eq!(p.record_after.sysctls[&k].original, "1");
    assert_eq!(p.record_during.sysctls[&k].original, "1");
    assert!(
        p.warnings.iter().any(|w| w.contains("leaves it on")),
        "{:?}",
        p.warnings
    );
}
