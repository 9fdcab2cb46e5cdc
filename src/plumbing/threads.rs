//! Threads that may not be granted. `std::thread::scope`'s `spawn` panics when the kernel
//! refuses a thread (EAGAIN: `pids.max` or RLIMIT_NPROC reached, memory short); nsfw's reads
//! run side by side only to be faster, so a refused thread makes them run one after the other
//! instead, and a refused worker leaves its share to the others.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The kernel refused the threads an item was to run on: the run's failure, not the item's
/// (a namespace that could not be read for want of a thread is not unreachable).
#[derive(Clone, Debug)]
pub(crate) struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start a thread: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// Whether `e` is (or wraps) a [`Refused`].
pub(crate) fn refused(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>().is_some()
}

/// Runs `a` on a thread of its own while `b` runs on this one; both results. When no thread
/// can be made, `a` runs here after `b`. `a`'s result is None when its thread panicked.
pub(crate) fn beside<RA: Send, RB>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB,
) -> (Option<RA>, RB) {
    // Held in a cell the thread takes it from: a refused spawn drops only the closure that
    // would have taken it, and `a` is still here to run.
    let cell = Mutex::new(Some(a));
    let take = || cell.lock().ok().and_then(|mut g| g.take());
    std::thread::scope(|sc| {
        let spawned = std::thread::Builder::new()
            .name("nsfw-beside".into())
            .spawn_scoped(sc, || take().map(|f| f()));
        // The new thread is queued on this CPU, behind this one: on the 2-vCPU VM the suite
        // runs on, it started 1.4 ms late (median) while its parent kept computing, 0.05 ms
        // after a yield (a C program measuring both). What it does first is wait (for the
        // kernel, for watch): started at once, that wait runs beside the parent's work.
        std::thread::yield_now();
        let rb = b();
        let ra = match spawned {
            Ok(h) => h.join().ok().flatten(),
            Err(_) => take().map(|f| f()),
        };
        (ra, rb)
    })
}

/// Frees `x` on a thread of its own. A run's big values (every namespace's reading, the
/// compiled topology: at 1,000 namespaces tens of thousands of allocations, a tenth of a no-op
/// run's time) are freed while the run finishes and the process exits. The exit does not wait
/// for the thread: what it has not freed, the exit frees. A refused thread frees it here.
pub(crate) fn drop_aside<T: Send + 'static>(x: T) {
    let _ = std::thread::Builder::new()
        .name("nsfw-free".into())
        .spawn(move || drop(x));
}

/// Runs `f` for every item on up to `workers` threads, each taking the next item not yet
/// taken; results in the items' order, None for an item that did not run (its thread
/// panicked, or no thread could be made: then also why the kernel refused). Threads the
/// kernel refuses leave their share to the others (`f` may `setns`, so it never runs on the
/// calling thread).
pub(crate) fn on_workers<I: Sync, T: Send>(
    items: &[I],
    workers: usize,
    f: &(dyn Fn(&I) -> T + Sync),
) -> (Vec<Option<T>>, Option<Refused>) {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut slots: Vec<Option<T>> = items.iter().map(|_| None).collect();
    let mut refused = None;
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..workers.max(1))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("nsfw-netns".into())
                    .spawn_scoped(sc, work)
                    .map_err(|e| refused = Some(Refused(e.to_string())))
                    .ok()
            })
            .collect();
        for h in handles {
            if let Ok(done) = h.join() {
                for (i, r) in done {
                    slots[i] = Some(r);
                }
            }
        }
    });
    (slots, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_in_order_whatever_the_workers() {
        let items: Vec<usize> = (0..50).collect();
        for workers in [1, 2, 3, 8, 64] {
            let (out, refused) = on_workers(&items, workers, &|i| i * 2);
            assert!(refused.is_none());
            let got: Vec<usize> = out.into_iter().map(|r| r.expect("a result")).collect();
            assert_eq!(got, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_refusal_is_told_from_an_items_error_through_context() {
        use anyhow::Context;
        let e = Err::<(), _>(anyhow::Error::new(Refused("EAGAIN".into())))
            .context("namespace a")
            .expect_err("an error");
        assert!(refused(&e));
        assert!(!refused(&anyhow::anyhow!("namespace a: EPERM")));
        assert_eq!(
            format!("{e:#}"),
            "namespace a: cannot start a thread: EAGAIN"
        );
    }

    #[test]
    fn beside_runs_both() {
        let (a, b) = beside(|| 1 + 1, || "b");
        assert_eq!((a, b), (Some(2), "b"));
    }
}
