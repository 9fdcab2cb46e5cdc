//! A token bucket filter's `TCA_OPTIONS` (include/uapi/linux/pkt_sched.h, "TBF section"),
//! written and read by hand: netlink-packet-route 0.34 has no tbf options type.
//!
//! The burst goes as TCA_TBF_BURST (bytes, the kernel computes the bucket's time itself) and
//! the peak bucket as TCA_TBF_PBURST, so no rate table (TCA_TBF_RTAB) is needed: the rates
//! say `linklayer ethernet`, which the kernel takes as "computed, no table". The kernel reports
//! the buckets back only as 64 ns ticks (`rate::Tbf`).

use crate::rate::{Rate, Tbf};

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_PRATE64: u16 = 5;
const TCA_TBF_BURST: u16 = 6;
const TCA_TBF_PBURST: u16 = 7;
/// TC_LINKLAYER_ETHERNET: the kernel computes times from the rate, no table.
const LINKLAYER_ETHERNET: u8 = 1;

fn put_attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// `struct tc_ratespec`: cell_log, linklayer, overhead, cell_align, mpu, rate (bytes/s, at
/// most u32; the rest in the 64-bit attribute).
fn ratespec(bytes_ps: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    if bytes_ps != 0 {
        b[1] = LINKLAYER_ETHERNET;
    }
    let r = u32::try_from(bytes_ps).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&r.to_ne_bytes());
    b
}

/// tbf's TCA_OPTIONS for `r`: `struct tc_tbf_qopt` (rate, peak rate, limit, and the buckets
/// left zero: BURST and PBURST say them), then the 64-bit rates past 4 GB/s, then the bursts.
pub(super) fn options(r: &Rate) -> Vec<u8> {
    let t = r.tbf();
    let mut qopt = Vec::with_capacity(36);
    qopt.extend_from_slice(&ratespec(t.rate));
    qopt.extend_from_slice(&ratespec(t.peak));
    for w in [t.limit, 0, 0] {
        qopt.extend_from_slice(&w.to_ne_bytes());
    }
    let mut out = Vec::new();
    put_attr(&mut out, TCA_TBF_PARMS, &qopt);
    if t.rate > u64::from(u32::MAX) {
        put_attr(&mut out, TCA_TBF_RATE64, &t.rate.to_ne_bytes());
    }
    if t.peak > u64::from(u32::MAX) {
        put_attr(&mut out, TCA_TBF_PRATE64, &t.peak.to_ne_bytes());
    }
    put_attr(&mut out, TCA_TBF_BURST, &r.burst.to_ne_bytes());
    if t.peak != 0 {
        put_attr(&mut out, TCA_TBF_PBURST, &r.pburst().to_ne_bytes());
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?))
}

/// A tbf's TCA_OPTIONS as the kernel dumps them; Err names what nsfw does not set (overheads,
/// cell sizes) or cannot read.
pub(super) fn read(b: &[u8]) -> Result<Tbf, String> {
    let mut t = Tbf::default();
    let (mut rate64, mut prate64) = (0u64, 0u64);
    let mut parms = false;
    // The walk (netlink.rs's, written once) stops at a malformed attribute; a dump cut
    // before the parameters then reads as "no parameters" below.
    for a in crate::netlink::attrs(b) {
        let v = a.value;
        match a.ty {
            TCA_TBF_PARMS => {
                if v.len() < 36 {
                    return Err("short parameters".to_string());
                }
                let w = |i: usize| u32_at(v, i).ok_or("short parameters");
                // Only the rates, the limit and the buckets: cell_log and the rest are what
                // the kernel fills in for tc's tables; overhead and mpu nsfw never sets.
                for spec in [0, 12] {
                    let overhead = u16::from_ne_bytes([v[spec + 2], v[spec + 3]]);
                    let mpu = u16::from_ne_bytes([v[spec + 6], v[spec + 7]]);
                    if (overhead, mpu) != (0, 0) {
                        return Err("overhead or mpu".to_string());
                    }
                }
                t.rate = u64::from(w(8)?);
                t.peak = u64::from(w(20)?);
                t.limit = w(24)?;
                t.buffer = w(28)?;
                t.mtu = w(32)?;
                parms = true;
            }
            TCA_TBF_RATE64 => rate64 = u64_of(v).ok_or("short rate")?,
            TCA_TBF_PRATE64 => prate64 = u64_of(v).ok_or("short peak rate")?,
            _ => {}
        }
    }
    if !parms {
        return Err("no parameters".to_string());
    }
    t.rate = t.rate.max(rate64);
    t.peak = t.peak.max(prate64);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What we send reads back as the bucket the kernel will report: the parameters are the
    /// same words; the buckets the kernel fills in from BURST and PBURST (checked in
    /// tests/rate.rs), so here they are put as it would put them.
    #[test]
    fn options_read_back() {
        for r in [
            Rate::new(10_000_000, None, None, 1500),
            Rate::new(10_000_000, Some(30_000), Some(40_000_000), 9000),
            Rate::new(80_000_000_000, None, Some(160_000_000_000), 1500),
        ] {
            let mut b = options(&r);
            let want = r.tbf();
            // The kernel's dump: the buckets in the qopt's last two words.
            b[4 + 28..4 + 32].copy_from_slice(&want.buffer.to_ne_bytes());
            b[4 + 32..4 + 36].copy_from_slice(&want.mtu.to_ne_bytes());
            assert_eq!(read(&b), Ok(want), "{r}");
        }
        assert!(read(&[]).is_err());
    }
}
