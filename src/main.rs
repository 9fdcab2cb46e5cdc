#![deny(unsafe_code)]

use std::process::ExitCode;

use nsfw::cli::{self, Cmd};
use nsfw::commands::{self, Fail, FlushWhat};
use nsfw::output::{self, Level};

fn main() -> ExitCode {
    // A CNI runtime runs nsfw as a plugin: the protocol is environment, stdin and stdout, not
    // the command line (docs/cni.md).
    if nsfw::cni::invoked() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        return ExitCode::from(nsfw::cni::main());
    }
    let cli = match cli::parse() {
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
        Cmd::Apply {
            file,
            no_wait,
            json,
        } => commands::apply(file, !no_wait, json),
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
        Cmd::Show { file, json } => commands::show(file, json),
        Cmd::Status { file, json, format } => commands::status(file, json, format),
        Cmd::Graph(a) => commands::graph(a),
        Cmd::Doctor { file, json } => commands::doctor(file, json),
        Cmd::Watch {
            file,
            max_repairs,
            pause,
            metrics,
            metrics_public,
        } => commands::watch(file, max_repairs, pause, metrics, metrics_public),
        Cmd::Try { file, json } => commands::try_(file, json),
        Cmd::Verify { file, json } => commands::verify(file, json),
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
    };
    let code = match r {
        Ok(c) => c,
        Err(Fail(c)) => c,
    };
    // Output a command exists to print (show, --json, completions) that could not be written:
    // the command did not do its job.
    if output::output_lost() && code != 1 {
        output::err(format_args!("error: cannot write to standard output"));
        return ExitCode::from(1);
    }
    ExitCode::from(code)
}
