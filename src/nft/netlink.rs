//! The nf_tables socket: sends a batch in one `sendmsg` and checks the acknowledgement of every
//! message in it; dumps tables, chains and rules back for comparison.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::raw::c_char;

use anyhow::{Context, Result, anyhow, bail};
use nftnl::nftnl_sys as sys;

use super::Family;
use super::encode::{Encoded, parse_comment};

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

/// A rule as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KRule {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    /// libnftnl's rendering of the expressions: the comparison key.
    pub exprs: String,
    pub comment: Option<String>,
}

/// A chain as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KChain {
    pub table: String,
    pub name: String,
    /// (hook number, priority, type, policy accept?) for base chains.
    pub base: Option<(u32, i32, String, bool)>,
}

/// A table as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KTable {
    pub family: Family,
    pub name: String,
    pub comment: Option<String>,
}

fn family_of(f: u32) -> Option<Family> {
    match f as i32 {
        libc::NFPROTO_INET => Some(Family::Inet),
        libc::NFPROTO_IPV4 => Some(Family::Ip),
        _ => None,
    }
}

fn proto(f: Family) -> u16 {
    match f {
        Family::Inet => libc::NFPROTO_INET as u16,
        Family::Ip => libc::NFPROTO_IPV4 as u16,
    }
}

unsafe fn cstr_at(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libnftnl returns NUL-terminated strings it owns.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Parses one NEWRULE message.
///
/// # Safety
/// `nlh` must point at a complete netlink message.
pub unsafe fn parse_rule(nlh: *const libc::nlmsghdr) -> Result<KRule> {
    // SAFETY: libnftnl parses into an object we allocate and free here.
    unsafe {
        let r = sys::nftnl_rule_alloc();
        if r.is_null() {
            bail!("out of memory");
        }
        if sys::nftnl_rule_nlmsg_parse(nlh.cast(), r) < 0 {
            sys::nftnl_rule_free(r);
            bail!("cannot parse a rule from the kernel");
        }
        let chain = cstr_at(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_CHAIN as u16));
        let table = cstr_at(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_TABLE as u16));
        let handle = sys::nftnl_rule_get_u64(r, sys::NFTNL_RULE_HANDLE as u16);
        let mut len: u32 = 0;
        let ud = sys::nftnl_rule_get_data(r, sys::NFTNL_RULE_USERDATA as u16, &mut len);
        let comment = if ud.is_null() {
            None
        } else {
            parse_comment(std::slice::from_raw_parts(ud.cast::<u8>(), len as usize))
        };
        let mut text = vec![0u8; 8192];
        let n = sys::nftnl_rule_snprintf(
            text.as_mut_ptr().cast(),
            text.len(),
            r,
            sys::NFTNL_OUTPUT_DEFAULT,
            0,
        );
        sys::nftnl_rule_free(r);
        let n = usize::try_from(n).unwrap_or(0).min(text.len());
        let text = String::from_utf8_lossy(&text[..n]).into_owned();
        // The first line names family, table, chain and handle; the expressions follow as
        // "  [ ... ]" lines; userdata is compared apart.
        let exprs: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('['))
            .collect();
        Ok(KRule {
            table,
            chain,
            handle,
            exprs: exprs.join(" "),
            comment,
        })
    }
}

unsafe fn parse_chain(nlh: *const libc::nlmsghdr) -> Result<KChain> {
    // SAFETY: as parse_rule.
    unsafe {
        let c = sys::nftnl_chain_alloc();
        if c.is_null() {
            bail!("out of memory");
        }
        if sys::nftnl_chain_nlmsg_parse(nlh.cast(), c) < 0 {
            sys::nftnl_chain_free(c);
            bail!("cannot parse a chain from the kernel");
        }
        let name = cstr_at(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_NAME as u16));
        let table = cstr_at(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TABLE as u16));
        let base = if sys::nftnl_chain_is_set(c, sys::NFTNL_CHAIN_HOOKNUM as u16) {
            Some((
                sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16),
                sys::nftnl_chain_get_s32(c, sys::NFTNL_CHAIN_PRIO as u16),
                cstr_at(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TYPE as u16)),
                sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_POLICY as u16)
                    == libc::NF_ACCEPT as u32,
            ))
        } else {
            None
        };
        sys::nftnl_chain_free(c);
        Ok(KChain { table, name, base })
    }
}

unsafe fn parse_table(nlh: *const libc::nlmsghdr) -> Result<Option<KTable>> {
    // SAFETY: as parse_rule.
    unsafe {
        let t = sys::nftnl_table_alloc();
        if t.is_null() {
            bail!("out of memory");
        }
        if sys::nftnl_table_nlmsg_parse(nlh.cast(), t) < 0 {
            sys::nftnl_table_free(t);
            bail!("cannot parse a table from the kernel");
        }
        let name = cstr_at(sys::nftnl_table_get_str(t, sys::NFTNL_TABLE_NAME as u16));
        let fam = sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FAMILY as u16);
        let mut len: u32 = 0;
        let ud = sys::nftnl_table_get_data(t, sys::NFTNL_TABLE_USERDATA as u16, &mut len);
        let comment = if ud.is_null() {
            None
        } else {
            parse_comment(std::slice::from_raw_parts(ud.cast::<u8>(), len as usize))
        };
        sys::nftnl_table_free(t);
        Ok(family_of(fam).map(|family| KTable {
            family,
            name,
            comment,
        }))
    }
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
        let seqs = enc.batch.sequence_numbers();
        let mut iov: Vec<libc::iovec> = enc
            .batch
            .iter()
            .map(|s| libc::iovec {
                iov_base: s.as_ptr() as *mut _,
                iov_len: s.len(),
            })
            .collect();
        let total: usize = iov.iter().map(|v| v.iov_len).sum();
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
            seqs.clone().enumerate().map(|(i, s)| (s, i)).collect();
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
    fn dump<T>(
        &mut self,
        msg_type: i32,
        family: u16,
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
                libc::NLM_F_DUMP as u16,
                seq,
            );
            build(h.cast());
            (*h).nlmsg_len as usize
        };
        let data = &req.bytes_mut()[..len];
        self.sock
            .send(data)
            .with_context(|| format!("dumping {what}"))?;
        let mut out = Vec::new();
        loop {
            let n = self.recv().with_context(|| format!("dumping {what}"))?;
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
                    if code == -libc::ENOENT {
                        return Ok(Vec::new());
                    }
                    bail!("dumping {what}: {}", errno_text(-code));
                }
                if let Some(t) = parse(h)? {
                    out.push(t);
                }
            }
        }
    }

    pub fn tables(&mut self) -> Result<Vec<KTable>> {
        self.dump(
            libc::NFT_MSG_GETTABLE,
            libc::NFPROTO_UNSPEC as u16,
            &|_| {},
            // SAFETY: messages() hands out complete messages.
            &|h| unsafe { parse_table(h) },
            "nftables tables",
        )
    }

    /// The chains of one table. The kernel dumps every chain of the family whatever the
    /// request names, so the table is filtered here.
    pub fn chains(&mut self, family: Family, table: &str) -> Result<Vec<KChain>> {
        let t = CString::new(table).map_err(|_| anyhow!("table name {table:?}"))?;
        let all = self.dump(
            libc::NFT_MSG_GETCHAIN,
            proto(family),
            // SAFETY: the payload is built into the request buffer, after its header.
            &|h| unsafe {
                let c = sys::nftnl_chain_alloc();
                if !c.is_null() {
                    sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, t.as_ptr());
                    sys::nftnl_chain_nlmsg_build_payload(h.cast(), c);
                    sys::nftnl_chain_free(c);
                }
            },
            // SAFETY: messages() hands out complete messages.
            &|h| unsafe { parse_chain(h).map(Some) },
            &format!("the chains of table {} {table}", family.as_str()),
        )?;
        Ok(all.into_iter().filter(|c| c.table == table).collect())
    }

    /// The rules of one table (of one chain of it, when `chain` is given), in chain order.
    pub fn rules(
        &mut self,
        family: Family,
        table: &str,
        chain: Option<&str>,
    ) -> Result<Vec<KRule>> {
        let t = CString::new(table).map_err(|_| anyhow!("table name {table:?}"))?;
        let c = chain
            .map(|c| CString::new(c).map_err(|_| anyhow!("chain name {c:?}")))
            .transpose()?;
        let what = match chain {
            Some(ch) => format!(
                "the rules of chain {ch} in table {} {table}",
                family.as_str()
            ),
            None => format!("the rules of table {} {table}", family.as_str()),
        };
        let all = self.dump(
            libc::NFT_MSG_GETRULE,
            proto(family),
            // SAFETY: as in chains().
            &|h| unsafe {
                let r = sys::nftnl_rule_alloc();
                if !r.is_null() {
                    sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, t.as_ptr());
                    if let Some(c) = &c {
                        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, c.as_ptr());
                    }
                    sys::nftnl_rule_nlmsg_build_payload(h.cast(), r);
                    sys::nftnl_rule_free(r);
                }
            },
            // SAFETY: messages() hands out complete messages.
            &|h| unsafe { parse_rule(h).map(Some) },
            &what,
        )?;
        // The kernel filters rule dumps by table and chain; checked again all the same.
        Ok(all
            .into_iter()
            .filter(|r| r.table == table && chain.is_none_or(|c| r.chain == c))
            .collect())
    }
}
