//! Small value formats every layer reads or writes the same way: sizes in
//! config files (`512MiB`), Arrow's `Date32` days, hex digests.

use chrono::NaiveDate;

/// Parse a size: a number of bytes, or a number (decimals allowed) with a
/// unit, decimal (`k`/`KB`, `M`/`MB`, `G`/`GB`) or binary (`KiB`, `MiB`,
/// `GiB`), case-insensitive: `512MiB`, `1.5GiB`, `4GB`, `1000000`.
pub fn parse_bytes(value: &str) -> Option<usize> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * multiplier;
    (bytes.is_finite() && bytes <= usize::MAX as f64).then_some(bytes as usize)
}

/// Days since 1970-01-01: Arrow's `Date32`.
pub fn epoch_days(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (date - epoch).num_days() as i32
}

/// The date `days` days after 1970-01-01 (the inverse of [`epoch_days`]).
pub fn date_of_epoch_days(days: i32) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    epoch + chrono::TimeDelta::days(i64::from(days))
}

/// An amount in cents as a plain decimal, `-1234.05`: how manifests and
/// messages write money (the report formats it per locale).
pub fn decimal_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        cents.unsigned_abs() / 100,
        cents.unsigned_abs() % 100
    )
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_as_decimals() {
        assert_eq!(decimal_cents(123_405), "1234.05");
        assert_eq!(decimal_cents(-5), "-0.05");
        assert_eq!(decimal_cents(0), "0.00");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512MiB"), Some(512 * 1024 * 1024));
        assert_eq!(parse_bytes("2GiB"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("1.5GB"), Some(1_500_000_000));
        assert_eq!(parse_bytes("1.5GiB"), Some(3 * 512 * 1024 * 1024));
        assert_eq!(parse_bytes(" 8mib "), Some(8 << 20));
        assert_eq!(parse_bytes("1000000"), Some(1_000_000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("1e999GiB"), None);
        assert_eq!(parse_bytes("GiB"), None);
    }

    #[test]
    fn days_and_hex() {
        assert_eq!(epoch_days(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
        assert_eq!(
            epoch_days(NaiveDate::from_ymd_opt(1969, 12, 31).unwrap()),
            -1
        );
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
