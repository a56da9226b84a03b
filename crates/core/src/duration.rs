//! Durations as people write them: `250ms`, `2s`, `1.5s`, `10m`, `1h`.

use crate::{Error, Millis, Result};

/// Parses a duration like `250ms`, `2s`, `1.5s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Millis> {
    let t = text.trim();
    let bad = || Error::invalid(format!("duration \"{text}\" is not a duration (write e.g. 500ms, 2s, 10m or 1h)"));
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err(bad()),
    };
    let ms = number * scale;
    if !ms.is_finite() || !(0.0..=1e12).contains(&ms) {
        return Err(bad());
    }
    Ok(ms.round() as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        assert_eq!(parse_duration("1.5s").unwrap(), 1_500);
        assert_eq!(parse_duration("10m").unwrap(), 600_000);
        assert_eq!(parse_duration("1h").unwrap(), 3_600_000);
        for bad in ["", "5", "s", "2 days", "-1s", "1e400s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.message.contains("500ms, 2s"), "{bad:?}: {err}");
        }
    }
}
