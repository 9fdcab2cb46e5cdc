//! Output that never stops work: a closed stdout or stderr (`nsfw apply | head -1`, a dead ssh
//! session) is noticed once and ignored for the rest of the run, instead of panicking half-way
//! through an apply. Every line nsfw prints goes through here.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);
static LEVEL: AtomicU8 = AtomicU8::new(1);

/// How much nsfw says: errors only, the plan and results, or every step with its timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet = 0,
    Normal = 1,
    Verbose = 2,
}

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Quiet,
        1 => Level::Normal,
        _ => Level::Verbose,
    }
}

fn write_to(gone: &AtomicBool, w: &mut dyn Write, args: fmt::Arguments<'_>, newline: bool) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    let r = if newline {
        writeln!(w, "{args}")
    } else {
        write!(w, "{args}")
    };
    if r.and_then(|()| w.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}

/// A line of normal output on stdout (suppressed by `-q`).
pub fn out(args: fmt::Arguments<'_>) {
    if level() >= Level::Normal {
        write_to(&STDOUT_GONE, &mut std::io::stdout().lock(), args, true);
    }
}

/// Output on stdout that `-q` does not suppress: what a command was asked to print (`show`,
/// `--json`).
pub fn data(args: fmt::Arguments<'_>) {
    write_to(&STDOUT_GONE, &mut std::io::stdout().lock(), args, false);
}

/// A line on stderr: errors always, warnings unless `-q`.
pub fn err(args: fmt::Arguments<'_>) {
    write_to(&STDERR_GONE, &mut std::io::stderr().lock(), args, true);
}

/// A line on stderr shown with `-v` (or NSFW_TIMING): steps and their timings.
pub fn verbose(args: fmt::Arguments<'_>) {
    if level() >= Level::Verbose || std::env::var_os("NSFW_TIMING").is_some() {
        write_to(&STDERR_GONE, &mut std::io::stderr().lock(), args, true);
    }
}

/// `say!(...)`: a line of normal output.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::output::out(format_args!($($t)*)) };
}

/// `error!(...)`: `error: ...` on stderr.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::output::err(format_args!("error: {}", format_args!($($t)*))) };
}

/// `warning!(...)`: `warning: ...` on stderr, unless `-q`.
#[macro_export]
macro_rules! warning {
    ($($t:tt)*) => {
        if $crate::output::level() >= $crate::output::Level::Normal {
            $crate::output::err(format_args!("warning: {}", format_args!($($t)*)))
        }
    };
}

/// `detail!(...)`: a line on stderr with `-v`.
#[macro_export]
macro_rules! detail {
    ($($t:tt)*) => { $crate::output::verbose(format_args!($($t)*)) };
}
