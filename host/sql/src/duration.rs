//! Durations as scripts write them: `500ms`, `5s`, `10min`, `1h`.

/// Microseconds in `text`: a non-negative integer and a unit, `us`, `ms`,
/// `s`, `min`, `h` or `d` (spaces between them allowed). `None` if it is
/// not one, or does not fit in an `i64`.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: i64 = number.parse().ok()?;
    let scale = unit_scale(unit.trim())?;
    number.checked_mul(scale)
}

/// Microseconds per unit.
pub(crate) fn unit_scale(unit: &str) -> Option<i64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "us" | "µs" => 1,
        "ms" => 1_000,
        "s" | "sec" => 1_000_000,
        "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_microseconds() {
        assert_eq!(parse_duration("500ms"), Some(500_000));
        assert_eq!(parse_duration("5s"), Some(5_000_000));
        assert_eq!(parse_duration("10min"), Some(600_000_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000_000));
        assert_eq!(parse_duration("7 us"), Some(7));
        assert_eq!(parse_duration("5"), None, "a unit is needed");
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("99999999999999999d"), None);
    }
}
