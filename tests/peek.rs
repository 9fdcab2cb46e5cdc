//! Namespaces an apply needs only by their links (those not in the file: whose they are, by
//! the mark on their `lo`, and which veths go into them) are read from the host by the id it
//! knows them by, not entered: a socket opened inside keeps a namespace alive an RCU grace
//! period past its deletion, and a namespace removed from the file then outlived its name by
//! 8-25 ms, which the run waited for. Read that way, they are judged as before: nsfw's own go,
//! another topology's and hand-made ones stay, and one the host has no id for (no link into
//! the host) is entered as before.

mod common;

use common::{LAB, Sandbox, show};

#[test]
fn namespaces_not_in_the_file_are_read_from_the_host_and_judged_as_before() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let three = format!("{LAB}\n[namespaces.ns3]\nbridge = \"br0\"\n");
    let f3 = sb.file("three.toml", &three);
    let other = sb.file(
        "other.toml",
        "name = \"other\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\n[namespaces.o1]\nbridge = \"br1\"\n",
    );
    sb.nsfw_code(&["apply", &f3], 0);
    sb.nsfw_code(&["apply", &other], 0);
    // By hand: one with a veth into the host (the host has an id for it), one with nothing.
    sb.ok(
        "ip netns add hand; ip link add h0 type veth peer name eth0 netns hand; ip netns add bare",
    );
    let f2 = sb.file("lab.toml", LAB);
    let o = sb.nsfw(&["apply", "-v", &f2]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(out.contains("- namespace ns3"), "{out}");
    assert!(!out.contains("o1") && !out.contains("hand"), "{out}");
    // ns3, o1 and hand read from the host; bare, ns1 and ns2 (the file's, read whole) entered.
    assert!(
        err.contains("namespaces: 3 read from the host by their ids, 3 entered"),
        "{err}"
    );
    assert_eq!(sb.netns(), ["bare", "hand", "ns1", "ns2", "o1"]);
    assert!(sb.sh("ip link show h0").status.success());
    sb.nsfw_code(&["diff", &f2], 0);
    sb.nsfw_code(&["diff", &other], 0);
    assert!(sb.pings("ns1", "10.10.0.3"));
}

/// A flush wants no namespace whole: it reads every one from the host, removes its own (and
/// their veths, at once) and leaves another topology's working.
#[test]
fn another_topologys_namespace_read_from_the_host_is_still_its_own() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let other = sb.file(
        "other.toml",
        "name = \"other\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\n[namespaces.o1]\nbridge = \"br1\"\n[namespaces.o2]\nbridge = \"br1\"\n",
    );
    sb.nsfw_code(&["apply", &other], 0);
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    let o = sb.nsfw(&["flush", "-v", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        out.contains("- namespace ns1") && out.contains("- namespace ns2"),
        "{out}"
    );
    assert!(!out.contains("o1") && !out.contains("o2"), "{out}");
    assert!(
        err.contains("namespaces: 4 read from the host by their ids, 0 entered"),
        "{err}"
    );
    assert_eq!(sb.netns(), ["o1", "o2"]);
    sb.nsfw_code(&["diff", &other], 0);
    assert!(sb.pings("o1", "10.20.0.1"));
}

/// More namespaces to read than is worth reading from the host (each such read costs the
/// kernel a walk of every host link): they are all entered, as before, and judged the same.
#[test]
fn many_namespaces_not_in_the_file_are_entered_as_before() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("for i in $(seq 17); do ip netns add h$i && ip link add hv$i type veth peer name eth0 netns h$i || exit 1; done");
    let o = sb.nsfw(&["apply", "-v", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("read from the host by their ids"), "{err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("nothing to do"),
        "{}",
        show(&o)
    );
    assert_eq!(sb.netns().len(), 19);
    // One fewer: read from the host, and still left alone.
    sb.ok("ip netns del h17");
    let o = sb.nsfw(&["apply", "-v", &f]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("namespaces: 16 read from the host by their ids"),
        "{}",
        show(&o)
    );
    assert_eq!(sb.netns().len(), 18);
}
