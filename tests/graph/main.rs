//! `nsfw graph`: every shipped ruleset (and a 100-namespace file) drawn as SVG that an XML
//! parser accepts, opened in headless Chromium whose DOM must show every bridge, namespace,
//! router, published port and policy edge with its label, no two boxes overlapping and no
//! label outside its box (a PNG of each stays in target/graph/ for a person to look at);
//! `--format dot` through graphviz; `--format mermaid` against Mermaid's documented flowchart
//! syntax; the README's pictures regenerated; drawing as an unprivileged user.

mod browser;
#[path = "../common/mod.rs"]
mod common;
mod formats;
mod live;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{NSFW, show};

/// Where the pictures and screenshots go.
pub fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/graph");
    std::fs::create_dir_all(&d).expect("target/graph");
    d
}

/// A file of `n` namespaces over three bridges (one isolated, one L2-only behind a router),
/// ports published and two dozen policy entries: what must stay readable.
fn many(n: usize) -> PathBuf {
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
    let p = out_dir().join("many.toml");
    std::fs::write(&p, s).expect("write many.toml");
    p
}

/// Every file the pictures are checked for: the shipped rulesets and the big one.
pub fn files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets"))
            .expect("rulesets/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
    v.sort();
    v.push(many(100));
    v
}

pub fn graph(args: &[&str]) -> Output {
    Command::new(NSFW)
        .args(args)
        .output()
        .expect("run nsfw graph")
}

pub fn svg_of(f: &Path) -> String {
    let o = graph(&["graph", "--no-live", &f.display().to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8(o.stdout).expect("utf-8")
}

#[test]
fn every_shipped_ruleset_draws_svg_an_xml_parser_accepts() {
    for f in files() {
        let svg = svg_of(&f);
        let doc = roxmltree::Document::parse(&svg)
            .unwrap_or_else(|e| panic!("{}: not XML: {e}", f.display()));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        // Standalone: nothing fetched, nothing run.
        for n in doc.descendants().filter(|n| n.is_element()) {
            assert_ne!(n.tag_name().name(), "script", "{}", f.display());
            for a in n.attributes() {
                assert!(
                    !a.value().contains("http://") || a.name() == "xmlns",
                    "{}: {} fetches {}",
                    f.display(),
                    a.name(),
                    a.value()
                );
                assert_ne!(a.name(), "href", "{}", f.display());
            }
        }
        let width: f64 = root
            .attribute("width")
            .expect("width")
            .parse()
            .expect("number");
        assert!(width <= 1400.0, "{}: {width} wide", f.display());
    }
}

/// The pictures README.md shows are what nsfw draws now (run with NSFW_UPDATE_PICTURES=1 to
/// write them).
#[test]
fn the_readme_pictures_are_what_nsfw_draws() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, picture) in [
        ("rulesets/lab.toml", "docs/lab.svg"),
        ("rulesets/router.toml", "docs/router.svg"),
    ] {
        let o = Command::new(NSFW)
            .current_dir(root)
            .args(["graph", "--no-live", file])
            .output()
            .expect("nsfw graph");
        assert!(o.status.success(), "{}", show(&o));
        let path = root.join(picture);
        if std::env::var_os("NSFW_UPDATE_PICTURES").is_some() {
            std::fs::write(&path, &o.stdout).expect("write picture");
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == o.stdout,
            "{picture} is not what `nsfw graph {file}` draws now: NSFW_UPDATE_PICTURES=1 cargo test --test graph the_readme_pictures"
        );
    }
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(readme.contains("](docs/lab.svg)") && readme.contains("](docs/router.svg)"));
}

#[test]
fn an_unprivileged_user_draws_the_file() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets/router.toml");
    for (format, head) in [
        ("svg", "<?xml"),
        ("dot", "digraph"),
        ("mermaid", "flowchart"),
    ] {
        // --live without root: a warning, and the file alone.
        let o = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                NSFW,
                "graph",
                "--live",
                "--format",
                format,
            ])
            .arg(&f)
            .output()
            .expect("setpriv");
        assert!(o.status.success(), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).starts_with(head),
            "{}",
            show(&o)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--live needs root"),
            "{}",
            show(&o)
        );
    }
}

#[test]
fn bad_input_is_an_error_naming_it() {
    let dir = out_dir();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[bridges.br0]\naddress = \"nope\"\n").expect("write");
    let o = graph(&["graph", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("address"),
        "{}",
        show(&o)
    );
    // -o never writes through a symlink.
    let link = dir.join("link.svg");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.join("victim"), &link).expect("symlink");
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets/lab.toml");
    let o = graph(&[
        "graph",
        "--no-live",
        "-o",
        &link.display().to_string(),
        &lab.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(!dir.join("victim").exists());
}
