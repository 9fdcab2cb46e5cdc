//! The pictures in headless Chromium: every label there, no overlap, no overflow, a PNG kept.

use std::path::Path;
use std::process::{Command, Output};

use super::common::show;
use super::{files, out_dir, svg_of};

/// What the file says must be in the picture: bridges, namespaces (routers too), published
/// entries as (namespace, host port, namespace port), policy entries as (from, to).
struct Expect {
    bridges: Vec<String>,
    namespaces: Vec<String>,
    published: Vec<(String, String, String)>,
    policy: Vec<(String, String)>,
}

fn expect(f: &Path) -> Expect {
    let v: toml::Table = std::fs::read_to_string(f)
        .expect("read")
        .parse()
        .expect("toml");
    let keys = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(|x| x.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut published = Vec::new();
    for (n, ns) in v
        .get("namespaces")
        .and_then(|x| x.as_table())
        .into_iter()
        .flatten()
    {
        for e in ns
            .get("publish")
            .and_then(|x| x.as_array())
            .into_iter()
            .flatten()
        {
            let e = e.as_str().expect("publish entry");
            let ports = e.split('/').next().unwrap_or(e);
            let mut parts: Vec<&str> = ports.rsplitn(3, ':').collect();
            parts.reverse();
            let (host, inner) = (parts[parts.len() - 2], parts[parts.len() - 1]);
            published.push((n.clone(), host.to_string(), inner.to_string()));
        }
    }
    let mut policy = Vec::new();
    for verb in ["allow", "deny"] {
        for e in v.get(verb).and_then(|x| x.as_array()).into_iter().flatten() {
            let s = |k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            policy.push((s("from"), s("to")));
        }
    }
    Expect {
        bridges: keys("bridges"),
        namespaces: keys("namespaces"),
        published,
        policy,
    }
}

/// Headless Chromium, as the README's tests run it.
fn chromium(args: &[&str], user_dir: &str) -> Output {
    let dir = std::env::temp_dir().join(format!("nsfw-chromium-{}-{user_dir}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.display()))
        .args(args)
        .output()
        .expect("chromium (scripts/install-deps installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    o
}

/// Reads every picture's boxes, texts and edges in the browser.
const PROBE: &str = r#"
const bb = e => { const b = e.getBBox(); return [b.x, b.y, b.width, b.height]; };
const out = {};
for (const div of document.querySelectorAll('div[data-file]')) {
  const svg = div.querySelector('svg');
  out[div.dataset.file] = {
    nodes: [...svg.querySelectorAll('g.node')].map(g => ({
      kind: g.dataset.kind, name: g.dataset.name,
      label: (g.querySelector('text.label') || {}).textContent || '',
      box: bb(g.querySelector('rect.box')),
      texts: [...g.querySelectorAll('text')].map(t => [t.textContent].concat(bb(t))),
    })),
    edges: [...svg.querySelectorAll('g.edge')].map(g => ({
      from: g.dataset.from, to: g.dataset.to,
      label: (g.querySelector('text.label') || {}).textContent || '',
    })),
  };
}
document.getElementById('result').textContent = JSON.stringify(out);
"#;

fn inside(t: &[f64], b: &[f64]) -> bool {
    let e = 0.5;
    t[0] >= b[0] - e
        && t[1] >= b[1] - e
        && t[0] + t[2] <= b[0] + b[2] + e
        && t[1] + t[3] <= b[1] + b[3] + e
}

fn overlap(a: &[f64], b: &[f64]) -> bool {
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
}

fn check_dom(name: &str, d: &serde_json::Value, e: &Expect) {
    let nodes = d["nodes"].as_array().expect("nodes");
    let num = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .expect("array")
            .iter()
            .filter_map(|x| x.as_f64())
            .collect()
    };
    let has = |kind: &[&str], label: &str| {
        nodes
            .iter()
            .any(|n| kind.contains(&n["kind"].as_str().unwrap_or("")) && n["label"] == label)
    };
    for b in &e.bridges {
        assert!(has(&["bridge"], b), "{name}: bridge {b} has no label");
    }
    for n in &e.namespaces {
        assert!(
            has(&["namespace", "router"], n),
            "{name}: namespace {n} has no label"
        );
    }
    for (ns, host, inner) in &e.published {
        assert!(
            nodes.iter().any(|n| n["kind"] == "published" && {
                let l = n["label"].as_str().unwrap_or("");
                l.contains(&format!(":{host}/")) && l.ends_with(&format!("{ns}:{inner}"))
            }),
            "{name}: published {host} -> {ns}:{inner} has no label"
        );
    }
    let edges = d["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), e.policy.len(), "{name}: policy edges");
    for (from, to) in &e.policy {
        assert!(
            edges.iter().any(|x| x["from"] == from.as_str()
                && x["to"] == to.as_str()
                && x["label"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("allow") || l.starts_with("deny"))),
            "{name}: policy edge {from} -> {to} has no label"
        );
    }
    let boxes: Vec<(String, Vec<f64>)> = nodes
        .iter()
        .map(|n| {
            (
                n["label"].as_str().unwrap_or("").to_string(),
                num(&n["box"]),
            )
        })
        .collect();
    for (i, (a, ra)) in boxes.iter().enumerate() {
        for (b, rb) in &boxes[i + 1..] {
            assert!(
                !overlap(ra, rb),
                "{name}: box {a} {ra:?} overlaps {b} {rb:?}"
            );
        }
    }
    for n in nodes {
        let b = num(&n["box"]);
        for t in n["texts"].as_array().expect("texts") {
            let t = t.as_array().expect("text");
            let r: Vec<f64> = t[1..].iter().filter_map(|x| x.as_f64()).collect();
            assert!(
                inside(&r, &b),
                "{name}: {:?} {r:?} overflows its box {b:?}",
                t[0]
            );
        }
    }
}

#[test]
fn chromium_shows_every_label_without_overlap_or_overflow() {
    let dir = out_dir();
    let mut html = String::from("<!DOCTYPE html><html><body>\n");
    let mut expected = Vec::new();
    for f in files() {
        let name = f
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let svg = svg_of(&f);
        // Inline (the XML declaration is not HTML).
        let body = svg.split_once("?>").map_or(svg.as_str(), |x| x.1);
        html.push_str(&format!("<div data-file=\"{name}\">{body}</div>\n"));
        expected.push((name, expect(&f)));
    }
    html.push_str("<script id=\"result\" type=\"application/json\"></script>\n<script>");
    html.push_str(PROBE);
    html.push_str("</script></body></html>\n");
    let page = dir.join("all.html");
    std::fs::write(&page, html).expect("write page");
    let o = chromium(
        &["--dump-dom", &format!("file://{}", page.display())],
        "dom",
    );
    let dom = String::from_utf8_lossy(&o.stdout);
    let json = dom
        .split_once("<script id=\"result\" type=\"application/json\">")
        .and_then(|x| x.1.split_once("</script>"))
        .map(|x| x.0)
        .unwrap_or_else(|| panic!("no result in the DOM:\n{}", show(&o)));
    let v: serde_json::Value = serde_json::from_str(json).expect("the probe's JSON");
    for (name, e) in &expected {
        check_dom(name, &v[name], e);
    }
}

#[test]
fn screenshots_of_every_picture_are_kept_under_target() {
    let dir = out_dir();
    for f in files() {
        let name = f
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let svg = svg_of(&f);
        let path = dir.join(format!("{name}.svg"));
        std::fs::write(&path, &svg).expect("write svg");
        let dim = |a: &str| -> u32 {
            let v = svg
                .split_once(&format!(" {a}=\""))
                .and_then(|x| x.1.split_once('"'))
                .expect(a)
                .0;
            v.parse::<f64>().expect("number").ceil() as u32
        };
        let png = dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&png);
        let o = chromium(
            &[
                &format!("--window-size={},{}", dim("width"), dim("height")),
                &format!("--screenshot={}", png.display()),
                &format!("file://{}", path.display()),
            ],
            &name,
        );
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{name}: no screenshot:\n{}", show(&o));
    }
}
