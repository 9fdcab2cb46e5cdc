//! A blocking rtnetlink connection bound to one network namespace: dumps, and requests sent
//! many to a `sendmsg` with every acknowledgement checked and every error carried with the
//! object its request concerns (and the kernel's extended-ack message when it gives one).
//!
//! The socket belongs to the namespace of the thread that opened it, for as long as it lives,
//! wherever it is used from; nsfw opens one per namespace visit and closes it after, so the
//! number of open descriptors does not grow with the number of namespaces.

use anyhow::{Context, Result, anyhow, bail};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Requests go out in sends of about this many bytes: the kernel handles every message of a
/// send before `sendmsg` returns, so the acknowledgements of one send fit the receive buffer.
const SEND_CHUNK: usize = 32 * 1024;
/// Room for one datagram from the kernel: a dump's batch (at most 32 KiB) or the
/// acknowledgements of one send. A connection is opened per namespace visit, so this is not
/// the megabyte the nftables socket keeps.
const RECV_BUF: usize = 64 * 1024;
/// The socket's receive buffer in the kernel.
const SOCK_BUF: usize = 1 << 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// One request: the message, its extra header flags (create, replace, ...), what it
/// concerns (for the error), and the errors that mean "already so".
#[derive(Clone)]
pub struct Req {
    pub msg: RouteNetlinkMessage,
    pub flags: u16,
    pub what: String,
    pub ok: &'static [i32],
}

impl Req {
    pub fn new(msg: RouteNetlinkMessage, flags: u16, what: impl Into<String>) -> Req {
        Req {
            msg,
            flags,
            what: what.into(),
            ok: &[],
        }
    }

    /// Treats these errno values (positive) as success: deleting what is already gone.
    pub fn ok_if(mut self, codes: &'static [i32]) -> Req {
        self.ok = codes;
        self
    }
}

pub struct Conn {
    sock: Socket,
    seq: u32,
    /// "host" or "namespace NAME": how errors name where they happened.
    place: String,
    buf: Vec<u64>,
}

thread_local! {
    /// Receive buffers of connections this thread has closed: a worker visits namespace after
    /// namespace, and zeroing 64 KiB per visit would cost more than the visit's dumps.
    static BUFS: std::cell::RefCell<Vec<Vec<u64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn take_buf() -> Vec<u64> {
    BUFS.with(|b| b.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u64; RECV_BUF / 8])
}

impl Drop for Conn {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.len() == RECV_BUF / 8 {
            BUFS.with(|b| b.borrow_mut().push(buf));
        }
    }
}

fn errno_text(code: i32) -> String {
    std::io::Error::from_raw_os_error(code).to_string()
}

impl Conn {
    /// A connection in the calling thread's network namespace.
    pub fn open(place: impl Into<String>) -> Result<Conn> {
        let place = place.into();
        let sock = Socket::new(NETLINK_ROUTE)
            .with_context(|| format!("cannot open a netlink socket ({place})"))?;
        Conn::from_socket(sock, place)
    }

    pub fn from_socket(sock: Socket, place: String) -> Result<Conn> {
        // Errors carry only the header of the failed request, and a message when the kernel
        // has one to give.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        // Room in the socket for the acknowledgements of a whole send (each costs the kernel
        // far more than its 36 bytes): the default would drop some.
        let _ = sock.set_rx_buf_sz(SOCK_BUF);
        // A lost answer is an error, not a run that waits for ever.
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        // SAFETY: setsockopt on our own socket with a live timeval of the size given.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        // Dump requests are checked strictly, and their filters (a route table) honoured.
        let _ = sock.set_netlink_get_strict_chk(true);
        Ok(Conn {
            sock,
            seq: 0,
            place,
            buf: take_buf(),
        })
    }

    pub fn place(&self) -> &str {
        &self.place
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn recv(&mut self) -> Result<usize> {
        // SAFETY: the Vec<u64> backs this many initialised bytes, aligned for nlmsghdr.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<u8>(), self.buf.len() * 8)
        };
        let n = self
            .sock
            .recv(&mut &mut bytes[..], 0)
            .with_context(|| format!("receiving from rtnetlink ({})", self.place))?;
        Ok(n)
    }

    fn bytes(&self, n: usize) -> &[u8] {
        // SAFETY: as in recv; n ≤ the buffer's length.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), n) }
    }

    /// Sends a dump request and collects every message of the answer.
    pub fn dump(
        &mut self,
        req: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut found = Vec::new();
        self.dump_raw(req, what, &mut |bytes| {
            if let NetlinkPayload::InnerMessage(inner) =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|e| anyhow!("{e}"))?
                    .payload
            {
                found.push(inner);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Sends a dump request and hands each message of the answer (header included, the
    /// dump's end and errors taken care of here) to `each`, which parses what it needs.
    pub fn dump_raw(
        &mut self,
        req: RouteNetlinkMessage,
        what: &str,
        each: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let place = self.place.clone();
        let ctx = || format!("cannot list {what} ({place})");
        let seq = self
            .send_one(req, NLM_F_REQUEST | NLM_F_DUMP)
            .with_context(ctx)?;
        loop {
            let n = self.recv().with_context(ctx)?;
            let mut off = 0;
            while off + 16 <= n {
                let bytes = self.bytes(n);
                let word = |at: usize| {
                    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                };
                let len = word(off) as usize;
                if len < 16 || off + len > n {
                    bail!("{}: a malformed netlink message", ctx());
                }
                let ty = u16::from_ne_bytes([bytes[off + 4], bytes[off + 5]]);
                let msg_seq = word(off + 8);
                let msg = &bytes[off..off + len];
                off += (len + 3) & !3;
                if msg_seq != seq {
                    continue;
                }
                // NLMSG_DONE and NLMSG_ERROR carry a code; a refused dump ends with it.
                if ty == NLMSG_DONE || ty == NLMSG_ERROR {
                    let code = if msg.len() >= 20 {
                        i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]])
                    } else {
                        0
                    };
                    if code < 0 {
                        bail!("{}: {}", ctx(), errno_text(-code));
                    }
                    return Ok(());
                }
                each(msg).with_context(ctx)?;
            }
        }
    }

    /// Sends one request with `flags`, under a fresh sequence number, which it returns.
    fn send_one(&mut self, req: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        let seq = self.next_seq();
        let mut msg = NetlinkMessage::from(req);
        msg.header.flags = flags;
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.sock.send_to(&out, &SocketAddr::new(0, 0), 0)?;
        Ok(seq)
    }

    /// Sends one request that is answered by one message (a get of one link): `Ok(None)` when
    /// the kernel answers with one of the errors in `absent` (ENODEV: no such link).
    pub fn get(
        &mut self,
        req: RouteNetlinkMessage,
        what: &str,
        absent: &[i32],
    ) -> Result<Option<RouteNetlinkMessage>> {
        let place = self.place.clone();
        let ctx = || format!("cannot read {what} ({place})");
        let seq = self.send_one(req, NLM_F_REQUEST).with_context(ctx)?;
        loop {
            let n = self.recv().with_context(ctx)?;
            let bytes = self.bytes(n);
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                .map_err(|e| anyhow!("{e}"))
                .with_context(ctx)?;
            if m.header.sequence_number != seq {
                continue;
            }
            return match m.payload {
                NetlinkPayload::InnerMessage(inner) => Ok(Some(inner)),
                NetlinkPayload::Error(e) => {
                    let code = -e.raw_code();
                    if absent.contains(&code) {
                        Ok(None)
                    } else {
                        bail!("{}: {}", ctx(), errno_text(code))
                    }
                }
                _ => bail!("{}: an unexpected answer", ctx()),
            };
        }
    }

    /// Sends the requests, many to a send, and returns one result per request, in order.
    pub fn run(&mut self, reqs: &[Req]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = (0..reqs.len()).map(|_| None).collect();
        let mut i = 0;
        while i < reqs.len() {
            let first_seq = self.seq.wrapping_add(1);
            let mut out: Vec<u8> = Vec::new();
            let start = i;
            while i < reqs.len() && (out.is_empty() || out.len() < SEND_CHUNK) {
                let r = &reqs[i];
                let seq = self.next_seq();
                let mut msg = NetlinkMessage::from(r.msg.clone());
                msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | r.flags;
                msg.header.sequence_number = seq;
                msg.finalize();
                let at = out.len();
                out.resize(at + ((msg.buffer_len() + 3) & !3), 0);
                msg.serialize(&mut out[at..at + msg.buffer_len()]);
                i += 1;
            }
            if let Err(e) = self.sock.send_to(&out, &SocketAddr::new(0, 0), 0) {
                for (k, slot) in results.iter_mut().enumerate().take(i).skip(start) {
                    *slot = Some(Err(anyhow!(
                        "{} ({}): cannot send the request: {e}",
                        reqs[k].what,
                        self.place
                    )));
                }
                continue;
            }
            let mut left = i - start;
            while left > 0 {
                let n = match self.recv() {
                    Ok(n) => n,
                    Err(e) => {
                        let msg = format!("{e:#}");
                        for (k, slot) in results.iter_mut().enumerate().take(i).skip(start) {
                            if slot.is_none() {
                                *slot =
                                    Some(Err(anyhow!("{} ({}): {msg}", reqs[k].what, self.place)));
                            }
                        }
                        break;
                    }
                };
                for (seq, code, text) in acks(self.bytes(n)) {
                    let k = seq.wrapping_sub(first_seq) as usize;
                    if k >= i - start || results[start + k].is_some() {
                        continue;
                    }
                    let r = &reqs[start + k];
                    results[start + k] = Some(if code == 0 || r.ok.contains(&-code) {
                        Ok(())
                    } else {
                        let extra = text.map(|t| format!(" ({t})")).unwrap_or_default();
                        Err(anyhow!(
                            "{} ({}): {}{extra}",
                            r.what,
                            self.place,
                            errno_text(-code)
                        ))
                    });
                    left -= 1;
                }
            }
        }
        results
            .into_iter()
            .zip(reqs)
            .map(|(r, q)| {
                r.unwrap_or_else(|| {
                    Err(anyhow!(
                        "{} ({}): no answer from the kernel",
                        q.what,
                        self.place
                    ))
                })
            })
            .collect()
    }

    /// Sends the requests; the first error, if any.
    pub fn run_all(&mut self, reqs: &[Req]) -> Result<()> {
        self.run(reqs)
            .into_iter()
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    }
}

/// The acknowledgements in a receive buffer: (sequence number, error code, extack message).
fn acks(buf: &[u8]) -> Vec<(u32, i32, Option<String>)> {
    let mut out = Vec::new();
    let mut off = 0;
    let u32_at = |b: &[u8], o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u16_at = |b: &[u8], o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
    while off + 16 <= buf.len() {
        let len = u32_at(buf, off) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let ty = u16_at(buf, off + 4);
        let flags = u16_at(buf, off + 6);
        let seq = u32_at(buf, off + 8);
        if ty == NLMSG_ERROR && len >= 20 {
            let code = u32_at(buf, off + 16) as i32;
            // The error code, then the request's header (NETLINK_CAP_ACK: header only), then
            // attributes when the kernel has a message for us.
            let mut text = None;
            let mut a = off + 20 + 16;
            if flags & NLM_F_ACK_TLVS != 0 {
                while a + 4 <= off + len {
                    let alen = usize::from(u16_at(buf, a));
                    let aty = u16_at(buf, a + 2) & 0x3fff;
                    if alen < 4 || a + alen > off + len {
                        break;
                    }
                    if aty == NLMSGERR_ATTR_MSG {
                        let v = &buf[a + 4..a + alen];
                        let v = v.split(|b| *b == 0).next().unwrap_or(v);
                        text = Some(String::from_utf8_lossy(v).into_owned());
                    }
                    a += (alen + 3) & !3;
                }
            }
            out.push((seq, code, text));
        }
        off += (len + 3) & !3;
    }
    out
}
