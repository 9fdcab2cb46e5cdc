//! `compile` of every shipped ruleset and of routed, dual-stack, published, policy and
//! impaired files into the desired resources: the whole of each as a golden file
//! (tests/golden/compile/NAME.txt, a line per resource), and the parts that carry meaning
//! asserted by name.

use super::{BRNF, IP_FORWARD, IP6_FORWARD, compile};
use crate::resources::{Desired, LinkKind, Node};
use crate::testdata::{MORE, RULESETS, golden, ruleset, topology};

/// One line per resource, in a stable order.
fn summary(d: &Desired) -> String {
    let mut out = vec![format!("topology {} mark {}", d.topology, d.mark)];
    let mut node = |place: &str, n: &Node| {
        for l in n.links.values() {
            let mac = l.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
            let mut flags: Vec<&str> = Vec::new();
            for (on, name) in [
                (l.marked, "marked"),
                (l.no_link_local, "no-link-local"),
                (l.nf_call, "nf-call"),
                (l.hairpin, "hairpin"),
                (l.isolated, "isolated"),
            ] {
                if on {
                    flags.push(name);
                }
            }
            out.push(format!(
                "{place} link {} {:?} mtu {} mac {mac} master {} [{}] ({})",
                l.name,
                l.kind,
                l.mtu,
                l.master.as_deref().unwrap_or("-"),
                flags.join(" "),
                l.origin
            ));
        }
        for (i, a) in &n.addrs {
            out.push(format!("{place} addr {i} {a}"));
        }
        for r in n.routes.values() {
            out.push(format!("{place} route {r}"));
        }
        for (k, s) in &n.sysctls {
            let fresh = s.fresh.map(|f| format!(" (fresh {f})")).unwrap_or_default();
            let restore = if s.restore { " (restored)" } else { "" };
            out.push(format!("{place} sysctl {k} = {}{fresh}{restore}", s.value));
        }
        for (i, e) in &n.netem {
            out.push(format!("{place} netem {i} {e:?}"));
        }
        for (i, r) in &n.rates {
            out.push(format!("{place} rate {i} {r}"));
        }
    };
    node("host", &d.host);
    for (name, n) in &d.namespaces {
        node(name, n);
    }
    for (ns, c) in &d.resolv {
        out.push(format!("resolv {ns}: {c:?}"));
    }
    for b in &d.overlap_ok {
        out.push(format!("overlap allowed on {b}"));
    }
    out.join("\n") + "\n"
}

#[test]
fn every_shipped_ruleset_compiles_to_its_golden_resources() {
    for (name, text) in RULESETS {
        let d = compile(&topology(name, text));
        golden(&format!("compile/{name}.txt"), &summary(&d));
    }
}

#[test]
fn routed_dual_stack_published_policy_and_impaired_files_compile_to_their_golden_resources() {
    for (name, text) in MORE {
        let d = compile(&topology(name, text));
        golden(&format!("compile/{name}.txt"), &summary(&d));
    }
}

/// `(interface, address)` of a node, as text.
fn addrs(n: &Node) -> Vec<String> {
    n.addrs.iter().map(|(i, a)| format!("{i} {a}")).collect()
}

fn routes(n: &Node) -> Vec<String> {
    n.routes.values().map(|r| r.to_string()).collect()
}

#[test]
fn the_lab_is_a_bridge_with_the_gateway_and_a_veth_pair_per_namespace() {
    let d = compile(&ruleset("lab"));
    assert_eq!(d.mark, "nsfw:lab");
    let br0 = &d.host.links["br0"];
    assert_eq!(
        (&br0.kind, br0.mtu, br0.marked),
        (&LinkKind::Bridge, 1500, true)
    );
    assert_eq!(addrs(&d.host), ["br0 10.10.0.1/24"]);
    for (ns, addr) in [("ns1", "10.10.0.2/24"), ("ns2", "10.10.0.3/24")] {
        let host = &d.host.links[&format!("veth-{ns}")];
        let peer = LinkKind::Veth {
            peer_ns: ns.into(),
            peer: "eth0".into(),
            keep_mac: false,
        };
        assert_eq!((&host.kind, host.master.as_deref()), (&peer, Some("br0")));
        let n = &d.namespaces[ns];
        assert_eq!(addrs(n), [format!("eth0 {addr}")]);
        assert_eq!(routes(n), ["default via 10.10.0.1 dev eth0"]);
        // No IPv6 on the segment: none at all inside, and no forwarding.
        assert_eq!(n.sysctls["net.ipv6.conf.eth0.disable_ipv6"].value, "1");
        assert_eq!(n.sysctls[IP_FORWARD].value, "0");
    }
    // It masquerades: the host forwards, and puts its own value back at the last flush.
    let fwd = &d.host.sysctls[IP_FORWARD];
    assert_eq!((fwd.value.as_str(), fwd.restore), ("1", true));
    assert!(d.resolv.is_empty());
}

#[test]
fn the_router_gets_forwarding_both_interfaces_and_the_host_its_route_behind_it() {
    let d = compile(&ruleset("router"));
    assert_eq!(routes(&d.host), ["10.20.0.0/24 via 10.10.0.254 dev br0"]);
    // br1 is L2-only: no address of the host's on it.
    assert!(d.host.links.contains_key("br1"));
    assert!(!addrs(&d.host).iter().any(|a| a.starts_with("br1 ")));
    let r = &d.namespaces["router"];
    assert_eq!(addrs(r), ["eth0 10.10.0.254/24", "eth1 10.20.0.1/24"]);
    assert_eq!(routes(r), ["default via 10.10.0.1 dev eth0"]);
    assert_eq!(r.sysctls[IP_FORWARD].value, "1");
    assert_eq!(
        routes(&d.namespaces["ns3"]),
        ["default via 10.20.0.1 dev eth0"]
    );
}

#[test]
fn dual_stack_namespaces_get_both_families_and_a_link_local_address_without_ra() {
    let d = compile(&topology("dual", crate::testdata::DUAL));
    assert!(d.host.sysctls.contains_key(IP6_FORWARD));
    let br0 = addrs(&d.host);
    assert!(br0.contains(&"br0 fd00:10::1/64".to_string()), "{br0:?}");
    assert!(br0.iter().any(|a| a.starts_with("br0 fe80::")), "{br0:?}");
    for ns in ["ns1", "ns2"] {
        let n = &d.namespaces[ns];
        let a = addrs(n);
        assert!(
            a.iter().any(|a| a.starts_with("eth0 fd00:10::")),
            "{ns}: {a:?}"
        );
        assert!(
            a.iter().any(|a| a.starts_with("eth0 fe80::")),
            "{ns}: {a:?}"
        );
        let r = routes(n);
        assert!(
            r.contains(&"default via fd00:10::1 dev eth0".into()),
            "{ns}: {r:?}"
        );
        assert_eq!(n.sysctls["net.ipv6.conf.eth0.accept_ra"].value, "0");
        // Enabled outright: the segment may have had IPv6 disabled before an edit gave it.
        assert_eq!(n.sysctls["net.ipv6.conf.eth0.disable_ipv6"].value, "0");
    }
}

#[test]
fn policy_files_hand_bridged_traffic_to_the_ip_hooks_and_set_br_netfilter() {
    let d = compile(&topology("pol", crate::testdata::POLICY));
    assert!(d.host.links["br0"].nf_call);
    let brnf = &d.host.sysctls[BRNF];
    assert_eq!((brnf.value.as_str(), brnf.restore), ("1", true));
    // Without a policy, a bridge leaves its bridged traffic alone.
    assert!(!compile(&ruleset("lab")).host.links["br0"].nf_call);
}

#[test]
fn published_namespaces_get_hairpin_and_dns_its_resolv_conf() {
    let d = compile(&topology("pub", crate::testdata::PUBLISH));
    assert!(d.host.links["veth-web"].hairpin);
    // 127.0.0.1 is published: the bridge routes localnet.
    let key = "net.ipv4.conf.br0.route_localnet";
    assert_eq!(d.host.sysctls[key].value, "1");
    let resolv = &d.resolv["dns"];
    assert!(resolv.contains("nameserver 192.0.2.53\n"), "{resolv}");
    assert!(resolv.contains("nameserver 2001:db8::53\n"), "{resolv}");
    assert!(
        crate::owner::resolv_owner(resolv) == Some("pub"),
        "{resolv}"
    );
    let d = compile(&ruleset("egress-sandbox"));
    assert_eq!(d.resolv.keys().collect::<Vec<_>>(), ["jail"]);
}

#[test]
fn segments_keep_their_mtu_names_and_macs() {
    let d = compile(&ruleset("two-segments"));
    assert_eq!(d.host.links["br-lab"].mtu, 1400);
    assert_eq!(d.namespaces["probe"].links["lab0"].mtu, 1400);
    let db = d.namespaces["db"].links["eth0"].mac.map(|m| m.to_string());
    assert_eq!(db.as_deref(), Some("02:00:00:00:20:02"));
    let d = compile(&topology("slow", crate::testdata::IMPAIRED));
    let e = d.namespaces["far"].netem["eth0"];
    assert_eq!((e.latency_us, e.loss_ppm), (Some(20_000), Some(10_000)));
}
