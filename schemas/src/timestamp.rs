//! Timestamp normalisation for fields of type `timestamp`.
//!
//! arrow-json reads these fields as text (numbers are kept exactly as written, thanks to
//! `coerce_primitive`), and [`parse_instant`] turns each into nanoseconds since the unix
//! epoch, UTC.
//!
//! | value | read as |
//! |---|---|
//! | integer, \|n\| < 10^11 | seconds |
//! | integer, 10^11 ≤ \|n\| < 10^14 | milliseconds |
//! | integer, 10^14 ≤ \|n\| < 10^17 | microseconds |
//! | integer, \|n\| ≥ 10^17 | nanoseconds |
//! | decimal `i.f` | `i` picks the unit as above, `f` is the fraction of that unit |
//! | anything else | RFC 3339 (`2024-05-01T12:00:00.123456789Z`); a missing offset means UTC |
//!
//! Integers may arrive as JSON numbers or as strings of digits. The bands put every
//! seconds value up to year 5138 in the first row, and every millisecond value after
//! March 1973 in the second, so real event times never land in the wrong band.

const SECONDS_BELOW: u64 = 100_000_000_000;
const MILLIS_BELOW: u64 = 100_000_000_000_000;
const MICROS_BELOW: u64 = 100_000_000_000_000_000;

/// Nanoseconds since the epoch for one `timestamp` value, or `None` if it is not an
/// instant (or overflows the i64 nanosecond range, about years 1677 to 2262).
pub fn parse_instant(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let int_len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len > 0 && (int_len == digits.len() || digits[int_len] == b'.') {
        let fraction = if int_len == digits.len() {
            &[][..]
        } else {
            &digits[int_len + 1..]
        };
        if fraction.iter().all(u8::is_ascii_digit) {
            return parse_number(negative, &digits[..int_len], fraction);
        }
    }
    arrow_cast::parse::string_to_timestamp_nanos(text).ok()
}

/// Nanoseconds since the epoch for an integer `timestamp` value already read as a number
/// (its sign and magnitude): the same answer [`parse_instant`] gives for its digits.
pub(crate) fn from_integer(negative: bool, magnitude: u64) -> Option<i64> {
    in_nanos(negative, magnitude, &[])
}

fn parse_number(negative: bool, int_digits: &[u8], fraction: &[u8]) -> Option<i64> {
    let mut magnitude: u64 = 0;
    for digit in int_digits {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    in_nanos(negative, magnitude, fraction)
}

/// The unit by magnitude, then the fraction's digits as parts of that unit.
fn in_nanos(negative: bool, magnitude: u64, fraction: &[u8]) -> Option<i64> {
    let unit_nanos: u64 = if magnitude < SECONDS_BELOW {
        1_000_000_000
    } else if magnitude < MILLIS_BELOW {
        1_000_000
    } else if magnitude < MICROS_BELOW {
        1_000
    } else {
        1
    };
    let mut frac_nanos: u64 = 0;
    let mut scale = unit_nanos;
    for digit in fraction {
        scale /= 10;
        if scale == 0 {
            break;
        }
        frac_nanos += u64::from(digit - b'0') * scale;
    }
    let nanos = i128::from(magnitude) * i128::from(unit_nanos) + i128::from(frac_nanos);
    let nanos = if negative { -nanos } else { nanos };
    i64::try_from(nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::{from_integer, parse_instant};

    const INSTANT: i64 = 1_714_564_800_123_456_789;

    #[test]
    fn every_form_gives_the_same_instant() {
        assert_eq!(parse_instant("1714564800"), Some(1_714_564_800_000_000_000));
        assert_eq!(
            parse_instant("1714564800123"),
            Some(1_714_564_800_123_000_000)
        );
        assert_eq!(
            parse_instant("1714564800123456"),
            Some(1_714_564_800_123_456_000)
        );
        assert_eq!(parse_instant("1714564800123456789"), Some(INSTANT));
        assert_eq!(parse_instant("1714564800.123456789"), Some(INSTANT));
        assert_eq!(
            parse_instant("2024-05-01T12:00:00.123456789Z"),
            Some(INSTANT)
        );
        assert_eq!(
            parse_instant("2024-05-01T14:00:00.123456789+02:00"),
            Some(INSTANT)
        );
    }

    #[test]
    fn rejects_non_instants() {
        for text in [
            "",
            "-",
            "abc",
            "12a",
            "1.2.3",
            "99999999999999999999999",
            "2024-13-01T00:00:00Z",
        ] {
            assert_eq!(parse_instant(text), None, "{text}");
        }
    }

    #[test]
    fn integers_read_as_numbers_match_their_digits() {
        let mut magnitudes = vec![0, 1, 9, u64::MAX, i64::MAX as u64, 1 << 63];
        for band in [
            100_000_000_000u64,
            100_000_000_000_000,
            100_000_000_000_000_000,
            9_223_372_036,
            9_223_372_036_854,
            9_223_372_036_854_775,
        ] {
            magnitudes.extend([band - 1, band, band + 1]);
        }
        magnitudes.extend([1_714_564_800, 1_714_564_800_123, INSTANT as u64]);
        for magnitude in magnitudes {
            for negative in [false, true] {
                let text = format!("{}{magnitude}", if negative { "-" } else { "" });
                assert_eq!(
                    from_integer(negative, magnitude),
                    parse_instant(&text),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn small_and_negative_numbers_are_seconds() {
        assert_eq!(parse_instant("0"), Some(0));
        assert_eq!(parse_instant("-1"), Some(-1_000_000_000));
    }
}
