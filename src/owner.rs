//! Ownership marks: how nsfw finds what is its own from the kernel and the files alone (no
//! state file names any of it), built and read here and nowhere else.
//!
//! | object | mark |
//! |---|---|
//! | a topology's links (bridges, veth host ends) | alias `nsfw:<name>` |
//! | a topology's namespace | the same alias on its `lo` |
//! | a topology's table | `inet nsfw_<name>`, comment `nsfw:<name>` (also inside a router namespace) |
//! | a topology's rules in iptables-nft's FORWARD or DOCKER-USER | comment `nsfw:<name>` |
//! | a namespace's resolv.conf | first line `# written by nsfw for topology <name>; ...; sha256:<digest of the rest>` |
//! | a host sysctl nsfw changed (the record) | its users: topologies' names, `cni:<network>` |
//! | a CNI network's table | `inet nsfw_cni_<network>`, comment `nsfw-cni:<network>` |
//! | its bridge, its rules in iptables-nft's chains | alias, comment `nsfw-cni:<network>` |
//! | a container's host veth | alias `nsfw-cni:<network>:<containerID>:<ifname>` |
//! | a container's elements (address, ports) | comment `<containerID>:<ifname>` |
//! | an interface's qdiscs (rate limit, impairment) | handle `6e73:` at the root, `6e74:` below it (a qdisc has no comment; `tc` and the kernel number their own from `1:` and `8001:`) |
//! | a topology's logged drops (nflog) | prefix `nsfw:<name> <reason>` |
//!
//! Topology names, container IDs, network and interface names never hold a `:` (validation's,
//! the CNI spec's and the kernel's rules), so the fields split back unambiguously. The
//! `nsfw-cni:` prefix is not `nsfw:`: topologies' apply and flush (even `--all`) never take a
//! CNI network's objects for their own.

use std::fmt;

const TOPOLOGY: &str = "nsfw:";
const CNI: &str = "nsfw-cni:";
/// Every nsfw table's name starts so, a CNI network's too (`nsfw_cni_`).
const TABLE: &str = "nsfw_";
const RESOLV: &str = "# written by nsfw for topology ";
/// How the record names a CNI network among the users of a sysctl.
const CNI_USER: &str = "cni:";

/// The handle major of the root qdisc nsfw puts on an interface ("ns").
pub(crate) const QDISC_ROOT: u16 = 0x6e73;
/// The handle major of the qdisc nsfw puts below its root (a tbf under a netem).
pub(crate) const QDISC_CHILD: u16 = 0x6e74;

/// What a mark says of its object's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark<'a> {
    /// `nsfw:<name>`: topology `name`'s.
    Topology(&'a str),
    /// `nsfw-cni:<network>`: a CNI network's table, bridge or rule.
    Network(&'a str),
    /// `nsfw-cni:<network>:<container>:<ifname>`: a container's host veth.
    Container {
        network: &'a str,
        container: &'a str,
        ifname: &'a str,
    },
}

impl<'a> Mark<'a> {
    /// The owner a mark names; None for anything that is not one of nsfw's marks.
    pub(crate) fn parse(mark: &'a str) -> Option<Mark<'a>> {
        if let Some(name) = mark.strip_prefix(TOPOLOGY) {
            return Some(Mark::Topology(name));
        }
        let rest = mark.strip_prefix(CNI)?;
        Some(match rest.split_once(':') {
            None => Mark::Network(rest),
            Some((network, who)) => match who.split_once(':') {
                Some((container, ifname)) => Mark::Container {
                    network,
                    container,
                    ifname,
                },
                None => Mark::Network(rest),
            },
        })
    }
}

impl fmt::Display for Mark<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Mark::Topology(n) => write!(f, "{TOPOLOGY}{n}"),
            Mark::Network(n) => write!(f, "{CNI}{n}"),
            Mark::Container {
                network,
                container,
                ifname,
            } => write!(f, "{CNI}{network}:{container}:{ifname}"),
        }
    }
}

/// Whether an object whose mark (alias, comment) is `mark` is the wanted owner's: the one
/// filter of every flush, a topology's (its links, namespaces, tables and placed rules) and a
/// CNI network's (its placed rules). An object without a mark is nobody's.
pub(crate) fn owned(mark: Option<&str>, wanted: impl Fn(Mark) -> bool) -> bool {
    mark.and_then(Mark::parse).is_some_and(wanted)
}

/// Whose objects a run takes for its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner<'a> {
    /// One topology's (apply, and flush of a file or a name).
    Topology(&'a str),
    /// Every nsfw topology's (flush --all).
    All,
}

impl Owner<'_> {
    /// Whether an object marked `mark` is ours.
    pub(crate) fn owns(&self, mark: Option<&str>) -> bool {
        owned(
            mark,
            |m| matches!(m, Mark::Topology(t) if self.owns_topology(t)),
        )
    }

    /// Whether `t` (a topology's name, as the record names the users of a sysctl) is ours.
    /// A CNI network is among a sysctl's users as `cni:<network>` (never a topology's name:
    /// those hold no `:`), and no flush, not even `--all`, speaks for it.
    pub(crate) fn owns_topology(&self, t: &str) -> bool {
        match self {
            Owner::Topology(n) => *n == t,
            Owner::All => !t.starts_with(CNI_USER),
        }
    }
}

/// `nsfw:<name>`: the alias of topology `name`'s links and of its namespaces' `lo`, and the
/// comment of its tables and of the rules it places in others' chains.
pub(crate) fn mark(name: &str) -> String {
    Mark::Topology(name).to_string()
}

/// The topology a mark names, if it is a topology's.
pub(crate) fn topology_of(mark: &str) -> Option<&str> {
    match Mark::parse(mark)? {
        Mark::Topology(t) => Some(t),
        _ => None,
    }
}

/// `nsfw:<name> <reason>`: the nflog prefix of topology `name`'s drops for `reason` (a word).
pub(crate) fn log_prefix(name: &str, reason: &str) -> String {
    format!("{} {reason}", mark(name))
}

/// The topology and reason of an nflog prefix [`log_prefix`] made.
pub(crate) fn parse_log_prefix(prefix: &str) -> Option<(&str, &str)> {
    let (mark, reason) = prefix.split_once(' ')?;
    Some((topology_of(mark)?, reason))
}

/// Topology `name`'s table (inet, in the host and in its router namespaces).
pub(crate) fn table(name: &str) -> String {
    format!("{TABLE}{name}")
}

/// Whether a table's name is one nsfw gives (a topology's or a CNI network's); its comment
/// says whose.
pub(crate) fn is_table(name: &str) -> bool {
    name.starts_with(TABLE)
}

/// The whole text of a resolv.conf nsfw writes for topology `name`: a first line that names
/// the topology and carries a digest of `body`, then `body`. The digest is what makes the
/// whole content checkable: an edit that keeps the first line (`echo … >> resolv.conf`, an
/// editor writing in place) no longer matches it and is a hand edit, not nsfw's drift.
pub(crate) fn resolv_file(name: &str, body: &str) -> String {
    format!(
        "{RESOLV}{name}; nsfw apply rewrites it, nsfw flush removes it; {DIGEST}{}\n{body}",
        digest(body)
    )
}

const DIGEST: &str = "sha256:";

/// The first 16 hex digits of the body's SHA-256: enough to tell an edit, short enough to read.
fn digest(body: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The topology whose first line starts `content`, whatever became of the rest.
pub(crate) fn resolv_marked(content: &str) -> Option<&str> {
    let first = content.lines().next()?;
    let rest = first.strip_prefix(RESOLV)?;
    rest.split(';').next()
}

/// The topology whose file `content` is, as nsfw wrote it: marked, and the body still matches
/// the first line's digest. A first line without a digest (nsfw before it carried one) is taken
/// as nsfw's, so an upgrade does not turn every file into a hand edit.
pub(crate) fn resolv_owner(content: &str) -> Option<&str> {
    let name = resolv_marked(content)?;
    let (first, body) = content.split_once('\n').unwrap_or((content, ""));
    match first.rsplit_once(DIGEST) {
        Some((_, d)) if d != digest(body) => None,
        _ => Some(name),
    }
}

/// How the record names CNI network `network` among the users of a sysctl (a topology by its
/// name, which holds no `:`).
pub(crate) fn network_user(network: &str) -> String {
    format!("{CNI_USER}{network}")
}

/// CNI network `network`'s table.
pub(crate) fn cni_table(network: &str) -> String {
    format!("{TABLE}cni_{network}")
}

/// The mark of CNI network `network`'s table, bridge and placed rules.
pub(crate) fn network_mark(network: &str) -> String {
    Mark::Network(network).to_string()
}

/// The alias of a container's host veth.
pub(crate) fn veth_alias(network: &str, container: &str, ifname: &str) -> String {
    Mark::Container {
        network,
        container,
        ifname,
    }
    .to_string()
}

/// (container, ifname) of a host veth of `network`, from its alias.
pub(crate) fn parse_veth_alias<'a>(network: &str, alias: &'a str) -> Option<(&'a str, &'a str)> {
    match Mark::parse(alias)? {
        Mark::Container {
            network: n,
            container,
            ifname,
        } if n == network => Some((container, ifname)),
        _ => None,
    }
}

/// The comment on a container's elements.
pub(crate) fn element_owner(container: &str, ifname: &str) -> String {
    format!("{container}:{ifname}")
}

/// (container, ifname) of an element comment.
pub(crate) fn parse_element_owner(comment: &str) -> Option<(&str, &str)> {
    comment.split_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_split_back() {
        assert_eq!(topology_of(&mark("lab")), Some("lab"));
        assert_eq!(topology_of(&network_mark("lab")), None, "a CNI network's");
        assert_eq!(
            Mark::parse(&network_mark("net")),
            Some(Mark::Network("net"))
        );
        let a = veth_alias("lab.net", "abc-1", "eth0");
        assert_eq!(parse_veth_alias("lab.net", &a), Some(("abc-1", "eth0")));
        assert_eq!(parse_veth_alias("lab", &a), None, "another network's");
        let o = element_owner("c1", "net1");
        assert_eq!(parse_element_owner(&o), Some(("c1", "net1")));
        assert_eq!(
            resolv_owner(&resolv_file("lab", "nameserver 1.1.1.1\n")),
            Some("lab")
        );
        assert!(is_table(&table("lab")) && is_table(&cni_table("net")));
    }

    #[test]
    fn an_edit_that_keeps_the_first_line_is_not_nsfw_s() {
        let f = resolv_file("lab", "nameserver 192.0.2.1\n");
        assert_eq!(resolv_owner(&f), Some("lab"));
        let appended = format!("{f}nameserver 192.0.2.9\n");
        assert_eq!(resolv_owner(&appended), None, "echo >> resolv.conf");
        assert_eq!(resolv_marked(&appended), Some("lab"));
        let in_place = f.replace("192.0.2.1", "192.0.2.7");
        assert_eq!(resolv_owner(&in_place), None, "an editor writing in place");
        assert_eq!(resolv_owner(&f.replace('\n', "\r\n")), None);
        // A file from an nsfw before the digest stays nsfw's.
        let old = "# written by nsfw for topology lab; nsfw apply rewrites it, nsfw flush removes it\nnameserver 192.0.2.1\n";
        assert_eq!(resolv_owner(old), Some("lab"));
        assert_eq!(resolv_owner("nameserver 192.0.2.1\n"), None);
    }

    #[test]
    fn a_flush_owns_only_its_own() {
        assert!(Owner::Topology("a").owns(Some("nsfw:a")));
        assert!(!Owner::Topology("a").owns(Some("nsfw:b")));
        assert!(Owner::All.owns(Some("nsfw:b")));
        assert!(
            !Owner::All.owns(Some("nsfw-cni:net")),
            "never a CNI network's"
        );
        assert!(!Owner::All.owns(Some("someone else's")));
        assert!(!Owner::All.owns(None));
        assert!(owned(Some("nsfw-cni:net"), |m| m == Mark::Network("net")));
    }
}
