//! The nf_tables socket: sends a batch in one `sendmsg` and checks the acknowledgement of every
//! message in it; runs dump requests and hands each reply message to a parser.

use std::collections::BTreeMap;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendmsg,
    sendto, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::batch::Encoded;
use crate::ffi::{AlignedBuf, MsgBuf, NetlinkCapAck, Nlmsg, Payload};

/// How long to wait for the kernel's answer before calling it lost.
const TIMEOUT_SECS: libc::time_t = 5;
const RECV_BUF: usize = 1 << 20;

/// A netlink socket of the netfilter subsystems (NETLINK_NETFILTER), bound in the network
/// namespace of the thread that opened it.
pub struct NftSocket {
    fd: OwnedFd,
    buf: AlignedBuf,
    seq: u32,
    /// A batch was sent: the kernel's release of the socket may wait for its clean-up.
    batched: bool,
}

/// The error a failed call set, as the standard library words it.
fn os_error(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn errno_text(code: i32) -> String {
    let e = io::Error::from_raw_os_error(code);
    format!("{e} (errno {code})")
}

/// The error code of an NLMSG_ERROR message (0: an acknowledgement).
fn error_code(m: &Nlmsg<'_>) -> i32 {
    m.payload()
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(-libc::EPROTO)
}

/// The kernel's address (port 0).
fn kernel() -> NetlinkAddr {
    NetlinkAddr::new(0, 0)
}

/// What a reader makes of one answer, to a value or none.
type Answer<'a, T> = dyn FnMut(&Nlmsg<'_>) -> Result<Option<T>> + 'a;

/// How a request's answers are read into values.
type Parse<'a, T> = &'a dyn Fn(&Nlmsg<'_>) -> Result<Option<T>>;

/// The socket itself, to be looked at (`fstat`), not read or written past this type.
impl AsFd for NftSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl NftSocket {
    pub fn open() -> Result<NftSocket> {
        Self::open_with_groups(0)
    }

    /// A socket that also hears the multicast groups of the bitmask `groups` (bit N-1 for group
    /// N: `1 << (trace::NFNLGRP_NFTRACE - 1)` for the trace events).
    pub fn open_with_groups(groups: u32) -> Result<NftSocket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            // Not inherited by a program nsfw runs (CNI's IPAM plugin).
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .and_then(|fd| bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups)).map(|()| fd))
        .map_err(os_error)
        .context("cannot open an nf_tables netlink socket (are you root?)")?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(TIMEOUT_SECS, 0))
            .map_err(os_error)
            .context("nf_tables socket: SO_RCVTIMEO")?;
        // Room for every acknowledgement of a large batch: ENOBUFS would lose some. FORCE needs
        // CAP_NET_ADMIN, which nsfw has; the plain option is the fallback.
        if setsockopt(&fd, sockopt::RcvBufForce, &RECV_BUF).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &RECV_BUF);
        }
        // Errors carry only the header of the failed message, not its whole payload.
        let _ = setsockopt(&fd, NetlinkCapAck, &true);
        Ok(NftSocket {
            fd,
            buf: AlignedBuf::new(RECV_BUF.max(nftnl::nft_nlmsg_maxsize() as usize)),
            seq: 0x4e53_0000,
            batched: false,
        })
    }

    /// Closes the socket without waiting for the kernel's release. That release, after a
    /// commit, waits for the commit's clean-up (nf_tables flushes its destroy work on the
    /// close of any of its sockets: an RCU grace period, 5 to 20 ms, whatever the batch); a
    /// child process makes the last close and waits instead (`ffi::release`), reaped here on
    /// a thread of its own (a command that exits first leaves it to init). Without a child,
    /// the socket is closed here, and so is one that sent no batch (a DEL with nothing to
    /// remove, a run with nothing to do): no child for a wait that is rarely there. Whether a
    /// child closes it.
    pub fn close_detached(self) -> bool {
        if !self.batched {
            return false;
        }
        match crate::ffi::close_in_child(self.fd) {
            Ok(child) => {
                let pid = nix::unistd::Pid::from_raw(child.pid);
                // Freed once the child is reaped; never when no thread could be made to reap
                // it (the child may still run on it).
                let stack = std::mem::ManuallyDrop::new(child.stack);
                let _ = std::thread::Builder::new()
                    .name("nft-reap".into())
                    .spawn(move || {
                        // ECHILD: reaped by the kernel (a caller that ignores SIGCHLD), gone
                        // too. EINTR: a signal's handler ran on this thread; wait on.
                        let mut waited = nix::sys::wait::waitpid(pid, None);
                        while waited == Err(Errno::EINTR) {
                            waited = nix::sys::wait::waitpid(pid, None);
                        }
                        if matches!(waited, Ok(_) | Err(Errno::ECHILD)) {
                            drop(std::mem::ManuallyDrop::into_inner(stack));
                        }
                    });
                true
            }
            Err(fd) => {
                drop(fd);
                false
            }
        }
    }

    fn recv(&mut self) -> Result<usize> {
        match recv(self.fd.as_raw_fd(), self.buf.bytes_mut(), MsgFlags::empty()) {
            Ok(n) => Ok(n),
            Err(Errno::EAGAIN) => bail!("the kernel did not answer within {TIMEOUT_SECS}s"),
            Err(e) => Err(anyhow!("receiving from nf_tables: {}", os_error(e))),
        }
    }

    /// Sends bytes to the kernel in one `sendto`.
    fn send_bytes(&self, msg: &[u8]) -> io::Result<usize> {
        sendto(self.fd.as_raw_fd(), msg, &kernel(), MsgFlags::empty()).map_err(os_error)
    }

    /// Sends the batch in one `sendmsg` (the kernel takes a batch all or nothing only when it
    /// arrives whole) and checks the acknowledgement of every message in it. The first error
    /// names the object its message concerns.
    pub fn send(&mut self, enc: &Encoded) -> Result<()> {
        self.batched = true;
        let total = enc.buf.len();
        let snd = total + 4096;
        if setsockopt(&self.fd, sockopt::SndBufForce, &snd).is_err() {
            let _ = setsockopt(&self.fd, sockopt::SndBuf, &snd);
        }
        let sent = sendmsg(
            self.fd.as_raw_fd(),
            &[IoSlice::new(&enc.buf)],
            &[],
            MsgFlags::empty(),
            Some(&kernel()),
        )
        .map_err(|e| anyhow!("sending the nftables batch: {}", os_error(e)))?;
        if sent != total {
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
            for m in self.buf.messages(n) {
                if m.ty() != libc::NLMSG_ERROR as u16 {
                    continue;
                }
                let code = error_code(&m);
                let Some(i) = pending.remove(&m.seq()) else {
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

    /// Sends a dump request (its payload what `payload` writes) and collects the parsed
    /// replies. ENOENT (no such table or chain) is an empty answer.
    pub(crate) fn dump<T>(
        &mut self,
        msg_type: i32,
        family: u16,
        payload: Option<&dyn Payload>,
        parse: Parse<'_, T>,
        what: &str,
    ) -> Result<Vec<T>> {
        self.request(
            msg_type,
            family,
            libc::NLM_F_DUMP as u16,
            payload,
            parse,
            what,
        )
    }

    /// Sends a request that is not a dump (its answer, then an acknowledgement) and collects
    /// the parsed answer.
    pub(crate) fn get<T>(
        &mut self,
        msg_type: i32,
        family: u16,
        parse: Parse<'_, T>,
        what: &str,
    ) -> Result<Vec<T>> {
        self.request(msg_type, family, libc::NLM_F_ACK as u16, None, parse, what)
    }

    /// A request with `flags`; the answer ends with NLMSG_DONE (a dump) or an
    /// acknowledgement.
    fn request<T>(
        &mut self,
        msg_type: i32,
        family: u16,
        flags: u16,
        payload: Option<&dyn Payload>,
        parse: Parse<'_, T>,
        what: &str,
    ) -> Result<Vec<T>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = MsgBuf::new(4096);
        let data = req.build(msg_type as u16, family, flags, seq, payload);
        self.send_bytes(data)
            .with_context(|| format!("reading {what}"))?;
        // ENOENT: nothing of the kind is there (a table or chain that does not exist).
        self.answers(seq, what, true, &mut |m| parse(m))
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
            for m in self.buf.messages(n) {
                if m.seq() != seq {
                    continue;
                }
                if m.ty() == libc::NLMSG_DONE as u16 {
                    return Ok(out);
                }
                if m.ty() == libc::NLMSG_ERROR as u16 {
                    let code = error_code(&m);
                    if code == 0 {
                        return Ok(out);
                    }
                    if enoent_is_empty && code == -libc::ENOENT {
                        return Ok(Vec::new());
                    }
                    bail!("reading {what}: {}", errno_text(-code));
                }
                if let Some(t) = each(&m)? {
                    out.push(t);
                }
            }
        }
    }

    /// The messages that arrive within `wait` (a group's notifications), each as its type and
    /// the bytes after its `nlmsghdr`; none when nothing came. ENOBUFS (the kernel dropped
    /// some, the socket being full) is an error: what was heard is not the whole story.
    pub fn events(&mut self, wait: std::time::Duration) -> Result<Vec<(u16, Vec<u8>)>> {
        let tv = TimeVal::new(
            wait.as_secs() as libc::time_t,
            wait.subsec_micros() as libc::suseconds_t,
        );
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)
            .map_err(os_error)
            .context("nf_tables socket: SO_RCVTIMEO")?;
        let got = recv(self.fd.as_raw_fd(), self.buf.bytes_mut(), MsgFlags::empty());
        let n = match got {
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Ok(Vec::new()),
            Err(Errno::ENOBUFS) => bail!("the kernel dropped notifications (socket full)"),
            Err(e) => return Err(anyhow!("receiving from nf_tables: {}", os_error(e))),
        };
        Ok(self
            .buf
            .messages(n)
            .iter()
            .map(|m| (m.ty(), m.payload().to_vec()))
            .collect())
    }

    /// A fresh sequence number for a message built by hand.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one dump request built by hand (another netfilter subsystem than nf_tables:
    /// ctnetlink) and returns each answer's bytes after its `nlmsghdr`.
    pub fn dump_raw(&mut self, msg: &[u8], seq: u32, what: &str) -> Result<Vec<Vec<u8>>> {
        self.send_bytes(msg)
            .with_context(|| format!("reading {what}"))?;
        self.answers(seq, what, false, &mut |m| Ok(Some(m.payload().to_vec())))
    }

    /// Sends messages built by hand, each asking for an acknowledgement, in one `sendmsg`, and
    /// returns the error code of each (0: done), by sequence number, once every one is in.
    pub fn send_acked(
        &mut self,
        msgs: &[u8],
        seqs: &[u32],
        what: &str,
    ) -> Result<BTreeMap<u32, i32>> {
        self.send_bytes(msgs)
            .with_context(|| format!("sending {what}"))?;
        let mut got = BTreeMap::new();
        while got.len() < seqs.len() {
            let n = self.recv().with_context(|| format!("sending {what}"))?;
            for m in self.buf.messages(n) {
                if m.ty() == libc::NLMSG_ERROR as u16 && seqs.contains(&m.seq()) {
                    got.insert(m.seq(), -error_code(&m));
                }
            }
        }
        Ok(got)
    }
}
