//! What debug builds (the tests') compare of the host's links a run was given — by `nsfw
//! watch`, or those asked for again by name with the rest as an earlier read saw them — with
//! a dump: what the caller trusts must be what is there.

use std::collections::{BTreeMap, BTreeSet};

use super::objects::Link;

/// The links the run uses, as it was given them and as the dump shows them: nsfw's, those
/// `named` (the links of the run's sysctls, those asked for again), and the ports of nsfw's
/// bridges, each with only the settings it was given (watch serves only those it holds open;
/// the run reads the others itself). A foreign link made, changed or deleted meanwhile is no
/// staleness of what the run trusts.
pub(super) fn compared(
    given: &[Link],
    dumped: &[Link],
    named: &BTreeSet<String>,
) -> (Vec<Link>, Vec<Link>) {
    let ours: BTreeSet<u32> = given
        .iter()
        .chain(dumped)
        .filter(|l| crate::owner::owned(l.alias.as_deref(), |_| true))
        .map(|l| l.index)
        .collect();
    let used = |l: &&Link| {
        ours.contains(&l.index)
            || named.contains(&l.name)
            || l.master.is_some_and(|m| ours.contains(&m))
    };
    let by_index: BTreeMap<u32, &Link> = given.iter().map(|l| (l.index, l)).collect();
    let a = given.iter().filter(used).cloned().collect();
    let b = dumped
        .iter()
        .filter(used)
        .map(|l| {
            let mut l = l.clone();
            if let Some(g) = by_index.get(&l.index) {
                l.conf.retain(|k, _| g.conf.contains_key(k));
            }
            l
        })
        .collect();
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, alias: Option<&str>, master: Option<u32>) -> Link {
        let mut l = Link::bare(index, true, false);
        l.name = name.into();
        l.alias = alias.map(Into::into);
        l.master = master;
        l
    }

    fn same(given: &[Link], dumped: &[Link], named: &BTreeSet<String>) -> bool {
        let (a, b) = compared(given, dumped, named);
        a == b
    }

    #[test]
    fn a_stale_link_of_the_run_is_caught_and_a_foreign_change_is_not() {
        let br0 = link(2, "br0", Some("nsfw:t"), None);
        let mut port = link(3, "veth-m1", Some("nsfw:t"), Some(2));
        port.conf.insert("ipv6.addr_gen_mode", "1".into());
        let given = vec![br0.clone(), port.clone()];
        let keys = BTreeSet::from(["veth-m1".to_string()]);
        assert!(same(&given, &given, &keys), "nothing changed");

        // A foreign link made (or gone) meanwhile: not what the run trusts.
        let mut dumped = given.clone();
        dumped.push(link(9, "fx0", None, None));
        assert!(same(&given, &dumped, &keys), "a foreign link made");
        assert!(same(&dumped, &given, &keys), "a foreign link gone");

        // A setting the run was not given (it reads it itself) differs: not staleness.
        let mut d = given.clone();
        d[0].conf.insert("ipv6.disable_ipv6", "1".into());
        assert!(same(&given, &d, &keys), "a setting not served");

        // What the served table would miss: every one caught.
        let mut d = given.clone();
        d[1].conf.insert("ipv6.addr_gen_mode", "0".into());
        assert!(!same(&given, &d, &keys), "a served setting stale");
        let mut d = given.clone();
        d[1].up = false;
        assert!(!same(&given, &d, &keys), "nsfw's veth down");
        let mut d = given.clone();
        d.push(link(4, "veth-m2", Some("nsfw:t"), Some(2)));
        assert!(!same(&given, &d, &keys), "nsfw's new veth missed");
        let mut d = given.clone();
        d.push(link(5, "eth9", None, Some(2)));
        assert!(
            !same(&given, &d, &keys),
            "a foreign port on nsfw's bridge missed"
        );
        assert!(
            !same(&given, &given[..1], &keys),
            "nsfw's veth gone, still served"
        );
    }
}
