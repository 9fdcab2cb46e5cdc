//! An interface's qdiscs, set, read back and removed over rtnetlink traffic-control messages
//! (no `tc`): a `netem` root carrying added latency, jitter and random loss, a `tbf` root
//! carrying a rate limit, or both — a netem root with the tbf below it.
//!
//! Why the tbf below the netem, and not netem's own rate (`TCA_NETEM_RATE`, which the file's
//! `rate` used to become): the rate is then the same token bucket whether or not the kernel
//! has netem (this project's machines have none: a rate must work there, and it is measured
//! there), with its `burst` and `ceil`; and the bucket shapes what leaves the delay line, so
//! the delay does not eat into the rate. It is tc-netem(8)'s own recipe ("netem delay 100ms"
//! at the root, "tbf rate 256kbit" at its class 1). htb is not needed: one interface has one
//! rate (see `rate`).
//!
//! nsfw's qdiscs carry its handles (`owner::QDISC_ROOT`, `QDISC_CHILD`): a root with any other
//! handle but the kernel's default (0:) is someone else's, and is left alone.
//!
//! netlink-packet-route 0.34 has no netem or tbf options types: `TCA_OPTIONS` is encoded here
//! (netem's is not a proper nest: a `struct tc_netem_qopt`, then netem attributes) and in
//! `tbf`, and read back from the raw payload the crate keeps for kinds it does not know.

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_EXCL, Nla};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};

use super::rtnl::Req;
use crate::netem::PPM;
pub use crate::netem::{MAX_JITTER_US, Netem};
use crate::owner::{QDISC_CHILD, QDISC_ROOT};
use crate::rate::{Shape, Shaped};

const KIND: &str = "netem";
const TCA_OPTIONS: u16 = 2;
// include/uapi/linux/pkt_sched.h, "Network emulator".
const TCA_NETEM_CORR: u16 = 1;
const TCA_NETEM_REORDER: u16 = 3;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_LOSS: u16 = 5;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_ECN: u16 = 7;
const TCA_NETEM_RATE64: u16 = 8;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
const TCA_NETEM_SLOT: u16 = 12;
/// The queue's length in packets: tc's default, so a netem made here reads like `tc`'s.
const LIMIT: u32 = 1000;
/// psched ticks are 64 ns (PSCHED_SHIFT): the legacy latency/jitter fields count those.
const PSCHED_SHIFT: u32 = 6;
/// What an interface's root qdisc is, as far as nsfw is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root {
    /// A netem that says exactly this and nothing else.
    Netem(Netem),
    /// Any other kind ("noqueue", "fq_codel"...), or a netem with settings the file cannot
    /// express ("netem with duplicate, reorder"): not nsfw's impairment.
    Other(String),
}

/// Loss as netem holds it: a fraction of u32::MAX, rounded as tc does (1% = 42949673).
fn prob_of(ppm: u32) -> u32 {
    let p = (u64::from(ppm.min(PPM)) * u64::from(u32::MAX) + u64::from(PPM / 2)) / u64::from(PPM);
    p as u32
}

/// The ppm a loss probability stands for, when it is one: tc computes in floating point, so
/// its rounding may differ from ours by one.
fn ppm_of(prob: u32) -> Option<u32> {
    let ppm =
        ((u64::from(prob) * u64::from(PPM) + u64::from(u32::MAX / 2)) / u64::from(u32::MAX)) as u32;
    (prob_of(ppm).abs_diff(prob) <= 1).then_some(ppm)
}

fn root_msg(index: u32) -> TcMessage {
    // The kernel's ifindex is an int: a u32 from it never wraps.
    let mut m = TcMessage::with_index(index as i32);
    m.header.parent = TcHandle::ROOT;
    m.header.handle = handle(QDISC_ROOT, 0);
    m
}

fn handle(major: u16, minor: u16) -> TcHandle {
    TcHandle { major, minor }
}

/// A netem root saying exactly `n` (latency, jitter, loss and rate; nothing else), made
/// where the kernel's default root is (CREATE|EXCL: never over another root). [`converge`]
/// sets the flags of a change in place. A change keeps what its message leaves out, so the
/// message leaves out nothing the kernel reports: correlations, reordering, corruption, ECN,
/// slots and rate overheads are sent as zeros, and the loss model falls back to random when
/// absent. Only a delay distribution table, which the kernel never reports and nsfw never
/// sets, would survive.
pub fn set_netem(ifname: &str, index: u32, n: &Netem) -> Req {
    let mut m = root_msg(index);
    m.attributes.push(TcAttribute::Kind(KIND.to_string()));
    // Other, not Options: the crate would nest an Other option inside TCA_OPTIONS.
    m.attributes.push(TcAttribute::Other(DefaultNla::new(
        TCA_OPTIONS,
        netem_options(n),
    )));
    Req::new(
        RouteNetlinkMessage::NewQueueDiscipline(m),
        NLM_F_CREATE | NLM_F_EXCL,
        format!("cannot set {n} on {ifname}"),
    )
}

/// Removes nsfw's root qdisc (and what is below it): the kernel puts the interface's default
/// back (noqueue on a veth). Only nsfw's: the handle makes the kernel refuse (EINVAL, "Invalid
/// handle") to delete a root with another, which is not nsfw's; the default root (ENOENT,
/// "handle of zero") and another's root both mean there is nothing of nsfw's to remove.
pub fn del_root(ifname: &str, index: u32) -> Req {
    let m = root_msg(index);
    Req::new(
        RouteNetlinkMessage::DelQueueDiscipline(m),
        0,
        format!("cannot remove nsfw's qdiscs from {ifname}"),
    )
    .ok_if(&[libc::ENOENT, libc::EINVAL])
}

/// A tbf saying exactly `r`: at the root, or below nsfw's netem root (its class 1).
fn set_tbf(ifname: &str, index: u32, r: &crate::rate::Rate, below: bool, flags: u16) -> Req {
    let mut m = root_msg(index);
    if below {
        m.header.parent = handle(QDISC_ROOT, 1);
        m.header.handle = handle(QDISC_CHILD, 0);
    }
    m.attributes.push(TcAttribute::Kind("tbf".to_string()));
    m.attributes.push(TcAttribute::Other(DefaultNla::new(
        TCA_OPTIONS,
        super::tbf::options(r),
    )));
    Req::new(
        RouteNetlinkMessage::NewQueueDiscipline(m),
        flags,
        format!("cannot set {r} on {ifname}"),
    )
}

/// The requests that make the interface's qdiscs say `want`, from `old`: nsfw's as read back
/// (None: the kernel's default root; Err: nsfw's, holding what the file cannot say, made
/// again). What changes only in its values is changed in place, as `tc qdisc change` does (no
/// flags: the kernel changes the qdisc with nsfw's handle there, keeping its queued packets,
/// and refuses — EEXIST, ENOENT — when that root or child is gone or someone else's by the
/// time the request arrives, where CREATE|REPLACE would graft over theirs); a tree of another shape
/// (a root of another kind, a tbf to add below or take from the netem) is removed and made
/// again — the kernel refuses to change a qdisc's kind in place (EINVAL). A tree made where
/// the default root was is made with NLM_F_EXCL: a root someone else put there since the
/// observation fails the step (EEXIST) instead of being replaced.
pub(crate) fn converge(
    ifname: &str,
    index: u32,
    want: &Shape,
    old: Option<&Result<Shaped, String>>,
) -> Vec<Req> {
    if want.is_empty() {
        return vec![del_root(ifname, index)];
    }
    let form = |netem: bool, rate: bool| (netem, rate);
    let new_form = form(!want.netem.is_empty(), want.rate.is_some());
    let mut out = Vec::new();
    let fresh = match old {
        None => true,
        Some(Ok(o)) if form(!o.netem.is_empty(), o.tbf.is_some()) == new_form => false,
        Some(_) => {
            out.push(del_root(ifname, index));
            true
        }
    };
    let flags = match fresh {
        true => NLM_F_CREATE | NLM_F_EXCL,
        false => 0,
    };
    let netem = !want.netem.is_empty();
    if netem {
        let mut r = set_netem(ifname, index, &want.netem);
        r.flags = flags;
        out.push(r);
    }
    if let Some(rate) = &want.rate {
        out.push(set_tbf(ifname, index, rate, netem, flags));
    }
    out
}

/// Whether this kernel has netem (CONFIG_NET_SCH_NETEM, built in or loadable): a netem is
/// put on the `lo` of a network namespace made for the test by a thread of its own, which
/// goes when the thread ends — nothing anyone else sees is touched. A kernel without it
/// answers ENOENT ("unknown qdisc kind").
pub fn netem_supported() -> anyhow::Result<bool> {
    let probe = std::thread::spawn(|| -> anyhow::Result<bool> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| anyhow::anyhow!("cannot make a network namespace to test netem: {e}"))?;
        let mut c = super::Conn::open("a test namespace")?;
        // `lo` is always interface 1 in a new namespace.
        let lo = Netem {
            latency_us: Some(1000),
            ..Default::default()
        };
        match c.run_all(&[set_netem("lo", 1, &lo)]) {
            Ok(()) => Ok(true),
            Err(e) if format!("{e:#}").contains("No such file") => Ok(false),
            Err(e) if format!("{e:#}").contains("unknown") => Ok(false),
            Err(e) => Err(e),
        }
    });
    probe
        .join()
        .map_err(|_| anyhow::anyhow!("the netem test thread panicked"))?
}

/// Every qdisc of the namespace (the kernel's dump takes no interface filter).
pub fn dump_req() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default())
}

/// A root qdisc's interface and impairment: `Some(netem)` for a netem root nsfw could have
/// made, None for any other root (noqueue, pfifo_fast, fq_codel..., or a netem with more than
/// the file can say). Not a root qdisc (ingress, a class's child): None altogether.
pub fn parse(msg: &TcMessage) -> Option<(u32, Option<Netem>)> {
    parse_root(msg).map(|(i, r)| match r {
        Root::Netem(n) => (i, Some(n)),
        Root::Other(_) => (i, None),
    })
}

/// Like [`parse`], with what an other root is.
pub fn parse_root(msg: &TcMessage) -> Option<(u32, Root)> {
    if msg.header.parent != TcHandle::ROOT {
        return None;
    }
    let index = u32::try_from(msg.header.index).ok()?;
    let kind = msg.attributes.iter().find_map(|a| match a {
        TcAttribute::Kind(k) => Some(k.as_str()),
        _ => None,
    });
    let Some(KIND) = kind else {
        return Some((index, Root::Other(kind.unwrap_or("unknown").to_string())));
    };
    let Some(payload) = options_of(msg) else {
        return Some((index, Root::Other("netem without options".to_string())));
    };
    let root = match read_netem(&payload) {
        Ok(n) => Root::Netem(n),
        Err(why) => Root::Other(format!("netem with {why}")),
    };
    Some((index, root))
}

/// A qdisc's TCA_OPTIONS payload. The crate keeps an unknown kind's TCA_OPTIONS whole, as one
/// Other option of type TCA_OPTIONS; our own messages carry it as an Other attribute.
fn options_of(msg: &TcMessage) -> Option<Vec<u8>> {
    let opts = msg.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(v) => v.iter().find_map(|o| match o {
            TcOption::Other(n) if n.kind() == TCA_OPTIONS => Some(n),
            _ => None,
        }),
        TcAttribute::Other(n) if n.kind() == TCA_OPTIONS => Some(n),
        _ => None,
    })?;
    let mut payload = vec![0u8; opts.value_len()];
    opts.emit_value(&mut payload);
    Some(payload)
}

fn kind_of(msg: &TcMessage) -> &str {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            TcAttribute::Kind(k) => Some(k.as_str()),
            _ => None,
        })
        .unwrap_or("unknown")
}

/// What is at an interface's root, where it is not the kernel's default (handle 0:).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RootObs {
    /// nsfw's qdiscs, as read back; Err: what in them the file cannot say.
    Ours(Result<Shaped, String>),
    /// Someone else's: its kind and handle, as tc prints them ("htb 1:").
    Foreign(String),
    /// nsfw's root with someone else's qdisc below it (a handle not nsfw's): its kind and
    /// handle. Changing or removing nsfw's tree would take theirs with it.
    Under(String),
}

/// The roots of a namespace's qdisc dump, by ifindex, but the kernel's defaults; nsfw's read
/// with the tbf below a netem root.
pub(crate) fn roots(msgs: &[TcMessage]) -> std::collections::BTreeMap<u32, RootObs> {
    let mut out = std::collections::BTreeMap::new();
    for m in msgs {
        let h = m.header.handle;
        let Ok(index) = u32::try_from(m.header.index) else {
            continue;
        };
        if m.header.parent != TcHandle::ROOT || h.major == 0 {
            continue;
        }
        let kind = kind_of(m);
        if h.major != QDISC_ROOT {
            out.insert(index, RootObs::Foreign(format!("{kind} {:x}:", h.major)));
            continue;
        }
        let inside = |c: &&TcMessage| {
            c.header.index == m.header.index
                && c.header.parent != TcHandle::ROOT
                && matches!(c.header.parent.major, QDISC_ROOT | QDISC_CHILD)
        };
        // Ours below the root: 6e74: at 6e73:1; a qdisc of any other handle is someone else's.
        let theirs = msgs.iter().filter(inside).find(|c| {
            c.header.handle.major != 0
                && (c.header.handle.major != QDISC_CHILD
                    || c.header.parent != handle(QDISC_ROOT, 1))
        });
        if let Some(c) = theirs {
            let h = c.header.handle.major;
            out.insert(index, RootObs::Under(format!("{} {h:x}:", kind_of(c))));
            continue;
        }
        let below = msgs
            .iter()
            .find(|c| c.header.index == m.header.index && c.header.parent == handle(QDISC_ROOT, 1));
        out.insert(index, RootObs::Ours(read_ours(kind, m, below)));
    }
    out
}

/// nsfw's root `m` (and the qdisc `below` it, if any) as the shape they hold.
fn read_ours(kind: &str, m: &TcMessage, below: Option<&TcMessage>) -> Result<Shaped, String> {
    let opts = |q: &TcMessage| options_of(q).ok_or(format!("{} without options", kind_of(q)));
    let tbf = |q: &TcMessage| super::tbf::read(&opts(q)?).map_err(|why| format!("tbf with {why}"));
    match (kind, below) {
        ("tbf", None) => Ok(Shaped {
            tbf: Some(tbf(m)?),
            ..Shaped::default()
        }),
        ("tbf", Some(q)) => Err(format!("{} below the tbf", kind_of(q))),
        ("netem", _) => {
            let netem = read_netem(&opts(m)?).map_err(|why| format!("netem with {why}"))?;
            let tbf = match below {
                None => None,
                Some(q) if kind_of(q) == "tbf" && q.header.handle == handle(QDISC_CHILD, 0) => {
                    Some(tbf(q)?)
                }
                Some(q) => return Err(format!("{} below the netem", kind_of(q))),
            };
            Ok(Shaped { netem, tbf })
        }
        (k, _) => Err(format!("{k} at the root")),
    }
}

fn put_attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn words(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

fn ticks(ns: u64) -> u32 {
    u32::try_from(ns >> PSCHED_SHIFT).unwrap_or(u32::MAX)
}

/// netem's TCA_OPTIONS: the legacy qopt (latency and jitter in 64 ns ticks, truncated as the
/// kernel's own dump does), then LATENCY64 and JITTER64 in ns, which the kernel takes over the
/// ticks (µs are not whole ticks: 20001 µs is 312515.625 ticks), then the rate in bytes/s:
/// TCA_NETEM_RATE's u32 (zero: none), with TCA_NETEM_RATE64 past 4 GB/s as the kernel does;
/// then zeros for everything else a change would otherwise keep (see [`set_netem`]).
fn netem_options(n: &Netem) -> Vec<u8> {
    let lat_ns = u64::from(n.latency_us.unwrap_or(0)) * 1000;
    let jit_ns = u64::from(n.jitter_us.unwrap_or(0)) * 1000;
    let bytes = n.rate_bps.unwrap_or(0).div_ceil(8);
    let qopt = [
        ticks(lat_ns),
        LIMIT,
        prob_of(n.loss_ppm.unwrap_or(0)),
        0, // gap: no reordering
        0, // duplicate
        ticks(jit_ns),
    ];
    let mut out = words(&qopt);
    // s64 in the kernel: no µs count reaches its sign bit.
    put_attr(&mut out, TCA_NETEM_LATENCY64, &lat_ns.to_ne_bytes());
    put_attr(&mut out, TCA_NETEM_JITTER64, &jit_ns.to_ne_bytes());
    // struct tc_netem_rate: rate, packet_overhead, cell_size, cell_overhead.
    let rate = [u32::try_from(bytes).unwrap_or(u32::MAX), 0, 0, 0];
    put_attr(&mut out, TCA_NETEM_RATE, &words(&rate));
    if bytes > u64::from(u32::MAX) {
        put_attr(&mut out, TCA_NETEM_RATE64, &bytes.to_ne_bytes());
    }
    // tc_netem_corr (3 × u32), tc_netem_reorder and tc_netem_corrupt (2 × u32 each), the ECN
    // flag, and tc_netem_slot (40 bytes; all zero is "no slots").
    for (ty, len) in [
        (TCA_NETEM_CORR, 12),
        (TCA_NETEM_REORDER, 8),
        (TCA_NETEM_CORRUPT, 8),
        (TCA_NETEM_ECN, 4),
        (TCA_NETEM_SLOT, 40),
    ] {
        put_attr(&mut out, ty, &[0u8; 40][..len]);
    }
    out
}

fn u32s<const N: usize>(b: &[u8]) -> Option<[u32; N]> {
    let mut out = [0u32; N];
    for (i, v) in out.iter_mut().enumerate() {
        *v = u32::from_ne_bytes(b.get(i * 4..i * 4 + 4)?.try_into().ok()?);
    }
    Some(out)
}

fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?))
}

/// A netem's TCA_OPTIONS as nsfw's Netem; Err names what the file cannot express.
fn read_netem(b: &[u8]) -> Result<Netem, String> {
    let [lat_ticks, limit, loss, gap, dup, jit_ticks] = u32s::<6>(b).ok_or("short options")?;
    let (mut lat64, mut jit64, mut rate, mut rate64) = (None, None, None, None);
    let mut extra = Vec::new();
    if limit != LIMIT {
        extra.push(format!("limit {limit}"));
    }
    if gap != 0 {
        extra.push("gap".to_string());
    }
    if dup != 0 {
        extra.push("duplicate".to_string());
    }
    // The attributes follow the qopt (six u32, already aligned).
    let mut off = 24;
    while off + 4 <= b.len() {
        let len = usize::from(u16::from_ne_bytes([b[off], b[off + 1]]));
        let ty = u16::from_ne_bytes([b[off + 2], b[off + 3]]) & 0x3fff;
        if len < 4 || off + len > b.len() {
            return Err("malformed options".to_string());
        }
        let v = &b[off + 4..off + len];
        let nonzero = v.iter().any(|&x| x != 0);
        match ty {
            TCA_NETEM_LATENCY64 => lat64 = Some(u64_of(v).ok_or("short latency")? as i64),
            TCA_NETEM_JITTER64 => jit64 = Some(u64_of(v).ok_or("short jitter")? as i64),
            TCA_NETEM_RATE => rate = Some(u32s::<4>(v).ok_or("short rate")?),
            TCA_NETEM_RATE64 => rate64 = Some(u64_of(v).ok_or("short rate")?),
            TCA_NETEM_CORR if nonzero => extra.push("correlation".to_string()),
            // reorder and corrupt: probability, then correlation.
            TCA_NETEM_REORDER if nonzero => extra.push("reorder".to_string()),
            TCA_NETEM_CORRUPT if nonzero => extra.push("corrupt".to_string()),
            TCA_NETEM_LOSS if !v.is_empty() => extra.push("a loss model".to_string()),
            TCA_NETEM_ECN if nonzero => extra.push("ecn".to_string()),
            TCA_NETEM_SLOT if nonzero => extra.push("slots".to_string()),
            // The pad, the PRNG seed, and what later kernels add and we never set.
            _ => {}
        }
        off += len.next_multiple_of(4);
    }
    if let Some([_, overhead, cell, cell_overhead]) = rate
        && (overhead, cell, cell_overhead) != (0, 0, 0)
    {
        extra.push("rate overheads".to_string());
    }
    let mut us = |what: &str, ns: Option<i64>, ticks: u32| -> Option<u32> {
        let ns = ns.unwrap_or(i64::from(ticks) << PSCHED_SHIFT);
        match u32::try_from(ns / 1000) {
            Ok(us) if ns % 1000 == 0 => Some(us),
            _ => {
                extra.push(format!("{what} {ns}ns"));
                None
            }
        }
    };
    let latency_us = us("latency", lat64, lat_ticks);
    let jitter_us = us("jitter", jit64, jit_ticks);
    let loss_ppm = ppm_of(loss);
    if loss_ppm.is_none() {
        extra.push(format!("loss {loss}/{}", u32::MAX));
    }
    // RATE64 comes with RATE's u32 at its ceiling; the kernel takes the larger.
    let bytes = rate64.unwrap_or(0).max(u64::from(rate.map_or(0, |r| r[0])));
    let rate_bps = bytes.checked_mul(8);
    if rate_bps.is_none() {
        extra.push(format!("rate {bytes} bytes/s"));
    }
    if !extra.is_empty() {
        return Err(extra.join(", "));
    }
    Ok(Netem {
        latency_us,
        jitter_us,
        loss_ppm,
        rate_bps,
    }
    .normalized())
}

/// The encoding, without a kernel: what `set_netem` sends, as bytes, parses back the same.
/// The ingress and clsact qdiscs of the calling thread's namespace and the filters under
/// them: by interface index, a line each (`clsact qdisc, filters: bpf, u32`). What nsfw
/// cannot say in a file, read to be named (`import`).
pub fn ingress_hooks(c: &mut crate::plumbing::Conn) -> anyhow::Result<Vec<(u32, String)>> {
    let mut out = Vec::new();
    for m in c.dump(dump_req(), "qdiscs")? {
        let RouteNetlinkMessage::NewQueueDiscipline(q) = m else {
            continue;
        };
        if q.header.parent != TcHandle::INGRESS {
            continue;
        }
        let kind = q
            .attributes
            .iter()
            .find_map(|a| match a {
                TcAttribute::Kind(k) => Some(k.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "ingress".to_string());
        let mut kinds: Vec<String> = Vec::new();
        // ingress' filters hang from ffff:, clsact's from its ingress and egress minors.
        let parents = [
            TcHandle {
                major: 0xffff,
                minor: 0,
            },
            TcHandle {
                major: 0xffff,
                minor: TcHandle::MIN_INGRESS,
            },
            TcHandle {
                major: 0xffff,
                minor: TcHandle::MIN_EGRESS,
            },
        ];
        for parent in parents {
            let mut req = TcMessage::default();
            req.header.index = q.header.index;
            req.header.parent = parent;
            // A parent the qdisc does not have answers an error: nothing there.
            let Ok(fs) = c.dump(RouteNetlinkMessage::GetTrafficFilter(req), "tc filters") else {
                continue;
            };
            for f in fs {
                if let RouteNetlinkMessage::NewTrafficFilter(f) = f
                    && let Some(k) = f.attributes.iter().find_map(|a| match a {
                        TcAttribute::Kind(k) => Some(k.clone()),
                        _ => None,
                    })
                    && !kinds.contains(&k)
                {
                    kinds.push(k);
                }
            }
        }
        let Ok(index) = u32::try_from(q.header.index) else {
            continue;
        };
        let what = if kinds.is_empty() {
            format!("tc {kind} qdisc")
        } else {
            format!("tc {kind} qdisc with filters ({})", kinds.join(", "))
        };
        out.push((index, what));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
