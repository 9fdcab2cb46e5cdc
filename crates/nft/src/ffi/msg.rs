//! Netlink messages: the aligned buffer they are received in and read from ([`Nlmsg`]), the
//! buffer libnftnl builds them in ([`MsgBuf`]), and the one socket option nix does not name.

use libc::nlmsghdr;
use nftnl::nftnl_sys as sys;
use nix::{setsockopt_impl, sockopt_impl};

sockopt_impl!(
    /// NETLINK_CAP_ACK: an error acknowledgement carries the failed message's header only,
    /// not its whole payload. nix's macro writes the `setsockopt` call, as for its own
    /// options.
    NetlinkCapAck,
    SetOnly,
    libc::SOL_NETLINK,
    libc::NETLINK_CAP_ACK,
    bool
);

const HDR: usize = std::mem::size_of::<nlmsghdr>();
/// A header and nfgenmsg, as `nftnl_nlmsg_build_hdr` and the batch frames write them.
const HDR_GEN: usize = HDR + 4;

/// A buffer aligned for `nlmsghdr` (a `Vec<u8>` promises only byte alignment), of `len`
/// initialised bytes.
pub(crate) struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    pub(crate) fn new(bytes: usize) -> AlignedBuf {
        AlignedBuf {
            words: vec![0u64; bytes.div_ceil(8)],
            len: bytes,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the Vec<u64> holds at least `len` initialised bytes; u8 has no alignment.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.len) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in bytes(); the slice borrows the buffer mutably.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
    }

    /// The whole messages in the first `n` bytes (say, what one `recv` got), in order; a
    /// message whose length runs past them ends the list.
    pub(crate) fn messages(&self, n: usize) -> Vec<Nlmsg<'_>> {
        let buf = &self.bytes()[..n.min(self.len)];
        let mut out = Vec::new();
        let mut off = 0;
        while off + HDR <= buf.len() {
            let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]);
            let len = len as usize;
            if len < HDR || off + len > buf.len() {
                break;
            }
            // Every offset is a multiple of 4 from an 8-aligned start: the header is aligned.
            out.push(Nlmsg {
                bytes: &buf[off..off + len],
            });
            off += (len + 3) & !3;
        }
        out
    }
}

/// One whole netlink message in an aligned buffer: its header and payload.
#[derive(Clone, Copy)]
pub(crate) struct Nlmsg<'a> {
    bytes: &'a [u8],
}

impl Nlmsg<'_> {
    fn u16_at(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self.bytes[at], self.bytes[at + 1]])
    }
    /// nlmsg_type
    pub(crate) fn ty(&self) -> u16 {
        self.u16_at(4)
    }
    /// nlmsg_seq
    pub(crate) fn seq(&self) -> u32 {
        let b = &self.bytes[8..12];
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }
    /// The bytes after the header.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.bytes[HDR..]
    }
    /// The header, for libnftnl's parsers: aligned, and `nlmsg_len` bytes are readable
    /// behind it.
    pub(super) fn header(&self) -> *const nlmsghdr {
        self.bytes.as_ptr().cast()
    }
}

/// An object libnftnl writes as a message's payload.
pub(crate) trait Payload {
    /// At least the bytes it writes.
    fn bound(&self) -> usize;
    /// Writes the payload after the header.
    ///
    /// # Safety
    /// `nlh` is a header libnftnl wrote, followed by `bound()` bytes of room.
    unsafe fn write(&self, nlh: *mut nlmsghdr);
}

/// The buffer messages are built in, one at a time, grown to what each needs.
pub(crate) struct MsgBuf(AlignedBuf);

impl MsgBuf {
    pub(crate) fn new(bytes: usize) -> MsgBuf {
        MsgBuf(AlignedBuf::new(bytes))
    }

    fn room(&mut self, bytes: usize) {
        if self.0.len < bytes {
            self.0 = AlignedBuf::new(bytes);
        }
    }

    /// The bytes of the message libnftnl wrote at the start of the buffer.
    fn written(&self) -> &[u8] {
        let b = self.0.bytes();
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        &b[..len.min(b.len())]
    }

    /// One nf_tables message: its header (type, flags, sequence number; nfgenmsg with the
    /// family), then what `payload` writes. Returns the message's bytes.
    pub(crate) fn build(
        &mut self,
        ty: u16,
        family: u16,
        flags: u16,
        seq: u32,
        payload: Option<&dyn Payload>,
    ) -> &[u8] {
        self.room(HDR_GEN + payload.map_or(0, |p| p.bound()));
        let buf = self.0.words.as_mut_ptr().cast();
        // SAFETY: the buffer is aligned and holds the header, nfgenmsg and the payload's
        // bound; libnftnl writes the header, then the payload's attributes after it.
        unsafe {
            let h = sys::nftnl_nlmsg_build_hdr(buf, ty, family, flags, seq);
            if let Some(p) = payload {
                p.write(h);
            }
        }
        self.written()
    }

    /// A batch's BATCH_BEGIN (`begin`) or BATCH_END message.
    pub(crate) fn batch(&mut self, begin: bool, seq: u32) -> &[u8] {
        self.room(HDR_GEN);
        let buf = self.0.words.as_mut_ptr().cast();
        // SAFETY: the buffer is aligned and holds a header and nfgenmsg, all libnftnl writes.
        unsafe {
            if begin {
                sys::nftnl_batch_begin(buf, seq);
            } else {
                sys::nftnl_batch_end(buf, seq);
            }
        }
        self.written()
    }
}
