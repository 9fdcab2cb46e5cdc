//! `nsfw graph --live` in a sandbox: after a route is deleted in a namespace and a published
//! port's map element is deleted, those objects are drawn drifted with the reason; after
//! `nsfw apply` nothing is; the counters are on the boxes.

use super::common::Sandbox;

const FILE: &str = "name = \"gl\"
[bridges.br0]
address = \"10.10.0.1/24\"
masquerade = true
[namespaces.web]
bridge = \"br0\"
publish = [\"8080:80/tcp\"]
[namespaces.client]
bridge = \"br0\"
";

/// The boxes drawn drifted: (kind, name, their red lines).
fn drifted(svg: &str) -> Vec<(String, String, Vec<String>)> {
    let doc = roxmltree::Document::parse(svg).expect("XML");
    doc.descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').any(|x| x == "drifted"))
        })
        .map(|g| {
            let bad = g
                .descendants()
                .filter(|t| t.attribute("class") == Some("line bad"))
                .filter_map(|t| t.text().map(str::to_string))
                .collect();
            let a = |k: &str| g.attribute(k).unwrap_or("").to_string();
            (a("data-kind"), a("data-name"), bad)
        })
        .collect()
}

#[test]
fn live_marks_what_drifted_with_the_reason_until_apply() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("gl.toml", FILE);
    sb.nsfw_code(&["apply", &f], 0);
    let svg = sb.nsfw_code(&["graph", "--live", &f], 0);
    assert!(drifted(&svg).is_empty(), "{:?}", drifted(&svg));
    assert!(svg.contains("live: the host matches the file"));
    // Counters on the boxes.
    assert!(svg.contains("0 connection(s)"), "{svg}");
    assert!(svg.contains("dropped 0 from it, 0 to it"), "{svg}");
    // By default, as root where the topology is applied: live too.
    assert!(
        sb.nsfw_code(&["graph", &f], 0)
            .contains("live: the host matches the file")
    );

    sb.ok("ip -n client route del default");
    sb.ok("nft delete element inet nsfw_gl publish4 '{ tcp . 8080 }'");
    let svg = sb.nsfw_code(&["graph", "--live", &f], 0);
    let d = drifted(&svg);
    let client = d
        .iter()
        .find(|x| x.1 == "client")
        .unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(client.0, "namespace");
    assert!(
        client
            .2
            .iter()
            .any(|l| l.starts_with("missing: route client: default via 10.10.0.1")),
        "{d:?}"
    );
    let port = d
        .iter()
        .find(|x| x.0 == "published")
        .unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(port.1, "*:8080/tcp -> web:80");
    assert!(
        port.2
            .iter()
            .any(|l| l.contains("missing") && l.contains("publish4")),
        "{d:?}"
    );
    assert_eq!(d.len(), 2, "only those two: {d:?}");
    // The same drift in dot and mermaid.
    let dot = sb.nsfw_code(&["graph", "--live", "--format", "dot", &f], 0);
    assert!(dot.contains("color=\"#c62828\""), "{dot}");
    let mm = sb.nsfw_code(&["graph", "--live", "--format", "mermaid", &f], 0);
    assert!(mm.contains(" drifted\n"), "{mm}");

    sb.nsfw_code(&["apply", &f], 0);
    let svg = sb.nsfw_code(&["graph", "--live", &f], 0);
    assert!(drifted(&svg).is_empty(), "{:?}", drifted(&svg));
    // --no-live: the file alone.
    assert!(
        !sb.nsfw_code(&["graph", "--no-live", &f], 0)
            .contains("live:")
    );
}

#[test]
fn live_on_a_host_without_the_topology_draws_everything_missing() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("gl.toml", FILE);
    // Not applied: by default the file alone; with --live every object missing.
    let plain = sb.nsfw_code(&["graph", &f], 0);
    assert!(drifted(&plain).is_empty());
    let svg = sb.nsfw_code(&["graph", "--live", &f], 0);
    assert!(
        svg.contains("nothing of topology gl is on this host"),
        "{svg}"
    );
    let kinds: Vec<String> = drifted(&svg).into_iter().map(|x| x.0).collect();
    for k in ["bridge", "namespace", "published"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not drifted: {kinds:?}");
    }
}
