use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use nsfw::commands::{self, Fail, FlushWhat};
use nsfw::output::{self, Level};

/// nftables-first NAT and firewall manager for Linux network namespaces.
#[derive(Parser)]
#[command(name = "nsfw", version, about)]
struct Cli {
    /// Print errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print every step with its timing (on stderr).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make the host match FILE; prints the plan it carried out.
    Apply {
        /// Topology file (default: ./nsfw.toml, then /etc/nsfw/nsfw.toml; `-`: standard input).
        file: Option<PathBuf>,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Print what apply would change; exit 0 in sync, 2 changes pending, 1 error.
    Diff {
        /// Topology file (default: ./nsfw.toml, then /etc/nsfw/nsfw.toml; `-`: standard input).
        file: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove everything nsfw owns for the topology (or for every topology with --all).
    Flush {
        /// Topology file (default: ./nsfw.toml, then /etc/nsfw/nsfw.toml).
        file: Option<PathBuf>,
        /// Every nsfw topology on this host.
        #[arg(long, conflicts_with_all = ["file", "name"])]
        all: bool,
        /// The topology with this name, without reading its file.
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        /// Fail at once if another nsfw is changing the host, instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Print the nftables ruleset nsfw would load, in `nft` syntax.
    Show {
        /// Topology file (default: ./nsfw.toml, then /etc/nsfw/nsfw.toml).
        file: Option<PathBuf>,
    },
    /// Build the topology in a throwaway sandbox, run the checks, tear it down.
    Try {
        /// Topology file (default: the embedded lab, rulesets/lab.toml).
        file: Option<PathBuf>,
    },
    /// Run the connectivity checks against the live topology.
    Verify {
        /// Topology file (default: ./nsfw.toml, then /etc/nsfw/nsfw.toml).
        file: Option<PathBuf>,
    },
    /// Run a command in a fresh sandbox (used by the tests).
    #[command(hide = true)]
    Sandbox {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Usage errors exit 1, never 2 (2 means "changes pending"); --help and --version
            // are not errors.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    output::set_level(if cli.quiet {
        Level::Quiet
    } else if cli.verbose {
        Level::Verbose
    } else {
        Level::Normal
    });
    // Files nsfw creates get the modes it asks for, whatever the caller's umask.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nsfw::plumbing::raise_fd_limit();
    // `try` and `sandbox` fork a child that unshares its mount namespace, which needs a single
    // thread; the handlers start none.
    nsfw::signals::install();
    let r = match cli.cmd {
        Cmd::Apply { file, no_wait } => commands::apply(file, !no_wait),
        Cmd::Diff {
            file,
            json,
            no_wait,
        } => commands::diff(file, json, !no_wait),
        Cmd::Flush {
            file,
            all,
            name,
            no_wait,
        } => {
            let what = match (all, name) {
                (true, _) => FlushWhat::All,
                (false, Some(n)) => FlushWhat::Name(n),
                (false, None) => FlushWhat::File(file),
            };
            commands::flush(what, !no_wait)
        }
        Cmd::Show { file } => commands::show(file),
        Cmd::Try { file } => commands::try_(file),
        Cmd::Verify { file } => commands::verify(file),
        Cmd::Sandbox { command } => commands::sandbox(command),
    };
    ExitCode::from(match r {
        Ok(c) => c,
        Err(Fail(c)) => c,
    })
}
