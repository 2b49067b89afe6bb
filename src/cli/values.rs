//! The value syntaxes of rclone's flag types: `Duration`, `SizeSuffix` and `FileMode`.
//!
//! Public so that every place that reads rclone's syntax (the command line, `RCLONE_*`
//! variables, and later config files) parses it the same way.

use std::time::Duration;

/// Parses rclone's `FileMode`: octal digits, optionally after `0o`, at most `7777`.
pub fn parse_file_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!("invalid file mode {s:?}"));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!("file mode {s:?} is larger than 7777")),
    }
}

/// A non-negative decimal number, kept exact so `1.5h` and `1.5Gi` scale without rounding.
struct Decimal {
    whole: u128,
    fraction: u128,
    /// `10^n` for the `n` fraction digits kept.
    scale: u128,
}

/// Fraction digits beyond this are worth less than a nanosecond or a byte for every unit.
const MAX_FRACTION_DIGITS: usize = 19;

impl Decimal {
    /// `self * unit`, truncated to a whole number; `None` on overflow.
    fn scaled(&self, unit: u128) -> Option<u128> {
        let part = self.fraction.checked_mul(unit)? / self.scale;
        self.whole.checked_mul(unit)?.checked_add(part)
    }
}

/// Splits a leading `digits[.digits]` (either side may be empty, not both) from `s`.
fn split_number(s: &str) -> Option<(Decimal, &str)> {
    let (whole, rest) = split_digits(s);
    let (fraction, rest) = match rest.strip_prefix('.') {
        Some(after_dot) => split_digits(after_dot),
        None => ("", rest),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let number = Decimal {
        whole: digits_value(whole)?,
        fraction: digits_value(fraction)?,
        scale: 10u128.pow(u32::try_from(fraction.len()).ok()?),
    };
    Some((number, rest))
}

fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

fn digits_value(digits: &str) -> Option<u128> {
    if digits.is_empty() {
        Some(0)
    } else {
        digits.parse().ok()
    }
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_DAY: u128 = 86_400 * NANOS_PER_SECOND;

/// Go's duration units, then rclone's day, week, month (30 days) and year (365 days).
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("h", 3_600 * NANOS_PER_SECOND),
    ("d", NANOS_PER_DAY),
    ("w", 7 * NANOS_PER_DAY),
    ("M", 30 * NANOS_PER_DAY),
    ("y", 365 * NANOS_PER_DAY),
];

/// rclone keeps durations in Go's signed 64-bit nanoseconds (about 292 years).
const MAX_DURATION_NANOS: u128 = i64::MAX as u128;

/// Parses rclone's `Duration`: `1h30m`, `1.5h`, `300ms`, `2d`, a bare number of seconds,
/// or `off` (returned as [`Duration::MAX`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s == "off" {
        return Ok(Duration::MAX);
    }
    if s.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    let nanos = match split_number(s) {
        Some((seconds, "")) => seconds.scaled(NANOS_PER_SECOND),
        _ => sum_duration_parts(s)?,
    };
    nanos
        .filter(|n| *n <= MAX_DURATION_NANOS)
        .and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

/// Sums `<number><unit>` parts; `Ok(None)` when the total overflows.
fn sum_duration_parts(s: &str) -> Result<Option<u128>, String> {
    let mut rest = s;
    let mut total: Option<u128> = Some(0);
    while !rest.is_empty() {
        let (number, after) =
            split_number(rest).ok_or_else(|| format!("invalid duration {s:?}"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let per_unit = duration_unit(unit, s)?;
        total = total
            .zip(number.scaled(per_unit))
            .and_then(|(t, n)| t.checked_add(n));
        rest = tail;
    }
    Ok(total)
}

fn duration_unit(unit: &str, whole: &str) -> Result<u128, String> {
    if unit.is_empty() {
        return Err(format!("missing unit in duration {whole:?}"));
    }
    DURATION_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, nanos)| *nanos)
        .ok_or_else(|| format!("unknown unit {unit:?} in duration {whole:?}"))
}

/// Parses rclone's `SizeSuffix`: a number of KiB, or a number with a base-1024 suffix
/// `B|K|M|G|T|P|E` (any case, optionally followed by `i` and/or `B`). `off` and `-1` give `None`.
pub fn parse_size(s: &str) -> Result<Option<u64>, String> {
    if s.is_empty() {
        return Err("empty size".to_owned());
    }
    if s.eq_ignore_ascii_case("off") || s == "-1" {
        return Ok(None);
    }
    if s.starts_with('-') {
        return Err(format!("negative size {s:?}"));
    }
    let (number, suffix) = split_number(s).ok_or_else(|| format!("invalid size {s:?}"))?;
    let unit = size_unit(suffix).ok_or_else(|| format!("bad suffix {suffix:?} in size {s:?}"))?;
    number
        .scaled(unit)
        .and_then(|bytes| u64::try_from(bytes).ok())
        .map(Some)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn size_unit(suffix: &str) -> Option<u128> {
    let lower = suffix.to_ascii_lowercase();
    let shift = match lower.as_str() {
        "" => 10, // rclone's default suffix is K
        "b" => 0,
        _ => {
            let symbol = lower.strip_suffix('b').unwrap_or(&lower);
            let symbol = symbol.strip_suffix('i').unwrap_or(symbol);
            10 * (1 + "kmgtpe".find(symbol).filter(|_| symbol.len() == 1)?)
        }
    };
    Some(1u128 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes() {
        assert_eq!(parse_file_mode("666"), Ok(0o666));
        assert_eq!(parse_file_mode("0644"), Ok(0o644));
        assert_eq!(parse_file_mode("022"), Ok(0o022));
        assert_eq!(parse_file_mode("0o755"), Ok(0o755));
        assert_eq!(parse_file_mode("7777"), Ok(0o7777));
        for bad in ["", "9", "0o", "0x7", "-1", "rw", "10000", "77777777777777"] {
            assert!(parse_file_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let secs = Duration::from_secs;
        assert_eq!(parse_duration("5m0s"), Ok(secs(300)));
        assert_eq!(parse_duration("90s"), Ok(secs(90)));
        assert_eq!(parse_duration("90"), Ok(secs(90)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("100ns"), Ok(Duration::from_nanos(100)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("off"), Ok(Duration::MAX));
    }

    #[test]
    fn durations_rclone_suffixes() {
        let days = |n: u64| Duration::from_secs(n * 86_400);
        assert_eq!(parse_duration("1d"), Ok(days(1)));
        assert_eq!(parse_duration("2w"), Ok(days(14)));
        assert_eq!(parse_duration("1M"), Ok(days(30)));
        assert_eq!(parse_duration("1y"), Ok(days(365)));
        assert_eq!(
            parse_duration("1.5d"),
            Ok(days(1) + Duration::from_secs(43_200))
        );
    }

    #[test]
    fn duration_errors() {
        for bad in [
            "", "-5s", "-1", "abc", "5x", "1h30", "h", ".s", "1..5s", "5 s", "1000y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        const MI: u64 = 1 << 20;
        assert_eq!(parse_size("128Mi"), Ok(Some(128 * MI)));
        assert_eq!(parse_size("128MiB"), Ok(Some(128 * MI)));
        assert_eq!(parse_size("10G"), Ok(Some(10 << 30)));
        assert_eq!(parse_size("1.5Gi"), Ok(Some(3 << 29)));
        assert_eq!(parse_size("512k"), Ok(Some(512 << 10)));
        assert_eq!(parse_size("100"), Ok(Some(100 << 10)));
        assert_eq!(parse_size("100B"), Ok(Some(100)));
        assert_eq!(parse_size("2t"), Ok(Some(2 << 40)));
        assert_eq!(parse_size("1P"), Ok(Some(1 << 50)));
        assert_eq!(parse_size("0"), Ok(Some(0)));
        assert_eq!(parse_size("off"), Ok(None));
        assert_eq!(parse_size("OFF"), Ok(None));
        assert_eq!(parse_size("-1"), Ok(None));
    }

    #[test]
    fn size_errors() {
        for bad in [
            "", "-2", "-1K", "abc", "10X", "10iB", "10i", "K", "1.2.3M", "99999E",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
