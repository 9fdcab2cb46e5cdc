//! The command line: every subcommand, its FILE, defaults, exit statuses and an example, and the
//! top-level help grouped by what a command is for. `main` parses with it; `nsfw completions`
//! and `nsfw man` are generated from it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

const WATCH_FILE_HELP: &str = "Topology file, read again at every check [default: ./nsfw.toml if you own it and nobody else can write it, else /etc/nsfw/nsfw.toml; not standard input]";
const FILE_HELP: &str = "Topology file [default: ./nsfw.toml if you own it and nobody else can write it, else /etc/nsfw/nsfw.toml; - reads standard input]";

/// nftables-first NAT and firewall manager for Linux network namespaces.
#[derive(Parser)]
#[command(name = "nsfw", version, about)]
pub struct Cli {
    /// Print errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print every step with its timing (on stderr).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Make the host match FILE; prints the plan it carried out.
    #[command(
        long_about = "Make the host match FILE: create what is missing, fix what drifted, remove what nsfw owns that FILE no longer names. Prints the plan as it is carried out, then a summary line. Waits while another nsfw changes the host (--no-wait: fail at once). A run that is killed leaves nothing the next apply cannot finish.",
        after_help = "Exit status: 0 done, 1 error (nothing is changed when FILE is invalid or an object in the way is not nsfw's).\n\nExample:\n  nsfw apply rulesets/lab.toml"
    )]
    Apply {
        #[arg(help = FILE_HELP)]
        file: Option<PathBuf>,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// Print the plan carried out as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Print what apply would change, read from the kernel's own state.
    #[command(
        long_about = "Print the plan apply would carry out, computed from what the kernel holds (namespaces, links, addresses, routes, sysctls, files, nftables), grouped by object: + create, - delete, ~ modify. Changes nothing.",
        after_help = "Exit status: 0 in sync, 2 changes pending, 1 error.\n\nExample:\n  nsfw diff --json rulesets/lab.toml"
    )]
    Diff {
        #[arg(help = FILE_HELP)]
        file: Option<PathBuf>,
        /// Machine-readable output (docs/json.md).
        #[arg(long)]
        json: bool,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove everything nsfw owns for a topology.
    #[command(
        long_about = "Remove everything nsfw owns for the topology of FILE (or the one named with --name, or every topology with --all): namespaces, links, nftables tables and the rules nsfw placed in other chains, resolv.conf files; host sysctls go back to their value from before nsfw when no topology needs them. Never touches what nsfw does not own.",
        after_help = "Exit status: 0 done (also when nothing was there), 1 error (including namespaces nsfw could not look into).\n\nExamples:\n  nsfw flush rulesets/lab.toml\n  nsfw flush --name lab"
    )]
    Flush {
        #[arg(help = FILE_HELP)]
        file: Option<PathBuf>,
        /// Every nsfw topology on this host.
        #[arg(long, conflicts_with_all = ["file", "name"])]
        all: bool,
        /// The topology with this name, without reading its file (which may be gone or broken).
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Print the nftables ruleset nsfw would load, in nft syntax.
    #[command(
        long_about = "Print the nftables ruleset nsfw would load for FILE, in nft syntax: `nft -f` loads it. With --json, the same table as nsfw's IR in JSON (docs/json.md). Touches nothing.",
        after_help = "Exit status: 0, 1 error.\n\nExamples:\n  nsfw show rulesets/lab.toml > lab.nft\n  nsfw show --json rulesets/lab.toml | jq '.tables[0].chains[].name'"
    )]
    Show {
        #[arg(help = FILE_HELP)]
        file: Option<PathBuf>,
        /// Print the table as JSON (docs/json.md) instead of nft syntax.
        #[arg(long)]
        json: bool,
    },
    /// Build the topology in a throwaway sandbox and check it with real packets.
    #[command(
        long_about = "Build the topology in a throwaway sandbox (a fresh network and mount namespace) with a simulated upstream (198.51.100.0/24, 203.0.113.0/24), run the checks the file implies, and tear it all down. Touches nothing on the host.",
        after_help = "Exit status: 0 every check as expected, 1 otherwise.\n\nExample:\n  nsfw try rulesets/publish.toml"
    )]
    Try {
        /// Topology file [default: the embedded lab, rulesets/lab.toml]
        file: Option<PathBuf>,
        /// Print the checks as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Run the checks against the live topology.
    #[command(
        long_about = "Run the checks FILE implies against the live topology: namespaces reach their gateways and peers, published ports answer from the host and through it, and each TCP service named under `[verify] targets` (none by default) is connected to from the namespaces, as the policy says it should or should not be. A connection that fails is explained when another table's rule drops it (as `nsfw doctor` finds it).",
        after_help = "Exit status: 0 every check as expected, 1 otherwise.\n\nExample:\n  nsfw verify rulesets/lab.toml\n  (with [verify] targets = [\"203.0.113.10:443\"] in the file to check egress)"
    )]
    Verify {
        #[arg(help = FILE_HELP)]
        file: Option<PathBuf>,
        /// Print the checks as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// What nsfw owns on this host, per topology: namespaces, addresses, ports, counters.
    #[command(
        long_about = "List every nsfw topology on this host, found by nsfw's marks (no file needed): its bridges, namespaces with their interfaces and addresses, the ports it publishes, and the packets its nftables table accepted, dropped and masqueraded per chain. With FILE, also whether the host matches that file, as `nsfw diff` would say. Changes nothing; waits while another nsfw changes the host.",
        after_help = "FILE: optional, no default (without it nothing is compared).\n\nExit status: 0 (with FILE: in sync), 2 with FILE: the host differs from it, 1 error.\n\nExamples:\n  nsfw status\n  nsfw status --json /etc/nsfw/nsfw.toml"
    )]
    Status {
        /// Topology file to compare the host with [default: none; `-` reads standard input]
        file: Option<PathBuf>,
        /// Print the topologies as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Find what on this host will break or weaken the topology.
    #[command(
        long_about = "Read the host and report each thing that breaks or weakens the topology of FILE, with the object at fault and the fix: other nftables tables (iptables-nft's too) whose base chains drop or reject its traffic, by policy or by a rule matching its interfaces or subnets, which an accept in nsfw's table cannot override; iptables-legacy tables; forwarding and br_netfilter; the neighbour table's gc_thresh3 against the number of namespaces; forwarding between the host's other interfaces; routes overlapping its subnets; processes listening on its published ports. Changes nothing.",
        after_help = "Exit status: 0 nothing found, 3 problems or warnings found, 1 error.\n\nExample:\n  nsfw doctor /etc/nsfw/nsfw.toml"
    )]
    Doctor {
        #[arg(help = FILE_HELP)]
        file: Option<PathBuf>,
        /// Print the findings as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Stay running and repair nsfw's objects when something else changes them.
    #[command(
        long_about = "Listen to the kernel's nf_tables and rtnetlink notifications (and to /run/netns) and, when something changes an object of the topology of FILE (its table, links, addresses, routes, the accepts it keeps in iptables' FORWARD/DOCKER-USER, the FORWARD policy they depend on, forwarding), check the host against FILE 200 ms later and repair it as `nsfw apply` would, logging one line per repair. FILE is read again at every check. Never builds a topology that is not on the host (not applied yet, or flushed) and never touches what nsfw does not own. After --max-repairs repairs in a minute it is in a fight with another manager: it names the process the kernel says made the changes, repairs each change at once (at most a tenth of its time, at least every --pause seconds) so the firewall stays up, and says how the fight goes every 10 s. Holds the lock only while checking or repairing. SIGINT or SIGTERM stops it.",
        after_help = "Exit status: 0 when stopped by SIGINT/SIGTERM, 1 error (FILE invalid at start, not root).\n\nExample:\n  nsfw watch /etc/nsfw/nsfw.toml   (nsfw-watch.service of `nsfw systemd` runs this)"
    )]
    Watch {
        #[arg(help = WATCH_FILE_HELP)]
        file: Option<PathBuf>,
        /// Repairs within one minute after which watch is in a fight.
        #[arg(long, default_value_t = 10, value_name = "N")]
        max_repairs: usize,
        /// In a fight, the longest wait between two repairs, in seconds.
        #[arg(long, default_value_t = 2, value_name = "SECONDS")]
        pause: u64,
    },
    /// Run a command in a namespace, with its resolv.conf.
    #[command(
        long_about = "Run CMD in namespace NS as `ip netns exec` does: in a mount namespace of its own where /sys shows NS's interfaces and every file of /etc/netns/NS (its resolv.conf) is bind-mounted over the one in /etc. CMD replaces nsfw.",
        after_help = "Exit status: CMD's (127 when it cannot be run, 1 when NS cannot be entered).\n\nExample:\n  nsfw exec ns1 -- cat /etc/resolv.conf"
    )]
    Exec {
        /// The namespace.
        ns: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<OsString>,
    },
    /// Print the systemd units that keep the topology across boots and firewall reloads.
    #[command(
        long_about = "Print (or with --dir write) the systemd units for FILE: nsfw.service applies it at boot after the network and the other firewalls, applies it again on their reload and flushes it at stop; nsfw-reapply.service applies it again when nftables, firewalld or docker (re)start; nsfw-watch.service runs `nsfw watch`. FILE and nsfw are named by their absolute paths.",
        after_help = "Exit status: 0, 1 error.\n\nExample:\n  nsfw systemd /etc/nsfw/nsfw.toml --dir /etc/systemd/system\n  systemctl daemon-reload && systemctl enable --now nsfw.service nsfw-reapply.service nsfw-watch.service\n\nPackaged (template units, one instance per /etc/nsfw/NAME.toml):\n  systemctl enable --now nsfw@lab.service nsfw-reapply@lab.service nsfw-watch@lab.service"
    )]
    Systemd {
        #[arg(help = FILE_HELP)]
        file: Option<PathBuf>,
        /// Write the units into this directory instead of printing them.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print template units instead (nsfw@.service and its companions; `nsfw@lab`
        /// applies /etc/nsfw/lab.toml), which need no file now: what packages install.
        #[arg(long, conflicts_with = "file")]
        template: bool,
        /// The nsfw the units run (default: this one's absolute path).
        #[arg(long)]
        bin: Option<PathBuf>,
    },
    /// Print shell completions.
    #[command(
        after_help = "Exit status: 0.\n\nExample:\n  nsfw completions bash > /etc/bash_completion.d/nsfw"
    )]
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Exit status: 0.\n\nExample:\n  nsfw man | man -l -")]
    Man,
    /// Run a command in a fresh sandbox (used by the tests).
    #[command(hide = true)]
    Sandbox {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<OsString>,
    },
}

/// The top-level help's command list, by what a command is for.
const GROUPS: &[(&str, &[&str])] = &[
    ("Build", &["apply", "flush"]),
    ("Inspect", &["diff", "show", "status", "verify", "doctor"]),
    ("Run", &["try", "exec", "watch", "systemd"]),
    ("Shell", &["completions", "man"]),
];

/// The command, with its top-level help grouped.
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let mut list = String::new();
    for (group, names) in GROUPS {
        list.push_str(&format!("{group}:\n"));
        for n in *names {
            let about = cmd
                .find_subcommand(n)
                .and_then(|s| s.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            list.push_str(&format!("  {n:<12} {about}\n"));
        }
        list.push('\n');
    }
    let template = format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{list}Options:\n{{options}}\n\nnsfw COMMAND --help shows a command's FILE, defaults, exit status and an example."
    );
    cmd.help_template(template)
}

/// Parses the process's arguments.
pub fn parse() -> Result<Cli, clap::Error> {
    let m = command().try_get_matches()?;
    <Cli as clap::FromArgMatches>::from_arg_matches(&m)
}
