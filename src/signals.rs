//! SIGINT, SIGTERM and SIGHUP stop a run at a safe point: the handler only raises a flag, which
//! the executor reads between steps; the run then ends with an error, the lock is released as
//! the process exits, and the write-ahead record lets the next run finish or undo the rest.
//! No SA_RESTART: a run blocked waiting for the lock wakes up (EINTR) and stops.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, sigaction,
};

static STOP: AtomicBool = AtomicBool::new(false);

/// The signals that stop a run.
const STOPS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The mask a loop that [`hold`]s the stop signals sleeps with.
static WAIT_MASK: OnceLock<SigSet> = OnceLock::new();

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

/// Holds the stop signals (blocks them) in the calling thread, and so in every thread it makes
/// from now on, for a loop that sleeps in ppoll(2) with [`wait_mask`]: they are then let in
/// only while it sleeps. A loop that looks at the flag and then sleeps in poll(2) loses a
/// signal that comes in between — the handler sets the flag, and poll sleeps on, as long as
/// nothing else wakes it (`nsfw watch`: up to its 30 s sweep). Held, such a signal waits,
/// pending, for the sleep, which it ends at once (EINTR). What the loop does awake (a check, a
/// repair) is then not stopped part-way: it ends first. Children made with
/// `std::process::Command` start with an empty mask.
pub fn hold() {
    let mut stops = SigSet::empty();
    for s in STOPS {
        stops.add(s);
    }
    let mut old = SigSet::empty();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stops), Some(&mut old)).is_ok() {
        for s in STOPS {
            old.remove(s);
        }
        let _ = WAIT_MASK.set(old);
    }
}

/// The mask to sleep with after [`hold`]: the stop signals let in. None before it (or when
/// it failed): sleep with the mask as it is, where they were never held.
pub fn wait_mask() -> Option<SigSet> {
    WAIT_MASK.get().copied()
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
