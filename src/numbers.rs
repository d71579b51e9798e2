//! Numbers as a reader scans them in reports and charts: `9,000` rather than `9000`, and axis
//! labels that stay short on a log scale.

/// `n` with a comma between every group of three digits: `1234567` -> `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An axis value: whole numbers with thousands separators, values below 10 with at most two
/// decimals (trailing zeros dropped), negatives and non-finite values as plain text.
pub fn axis(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return format!("{v}");
    }
    if v >= 10.0 || v.fract() == 0.0 {
        return thousands(v.round() as u64);
    }
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `part` of `whole` as a percentage with one decimal (`"2.5%"`), or `"—"` when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(123_456_789), "123,456,789");
        assert_eq!(axis(100_000.0), "100,000");
        assert_eq!(axis(0.5), "0.5");
        assert_eq!(axis(2.0), "2");
        assert_eq!(axis(0.25), "0.25");
        assert_eq!(percent(1, 40), "2.5%");
        assert_eq!(percent(3, 0), "—");
    }
}
