//! Two names of /run/netns that hold one namespace: someone mounted namespace A over
//! /run/netns/B (`mount --bind /run/netns/a /run/netns/b`). nsfw read B and found A's links,
//! then "repaired" B inside A, deleting A's interface and making B's there, and a flush
//! took A's links with B. Now every command names the two and changes nothing until the
//! mount is gone.

mod common;

use common::{Sandbox, show};

const FILE: &str = r#"name = "al"
[bridges.br0]
address = "10.100.0.1/24"
[namespaces.a]
bridge = "br0"
address = "10.100.0.2/24"
[namespaces.b]
bridge = "br0"
address = "10.100.0.3/24"
"#;

/// What the host looks like, for "nothing changed".
fn state(sb: &Sandbox) -> String {
    sb.ok("ip -o link show | sed 's/ state [A-Z]*//'; ip -n a -o addr show; ip -n a -o link show; nft list ruleset")
}

#[test]
fn a_namespace_mounted_over_another_name_is_refused_by_every_command() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("al.toml", FILE);
    sb.nsfw_code(&["apply", &f], 0);
    // Either way round: the mount over the later name, then over the earlier one.
    for (from, over) in [("a", "b"), ("b", "a")] {
        sb.ok(&format!("mount --bind /run/netns/{from} /run/netns/{over}"));
        let before = state(&sb);
        for cmd in ["diff", "apply", "flush"] {
            let o = sb.nsfw(&[cmd, &f]);
            let out = show(&o);
            assert_eq!(o.status.code(), Some(1), "{cmd}:\n{out}");
            assert!(
                out.contains("/run/netns/a and /run/netns/b hold one namespace"),
                "{cmd} with {from} over {over}:\n{out}"
            );
        }
        assert_eq!(
            before,
            state(&sb),
            "something changed with {from} over {over}"
        );
        assert!(sb.pings("a", "10.100.0.1"), "a lost its link");
        sb.ok(&format!("umount /run/netns/{over}"));
        sb.nsfw_code(&["diff", &f], 0);
        assert!(sb.pings("b", "10.100.0.1"), "b lost its link");
    }
    sb.nsfw_code(&["flush", &f], 0);
    assert!(sb.netns().is_empty(), "{:?}", sb.netns());
}
