//! The engine taking `nsfw watch`'s memory over the fake kernel: a namespace it vouches for
//! is taken as it says, not read (so the memory must never vouch for one that changed: see
//! watch's memory and tests/memory.rs); one it does not vouch for is read and repaired.

use std::os::fd::AsFd;

use super::fake::Fake;
use super::{Memory, Target, converge_in, observe_in};
use crate::plumbing::answer::Place;
use crate::plumbing::memory::Known;
use crate::resources::Place as Where;
use crate::state::Record;
use crate::testdata::{Scratch, ruleset};

/// The lab applied, and the memory a watch would hold of it now.
fn applied_and_remembered() -> (Fake, Scratch, Vec<Place>) {
    let t = ruleset("lab");
    let (mut k, dir) = (Fake::new(), Scratch::new());
    let tg = Target::apply(&t);
    converge_in(&mut k, dir.fd.as_fd(), &tg, &mut |_| {}, &mut |_, _| {}).expect("apply");
    let rec = Record::load(dir.fd.as_fd());
    let o = observe_in(&mut k, &tg, &rec).expect("observe");
    let places = o
        .net
        .namespaces
        .into_iter()
        .map(|(name, obs)| Place { name, ino: 0, obs })
        .collect();
    (k, dir, places)
}

fn run(k: &mut Fake, dir: &Scratch, places: Vec<Place>) -> Vec<String> {
    let t = ruleset("lab");
    let tg = Target {
        memory: Memory::Given(Known::new(places)),
        ..Target::apply(&t)
    };
    let mut said = Vec::new();
    converge_in(
        k,
        dir.fd.as_fd(),
        &tg,
        &mut |l| said.push(l),
        &mut |_, _| {},
    )
    .expect("run");
    said
}

#[test]
fn a_namespace_the_memory_vouches_for_is_not_read_one_it_forgot_is() {
    let (mut k, dir, places) = applied_and_remembered();
    assert!(places.iter().any(|p| p.name == "ns2"));
    k.net
        .node_mut(&Where::Ns("ns2".into()))
        .expect("ns2")
        .routes
        .clear();
    // Vouched for (a memory that missed the change: what watch must never serve), the
    // change goes unseen: the engine took the memory's word.
    assert_eq!(run(&mut k, &dir, places.clone()), Vec::<String>::new());
    // Forgotten (watch heard from ns2), it is read and repaired.
    let rest = places.into_iter().filter(|p| p.name != "ns2").collect();
    assert_eq!(
        run(&mut k, &dir, rest),
        vec!["+ route ns2: default via 10.10.0.1 dev eth0".to_string()]
    );
}
