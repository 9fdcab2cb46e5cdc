//! Unit tests of `validate`: whole files in, errors out.

/// A file nested past the TOML reader's limit is refused naming the file, with no
/// made-up line and column.
#[test]
fn nesting_past_the_readers_limit_is_refused_plainly() {
    let text = format!("[{}]\n", vec!["a"; 200].join("."));
    let errs = super::parse(&text, std::path::Path::new("deep.toml"))
        .expect_err("refused")
        .0;
    assert_eq!(
        errs,
        vec![
            "deep.toml: not valid TOML: tables or arrays nested too deeply (a topology needs a handful of levels)"
        ]
    );
}

/// A path that never ends (/dev/zero) is an error, not all the memory there is.
#[test]
fn an_endless_file_is_refused() {
    let errs = crate::topology::load(std::path::Path::new("/dev/zero"))
        .expect_err("refused")
        .0;
    assert_eq!(
        errs,
        vec![
            "/dev/zero: cannot read the topology file: it is larger than 64 MiB, which no topology needs"
        ]
    );
}

use super::*;

fn errs(text: &str) -> Vec<String> {
    match parse(text, Path::new("t.toml")) {
        Ok(_) => vec![],
        Err(e) => e.0,
    }
}

const LAB: &str = r#"
name = "lab"
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
[namespaces.ns2]
bridge = "br0"
"#;

#[test]
fn lab_resolves() {
    let t = parse(LAB, Path::new("t.toml")).expect("valid");
    let i = |n: usize| &t.namespaces[n].ifaces[0];
    assert_eq!(i(1).address.to_string(), "10.10.0.3/24");
    assert_eq!(i(0).host_ifname, "veth-ns1");
    assert_eq!(t.host.ip_forward, Some(true));
    assert_eq!(i(0).mtu, 1500);
    assert_eq!(
        t.namespaces[0].gateway,
        Some(std::net::Ipv4Addr::new(10, 10, 0, 1))
    );
}

#[test]
fn auto_addresses_skip_explicit_ones() {
    let t = parse(
        "name='x'\n[bridges.b]\naddress='10.0.0.1/29'\n[namespaces.a]\nbridge='b'\n[namespaces.c]\nbridge='b'\naddress='10.0.0.2'\n",
        Path::new("t"),
    )
    .expect("valid");
    assert_eq!(
        t.namespaces[0].ifaces[0].address.ip().to_string(),
        "10.0.0.3"
    );
    assert_eq!(
        t.namespaces[1].ifaces[0].address.ip().to_string(),
        "10.0.0.2"
    );
}

#[test]
fn all_errors_at_once() {
    let e = errs(
        "name='Lab'\nbogus=1\n[bridges.br0]\naddress='10.10.0.0/24'\nmtu=9\n[namespaces.ns1]\nbridge='nope'\nmac='01:00:00:00:00:01'\n",
    );
    assert!(e.iter().any(|m| m.contains("name = \"Lab\"")), "{e:?}");
    assert!(
        e.iter().any(|m| m.contains("bogus = 1: unknown key")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("network address")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("bridges.br0.mtu = 9")), "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.contains("namespaces.ns1.bridge = \"nope\"")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("multicast")), "{e:?}");
}

#[test]
fn a_port_mtu_other_than_its_bridges_is_an_error() {
    let e = errs(
        "name='x'\n[bridges.b]\naddress='10.0.0.1/24'\n[namespaces.a]\nbridge='b'\nmtu=1450\n",
    );
    assert!(
        e.iter()
            .any(|m| m.contains("namespaces.a.mtu = 1450") && m.contains("one MTU per L2 segment")),
        "{e:?}"
    );
    assert!(errs("name='x'\n[bridges.b]\naddress='10.0.0.1/24'\nmtu=1450\n[namespaces.a]\nbridge='b'\nmtu=1450\n").is_empty());
}

/// Every bad rate limit names the file, its key and its value; the MTU bounds the burst.
#[test]
fn bad_rate_limits_name_their_key_and_value() {
    let base =
        "name='x'\n[bridges.b]\naddress='10.0.0.1/24'\nmtu=9000\n[namespaces.a]\nbridge='b'\n";
    for (keys, want) in [
        (
            "rate='0mbit'",
            "t.toml: namespaces.a.rate = \"0mbit\": \"0mbit\": a rate of zero",
        ),
        (
            "rate='-1mbit'",
            "namespaces.a.rate = \"-1mbit\": \"-1mbit\": negative",
        ),
        (
            "rate='2tbit'",
            "namespaces.a.rate = \"2tbit\": \"2tbit\": more than 1000gbit",
        ),
        (
            "rate='10mbit'\nburst='1514'",
            "namespaces.a.burst = \"1514\": smaller than one full frame on this interface (9014 bytes: MTU 9000",
        ),
        ("rate='10mbit'\nburst=0", "namespaces.a.burst = 0: bytes"),
        (
            "rate='10mbit'\nburst='1.5kb'",
            "namespaces.a.burst = \"1.5kb\"",
        ),
        (
            "rate='10mbit'\nceil='5mbit'",
            "namespaces.a.ceil = \"5mbit\": 5mbit is not above the rate (10mbit)",
        ),
        (
            "ceil='5mbit'",
            "namespaces.a.ceil = \"5mbit\": a rate limit's: give `rate` too",
        ),
        ("rate=10", "namespaces.a.rate = 10: must be a string"),
    ] {
        let e = errs(&format!("{base}{keys}\n"));
        assert!(e.iter().any(|m| m.contains(want)), "{keys}: {e:?}");
    }
    assert!(
        errs(&format!(
            "{base}rate='10mbit'\nburst='64kb'\nceil='20mbit'\n"
        ))
        .is_empty()
    );
}

#[test]
fn too_many_ports_on_one_bridge() {
    let mut s = String::from("name='x'\n[bridges.b]\naddress='10.0.0.1/16'\n");
    for i in 0..1024 {
        s.push_str(&format!("[namespaces.n{i}]\nbridge='b'\n"));
    }
    let e = errs(&s);
    assert!(e.iter().any(|m| m.contains("at most 1023 ports")), "{e:?}");
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = errs("name = \"x\"\n[bridges\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("t.toml:2:"), "{e:?}");
}

/// A child with address6 and an MTU below IPv6's minimum is refused at validation: the kernel
/// would turn IPv6 off on it and refuse the address part-way through an apply.
#[test]
fn an_ipv6_child_below_1280_is_refused() {
    let e = errs(
        "name = \"t\"\n[namespaces.a]\nmacvlan = \"up0\"\naddress = \"192.0.2.11/24\"\naddress6 = \"2001:db8::11/64\"\nmtu = 500\n",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("t.toml: namespaces.a.mtu = 500: 500 is below 1280"),
        "{e:#?}"
    );
}
