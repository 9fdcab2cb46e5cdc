//! Netlink as nsfw reads and writes it by hand, written once: the sockets (one builder for
//! rtnetlink, sock_diag and the notification groups), the receive buffer, the framing of
//! messages in a datagram and of attributes in a message (every length padded to 4 bytes),
//! and requests built from parts. What a message means is its reader's business (`plumbing`,
//! `watch`, `firewall::conntrack`); nothing here knows one family from another.
//!
//! A netlink socket belongs to the network namespace of the thread that opened it, for as
//! long as it lives, whichever thread uses it later: a socket for a namespace is opened on a
//! thread that has entered it.

use std::cell::RefCell;
use std::io;
use std::time::Duration;

use anyhow::{Context, Result};
pub(crate) use netlink_sys::Socket;
pub(crate) use netlink_sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE, NETLINK_SOCK_DIAG};

/// The length of `struct nlmsghdr`.
pub(crate) const HDR: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
/// An attribute's type without its nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A length padded to netlink's 4-byte alignment (NLMSG_ALIGN, NLA_ALIGN).
pub(crate) const fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The first four bytes of an attribute's payload, in host order.
pub(crate) fn u32_of(b: &[u8]) -> Option<u32> {
    u32_at(b, 0)
}

/// A string attribute: its bytes up to the first NUL.
pub(crate) fn string_of(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One message of a datagram, header fields read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

impl<'a> Msg<'a> {
    /// What follows the header.
    pub(crate) fn payload(&self) -> &'a [u8] {
        &self.bytes[HDR..]
    }

    /// The error code of an NLMSG_ERROR or NLMSG_DONE message (0: an acknowledgement, or a
    /// dump's end; negative: an errno); 0 when the message is too short to carry one.
    pub(crate) fn code(&self) -> i32 {
        u32_at(self.bytes, HDR).map_or(0, |c| c as i32)
    }
}

/// A message whose length is shorter than its header or runs past the datagram.
#[derive(Debug)]
pub(crate) struct Malformed;

/// The messages of one datagram, in order. A malformed one is yielded as an error and ends
/// the walk (what follows it cannot be found).
pub(crate) fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Msg<'_>, Malformed>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + HDR > buf.len() {
            return None;
        }
        let len = u32_at(buf, off)? as usize;
        if len < HDR || off + len > buf.len() {
            off = buf.len();
            return Some(Err(Malformed));
        }
        let bytes = &buf[off..off + len];
        off += align(len);
        Some(Ok(Msg {
            ty: u16_at(bytes, 4)?,
            flags: u16_at(bytes, 6)?,
            seq: u32_at(bytes, 8)?,
            bytes,
        }))
    })
}

/// One attribute.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attr<'a> {
    /// Its type, without the nested and byte-order flags.
    pub ty: u16,
    /// Its payload.
    pub value: &'a [u8],
    /// The whole attribute, header included (to send it back as it came).
    pub whole: &'a [u8],
}

/// The attributes of `buf`, in order; the walk ends at one whose length is shorter than its
/// header or runs past `buf`.
pub(crate) fn attrs(buf: &[u8]) -> impl Iterator<Item = Attr<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(buf, off)?);
        let ty = u16_at(buf, off + 2)? & NLA_TYPE_MASK;
        if len < 4 {
            return None;
        }
        let whole = buf.get(off..off + len)?;
        off += align(len);
        Some(Attr {
            ty,
            value: &whole[4..],
            whole,
        })
    })
}

/// The payload of the first attribute of type `ty` in `buf`.
pub(crate) fn find(buf: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(buf).find(|a| a.ty == ty).map(|a| a.value)
}

/// A request built by hand: the header, then parts each padded to 4 bytes.
pub(crate) struct Request {
    bytes: Vec<u8>,
}

impl Request {
    /// A message of type `ty` with NLM_F_REQUEST and `flags`, under sequence number `seq`.
    pub(crate) fn new(ty: u16, flags: u16, seq: u32) -> Request {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // the length, at the end
        bytes.extend_from_slice(&ty.to_ne_bytes());
        bytes.extend_from_slice(&(libc::NLM_F_REQUEST as u16 | flags).to_ne_bytes());
        bytes.extend_from_slice(&seq.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        Request { bytes }
    }

    /// Appends `part` (a family header, a whole attribute), padded.
    pub(crate) fn push(mut self, part: &[u8]) -> Request {
        self.bytes.extend_from_slice(part);
        self.bytes.resize(align(self.bytes.len()), 0);
        self
    }

    /// The message, its length filled in.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = (self.bytes.len() as u32).to_ne_bytes();
        self.bytes[..4].copy_from_slice(&len);
        self.bytes
    }
}

/// How a socket is set up; [`open`] makes one.
#[derive(Clone, Debug)]
pub(crate) struct Opts {
    protocol: isize,
    acks: bool,
    strict: bool,
    timeout: Option<Duration>,
    recv_buffer: Option<usize>,
    groups: &'static [u32],
    nonblocking: bool,
}

/// A socket of `protocol` (NETLINK_ROUTE, ...), set up by the methods of [`Opts`].
pub(crate) fn socket(protocol: isize) -> Opts {
    Opts {
        protocol,
        acks: false,
        strict: false,
        timeout: None,
        recv_buffer: None,
        groups: &[],
        nonblocking: false,
    }
}

impl Opts {
    /// Errors carry only the header of the failed request (NETLINK_CAP_ACK), and a message
    /// when the kernel has one to give (NETLINK_EXT_ACK).
    pub(crate) fn acks(mut self) -> Opts {
        self.acks = true;
        self
    }

    /// Dump requests are checked strictly, and their filters (a route table) honoured
    /// (NETLINK_GET_STRICT_CHK).
    pub(crate) fn strict(mut self) -> Opts {
        self.strict = true;
        self
    }

    /// A receive that waits longer than `d` fails (SO_RCVTIMEO): a lost answer is an error,
    /// not a run that waits for ever.
    pub(crate) fn timeout(mut self, d: Duration) -> Opts {
        self.timeout = Some(d);
        self
    }

    /// The socket's receive buffer in the kernel (SO_RCVBUF): room for a burst.
    pub(crate) fn recv_buffer(mut self, bytes: usize) -> Opts {
        self.recv_buffer = Some(bytes);
        self
    }

    /// Bound, subscribed to these multicast groups, and non-blocking.
    pub(crate) fn groups(mut self, groups: &'static [u32]) -> Opts {
        self.groups = groups;
        self.nonblocking = true;
        self
    }

    /// The socket, in the calling thread's network namespace; errors name `place`. Options
    /// that only make things better (acks, strictness, buffer size, timeout) are asked for
    /// and not insisted on: an older kernel without one still works.
    pub(crate) fn open(self, place: &str) -> Result<Socket> {
        let mut sock = Socket::new(self.protocol)
            .with_context(|| format!("cannot open a netlink socket ({place})"))?;
        if self.acks {
            let _ = sock.set_cap_ack(true);
            let _ = sock.set_ext_ack(true);
        }
        if let Some(n) = self.recv_buffer {
            let _ = sock.set_rx_buf_sz(n);
        }
        if let Some(d) = self.timeout {
            let _ = socket2::SockRef::from(&sock).set_read_timeout(Some(d));
        }
        if self.strict {
            let _ = sock.set_netlink_get_strict_chk(true);
        }
        if !self.groups.is_empty() {
            sock.bind_auto()
                .with_context(|| format!("cannot bind a netlink socket ({place})"))?;
            for g in self.groups {
                sock.add_membership(*g)
                    .with_context(|| format!("cannot join netlink group {g} ({place})"))?;
            }
        }
        if self.nonblocking {
            sock.set_non_blocking(true)
                .with_context(|| format!("cannot make a netlink socket non-blocking ({place})"))?;
        }
        Ok(sock)
    }
}

/// Room for one datagram from the kernel: a dump's batch (at most 32 KiB) or the
/// acknowledgements of one send.
pub(crate) const RECV_BUF: usize = 64 * 1024;

/// The bytes of a receive buffer, aligned as `struct nlmsghdr` is.
#[repr(C, align(8))]
struct Block([u8; RECV_BUF]);

thread_local! {
    /// Buffers given back on this thread: a worker visits namespace after namespace, each
    /// with a socket and a buffer of its own, and zeroing 64 KiB per visit would cost more
    /// than the visit's dumps.
    static POOL: RefCell<Vec<Box<Block>>> = const { RefCell::new(Vec::new()) };
}

/// A receive buffer of [`RECV_BUF`] bytes, taken from the thread's pool and given back to it
/// when dropped.
pub(crate) struct RecvBuf(Option<Box<Block>>);

impl RecvBuf {
    pub(crate) fn take() -> RecvBuf {
        let b = POOL.with(|p| p.borrow_mut().pop());
        RecvBuf(Some(b.unwrap_or_else(|| Box::new(Block([0; RECV_BUF])))))
    }

    fn bytes(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Some(b) => &mut b.0,
            None => &mut [],
        }
    }

    /// Receives one datagram from `sock`: its bytes.
    pub(crate) fn recv(&mut self, sock: &Socket) -> io::Result<&[u8]> {
        let buf = self.bytes();
        let n = sock.recv(&mut &mut buf[..], 0)?.min(buf.len());
        Ok(&buf[..n])
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            POOL.with(|p| p.borrow_mut().push(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align(a.len()), 0);
        a
    }

    #[test]
    fn messages_and_attributes_are_framed_by_padded_lengths() {
        let mut one = Request::new(20, 0x300, 7)
            .push(&[1, 2, 3]) // a 3-byte family header, padded
            .push(&attr(0x8000 | 5, b"eth0\0"))
            .push(&attr(2, &9u32.to_ne_bytes()))
            .finish();
        assert_eq!(one.len(), HDR + 4 + 12 + 8);
        let two = Request::new(NLMSG_DONE, 0, 8).finish();
        one.extend_from_slice(&two);
        let got: Vec<Msg> = messages(&one).map(|m| m.expect("well formed")).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].ty, got[0].flags, got[0].seq), (20, 0x301, 7));
        assert_eq!((got[1].ty, got[1].seq, got[1].code()), (NLMSG_DONE, 8, 0));
        let a: Vec<Attr> = attrs(&got[0].payload()[4..]).collect();
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].ty, string_of(a[0].value)), (5, "eth0".to_string()));
        assert_eq!(a[0].whole.len(), 9);
        assert_eq!(u32_of(a[1].value), Some(9));
        assert_eq!(
            find(&got[0].payload()[4..], 2),
            Some(&9u32.to_ne_bytes()[..])
        );
    }

    #[test]
    fn a_malformed_length_ends_the_walk() {
        let mut b = Request::new(20, 0, 1).finish();
        b[0] = 200; // longer than the datagram
        let got: Vec<_> = messages(&b).collect();
        assert!(matches!(got[..], [Err(Malformed)]));
        // An attribute shorter than its header, or longer than what is left.
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
        assert_eq!(attrs(&[9, 0, 1, 0, 0, 0, 0, 0]).count(), 0);
    }
}
