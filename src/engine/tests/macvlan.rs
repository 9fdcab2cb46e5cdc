//! Children of a host uplink over the fake kernel: an uplink that cannot carry them.

use super::super::Target;
use super::super::fake::Fake;
use crate::plumbing::{Addr, Link};
use crate::testdata::{Scratch, topology};

/// An uplink that cannot carry the child is refused before anything changes: an MTU above
/// the uplink's (the kernel would refuse it part-way), a link nsfw made (another topology's
/// bridge: its flush would take the child along), the host's own address on the uplink.
#[test]
fn an_unfit_uplink_is_refused_before_anything_changes() {
    for (mtu, alias, host_addr, why) in [
        (
            "mtu = 9000",
            None,
            None,
            "mtu = 9000 is above the uplink's 1500",
        ),
        (
            "",
            Some("nsfw:other"),
            None,
            "it is a link nsfw made (marked \"nsfw:other\")",
        ),
        (
            "",
            None,
            Some("192.0.2.11/24"),
            "address 192.0.2.11 is the host's own on the uplink",
        ),
    ] {
        let t = topology(
            "mv",
            &format!(
                "name = \"mv\"\n[namespaces.m1]\nmacvlan = \"up0\"\naddress = \"192.0.2.11/24\"\n{mtu}\n"
            ),
        );
        let (mut k, dir) = (Fake::new(), Scratch::new());
        k.net.host.links.push(Link {
            name: "up0".into(),
            mtu: 1500,
            alias: alias.map(String::from),
            ..Link::bare(90, true, false)
        });
        if let Some(a) = host_addr {
            k.net.host.addrs.push(Addr {
                index: 90,
                net: a.parse().expect("a net"),
                flags: 0,
                scope: 0,
                valid: u32::MAX,
                preferred: u32::MAX,
                brd: None,
                metric: 0,
            });
        }
        let e = super::run(&mut k, &dir, &Target::apply(&t))
            .err()
            .expect("refused");
        let e = format!("{e:#}");
        assert!(e.contains(why) && e.contains("nothing was changed"), "{e}");
        assert!(k.sent.is_empty(), "{why}: {:#?}", k.sent);
    }
}
