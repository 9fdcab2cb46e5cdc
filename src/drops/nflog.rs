//! The nflog group nsfw's drops are logged to, read over NETLINK_NETFILTER (NFNL_SUBSYS_ULOG):
//! bound with NFULNL_CFG_CMD_BIND, in copy-packet mode for the first bytes of each packet (its
//! network and transport headers), batched by the kernel (a datagram per 20 packets or 100 ms).
//! Written over `crate::netlink`'s framing: the four attributes read here did not justify
//! netlink-packet-netfilter (whose timestamp has no accessor, and whose derive_more 0.99
//! would add a second syn to the build).

use std::io;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};

use crate::netlink::{self, NETLINK_NETFILTER, NLMSG_ERROR, RecvBuf, Request, Socket};

/// NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_*.
const MSG_PACKET: u16 = 4 << 8;
const MSG_CONFIG: u16 = (4 << 8) | 1;
/// NFULA_CFG_*.
const CFG_CMD: u16 = 1;
const CFG_MODE: u16 = 2;
const CFG_TIMEOUT: u16 = 4;
const CFG_QTHRESH: u16 = 5;
const CMD_BIND: u8 = 1;
const COPY_PACKET: u8 = 2;
/// NFULA_* of a logged packet.
const IFINDEX_INDEV: u16 = 4;
const IFINDEX_OUTDEV: u16 = 5;
const IFINDEX_PHYSINDEV: u16 = 6;
const PAYLOAD: u16 = 9;
const PREFIX: u16 = 10;
/// Bytes of each packet copied: an IPv6 header and a transport header's ports with room.
const COPY_RANGE: u32 = 96;

/// One logged packet.
#[derive(Clone, Debug)]
pub(crate) struct Logged {
    /// When it was read (the kernel stamps forwarded packets only when something asked
    /// every packet to be stamped; the batching delays it by at most 100 ms).
    pub time: SystemTime,
    /// The rule's prefix.
    pub prefix: String,
    /// AF_INET or AF_INET6.
    pub family: u8,
    /// The first bytes of the packet, from its network header.
    pub packet: Vec<u8>,
    pub indev: Option<u32>,
    pub outdev: Option<u32>,
    /// The bridge port it came in through (br_netfilter).
    pub physindev: Option<u32>,
}

/// A socket bound to one nflog group.
pub(crate) struct Nflog {
    sock: Socket,
    buf: RecvBuf,
}

fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut a = u16::try_from(4 + value.len())
        .unwrap_or(u16::MAX)
        .to_ne_bytes()
        .to_vec();
    a.extend_from_slice(&ty.to_ne_bytes());
    a.extend_from_slice(value);
    a
}

/// `struct nfgenmsg`: family, version 0, the group in network order.
fn nfgen(family: u8, group: u16) -> [u8; 4] {
    let g = group.to_be_bytes();
    [family, 0, g[0], g[1]]
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

impl Nflog {
    /// Binds `group` in the calling thread's network namespace. Only one socket may bind a
    /// group: a second is refused, said as such.
    pub(crate) fn bind(group: u16) -> Result<Nflog> {
        let sock = netlink::socket(NETLINK_NETFILTER)
            .acks()
            .timeout(Duration::from_millis(250))
            .recv_buffer(1 << 20)
            .open("nflog")?;
        let mut me = Nflog {
            sock,
            buf: RecvBuf::take(),
        };
        let mut mode = COPY_RANGE.to_be_bytes().to_vec();
        mode.extend_from_slice(&[COPY_PACKET, 0]);
        let config = [
            attr(CFG_CMD, &[CMD_BIND]),
            attr(CFG_MODE, &mode),
            attr(CFG_TIMEOUT, &10u32.to_be_bytes()),
            attr(CFG_QTHRESH, &20u32.to_be_bytes()),
        ];
        for (seq, a) in (1u32..).zip(config) {
            // Another socket's group: EPERM (EBUSY binding one already bound); to root,
            // EPERM can mean nothing else.
            let root = nix::unistd::geteuid().is_root();
            me.request(seq, &a).map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) | Some(libc::EPERM) if root => anyhow!(
                    "nflog group {group} is taken: {} reads nsfw's drops (another `nsfw drops`, or ulogd); one reader serves every topology of the host (`nsfw drops --follow` without FILE follows them all)",
                    super::holder::describe(group)
                        .map_or_else(|| "another process".to_string(), |h| format!("another process ({h})"))
                ),
                _ => anyhow!("cannot bind nflog group {group}: {e}"),
            })?;
        }
        Ok(me)
    }

    /// Sends one config request and waits for its acknowledgement.
    fn request(&mut self, seq: u32, a: &[u8]) -> io::Result<()> {
        let msg = Request::new(MSG_CONFIG, libc::NLM_F_ACK as u16, seq)
            .push(&nfgen(
                libc::AF_UNSPEC as u8,
                crate::firewall::droplog::GROUP,
            ))
            .push(a)
            .finish();
        self.sock.send(&msg, 0)?;
        loop {
            let got = self.buf.recv(&self.sock)?;
            for m in netlink::messages(got).flatten() {
                if m.ty == NLMSG_ERROR && m.seq == seq {
                    return match m.code() {
                        0 => Ok(()),
                        c => Err(io::Error::from_raw_os_error(-c)),
                    };
                }
            }
        }
    }

    /// The packets of the next datagram, in `out`; none after 250 ms without one. Returns
    /// whether the kernel had to drop messages for want of room (ENOBUFS) since the last.
    pub(crate) fn next(&mut self, out: &mut Vec<Logged>) -> Result<bool> {
        let got = match self.buf.recv(&self.sock) {
            Ok(b) => b,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(true),
            Err(e) => bail!("reading nflog: {e}"),
        };
        let now = SystemTime::now();
        for m in netlink::messages(got).flatten() {
            if m.ty != MSG_PACKET {
                continue;
            }
            if let Some(l) = parse(m.payload(), now) {
                out.push(l);
            }
        }
        Ok(false)
    }
}

/// A packet message's payload (its `nfgenmsg`, then attributes).
fn parse(p: &[u8], time: SystemTime) -> Option<Logged> {
    let family = *p.first()?;
    let mut l = Logged {
        time,
        prefix: String::new(),
        family,
        packet: Vec::new(),
        indev: None,
        outdev: None,
        physindev: None,
    };
    for a in netlink::attrs(p.get(4..)?) {
        match a.ty {
            PREFIX => l.prefix = netlink::string_of(a.value),
            PAYLOAD => l.packet = a.value.to_vec(),
            IFINDEX_INDEV => l.indev = be32(a.value),
            IFINDEX_OUTDEV => l.outdev = be32(a.value),
            IFINDEX_PHYSINDEV => l.physindev = be32(a.value),
            _ => {}
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_message_gives_its_prefix_devices_and_bytes() {
        let mut p = nfgen(libc::AF_INET as u8, 28275).to_vec();
        for a in [
            attr(PREFIX, b"nsfw:lab policy\0"),
            attr(IFINDEX_INDEV, &7u32.to_be_bytes()),
            attr(PAYLOAD, &[0x45, 0, 0, 20]),
        ] {
            p.extend_from_slice(&a);
            p.resize(netlink::align(p.len()), 0);
        }
        let l = parse(&p, SystemTime::UNIX_EPOCH).expect("parsed");
        assert_eq!(l.prefix, "nsfw:lab policy");
        assert_eq!((l.family, l.indev, l.outdev), (2, Some(7), None));
        assert_eq!(l.packet, vec![0x45, 0, 0, 20]);
    }
}
