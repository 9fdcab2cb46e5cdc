//! The nf_tables socket: sends a batch in one `sendmsg` and checks the acknowledgement of every
//! message in it; runs dump requests and hands each reply message to a parser.

use std::collections::BTreeMap;
use std::io;

use anyhow::{Context, Result, anyhow, bail};
use nftnl::nftnl_sys as sys;

use super::batch::Encoded;

/// A receive buffer aligned for `nlmsghdr` (a `Vec<u8>` promises only byte alignment).
pub struct AlignedBuf(Vec<u64>, usize);

impl AlignedBuf {
    pub fn new(bytes: usize) -> AlignedBuf {
        AlignedBuf(vec![0u64; bytes.div_ceil(8)], bytes)
    }
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr().cast()
    }
    pub fn as_ptr(&self) -> *const u8 {
        self.0.as_ptr().cast()
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the Vec<u64> owns at least `self.1` initialised bytes.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.1) }
    }
}

/// How long to wait for the kernel's answer before calling it lost.
const TIMEOUT_SECS: libc::time_t = 5;
const RECV_BUF: usize = 1 << 20;

pub struct NftSocket {
    sock: mnl::Socket,
    buf: AlignedBuf,
    seq: u32,
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn errno_text(code: i32) -> String {
    let e = io::Error::from_raw_os_error(code);
    format!("{e} (errno {code})")
}

/// One message of a receive buffer: (type, flags, seq, payload).
fn messages(buf: &[u8]) -> Vec<(u16, u32, *const libc::nlmsghdr, &[u8])> {
    let mut out = Vec::new();
    let hdr_len = std::mem::size_of::<libc::nlmsghdr>();
    let mut off = 0;
    while off + hdr_len <= buf.len() {
        // SAFETY: at least a header's worth of bytes remain; the buffer is 4-byte aligned and
        // every message length is rounded up to 4.
        let h = unsafe { &*(buf.as_ptr().add(off).cast::<libc::nlmsghdr>()) };
        let len = h.nlmsg_len as usize;
        if len < hdr_len || off + len > buf.len() {
            break;
        }
        out.push((
            h.nlmsg_type,
            h.nlmsg_seq,
            h as *const _,
            &buf[off + hdr_len..off + len],
        ));
        off += (len + 3) & !3;
    }
    out
}

/// What a reader makes of one answer: its header and the bytes after it, to a value or none.
type Answer<'a, T> = dyn FnMut(*const libc::nlmsghdr, &[u8]) -> Result<Option<T>> + 'a;

impl NftSocket {
    pub fn open() -> Result<NftSocket> {
        let sock = mnl::Socket::new(mnl::Bus::Netfilter)
            .context("cannot open an nf_tables netlink socket (are you root?)")?;
        // SAFETY: the mnl socket is open.
        let fd = unsafe { mnl::mnl_sys::mnl_socket_get_fd(sock.as_raw_socket()) };
        let tv = libc::timeval {
            tv_sec: TIMEOUT_SECS,
            tv_usec: 0,
        };
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
            .context("nf_tables socket: SO_RCVTIMEO")?;
        // Room for every acknowledgement of a large batch: ENOBUFS would lose some. FORCE needs
        // CAP_NET_ADMIN, which nsfw has; the plain option is the fallback.
        let sz = RECV_BUF as libc::c_int;
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &sz).is_err() {
            let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &sz);
        }
        // Errors carry only the header of the failed message, not its whole payload.
        let one: libc::c_int = 1;
        let _ = setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, &one);
        Ok(NftSocket {
            sock,
            buf: AlignedBuf::new(RECV_BUF.max(nftnl::nft_nlmsg_maxsize() as usize)),
            seq: 0x4e53_0000,
        })
    }

    fn fd(&self) -> i32 {
        // SAFETY: the mnl socket is open for as long as self lives.
        unsafe { mnl::mnl_sys::mnl_socket_get_fd(self.sock.as_raw_socket()) }
    }

    fn recv(&mut self) -> Result<usize> {
        let fd = self.fd();
        let buf = self.buf.bytes_mut();
        // SAFETY: recv into our own aligned buffer of the given size.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                bail!("the kernel did not answer within {TIMEOUT_SECS}s");
            }
            return Err(anyhow!("receiving from nf_tables: {e}"));
        }
        Ok(n as usize)
    }

    /// Sends the batch in one `sendmsg` (the kernel takes a batch all or nothing only when it
    /// arrives whole) and checks the acknowledgement of every message in it. The first error
    /// names the object its message concerns.
    pub fn send(&mut self, enc: &Encoded) -> Result<()> {
        let mut iov = [libc::iovec {
            iov_base: enc.buf.as_ptr() as *mut _,
            iov_len: enc.buf.len(),
        }];
        let total = enc.buf.len();
        let fd = self.fd();
        let snd = (total + 4096) as libc::c_int;
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &snd).is_err() {
            let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &snd);
        }
        // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msghdr points at live iovecs and address for the duration of the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        // SAFETY: as above.
        let sent = unsafe { libc::sendmsg(fd, &msg, 0) };
        if sent < 0 {
            return Err(anyhow!(
                "sending the nftables batch: {}",
                io::Error::last_os_error()
            ));
        }
        if sent as usize != total {
            bail!("sending the nftables batch: only {sent} of {total} bytes went out");
        }

        // Every message in the batch asked for an acknowledgement: wait for all of them.
        let mut pending: BTreeMap<u32, usize> =
            enc.seqs.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        let mut first_err: Option<String> = None;
        while !pending.is_empty() {
            let n = match self.recv() {
                Ok(n) => n,
                Err(e) if first_err.is_some() => {
                    // The kernel stops answering once the batch is aborted; the error we hold
                    // is the one that matters.
                    let _ = e;
                    break;
                }
                Err(e) => return Err(e),
            };
            let buf = &self.buf.bytes_mut()[..n];
            for (ty, seq, _, payload) in messages(buf) {
                if ty != libc::NLMSG_ERROR as u16 {
                    continue;
                }
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(-libc::EPROTO);
                let Some(i) = pending.remove(&seq) else {
                    continue;
                };
                if code != 0 && first_err.is_none() {
                    let what = enc
                        .what
                        .get(i)
                        .map(String::as_str)
                        .unwrap_or("a batch message");
                    first_err = Some(format!(
                        "the kernel rejected the nftables batch at {what}: {}",
                        errno_text(-code)
                    ));
                }
            }
        }
        match first_err {
            Some(e) => Err(anyhow!("{e}; nothing in the batch was applied")),
            None => Ok(()),
        }
    }

    /// Sends a dump request and collects the parsed replies. ENOENT (no such table or chain)
    /// is an empty answer.
    pub fn dump<T>(
        &mut self,
        msg_type: i32,
        family: u16,
        build: &dyn Fn(*mut libc::nlmsghdr),
        parse: &dyn Fn(*const libc::nlmsghdr) -> Result<Option<T>>,
        what: &str,
    ) -> Result<Vec<T>> {
        self.request(
            msg_type,
            family,
            libc::NLM_F_DUMP as u16,
            build,
            parse,
            what,
        )
    }

    /// Sends a request that is not a dump (its answer, then an acknowledgement) and collects
    /// the parsed answer.
    pub fn get<T>(
        &mut self,
        msg_type: i32,
        family: u16,
        parse: &dyn Fn(*const libc::nlmsghdr) -> Result<Option<T>>,
        what: &str,
    ) -> Result<Vec<T>> {
        self.request(
            msg_type,
            family,
            libc::NLM_F_ACK as u16,
            &|_| {},
            parse,
            what,
        )
    }

    /// A request with `flags`; the answer ends with NLMSG_DONE (a dump) or an
    /// acknowledgement.
    fn request<T>(
        &mut self,
        msg_type: i32,
        family: u16,
        flags: u16,
        build: &dyn Fn(*mut libc::nlmsghdr),
        parse: &dyn Fn(*const libc::nlmsghdr) -> Result<Option<T>>,
        what: &str,
    ) -> Result<Vec<T>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = AlignedBuf::new(4096);
        // SAFETY: the request buffer is large enough for a header and a name or two.
        let len = unsafe {
            let h = sys::nftnl_nlmsg_build_hdr(
                req.as_mut_ptr().cast(),
                msg_type as u16,
                family,
                flags,
                seq,
            );
            build(h.cast());
            (*h).nlmsg_len as usize
        };
        let data = &req.bytes_mut()[..len];
        self.sock
            .send(data)
            .with_context(|| format!("reading {what}"))?;
        // ENOENT: nothing of the kind is there (a table or chain that does not exist).
        self.answers(seq, what, true, &mut |h, _| parse(h))
    }

    /// Reads the answers to request `seq` up to NLMSG_DONE or its acknowledgement, each one
    /// handed to `each` (its header and the bytes after it). An error ends the reading,
    /// except ENOENT when `enoent_is_empty`, which answers nothing.
    fn answers<T>(
        &mut self,
        seq: u32,
        what: &str,
        enoent_is_empty: bool,
        each: &mut Answer<'_, T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let n = self.recv().with_context(|| format!("reading {what}"))?;
            let buf = &self.buf.bytes_mut()[..n];
            for (ty, mseq, h, payload) in messages(buf) {
                if mseq != seq {
                    continue;
                }
                if ty == libc::NLMSG_DONE as u16 {
                    return Ok(out);
                }
                if ty == libc::NLMSG_ERROR as u16 {
                    let code = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(-libc::EPROTO);
                    if code == 0 {
                        return Ok(out);
                    }
                    if enoent_is_empty && code == -libc::ENOENT {
                        return Ok(Vec::new());
                    }
                    bail!("reading {what}: {}", errno_text(-code));
                }
                if let Some(t) = each(h, payload)? {
                    out.push(t);
                }
            }
        }
    }

    /// A fresh sequence number for a message built by hand.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one dump request built by hand (another netfilter subsystem than nf_tables:
    /// ctnetlink) and returns each answer's bytes after its `nlmsghdr`.
    pub fn dump_raw(&mut self, msg: &[u8], seq: u32, what: &str) -> Result<Vec<Vec<u8>>> {
        self.sock
            .send(msg)
            .with_context(|| format!("reading {what}"))?;
        self.answers(seq, what, false, &mut |_, payload| {
            Ok(Some(payload.to_vec()))
        })
    }

    /// Sends messages built by hand, each asking for an acknowledgement, in one `sendmsg`, and
    /// returns the error code of each (0: done), by sequence number, once every one is in.
    pub fn send_acked(
        &mut self,
        msgs: &[u8],
        seqs: &[u32],
        what: &str,
    ) -> Result<BTreeMap<u32, i32>> {
        self.sock
            .send(msgs)
            .with_context(|| format!("sending {what}"))?;
        let mut got = BTreeMap::new();
        while got.len() < seqs.len() {
            let n = self.recv().with_context(|| format!("sending {what}"))?;
            let buf = &self.buf.bytes_mut()[..n];
            for (ty, mseq, _, payload) in messages(buf) {
                if ty == libc::NLMSG_ERROR as u16 && seqs.contains(&mseq) {
                    let code = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(-libc::EPROTO);
                    got.insert(mseq, -code);
                }
            }
        }
        Ok(got)
    }
}
