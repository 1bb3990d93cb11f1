//! Event time: RFC 3339 `settled_at` parsing into epoch milliseconds, and the
//! festival window that decides which events count.
//!
//! The hot path parses the common shape (`YYYY-MM-DDTHH:MM:SS[.fff]±HH:MM` or
//! `Z`) by hand; anything it declines goes to chrono's RFC 3339 parser, so the
//! accepted language is exactly RFC 3339 and the fast path is only a shortcut
//! (a property test checks they agree).

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone};

/// Milliseconds since the Unix epoch.
pub type EpochMillis = i64;

/// Parses an RFC 3339 timestamp with offset into epoch milliseconds
/// (sub-millisecond digits are truncated toward the past).
pub fn parse_rfc3339_millis(text: &str) -> Option<EpochMillis> {
    parse_fast(text.as_bytes()).or_else(|| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis())
    })
}

fn digits(bytes: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    Some(value)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_fast(b: &[u8]) -> Option<EpochMillis> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't') {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0u32;
    if rest.first() == Some(&b'.') {
        let frac_len = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac_len == 0 {
            return None;
        }
        let frac = &rest[1..1 + frac_len];
        for i in 0..3 {
            millis = millis * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
        }
        rest = &rest[1 + frac_len..];
    }
    let offset_minutes: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = i64::from(digits(&[*h1, *h2])?);
            let om = i64::from(digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = oh * 60 + om;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds =
        days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    Some(seconds * 1000 + i64::from(millis))
}

/// The festival window: events with `start <= settled_at < end` count.
/// Times are printed in the offset of `start` (Beijing time by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
}

/// The longest window the engine keeps per-second counts for (31 days).
pub const MAX_WINDOW_SECONDS: i64 = 31 * 86_400;

impl Window {
    /// A window; `None` unless `start < end`, both on whole seconds, and at
    /// most [`MAX_WINDOW_SECONDS`] long.
    pub fn new(start: DateTime<FixedOffset>, end: DateTime<FixedOffset>) -> Option<Self> {
        let length = end.timestamp() - start.timestamp();
        let whole = start.timestamp_subsec_nanos() == 0 && end.timestamp_subsec_nanos() == 0;
        (whole && length > 0 && length <= MAX_WINDOW_SECONDS).then_some(Self { start, end })
    }

    /// 2017-11-11T00:00:00+08:00 to 2017-11-12T00:00:00+08:00.
    pub fn singles_day_2017() -> Self {
        let beijing = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
        let start = beijing
            .with_ymd_and_hms(2017, 11, 11, 0, 0, 0)
            .single()
            .expect("a fixed offset has no gaps");
        Self {
            start,
            end: start + chrono::Duration::days(1),
        }
    }

    /// Start, as epoch milliseconds.
    pub fn start_millis(&self) -> EpochMillis {
        self.start.timestamp_millis()
    }

    /// End (exclusive), as epoch milliseconds.
    pub fn end_millis(&self) -> EpochMillis {
        self.end.timestamp_millis()
    }

    /// Whether an event time counts.
    pub fn contains(&self, at: EpochMillis) -> bool {
        at >= self.start_millis() && at < self.end_millis()
    }

    /// Whole seconds in the window.
    pub fn seconds(&self) -> usize {
        // Bounded by MAX_WINDOW_SECONDS at construction.
        (self.end.timestamp() - self.start.timestamp()) as usize
    }

    /// Whole minutes in the window, rounded up.
    pub fn minutes(&self) -> usize {
        self.seconds().div_ceil(60)
    }

    /// The offset printed times use.
    pub fn offset(&self) -> FixedOffset {
        *self.start.offset()
    }

    /// Start as RFC 3339.
    pub fn start_rfc3339(&self) -> String {
        self.start.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// End as RFC 3339.
    pub fn end_rfc3339(&self) -> String {
        self.end.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Epoch milliseconds printed as RFC 3339 in the window's offset
    /// (milliseconds shown only when non-zero).
    pub fn format(&self, at: EpochMillis) -> String {
        match self.offset().timestamp_millis_opt(at).single() {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            None => at.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn beijing_midnight_is_utc_four_pm() {
        let ms = parse_rfc3339_millis("2017-11-11T00:00:00+08:00").unwrap();
        assert_eq!(ms, parse_rfc3339_millis("2017-11-10T16:00:00Z").unwrap());
        assert_eq!(ms, 1_510_329_600_000);
    }

    #[test]
    fn fractions_are_truncated_to_millis() {
        let a = parse_rfc3339_millis("2017-11-11T00:05:12.340+08:00").unwrap();
        let b = parse_rfc3339_millis("2017-11-11T00:05:12.3409999+08:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a % 1000, 340);
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in [
            "2017-02-29T00:00:00Z",
            "2017-13-01T00:00:00Z",
            "2017-11-11T24:00:00Z",
            "2017-11-11 00:00",
            "2017-11-11T00:00:00",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn window_contains_start_not_end() {
        let w = Window::singles_day_2017();
        assert!(w.contains(w.start_millis()));
        assert!(!w.contains(w.end_millis()));
        assert!(!w.contains(w.start_millis() - 1));
        assert_eq!(w.seconds(), 86_400);
        assert_eq!(
            w.format(w.start_millis() + 5_000),
            "2017-11-11T00:00:05+08:00"
        );
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_chrono(
            secs in -2_000_000_000i64..4_000_000_000,
            millis in 0u32..1000,
            offset_min in -(23 * 60 + 59)..(23 * 60 + 59i32),
            zulu in any::<bool>(),
        ) {
            let offset = FixedOffset::east_opt(offset_min * 60).unwrap();
            let t = offset.timestamp_millis_opt(secs * 1000 + i64::from(millis)).unwrap();
            let text = if zulu {
                t.with_timezone(&chrono::Utc).to_rfc3339_opts(SecondsFormat::Millis, true)
            } else {
                t.to_rfc3339_opts(SecondsFormat::Millis, true)
            };
            prop_assert_eq!(parse_fast(text.as_bytes()), Some(t.timestamp_millis()));
            prop_assert_eq!(
                parse_rfc3339_millis(&text),
                DateTime::parse_from_rfc3339(&text).ok().map(|t| t.timestamp_millis())
            );
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse_rfc3339_millis(&text);
        }
    }
}
