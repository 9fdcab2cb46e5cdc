//! Big tables, inside a sandbox: 10,000 published ports or 10,000 `[[allow]]` entries loaded by
//! nsfw and by `nft -f` of the same ruleset, a no-op apply, one entry changed.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::run::{Res, nsfw_bin, sh, timed, timed_stderr};
use crate::topologies::{Ports, SERVER, policy_sparse_topology, policy_topology, publish_topology};

/// Entries of the policy trial.
pub const POLICY_ENTRIES: usize = 10_000;
/// Larger policies whose cold apply the policy trial also times (the growth with entries).
pub const POLICY_SCALE: [usize; 3] = [25_000, 50_000, 100_000];

/// 10,000 published ports, by `bin` (another nsfw binary) or by this nsfw.
pub fn publish(dir: &Path, bin: Option<&Path>) -> Res<()> {
    let f = dir.join("pub.toml");
    let moved = dir.join("pub-moved.toml");
    std::fs::write(&f, publish_topology(Ports::All { moved: false }))?;
    std::fs::write(&moved, publish_topology(Ports::All { moved: true }))?;
    big_table(
        dir,
        "pub",
        &f,
        &moved,
        bin.map_or_else(nsfw_bin, Path::to_path_buf).as_path(),
    )
}

/// 10,000 `[[allow]]` entries; the change moves the first entry's port.
pub fn policy(dir: &Path) -> Res<()> {
    let f = dir.join("policy.toml");
    let moved = dir.join("policy-moved.toml");
    let text = policy_topology(POLICY_ENTRIES);
    let probe = format!("ports = [\"tcp/{}\"]", SERVER.1);
    std::fs::write(&f, &text)?;
    std::fs::write(
        &moved,
        text.replacen(&probe, &format!("ports = [\"tcp/{}\"]", SERVER.1 + 1), 1),
    )?;
    big_table(dir, "pol", &f, &moved, &nsfw_bin())?;
    // The same shape, larger, each applied to a host nsfw has flushed: `pol_cold_{n}`.
    let nsfw = nsfw_bin();
    let mut last = f;
    for n in POLICY_SCALE {
        // Its plan goes nowhere: this trial's stdout is its figures.
        let status = Command::new(&nsfw)
            .arg("flush")
            .arg(&last)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("nsfw flush {}: {status}", last.display()).into());
        }
        last = dir.join(format!("policy-{n}.toml"));
        std::fs::write(&last, policy_topology(n))?;
        let (ms, rss) = timed(Command::new(&nsfw).arg("apply").arg(&last))?;
        println!("pol_cold_{n} {ms:.3} {rss}");
    }
    for n in [POLICY_ENTRIES, 100_000] {
        let status = Command::new(&nsfw)
            .arg("flush")
            .arg(&last)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("nsfw flush {}: {status}", last.display()).into());
        }
        last = dir.join(format!("policy-sparse-{n}.toml"));
        std::fs::write(&last, policy_sparse_topology(n))?;
        let (ms, rss) = timed(Command::new(&nsfw).arg("apply").arg(&last))?;
        println!("pol_sparse_{n} {ms:.3} {rss}");
    }
    Ok(())
}

/// The `table inet ...` block of `nft list`-style text, without the other tables.
fn inet_table(text: &str) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in text.lines() {
        if line.starts_with("table ") {
            keep = line.starts_with("table inet ");
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Prints `{prefix}_cold` (everything from nothing), `{prefix}_table_nsfw` and
/// `{prefix}_table_nft` (nsfw's table dropped, then loaded by `nsfw apply` or by `nft -f` of
/// `nsfw show`'s output, A B B A), `{prefix}_noop`, and `{prefix}_change` with the batch's
/// messages and bytes (`moved`, then `f`, twice).
fn big_table(dir: &Path, prefix: &str, f: &Path, moved: &Path, nsfw: &Path) -> Res<()> {
    let nft_file = dir.join(format!("{prefix}.nft"));
    // Exactly the ruleset apply loads, in nft syntax: what `nft -f` is given.
    let show = Command::new(nsfw).arg("show").arg(f).output()?;
    if !show.status.success() {
        return Err(format!("nsfw show: {}", String::from_utf8_lossy(&show.stderr)).into());
    }
    // Only the inet table: the trial drops and reloads that table alone, while the bridge
    // table (port security) stays loaded; nft 1.0.6 also cannot read that table back (it has
    // no `icmpv6 taddr`, and no way to give a raw load such as `@th,208,48` the type of the
    // set it is looked up in).
    std::fs::write(
        &nft_file,
        inet_table(&String::from_utf8_lossy(&show.stdout)),
    )?;

    let (ms, rss) = timed(Command::new(nsfw).arg("apply").arg(f))?;
    println!("{prefix}_cold {ms:.3} {rss}");
    let drop_table = "nft delete table inet nsfw_bench";
    let mut checked = false;
    for by_nsfw in [true, false, false, true] {
        sh(drop_table)?;
        if by_nsfw {
            let (ms, rss) = timed(Command::new(nsfw).arg("apply").arg(f))?;
            println!("{prefix}_table_nsfw {ms:.3} {rss}");
        } else {
            let (ms, rss) = timed(Command::new("nft").arg("-f").arg(&nft_file))?;
            println!("{prefix}_table_nft {ms:.3} {rss}");
            if !checked {
                // Both sides must leave the same kernel state: nsfw finds nothing to do after
                // nft -f (exit 0; 2 would mean changes pending).
                let st = Command::new(nsfw)
                    .arg("diff")
                    .arg(f)
                    .stdout(Stdio::null())
                    .status()?;
                if !st.success() {
                    return Err("after nft -f of nsfw show's output, nsfw diff is not clean".into());
                }
                checked = true;
            }
        }
    }
    // The loop ends on nsfw's side: the topology is applied.
    let (ms, rss) = timed(Command::new(nsfw).arg("apply").arg(f))?;
    println!("{prefix}_noop {ms:.3} {rss}");
    for file in [moved, f, moved, f] {
        let (ms, rss, err) = timed_stderr(Command::new(nsfw).args(["apply", "-v"]).arg(file))?;
        println!("{prefix}_change {ms:.3} {rss}");
        // `timing: nft batch of N messages (B bytes): T`
        let (msgs, bytes) = err
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("timing: nft batch of ")?;
                let (m, rest) = rest.split_once(" messages (")?;
                let (b, _) = rest.split_once(" bytes)")?;
                Some((m.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
            })
            .ok_or("apply -v printed no nft batch line")?;
        println!("{prefix}_change_msgs {msgs} 0");
        println!("{prefix}_change_bytes {bytes} 0");
    }
    Ok(())
}
