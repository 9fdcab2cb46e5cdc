//! Output that never stops work: a closed stdout or stderr (`nsfw apply | head -1`, a dead ssh
//! session) is noticed once and ignored for the rest of the run, instead of panicking half-way
//! through an apply. Every line nsfw prints goes through here.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// Stdout failed for another reason than a reader gone away (a full disk, /dev/full).
static STDOUT_BROKEN: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);
static LEVEL: AtomicU8 = AtomicU8::new(1);
/// A progress frame is on the terminal's last line: a line printed now clears it first (the
/// ticker draws it again below).
static FRAME_SHOWN: AtomicBool = AtomicBool::new(false);

/// Clears a progress frame off the line before other output.
fn clear_frame() {
    if FRAME_SHOWN.swap(false, Ordering::Relaxed) {
        write_to(
            &STDERR_GONE,
            &mut std::io::stderr().lock(),
            format_args!("\r\x1b[K"),
            false,
        );
    }
}
/// Something was printed on stdout through [`data`] (a JSON object, say).
static DATA_WRITTEN: AtomicBool = AtomicBool::new(false);
/// With `--json`: the command's name, and the errors printed so far, for the JSON object of
/// a command that fails before printing its own.
static JSON_ERRORS: std::sync::Mutex<Option<(&'static str, Vec<String>)>> =
    std::sync::Mutex::new(None);

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
    if let Err(e) = r.and_then(|()| w.flush()) {
        gone.store(true, Ordering::Relaxed);
        if std::ptr::eq(gone, &STDOUT_GONE) && e.kind() != std::io::ErrorKind::BrokenPipe {
            STDOUT_BROKEN.store(true, Ordering::Relaxed);
        }
    }
}

/// A line of normal output on stdout (suppressed by `-q`).
pub fn out(args: fmt::Arguments<'_>) {
    if level() >= Level::Normal {
        clear_frame();
        write_to(&STDOUT_GONE, &mut std::io::stdout().lock(), args, true);
    }
}

/// Output on stdout that `-q` does not suppress: what a command was asked to print (`show`,
/// `--json`).
pub fn data(args: fmt::Arguments<'_>) {
    DATA_WRITTEN.store(true, Ordering::Relaxed);
    clear_frame();
    write_to(&STDOUT_GONE, &mut std::io::stdout().lock(), args, false);
}

/// Another process (the sandbox's child of `try`) printed the command's output on this
/// stdout: nothing is to be added to it.
pub fn data_written_elsewhere() {
    DATA_WRITTEN.store(true, Ordering::Relaxed);
}

/// `--json` was asked for: errors are kept for [`json_failure_if_silent`].
pub fn collect_errors(command: &'static str) {
    if let Ok(mut g) = JSON_ERRORS.lock() {
        *g = Some((command, Vec::new()));
    }
}

/// A command asked for JSON failed without printing its object: prints
/// `{"schema": 1, "command": ..., "ok": false, "errors": [...]}` (docs/json.md).
pub fn json_failure_if_silent() {
    if DATA_WRITTEN.load(Ordering::Relaxed) {
        return;
    }
    let taken = JSON_ERRORS.lock().ok().and_then(|mut g| g.take());
    if let Some((cmd, errors)) = taken {
        json_failure(Some(cmd), &errors);
    }
}

/// The JSON object of a failure: the command (None: not parsed) and its errors.
pub fn json_failure(command: Option<&str>, errors: &[String]) {
    let v = serde_json::json!({
        "schema": 1,
        "command": command,
        "ok": false,
        "errors": errors,
    });
    data(format_args!("{v}\n"));
}

/// Whether what a command was asked to print could not be written (other than to a reader
/// that went away, which chose to stop reading): the command then fails.
pub fn output_lost() -> bool {
    STDOUT_BROKEN.load(Ordering::Relaxed)
}

/// Whether standard output was closed (a stream stops writing then).
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// Looks whether the reader of standard output went away without waiting for a write to
/// fail (a pipe or socket whose other end closed polls as an error or hang-up): a stream
/// that prints nothing for a while would otherwise hold on until its next line.
pub fn stdout_hung_up() -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let fd = std::io::stdout();
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&fd),
        PollFlags::empty(),
    )];
    let hung = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
    if hung {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
    hung
}

/// A line on stderr: errors always, warnings unless `-q`.
pub fn err(args: fmt::Arguments<'_>) {
    clear_frame();
    write_to(&STDERR_GONE, &mut std::io::stderr().lock(), args, true);
}

/// An error: `error: ...` on stderr, kept for the JSON object of a failure.
pub fn error(args: fmt::Arguments<'_>) {
    let msg = args.to_string();
    if let Ok(mut g) = JSON_ERRORS.lock()
        && let Some((_, errors)) = g.as_mut()
    {
        errors.push(msg.clone());
    }
    err(format_args!("error: {msg}"));
}

/// A line on stderr shown with `-v` (or NSFW_TIMING): steps and their timings.
pub fn verbose(args: fmt::Arguments<'_>) {
    if level() >= Level::Verbose || std::env::var_os("NSFW_TIMING").is_some() {
        clear_frame();
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
    ($($t:tt)*) => { $crate::output::error(format_args!($($t)*)) };
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

/// Whether lines on stdout get colour: a terminal, and no NO_COLOR in the environment.
pub fn colour() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// A plan line in colour when stdout is a terminal: `+` green, `-` red, `~` yellow.
pub fn paint(line: &str) -> String {
    if !colour() {
        return line.to_string();
    }
    let code = match line.trim_start().chars().next() {
        Some('+') => "32",
        Some('-') => "31",
        Some('~') => "33",
        _ => return line.to_string(),
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// Work counted by the threads that do it, for the progress line.
static PROGRESS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `n` more units of the running stage's work are done.
pub fn progress(n: usize) {
    PROGRESS.fetch_add(n, Ordering::Relaxed);
}

/// A one-line progress indicator on stderr for work that takes more than a second, on a
/// terminal only: `creating namespaces: 412/1000`. [`Ticker::finish`] shows the stage's last
/// count (its total when all went well) and clears the line, so that what is printed next
/// starts on a clean line; dropping it does the same.
pub struct Ticker {
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One frame of the progress line: `\r`, the text, erase to the end of the line.
fn frame(label: &str, total: usize) {
    let n = PROGRESS.load(Ordering::Relaxed).min(total);
    write_to(
        &STDERR_GONE,
        &mut std::io::stderr().lock(),
        format_args!("\r{label}: {n}/{total}\x1b[K"),
        false,
    );
    FRAME_SHOWN.store(true, Ordering::Relaxed);
}

impl Ticker {
    pub fn start(label: &'static str, total: usize) -> Ticker {
        use std::io::IsTerminal;
        use std::time::{Duration, Instant};
        PROGRESS.store(0, Ordering::Relaxed);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let quiet = level() == Level::Quiet || !std::io::stderr().is_terminal() || total < 2;
        let thread = (!quiet).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut shown = false;
                loop {
                    // Woken at once by finish (unpark), else every 100 ms.
                    std::thread::park_timeout(Duration::from_millis(100));
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if t0.elapsed() >= Duration::from_secs(1) {
                        frame(label, total);
                        shown = true;
                    }
                }
                if shown {
                    // The last count, then a clean line for what follows.
                    frame(label, total);
                    clear_frame();
                }
            })
        });
        Ticker { stop, thread }
    }

    /// Ends the line: the last count shown, the line cleared.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.end();
    }
}
