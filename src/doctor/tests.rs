//! doctor's reading of other tables' chains, on hand-made IR: which rules drop the lab's
//! traffic for certain, which in part, which not at all.

use std::path::Path;

use super::flows::{Flow, ip_flows};
use super::judge::{Outcome, judge};
use crate::firewall::build::{in_net, rule};
use nft::{
    Base, Chain, ChainType, Expr, Field, Hook, Policy, Reject, Rule, Stmt, Table, Value, Verdict,
    ct_state,
};

const LAB: &str = "name = \"lab\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[namespaces.ns1]\nbridge = \"br0\"\npublish = [\"8080:80/tcp\"]\n";

fn flows() -> Vec<Flow> {
    let t = crate::topology::parse(LAB, Path::new("t.toml")).expect("valid");
    ip_flows(&t, &(Some("eth0".into()), None), true)
}

fn flow(label: &str, hook: Hook) -> Flow {
    flows()
        .into_iter()
        .find(|f| f.label.contains(label) && f.hook == hook && !f.v6)
        .unwrap_or_else(|| panic!("no flow {label}"))
}

fn table(policy: Policy, chains: Vec<(&str, Vec<Rule>)>) -> Table {
    let mut t = Table::new(nft::Family::Inet, "other");
    for (i, (name, rules)) in chains.into_iter().enumerate() {
        let base = (i == 0).then_some(Base {
            ty: ChainType::Filter,
            hook: Hook::Forward,
            priority: 0,
            policy,
        });
        t.chains.push(Chain::new(name, base, rules));
    }
    t
}

fn run(t: &Table, f: &Flow) -> Outcome {
    judge(t, "forward", f, &|_, i| i as u64 + 1)
}

fn tcp_dport(p: u16) -> Stmt {
    Stmt::eq(Expr::Payload(Field::TcpDport), Value::Port(p))
}

#[test]
fn a_drop_policy_drops_new_connections_and_lets_replies_through() {
    let t = table(
        Policy::Drop,
        vec![(
            "forward",
            vec![rule(
                vec![Stmt::ct_state(ct_state::ESTABLISHED | ct_state::RELATED)],
                Verdict::Accept,
            )],
        )],
    );
    let out = run(&t, &flow("the world (new", Hook::Forward));
    let (b, certain) = out.blocked.expect("blocked");
    assert!(b.rule.is_none() && certain, "{b:?}");
    assert!(run(&t, &flow("(replies)", Hook::Forward)).blocked.is_none());
}

#[test]
fn a_reject_of_everything_rejects_and_an_earlier_accept_of_the_bridge_shields() {
    let reject = Rule::new(vec![Stmt::Reject(Reject::Default)]);
    let t = table(Policy::Accept, vec![("forward", vec![reject.clone()])]);
    let (b, _) = run(&t, &flow("the world (new", Hook::Forward))
        .blocked
        .expect("blocked");
    assert_eq!(
        (b.rule.map(|r| r.0), b.reject),
        (Some("reject".into()), true)
    );
    let t = table(
        Policy::Accept,
        vec![(
            "forward",
            vec![
                rule(vec![Stmt::iifname("br0", true)], Verdict::Accept),
                reject,
            ],
        )],
    );
    assert!(
        run(&t, &flow("the world (new", Hook::Forward))
            .blocked
            .is_none()
    );
}

#[test]
fn ports_alone_are_the_hosts_business_with_the_bridge_they_are_a_partial_drop() {
    let t = table(
        Policy::Accept,
        vec![(
            "forward",
            vec![
                rule(vec![tcp_dport(22)], Verdict::Drop),
                rule(
                    vec![Stmt::oifname("br0", true), tcp_dport(23)],
                    Verdict::Drop,
                ),
            ],
        )],
    );
    let out = run(&t, &flow("(published ports)", Hook::Forward));
    assert!(out.blocked.is_none());
    assert_eq!(out.partly.len(), 1);
    assert_eq!(
        out.partly[0].rule.as_ref().map(|r| r.0.as_str()),
        Some("oifname \"br0\" tcp dport 23 drop")
    );
}

#[test]
fn jumps_are_followed_and_subnets_and_the_uplink_match() {
    let net = "10.0.0.0/8".parse().expect("net");
    let t = table(
        Policy::Accept,
        vec![
            (
                "forward",
                vec![rule(
                    vec![Stmt::oifname("eth0", true)],
                    Verdict::Jump("out".into()),
                )],
            ),
            ("out", vec![rule(vec![in_net(net, true)], Verdict::Drop)]),
        ],
    );
    let (b, certain) = run(&t, &flow("the world (new", Hook::Forward))
        .blocked
        .expect("blocked");
    assert_eq!((b.chain.as_str(), certain), ("out", true));
    // Another subnet's rule does not touch the lab.
    let other = "192.168.0.0/16".parse().expect("net");
    let t = table(
        Policy::Accept,
        vec![(
            "forward",
            vec![rule(vec![in_net(other, true)], Verdict::Drop)],
        )],
    );
    assert!(
        run(&t, &flow("the world (new", Hook::Forward))
            .blocked
            .is_none()
    );
}
