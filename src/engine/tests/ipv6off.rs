//! IPv6 switched off by hand on a link the file gives IPv6 (`disable_ipv6` = 1, which takes
//! the link's IPv6 addresses and routes and refuses them back): named, switched on again
//! before the addresses are put back, in one run. A link the file gives no IPv6 keeps the
//! setting.

use super::super::Target;
use super::{applied, assert_in_sync, run};
use crate::resources::Place;
use crate::testdata::{DUAL, ruleset, topology};

/// `disable_ipv6` = 1 written by hand on `dev` in `place`, as the kernel takes it.
fn switch_off(k: &mut super::Fake, place: &Place, dev: &str) {
    let key = crate::plumbing::sysctl::key_for("net.ipv6.conf", dev, "disable_ipv6");
    let node = match place {
        Place::Host => &mut k.net.host,
        Place::Ns(ns) => &mut k.net.namespaces.get_mut(ns).expect("namespace").node,
    };
    super::super::fake::ipv6off::set(node, &key, "1");
}

#[test]
fn ipv6_switched_off_by_hand_is_switched_on_before_its_addresses_come_back() {
    let t = topology("dual", DUAL);
    let (mut k, dir) = applied(&t);
    let v6_routes = |k: &super::Fake| {
        let ns1 = &k.net.namespaces.get("ns1").expect("ns1").node;
        ns1.routes
            .iter()
            .filter(|r| r.dst.is_ipv6() && !r.kernel)
            .count()
    };
    assert!(v6_routes(&k) > 0, "ns1 has an IPv6 default route");
    switch_off(&mut k, &Place::Host, "br0");
    switch_off(&mut k, &Place::Ns("ns1".into()), "eth0");
    assert_eq!(v6_routes(&k), 0, "the kernel takes them with IPv6");
    let (out, said) = run(&mut k, &dir, &Target::apply(&t)).unwrap_or_else(|e| panic!("{e:#}"));
    let at = |line: &str| {
        said.iter()
            .position(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("{line:?} not said:\n{}", said.join("\n")))
    };
    let why = " (IPv6 was switched off; the file gives the link IPv6)";
    let host = at("~ sysctl net.ipv6.conf.br0.disable_ipv6: 1 → 0");
    assert!(said[host].ends_with(why), "{}", said[host]);
    assert!(host < at("+ address fd00:10::1/64 on br0"), "{said:#?}");
    let inside = at("~ sysctl ns1:net.ipv6.conf.eth0.disable_ipv6: 1 → 0");
    assert!(
        inside < at("+ address fd00:10::2/64 on ns1:eth0"),
        "{said:#?}"
    );
    assert!(out.changes > 0);
    assert!(v6_routes(&k) > 0, "put back: {said:#?}");
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
}

#[test]
fn ipv6_switched_off_on_a_bridge_the_file_gives_none_stays_off() {
    let t = ruleset("lab");
    let (mut k, dir) = applied(&t);
    switch_off(&mut k, &Place::Host, "br0");
    assert_in_sync(&mut k, &dir, &t);
}
