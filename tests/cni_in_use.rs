//! CNI mode against a network in use (issue 26, hostile review): a changed subnet, gateway or
//! mtu is refused before any change, the undo of a failed ADD takes back what it gave an
//! existing bridge, and an ADD whose result cannot be written is undone.

mod common;

use common::{NSFW, Sandbox, show};
use serde_json::Value;

fn conf(subnet: &str, extra: &str) -> String {
    format!(r#"{{"cniVersion":"1.1.0","name":"lab","type":"nsfw","subnet":"{subnet}"{extra}}}"#)
}

/// Links, addresses, routes, forwarding, ruleset and nsfw's files but the lock.
fn host_state(sb: &Sandbox) -> String {
    sb.ok(
        "set -e; ip -o link show | sed 's| link/.*||'; ip -4 -o addr show; ip route show table all
           cat /proc/sys/net/ipv4/ip_forward; nft list ruleset
           find /run/nsfw -mindepth 1 ! -path /run/nsfw/lock",
    )
}

fn cni(sb: &Sandbox, cmd: &str, cid: &str, conf: &str, out: &str) -> (i32, Value, String) {
    let f = sb.file(&format!("conf-{cmd}-{cid}.json"), conf);
    let o = sb.sh(&format!(
        "ip netns add {cid} 2>/dev/null; CNI_COMMAND={cmd} CNI_CONTAINERID={cid} CNI_NETNS=/run/netns/{cid} CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni {NSFW} < {f} {out}"
    ));
    let v = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap_or_default();
    (o.status.code().unwrap_or(-1), v, show(&o))
}

/// A second ADD with another subnet or mtu than the network's bridge has: error 7 naming both,
/// nothing changed. Then, with the bridge's gateway address lost, ADDs the kernel refuses
/// half-way (strace: the Nth netlink request fails) leave the bridge as it was, without the
/// address the ADD had put back.
#[test]
fn a_network_in_use_keeps_its_subnet_and_mtu() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let (code, _, text) = cni(&sb, "ADD", "c1", &conf("10.88.0.0/22", ""), "");
    assert_eq!(code, 0, "{text}");
    let before = host_state(&sb);
    for (c, says) in [
        (conf("10.88.0.0/16", ""), "has 10.88.0.1/22"),
        (conf("10.77.0.0/24", ""), "has 10.88.0.1/22"),
        (conf("10.88.0.0/22", r#","mtu":9000"#), "have mtu 1500"),
    ] {
        let (code, out, text) = cni(&sb, "ADD", "c2", &c, "");
        assert_eq!((code, out["code"].as_i64()), (1, Some(7)), "{c}\n{text}");
        assert!(
            format!("{}", out["msg"]).contains(says),
            "{c}: {}",
            out["msg"]
        );
        assert_eq!(host_state(&sb), before, "{c}");
    }
    if sb.sh("command -v strace").status.code() != Some(0) {
        eprintln!("skipped the half-way part: strace missing (scripts/install-deps)");
        return;
    }
    sb.ok("ip addr flush dev nsfw-lab");
    let before = host_state(&sb);
    let c = sb.file("c2.json", &conf("10.88.0.0/22", ""));
    let mut failed = 0;
    for n in 1..=12 {
        let o = sb.sh(&format!(
            "CNI_COMMAND=ADD CNI_CONTAINERID=c2 CNI_NETNS=/run/netns/c2 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni strace -f -o /dev/null -e inject=sendto:error=EPERM:when={n} {NSFW} < {c}"
        ));
        if o.status.success() {
            break;
        }
        failed += 1;
        assert_eq!(host_state(&sb), before, "sendto #{n} failing: {}", show(&o));
    }
    assert!(failed > 3, "only {failed} ADDs failed");
}

/// An ADD whose result cannot be written — stdout closed, a full device, a pipe closed early —
/// fails and leaves nothing: the runtime never learns of the container and would never DEL it.
#[test]
fn an_add_that_cannot_give_its_result_is_undone() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let before = host_state(&sb);
    let c = conf("10.88.0.0/22", "");
    for out in [">&-", "> /dev/full", "| true"] {
        let (code, _, text) = cni(
            &sb,
            "ADD",
            "c1",
            &c,
            &format!("{out}; exit ${{PIPESTATUS[0]}}"),
        );
        assert_ne!(code, 0, "{out}: {text}");
        assert_eq!(host_state(&sb), before, "{out}: {text}");
    }
    let (code, _, text) = cni(&sb, "ADD", "c1", &c, "> /dev/null");
    assert_eq!(code, 0, "{text}");
}
