//! Who holds an nflog group, for the "taken" error: the kernel lists each bound group with
//! its reader's netlink port id in /proc/net/netfilter/nfnetlink_log; /proc/net/netlink
//! gives that socket's inode, and the process whose descriptor is `socket:[inode]` holds it.
//! All of it is read from /proc of this network namespace; whatever cannot be read is left
//! out of the message, never an error of its own.

/// NETLINK_NETFILTER, the protocol column of /proc/net/netlink.
const NETFILTER: u32 = 12;

/// The port id reading `group`, from /proc/net/netfilter/nfnetlink_log's text (lines of
/// `group portid qlen copy_mode copy_range flush_timeout use`, all decimal).
fn portid(text: &str, group: u16) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let g: u16 = f.next()?.parse().ok()?;
        let p: u32 = f.next()?.parse().ok()?;
        (g == group).then_some(p)
    })
}

/// The inode of the NETLINK_NETFILTER socket with port id `portid`, from /proc/net/netlink's
/// text (`sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`).
fn inode(text: &str, portid: u32) -> Option<u64> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (eth, pid, ino) = (f.get(1)?, f.get(2)?, f.get(9)?);
        (eth.parse::<u32>().ok()? == NETFILTER && pid.parse::<u32>().ok()? == portid)
            .then(|| ino.parse().ok())
            .flatten()
    })
}

/// The process with a descriptor on socket `inode`, and its name.
fn process(inode: u64) -> Option<(u32, String)> {
    let want = format!("socket:[{inode}]");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        let has = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()));
        if has {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            return Some((pid, comm.trim().to_string()));
        }
    }
    None
}

/// Who reads `group`: `netlink port 17, pid 4242 (nsfw)`, as far as /proc says.
pub(super) fn describe(group: u16) -> Option<String> {
    let log = std::fs::read_to_string("/proc/net/netfilter/nfnetlink_log").ok()?;
    let port = portid(&log, group)?;
    let mut s = format!("netlink port {port}");
    let netlink = std::fs::read_to_string("/proc/net/netlink").unwrap_or_default();
    if let Some((pid, comm)) = inode(&netlink, port).and_then(process) {
        s.push_str(&format!(", pid {pid} ({comm})"));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_of_a_group_is_found_by_its_port_and_inode() {
        let log = "    0     99     0 2  65535      1  1\n28275     17     0 2     96     10  1\n";
        assert_eq!(portid(log, 28275), Some(17));
        assert_eq!(portid(log, 5), None);
        let netlink = "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n\
            00000000c0c8c4da 0   17         00000000 0        0        0     2        0        4\n\
            00000000cf155aa2 12  17         00000000 0        0        0     2        0        81164\n";
        assert_eq!(inode(netlink, 17), Some(81164));
        assert_eq!(inode(netlink, 18), None);
    }
}
