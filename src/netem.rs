//! An interface's impairment as the file states it — added latency, jitter, random loss and
//! a rate — with the parsers for the file's units and the form plans print. A value type only:
//! `plumbing::qdisc` turns it into a netem qdisc and reads it back.

use std::fmt;

/// The kernel caps jitter at INT_MAX ns (tabledist's range); more would not read back.
pub const MAX_JITTER_US: u32 = (i32::MAX as u32) / 1000;

/// One interface's impairment, as the file says it. All optional; a Netem with all None means
/// "no qdisc". The kernel does not tell zero from absent: `Some(0)` reads back as None (see
/// [`Netem::normalized`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Netem {
    pub latency_us: Option<u32>,
    /// Uniform ±jitter around the latency (no distribution table).
    pub jitter_us: Option<u32>,
    /// Random loss in parts per million: 1% = 10000.
    pub loss_ppm: Option<u32>,
    /// Bits per second; netem counts whole bytes, so a multiple of 8.
    pub rate_bps: Option<u64>,
}

impl Netem {
    /// The same impairment with zeros as None: what [`parse`] reads back, so the form to
    /// compare.
    pub fn normalized(self) -> Netem {
        let nz32 = |v: Option<u32>| v.filter(|&x| x != 0);
        Netem {
            latency_us: nz32(self.latency_us),
            jitter_us: nz32(self.jitter_us),
            loss_ppm: nz32(self.loss_ppm),
            rate_bps: self.rate_bps.filter(|&x| x != 0),
        }
    }

    /// No impairment at all: the interface keeps its default root qdisc.
    pub fn is_empty(&self) -> bool {
        self.normalized() == Netem::default()
    }

    /// What the kernel could not hold exactly (the parsers already refuse these).
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Netem {
                jitter_us: Some(j), ..
            } if j > MAX_JITTER_US => Err(format!(
                "jitter {} is more than the kernel's {}",
                fmt_us(j),
                fmt_us(MAX_JITTER_US)
            )),
            Netem {
                loss_ppm: Some(l), ..
            } if l > PPM => Err(format!("loss {} is more than 100%", fmt_ppm(l))),
            Netem {
                rate_bps: Some(r), ..
            } if r % 8 != 0 => Err(format!(
                "rate {r}bit is not a whole number of bytes per second (netem counts bytes)"
            )),
            _ => Ok(()),
        }
    }
}

/// "latency 20ms jitter 5ms loss 1% rate 10mbit" (what the parsers read back), "none" when
/// empty.
impl fmt::Display for Netem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            self.latency_us.map(|v| format!("latency {}", fmt_us(v))),
            self.jitter_us.map(|v| format!("jitter {}", fmt_us(v))),
            self.loss_ppm.map(|v| format!("loss {}", fmt_ppm(v))),
            self.rate_bps.map(|v| format!("rate {}", fmt_rate(v))),
        ]
        .into_iter()
        .flatten()
        .collect();
        match parts.is_empty() {
            true => f.write_str("none"),
            false => f.write_str(&parts.join(" ")),
        }
    }
}

/// Parts per million in a whole.
pub(crate) const PPM: u32 = 1_000_000;

/// "20ms", "1.5ms", "500us", "1s" (also sec/msec/usec, as tc): microseconds. A unit is
/// required, and anything finer than a microsecond is refused rather than rounded.
pub(crate) fn parse_duration(s: &str) -> Result<u32, String> {
    let (num, unit) = split_unit(s)?;
    let mult = match unit.as_str() {
        "s" | "sec" | "secs" => 1_000_000,
        "ms" | "msec" | "msecs" => 1000,
        "us" | "usec" | "usecs" => 1,
        "" => return Err(format!("{s:?}: give a unit (s, ms or us)")),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, ms or us)")),
    };
    let us = exact(num, mult, "us").map_err(|e| format!("{s:?}: {e}"))?;
    u32::try_from(us).map_err(|_| format!("{s:?}: too long (at most {})", fmt_us(u32::MAX)))
}

/// "1%", "0.5%", "100%": parts per million. More than 100%, or finer than 0.0001%, is an
/// error.
pub(crate) fn parse_percent(s: &str) -> Result<u32, String> {
    let num = s
        .trim()
        .strip_suffix('%')
        .ok_or_else(|| format!("{s:?}: a percentage ends with % (\"1%\")"))?;
    let (num, unit) = split_unit(num)?;
    if !unit.is_empty() {
        return Err(format!("{s:?}: not a number"));
    }
    let ppm = exact(num, 10_000, "ppm (0.0001%)").map_err(|e| format!("{s:?}: {e}"))?;
    if ppm > u128::from(PPM) {
        return Err(format!("{s:?}: more than 100%"));
    }
    Ok(ppm as u32)
}

/// tc's rate units: bit, kbit, mbit, gbit, tbit (powers of 1000), kibit... (of 1024), and
/// bps, kbps, mbps... for bytes per second; case does not matter. Bits per second, which must
/// be a whole number of bytes (netem counts bytes) and not zero.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, unit) = split_unit(s)?;
    let (prefix, per_unit) = if let Some(p) = unit.strip_suffix("bit") {
        (p, 1)
    } else if let Some(p) = unit.strip_suffix("bps") {
        (p, 8)
    } else {
        let what = match unit.is_empty() {
            true => "give a unit".to_string(),
            false => format!("unknown unit {unit:?}"),
        };
        return Err(format!(
            "{s:?}: {what} (kbit, mbit, gbit; kbps... for bytes)"
        ));
    };
    let scale: u128 = match prefix {
        "" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        "t" => 1_000_000_000_000,
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
    };
    let bits = exact(num, scale * per_unit, "bit/s").map_err(|e| format!("{s:?}: {e}"))?;
    let bits = u64::try_from(bits).map_err(|_| format!("{s:?}: too fast"))?;
    if bits == 0 {
        return Err(format!("{s:?}: a rate of zero (leave it out for none)"));
    }
    if bits % 8 != 0 {
        return Err(format!(
            "{s:?}: {bits} bit/s is not a whole number of bytes per second (the kernel \
             counts bytes): use a multiple of 8 bit"
        ));
    }
    Ok(bits)
}

/// Splits "1.5ms" into ("1.5", "ms"), the unit lowercased. tc reads its numbers with strtod
/// and so takes "1e3kbit"; nsfw refuses the exponent by name rather than call "e3kbit" an
/// unknown unit (no unit starts with an `e`).
pub(crate) fn split_unit(s: &str) -> Result<(&str, String), String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("{s:?}: negative"));
    }
    let at = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(at);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(format!("{s:?}: not a number"));
    }
    let unit = unit.trim().to_lowercase();
    if unit.starts_with('e')
        && unit[1..].starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-')
    {
        return Err(format!(
            "{s:?}: exponent notation is not accepted: write the number out (\"1000kbit\", \
             \"1.5mbit\")"
        ));
    }
    Ok((num, unit))
}

/// `num` (decimal, unsigned) times `mult`, exactly: Err when it is not a whole number of
/// `unit` (the base unit), or overflows.
pub(crate) fn exact(num: &str, mult: u128, unit: &str) -> Result<u128, String> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.len() + frac.len() > 30 {
        return Err("too many digits".to_string());
    }
    let n: u128 = format!("{int}{frac}")
        .parse()
        .map_err(|_| "not a number".to_string())?;
    let den = 10u128.pow(frac.len() as u32);
    let v = n.checked_mul(mult).ok_or("too large")?;
    if v % den != 0 {
        return Err(format!("finer than 1 {unit}"));
    }
    Ok(v / den)
}

pub(crate) fn fmt_us(us: u32) -> String {
    if us != 0 && us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us >= 1000 {
        format!("{}ms", decimal(u64::from(us), 1000))
    } else {
        format!("{us}us")
    }
}

pub(crate) fn fmt_ppm(ppm: u32) -> String {
    format!("{}%", decimal(u64::from(ppm), 10_000))
}

pub(crate) fn fmt_rate(bps: u64) -> String {
    for (unit, div) in [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1000)] {
        if bps >= div && bps.is_multiple_of(div) {
            return format!("{}{unit}", bps / div);
        }
    }
    format!("{bps}bit")
}

/// `v / div` in decimal, exactly, without trailing zeros: 1500/1000 is "1.5".
fn decimal(v: u64, div: u64) -> String {
    let (int, rem) = (v / div, v % div);
    if rem == 0 {
        return int.to_string();
    }
    let width = div.ilog10() as usize;
    let frac = format!("{rem:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u32) -> Option<u32> {
        Some(v * 1000)
    }

    #[test]
    fn durations() {
        for (s, us) in [
            ("20ms", 20_000),
            ("1.5ms", 1_500),
            ("500us", 500),
            ("1s", 1_000_000),
            ("0.000001s", 1),
            ("2.25sec", 2_250_000),
            ("10 msec", 10_000),
            ("0ms", 0),
            ("4294967295us", u32::MAX),
        ] {
            assert_eq!(parse_duration(s), Ok(us), "{s}");
        }
        for (s, why) in [
            ("", "not a number"),
            ("20", "give a unit"),
            ("ms", "not a number"),
            ("-5ms", "negative"),
            ("1.5us", "finer than 1 us"),
            ("5min", "unknown unit"),
            ("4295s", "too long"),
            ("1.2.3ms", "not a number"),
            ("99999999999999999999999999999999s", "too many digits"),
        ] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn percents() {
        for (s, ppm) in [
            ("1%", 10_000),
            ("0.5%", 5_000),
            ("100%", 1_000_000),
            ("0.0001%", 1),
            ("0%", 0),
            (" 12.3456% ", 123_456),
        ] {
            assert_eq!(parse_percent(s), Ok(ppm), "{s}");
        }
        for (s, why) in [
            ("101%", "more than 100%"),
            ("100.0001%", "more than 100%"),
            ("-1%", "negative"),
            ("1", "ends with %"),
            ("0.00001%", "finer than 1 ppm"),
            ("abc%", "not a number"),
            ("1x%", "not a number"),
            ("1e-3%", "exponent notation"),
        ] {
            let e = parse_percent(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn rates() {
        for (s, bps) in [
            ("10mbit", 10_000_000),
            ("10Mbit", 10_000_000),
            ("1gbit", 1_000_000_000),
            ("500kbit", 500_000),
            ("104bit", 104),
            ("1.5mbit", 1_500_000),
            ("1mbps", 8_000_000),
            ("1kbps", 8_000),
            ("3bps", 24),
            ("1kibit", 1024),
            ("1mibps", 8 << 20),
            ("40gbit", 40_000_000_000),
        ] {
            assert_eq!(parse_rate(s), Ok(bps), "{s}");
        }
        for (s, why) in [
            ("100bit", "whole number of bytes"),
            ("10", "give a unit"),
            ("0mbit", "zero"),
            ("-1mbit", "negative"),
            ("10furlongs", "unknown unit"),
            ("10xbit", "unknown unit"),
            ("0.0001bit", "finer than 1 bit/s"),
            ("99999999999tbit", "too fast"),
        ] {
            let e = parse_rate(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    /// The plan's text says what the file says, and every value reads back through the parsers.
    #[test]
    fn display_reads_back() {
        let n = Netem {
            latency_us: ms(20),
            jitter_us: ms(5),
            loss_ppm: Some(10_000),
            rate_bps: Some(10_000_000),
        };
        assert_eq!(n.to_string(), "latency 20ms jitter 5ms loss 1% rate 10mbit");
        assert_eq!(Netem::default().to_string(), "none");
        for n in [
            n,
            Netem {
                latency_us: Some(1_500),
                jitter_us: Some(999),
                loss_ppm: Some(5_001),
                rate_bps: Some(1_500_000),
            },
            Netem {
                latency_us: Some(2_000_000),
                jitter_us: Some(1_000_001),
                loss_ppm: Some(1),
                rate_bps: Some(8),
            },
        ] {
            let text = n.to_string();
            let w: Vec<&str> = text.split(' ').collect();
            let back = Netem {
                latency_us: Some(parse_duration(w[1]).expect("latency")),
                jitter_us: Some(parse_duration(w[3]).expect("jitter")),
                loss_ppm: Some(parse_percent(w[5]).expect("loss")),
                rate_bps: Some(parse_rate(w[7]).expect("rate")),
            };
            assert_eq!(back, n, "{text}");
        }
    }

    #[test]
    fn validation_names_what_the_kernel_cannot_hold() {
        for (n, why) in [
            (
                Netem {
                    jitter_us: Some(MAX_JITTER_US + 1),
                    ..Netem::default()
                },
                "jitter",
            ),
            (
                Netem {
                    loss_ppm: Some(1_000_001),
                    ..Netem::default()
                },
                "more than 100%",
            ),
            (
                Netem {
                    rate_bps: Some(100),
                    ..Netem::default()
                },
                "whole number of bytes",
            ),
        ] {
            let e = n.validate().expect_err("invalid");
            assert!(e.contains(why), "{e}");
        }
    }
}
