//! SIGINT, SIGTERM and SIGHUP stop a run at a safe point: the handler only raises a flag, which
//! the executor reads between steps; the run then ends with an error, the lock is released as
//! the process exits, and the write-ahead record lets the next run finish or undo the rest.
//! No SA_RESTART: a run blocked waiting for the lock wakes up (EINTR) and stops.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
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
