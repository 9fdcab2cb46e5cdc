//! The watch section: how well `nsfw watch` keeps the firewall up while another manager
//! undoes its work, and what that costs it.

use std::fmt::Write as _;

use super::Ctx;
use crate::fight::AGENTS;
use crate::run::{Res, Samples, trial};

/// How long each fight lasts: the minute.
const SECS: usize = 60;

pub fn watch(cx: &mut Ctx) -> Res<()> {
    let mut s = Samples::default();
    let runs = cx.runs.min(3);
    for r in 0..runs {
        s.add(trial("watch", SECS, None)?);
        eprintln!("watch: run {}/{runs} done", r + 1);
    }
    writeln!(
        cx.report,
        "\n### watch in a fight: an agent undoes nsfw's work every 100 ms for {SECS} s while the world sends a new UDP flow to a namespace every 20 ms (medians of {} runs, each in a fresh sandbox)\n\n| agent | firewall up (probes kept out) % | range % | watch CPU % of a core | gap median ms | gap p90 ms | gap max ms | gaps |\n|---|---|---|---|---|---|---|---|",
        s.count("watch_table_up")
    )?;
    for (label, agent) in AGENTS {
        let k = |f: &str| format!("watch_{label}_{f}");
        writeln!(
            cx.report,
            "| `{agent}` | {:.1} | {} | {:.1} | {:.2} | {:.2} | {:.1} | {:.0} |",
            s.median(&k("up")),
            s.span(&k("up")),
            s.median(&k("cpu")),
            s.median(&k("gap_median")),
            s.median(&k("gap_p90")),
            s.median(&k("gap_max")),
            s.median(&k("gaps")),
        )?;
    }
    writeln!(
        cx.report,
        "\nA gap: from the agent's deletion to watch's repair, as nf_tables' notifications time them. The log named the fight in {} of {} runs.",
        s.median("watch_named") * s.count("watch_named") as f64,
        s.count("watch_named")
    )?;
    cx.done("watch");
    Ok(())
}
