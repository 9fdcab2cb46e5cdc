//! The routed lab (nsfw against the same lab by hand, and against nsfw's flat lab of the same
//! size) and the dual-stack lab (against the same lab IPv4-only).

use std::fmt::Write as _;

use super::Ctx;
use crate::labs::ROUTERS;
use crate::run::{Res, Samples, trial};

/// Namespaces behind each router.
const PER_ROUTER: usize = 100;
/// Namespaces of the dual-stack lab.
const DUAL_NS: usize = 100;

/// `ROUTERS` routers, each with `PER_ROUTER` namespaces: A B B A of nsfw and the hand-written
/// lab, then nsfw's flat lab of the same namespaces, in every run.
pub fn routed(cx: &mut Ctx) -> Res<()> {
    let n = ROUTERS * PER_ROUTER;
    let mut s = Samples::default();
    for r in 0..cx.runs {
        for kind in ["routed", "hand", "hand", "routed", "flat"] {
            s.add(trial(kind, n, None)?);
        }
        eprintln!("routed: run {}/{} done", r + 1, cx.runs);
    }
    let m = |k: &str| s.median(k);
    writeln!(
        cx.report,
        "\n### Routed lab: {ROUTERS} routers, each with {PER_ROUTER} namespaces on its own L2-only bridge ({} namespaces)\n
| what is timed | nsfw routed ms | by hand (ip -batch + nft -f) ms | nsfw / by hand | nsfw flat ({ROUTERS} bridges × {}, no routers) ms | routed / flat |
|---|---|---|---|---|---|",
        n + ROUTERS,
        PER_ROUTER + 1
    )?;
    for (k, what) in [
        ("cold", "apply from nothing"),
        ("noop", "apply with nothing to do"),
        (
            "flush",
            "flush (by hand: `ip -batch` of netns/link del, nft delete table)",
        ),
    ] {
        let (rt, fl) = (m(&format!("routed_{k}")), m(&format!("flat_{k}")));
        let hand = m(&format!("hand_{k}"));
        let (hand_ms, ratio) = if hand.is_nan() {
            ("—".to_string(), "—".to_string())
        } else {
            (format!("{hand:.0}"), format!("{:.2}×", rt / hand))
        };
        writeln!(
            cx.report,
            "| {what} | {rt:.0} | {hand_ms} | {ratio} | {fl:.0} | {:.2}× |",
            rt / fl
        )?;
    }
    writeln!(
        cx.report,
        "\nsamples per figure: nsfw routed {}, by hand {}, flat {}",
        s.count("routed_cold"),
        s.count("hand_cold"),
        s.count("flat_cold")
    )?;
    cx.done("routed");
    Ok(())
}

/// `DUAL_NS` namespaces dual-stack against IPv4-only, A B B A in every run.
pub fn dual(cx: &mut Ctx) -> Res<()> {
    let mut s = Samples::default();
    for r in 0..cx.runs {
        for kind in ["dual6", "dual4", "dual4", "dual6"] {
            s.add(trial(kind, DUAL_NS, None)?);
        }
        eprintln!("dual: run {}/{} done", r + 1, cx.runs);
    }
    let m = |k: &str| s.median(k);
    writeln!(
        cx.report,
        "\n### Dual-stack: {DUAL_NS} namespaces on one bridge with address6 against the same IPv4-only ({} samples per side)\n
| what is timed | dual-stack ms | IPv4 only ms | dual / IPv4 |
|---|---|---|---|",
        s.count("dual6_cold")
    )?;
    for (k, what) in [
        ("cold", "apply from nothing"),
        ("noop", "apply with nothing to do"),
    ] {
        let (six, four) = (m(&format!("dual6_{k}")), m(&format!("dual4_{k}")));
        writeln!(
            cx.report,
            "| {what} | {six:.0} | {four:.0} | {:.2}× |",
            six / four
        )?;
    }
    cx.done("dual");
    Ok(())
}

/// Namespaces of the adopted lab.
const ADOPT_NS: usize = 100;

/// The classic lab of `ADOPT_NS` namespaces built by hand and adopted, against a cold apply of
/// the file `import` wrote for it (issue 28: adopt at most 2× the cold apply).
pub fn adopt(cx: &mut Ctx) -> Res<()> {
    let mut s = Samples::default();
    for r in 0..cx.runs {
        s.add(trial("adopt", ADOPT_NS, None)?);
        eprintln!("adopt: run {}/{} done", r + 1, cx.runs);
    }
    let m = |k: &str| s.median(k);
    writeln!(
        cx.report,
        "\n### Adoption: the classic lab of {ADOPT_NS} namespaces built by hand, `import`ed and `apply --adopt`ed, against a cold apply of the same file ({} samples)\n
| what is timed | ms |
|---|---|
| `nsfw import` | {:.0} |
| `nsfw apply --adopt` | {:.0} |
| `nsfw apply` of the same file from nothing | {:.0} |
| adopt / cold apply | {:.2}× |",
        s.count("adopt"),
        m("import"),
        m("adopt"),
        m("adopt_cold"),
        m("adopt") / m("adopt_cold")
    )?;
    cx.done("adopt");
    Ok(())
}
