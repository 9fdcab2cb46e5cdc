//! Changes that cost what they change, over the fake kernel: one `[[allow]]` entry or one
//! published port changed among thousands sends exactly the elements that differ and reads
//! nothing back; a flush does not wait for the kernel to take a deleted namespace's veths.

use std::fmt::Write as _;
use std::os::fd::AsFd;

use nft::batch::Op;

use super::fake::{Fake, Sent};
use super::{Outcome, Target, converge_in};
use crate::plan::Owner;
use crate::state::Record;
use crate::testdata::{Scratch, ruleset, topology};
use crate::topology::Topology;

fn run(k: &mut Fake, dir: &Scratch, tg: &Target) -> anyhow::Result<Outcome> {
    converge_in(k, dir.fd.as_fd(), tg, &mut |_| {}, &mut |_, _| {})
}

fn applied(t: &Topology) -> (Fake, Scratch) {
    let (mut k, dir) = (Fake::new(), Scratch::new());
    run(&mut k, &dir, &Target::apply(t)).unwrap_or_else(|e| panic!("apply: {e:#}"));
    k.sent.clear();
    (k.observed, k.observed_net) = (0, 0);
    (k, dir)
}

/// Every batch sent, as (op, set, elements) of its element ops; anything else as it is.
fn element_ops(k: &Fake) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for s in &k.sent {
        let Sent::Batch(_, ops) = s else {
            out.push((format!("{s:?}"), String::new(), 0));
            continue;
        };
        for o in ops {
            out.push(match o {
                Op::AddElements { set, .. } => ("add".into(), set.name.clone(), set.elements.len()),
                Op::DeleteElements { set, .. } => {
                    ("delete".into(), set.name.clone(), set.elements.len())
                }
                o => (format!("{o:?}"), String::new(), 0),
            });
        }
    }
    out
}

/// 10 namespaces on an egress-denied bridge and `n` `[[allow]]` entries, no two neighbours
/// (every address and port even: each a single key of `allow_exact4`), the first on port
/// `port`; then two more, ns1 to 198.51.100.200 and .201 on tcp/7000, joined into one box of
/// `allow4` — unless `split` moves the second to tcp/7002.
fn policy(n: usize, port: u16, split: bool) -> Topology {
    let mut s = String::from(
        "name = \"big\"\n[bridges.br0]\naddress = \"10.100.0.1/24\"\negress = \"deny\"\n",
    );
    for i in 0..10 {
        writeln!(
            s,
            "[namespaces.ns{i}]\nbridge = \"br0\"\naddress = \"10.100.0.{}/24\"",
            2 * i + 2
        )
        .ok();
    }
    let mut allow = |from: usize, to: String, port: usize| {
        writeln!(
            s,
            "[[allow]]\nfrom = \"ns{from}\"\nto = \"{to}/32\"\nports = [\"tcp/{port}\"]"
        )
        .ok();
    };
    allow(0, "203.0.113.10".into(), port.into());
    for e in 1..n {
        let to = format!("198.51.100.{}", 2 * ((e / 10) % 125) + 2);
        allow(e % 10, to, 10000 + 2 * (e / 1250));
    }
    allow(1, "198.51.100.200".into(), 7000);
    allow(1, "198.51.100.201".into(), if split { 7002 } else { 7000 });
    topology("big", &s)
}

#[test]
fn one_allow_entry_changed_among_thousands_sends_only_the_elements_that_differ() {
    let (mut k, dir) = applied(&policy(2000, 5201, false));
    let out = run(&mut k, &dir, &Target::apply(&policy(2000, 5202, false))).expect("apply");
    assert_eq!(out.changes, 2, "{:?}", out.plan.nft.lines);
    assert_eq!(
        element_ops(&k),
        [
            ("delete".into(), "allow_exact4".into(), 1),
            ("add".into(), "allow_exact4".into(), 1),
        ]
    );
    // Read once, before; the generation says the batch alone moved it: nothing read back.
    assert_eq!((k.observed, k.observed_net), (1, 0));
    // An entry of a joined box moved: the box goes, its two keys come as single keys.
    k.sent.clear();
    run(&mut k, &dir, &Target::apply(&policy(2000, 5202, true))).expect("apply");
    assert_eq!(
        element_ops(&k),
        [
            ("delete".into(), "allow4".into(), 1),
            ("add".into(), "allow_exact4".into(), 2),
        ]
    );
}

#[test]
fn one_published_port_changed_among_thousands_sends_two_elements_and_reads_nothing_back() {
    let text = |first: u16| {
        let mut s = String::from(
            "name = \"pubs\"\n[bridges.br0]\naddress = \"10.200.0.1/22\"\nmasquerade = true\n",
        );
        for i in 0..20u16 {
            let h = 20000 + i * 100;
            let publish = if i == 0 {
                format!("[\"{first}:8000\", \"{}-{}:8001-8099\"]", h + 1, h + 99)
            } else {
                format!("[\"{h}-{}:8000-8099\"]", h + 99)
            };
            writeln!(
                s,
                "[namespaces.ns{i}]\nbridge = \"br0\"\naddress = \"10.200.0.{}/22\"\npublish = {publish}",
                i + 2
            )
            .ok();
        }
        topology("pubs", &s)
    };
    let (mut k, dir) = applied(&text(20000));
    let out = run(&mut k, &dir, &Target::apply(&text(30000))).expect("apply");
    assert_eq!(out.changes, 2, "{:?}", out.plan.nft.lines);
    assert_eq!(
        element_ops(&k),
        [
            ("delete".into(), "publish4".into(), 1),
            ("add".into(), "publish4".into(), 1),
        ]
    );
    assert_eq!((k.observed, k.observed_net), (1, 0));
}

#[test]
fn a_flush_does_not_wait_for_the_kernel_to_take_the_veths_of_the_namespaces_it_deleted() {
    let t = ruleset("lab");
    let (mut k, dir) = applied(&t);
    // The kernel tears the namespaces down later (or never, while someone holds one).
    k.net.lingering_peers = true;
    run(&mut k, &dir, &Target::flush(Owner::Topology("lab"))).expect("flush");
    assert!(k.net.namespaces.is_empty());
    let links =
        |k: &Fake| -> Vec<String> { k.net.host.links.iter().map(|l| l.name.clone()).collect() };
    assert_eq!(links(&k), ["lo", "veth-ns1", "veth-ns2"]);
    assert_eq!(Record::load(dir.fd.as_fd()), Record::default());
    // Still marked, they are nsfw's: the next flush deletes those that are left.
    k.sent.clear();
    let out = run(&mut k, &dir, &Target::flush(Owner::Topology("lab"))).expect("again");
    assert_eq!(out.changes, 2);
    assert_eq!(links(&k), ["lo"]);
}
