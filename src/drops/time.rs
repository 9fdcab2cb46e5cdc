//! The times of `nsfw drops`: printed in UTC (no tz database), and `--since`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `16:02:03.250` (UTC), or with `date` the whole `2026-12-06T16:02:03.250Z`.
pub(crate) fn clock(t: SystemTime, date: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let ms = d.subsec_millis();
    if !date {
        return format!("{h:02}:{m:02}:{s:02}.{ms:03}");
    }
    // Days to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = (secs / 86400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// `--since`: seconds, minutes or hours ago (`30s`, `5m`, `1h`), or a UTC time of today
/// (`16:02`, `16:02:03`).
pub(crate) fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let bad = || format!("--since {s:?}: expected 30s, 5m, 1h or a UTC time HH:MM[:SS]");
    if let Some((n, unit)) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .filter(|(n, _)| !n.is_empty())
        && let Some(mul) = match unit {
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            _ => None,
        }
    {
        let n: u64 = n.parse().map_err(|_| bad())?;
        return now
            .checked_sub(Duration::from_secs(n.saturating_mul(mul)))
            .ok_or_else(bad);
    }
    let parts: Vec<u64> = s
        .split(':')
        .map(|p| p.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (h, m, sec) = match parts[..] {
        [h, m] => (h, m, 0),
        [h, m, sec] => (h, m, sec),
        _ => return Err(bad()),
    };
    if h > 23 || m > 59 || sec > 59 {
        return Err(bad());
    }
    let day = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86400 * 86400;
    let at = UNIX_EPOCH + Duration::from_secs(day + h * 3600 + m * 60 + sec);
    if at > now {
        // A local time taken for UTC, most likely: it would hide every drop for hours.
        return Err(format!(
            "--since {s:?}: {} UTC is later than now ({} UTC); the time is UTC, of today",
            clock(at, false),
            clock(now, false)
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_574_123_250);
        assert_eq!(clock(t, true), "2026-12-06T16:22:03.250Z");
        assert_eq!(clock(t, false), "16:22:03.250");
    }

    #[test]
    fn since_takes_an_age_or_a_time_of_today() {
        let now = UNIX_EPOCH + Duration::from_secs(86400 * 3 + 3600 * 10);
        assert_eq!(parse_since("90s", now), Ok(now - Duration::from_secs(90)));
        assert_eq!(parse_since("2m", now), Ok(now - Duration::from_secs(120)));
        assert_eq!(
            parse_since("09:30", now),
            Ok(UNIX_EPOCH + Duration::from_secs(86400 * 3 + 9 * 3600 + 1800))
        );
        for bad in ["", "5x", "25:00", "1:2:3:4", "m", "10:00:01", "23:59"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
