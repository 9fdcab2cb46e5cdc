//! `nsfw man`: the man page, in roff. clap_mangen gives the title, synopsis, description and
//! global options; each command gets a section of its own (description, arguments and options
//! with their values and defaults, exit status, example), then what the command line alone
//! does not say: the topology file, CNI mode, files, environment, exit status, see also. It
//! names no page that is not shipped (one page documents every command).

use crate::output;

use super::{Fail, OK};

/// Text for roff: backslashes and dashes escaped, a line that starts with `.` or `'` guarded.
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

/// An argument's tag: `-q, --quiet`, `--max-repairs N`, `FILE`.
fn flag(a: &clap::Arg) -> String {
    let value = a
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| format!(" \\fI{}\\fR", roff(v)))
        .filter(|_| a.get_action().takes_values() && a.get_long().is_some());
    match (a.get_short(), a.get_long()) {
        (Some(s), Some(l)) => format!(
            "\\fB\\-{s}\\fR, \\fB\\-\\-{}\\fR{}",
            roff(l),
            value.unwrap_or_default()
        ),
        (None, Some(l)) => format!("\\fB\\-\\-{}\\fR{}", roff(l), value.unwrap_or_default()),
        _ => format!(
            "\\fI{}\\fR",
            a.get_value_names()
                .and_then(|v| v.first())
                .map(|v| v.to_string())
                .unwrap_or_else(|| a.get_id().as_str().to_uppercase())
        ),
    }
}

/// An argument's help with its possible values and default, as `--help` shows them.
fn arg_help(a: &clap::Arg) -> String {
    let mut help = a
        .get_long_help()
        .or(a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let takes = a.get_action().takes_values();
    // A flag's "true, false" is no value a user gives.
    let values: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| takes && !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() {
        help.push_str(&format!(" [possible values: {}]", values.join(", ")));
    }
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .filter(|_| takes)
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() {
        help.push_str(&format!(" [default: {}]", defaults.join(", ")));
    }
    help
}

fn command_section(page: &mut String, sub: &clap::Command) {
    let name = sub.get_name();
    page.push_str(&format!(".SH \"NSFW {}\"\n", name.to_uppercase()));
    let usage = sub
        .clone()
        .bin_name(format!("nsfw {name}"))
        .render_usage()
        .to_string();
    page.push_str(&format!(
        ".PP\n\\fB{}\\fR\n",
        roff(usage.trim_start_matches("Usage: "))
    ));
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
        page.push_str(&format!(".TP\n{}\n{}\n", flag(a), roff(&arg_help(a))));
    }
    if let Some(after) = sub.get_after_help() {
        for para in after.to_string().split("\n\n") {
            page.push_str(&format!(".PP\n{}\n", roff(para).replace('\n', "\n.br\n")));
        }
    }
}

/// The sections after the commands: (title, paragraphs; a paragraph starting with `TP:`
/// is a tagged one, `TP:tag|text`).
const TAIL: &[(&str, &[&str])] = &[
    (
        "THE TOPOLOGY FILE",
        &[
            "One TOML file describes one topology: `name` (its owner tag, 1\u{2013}16 of [a\u{2013}z0\u{2013}9_]), `[host]` (ip_forward, br_netfilter, protect, routes), `[bridges.NAME]` (address, address6, masquerade, isolate, egress, mtu, ports), `[namespaces.NAME]` (bridge, address, publish, dns, routes, forward, or several `interfaces`), `[[allow]]` and `[[deny]]` (from, to, ports) and `[verify]`. Unknown keys are errors; every error of a file is reported at once, naming the file, key and value, and a file with an error changes nothing.",
            "Every key, its default and what it means: /usr/share/doc/nsfw/docs/topology.md; the firewall it becomes: docs/firewall.md there; shipped topologies: /usr/share/doc/nsfw/rulesets/ (each runs in a throwaway sandbox with `nsfw try FILE`).",
        ],
    ),
    (
        "CNI MODE",
        &[
            "Run with CNI_COMMAND in its environment, nsfw is a CNI plugin (CNI 1.0.0 and 1.1.0: ADD, DEL, CHECK, GC, STATUS, VERSION) and takes no command line: it reads the network configuration on standard input and answers on standard output. Install it (or a symbolic link to it) in the runtime's CNI plugin directory; the Debian package links /usr/lib/cni/nsfw. The configuration keys, podman and containerd set-ups: /usr/share/doc/nsfw/docs/cni.md.",
        ],
    ),
    (
        "FILES",
        &[
            "TP:/etc/nsfw/nsfw.toml|The topology file when none is named (after ./nsfw.toml, taken only when the caller owns it and nobody else can write it). /etc/nsfw/NAME.toml is the file of the packaged template units nsfw@NAME.service, nsfw\u{2010}reapply@NAME.service and nsfw\u{2010}watch@NAME.service.",
            "TP:/run/nsfw/lock|Held exclusively by apply and flush, shared by diff, status and list: one nsfw changes the host at a time.",
            "TP:/run/nsfw/record|The write\u{2010}ahead record: what a run is about to create, and the value of every host sysctl it changes, so that an interrupted run is finished by the next apply or undone by flush.",
            "TP:/run/netns/NAME|The namespaces, bind mounts as `ip netns add` makes them.",
            "TP:/etc/netns/NAME/resolv.conf|A namespace's `dns`, bound over /etc/resolv.conf by `nsfw exec` and `ip netns exec`.",
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            "TP:NO_COLOR|When set and not empty, no colour even on a terminal.",
            "TP:NSFW_TIMING|When set, every step's timing on standard error, as with \\-v.",
            "TP:NSFW_WATCH_MEMORY|When 1 (or true, yes, on), apply and diff take what a running nsfw watch of the topology vouches for instead of entering those namespaces (off by default; watch holds the settings the kernel never notifies open and reads them again before it answers).",
            "TP:NSFW_WATCH_DEBOUNCE_MS|How long nsfw watch waits after a burst of changes before checking (200 ms).",
            "TP:CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH|Set by a container runtime: nsfw runs as a CNI plugin (CNI MODE); CNI_PATH is where it finds the IPAM plugin its configuration names.",
        ],
    ),
    (
        "EXIT STATUS",
        &[
            "0 success (diff, status FILE: in sync; doctor: nothing found), 1 error (usage errors too), 2 (diff, status FILE) changes pending, 3 (doctor) problems found; exec: the command's.",
        ],
    ),
    (
        "SEE ALSO",
        &[
            "\\fBip\\-netns\\fR(8), \\fBnft\\fR(8), \\fBiptables\\fR(8), \\fBsystemctl\\fR(1), \\fBpodman\\-network\\fR(1). The documents in /usr/share/doc/nsfw/: README.md and docs/ (topology.md, firewall.md, json.md: the \\-\\-json output, cni.md, architecture.md).",
        ],
    ),
];

/// `nsfw man`.
pub fn man() -> Result<u8, Fail> {
    let cmd = crate::cli::command();
    let m = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    let head = m
        .render_title(&mut buf)
        .and_then(|()| m.render_name_section(&mut buf))
        .and_then(|()| m.render_synopsis_section(&mut buf))
        .and_then(|()| m.render_description_section(&mut buf))
        .and_then(|()| m.render_options_section(&mut buf));
    head.map_err(|e| super::report(&anyhow::anyhow!("cannot render the man page: {e}")))?;
    let mut page = String::from_utf8_lossy(&buf).into_owned();
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        command_section(&mut page, sub);
    }
    for (title, paras) in TAIL {
        page.push_str(&format!(".SH \"{title}\"\n"));
        for p in *paras {
            match p.strip_prefix("TP:").and_then(|t| t.split_once('|')) {
                Some((tag, text)) => page.push_str(&format!(".TP\n\\fB{tag}\\fR\n{text}\n")),
                None => page.push_str(&format!(".PP\n{p}\n")),
            }
        }
    }
    output::data(format_args!("{}", ascii(&page)));
    Ok(OK)
}

/// Every character beyond ASCII as roff's `\[uXXXX]`: groff reads its input as Latin-1
/// unless told otherwise, and would print UTF-8 bytes as garbage.
fn ascii(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for c in page.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}
