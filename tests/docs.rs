//! The documentation cannot drift: every fenced code block of README.md and docs/*.md is
//! checked here, by what its info string (the words after the opening ```) says it is.
//!
//! | info string | what this test does with it |
//! |---|---|
//! | `toml` | a whole topology file: `nsfw show` of it must exit 0 |
//! | `toml uncomment` | as `toml`, and again with every commented-out key (`# mtu = 1500`) uncommented: what the comments offer must work too |
//! | `toml error` | a topology that must be refused: `nsfw show` must exit 1, and the next block must be a `console` block showing the error (run like any other) |
//! | `toml for=PROGRAM`, `json for=PROGRAM` | a file of another program (podman's containers.conf, a CNI conflist): must parse as TOML / JSON |
//! | `json` | must parse as JSON |
//! | `json excerpt` | part of an output, with `...` where things are left out: not checked |
//! | `console` | `$ COMMAND` lines, each followed by the output it shows (stdout and stderr together). Each command runs in the document's sandbox; its output must match (`[..]`: any text within a line, `...` alone on a line: any lines). A command shown without output must exit 0 |
//! | `sh` | commands run in the document's sandbox (as one `bash -e` script); it must exit 0 |
//! | `sh ci` | commands `.ci/run` runs as they stand (the quick start's `cargo test`): each line must be in `.ci/run` |
//! | `sh no-run` | commands for the reader's machine (`cargo install`, `systemctl enable`): not run, and must not run nsfw |
//! | `nft from=FILE` | an excerpt of `nsfw show FILE`: every line must come in the same order in its output, with counters left out and each set or map folded onto one line |
//! | `nft sketch`, `text` | an outline, a diagram, another tool's output: not checked |
//! | `yaml for=prometheus`, `promql` | Prometheus's scrape configuration and queries: `promtool` checks them (tests/metrics.rs) |
//!
//! `file=NAME` (any block): the block is also written to NAME in the document's working
//! directory, for the commands after it (`toml file=lab.toml`, then `$ nsfw diff lab.toml`).
//! A `<!-- doc-test setup: COMMANDS -->` comment right before a block runs COMMANDS in the
//! sandbox first, unseen by the reader (to make the drift a shown `diff` reports, say).
//!
//! Each document gets its own sandbox (tests/common: fresh network and mount namespaces),
//! made at its first command, and a working directory holding `rulesets/` (a link to the
//! repository's) and the `file=` blocks; nsfw is on PATH. A block with an info string not
//! in the table, or none, fails: say what a block is.

mod common;

use std::path::{Path, PathBuf};

use common::{NSFW, Sandbox};
use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

/// A fenced code block.
struct Block {
    line: usize,
    lang: String,
    attrs: Vec<(String, Option<String>)>,
    text: String,
    /// The `<!-- doc-test setup: ... -->` right before it.
    setup: Option<String>,
}

impl Block {
    fn has(&self, key: &str) -> bool {
        self.attrs.iter().any(|(k, _)| k == key)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    fn info(&self) -> String {
        let mut s = self.lang.clone();
        for (k, v) in &self.attrs {
            s.push(' ');
            s.push_str(k);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }
}

fn blocks(md: &str) -> Vec<Block> {
    let line_of = |offset: usize| md[..offset].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut setup: Option<String> = None;
    let mut cur: Option<Block> = None;
    for (ev, range) in Parser::new(md).into_offset_iter() {
        match ev {
            Event::Html(h) | Event::InlineHtml(h) => {
                if let Some(rest) = h.trim().strip_prefix("<!-- doc-test setup:") {
                    setup = Some(rest.trim_end_matches("-->").trim().to_string());
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(i) => i.to_string(),
                    CodeBlockKind::Indented => "indented".to_string(),
                };
                let mut words = info.split_whitespace();
                let lang = words.next().unwrap_or("").to_string();
                let attrs = words
                    .map(|w| match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.trim_matches('"').to_string())),
                        None => (w.to_string(), None),
                    })
                    .collect();
                cur = Some(Block {
                    line: line_of(range.start),
                    lang,
                    attrs,
                    text: String::new(),
                    setup: setup.take(),
                });
            }
            Event::Text(t) => {
                if let Some(b) = cur.as_mut() {
                    b.text.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => out.extend(cur.take()),
            _ => {}
        }
    }
    out
}

/// One document under test: its working directory and, once a command needs it, its sandbox.
struct Doc {
    name: String,
    dir: PathBuf,
    sandbox: Option<Sandbox>,
    failures: Vec<String>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl Doc {
    fn new(name: &str) -> Doc {
        let dir = std::env::temp_dir().join(format!(
            "nsfw-docs-{}-{}",
            std::process::id(),
            name.replace('/', "-")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("doc dir");
        std::os::unix::fs::symlink(root().join("rulesets"), dir.join("rulesets")).expect("link");
        Doc {
            name: name.to_string(),
            dir,
            sandbox: None,
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, b: &Block, why: String) {
        self.failures
            .push(format!("{}:{}: ```{}: {why}", self.name, b.line, b.info()));
    }

    /// Runs a script in the document's sandbox, in its working directory with nsfw on
    /// PATH: (exit status, stdout and stderr together).
    fn run(&mut self, script: &str) -> (Option<i32>, String) {
        let sb = self.sandbox.get_or_insert_with(Sandbox::new);
        let bin = Path::new(NSFW).parent().expect("bin dir");
        let o = sb.sh(&format!(
            "export PATH={}:$PATH; cd {} || exit 99\n{script}\n",
            bin.display(),
            self.dir.display()
        ));
        let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&o.stderr));
        (o.status.code(), text)
    }

    /// `nsfw ARGS` on the host, in the working directory (show touches nothing).
    fn nsfw(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(NSFW)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run nsfw")
    }
}

/// Each command and the output shown after it.
fn console(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for l in text.lines() {
        if let Some(cmd) = l.strip_prefix("$ ") {
            out.push((cmd.to_string(), String::new()));
        } else if let Some((_, shown)) = out.last_mut() {
            shown.push_str(l);
            shown.push('\n');
        }
    }
    out
}

fn check_console(d: &mut Doc, b: &Block) {
    let cmds = console(&b.text);
    if cmds.is_empty() {
        return d.fail(b, "no `$ COMMAND` line".into());
    }
    for (cmd, shown) in cmds {
        // The shown output is what a terminal shows: both streams, in order.
        let (code, got) = d.run(&format!("{cmd} 2>&1"));
        if shown.trim().is_empty() {
            if code != Some(0) {
                d.fail(b, format!("`{cmd}` exited {code:?}:\n{got}"));
            }
            continue;
        }
        let name = format!("`{cmd}`");
        if let Err(e) = snapbox::Assert::new().normalize_paths(false).try_eq(
            Some(&name),
            snapbox::IntoData::into_data(got),
            snapbox::IntoData::into_data(shown),
        ) {
            d.fail(b, format!("`{cmd}` printed other than shown:\n{e}"));
        }
    }
}

/// `nsfw show` folded as the docs show it: counters left out, each set or map on one line.
fn folded_show(out: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut set: Option<Vec<String>> = None;
    for l in out.lines() {
        // A counted set's elements carry theirs as `10.10.0.2 counter packets 0 bytes 0,`.
        let l = l
            .trim()
            .replace(" counter packets 0 bytes 0,", ",")
            .replace("counter packets 0 bytes 0 ", "");
        if l.starts_with("set ") || l.starts_with("map ") {
            set = Some(vec![l.trim_end_matches(" {").to_string()]);
            continue;
        }
        if let Some(parts) = set.as_mut() {
            if l == "}" {
                let head = parts.remove(0);
                lines.push(format!("{head} {{ {} }}", parts.join("; ")));
                set = None;
            } else if !l.is_empty() {
                // Element lists nft wraps over lines join into one.
                match parts.last_mut() {
                    Some(last) if last.ends_with(',') => {
                        last.push(' ');
                        last.push_str(&l);
                    }
                    _ => parts.push(l),
                }
            }
            continue;
        }
        if !l.is_empty() {
            lines.push(l);
        }
    }
    lines
}

fn check_nft_excerpt(d: &mut Doc, b: &Block, file: &str) {
    let o = d.nsfw(&["show", file]);
    if !o.status.success() {
        return d.fail(b, format!("`nsfw show {file}` failed"));
    }
    let real = folded_show(&String::from_utf8_lossy(&o.stdout));
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let real: Vec<String> = real.iter().map(|l| norm(l)).collect();
    let mut at = 0;
    for l in b.text.lines().map(norm).filter(|l| !l.is_empty()) {
        match real[at..].iter().position(|r| *r == l) {
            Some(i) => at += i + 1,
            None => {
                return d.fail(
                    b,
                    format!(
                        "`{l}` is not in `nsfw show {file}` (after the lines before it); it prints, folded:\n{}",
                        real.join("\n")
                    ),
                );
            }
        }
    }
}

fn runs_nsfw(script: &str) -> bool {
    script.lines().any(|l| {
        let l = l.trim_start();
        !l.starts_with('#')
            && (l.starts_with("nsfw ")
                || ["| nsfw ", "&& nsfw ", "; nsfw ", "$(nsfw "]
                    .iter()
                    .any(|p| l.contains(p)))
    })
}

fn check_toml(d: &mut Doc, b: &Block, file: &str, next: Option<&Block>) {
    if let Some(program) = b.get("for") {
        if let Err(e) = b.text.parse::<toml::Table>() {
            d.fail(b, format!("not TOML (for {program}): {e}"));
        }
        return;
    }
    let o = d.nsfw(&["show", file]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if b.has("error") {
        if o.status.code() != Some(1) {
            d.fail(
                b,
                format!("marked error, but nsfw show exited {:?}", o.status.code()),
            );
        }
        if next.is_none_or(|n| n.lang != "console") {
            d.fail(
                b,
                "a `toml error` block must be followed by a `console` block showing the error"
                    .into(),
            );
        }
    } else if !o.status.success() {
        d.fail(
            b,
            format!("not a valid topology (mark it `toml error` if it is meant to fail):\n{err}"),
        );
    }
    if b.has("uncomment") {
        let open: String = b
            .text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let f = format!("{file}.uncommented.toml");
        std::fs::write(d.dir.join(&f), open).expect("write");
        let o = d.nsfw(&["show", &f]);
        if !o.status.success() {
            d.fail(
                b,
                format!(
                    "with its commented-out keys uncommented, refused:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                ),
            );
        }
    }
}

/// Every block of one document, in order.
fn check_doc(name: &str) -> Vec<String> {
    let md = std::fs::read_to_string(root().join(name)).expect("read doc");
    let bs = blocks(&md);
    let mut d = Doc::new(name);
    for (i, b) in bs.iter().enumerate() {
        if let Some(s) = &b.setup {
            let (code, out) = d.run(&format!("set -e\n{s}"));
            if code != Some(0) {
                d.fail(b, format!("its doc-test setup failed ({code:?}):\n{out}"));
                continue;
            }
        }
        let scratch = format!("block-{}.{}", b.line, b.lang);
        let file = b.get("file").unwrap_or(&scratch).to_string();
        if let Err(e) = std::fs::write(d.dir.join(&file), &b.text) {
            d.fail(b, format!("cannot write {file}: {e}"));
            continue;
        }
        match b.lang.as_str() {
            "toml" => check_toml(&mut d, b, &file, bs.get(i + 1)),
            "json" if b.has("excerpt") => {}
            "json" => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&b.text) {
                    d.fail(b, format!("not JSON: {e}"));
                }
            }
            "console" => check_console(&mut d, b),
            "sh" if b.has("ci") => {
                let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
                for l in b.text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                    if !ci.lines().any(|c| c.trim() == l.trim()) {
                        d.fail(b, format!("`{l}` is not a line of .ci/run, which should run it"));
                    }
                }
            }
            "sh" if b.has("no-run") => {
                if runs_nsfw(&b.text) {
                    d.fail(b, "runs nsfw: every nsfw command of the docs is run (use `sh` or `console`)".into());
                }
            }
            "sh" => {
                let (code, out) = d.run(&format!("set -e\n{}", b.text));
                if code != Some(0) {
                    d.fail(b, format!("exited {code:?}:\n{out}"));
                }
            }
            "nft" if b.has("sketch") => {}
            "nft" => match b.get("from") {
                Some(f) => check_nft_excerpt(&mut d, b, f),
                None => d.fail(b, "say `nft from=FILE` (an excerpt of `nsfw show FILE`) or `nft sketch`".into()),
            },
            "text" => {}
            // promtool checks them, in tests/metrics.rs.
            "yaml" if b.get("for") == Some("prometheus") => {}
            "promql" => {}
            other => d.fail(
                b,
                format!("unknown block kind `{other}`: say what the block is (the table at the top of tests/docs.rs)"),
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&d.dir);
    d.failures
}

/// README.md and every docs/*.md, each on its own thread (and in its own sandbox).
#[test]
fn every_code_block_of_the_docs_holds() {
    let mut names = vec!["README.md".to_string()];
    for e in std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".md") {
            names.push(format!("docs/{n}"));
        }
    }
    names.sort();
    let failures: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| s.spawn(move || check_doc(n)))
            .collect();
        hs.into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec!["a document's check panicked".into()])
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} block(s) of the docs do not hold:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The harness itself: a drifted example fails, a marked error passes only when refused.
#[test]
fn the_harness_catches_drift() {
    let md = "```toml\nname = \"ok\"\n```\n\n```toml error file=bad.toml\nname = \"Bad Name\"\n```\n\n```console\n$ nsfw show bad.toml\nerror: bad.toml: name = \"Bad Name\": [..]\n```\n\n```toml\nname = \"x\"\nnot_a_key = 1\n```\n\n```toml error\nname = \"fine\"\n```\n\n```\nuntyped\n```\n\n```console\n$ echo 1\n2\n```\n";
    let dir = std::env::temp_dir().join(format!("nsfw-docs-self-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("self.md");
    std::fs::write(&path, md).expect("write");
    let rel = path.strip_prefix(root()).map(Path::to_path_buf);
    // check_doc reads relative to the repository: give it an absolute path's worth.
    let name = rel.unwrap_or(path.clone());
    let failures = check_doc(name.to_str().expect("utf8"));
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<&str> = failures
        .iter()
        .map(|f| f.lines().next().unwrap_or(""))
        .collect();
    assert_eq!(failures.len(), 5, "{failures:#?}");
    assert!(
        lines[0].contains(":14: ```toml: not a valid topology"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains(":19: ```toml error: marked error"),
        "{lines:?}"
    );
    assert!(
        lines[2].contains(":19: ```toml error: a `toml error` block must be followed"),
        "{lines:?}"
    );
    assert!(lines[3].contains("unknown block kind ``"), "{lines:?}");
    assert!(
        lines[4].contains("`echo 1` printed other than shown"),
        "{lines:?}"
    );
}
