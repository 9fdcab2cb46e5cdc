//! A blocking rtnetlink connection bound to one network namespace: dumps, and requests sent
//! many to a `sendmsg` with every acknowledgement checked and every error carried with the
//! object its request concerns (and the kernel's extended-ack message when it gives one).
//!
//! The socket belongs to the namespace of the thread that opened it, for as long as it lives,
//! wherever it is used from; nsfw opens one per namespace visit and closes it after, so the
//! number of open descriptors does not grow with the number of namespaces.

use anyhow::{Context, Result, anyhow, bail};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::SocketAddr;

use crate::netlink::{self, NLMSG_DONE, NLMSG_ERROR, RecvBuf, Socket};

/// Requests go out in sends of about this many bytes: the kernel handles every message of a
/// send before `sendmsg` returns, so the acknowledgements of one send fit the receive buffer.
const SEND_CHUNK: usize = 32 * 1024;
/// The socket's receive buffer in the kernel.
const SOCK_BUF: usize = 1 << 20;
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
    buf: RecvBuf,
}

fn errno_text(code: i32) -> String {
    std::io::Error::from_raw_os_error(code).to_string()
}

impl Conn {
    /// A connection in the calling thread's network namespace. Room in the socket for the
    /// acknowledgements of a whole send (each costs the kernel far more than its 36 bytes):
    /// the default would drop some.
    pub fn open(place: impl Into<String>) -> Result<Conn> {
        let place = place.into();
        let sock = netlink::socket(netlink::NETLINK_ROUTE)
            .acks()
            .recv_buffer(SOCK_BUF)
            .timeout(std::time::Duration::from_secs(10))
            .strict()
            .open(&place)?;
        Ok(Conn {
            sock,
            seq: 0,
            place,
            buf: RecvBuf::take(),
        })
    }

    pub fn place(&self) -> &str {
        &self.place
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Receives one datagram: its bytes.
    fn recv(&mut self) -> Result<&[u8]> {
        let place = &self.place;
        self.buf
            .recv(&self.sock)
            .with_context(|| format!("receiving from rtnetlink ({place})"))
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
            for m in netlink::messages(self.recv().with_context(ctx)?) {
                let m = m.map_err(|_| anyhow!("{}: a malformed netlink message", ctx()))?;
                if m.seq != seq {
                    continue;
                }
                // NLMSG_DONE and NLMSG_ERROR carry a code; a refused dump ends with it.
                if m.ty == NLMSG_DONE || m.ty == NLMSG_ERROR {
                    let code = m.code();
                    if code < 0 {
                        bail!("{}: {}", ctx(), errno_text(-code));
                    }
                    return Ok(());
                }
                each(m.bytes).with_context(ctx)?;
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
            let bytes = self.recv().with_context(ctx)?;
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

    /// Sends one request written by hand (`build` gets its sequence number) that is answered
    /// by one message: that message's payload, or `Ok(None)` when the kernel answers with one
    /// of the errors in `absent`.
    pub(crate) fn get_raw(
        &mut self,
        build: impl FnOnce(u32) -> Vec<u8>,
        what: &str,
        absent: &[i32],
    ) -> Result<Option<Vec<u8>>> {
        let place = self.place.clone();
        let ctx = || format!("cannot read {what} ({place})");
        let seq = self.next_seq();
        self.sock
            .send_to(&build(seq), &SocketAddr::new(0, 0), 0)
            .with_context(ctx)?;
        loop {
            for m in netlink::messages(self.recv().with_context(ctx)?) {
                let m = m.map_err(|_| anyhow!("{}: a malformed netlink message", ctx()))?;
                if m.seq != seq {
                    continue;
                }
                if m.ty == NLMSG_ERROR {
                    let code = -m.code();
                    if absent.contains(&code) {
                        return Ok(None);
                    }
                    bail!("{}: {}", ctx(), errno_text(code));
                }
                return Ok(Some(m.payload().to_vec()));
            }
        }
    }

    /// Sends the requests, many to a send, and returns one result per request, in order.
    pub fn run(&mut self, reqs: &[Req]) -> Vec<Result<()>> {
        self.run_coded(reqs)
            .into_iter()
            .map(|r| r.map_err(|(_, e)| e))
            .collect()
    }

    /// [`Conn::run`], each error with the kernel's errno (positive; 0 when the request got no
    /// answer): for requests whose error is itself the answer (a probe).
    pub(crate) fn run_coded(&mut self, reqs: &[Req]) -> Vec<Result<(), (i32, anyhow::Error)>> {
        let mut results: Vec<Option<Result<(), (i32, anyhow::Error)>>> =
            (0..reqs.len()).map(|_| None).collect();
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
                out.resize(at + netlink::align(msg.buffer_len()), 0);
                msg.serialize(&mut out[at..at + msg.buffer_len()]);
                i += 1;
            }
            if let Err(e) = self.sock.send_to(&out, &SocketAddr::new(0, 0), 0) {
                for (k, slot) in results.iter_mut().enumerate().take(i).skip(start) {
                    *slot = Some(Err((
                        0,
                        anyhow!(
                            "{} ({}): cannot send the request: {e}",
                            reqs[k].what,
                            self.place
                        ),
                    )));
                }
                continue;
            }
            let mut left = i - start;
            while left > 0 {
                let bytes = match self.recv() {
                    Ok(b) => b,
                    Err(e) => {
                        let msg = format!("{e:#}");
                        for (k, slot) in results.iter_mut().enumerate().take(i).skip(start) {
                            if slot.is_none() {
                                *slot = Some(Err((
                                    0,
                                    anyhow!("{} ({}): {msg}", reqs[k].what, self.place),
                                )));
                            }
                        }
                        break;
                    }
                };
                for (seq, code, text) in acks(bytes) {
                    let k = seq.wrapping_sub(first_seq) as usize;
                    if k >= i - start || results[start + k].is_some() {
                        continue;
                    }
                    let r = &reqs[start + k];
                    results[start + k] = Some(if code == 0 || r.ok.contains(&-code) {
                        Ok(())
                    } else {
                        let extra = text.map(|t| format!(" ({t})")).unwrap_or_default();
                        Err((
                            -code,
                            anyhow!("{} ({}): {}{extra}", r.what, self.place, errno_text(-code)),
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
                    Err((
                        0,
                        anyhow!("{} ({}): no answer from the kernel", q.what, self.place),
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
    for m in netlink::messages(buf).map_while(Result::ok) {
        if m.ty != NLMSG_ERROR || m.bytes.len() < netlink::HDR + 4 {
            continue;
        }
        // The error code, then the request's header (NETLINK_CAP_ACK: header only), then
        // attributes when the kernel has a message for us.
        let text = (m.flags & NLM_F_ACK_TLVS != 0)
            .then(|| m.payload().get(4 + netlink::HDR..))
            .flatten()
            .and_then(|tlvs| netlink::find(tlvs, NLMSGERR_ATTR_MSG))
            .map(netlink::string_of);
        out.push((m.seq, m.code(), text));
    }
    out
}
