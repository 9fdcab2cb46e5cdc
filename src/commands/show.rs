//! `nsfw show`: the nftables ruleset nsfw would load, in `nft` syntax (`nft -f` loads it).

use std::path::PathBuf;

use crate::firewall;
use crate::output;

use super::{Fail, OK, load};

pub fn show(file: Option<PathBuf>, json: bool) -> Result<u8, Fail> {
    let t = load(file)?;
    let table = firewall::table(&t);
    if json {
        let v = serde_json::json!({
            "schema": 1,
            "topology": t.name,
            "file": t.source.display().to_string(),
            "tables": [nft::json::table(&table)],
        });
        output::data(format_args!("{v}\n"));
    } else {
        output::data(format_args!("{table}"));
    }
    Ok(OK)
}

/// `nsfw completions SHELL`.
pub fn completions(shell: crate::cli::Shell) -> Result<u8, Fail> {
    use clap_complete::Shell as S;
    let sh = match shell {
        crate::cli::Shell::Bash => S::Bash,
        crate::cli::Shell::Zsh => S::Zsh,
        crate::cli::Shell::Fish => S::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(sh, &mut crate::cli::command(), "nsfw", &mut buf);
    output::data(format_args!("{}", String::from_utf8_lossy(&buf)));
    Ok(OK)
}

/// Text for roff: backslashes doubled, a line that starts with `.` or `'` guarded.
fn roff(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `nsfw man`: the man page, in roff: the program, then a section per command with its
/// description, arguments, options, exit status and example.
pub fn man() -> Result<u8, Fail> {
    let cmd = crate::cli::command();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .map_err(|e| super::report(&anyhow::anyhow!("cannot render the man page: {e}")))?;
    let mut page = String::from_utf8_lossy(&buf).into_owned();
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = sub.get_name();
        page.push_str(&format!(".SH \"NSFW {}\"\n", name.to_uppercase()));
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        page.push_str(&format!(".PP\n{}\n", roff(&about)));
        for a in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            let flag = match (a.get_short(), a.get_long()) {
                (Some(s), Some(l)) => format!("\\fB\\-{s}\\fR, \\fB\\-\\-{l}\\fR"),
                (None, Some(l)) => format!("\\fB\\-\\-{l}\\fR"),
                _ => format!("\\fI{}\\fR", a.get_id().as_str().to_uppercase()),
            };
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            page.push_str(&format!(".TP\n{flag}\n{}\n", roff(&help)));
        }
        if let Some(after) = sub.get_after_help() {
            for para in after.to_string().split("\n\n") {
                page.push_str(&format!(".PP\n{}\n", roff(para).replace('\n', "\n.br\n")));
            }
        }
    }
    page.push_str(".SH \"EXIT STATUS\"\n.PP\n0 success (diff, status FILE: in sync; doctor: nothing found), 1 error (usage errors too), 2 (diff, status FILE) changes pending, 3 (doctor) problems found.\n");
    output::data(format_args!("{page}"));
    Ok(OK)
}
