//! The resolv.conf files: nsfw's own rewritten, someone else's left out alone (the step only,
//! not the run), taken back when forced, named by a flush.

use super::*;

/// The plan of `nsfw flush` of topology `one` (the file's topology, nothing desired).
fn flush_plan(d: &Desired, o: &Observed, rec: &Record) -> Plan {
    let nothing = Desired {
        topology: d.topology.clone(),
        mark: d.mark.clone(),
        ..Default::default()
    };
    plan(&nothing, o, rec, Owner::Topology("one"))
}

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
    let theirs = crate::owner::resolv_file("two", "nameserver 9.9.9.9\n");
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
    let ours = crate::owner::resolv_file("one", "nameserver 9.9.9.9\n");
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
    let p = flush_plan(&d, &o, &Record::default());
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

#[test]
fn an_edit_that_keeps_nsfw_s_first_line_is_a_hand_edit() {
    let text = format!("{ONE}dns = [\"192.0.2.53\"]\n");
    let mut d = desired(&text);
    let mut o = in_sync(&d);
    let ours = d.resolv["ns1"].clone();
    let edited = format!("{ours}nameserver 192.0.2.9\n");
    o.resolv.insert("ns1".into(), FileObs::Text(edited.clone()));
    // apply: skipped (exit 4), named as an edit of nsfw's file.
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(steps(&p).is_empty(), "{:?}", steps(&p));
    assert!(
        p.skipped.len() == 1 && p.skipped[0].contains("edited by hand since"),
        "{:?}",
        p.skipped
    );
    // An nsfw file from before the digest is still nsfw's: rewritten, not skipped.
    let old = "# written by nsfw for topology one; nsfw apply rewrites it, nsfw flush removes it\nnameserver 192.0.2.53\n";
    o.resolv.insert("ns1".into(), FileObs::Text(old.into()));
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    assert_eq!(steps(&p), ["+ file /etc/netns/ns1/resolv.conf"]);
    // --force takes the edited one back; another topology's edited file is never taken.
    o.resolv.insert("ns1".into(), FileObs::Text(edited.clone()));
    d.resolv_replace.insert("ns1".into());
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert_eq!(steps(&p), ["+ file /etc/netns/ns1/resolv.conf"]);
    let theirs = format!(
        "{}nameserver 192.0.2.9\n",
        crate::owner::resolv_file("two", "")
    );
    o.resolv.insert("ns1".into(), FileObs::Text(theirs));
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(
        steps(&p).is_empty() && p.skipped.len() == 1,
        "{:?}",
        p.skipped
    );
    // flush: named and kept.
    o.resolv.insert("ns1".into(), FileObs::Text(edited));
    let p = flush_plan(&d, &o, &Record::default());
    assert!(
        !steps(&p).iter().any(|s| s.contains("resolv.conf")),
        "{:?}",
        steps(&p)
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("edited by hand since")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_flush_leaves_a_directory_that_holds_hosts_and_is_done() {
    let text = format!("{ONE}dns = [\"192.0.2.53\"]\n");
    let d = desired(&text);
    let mut o = in_sync(&d);
    // resolv.conf already removed, /etc/netns/ns1 still there with `hosts`, a pending file
    // in the record (an earlier flush): nothing left to do, the directory named.
    o.resolv.clear();
    o.etc_busy.insert("ns1".into(), vec!["hosts".into()]);
    let mut rec = Record::default();
    rec.pending
        .entry("one".into())
        .or_default()
        .files
        .insert("ns1".into());
    let p = flush_plan(&d, &o, &rec);
    assert!(
        !steps(&p).iter().any(|s| s.contains("resolv.conf")),
        "{:?}",
        steps(&p)
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("/etc/netns/ns1 holds hosts")),
        "{:?}",
        p.warnings
    );
}
