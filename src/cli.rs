//! The command line: every subcommand, its FILE, defaults, exit statuses and an example, and the
//! top-level help grouped by what a command is for. `main` parses with it; `nsfw completions`
//! and `nsfw man` are generated from it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum, ValueHint};

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

/// What `nsfw graph` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// One standalone SVG file (no script, no fetches).
    Svg,
    /// Graphviz's dot language (`dot -Tpng` draws it).
    Dot,
    /// A Mermaid flowchart (Markdown viewers that render Mermaid draw it).
    Mermaid,
}

/// What `nsfw status` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
    /// Metrics for Prometheus: the text exposition format node_exporter's textfile collector
    /// reads.
    Openmetrics,
}

/// `nsfw graph`'s arguments.
#[derive(Args)]
pub struct GraphArgs {
    #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,
    /// svg, dot or mermaid.
    #[arg(long, value_enum, default_value_t = GraphFormat::Svg, value_name = "FORMAT")]
    pub format: GraphFormat,
    /// Overlay the kernel's state (root): drift in red with the reason, counters.
    #[arg(long, conflicts_with = "no_live")]
    pub live: bool,
    /// Draw FILE alone, even as root where the topology is applied.
    #[arg(long)]
    pub no_live: bool,
    /// Write the picture to PATH instead of standard output.
    #[arg(short, long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Make the host match FILE; prints the plan it carried out.
    #[command(
        long_about = "Make the host match FILE: create what is missing, fix what drifted, remove what nsfw owns that FILE no longer names. Prints the plan as it is carried out, then a summary line. Waits while another nsfw changes the host (--no-wait: fail at once). A run that is killed leaves nothing the next apply cannot finish.",
        after_help = "Exit status: 0 done (with --dry-run: planned), 4 partially applied: everything but the objects in the way it names (a resolv.conf edited by hand), 1 error (nothing is changed when FILE is invalid or a link or namespace in the way is not nsfw's).\n\nExamples:\n  nsfw apply rulesets/lab.toml\n  nsfw apply --dry-run rulesets/lab.toml   (the plan, nothing changed: as `nsfw diff`)\n  nsfw apply --summary big.toml            (one line per kind of change)"
    )]
    Apply {
        #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// Print the plan carried out as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
        /// Print the plan apply would carry out and change nothing (what `nsfw diff` does,
        /// printed as apply prints it; exit 0 whether or not changes are pending).
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// One line per kind of change (`+ namespace × 2000`) instead of one per change.
        #[arg(long, short = 's')]
        summary: bool,
        /// Take over what FILE describes but nsfw did not make (a lab built by hand, as `nsfw
        /// import` wrote it), in place, and replace the firewall lines it recognises.
        #[arg(long)]
        adopt: bool,
        /// Write nsfw's resolv.conf over one it did not write (edited by hand), as
        /// `dns_policy = "replace"` does for one namespace.
        #[arg(long, conflicts_with = "dry_run")]
        force: bool,
    },
    /// Print what apply would change, read from the kernel's own state.
    #[command(
        long_about = "Print the plan apply would carry out, computed from what the kernel holds (namespaces, links, addresses, routes, sysctls, files, nftables), grouped by object: + create, - delete, ~ modify. Changes nothing.",
        after_help = "Exit status: 0 in sync, 2 changes pending, 1 error.\n\nExample:\n  nsfw diff --json rulesets/lab.toml"
    )]
    Diff {
        #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Machine-readable output (docs/json.md).
        #[arg(long)]
        json: bool,
        /// One line per kind of change (`+ namespace × 2000`) instead of one per change.
        #[arg(long, short = 's')]
        summary: bool,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// The plan of `apply --adopt`.
        #[arg(long)]
        adopt: bool,
    },
    /// Remove everything nsfw owns for a topology.
    #[command(
        long_about = "Remove everything nsfw owns for the topology of FILE (or the one named with --name, or every topology with --all): namespaces, links, nftables tables and the rules nsfw placed in other chains, resolv.conf files; host sysctls go back to their value from before nsfw when no topology needs them. Never touches what nsfw does not own.",
        after_help = "Exit status: 0 done (also when nothing was there), 1 error (including namespaces nsfw could not look into).\n\nExamples:\n  nsfw flush rulesets/lab.toml\n  nsfw flush --name lab"
    )]
    Flush {
        #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Every nsfw topology on this host.
        #[arg(long, conflicts_with_all = ["file", "name"])]
        all: bool,
        /// The topology with this name, without reading its file (which may be gone or broken).
        #[arg(long, conflicts_with = "file", value_name = "NAME")]
        name: Option<String>,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// Print what was removed as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
        /// One line per kind of change (`- namespace × 2000`) instead of one per change.
        #[arg(long, short = 's')]
        summary: bool,
    },
    /// Print the topology file of what this host holds (a lab built by hand).
    #[command(
        long_about = "Read the live host (named namespaces, bridges, veth pairs, addresses, routes, /etc/netns resolv.conf files, ip_forward; the MASQUERADE, FORWARD and DNAT lines of iptables-nft and nft rulesets) and print a topology file that describes it. What has no place in a topology file is kept in it as a comment with the original, and said on standard error. Changes nothing; as a user, reads what the kernel lets it.",
        after_help = "Exit status: 0, 1 error.\n\nExamples:\n  nsfw import > lab.toml && nsfw apply --adopt lab.toml\n  nsfw import --name lab --subnet 10.10.0.0/16 --json"
    )]
    Import {
        /// The topology's name in the file (default: `lab`, or `lab-2`… when nsfw holds a
        /// topology of that name).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Only bridges whose address lies in CIDR (repeatable; default: every bridge with a
        /// named namespace on it).
        #[arg(long, value_name = "CIDR")]
        subnet: Vec<String>,
        /// Print the file and what was read as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Print the nftables ruleset nsfw would load, in nft syntax.
    #[command(
        long_about = "Print the nftables ruleset nsfw would load for FILE, in nft syntax: `nft -f` loads it. With --json, the same table as nsfw's IR in JSON (docs/json.md). Touches nothing.",
        after_help = "Exit status: 0, 1 error.\n\nExamples:\n  nsfw show rulesets/lab.toml > lab.nft\n  nsfw show --json rulesets/lab.toml | jq '.tables[0].chains[].name'"
    )]
    Show {
        #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
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
        #[arg(value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Print the checks as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Why can (or can't) FROM reach TO: the file's answer and one real packet's.
    #[command(
        long_about = "Why FROM can or cannot reach TO (each a namespace, a bridge, `host`, `world` or an address) at PROTO/PORT (tcp/80, udp/53; default icmp): the file's answer (allowed or blocked, by which entry at which line of the file, the NAT on the way, the path through segments and routers) and the kernel's, from one real packet sent from FROM with nftables tracing turned on for that packet alone (a temporary chain in nsfw's own table matching its exact addresses, protocol and ports, deleted after): every chain and rule it met in every table of the host and of the routers on its way, nsfw's own mapped back to the file's entry. When the two disagree, that comes first, with the other table's rule that drops the packet and the fix. With --sandbox, in a throwaway copy of the topology as `nsfw try` builds it (there FROM may be `world`). Leaves the ruleset as it found it.",
        after_help = "Exit status: 0 the file and the kernel agree, 1 they disagree or the question could not be asked.\n\nExamples:\n  nsfw why -f rulesets/lab.toml ns1 world tcp/443\n  nsfw why --sandbox -f rulesets/publish.toml world host tcp/8080"
    )]
    Why {
        /// A namespace, a bridge, `host`, `world` (--sandbox only) or an address.
        from: String,
        /// A namespace, a bridge, `host`, `world` or an address (a published port: `host` or the host's address with the host port).
        to: String,
        /// tcp/PORT, udp/PORT or icmp.
        #[arg(default_value = "icmp")]
        l4: String,
        #[arg(short, long, help = FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Over IPv6 (implied by an IPv6 address).
        #[arg(short = '6', long)]
        ipv6: bool,
        /// In a throwaway sandbox copy of the topology, as `nsfw try` builds it.
        #[arg(long)]
        sandbox: bool,
        /// Print the answer as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Run the checks against the live topology.
    #[command(
        long_about = "Run the checks FILE implies against the live topology: namespaces reach their gateways and peers, published ports answer from the host and through it, and each TCP service named under `[verify] targets` is connected to from the namespaces, as the policy says it should or should not be; without targets, the namespaces of masquerading bridges ping the host's default gateway (egress and NAT). A connection that fails is explained when another table's rule drops it (as `nsfw doctor` finds it) or iptables-legacy's tables are loaded.",
        after_help = "Exit status: 0 every check as expected, 1 otherwise.\n\nExample:\n  nsfw verify rulesets/lab.toml\n  (with [verify] targets = [\"203.0.113.10:443\"] in the file to check egress to that service instead of the default gateway)"
    )]
    Verify {
        #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Print the checks as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// What nsfw owns on this host, per topology: namespaces, addresses, ports, counters.
    #[command(
        long_about = "List every nsfw topology on this host, found by nsfw's marks (no file needed): its bridges, namespaces with their interfaces and addresses, the ports it publishes, and the packets its nftables table accepted, dropped and masqueraded per chain. With FILE, also whether the host matches that file, as `nsfw diff` would say. Changes nothing; waits while another nsfw changes the host.",
        after_help = "FILE: optional, no default (without it nothing is compared).\n\nExit status: 0 (with FILE: in sync), 2 with FILE: the host differs from it, 1 error.\n\nExamples:\n  nsfw status\n  nsfw status --json /etc/nsfw/nsfw.toml\n  nsfw status --format openmetrics > /var/lib/prometheus/node-exporter/nsfw.prom"
    )]
    Status {
        /// Topology file to compare the host with [default: none; `-` reads standard input]
        #[arg(value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Print the topologies as JSON (docs/json.md); the same as --format json.
        #[arg(long)]
        json: bool,
        /// text, json, or openmetrics: the counters as metrics (README.md: Monitoring).
        #[arg(long, value_enum, conflicts_with = "json", value_name = "FORMAT")]
        format: Option<StatusFormat>,
    },
    /// Draw the topology: SVG, Graphviz dot or Mermaid; live, the kernel's state over it.
    #[command(
        long_about = "Draw the topology of FILE: the host and the world, each bridge as a segment with its subnets (L2-only marked), the namespaces on it with their interfaces and addresses, routers between segments with their routes and NAT, physical ports, published ports (host address:port -> namespace:port), and the policy as labelled edges grouped by source. The SVG (the default) is one standalone file, laid out by nsfw itself, no wider than 1400 pixels: segments wrap into rows. With --live (needs root) the kernel's state goes over it: what differs from FILE in red with the reason (the plan `nsfw diff` prints), and the counters of `nsfw status` as labels; as root, that is the default when the topology is on the host. Without root, or with --no-live, FILE alone.",
        after_help = "Exit status: 0, 1 error.\n\nExamples:\n  nsfw graph rulesets/router.toml > router.svg\n  nsfw graph --format dot rulesets/lab.toml | dot -Tpng > lab.png\n  sudo nsfw graph --live -o /tmp/lab.svg /etc/nsfw/lab.toml"
    )]
    Graph(GraphArgs),
    /// One line per object nsfw owns on this host: topology, kind, name.
    #[command(
        long_about = "List what nsfw owns on this host, found by its marks (no file needed), one object a line: `TOPOLOGY KIND NAME`, where KIND is table, bridge, namespace or port (`tcp/8080`, `udp/127.0.0.1:5353`). For scripts: `nsfw list | awk '$2 == \"namespace\" {print $3}'`. `nsfw status` says more of each; `nsfw status --json` is the machine-readable form. Changes nothing; waits while another nsfw changes the host.",
        after_help = "Exit status: 0, 1 error.\n\nExample:\n  nsfw list"
    )]
    List,
    /// Find what on this host will break or weaken the topology.
    #[command(
        long_about = "Read the host and report each thing that breaks or weakens the topology of FILE, with the object at fault and the fix: other nftables tables (iptables-nft's too) whose base chains drop or reject its traffic, by policy or by a rule matching its interfaces or subnets, which an accept in nsfw's table cannot override; iptables-legacy tables; forwarding and br_netfilter; the neighbour table's gc_thresh3 against the number of namespaces; forwarding between the host's other interfaces; routes overlapping its subnets; processes listening on its published ports. Changes nothing.",
        after_help = "Exit status: 0 nothing found, 3 problems or warnings found, 1 error.\n\nExample:\n  nsfw doctor /etc/nsfw/nsfw.toml"
    )]
    Doctor {
        #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Print the findings as JSON (docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// What nsfw's ruleset drops, and which line of the file drops it.
    #[command(
        long_about = "Say what the table of FILE's topology drops, in the file's terms. Every drop of nsfw's filter chains is logged to nflog group 28275, limited in the kernel to 20 packets a second per reason, with the reason in its prefix: policy (a [[deny]] entry), closed (nothing unsolicited in, no bridge to another), isolated (between the namespaces of an isolated bridge), egress (egress = \"deny\" or egress_via), host ([host] protect), spoofed (a source address not of the bridge it came from), invalid (conntrack state invalid). With --follow, one line per dropped packet as it happens: time (UTC), from, to, protocol and port, reason, and the entry of the file with its line; repeats of one drop within 2 s are summarised (\"N more like this\", with what the kernel dropped for that reason without logging). Without --follow, the packets each reason dropped since the table was loaded: the kernel keeps no record of single drops, and nsfw keeps no files. Accepted traffic is never logged. Only one process may read the group at a time, and it serves every topology of the host: --follow without FILE follows them all (each line names its topology; the default file's drops name their entries), with FILE the others' drops are counted and said hidden. With --follow, a warning when FILE differs from the table on the host (its entries and lines may then not be the ones that dropped). Any root process can log to the group: a packet whose prefix is not one nsfw writes is ignored, with a warning.",
        after_help = "Exit status: 0 (with --follow: stopped by SIGINT/SIGTERM or a closed output), 1 error (FILE invalid, its table not on the host, the nflog group taken).\n\nExamples:\n  nsfw drops /etc/nsfw/lab.toml\n  nsfw drops --follow /etc/nsfw/lab.toml\n  nsfw drops --follow   (every topology of the host)\n  nsfw drops --follow --json /etc/nsfw/lab.toml | jq 'select(.reason == \"policy\")'"
    )]
    Drops {
        #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// One JSON object a line (docs/json.md).
        #[arg(long)]
        json: bool,
        /// Print each drop as it happens, until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// With --follow, only drops from this time on: an age (30s, 5m, 1h) or a UTC time
        /// of today (16:02[:03]). There is no history: a drop from before the start is never seen.
        #[arg(long, requires = "follow", value_name = "WHEN")]
        since: Option<String>,
    },
    /// Stay running and repair nsfw's objects when something else changes them.
    #[command(
        long_about = "Listen to the kernel's nf_tables and rtnetlink notifications (and to /run/netns) and, when something changes an object of the topology of FILE (its table, links, addresses, routes, the accepts it keeps in iptables' FORWARD/DOCKER-USER, the FORWARD policy they depend on, forwarding), check the host against FILE 200 ms later and repair it as `nsfw apply` would, logging one line per repair. FILE is read again at every check. Never builds a topology that is not on the host (not applied yet, or flushed) and never touches what nsfw does not own. After --max-repairs repairs in a minute it is in a fight with another manager: it names the process the kernel says made the changes, repairs each change at once (at most a tenth of its time, at least every --pause seconds) so the firewall stays up, and says how the fight goes every 10 s. Holds the lock only while checking or repairing. With --metrics it serves GET /metrics over HTTP (the metrics of `nsfw status --format openmetrics`, read at each scrape, and its own: checks and repairs with their durations, drift seen, fights). SIGINT or SIGTERM stops it.",
        after_help = "Exit status: 0 when stopped by SIGINT/SIGTERM, 1 error (FILE invalid at start, not root, --metrics address refused or taken).\n\nExamples:\n  nsfw watch /etc/nsfw/nsfw.toml   (nsfw-watch.service of `nsfw systemd` runs this)\n  nsfw watch --metrics 127.0.0.1:9842 /etc/nsfw/nsfw.toml"
    )]
    Watch {
        #[arg(help = WATCH_FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Repairs within one minute after which watch is in a fight.
        #[arg(long, default_value_t = 10, value_name = "N")]
        max_repairs: usize,
        /// In a fight, the longest wait between two repairs, in seconds.
        #[arg(long, default_value_t = 2, value_name = "SECONDS")]
        pause: u64,
        /// Serve metrics (those of `nsfw status --format openmetrics` and watch's own) on
        /// GET /metrics at ADDR:PORT; a loopback address unless --metrics-public.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<String>,
        /// Let --metrics listen on an address other hosts can reach.
        #[arg(long, requires = "metrics")]
        metrics_public: bool,
    },
    /// Run a command in a namespace, with its resolv.conf.
    #[command(
        long_about = "Run CMD in namespace NS as `ip netns exec` does: in a mount namespace of its own where /sys shows NS's interfaces and every file of /etc/netns/NS (its resolv.conf) is bind-mounted over the one in /etc. CMD replaces nsfw.",
        after_help = "Exit status: CMD's (127 when it cannot be run, 1 when NS cannot be entered).\n\nExample:\n  nsfw exec ns1 -- cat /etc/resolv.conf"
    )]
    Exec {
        /// The namespace (a name in /run/netns).
        #[arg(value_name = "NS")]
        ns: String,
        /// The command and its arguments.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_hint = ValueHint::CommandWithArguments
        )]
        command: Vec<OsString>,
    },
    /// Print the systemd units that keep the topology across boots and firewall reloads.
    #[command(
        long_about = "Print (or with --dir write) the systemd units for the topology of FILE, named after the topology (NAME below is its `name`), so that the units of several topologies live side by side: nsfw-NAME.service applies it at boot after the network and the other firewalls, applies it again on their reload and flushes it at stop; nsfw-NAME-reapply.service applies it again when nftables, firewalld or docker (re)start; nsfw-NAME-watch.service runs `nsfw watch`. FILE and nsfw are named by their absolute paths; with FILE `-` (the topology on standard input) the units apply /etc/nsfw/NAME.toml, where the file must then be.",
        after_help = "Exit status: 0, 1 error.\n\nExample (a topology named lab):\n  nsfw systemd /etc/nsfw/lab.toml --dir /etc/systemd/system\n  systemctl daemon-reload && systemctl enable --now nsfw-lab.service nsfw-lab-reapply.service nsfw-lab-watch.service\n\nPackaged (template units, one instance per /etc/nsfw/NAME.toml):\n  systemctl enable --now nsfw@lab.service nsfw-reapply@lab.service nsfw-watch@lab.service"
    )]
    Systemd {
        #[arg(help = FILE_HELP, value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// Write the units into this directory instead of printing them.
        #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
        dir: Option<PathBuf>,
        /// Print template units instead (nsfw@.service and its companions; `nsfw@lab`
        /// applies /etc/nsfw/lab.toml), which need no file now: what packages install.
        #[arg(long, conflicts_with = "file")]
        template: bool,
        /// The nsfw the units run [default: this nsfw's absolute path].
        #[arg(long, value_name = "PATH", value_hint = ValueHint::ExecutablePath)]
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
    (
        "Inspect",
        &[
            "diff", "show", "status", "list", "graph", "verify", "doctor",
        ],
    ),
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
