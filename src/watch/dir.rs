//! /run/netns watched with inotify: which of the topology's namespaces came or went; and the
//! topology file's directory: when the file was written.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::events::{Event, Interest};
use crate::plumbing::netns;

/// /run/netns watched with inotify: `ip netns del` unmounts and unlinks a namespace at once,
/// while the kernel tears it down (and its veth with it, which rtnetlink reports) up to a
/// second later.
pub(crate) struct Dir {
    inotify: Inotify,
    netns: WatchDescriptor,
    /// The topology file's directory, and the file's name in it.
    file: Option<(WatchDescriptor, OsString)>,
}

impl Dir {
    /// None when the directory is not there (yet).
    pub(crate) fn open() -> Option<Dir> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO;
        let netns = inotify.add_watch(netns::RUN_DIR, mask).ok()?;
        Some(Dir {
            inotify,
            netns,
            file: None,
        })
    }

    /// Also tells when the file at `path` is written or replaced (by rename, as editors do).
    /// Not where its directory cannot be watched: watch then takes the file up at its next
    /// check, as it always has.
    pub(crate) fn watch_file(&mut self, path: &Path) {
        let (Some(name), Some(dir)) = (path.file_name(), path.parent()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mask = AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO;
        if let Ok(wd) = self.inotify.add_watch(dir, mask) {
            self.file = Some((wd, name.to_os_string()));
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// The entries of /run/netns that came or went, the names of those that went, and whether
    /// the topology file was written.
    pub(crate) fn read(&self, interest: &Interest) -> (Vec<Event>, Vec<String>, bool) {
        let (mut out, mut went, mut written) = (Vec::new(), Vec::new(), false);
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                if e.wd != self.netns {
                    written |= self
                        .file
                        .as_ref()
                        .is_some_and(|(wd, name)| e.wd == *wd && e.name.as_ref() == Some(name));
                    continue;
                }
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
        (out, went, written)
    }
}
