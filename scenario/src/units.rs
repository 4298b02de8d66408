//! The little languages of values: durations ("1m30s"), percentages ("30%"), plain numbers,
//! and their normalised spelling for assertion texts. Pure functions on text, so that each
//! rule is tested once and every field that takes a duration reads it the same way.

use std::time::Duration;

/// Longest duration the parser takes at all, in milliseconds (a day): every field has a
/// tighter bound of its own, this only keeps the arithmetic far from overflow.
const LONGEST_MS: f64 = 86_400_000.0;

/// A decimal number as YAML writes one in a scenario: digits with an optional sign,
/// fraction and exponent. Rust's own `f64` parser also takes "inf", "NaN" and "1_000"-free
/// forms we do not want, so the characters are checked first.
pub(crate) fn number(text: &str) -> Option<f64> {
    let text = text.trim();
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let looks_numeric = body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body.chars().any(|c| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !looks_numeric {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A whole number, digits only (with an optional `+`); negative numbers are refused by
/// the caller's bound, so they parse here.
pub(crate) fn integer(text: &str) -> Option<i128> {
    let text = text.trim();
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit()) || body.len() > 30 {
        return None;
    }
    text.parse::<i128>().ok()
}

/// Why a text is not a duration; the caller adds the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// A plain number: the unit is missing.
    NoUnit,
    /// Not a duration at all.
    Malformed,
    /// Past a day: no field takes that.
    TooLong,
}

/// A duration in milliseconds, possibly fractional: "500ms", "2s", "1.5s", "1m", "1m30s",
/// "1h". Parts go from the largest unit down, each unit at most once.
pub(crate) fn duration_ms(text: &str) -> Result<f64, DurationError> {
    let text = text.trim();
    if number(text).is_some() {
        return Err(DurationError::NoUnit);
    }
    if text.is_empty() {
        return Err(DurationError::Malformed);
    }
    // Units in the order they may appear, with their length in milliseconds. "ms" comes
    // before "m" so that "500ms" is not read as 500 minutes and a stray "s".
    const UNITS: [(&str, f64); 4] = [
        ("h", 3_600_000.0),
        ("m", 60_000.0),
        ("s", 1000.0),
        ("ms", 1.0),
    ];
    let mut rest = text;
    let mut total = 0.0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(DurationError::NoUnit)?;
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Malformed)?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let index = UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or(DurationError::Malformed)?;
        if index < next_unit {
            return Err(DurationError::Malformed);
        }
        next_unit = index + 1;
        total += value * UNITS[index].1;
        if total > LONGEST_MS {
            return Err(DurationError::TooLong);
        }
    }
    Ok(total)
}

/// A duration in whole milliseconds; `None` when it has a finer part.
pub(crate) fn whole_ms(ms: f64) -> Option<Duration> {
    let rounded = ms.round();
    // Decimal fractions such as "1.001s" land a hair off the whole millisecond.
    ((ms - rounded).abs() < 1e-6).then(|| Duration::from_millis(rounded as u64))
}

/// A percentage "30%", "2.5%": the number before the sign.
pub(crate) fn percent_sign(text: &str) -> Option<f64> {
    number(text.trim().strip_suffix('%')?)
}

/// A duration as the file would write it: "500ms", "1.5s", "2s", "1m30s", "2m", "1h5m".
pub(crate) fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) {
        return format!("{}s", trim_float(ms as f64 / 1000.0));
    }
    let seconds = ms / 1000;
    let parts = [
        (seconds / 3600, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, unit)| format!("{count}{unit}"))
        .collect()
}

/// Milliseconds of latency as the file would write them: "300ms", "1.5s", "0.5ms".
pub(crate) fn format_latency_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{}s", trim_float(ms / 1000.0))
    } else {
        format!("{}ms", trim_float(ms))
    }
}

/// A number without trailing zeros, at most six decimals: "1", "0.5", "2.125".
pub(crate) fn trim_float(value: f64) -> String {
    let text = format!("{value:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_every_documented_spelling() {
        for (text, ms) in [
            ("500ms", 500.0),
            ("2s", 2000.0),
            ("1.5s", 1500.0),
            ("1m", 60_000.0),
            ("1m30s", 90_000.0),
            ("1h", 3_600_000.0),
            ("0s", 0.0),
            ("1s500ms", 1500.0),
            ("0.5ms", 0.5),
        ] {
            assert_eq!(duration_ms(text), Ok(ms), "{text}");
        }
        for text in ["2", "1.5", "0"] {
            assert_eq!(duration_ms(text), Err(DurationError::NoUnit), "{text}");
        }
        for text in [
            "", "s", "2x", "30s1m", "1s1s", "2 s", "fast", "-1s", "1.2.3s", "2S",
        ] {
            assert_eq!(duration_ms(text), Err(DurationError::Malformed), "{text}");
        }
        assert_eq!(duration_ms("25h"), Err(DurationError::TooLong));
        assert_eq!(whole_ms(1500.0), Some(Duration::from_millis(1500)));
        assert_eq!(whole_ms(0.5), None);
    }

    #[test]
    fn numbers_are_decimal_only() {
        assert_eq!(number("50"), Some(50.0));
        assert_eq!(number("0.01"), Some(0.01));
        assert_eq!(number("-3"), Some(-3.0));
        assert_eq!(number("1e3"), Some(1000.0));
        for text in ["inf", "NaN", ".", "fast", "0x10", "1_000", "", "e5"] {
            assert_eq!(number(text), None, "{text}");
        }
        assert_eq!(integer("42"), Some(42));
        assert_eq!(integer("-1"), Some(-1));
        assert_eq!(integer("4.0"), None);
        assert_eq!(percent_sign("30%"), Some(30.0));
        assert_eq!(percent_sign("30"), None);
    }

    #[test]
    fn formatting_reads_back() {
        for (ms, text) in [
            (500, "500ms"),
            (1500, "1.5s"),
            (2000, "2s"),
            (90_000, "1m30s"),
            (120_000, "2m"),
            (3_600_000, "1h"),
            (3_930_000, "1h5m30s"),
        ] {
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
            assert_eq!(duration_ms(text), Ok(ms as f64));
        }
        assert_eq!(format_latency_ms(300.0), "300ms");
        assert_eq!(format_latency_ms(1500.0), "1.5s");
        assert_eq!(trim_float(0.5), "0.5");
        assert_eq!(trim_float(3.0), "3");
    }
}
