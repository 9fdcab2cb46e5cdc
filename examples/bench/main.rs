//! nsfw's benchmarks: nsfw against the hand-written way, in throwaway sandboxes.
//!
//!     cargo run --release --example bench -- [--runs 5] [--out docs/benchmarks.md]
//!         [--baseline OLD_NSFW] [--before OLDER_NSFW] [--sizes 2,20,100,200]
//!         [--only apply,scale,grow,routed,dual,dataplane,publish,publish-dataplane,policy,adopt,
//!                 policy-dataplane,watch]
//!
//! As root. Every trial runs in a fresh sandbox (`nsfw sandbox`), so nothing touches the host
//! and no trial inherits another's state. Traffic goes only between the sandbox's namespaces
//! (the data-plane trials' "internet" is a namespace on 198.51.100.0/24 and 203.0.113.0/24).
//!
//! For N namespaces on one bridge with masquerade and the stateful forward rules it times:
//!   a. the classic script: one `ip`/`iptables`/`sysctl` process per step (netns-lab-up.sh),
//!   b. the fastest stock-tool path: one `ip -batch` for the host, one `ip -n NS -batch` per
//!      namespace, one `nft -f`,
//!   c. nsfw apply (cold), apply with nothing to do, diff, flush — and with `--baseline`, cold
//!      and no-op apply by that older binary, alternating A B B A with nsfw's,
//!   d. the kernel floor estimate: the host-side `ip -batch` of (b) alone;
//! then the scale trial (4 bridges of N/4 namespaces), the data-plane trial (throughput and
//! connection rate through NAT under nsfw's ruleset and under the classic iptables rules), and
//! with 100 namespaces publishing 10,000 ports: the table loaded by nsfw against `nft -f` of the
//! same ruleset, one port changed, and the data plane through a published port with 10,000
//! ports published against 1.
//! Then `nsfw watch` in a fight: another manager deleting nsfw's table, then a set's element,
//! every 100 ms for a minute while the world probes a namespace every 20 ms.
//! Nothing here asserts a timing: it prints numbers.
//!
//! The outer run (`main`, `sections`, `report`) starts trials and writes the report; the
//! trials themselves (`trials`, `traffic`) run inside the sandboxes.

mod baselines;
mod fight;
mod grow;
mod labs;
mod report;
mod run;
mod sections;
mod tables;
mod topologies;
mod traffic;
mod trials;

use std::path::{Path, PathBuf};
use std::time::Instant;

use run::Res;
use sections::Ctx;

/// A section of the report: the context and `--sizes` (which only `apply` uses).
type Section = fn(&mut Ctx, &[usize]) -> Res<()>;

/// The parts `--only` may name, in the order they run.
const SECTIONS: [(&str, Section); 12] = [
    ("apply", sections::apply),
    ("scale", |cx, _| sections::scale(cx)),
    ("grow", |cx, _| sections::grow(cx)),
    ("routed", |cx, _| sections::routed(cx)),
    ("dual", |cx, _| sections::dual(cx)),
    ("dataplane", |cx, _| sections::dataplane(cx)),
    ("publish", |cx, _| sections::publish(cx)),
    ("publish-dataplane", |cx, _| sections::publish_dataplane(cx)),
    ("policy", |cx, _| sections::policy(cx)),
    ("policy-dataplane", |cx, _| sections::policy_dataplane(cx)),
    ("watch", |cx, _| sections::watch(cx)),
    ("adopt", |cx, _| sections::adopt(cx)),
];

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--inner") {
        return trials::inner(
            &args[2],
            args[3].parse()?,
            Path::new(&args[4]),
            args.get(5).map(Path::new),
        );
    }
    let mut runs = 5;
    let mut out_path: Option<PathBuf> = None;
    let mut sizes = vec![2usize, 20, 100, 200];
    let mut only: Option<Vec<String>> = None;
    let mut baseline: Option<PathBuf> = None;
    let mut before: Option<PathBuf> = None;
    let mut i = 1;
    let value = |i: usize| {
        args.get(i + 1)
            .ok_or_else(|| format!("{} needs a value", args[i]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => runs = value(i)?.parse()?,
            "--out" => out_path = Some(PathBuf::from(value(i)?)),
            "--only" => only = Some(value(i)?.split(',').map(str::to_string).collect()),
            "--baseline" => baseline = Some(PathBuf::from(value(i)?)),
            "--before" => before = Some(PathBuf::from(value(i)?)),
            "--sizes" => {
                sizes = value(i)?
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()?
            }
            a => return Err(format!("unknown argument {a}").into()),
        }
        i += 2;
    }
    for o in only.iter().flatten() {
        if !SECTIONS.iter().any(|(p, _)| p == o) {
            let parts: Vec<&str> = SECTIONS.iter().map(|(p, _)| *p).collect();
            return Err(format!("--only {o}: the parts are {}", parts.join(", ")).into());
        }
    }
    // A relative path would not survive the sandbox's working directory.
    for p in [&mut baseline, &mut before] {
        if let Some(b) = p {
            *p = Some(std::fs::canonicalize(&b).map_err(|e| format!("{}: {e}", b.display()))?);
        }
    }
    let want = |part: &str| only.as_ref().is_none_or(|o| o.iter().any(|p| p == part));
    let mut cx = Ctx {
        runs,
        base: baseline.as_deref(),
        before: before.as_deref(),
        report: report::header(&args, runs, baseline.as_deref())?,
        started: Instant::now(),
    };
    for (part, run) in SECTIONS {
        if want(part) {
            // Each part's text starts at its marker, so that a later `--only PART` run can
            // replace that part alone in the report.
            cx.report.push_str(&report::marker(part));
            run(&mut cx, &sizes)?;
        }
    }
    let parts: Vec<&str> = SECTIONS.iter().map(|(p, _)| *p).collect();
    report::finish(
        cx.report,
        cx.started,
        out_path.as_deref(),
        only.is_some().then_some(&parts[..]),
    )
}
