use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use super::{Plan, checks, drain_bytes, judge};

#[test]
fn a_frame_carries_less_than_the_rate() {
    let g = super::goodput(10_000_000, 1500);
    assert!((g - 9_564_068.0).abs() < 1.0, "{g}");
}

fn plan(skip: u64) -> Plan {
    Plan {
        bps: 10_000_000,
        mtu: 1500,
        ports: vec![9000],
        skip,
    }
}

#[test]
fn the_burst_is_not_timed() {
    // Without a peak rate the burst leaves at once; with one, the rate refills the bucket
    // while it drains: 64 KiB at 4mbit over 2mbit is twice the burst.
    assert_eq!(drain_bytes(2_000_000, None, 65536), Some(65536));
    assert_eq!(drain_bytes(2_000_000, Some(4_000_000), 65536), Some(131072));
    // A ceil barely above the rate would take minutes to drain: not checked.
    assert_eq!(drain_bytes(2_000_000, Some(2_000_008), 65536), None);
    // 2.39 MB past a 1 MB burst in 2 s is the rate; counting the burst in would not be.
    assert!(judge(&plan(1 << 20), 2_391_017, Duration::from_secs(2)).is_ok());
    let e = judge(&plan(1 << 20), 3_400_000, Duration::from_secs(2)).unwrap_err();
    assert!(format!("{e}").contains("13.60 Mbit/s"), "{e}");
}

#[test]
fn a_denied_host_gets_no_rate_check_but_a_reason() {
    let src = r#"
name = "lab"
[bridges.br0]
address = "10.10.0.1/24"
[namespaces.ns1]
bridge = "br0"
rate = "10mbit"
[[deny]]
from = "host"
to = "ns1"
"#;
    let t = crate::topology::parse(src, std::path::Path::new("t.toml")).expect("valid");
    let mut out = Vec::new();
    let why = checks(&mut out, &t);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("does not let the host connect"), "{why:?}");
    let allowed = src.replace("[[deny]]", "[[allow]]");
    let t = crate::topology::parse(&allowed, std::path::Path::new("t.toml")).expect("valid");
    assert!(checks(&mut out, &t).is_empty());
    assert_eq!(out.len(), 1);
}

#[test]
fn a_sink_that_never_answers_costs_a_deadline_not_a_hang() {
    // A listener whose backlog is full and never accepted: the connect does not finish, or
    // the accepted side never reads. Either way the transfer ends by its deadline.
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let mut c = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    c.set_write_timeout(Some(super::TICK)).expect("timeout");
    let start = Instant::now();
    let r = super::write_all(&mut c, 1 << 30, Instant::now() + Duration::from_secs(1));
    assert!(r.is_err(), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(l);
}
