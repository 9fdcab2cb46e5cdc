//! The resolv.conf files: nsfw's own rewritten, someone else's left out alone (the step only,
//! not the run), taken back when forced, named by a flush.

use super::*;

#[test]
fn a_resolv_conf_someone_else_wrote_is_left_out_alone_and_nsfw_s_own_is_rewritten() {
    let text = format!("{ONE}dns = [\"192.0.2.53\"]\n");
    let mut d = desired(&text);
    let mut o = in_sync(&d);
    o.resolv
        .insert("ns1".into(), FileObs::Text("nameserver 1.1.1.1\n".into()));
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    // Not a conflict of the whole run: only that file's step is left out.
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    assert!(steps(&p).is_empty(), "{:?}", steps(&p));
    assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
    assert!(
        p.skipped[0].contains("/etc/netns/ns1/resolv.conf exists and was not written by nsfw")
            && p.skipped[0].contains("--force"),
        "{}",
        p.skipped[0]
    );
    // Forced (or dns_policy = "replace"): written over.
    d.resolv_replace.insert("ns1".into());
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    assert_eq!(steps(&p), ["+ file /etc/netns/ns1/resolv.conf"]);
    // Another topology's file is never taken, forced or not.
    let theirs = format!(
        "{}\nnameserver 9.9.9.9\n",
        crate::owner::resolv_marker("two")
    );
    o.resolv.insert("ns1".into(), FileObs::Text(theirs));
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(
        steps(&p).is_empty() && p.skipped.len() == 1,
        "{:?}",
        p.skipped
    );
    assert!(
        p.skipped[0].contains("for topology \"two\""),
        "{}",
        p.skipped[0]
    );
    let ours = format!(
        "{}\nnameserver 9.9.9.9\n",
        crate::owner::resolv_marker("one")
    );
    o.resolv.insert("ns1".into(), FileObs::Text(ours));
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert_eq!(steps(&p), ["+ file /etc/netns/ns1/resolv.conf"]);
}

#[test]
fn a_flush_names_a_namespace_s_resolv_conf_nsfw_did_not_write_and_leaves_it() {
    let d = desired(ONE);
    let mut o = in_sync(&d);
    o.resolv
        .insert("ns1".into(), FileObs::Text("nameserver 1.1.1.1\n".into()));
    let nothing = Desired {
        topology: d.topology.clone(),
        mark: d.mark.clone(),
        ..Default::default()
    };
    let p = plan(&nothing, &o, &Record::default(), Owner::Topology("one"));
    assert!(
        !steps(&p).iter().any(|s| s.contains("resolv.conf")),
        "{:?}",
        steps(&p)
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("/etc/netns/ns1/resolv.conf was not written by nsfw")),
        "{:?}",
        p.warnings
    );
}
