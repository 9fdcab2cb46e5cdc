//! Bad topology files: every error of a file reported at once, each naming the file, key and
//! value, exit status 1, and nothing created on the (sandboxed) host.

mod common;

use common::{Sandbox, show};

const BR: &str = "name = \"v\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n";

/// 1024 namespaces on one bridge: one more than a Linux bridge takes.
fn too_many_ports() -> String {
    let mut s = String::from("name = \"v\"\n[bridges.br0]\naddress = \"10.10.0.1/16\"\n");
    for i in 0..1024 {
        s.push_str(&format!("[namespaces.n{i}]\nbridge = \"br0\"\n"));
    }
    s
}

/// (what, file text, pieces the error output must contain)
type Case = (&'static str, String, Vec<&'static str>);

/// Every bad file the test tries.
fn cases() -> Vec<Case> {
    [
        syntax_cases(),
        address_cases(),
        name_cases(),
        limit_cases(),
        egress_dns_cases(),
        spoof_cases(),
    ]
    .concat()
}

/// `egress_via` that names no way out, and a `dns_policy` nsfw does not know.
fn egress_dns_cases() -> Vec<Case> {
    let l2 = "name = \"v\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n[bridges.br1]\n";
    vec![
        (
            "egress_via names nothing",
            format!("{BR}egress_via = []\n"),
            vec!["bridges.br0.egress_via = []", "names no interface"],
        ),
        (
            "egress_via names a bridge of the file",
            l2.replace(
                "address = \"10.10.0.1/24\"\n",
                "address = \"10.10.0.1/24\"\negress_via = [\"br1\"]\n",
            ),
            vec!["bridges.br0.egress_via = \"br1\"", "a bridge of this file"],
        ),
        (
            "egress_via on an L2-only bridge",
            format!("{l2}egress_via = [\"eth0\"]\n"),
            vec!["bridges.br1.egress_via", "L2-only"],
        ),
        (
            "masquerading out of an uplink egress_via leaves out",
            format!("{BR}uplink = \"eth0\"\negress_via = [\"eth1\"]\n"),
            vec!["bridges.br0.uplink = \"eth0\"", "add eth0 to egress_via"],
        ),
        (
            "egress_via not an interface name",
            format!("{BR}egress_via = [\"a/b\"]\n"),
            vec!["bridges.br0.egress_via = \"a/b\""],
        ),
        (
            "dns_policy unknown",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\ndns_policy = \"merge\"\n"),
            vec![
                "namespaces.a.dns_policy = \"merge\"",
                "\"keep\" or \"replace\"",
            ],
        ),
    ]
}

/// `spoof_ok`: networks, without host bits, of a family the namespace has, never multicast.
fn spoof_cases() -> Vec<Case> {
    let ns = |v: &str| format!("{BR}[namespaces.a]\nbridge = \"br0\"\nspoof_ok = {v}\n");
    vec![
        (
            "spoof_ok not a list",
            ns("\"10.9.0.0/24\""),
            vec!["namespaces.a.spoof_ok", "list of strings"],
        ),
        (
            "spoof_ok not a string",
            ns("[7]"),
            vec!["namespaces.a.spoof_ok = 7", "must be a string"],
        ),
        (
            "spoof_ok not a CIDR",
            ns("[\"bogus\"]"),
            vec!["namespaces.a.spoof_ok = \"bogus\"", "not a CIDR"],
        ),
        (
            "spoof_ok host bits",
            ns("[\"10.9.0.1/24\"]"),
            vec!["namespaces.a.spoof_ok = \"10.9.0.1/24\"", "host bits"],
        ),
        (
            "spoof_ok IPv6 without IPv6",
            ns("[\"2001:db8::/64\"]"),
            vec![
                "namespaces.a.spoof_ok = \"2001:db8::/64\"",
                "no IPv6 address",
            ],
        ),
        (
            "spoof_ok multicast",
            ns("[\"224.0.0.0/4\"]"),
            vec!["namespaces.a.spoof_ok = \"224.0.0.0/4\"", "multicast"],
        ),
    ]
}

/// Files that are not TOML, or hold keys nsfw does not know.
fn syntax_cases() -> Vec<Case> {
    vec![
        ("empty file", String::new(), vec!["empty"]),
        (
            "syntax error",
            "name = \"v\"\n[bridges.br0\n".into(),
            vec![":2:", "not valid TOML"],
        ),
        (
            "unknown top key",
            format!("{BR}colour = \"red\"\n"),
            vec!["colour = \"red\"", "unknown key"],
        ),
        (
            "unknown bridge key",
            format!("{BR}stp = true\n"),
            vec!["bridges.br0.stp = true", "unknown key"],
        ),
        (
            "unknown namespace key",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\nvlan = 3\n"),
            vec!["namespaces.a.vlan = 3", "unknown key"],
        ),
    ]
}

/// Addresses, subnets and bridges that cannot be.
fn address_cases() -> Vec<Case> {
    vec![
        (
            "undefined bridge",
            format!("{BR}[namespaces.a]\nbridge = \"br9\"\n"),
            vec!["namespaces.a.bridge = \"br9\"", "no such bridge"],
        ),
        (
            "address outside subnet",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\naddress = \"10.20.0.2/24\"\n"),
            vec!["namespaces.a.address = \"10.20.0.2/24\"", "outside"],
        ),
        (
            "network address",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\naddress = \"10.10.0.0/24\"\n"),
            vec!["namespaces.a.address = \"10.10.0.0/24\"", "network address"],
        ),
        (
            "broadcast address",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\naddress = \"10.10.0.255/24\"\n"),
            vec![
                "namespaces.a.address = \"10.10.0.255/24\"",
                "broadcast address",
            ],
        ),
        (
            "gateway address reused",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\naddress = \"10.10.0.1/24\"\n"),
            vec!["namespaces.a.address = \"10.10.0.1/24\"", "gateway"],
        ),
        (
            "address used twice",
            format!(
                "{BR}[namespaces.a]\nbridge = \"br0\"\naddress = \"10.10.0.5\"\n[namespaces.b]\nbridge = \"br0\"\naddress = \"10.10.0.5\"\n"
            ),
            vec![
                "namespaces.b.address = \"10.10.0.5\"",
                "already namespace a",
            ],
        ),
        (
            "overlapping subnets",
            format!("{BR}[bridges.br1]\naddress = \"10.10.0.129/25\"\n"),
            vec!["bridges.br1.address = \"10.10.0.129/25\"", "overlaps"],
        ),
        (
            "invalid CIDR",
            "name = \"v\"\n[bridges.br0]\naddress = \"10.10.0.300/24\"\n".into(),
            vec![
                "bridges.br0.address = \"10.10.0.300/24\"",
                "not an IPv4 address",
            ],
        ),
        (
            "bad prefix",
            "name = \"v\"\n[bridges.br0]\naddress = \"10.10.0.1/33\"\n".into(),
            vec!["bridges.br0.address = \"10.10.0.1/33\"", "prefix"],
        ),
    ]
}

/// MACs and names the kernel would refuse.
fn name_cases() -> Vec<Case> {
    vec![
        (
            "invalid MAC",
            format!("{BR}mac = \"02:00:00:00:zz:01\"\n"),
            vec!["bridges.br0.mac = \"02:00:00:00:zz:01\"", "not a MAC"],
        ),
        (
            "multicast MAC",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\nmac = \"01:00:5e:00:00:01\"\n"),
            vec!["namespaces.a.mac = \"01:00:5e:00:00:01\"", "multicast"],
        ),
        (
            "interface name too long",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\nifname = \"averyveryverylongname\"\n"),
            vec![
                "namespaces.a.ifname = \"averyveryverylongname\"",
                "15 bytes",
            ],
        ),
        (
            "interface name with slash",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\nhost_ifname = \"v/a\"\n"),
            vec!["namespaces.a.host_ifname = \"v/a\"", "cannot contain"],
        ),
        (
            "interface name with colon",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\nifname = \"eth0:1\"\n"),
            vec!["namespaces.a.ifname = \"eth0:1\"", "cannot contain"],
        ),
        (
            "interface name with space",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\nifname = \"eth 0\"\n"),
            vec!["namespaces.a.ifname = \"eth 0\"", "cannot contain"],
        ),
        (
            "bridge name too long",
            "name = \"v\"\n[bridges.bridge-number-one]\naddress = \"10.1.0.1/24\"\n".into(),
            vec!["bridges.bridge-number-one", "15 bytes"],
        ),
        (
            "one host-side name given twice",
            format!(
                "{BR}[namespaces.a]\nbridge = \"br0\"\nhost_ifname = \"hx\"\n[namespaces.b]\nbridge = \"br0\"\nhost_ifname = \"hx\"\n"
            ),
            vec![
                "namespaces.b.host_ifname = \"hx\"",
                "already has this interface name",
            ],
        ),
        (
            "namespace named ..",
            format!("{BR}[namespaces.\"..\"]\nbridge = \"br0\"\n"),
            vec!["namespaces.\"..\"", "`..`"],
        ),
        (
            "namespace named .",
            format!("{BR}[namespaces.\".\"]\nbridge = \"br0\"\n"),
            vec!["namespaces.\".\"", "`.`"],
        ),
        (
            "empty namespace name",
            format!("{BR}[namespaces.\"\"]\nbridge = \"br0\"\n"),
            vec!["cannot be empty"],
        ),
        (
            "namespace name with slash",
            format!("{BR}[namespaces.\"a/b\"]\nbridge = \"br0\"\n"),
            vec!["namespaces.\"a/b\"", "no `/`"],
        ),
    ]
}

/// MTUs, special addresses, sizes and counts out of range; names the file needs.
fn limit_cases() -> Vec<Case> {
    vec![
        ("MTU too small", format!("{BR}mtu = 67\n"), vec!["bridges.br0.mtu = 67", "68-65535"]),
        ("MTU too large", format!("{BR}[namespaces.a]\nbridge = \"br0\"\nmtu = 65536\n"), vec!["namespaces.a.mtu = 65536", "68-65535"]),
        ("bridge name is a template", "name = \"v\"\n[bridges.\"br%d\"]\naddress = \"10.1.0.1/24\"\n".into(), vec!["bridges.\"br%d\"", "template"]),
        ("bridge named all", "name = \"v\"\n[bridges.all]\naddress = \"10.1.0.1/24\"\n".into(), vec!["bridges.all", "reserved"]),
        ("bridge named default", "name = \"v\"\n[bridges.default]\naddress = \"10.1.0.1/24\"\n".into(), vec!["bridges.default", "reserved"]),
        (
            "host-side name is a template",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\nhost_ifname = \"v%d\"\n"),
            vec!["namespaces.a.host_ifname = \"v%d\"", "template"],
        ),
        (
            "a port's MTU differs from its bridge's",
            format!("{BR}[namespaces.a]\nbridge = \"br0\"\nmtu = 1450\n"),
            vec!["namespaces.a.mtu = 1450", "one MTU per L2 segment"],
        ),
        ("multicast gateway", "name = \"v\"\n[bridges.br0]\naddress = \"224.1.1.1/24\"\n".into(), vec!["bridges.br0.address = \"224.1.1.1/24\"", "multicast"]),
        ("loopback gateway", "name = \"v\"\n[bridges.br0]\naddress = \"127.0.0.2/8\"\n".into(), vec!["bridges.br0.address = \"127.0.0.2/8\"", "loopback"]),
        ("unspecified gateway", "name = \"v\"\n[bridges.br0]\naddress = \"0.0.0.0/24\"\n".into(), vec!["bridges.br0.address = \"0.0.0.0/24\"", "unspecified"]),
        ("a /0 subnet", "name = \"v\"\n[bridges.br0]\naddress = \"10.0.0.1/0\"\n".into(), vec!["bridges.br0.address = \"10.0.0.1/0\"", "too large"]),
        ("a /1 subnet", "name = \"v\"\n[bridges.br0]\naddress = \"8.8.8.1/1\"\n".into(), vec!["bridges.br0.address = \"8.8.8.1/1\"", "too large"]),
        ("more ports than a bridge takes", too_many_ports(), vec!["bridges.br0", "at most 1023 ports"]),
        ("topology name upper case", "name = \"Lab\"\n".into(), vec!["name = \"Lab\"", "[a-z0-9_]"]),
        ("topology name too long", "name = \"abcdefghijklmnopq\"\n".into(), vec!["name = \"abcdefghijklmnopq\"", "1-16"]),
        ("topology name missing", "[bridges.br0]\naddress = \"10.1.0.1/24\"\n".into(), vec!["name: missing"]),
        (
            "more namespaces than addresses",
            "name = \"v\"\n[bridges.br0]\naddress = \"10.9.0.1/30\"\n[namespaces.a]\nbridge = \"br0\"\n[namespaces.b]\nbridge = \"br0\"\n".into(),
            vec!["namespaces.b.address", "no free address"],
        ),
    ]
}

#[test]
fn each_bad_file_is_rejected_with_its_key_and_nothing_is_created() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let before =
        sb.ok("ip -o link; ls -A /run/netns /etc/netns; cat /proc/sys/net/ipv4/ip_forward");
    for (i, (what, text, want)) in cases().into_iter().enumerate() {
        let f = sb.file(&format!("bad{i}.toml"), &text);
        for cmd in ["apply", "diff"] {
            let o = sb.nsfw(&[cmd, &f]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{what}: nsfw {cmd}\n{}", show(&o));
            assert!(err.starts_with("error: "), "{what}: {err}");
            assert!(
                err.contains(&f),
                "{what}: the error does not name the file\n{err}"
            );
            for w in &want {
                assert!(err.contains(w), "{what}: expected {w:?} in\n{err}");
            }
        }
    }
    let after = sb.ok("ip -o link; ls -A /run/netns /etc/netns; cat /proc/sys/net/ipv4/ip_forward");
    assert_eq!(before, after, "a rejected file changed the host");
}

#[test]
fn all_errors_of_a_file_come_at_once() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file(
        "many.toml",
        "name = \"Bad Name\"\nextra = 1\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmtu = 10\n[namespaces.a]\nbridge = \"nope\"\n[namespaces.b]\nbridge = \"br0\"\nmac = \"03:00:00:00:00:01\"\n",
    );
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 5, "{err}");
    for w in [
        "name = \"Bad Name\"",
        "extra = 1",
        "bridges.br0.mtu = 10",
        "namespaces.a.bridge = \"nope\"",
        "namespaces.b.mac",
    ] {
        assert!(err.contains(w), "missing {w:?} in\n{err}");
    }
}

#[test]
fn a_missing_file_is_an_error() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let o = sb.nsfw(&["apply", "/nonexistent/nsfw.toml"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: /nonexistent/nsfw.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn subnets_that_overlap_the_host_or_another_topology_are_refused() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok("ip link add d0 type veth peer name d0p; ip addr add 10.99.0.1/16 dev d0; ip link set d0 up");
    let lab = sb.file("lab.toml", common::LAB);
    sb.nsfw_code(&["apply", &lab], 0);
    // Links without their carrier flags and operational state (admin UP stays): a veth made by the apply
    // above may still be coming up (NO-CARRIER, then LOWER_UP) while the cases run.
    let snapshot = "ip -o link | sed -E 's/NO-CARRIER,|,LOWER_UP|,M-DOWN| state [A-Z]+//g'; ls -A /run/netns; nft list ruleset";
    let before = sb.ok(snapshot);
    let cases = [
        (
            "another topology's subnet",
            "name = \"other\"\n[bridges.br7]\naddress = \"10.10.0.129/25\"\n[namespaces.o1]\nbridge = \"br7\"\n",
            vec![
                "bridges.br7.address = \"10.10.0.129/25\"",
                "nsfw topology \"lab\"",
                "overlap = \"allow\"",
            ],
        ),
        (
            "a route the host has",
            "name = \"other\"\n[bridges.br7]\naddress = \"10.99.1.1/24\"\n[namespaces.o1]\nbridge = \"br7\"\n",
            vec![
                "bridges.br7.address = \"10.99.1.1/24\"",
                "10.99.0.0/16 dev d0",
            ],
        ),
    ];
    for (what, text, want) in cases {
        let f = sb.file("other.toml", text);
        for cmd in ["apply", "diff"] {
            let o = sb.nsfw(&[cmd, &f]);
            assert_eq!(o.status.code(), Some(1), "{what}: {cmd}\n{}", show(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            for w in &want {
                assert!(err.contains(w), "{what}: expected {w:?} in\n{err}");
            }
        }
        assert_eq!(before, sb.ok(snapshot), "{what}");
    }
    // Said on purpose, it is allowed.
    let f = sb.file(
        "other.toml",
        "name = \"other\"\n[bridges.br7]\naddress = \"10.99.1.1/24\"\noverlap = \"allow\"\n[namespaces.o1]\nbridge = \"br7\"\n",
    );
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
}
