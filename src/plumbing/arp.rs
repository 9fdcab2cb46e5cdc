//! Who answers for an address on a segment: ARP requests sent on a bridge from the host, and
//! every reply heard for a while, by the address it is for. Two MACs answering for one
//! address is two machines claiming it — what a segment stretched over several hosts
//! (VXLAN) cannot rule out from one host's file (`nsfw verify`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use socket2::{Domain, Protocol, Socket, Type};

use crate::topology::Mac;

const ETH_P_ARP: u16 = 0x0806;

/// `arp who-has T tell SENDER` from `mac`, broadcast.
fn request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    // A gratuitous request has the right shape; only the target address differs.
    let mut f = super::announce::garp(sender, mac);
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The ARP reply in frame `f`: (sender address, sender MAC).
fn reply(f: &[u8]) -> Option<(Ipv4Addr, Mac)> {
    if f.len() < 42 || f[12..14] != [8, 6] || f[20..22] != [0, 2] {
        return None;
    }
    let mac = <[u8; 6]>::try_from(&f[22..28]).ok()?;
    let ip = <[u8; 4]>::try_from(&f[28..32]).ok()?;
    Some((Ipv4Addr::from(ip), Mac(mac)))
}

/// Asks on `ifname` (of the caller's namespace; its MAC `mac`, its address `sender` or
/// 0.0.0.0, an ARP probe) for each of `targets`, twice, and gathers the MACs that answer
/// within `wait`.
pub(crate) fn who_has(
    ifname: &str,
    mac: [u8; 6],
    sender: Ipv4Addr,
    targets: &[Ipv4Addr],
    wait: Duration,
) -> Result<BTreeMap<Ipv4Addr, BTreeSet<Mac>>> {
    let ifindex =
        nix::net::if_::if_nametoindex(ifname).with_context(|| format!("no interface {ifname}"))?;
    let proto = Protocol::from(i32::from(ETH_P_ARP.to_be()));
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(proto))
        .map_err(|e| anyhow!("cannot open a packet socket on {ifname}: {e}"))?;
    sock.bind(&super::announce::link_addr(ifindex, ETH_P_ARP, &[0; 6])?)
        .map_err(|e| anyhow!("cannot listen for ARP on {ifname}: {e}"))?;
    let to = super::announce::link_addr(ifindex, ETH_P_ARP, &[0xff; 6])?;
    for _ in 0..2 {
        for t in targets {
            sock.send_to(&request(mac, sender, *t), &to)
                .map_err(|e| anyhow!("cannot ask for {t} on {ifname}: {e}"))?;
        }
    }
    let mut out: BTreeMap<Ipv4Addr, BTreeSet<Mac>> = BTreeMap::new();
    let end = Instant::now() + wait;
    let mut buf = [0u8; 128];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left))?;
        // socket2's `Read` for `&Socket`: plain bytes, no uninitialised memory.
        let Ok(n) = (&sock).read(&mut buf) else { break };
        if let Some((ip, m)) = buf.get(..n).and_then(reply)
            && targets.contains(&ip)
        {
            out.entry(ip).or_default().insert(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_asks_for_its_target_and_a_reply_names_its_sender() {
        let (me, them) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 9));
        let mut f = request([2, 0, 0, 0, 0, 1], me, them);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[10, 0, 0, 1]);
        assert_eq!(&f[38..42], &[10, 0, 0, 9]);
        assert_eq!(reply(&f), None);
        f[20..22].copy_from_slice(&[0, 2]);
        assert_eq!(reply(&f), Some((me, Mac([2, 0, 0, 0, 0, 1]))));
    }
}
