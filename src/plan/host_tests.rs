//! `plan::plan` and the host-wide parts of a plan: link-local addressing of host veth ends,
//! the record's sysctl users (with the fixtures of `tests`).

use super::tests::{ONE, VETH, addr, desired, in_sync, link, plan_one, steps};
use super::{Owner, plan};
use crate::resources::Desired;
use crate::state::Record;

/// A host veth end left with link-local addressing (a run killed before `addrgenmode none`
/// reached it) is not in sync: the setting is put back and the kernel's fe80 address goes.
#[test]
fn a_host_veth_with_link_local_addressing_is_repaired() {
    let d = desired(ONE);
    let mut o = in_sync(&d);
    let key = crate::compile::addr_gen_mode("veth-ns1");
    o.host.sysctls.insert(key.clone(), Some("1".into()));
    assert_eq!(plan_one(&o), Vec::<String>::new());
    o.host.sysctls.insert(key, Some("0".into()));
    o.host.addrs.push(addr(VETH, "fe80::fa:1/64"));
    assert_eq!(
        plan_one(&o),
        [
            "~ sysctl net.ipv6.conf.veth-ns1.addr_gen_mode: 0 → 1",
            "- address fe80::fa:1/64 on veth-ns1",
        ]
    );
}

/// A sysctl user that left nothing behind (its namespaces deleted by hand, no flush) is
/// dropped, so the last flush puts the value back; one still on the host keeps it.
#[test]
fn a_sysctl_user_that_vanished_does_not_keep_the_value() {
    let d = desired(ONE);
    let nothing = Desired {
        topology: d.topology.clone(),
        mark: d.mark.clone(),
        source: "flush".into(),
        ..Default::default()
    };
    let mut rec = Record::default();
    rec.sysctls.insert(
        crate::compile::IP_FORWARD.into(),
        crate::state::Saved {
            original: "0".into(),
            users: ["one".to_string(), "gone".to_string()].into(),
        },
    );
    let mut o = in_sync(&d);
    o.host
        .sysctls
        .insert(crate::compile::IP_FORWARD.into(), Some("1".into()));
    let p = plan(&nothing, &o, &rec, Owner::Topology("one"));
    assert!(
        steps(&p)
            .contains(&"~ sysctl net.ipv4.ip_forward: 1 → 0 (its value before nsfw)".to_string()),
        "{p}"
    );
    assert!(p.record_after.sysctls.is_empty(), "{:?}", p.record_after);
    // "gone" still has its table (a topology of [host] settings alone has nothing else), or
    // a link: it keeps forwarding on.
    let mut kept = o.clone();
    kept.tables_of.insert("gone".into());
    let mut gone = link(9, "br9", Some("bridge"), Some("nsfw:gone"));
    gone.mac = None;
    o.host.links.push(gone);
    for o in [kept, o] {
        let p = plan(&nothing, &o, &rec, Owner::Topology("one"));
        assert!(!steps(&p).iter().any(|s| s.contains("ip_forward")), "{p}");
        assert_eq!(
            p.record_after.sysctls[crate::compile::IP_FORWARD].users,
            ["gone".to_string()].into()
        );
    }
}

/// Two names holding one namespace (a mount of one over the other) are a conflict naming
/// both, whichever name the file has; the same namespace under one name is not.
#[test]
fn two_names_of_one_namespace_are_a_conflict() {
    let d = desired(ONE);
    let mut o = in_sync(&d);
    let ns1 = o.namespaces["ns1"].clone();
    if let Some(n) = o.namespaces.get_mut("ns1") {
        n.id = Some((4, 4026532000));
    }
    assert_eq!(plan_one(&o), Vec::<String>::new());
    for other in ["ns0", "ns2"] {
        let mut o = o.clone();
        let mut alias = ns1.clone();
        alias.id = Some((4, 4026532000));
        o.namespaces.insert(other.into(), alias);
        let conflicts: Vec<String> = plan_one(&o)
            .into_iter()
            .filter(|s| s.starts_with("conflict: "))
            .collect();
        let (a, b) = if other < "ns1" {
            (other, "ns1")
        } else {
            ("ns1", other)
        };
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert!(
            conflicts[0].contains(&format!(
                "/run/netns/{a} and /run/netns/{b} hold one namespace"
            )),
            "{conflicts:?}"
        );
    }
}

/// A host route the file names (`[host] routes`) where another owner's route is: at the same
/// destination and metric over a link that is not nsfw's, it is left alone and only this
/// route left out, named (apply exits 4, flush never takes it); a route of someone else's
/// with a lower metric makes nsfw's unused, which a warning says. Once it is gone, nsfw's is
/// made.
#[test]
fn another_owners_host_route_is_left_alone_and_named() {
    let text =
        format!("{ONE}[host]\nroutes = [{{ to = \"10.20.0.0/24\", via = \"10.10.0.254\" }}]\n");
    let d = desired(&text);
    let mut o = in_sync(&d);
    o.host.links.push(link(30, "up0", Some("veth"), None));
    let mut theirs = super::tests::route("10.20.0.0/24", None, 30, false);
    (theirs.ours, theirs.proto) = (false, 4);
    o.host.routes.push(theirs.clone());
    let rec = Record::default();
    let p = plan(&d, &o, &rec, Owner::Topology("one"));
    assert!(!steps(&p).iter().any(|s| s.contains("10.20.0.0/24")), "{p}");
    assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
    assert!(
        p.skipped[0].contains("host route 10.20.0.0/24: a route of someone else's holds it (dev up0, proto 4): left alone"),
        "{:?}",
        p.skipped
    );
    // Lower metric: nsfw's is made (or kept), and the other comes first: said.
    theirs.metric = 0;
    let mut o6 = in_sync(&d);
    o6.host.links.push(link(30, "up0", Some("veth"), None));
    let mut ours = super::tests::route("10.20.0.0/24", Some("10.10.0.254"), 10, false);
    ours.metric = 5;
    // (An IPv6 route of nsfw's has metric 1024; the file cannot give an IPv4 one a metric.)
    let mut d5 = d.clone();
    for r in d5.host.routes.values_mut() {
        r.metric = 5;
    }
    o6.host.routes.extend([theirs, ours]);
    let p = plan(&d5, &o6, &rec, Owner::Topology("one"));
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("comes first (dev up0, metric 0)")),
        "{:?}",
        p.warnings
    );
    // Gone: nsfw's is made.
    let o = in_sync(&d);
    assert!(
        steps(&plan(&d, &o, &rec, Owner::Topology("one")))
            .iter()
            .any(|s| s.starts_with("+ route") && s.contains("10.20.0.0/24")),
    );
}
