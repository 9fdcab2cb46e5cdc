use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use nsfw::commands;

/// nftables-first NAT and firewall manager for Linux network namespaces.
#[derive(Parser)]
#[command(name = "nsfw", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make the host match FILE; prints the plan it carried out.
    Apply {
        /// Topology file (default: ./nsfw.toml, then /etc/nsfw/nsfw.toml).
        file: Option<PathBuf>,
    },
    /// Print what apply would change; exit 0 in sync, 2 changes pending, 1 error.
    Diff {
        file: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove everything nsfw owns for the topology (or for every topology with --all).
    Flush {
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        all: bool,
    },
    /// Print the nftables ruleset nsfw would load, in `nft` syntax.
    Show { file: Option<PathBuf> },
    /// Build the topology in a throwaway sandbox, run the checks, tear it down.
    Try {
        /// Topology file (default: the embedded lab, rulesets/lab.toml).
        file: Option<PathBuf>,
    },
    /// Run the connectivity checks against the live topology.
    Verify { file: Option<PathBuf> },
    /// Run a command in a fresh sandbox (used by the tests).
    #[command(hide = true)]
    Sandbox {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Apply { file } => commands::apply(file),
        Cmd::Diff { file, json } => commands::diff(file, json),
        Cmd::Flush { file, all } => commands::flush(file, all),
        Cmd::Show { file } => commands::show(file),
        Cmd::Try { file } => commands::try_(file),
        Cmd::Verify { file } => commands::verify(file),
        Cmd::Sandbox { command } => commands::sandbox(command),
    };
    ExitCode::from(code)
}
