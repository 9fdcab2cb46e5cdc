//! A bridge stretched over VXLAN, converged over the fake kernel: made from nothing with its
//! peers, a peer the file drops deleted (and only it), a deleted peer or tunnel put back, a
//! tunnel of another VNI made again, and a `local` the host lacks refused before anything.

use std::os::fd::AsFd;

use super::fake::Fake;
use super::{Target, converge_in};
use crate::plumbing::{Addr, Link};
use crate::testdata::{Scratch, topology};

fn lab(peers: &str, id: u32) -> crate::topology::Topology {
    topology(
        "vx",
        &format!(
            "name = 'vx'\n[bridges.br0]\naddress = '10.0.0.1/24'\nvxlan = {{ id = {id}, local = '192.0.2.10', peers = [{peers}] }}\n[namespaces.a1]\nbridge = 'br0'\n"
        ),
    )
}

/// A fake host whose uplink carries 192.0.2.10.
fn host() -> Fake {
    let mut k = Fake::new();
    k.net.o.host.links.push(Link {
        name: "eth0".into(),
        mtu: 1500,
        ..Link::bare(2, true, false)
    });
    k.net.o.host.addrs.push(Addr {
        index: 2,
        net: "192.0.2.10/24".parse().expect("net"),
        flags: 0x80,
        scope: 0,
        valid: u32::MAX,
        preferred: u32::MAX,
        brd: None,
        metric: 0,
    });
    k
}

/// One apply of `t`: the plan's lines.
fn apply(
    k: &mut Fake,
    dir: &Scratch,
    t: &crate::topology::Topology,
) -> anyhow::Result<Vec<String>> {
    let mut said = Vec::new();
    converge_in(
        k,
        dir.fd.as_fd(),
        &Target::apply(t),
        &mut |l| said.push(l),
        &mut |_, _| {},
    )?;
    Ok(said)
}

fn peers(k: &Fake) -> Vec<String> {
    k.net.o.host.fdb.iter().map(|f| f.dst.to_string()).collect()
}

#[test]
fn a_tunnel_and_its_peers_converge_and_follow_the_file() {
    let (mut k, dir) = (host(), Scratch::new());
    let two = lab("'192.0.2.11', '192.0.2.12'", 100);
    let said = apply(&mut k, &dir, &two).expect("apply").join("\n");
    assert!(
        said.contains("+ vxlan vx100 id 100 local 192.0.2.10 dstport 4789 mtu 1450 master br0"),
        "{said}"
    );
    assert!(said.contains("~ link vx100: master none → br0"), "{said}");
    assert_eq!(peers(&k), ["192.0.2.11", "192.0.2.12"]);
    let vx = k.net.o.host.link("vx100").expect("vx100");
    let br = k.net.o.host.link("br0").expect("br0");
    assert_eq!((vx.master, vx.mtu, br.mtu), (Some(br.index), 1450, 1450));
    assert_eq!(
        apply(&mut k, &dir, &two).expect("again"),
        Vec::<String>::new()
    );
    // A peer dropped from the file: its entry alone goes.
    let one = lab("'192.0.2.11'", 100);
    let said = apply(&mut k, &dir, &one).expect("one").join("\n");
    assert!(
        said.contains("- fdb vx100 00:00:00:00:00:00 dst 192.0.2.12: not a peer in the file"),
        "{said}"
    );
    assert_eq!(peers(&k), ["192.0.2.11"]);
    // Drift: the entry deleted behind nsfw's back is put back.
    k.net.o.host.fdb.clear();
    let said = apply(&mut k, &dir, &one).expect("repair").join("\n");
    assert!(
        said.contains("+ fdb vx100 00:00:00:00:00:00 dst 192.0.2.11"),
        "{said}"
    );
    // Another VNI: the tunnel is made again, with its peer.
    let other = lab("'192.0.2.11'", 200);
    let said = apply(&mut k, &dir, &other).expect("vni").join("\n");
    assert!(
        said.contains("- link vx100 (vxlan)") && said.contains("+ vxlan vx200 id 200"),
        "{said}"
    );
    assert_eq!(peers(&k), ["192.0.2.11"]);
    assert_eq!(
        apply(&mut k, &dir, &other).expect("in sync"),
        Vec::<String>::new()
    );
}

/// A peer's entry with the right address but another port or VNI (someone's `bridge fdb
/// append … dst 192.0.2.11 port 9999`) is named and replaced, not taken for the peer.
#[test]
fn a_peer_entry_with_another_port_or_vni_is_replaced() {
    let (mut k, dir) = (host(), Scratch::new());
    let one = lab("'192.0.2.11'", 100);
    apply(&mut k, &dir, &one).expect("apply");
    for via in [
        crate::plumbing::Via {
            port: Some(9999),
            ..Default::default()
        },
        crate::plumbing::Via {
            vni: Some(300),
            ..Default::default()
        },
    ] {
        k.net.o.host.fdb[0].via = via;
        let said = apply(&mut k, &dir, &one).expect("repair").join("\n");
        assert!(
            said.contains(&format!(
                "- fdb vx100 00:00:00:00:00:00 dst 192.0.2.11{via}: the peer with another port"
            )) && said.contains("+ fdb vx100 00:00:00:00:00:00 dst 192.0.2.11"),
            "{said}"
        );
        assert_eq!(k.net.o.host.fdb.len(), 1);
        assert!(k.net.o.host.fdb[0].via.is_own());
    }
    // Beside the right one, a second entry to the peer on another port goes too.
    let mut extra = k.net.o.host.fdb[0];
    extra.via.port = Some(9999);
    k.net.o.host.fdb.push(extra);
    let said = apply(&mut k, &dir, &one).expect("extra").join("\n");
    assert!(
        said.contains("dst 192.0.2.11 port 9999: the peer"),
        "{said}"
    );
    assert!(!said.contains("+ fdb"), "{said}");
    assert_eq!(
        apply(&mut k, &dir, &one).expect("in sync"),
        Vec::<String>::new()
    );
}

/// What the kernel would refuse part-way is refused before anything: another VXLAN link
/// with the VNI and port (whatever its local address), a peer that is `local`'s subnet's
/// broadcast address.
#[test]
fn a_tunnel_the_kernel_would_refuse_is_a_conflict_before_anything_changes() {
    let (mut k, dir) = (host(), Scratch::new());
    k.net.o.host.links.push(Link {
        name: "vxfoo".into(),
        vxlan: Some(crate::plumbing::VxlanObs::new(
            100,
            Some("192.0.2.99".parse().expect("ip")),
            4789,
        )),
        ..Link::bare(9, true, false)
    });
    let e = apply(&mut k, &dir, &lab("'192.0.2.11'", 100)).expect_err("refused");
    assert!(
        format!("{e:#}").contains(
            "vx.toml: bridges.br0.vxlan.id = 100: VXLAN link vxfoo already carries VNI 100 on port 4789"
        ),
        "{e:#}"
    );
    assert!(k.net.o.host.link("br0").is_none() && k.net.o.namespaces.is_empty());
    k.net.o.host.links.retain(|l| l.name != "vxfoo");
    let e = apply(&mut k, &dir, &lab("'192.0.2.255'", 100)).expect_err("refused");
    assert!(
        format!("{e:#}").contains(
            "peers = \"192.0.2.255\": the network's or broadcast address of 192.0.2.0/24"
        ),
        "{e:#}"
    );
    assert!(k.net.o.host.link("br0").is_none() && k.net.o.namespaces.is_empty());
}

/// With `isolate`, the tunnel is an isolated port from the first apply: the other hosts'
/// namespaces exchange no frame with this host's (they still reach its bridge).
#[test]
fn an_isolated_bridge_isolates_its_tunnel_port() {
    let (mut k, dir) = (host(), Scratch::new());
    let t = topology(
        "vx",
        "name = 'vx'\n[bridges.br0]\naddress = '10.0.0.1/24'\nisolate = true\nvxlan = { id = 100, local = '192.0.2.10', peers = ['192.0.2.11'] }\n[namespaces.a1]\nbridge = 'br0'\n",
    );
    apply(&mut k, &dir, &t).expect("apply");
    assert!(k.net.o.host.link("vx100").expect("vx100").isolated);
    assert_eq!(
        apply(&mut k, &dir, &t).expect("again"),
        Vec::<String>::new()
    );
}

#[test]
fn a_local_address_the_host_lacks_is_a_conflict_before_anything_changes() {
    let (mut k, dir) = (Fake::new(), Scratch::new());
    let e = apply(&mut k, &dir, &lab("'192.0.2.11'", 100)).expect_err("refused");
    assert!(
        format!("{e:#}").contains(
            "vx.toml: bridges.br0.vxlan.local = \"192.0.2.10\": not an address of this host"
        ),
        "{e:#}"
    );
    assert!(k.net.o.host.link("br0").is_none() && k.net.o.namespaces.is_empty());
}

/// Drift the kernel allows in place (`ip link set vx100 type vxlan local ... | nolearning |
/// ttl 5`): each is named, the tunnel made again with its peer, and the next apply is quiet.
#[test]
fn a_tunnel_changed_behind_nsfws_back_is_named_and_made_again() {
    let (mut k, dir) = (host(), Scratch::new());
    let t = lab("'192.0.2.11'", 100);
    apply(&mut k, &dir, &t).expect("apply");
    type Drift = fn(&mut crate::plumbing::VxlanObs);
    let drifts: [(Drift, &str); 3] = [
        (|x| x.learning = false, "learning turned off"),
        (|x| x.ttl = 5, "a TTL set"),
        (
            |x| x.local = Some("192.0.2.99".parse().expect("ip")),
            "another local address",
        ),
    ];
    for (drift, why) in drifts {
        let vx = k.net.o.host.links.iter_mut().find(|l| l.name == "vx100");
        drift(vx.and_then(|l| l.vxlan.as_mut()).expect("vx100"));
        let said = apply(&mut k, &dir, &t).expect("repair").join("\n");
        assert!(
            said.contains(&format!("- link vx100 (vxlan): {why}"))
                && said.contains("+ vxlan vx100 id 100 local 192.0.2.10")
                && said.contains("+ fdb vx100 00:00:00:00:00:00 dst 192.0.2.11"),
            "{said}"
        );
        let x = k.net.o.host.link("vx100").and_then(|l| l.vxlan);
        assert_eq!(
            x,
            Some(crate::plumbing::VxlanObs::new(
                100,
                Some("192.0.2.10".parse().expect("ip")),
                4789
            ))
        );
        assert_eq!(peers(&k), ["192.0.2.11"]);
        assert_eq!(
            apply(&mut k, &dir, &t).expect("quiet"),
            Vec::<String>::new()
        );
    }
}
