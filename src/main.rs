#![deny(unsafe_code)]

use std::process::ExitCode;

use nsfw::cli::{self, Cmd};
use nsfw::commands::{self, Fail, FlushWhat, Printing};
use nsfw::output::{self, Level};

fn main() -> ExitCode {
    // A CNI runtime runs nsfw as a plugin: the protocol is environment, stdin and stdout, not
    // the command line (docs/cni.md).
    if nsfw::cni::invoked() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nft::socket::linger_closes();
        let code = nsfw::cni::main();
        nft::socket::close_lingering();
        return ExitCode::from(code);
    }
    let cli = match cli::parse() {
        Ok(c) => c,
        Err(e) => {
            // Usage errors exit 1, never 2 (2 means "changes pending"); --help and --version
            // are not errors.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            // `--json` was asked for: the usage error is a JSON object too.
            if code == 1 && std::env::args().skip(1).any(|a| a == "--json") {
                let first = e.to_string();
                let first = first
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                output::json_failure(None, &[first.to_string()]);
            }
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
    // With --json, stdout carries one JSON object whatever happens: a command that fails
    // before printing its own gets one naming its errors (docs/json.md).
    if let Some(name) = json_command(&cli.cmd) {
        output::collect_errors(name);
    }
    // One-shot commands that commit leave the kernel's wait on the nf_tables socket's release
    // (a grace period, to free the transactions) to a child, after they exit: see
    // `nft::socket::linger_closes`.
    if matches!(cli.cmd, Cmd::Apply { .. } | Cmd::Flush { .. }) {
        nft::socket::linger_closes();
    }
    let r = run(cli.cmd);
    nft::socket::close_lingering();
    let code = match r {
        Ok(c) => c,
        Err(Fail(c)) => c,
    };
    if code == 1 {
        output::json_failure_if_silent();
    }
    // Output a command exists to print (show, --json, completions) that could not be written:
    // the command did not do its job.
    if output::output_lost() && code != 1 {
        output::err(format_args!("error: cannot write to standard output"));
        return ExitCode::from(1);
    }
    ExitCode::from(code)
}

/// The command's name when it was asked for JSON.
fn json_command(cmd: &Cmd) -> Option<&'static str> {
    match cmd {
        Cmd::Apply { json: true, .. } => Some("apply"),
        Cmd::Diff { json: true, .. } => Some("diff"),
        Cmd::Flush { json: true, .. } => Some("flush"),
        Cmd::Show { json: true, .. } => Some("show"),
        Cmd::Import { json: true, .. } => Some("import"),
        Cmd::Try { json: true, .. } => Some("try"),
        Cmd::Verify { json: true, .. } => Some("verify"),
        Cmd::Why { json: true, .. } => Some("why"),
        Cmd::Status { json: true, .. } => Some("status"),
        Cmd::Doctor { json: true, .. } => Some("doctor"),
        Cmd::Drops { json: true, .. } => Some("drops"),
        _ => None,
    }
}

/// The command, carried out: its exit status.
fn run(cmd: Cmd) -> Result<u8, Fail> {
    match cmd {
        Cmd::Apply {
            file,
            no_wait,
            json,
            dry_run,
            summary,
            adopt,
            force,
        } => {
            let how = Printing { json, summary };
            if dry_run {
                commands::dry_run(file, how, !no_wait, adopt)
            } else {
                commands::apply(file, !no_wait, how, commands::Taking { adopt, force })
            }
        }
        Cmd::Diff {
            file,
            json,
            summary,
            no_wait,
            adopt,
        } => commands::diff(file, Printing { json, summary }, !no_wait, adopt),
        Cmd::Import { name, subnet, json } => commands::import(name.as_deref(), &subnet, json),
        Cmd::Flush {
            file,
            all,
            name,
            no_wait,
            json,
            summary,
        } => {
            let what = match (all, name) {
                (true, _) => FlushWhat::All,
                (false, Some(n)) => FlushWhat::Name(n),
                (false, None) => FlushWhat::File(file),
            };
            commands::flush(what, !no_wait, Printing { json, summary })
        }
        Cmd::Show { file, json } => commands::show(file, json),
        Cmd::Status { file, json, format } => commands::status(file, json, format),
        Cmd::Graph(a) => commands::graph(a),
        Cmd::List => commands::list(),
        Cmd::Doctor { file, json } => commands::doctor(file, json),
        Cmd::Drops {
            file,
            json,
            follow,
            since,
        } => commands::drops(file, json, follow, since),
        Cmd::Watch {
            file,
            max_repairs,
            pause,
            metrics,
            metrics_public,
        } => commands::watch(file, max_repairs, pause, metrics, metrics_public),
        Cmd::Try { file, json } => commands::try_(file, json),
        Cmd::Verify { file, json } => commands::verify(file, json),
        Cmd::Why {
            from,
            to,
            l4,
            file,
            ipv6,
            sandbox,
            json,
        } => commands::why(commands::WhyArgs {
            from,
            to,
            l4,
            file,
            ipv6,
            sandbox,
            json,
        }),
        Cmd::Exec { ns, command } => commands::exec(ns, command),
        Cmd::Systemd {
            file,
            dir,
            template,
            bin,
        } => commands::systemd(file, dir, template, bin),
        Cmd::Completions { shell } => commands::completions(shell),
        Cmd::Man => commands::man(),
        Cmd::Sandbox { command } => commands::sandbox(command),
    }
}
