//! SIGINT, SIGTERM and SIGHUP stop a run at a safe point: the handler only raises a flag, which
//! the executor reads between steps; the run then ends with an error, the lock is released as
//! the process exits, and the write-ahead record lets the next run finish or undo the rest.
//! No SA_RESTART: a run blocked waiting for the lock wakes up (EINTR) and stops.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);

/// Written by the handler once [`wakeable`] made it: what a sleeping loop wakes on.
static WAKE: OnceLock<EventFd> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    // write(2) is async-signal-safe, and the eventfd never blocks (EFD_NONBLOCK); an
    // initialised OnceLock is read with one atomic load.
    if let Some(e) = WAKE.get() {
        let _ = e.write(1);
    }
}

/// Installs the handlers; a failure leaves the default (the record still covers a kill).
/// nix's `sigaction` is unsafe (a handler runs in the middle of anything): no safe API.
#[allow(unsafe_code)]
pub fn install() {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(s, &act) };
    }
}

/// Makes the stop signals wake a loop that sleeps in poll(2) on [`wake_fd`] (`nsfw watch`),
/// whichever thread the kernel runs the handler on: it writes to an eventfd besides raising the
/// flag. A loop that looks at the flag and then sleeps lost a signal that came in between —
/// the flag set, and the sleep going on as long as nothing else woke it (watch: up to its 30 s
/// sweep); and one sent to another of its threads (tgkill) woke nothing at all. With the
/// eventfd among what it sleeps on, the sleep ends at once whenever the flag is up. Called
/// before the loop's first look at the flag; without an eventfd (EMFILE), sleeps are as before.
pub fn wakeable() {
    if WAKE.get().is_none()
        && let Ok(e) = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
    {
        let _ = WAKE.set(e);
    }
}

/// What a loop made [`wakeable`] sleeps on: readable once a stop was asked for.
pub fn wake_fd() -> Option<BorrowedFd<'static>> {
    WAKE.get().map(|e| e.as_fd())
}

/// Whether a stop was asked for.
pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The message of a run stopped by a signal, at the start of its error.
pub const INTERRUPTED: &str = "interrupted: stopped at a safe point";

/// An error if a stop was asked for: the caller stops at this safe point.
pub fn check() -> anyhow::Result<()> {
    if stopping() {
        // The command says what finishes the work: apply and flush differ.
        anyhow::bail!("{INTERRUPTED}");
    }
    Ok(())
}
