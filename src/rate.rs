//! An interface's rate limit as the file states it — `rate`, `burst`, `ceil` — with the size
//! parser tc's users know, and the token bucket (`tbf`) it becomes, computed as the kernel
//! will hold and report it, so that the diff compares like with like. A value type only:
//! `plumbing::tbf` puts it on the wire and reads it back.
//!
//! Why tbf, not htb: one interface has one rate, and tbf is the qdisc of one rate. htb's
//! `ceil` is what a class may borrow from its parent; a class at the root has no parent, so
//! on a lone interface `ceil` would mean nothing (or, with a parent class set to it, simply be
//! the rate). What a user means by a ceiling on one link is tbf's peak rate: the burst leaves
//! no faster than `ceil`, the long run averages `rate`.

use std::fmt;

use crate::netem::{Netem, exact, fmt_rate, parse_rate, split_unit};

/// The Ethernet header a frame adds to the MTU: what a qdisc counts of a veth's packets.
pub(crate) const ETH_HLEN: u32 = 14;
/// A faster rate is a typo, not a limit.
pub(crate) const MAX_RATE_BPS: u64 = 1_000_000_000_000;
/// The kernel reports a bucket as 64 ns ticks in a u32: no more than this long.
const MAX_BUCKET_NS: u64 = (u32::MAX as u64) << PSCHED_SHIFT;
const PSCHED_SHIFT: u32 = 6;
/// The queue holds this long at the rate, past the burst (tc's `latency 50ms`).
const QUEUE_NS: u64 = 50_000_000;
/// Three 64 KiB segments.
const MIN_QUEUE: u64 = 3 << 16;
/// The default burst: this long at the rate (and two full frames at least). tbf's timer is a
/// soft hrtimer, run late on a loaded machine; a bucket that fills for this long keeps what
/// the lateness would lose (measured: 10 ms gave 8.4–9.6 Mbit/s of TCP at `rate = "10mbit"` on
/// a loaded two-core machine, 40 ms 8.9–9.7 of the 9.56 a frame's overhead leaves).
const BURST_NS: u64 = 40_000_000;
const NS: u64 = 1_000_000_000;

/// One interface's rate limit, as the file says it (with the defaults filled in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Rate {
    /// Bits per second, a multiple of 8.
    pub bps: u64,
    /// Bytes that may leave at once after a quiet spell.
    pub burst: u32,
    /// The peak rate a burst leaves at, above `bps`; None: line rate.
    pub ceil_bps: Option<u64>,
    /// The largest frame on the interface (MTU + Ethernet header): the peak bucket.
    pub frame: u32,
}

/// A token bucket as the kernel reports it (`struct tc_tbf_qopt`, RATE64, PRATE64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tbf {
    /// Queue length in bytes.
    pub limit: u32,
    /// Bytes per second.
    pub rate: u64,
    /// Peak bytes per second; 0: none.
    pub peak: u64,
    /// The bucket, as 64 ns ticks at `rate`.
    pub buffer: u32,
    /// The peak bucket, as 64 ns ticks at `peak` (0 without a peak).
    pub mtu: u32,
}

/// What the file wants at an interface's root: an impairment, a rate, both, or neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    pub netem: Netem,
    pub rate: Option<Rate>,
}

/// What nsfw's qdiscs on an interface say, read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shaped {
    pub netem: Netem,
    pub tbf: Option<Tbf>,
}

impl Shape {
    pub(crate) fn is_empty(&self) -> bool {
        self.netem.is_empty() && self.rate.is_none()
    }
    /// What the kernel will report once this is set.
    pub(crate) fn as_read(&self) -> Shaped {
        Shaped {
            netem: self.netem.normalized(),
            tbf: self.rate.map(|r| r.tbf()),
        }
    }
}

/// The kernel's reciprocal of a rate (`psched_ratecfg_precompute`): the time of `len` bytes
/// is `len * mult >> shift` ns.
fn ratecfg(bytes_ps: u64) -> (u64, u32) {
    let (mut factor, mut shift) = (NS, 0u32);
    loop {
        let mult = u64::from((factor / bytes_ps.max(1)) as u32);
        if mult & (1 << 31) != 0 || factor & (1 << 63) != 0 {
            return (mult, shift);
        }
        factor <<= 1;
        shift += 1;
    }
}

/// `psched_l2t_ns`: the time `len` bytes take at `bytes_ps`, as the kernel computes it.
fn l2t_ns(bytes_ps: u64, len: u32) -> u64 {
    let (mult, shift) = ratecfg(bytes_ps);
    (u64::from(len) * mult) >> shift
}

/// The bytes `ns` stand for at `bytes_ps` (`psched_ns_t2l`), for display.
fn t2l(bytes_ps: u64, ns: u64) -> u64 {
    (u128::from(ns) * u128::from(bytes_ps) / u128::from(NS)) as u64
}

impl Rate {
    /// The limit with its defaults: `burst` 10 ms at the rate (two frames at least).
    pub(crate) fn new(bps: u64, burst: Option<u32>, ceil_bps: Option<u64>, mtu: u32) -> Rate {
        let frame = mtu + ETH_HLEN;
        let auto = (bps / 8).saturating_mul(BURST_NS) / NS;
        let burst = burst.unwrap_or_else(|| auto.max(u64::from(2 * frame)).min(1 << 30) as u32);
        Rate {
            bps,
            burst,
            ceil_bps,
            frame,
        }
    }

    fn bytes(&self) -> u64 {
        self.bps / 8
    }

    /// The slowest rate (a multiple of 8 bit/s) whose default bucket (two full frames at so
    /// slow a rate) the kernel can hold: the rate the error suggests, which must work as
    /// written.
    fn slowest(&self) -> u64 {
        let works = |bps: u64| {
            let r = Rate::new(bps, None, self.ceil_bps, self.frame - ETH_HLEN);
            l2t_ns(r.bytes(), r.burst) <= MAX_BUCKET_NS
        };
        let mut bytes = u64::from(2 * self.frame) * NS / MAX_BUCKET_NS;
        while !works(bytes * 8) {
            bytes += 1;
        }
        bytes * 8
    }

    /// What the kernel would refuse, or hold in a way that cannot work; each message names
    /// the key it is about first (`rate`, `burst` or `ceil`): the key the file wrote, so a
    /// default `burst` that cannot work is the `rate`'s fault (`burst_given`: the file gave
    /// one).
    pub(crate) fn validate(&self, burst_given: bool) -> Result<(), (&'static str, String)> {
        if self.bps > MAX_RATE_BPS {
            return Err(("rate", format!("more than {}", fmt_rate(MAX_RATE_BPS))));
        }
        if self.burst < self.frame {
            return Err((
                "burst",
                format!(
                    "smaller than one full frame on this interface ({} bytes: MTU {} and the \
                     {ETH_HLEN}-byte Ethernet header): every full-size packet would be dropped",
                    self.frame,
                    self.frame - ETH_HLEN
                ),
            ));
        }
        if l2t_ns(self.bytes(), self.burst) > MAX_BUCKET_NS {
            let secs = MAX_BUCKET_NS / NS;
            // A burst the file did not give is the default the rate chose: the rate is what
            // the user wrote and must change, so the error names it.
            return Err(match burst_given {
                true => (
                    "burst",
                    format!(
                        "{} bytes take more than {secs} s to send at {}: the kernel cannot \
                         hold so long a bucket",
                        self.burst,
                        fmt_rate(self.bps)
                    ),
                ),
                false => (
                    "rate",
                    format!(
                        "{} is too slow: its bucket, the default burst of {} bytes (two full \
                         frames), takes more than {secs} s to send at it, longer than the \
                         kernel can hold; the slowest rate that works with its default burst here is {}",
                        fmt_rate(self.bps),
                        self.burst,
                        fmt_rate(self.slowest())
                    ),
                ),
            });
        }
        if let Some(c) = self.ceil_bps {
            if c <= self.bps {
                return Err((
                    "ceil",
                    format!(
                        "{} is not above the rate ({}): the peak rate a burst leaves at must \
                         be faster than the rate (leave `ceil` out for line rate)",
                        fmt_rate(c),
                        fmt_rate(self.bps)
                    ),
                ));
            }
            if c > MAX_RATE_BPS {
                return Err(("ceil", format!("more than {}", fmt_rate(MAX_RATE_BPS))));
            }
        }
        Ok(())
    }

    /// The queue: 50 ms at the rate past the burst, and room for a few of the 64 KiB
    /// segments a local TCP sender hands a veth at once (TSQ lets about two through): a
    /// smaller queue drops most of each, and the rate measured falls short of the limit.
    pub(crate) fn limit(&self) -> u32 {
        let queued = (self.bytes().saturating_mul(QUEUE_NS) / NS).max(MIN_QUEUE);
        u32::try_from(queued + u64::from(self.burst)).unwrap_or(u32::MAX)
    }

    /// The peak bucket sent (TCA_TBF_PBURST): one full frame, so no frame waits for two.
    pub(crate) fn pburst(&self) -> u32 {
        self.frame
    }

    /// The token bucket the kernel makes of this and reports back.
    pub(crate) fn tbf(&self) -> Tbf {
        let peak = self.ceil_bps.map_or(0, |c| c / 8);
        let ticks = |ns: u64| u32::try_from(ns >> PSCHED_SHIFT).unwrap_or(u32::MAX);
        Tbf {
            limit: self.limit(),
            rate: self.bytes(),
            peak,
            buffer: ticks(l2t_ns(self.bytes(), self.burst)),
            mtu: match peak {
                0 => 0,
                p => ticks(l2t_ns(p, self.pburst())),
            },
        }
    }
}

/// "rate 10mbit burst 12500b" (with "ceil 20mbit" when given).
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate {} burst {}b", fmt_rate(self.bps), self.burst)?;
        if let Some(c) = self.ceil_bps {
            write!(f, " ceil {}", fmt_rate(c))?;
        }
        Ok(())
    }
}

/// A bucket read back: its burst in bytes as near as 64 ns ticks tell.
impl fmt::Display for Tbf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let burst = t2l(self.rate, u64::from(self.buffer) << PSCHED_SHIFT);
        write!(f, "rate {} burst {burst}b", fmt_rate(self.rate * 8))?;
        if self.peak != 0 {
            write!(f, " ceil {}", fmt_rate(self.peak * 8))?;
        }
        Ok(())
    }
}

fn join(netem: &Netem, rate: Option<String>) -> String {
    let parts: Vec<String> = [(!netem.is_empty()).then(|| netem.to_string()), rate]
        .into_iter()
        .flatten()
        .collect();
    match parts.is_empty() {
        true => "none".to_string(),
        false => parts.join(" "),
    }
}

/// "latency 20ms rate 10mbit burst 50000b", "none" when empty.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(&self.netem, self.rate.map(|r| r.to_string())))
    }
}

impl fmt::Display for Shaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(&self.netem, self.tbf.map(|t| t.to_string())))
    }
}

/// tc's sizes: a number of bytes, with `b`, `k`/`kb`, `m`/`mb`, `g`/`gb` (powers of 1024, as
/// tc), or `kbit`, `mbit`, `gbit` (1024, 1024² and 1024³ bits, as tc); case does not matter.
/// A decimal is taken as tc takes it ("1.5kb": 1536 bytes) when it comes to whole bytes; tc
/// would round "1.3b" down silently, nsfw says so instead.
pub(crate) fn parse_size(s: &str) -> Result<u32, String> {
    let (num, unit) = split_unit(s)?;
    // In bits, so that `kbit` and `b` share one exact product.
    let bits: u128 = match unit.as_str() {
        "" | "b" => 8,
        "k" | "kb" => 8 << 10,
        "m" | "mb" => 8 << 20,
        "g" | "gb" => 8 << 30,
        "kbit" => 1 << 10,
        "mbit" => 1 << 20,
        "gbit" => 1 << 30,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (b, kb, mb, gb; kbit...)"
            ));
        }
    };
    let whole = || format!("{s:?}: not a whole number of bytes");
    let n = exact(num, bits, "byte").map_err(|e| match e.starts_with("finer") {
        true => whole(),
        false => format!("{s:?}: {e}"),
    })?;
    if n % 8 != 0 {
        return Err(whole());
    }
    match n / 8 {
        0 => Err(format!("{s:?}: zero")),
        bytes => u32::try_from(bytes).map_err(|_| format!("{s:?}: more than 4 GiB")),
    }
}

/// A rate key's value (`rate`, `ceil`): [`parse_rate`], with the ceiling on absurd values.
pub(crate) fn parse_bps(s: &str) -> Result<u64, String> {
    let v = parse_rate(s)?;
    if v > MAX_RATE_BPS {
        return Err(format!(
            "{s:?}: more than {}: no interface is that fast",
            fmt_rate(MAX_RATE_BPS)
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_tc_reads_them() {
        for (s, b) in [
            ("1514", 1514),
            ("15kb", 15 * 1024),
            ("15K", 15 * 1024),
            ("1mb", 1 << 20),
            ("100b", 100),
            ("8kbit", 1024),
            ("1gb", 1 << 30),
            ("1.5kb", 1536),
            ("1.5mbit", 196_608),
            ("0.5k", 512),
        ] {
            assert_eq!(parse_size(s), Ok(b), "{s}");
        }
        for (s, why) in [
            ("0", "zero"),
            ("-5kb", "negative"),
            ("1.3b", "not a whole number of bytes"),
            ("1.001kbit", "not a whole number of bytes"),
            ("1e3kb", "exponent notation"),
            ("1e-3kb", "exponent notation"),
            ("kb", "not a number"),
            ("10furlongs", "unknown unit"),
            ("5gb", "more than 4 GiB"),
            ("99999999999999999999gb", "more than 4 GiB"),
            ("9999999999999999999999999999999gb", "too many digits"),
            ("1kbit1", "unknown unit"),
        ] {
            let e = parse_size(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn rates_have_a_ceiling() {
        assert_eq!(parse_bps("10mbit"), Ok(10_000_000));
        assert_eq!(parse_bps("1.5mbit"), Ok(1_500_000));
        assert!(
            parse_bps("1e3kbit")
                .expect_err("exponent")
                .contains("exponent notation is not accepted")
        );
        assert!(
            parse_bps("2tbit")
                .expect_err("absurd")
                .contains("no interface")
        );
        assert!(parse_bps("0kbit").expect_err("zero").contains("zero"));
    }

    /// The slowest rate a too-slow rate's error suggests is accepted as written, with the
    /// default burst it will have, whatever the MTU; a little slower is not.
    #[test]
    fn the_suggested_slowest_rate_works() {
        for (bps, mtu) in [(16, 1500), (8, 1500), (200, 9000), (8, 576), (40, 65_000)] {
            let (key, e) = Rate::new(bps, None, None, mtu)
                .validate(false)
                .expect_err("too slow");
            assert_eq!(key, "rate");
            let hint = e.rsplit(' ').next().expect("hint");
            let ok = parse_bps(hint).unwrap_or_else(|e| panic!("{hint}: {e}"));
            assert_eq!(
                Rate::new(ok, None, None, mtu).validate(false),
                Ok(()),
                "{e}"
            );
            assert!(
                Rate::new(ok - 8, None, None, mtu).validate(false).is_err(),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_and_validation() {
        let r = Rate::new(10_000_000, None, None, 1500);
        assert_eq!((r.burst, r.frame, r.limit()), (50_000, 1514, 246_608));
        assert_eq!(r.to_string(), "rate 10mbit burst 50000b");
        // A slow link still gets two full frames.
        assert_eq!(Rate::new(64_000, None, None, 1500).burst, 3028);
        assert_eq!(r.validate(false), Ok(()));
        for (r, given, key, why) in [
            (
                Rate::new(10_000_000, Some(1000), None, 1500),
                true,
                "burst",
                "full frame",
            ),
            (
                Rate::new(8, Some(1514), None, 1500),
                true,
                "burst",
                "more than 274 s",
            ),
            // The file said only `rate = "8bit"`: the default burst is not the user's.
            (
                Rate::new(8, None, None, 1500),
                false,
                "rate",
                "slowest rate that works with its default burst here is 96bit",
            ),
            (
                Rate::new(10_000_000, None, Some(10_000_000), 1500),
                false,
                "ceil",
                "not above",
            ),
            (
                Rate::new(2 * MAX_RATE_BPS, None, None, 1500),
                false,
                "rate",
                "more than",
            ),
        ] {
            let (k, e) = r.validate(given).expect_err(why);
            assert_eq!(k, key, "{e}");
            assert!(e.contains(why), "{e}");
        }
    }

    /// The kernel's arithmetic, checked against what 6.18 reported for `tc qdisc add ... tbf
    /// rate 10mbit burst 50000b` (buffer 625000 ticks: 40 ms) and `peakrate 20mbit mtu 1514`
    /// (9462 ticks).
    #[test]
    fn the_bucket_is_what_the_kernel_reports() {
        let t = Rate::new(10_000_000, None, None, 1500).tbf();
        assert_eq!(
            (t.rate, t.buffer, t.limit, t.peak, t.mtu),
            (1_250_000, 625_000, 246_608, 0, 0)
        );
        assert_eq!(t.to_string(), "rate 10mbit burst 50000b");
        let c = Rate::new(10_000_000, None, Some(20_000_000), 1500);
        assert_eq!(c.tbf().peak, 2_500_000);
        assert_eq!(c.tbf().mtu, 9462); // 1514 bytes at 2.5 MB/s: 605.6 µs
        assert_eq!(c.tbf().to_string(), "rate 10mbit burst 50000b ceil 20mbit");
    }

    #[test]
    fn shapes_print_what_they_hold() {
        let mut s = Shape::default();
        assert_eq!(s.to_string(), "none");
        assert!(s.is_empty());
        s.rate = Some(Rate::new(10_000_000, None, None, 1500));
        s.netem.latency_us = Some(20_000);
        assert_eq!(s.to_string(), "latency 20ms rate 10mbit burst 50000b");
        assert_eq!(s.as_read().to_string(), s.to_string());
    }
}
