//! A socket closed without waiting for its release (`NftSocket::close_detached`): a child
//! process makes the last close, and nothing of it stays.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::common::Sandbox;
use crate::*;

/// The inodes of the NETLINK_NETFILTER (12) sockets of the calling thread's network namespace
/// (`sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`).
fn netfilter_sockets() -> BTreeSet<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netlink").expect("netlink table");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"12")).then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// This process's children still there (reaped or not) named `nsfw-release`.
fn release_children() -> usize {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            comm.ends_with("(nsfw-release") && rest.split_whitespace().nth(1) == Some(&me)
        })
        .count()
}

/// Waits up to 5 s for `done`; whether it came.
fn eventually(done: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// Sixteen sockets, each closed after a commit (whose destroy work its release waits for),
/// from sixteen threads at once: every one is released, the tables committed stay, and every
/// child is reaped. A socket that sent no batch gets no child.
#[test]
fn sockets_closed_detached_are_released_and_their_children_reaped() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let (ours, reaped) = in_sandbox(&sb, || {
        let socks: Vec<NftSocket> = (0..16)
            .map(|i| {
                let mut s = NftSocket::open().expect("socket");
                let t = Table::new(Family::Inet, &format!("d{i}"));
                s.send(&encode(&[BatchOp::ReplaceTable(t)]).expect("encode"))
                    .expect("commit");
                s
            })
            .collect();
        let ours: BTreeSet<u64> = socks
            .iter()
            .map(|s| nix::sys::stat::fstat(s.as_fd()).expect("fstat").st_ino)
            .collect();
        assert!(
            ours.is_subset(&netfilter_sockets()),
            "the sockets are listed"
        );
        let detached = std::thread::scope(|sc| {
            let closing: Vec<_> = socks
                .into_iter()
                .map(|s| sc.spawn(move || s.close_detached()))
                .collect();
            closing
                .into_iter()
                .map(|h| h.join())
                .filter(|r| matches!(r, Ok(true)))
                .count()
        });
        assert_eq!(detached, 16, "a child closes every socket");
        // One that only read (a DEL with nothing to remove) is closed in place, at once.
        let mut reader = NftSocket::open().expect("socket");
        reader.generation().expect("generation");
        let ino = nix::sys::stat::fstat(reader.as_fd()).expect("fstat").st_ino;
        assert!(
            !reader.close_detached(),
            "no child for a socket that sent no batch"
        );
        assert!(!netfilter_sockets().contains(&ino), "closed in place");
        let released = eventually(|| netfilter_sockets().is_disjoint(&ours));
        let left: Vec<u64> = netfilter_sockets().intersection(&ours).copied().collect();
        assert!(released, "never released: {left:?}");
        (ours.len(), eventually(|| release_children() == 0))
    });
    assert_eq!(ours, 16);
    assert!(
        reaped,
        "{} release children were not reaped",
        release_children()
    );
    for i in 0..16 {
        assert_eq!(
            read(&sb, Family::Inet, &format!("d{i}")).structure().name(),
            format!("d{i}")
        );
    }
}
