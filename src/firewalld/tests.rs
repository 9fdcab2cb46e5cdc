use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn zones(v: &[(&str, &str)]) -> Firewalld {
    Firewalld::Running(
        v.iter()
            .map(|(i, z)| (i.to_string(), z.to_string()))
            .collect(),
    )
}

fn rec(v: &[(&str, &str)]) -> Record {
    Record {
        firewalld: v
            .iter()
            .map(|(i, t)| (i.to_string(), t.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn lab(t: &str) -> bool {
    t == "lab"
}

#[test]
fn binds_what_is_in_no_zone_and_records_it_first() {
    let p = plan(
        "lab",
        &set(&["br0"]),
        &zones(&[("br0", "")]),
        &rec(&[]),
        &lab,
    );
    assert_eq!(
        p.changes,
        vec![Change {
            add: true,
            iface: "br0".into()
        }]
    );
    assert_eq!(p.during.get("br0").map(String::as_str), Some("lab"));
    assert_eq!(p.after, p.during);
    assert_eq!(
        p.changes[0].to_string(),
        "+ interface br0 (runtime; not in a firewalld zone)"
    );
}

#[test]
fn in_sync_when_bound_and_leaves_others_zones_alone() {
    let r = rec(&[("br0", "lab")]);
    let p = plan(
        "lab",
        &set(&["br0"]),
        &zones(&[("br0", "trusted")]),
        &r,
        &lab,
    );
    assert!(p.changes.is_empty() && p.warnings.is_empty());
    assert_eq!(p.after, r.firewalld);
    // Someone put br1 in `internal`: it stays there, said, and is not nsfw's any more.
    let r = rec(&[("br1", "lab")]);
    let p = plan(
        "lab",
        &set(&["br1"]),
        &zones(&[("br1", "internal")]),
        &r,
        &lab,
    );
    assert!(p.changes.is_empty());
    assert!(
        p.warnings[0].contains("zone `internal`"),
        "{:?}",
        p.warnings
    );
    assert!(p.after.is_empty());
    // Someone else bound br2 to trusted: nothing to do, and flush will not take it out.
    let p = plan(
        "lab",
        &set(&["br2"]),
        &zones(&[("br2", "trusted")]),
        &rec(&[]),
        &lab,
    );
    assert!(p.changes.is_empty() && p.after.is_empty());
}

#[test]
fn flush_unbinds_only_the_records_bindings_of_its_topology() {
    let r = rec(&[("br0", "lab"), ("br9", "other"), ("gone0", "lab")]);
    let fw = zones(&[("br0", "trusted"), ("gone0", ""), ("br9", "trusted")]);
    let p = plan("lab", &BTreeSet::new(), &fw, &r, &lab);
    assert_eq!(
        p.changes,
        vec![Change {
            add: false,
            iface: "br0".into()
        }]
    );
    // Removed from the record after the run, not before: a run killed in between unbinds
    // it next time.
    assert_eq!(p.during, r.firewalld);
    assert_eq!(
        p.after,
        BTreeMap::from([("br9".to_string(), "other".to_string())])
    );
}

#[test]
fn without_firewalld_nothing_is_asked_and_the_record_lets_go() {
    let r = rec(&[("br0", "lab"), ("old0", "lab")]);
    let p = plan("lab", &set(&["br0"]), &Firewalld::Absent, &r, &lab);
    assert!(p.changes.is_empty() && p.warnings.is_empty());
    assert_eq!(
        p.after,
        BTreeMap::from([("br0".to_string(), "lab".to_string())])
    );
    let p = plan(
        "lab",
        &set(&["br0"]),
        &Firewalld::Unreachable("no bus".into()),
        &r,
        &lab,
    );
    assert!(p.changes.is_empty());
    assert!(p.warnings[0].contains("no bus"));
    assert_eq!(p.after, r.firewalld);
    assert_eq!(to_ask(&set(&["br0"]), &r, &lab), vec!["br0", "old0"]);
}

#[test]
fn bridges_are_bound_but_one_carrying_a_physical_port() {
    let text = format!(
        "{}\n[bridges.br1]\naddress = \"10.20.0.1/24\"\nports = [\"eth9\"]\n",
        crate::testdata::RULESETS[1].1
    );
    let t = crate::topology::parse(&text, std::path::Path::new("t.toml")).expect("parses");
    assert_eq!(interfaces(&crate::compile::compile(&t)), set(&["br0"]));
}
