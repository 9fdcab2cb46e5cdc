use super::super::model::build;
use super::*;
use crate::topology::Topology;

fn topo(text: &str) -> Topology {
    crate::topology::parse(text, std::path::Path::new("t.toml")).expect("valid")
}

/// A file with `n` namespaces on two bridges, a router to an L2-only segment and a policy.
fn many(n: usize) -> String {
    let mut s = String::from(
        "name = \"many\"\n[bridges.br0]\naddress = \"10.10.0.1/16\"\nmasquerade = true\n\
         [bridges.br1]\naddress = \"10.20.0.1/24\"\nisolate = true\n[bridges.br2]\n\
         [namespaces.router]\nforward = true\n\
         [namespaces.router.interfaces.eth0]\nbridge = \"br1\"\naddress = \"10.20.0.254/24\"\n\
         [namespaces.router.interfaces.eth1]\nbridge = \"br2\"\naddress = \"10.30.0.1/24\"\n",
    );
    for i in 0..n {
        let b = if i % 4 == 0 { "br1" } else { "br0" };
        s.push_str(&format!("[namespaces.ns{i}]\nbridge = \"{b}\"\n"));
        if i % 10 == 0 {
            s.push_str(&format!("publish = [\"{}:80/tcp\"]\n", 8000 + i));
        }
    }
    s.push_str(
        "[namespaces.far]\nbridge = \"br2\"\naddress = \"10.30.0.2/24\"\ngateway = \"10.30.0.1\"\n",
    );
    for i in 0..24 {
        let verb = if i % 3 == 0 { "deny" } else { "allow" };
        s.push_str(&format!(
            "[[{verb}]]\nfrom = \"ns{}\"\nto = \"ns{}\"\nports = [\"tcp/{}\"]\n",
            i % 5,
            i + 1,
            5000 + i
        ));
    }
    s
}

fn check(p: &Picture) {
    assert!(p.width <= MAX_WIDTH, "width {}", p.width);
    for (i, a) in p.boxes.iter().enumerate() {
        for b in &p.boxes[i + 1..] {
            assert!(
                !a.rect.overlaps(&b.rect),
                "{} {:?} overlaps {} {:?}",
                a.name,
                a.rect,
                b.name,
                b.rect
            );
        }
        let longest = std::iter::once(chars(&a.title))
            .chain(a.lines.iter().map(|l| chars(&l.0)))
            .max()
            .unwrap_or(0);
        assert!(
            width(longest) + 2.0 * PAD <= a.rect.w + 0.01,
            "{}: {longest} characters in {}px",
            a.name,
            a.rect.w
        );
        assert!(a.rect.right() <= p.width && a.rect.bottom() <= p.height);
    }
}

#[test]
fn a_hundred_namespaces_wrap_into_rows_without_overlap() {
    let t = topo(&many(100));
    let p = layout(&build(&t));
    check(&p);
    let ns = p.boxes.iter().filter(|b| b.kind == Kind::Namespace).count();
    assert_eq!(ns, 101);
    // Rows, not one line of a hundred boxes.
    assert!(p.height > 6.0 * 60.0, "height {}", p.height);
    let edges = p.edges.len();
    assert_eq!(edges, 24);
}

#[test]
fn the_shipped_rulesets_lay_out_without_overlap() {
    for f in [
        include_str!("../../../rulesets/lab.toml"),
        include_str!("../../../rulesets/router.toml"),
        include_str!("../../../rulesets/publish.toml"),
        include_str!("../../../rulesets/egress-sandbox.toml"),
        include_str!("../../../rulesets/two-segments.toml"),
    ] {
        check(&layout(&build(&topo(f))));
    }
}

#[test]
fn the_router_reaches_its_second_segment_through_a_lane() {
    let t = topo(include_str!("../../../rulesets/router.toml"));
    let p = layout(&build(&t));
    assert_eq!(p.wires.iter().filter(|w| w.class == "lane").count(), 1);
    // The host's trunk reaches br0 only: br1 is L2-only.
    assert_eq!(p.wires.iter().filter(|w| w.class == "trunk").count(), 2);
}

#[test]
fn a_vxlan_segment_is_drawn_with_its_tunnel_and_the_other_hosts() {
    let t = topo(
        "name='v'\n[bridges.br0]\naddress='10.0.0.1/24'\nvxlan = { id = 100, local = '192.0.2.10', peers = ['192.0.2.11'], remote = ['10.0.0.21'] }\n[namespaces.a1]\nbridge='br0'\n",
    );
    let m = build(&t);
    let p = layout(&m);
    check(&p);
    let seg = &m.segments[0].node;
    let text: Vec<String> = seg.lines.iter().map(|l| l.text.clone()).collect();
    assert!(
        text.contains(&"vxlan 100 192.0.2.10:4789 ⇄ 192.0.2.11".to_string()),
        "{text:?}"
    );
    assert!(text.contains(&"remote 10.0.0.21".to_string()), "{text:?}");
}
