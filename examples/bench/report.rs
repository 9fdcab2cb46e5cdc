//! The report's header (when, where, how busy the machine was) and its place in
//! docs/benchmarks.md, whose hand-written notes are kept.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::run::Res;

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The run's header: date, machine, command line, how figures are taken, load at the start.
pub fn header(args: &[String], runs: usize, base: Option<&Path>) -> Res<String> {
    let mut report = String::new();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    writeln!(
        report,
        "- date: {}",
        String::from_utf8_lossy(&date.stdout).trim()
    )?;
    writeln!(
        report,
        "- machine: {} cores, {cpu}, Linux {kernel}",
        std::thread::available_parallelism()?.get()
    )?;
    writeln!(
        report,
        "- command: `{}`",
        std::iter::once("cargo run --release --example bench --".to_string())
            .chain(args[1..].iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    writeln!(
        report,
        "- each figure: the median of {runs} runs, each run in a fresh sandbox; ratios are of medians measured in this same run"
    )?;
    if let Some(b) = base {
        writeln!(
            report,
            "- baseline: `{}`, run in the same sandboxes as nsfw, alternating A B B A within every run (so {} samples per side)",
            b.display(),
            2 * runs
        )?;
    }
    // Other work on the machine skews every figure; the reader should know how busy it was.
    writeln!(
        report,
        "- load average (1, 5, 15 min) at start: {}\n",
        loadavg()
    )?;
    Ok(report)
}

/// The line a part's text starts with in the report.
pub fn marker(part: &str) -> String {
    format!("\n<!-- part: {part} -->\n")
}

/// A report's text before its first part, and its parts by name (each text after its marker).
fn split(body: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = body.split("\n<!-- part: ");
    let pre = pieces.next().unwrap_or("").to_string();
    let parts = pieces
        .filter_map(|p| {
            let (name, text) = p.split_once(" -->\n")?;
            Some((name.to_string(), text.to_string()))
        })
        .collect();
    (pre, parts)
}

/// The new run's parts put in place of the same parts of the report in `old` (the body of
/// its "Latest run"), the others kept as they were, in `order`; each re-run part says when
/// and how it was run (the header stays the older run's).
fn merge(old: &str, new: &str, order: &[&str]) -> String {
    let (old_pre, old_parts) = split(old);
    let (new_pre, new_parts) = split(new);
    let when: String = new_pre
        .lines()
        .filter(|l| {
            l.starts_with("- date:")
                || l.starts_with("- command:")
                || l.starts_with("- load average")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out = old_pre;
    let find = |v: &[(String, String)], name: &str| {
        v.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone())
    };
    for name in order {
        if let Some(t) = find(&new_parts, name) {
            out.push_str(&marker(name));
            out.push_str(&format!("\nThis part re-run alone (`--only`):\n\n{when}"));
            out.push_str(&t);
        } else if let Some(t) = find(&old_parts, name) {
            out.push_str(&marker(name));
            out.push_str(&t);
        }
    }
    out
}

/// Adds the end's load average and the run's length to the header, prints the report and,
/// with `out`, writes it into that file above the file's `## Notes`. With `only` (the order
/// of every part), the run made only some parts: in an existing report, those parts are
/// replaced and the others kept.
pub fn finish(
    mut report: String,
    started: Instant,
    out: Option<&Path>,
    only: Option<&[&str]>,
) -> Res<()> {
    let took = started.elapsed().as_secs_f64();
    eprintln!("bench done after {took:.0} s");
    // Into the header, after the start's load average.
    let at = report.find("\n\n").map_or(report.len(), |i| i + 1);
    report.insert_str(
        at,
        &format!(
            "- load average at end: {}; the run took {:.0} min\n",
            loadavg(),
            took / 60.0
        ),
    );
    print!("{report}");
    if let Some(p) = out {
        let head = "# Benchmarks\n\nProduced by `just bench` (examples/bench/). Each trial runs in its own sandbox.\n\n";
        let old = std::fs::read_to_string(p).unwrap_or_default();
        let notes = old
            .split_once("\n## Notes")
            .map(|(_, n)| format!("\n## Notes{n}"))
            .unwrap_or_default();
        let latest = old
            .split_once("## Latest run\n\n")
            .map(|(_, r)| r.split("\n## Notes").next().unwrap_or(r));
        let body = match (only, latest) {
            (Some(order), Some(latest)) => merge(latest, &report, order),
            _ => report,
        };
        std::fs::write(p, format!("{head}## Latest run\n\n{body}{notes}"))?;
    }
    Ok(())
}
