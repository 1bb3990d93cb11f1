//! How figures are written for people: digit grouping, money in words
//! ("CNY 168.2 billion", "US$25.3B", "CNY 100M") and percentages. Money is
//! rounded as a decimal, never through `f64`.

use rust_decimal::prelude::*;
use rust_decimal::RoundingStrategy;

/// `1234567` → `1,234,567`.
pub fn group_u64(n: u64) -> String {
    group_integer(&n.to_string())
}

/// Groups the integer part of a plain decimal text: `-1234567.50` → `-1,234,567.50`.
pub fn group_decimal_text(text: &str) -> String {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (int_part, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let mut out = String::with_capacity(text.len() + text.len() / 3);
    out.push_str(sign);
    out.push_str(&group_integer(int_part));
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

fn group_integer(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A decimal rounded half away from zero to `places`, always printed with
/// exactly that many decimals.
pub fn fixed(value: Decimal, places: u32) -> String {
    let rounded = value.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    format!("{rounded:.prec$}", prec = places as usize)
}

const THOUSAND: i64 = 1_000;
const MILLION: i64 = 1_000_000;
const BILLION: i64 = 1_000_000_000;

/// A CNY amount in words, one decimal: `CNY 168.2 billion`, `CNY 12.5 million`;
/// under a million, the exact grouped amount (`CNY 12,345.67`).
pub fn cny_words(cny: Decimal) -> String {
    let abs = cny.abs();
    if abs >= Decimal::from(BILLION) {
        format!(
            "CNY {} billion",
            group_decimal_text(&fixed(cny / Decimal::from(BILLION), 1))
        )
    } else if abs >= Decimal::from(MILLION) {
        format!("CNY {} million", fixed(cny / Decimal::from(MILLION), 1))
    } else {
        format!("CNY {}", group_decimal_text(&fixed(cny, 2)))
    }
}

/// A USD amount in the short form of the press: `US$25.3B`, `US$4.1M`, `US$12,345`.
pub fn usd_short(usd: Decimal) -> String {
    let abs = usd.abs();
    if abs >= Decimal::from(BILLION) {
        format!(
            "US${}B",
            group_decimal_text(&fixed(usd / Decimal::from(BILLION), 1))
        )
    } else if abs >= Decimal::from(MILLION) {
        format!("US${}M", fixed(usd / Decimal::from(MILLION), 1))
    } else {
        format!("US${}", group_decimal_text(&fixed(usd, 0)))
    }
}

/// A round amount (a threshold) in its shortest form: `100M`, `1B`, `1.5B`, `50K`, `999`.
pub fn amount_short(value: Decimal) -> String {
    let abs = value.abs();
    let (scaled, suffix) = if abs >= Decimal::from(BILLION) {
        (value / Decimal::from(BILLION), "B")
    } else if abs >= Decimal::from(MILLION) {
        (value / Decimal::from(MILLION), "M")
    } else if abs >= Decimal::from(THOUSAND) {
        (value / Decimal::from(THOUSAND), "K")
    } else {
        (value, "")
    };
    let text = scaled
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
        .to_string();
    format!("{}{suffix}", group_decimal_text(&text))
}

/// A fraction as a whole percentage: `0.8994` → `90%`.
pub fn percent(fraction: f64) -> String {
    format!("{}%", whole_percent(fraction))
}

/// A fraction as a whole percentage number: `0.8994` → `90`.
pub fn whole_percent(fraction: f64) -> i64 {
    (fraction * 100.0).round() as i64
}

/// A fraction as a percentage with one decimal: `0.8994` → `89.9%`.
pub fn percent_1dp(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// A growth fraction with its sign: `0.39` → `+39%`, `-0.05` → `-5%`.
pub fn signed_percent(fraction: f64) -> String {
    let p = whole_percent(fraction);
    if p > 0 {
        format!("+{p}%")
    } else {
        format!("{p}%")
    }
}

/// A change of share in percentage points with its sign: `0.08` → `+8.0 pp`.
pub fn signed_points(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p >= 0.05 {
        format!("+{p:.1} pp")
    } else if p <= -0.05 {
        format!("{p:.1} pp")
    } else {
        "0.0 pp".into()
    }
}

/// A fraction rounded to 4 places, for the JSON (stable, readable).
pub fn round4(fraction: f64) -> f64 {
    (fraction * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    #[test]
    fn digits_are_grouped_by_three() {
        assert_eq!(group_u64(0), "0");
        assert_eq!(group_u64(999), "999");
        assert_eq!(group_u64(256_000), "256,000");
        assert_eq!(group_u64(1_480_000_000), "1,480,000,000");
        assert_eq!(group_decimal_text("168200000000.00"), "168,200,000,000.00");
        assert_eq!(group_decimal_text("-1234.5"), "-1,234.5");
    }

    #[test]
    fn money_is_written_like_the_press_does() {
        assert_eq!(cny_words(d("168200000000.00")), "CNY 168.2 billion");
        assert_eq!(cny_words(d("168249999999.99")), "CNY 168.2 billion");
        assert_eq!(cny_words(d("168250000000.00")), "CNY 168.3 billion");
        assert_eq!(cny_words(d("3000000000")), "CNY 3.0 billion");
        assert_eq!(cny_words(d("1234567890123.00")), "CNY 1,234.6 billion");
        assert_eq!(cny_words(d("12500000")), "CNY 12.5 million");
        assert_eq!(cny_words(d("12345.6")), "CNY 12,345.60");
        assert_eq!(usd_short(d("25300000000.00")), "US$25.3B");
        assert_eq!(usd_short(d("4140000.00")), "US$4.1M");
        assert_eq!(usd_short(d("12345.50")), "US$12,346");
    }

    #[test]
    fn thresholds_take_their_shortest_form() {
        assert_eq!(amount_short(d("100000000.00")), "100M");
        assert_eq!(amount_short(d("500000000.00")), "500M");
        assert_eq!(amount_short(d("1000000000.00")), "1B");
        assert_eq!(amount_short(d("1500000000.00")), "1.5B");
        assert_eq!(amount_short(d("50000")), "50K");
        assert_eq!(amount_short(d("999.00")), "999");
    }

    #[test]
    fn percentages_round_and_sign() {
        assert_eq!(percent(0.8994), "90%");
        assert_eq!(percent_1dp(0.8994), "89.9%");
        assert_eq!(signed_percent(0.3935), "+39%");
        assert_eq!(signed_percent(-0.051), "-5%");
        assert_eq!(signed_percent(0.001), "0%");
        assert_eq!(signed_points(0.08), "+8.0 pp");
        assert_eq!(signed_points(-0.012), "-1.2 pp");
        assert_eq!(round4(0.123456), 0.1235);
    }
}
