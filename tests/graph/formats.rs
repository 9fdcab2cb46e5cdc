//! `--format dot` through graphviz, `--format mermaid` against Mermaid's documented syntax.

use std::process::Command;

use super::common::show;
use super::{files, graph};

#[test]
fn dot_output_is_drawn_by_graphviz() {
    for f in files() {
        let o = graph(&[
            "graph",
            "--no-live",
            "--format",
            "dot",
            &f.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", show(&o));
        let mut dot = Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dot (graphviz; scripts/install-deps installs it)");
        std::io::Write::write_all(&mut dot.stdin.take().expect("stdin"), &o.stdout)
            .expect("feed dot");
        let r = dot.wait_with_output().expect("dot");
        assert!(r.status.success(), "{}: {}", f.display(), show(&r));
        assert!(
            r.stderr.is_empty(),
            "{}: dot warns: {}",
            f.display(),
            show(&r)
        );
        assert!(String::from_utf8_lossy(&r.stdout).contains("<svg"));
    }
}

/// A quoted Mermaid string: no `"` inside, no markup but `<br/>`, `#` only in entity codes.
fn mermaid_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
        return false;
    };
    let plain = inner.replace("<br/>", "\n");
    if plain.contains(['"', '<', '>', '`']) {
        return false;
    }
    let mut rest = plain.as_str();
    while let Some(i) = rest.find('#') {
        let after = &rest[i + 1..];
        let Some(end) = after.find(';') else {
            return false;
        };
        if end == 0 || !after[..end].chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
        rest = &after[end + 1..];
    }
    true
}

fn mermaid_id(s: &str) -> bool {
    s.len() > 1 && s.starts_with('n') && s[1..].chars().all(|c| c.is_ascii_digit())
}

/// Checks one flowchart against the documented syntax (flowchart direction, node shapes
/// `id["…"]`, `id(["…"])`, `id(("…"))`, `id{{"…"}}`, links `---`, `-.-`, `-->`, `-.->` with an
/// optional `|"…"|` text, `classDef`, `class`), and that every id used is declared.
fn check_mermaid(name: &str, text: &str) {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("flowchart TB"), "{name}");
    let (mut ids, mut used, mut classes, mut assigned) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for l in lines.map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = l.strip_prefix("classDef ") {
            let (c, style) = rest.split_once(' ').expect("classDef NAME STYLE");
            assert!(style.split(',').all(|kv| kv.contains(':')), "{name}: {l}");
            classes.push(c.to_string());
        } else if let Some(rest) = l.strip_prefix("class ") {
            let (id, c) = rest.split_once(' ').expect("class ID CLASS");
            used.push(id.to_string());
            assigned.push(c.to_string());
        } else {
            let i = l
                .find([' ', '[', '(', '{'])
                .unwrap_or_else(|| panic!("{name}: {l}"));
            let (id, rest) = l.split_at(i);
            assert!(mermaid_id(id), "{name}: id in {l}");
            if let Some(r) = rest.strip_prefix(' ') {
                // A link: ID LINK ID, or ID LINK|"text"| ID.
                let j = r.find(['|', ' ']).unwrap_or_else(|| panic!("{name}: {l}"));
                let link = &r[..j];
                assert!(
                    ["---", "-.-", "-->", "-.->"].contains(&link),
                    "{name}: link in {l}"
                );
                let b = if r[j..].starts_with('|') {
                    let close = r.rfind('|').expect("closing |");
                    assert!(close > j, "{name}: {l}");
                    assert!(mermaid_string(&r[j + 1..close]), "{name}: label in {l}");
                    r[close + 1..].trim()
                } else {
                    r[j..].trim()
                };
                assert!(mermaid_id(b), "{name}: id in {l}");
                used.push(id.to_string());
                used.push(b.to_string());
            } else {
                let inner = [("[", "]"), ("([", "])"), ("((", "))"), ("{{", "}}")]
                    .iter()
                    .rev()
                    .find_map(|(o, c)| rest.strip_prefix(o).and_then(|x| x.strip_suffix(c)))
                    .unwrap_or_else(|| panic!("{name}: shape in {l}"));
                assert!(mermaid_string(inner), "{name}: label in {l}");
                ids.push(id.to_string());
            }
        }
    }
    for u in used {
        assert!(ids.contains(&u), "{name}: {u} used, never declared");
    }
    for c in assigned {
        assert!(classes.contains(&c), "{name}: class {c} has no classDef");
    }
}

#[test]
fn mermaid_output_keeps_to_the_documented_flowchart_syntax() {
    for f in files() {
        let o = graph(&[
            "graph",
            "--no-live",
            "--format",
            "mermaid",
            &f.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", show(&o));
        check_mermaid(
            &f.display().to_string(),
            &String::from_utf8_lossy(&o.stdout),
        );
    }
    // A label with everything Mermaid would misread.
    assert!(mermaid_string("\"a #35; b<br/>c #34;\""));
    assert!(!mermaid_string("\"a \" b\""));
    assert!(!mermaid_string("\"a # b\""));
}
