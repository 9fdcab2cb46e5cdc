//! /run/netns watched with inotify: which of the topology's namespaces came or went.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::events::{Event, Interest};
use crate::plumbing::netns;

/// /run/netns watched with inotify: `ip netns del` unmounts and unlinks a namespace at once,
/// while the kernel tears it down (and its veth with it, which rtnetlink reports) up to a
/// second later.
pub(crate) struct Dir {
    inotify: Inotify,
}

impl Dir {
    /// None when the directory is not there (yet).
    pub(crate) fn open() -> Option<Dir> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO;
        inotify.add_watch(netns::RUN_DIR, mask).ok()?;
        Some(Dir { inotify })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// The entries of /run/netns that came or went, and the names of those that went.
    pub(crate) fn read(&self, interest: &Interest) -> (Vec<Event>, Vec<String>) {
        let (mut out, mut went) = (Vec::new(), Vec::new());
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                let name = e
                    .name
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let gone = e
                    .mask
                    .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM);
                went.extend(gone.then(|| name.clone()));
                out.push(Event {
                    what: format!(
                        "namespace {name} {} {}",
                        if gone { "removed from" } else { "added to" },
                        netns::RUN_DIR
                    ),
                    ours: interest.namespaces.contains(&name),
                    by: None,
                    urgent: false,
                    elems: None,
                });
            }
        }
        (out, went)
    }
}
