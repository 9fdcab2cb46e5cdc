//! An announcement a killed run noted in the record and never made: the next apply makes it
//! where the address is held, drops it where not, and a flush drops it.

use std::os::fd::AsFd;

use super::super::Target;
use super::{applied, assert_in_sync, run};
use crate::plan::Owner;
use crate::state::{Announcement, Record};
use crate::testdata::{Scratch, ruleset};

/// The record as a run of the lab killed before announcing `net` on ns1:eth0 leaves it.
fn killed_before_announcing(dir: &Scratch, net: &str) {
    let mut rec = Record::load(dir.fd.as_fd());
    rec.pending
        .entry("lab".into())
        .or_default()
        .announce
        .insert(Announcement {
            ns: Some("ns1".into()),
            ifname: "eth0".into(),
            net: net.parse().expect("net"),
        });
    rec.save(dir.fd.as_fd()).expect("save");
}

#[test]
fn a_noted_announcement_is_made_once_where_its_address_is_held_and_dropped_where_not() {
    let t = ruleset("lab");
    let (mut k, dir) = applied(&t);
    killed_before_announcing(&dir, "10.10.0.2/24");
    let (out, said) = run(&mut k, &dir, &Target::apply(&t)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        said,
        [
            "~ announce 10.10.0.2 on ns1:eth0 (gratuitous ARP: the address may have been held before)"
        ]
    );
    assert_eq!(out.changes, 1);
    let rec = Record::load(dir.fd.as_fd());
    assert!(rec.pending.values().all(|p| p.is_empty()), "{rec:?}");
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
    // An address nobody holds (the file changed since): nothing to announce, and the note goes.
    killed_before_announcing(&dir, "10.10.0.99/24");
    assert_in_sync(&mut k, &dir, &t);
    let rec = Record::load(dir.fd.as_fd());
    assert!(rec.pending.values().all(|p| p.is_empty()), "{rec:?}");
    // A flush has nothing to announce: the note goes with the rest.
    killed_before_announcing(&dir, "10.10.0.2/24");
    let (_, said) = run(&mut k, &dir, &Target::flush(Owner::Topology("lab"))).expect("flush");
    assert!(!said.iter().any(|l| l.contains("announce")), "{said:#?}");
    assert_eq!(Record::load(dir.fd.as_fd()), Record::default());
}

/// A run stopped between making an address another namespace held in an earlier run and
/// announcing it leaves the announcement noted (it was, before anything changed); the next
/// run makes it, and only it.
#[test]
fn a_run_stopped_before_announcing_leaves_it_to_the_next() {
    let file = |who: &str| {
        let t = format!(
            "name = \"lab\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n[namespaces.peer]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\n{who}"
        );
        crate::testdata::topology("lab", &t)
    };
    let at5 =
        |ns: &str| format!("[namespaces.{ns}]\nbridge = \"br0\"\naddress = \"10.10.0.5/24\"\n");
    let (mut k, dir) = applied(&file(&at5("old")));
    super::apply(&mut k, &dir, &file(""));
    let new = file(&at5("new"));
    k.stop_before_announcing = true;
    let e = run(&mut k, &dir, &Target::apply(&new))
        .err()
        .expect("stopped");
    assert!(
        format!("{e:#}").contains("killed before announcing"),
        "{e:#}"
    );
    let noted = Record::load(dir.fd.as_fd()).pending_of(&|_| true).announce;
    let want = Announcement {
        ns: Some("new".into()),
        ifname: "eth0".into(),
        net: "10.10.0.5/24".parse().expect("net"),
    };
    assert_eq!(noted, [want].into());
    k.stop_before_announcing = false;
    let (_, said) = run(&mut k, &dir, &Target::apply(&new)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        said,
        [
            "~ announce 10.10.0.5 on new:eth0 (gratuitous ARP: the address may have been held before)"
        ]
    );
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &new);
}
