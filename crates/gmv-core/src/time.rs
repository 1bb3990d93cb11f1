//! Event time: RFC 3339 `settled_at` parsing into epoch milliseconds, and the
//! festival window that decides which events count.
//!
//! The parser is hand-written and strict (see [`parse_rfc3339_millis`] for
//! the exact rules): the usual shape (`YYYY-MM-DDTHH:MM:SS.fff±HH:MM`) is
//! checked and read a word at a time, and each thread remembers the last
//! valid date it read and its day number, since consecutive events nearly
//! always share it. chrono's own RFC 3339 parser is not used for events: it
//! also takes a leap second (read as the next second), a space for the `T`,
//! and a U+2212 minus sign in the offset, none of which the contract does.

use crate::swar::{all_digits, byte, pair_values};
use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone};
use std::cell::Cell;

/// Milliseconds since the Unix epoch.
pub type EpochMillis = i64;

/// Parses an RFC 3339 `date-time` (section 5.6) into epoch milliseconds;
/// sub-millisecond digits are truncated toward the past. `None` unless the
/// text is, exactly:
///
/// - `YYYY-MM-DD`: a real Gregorian date of a four-digit year, month 01–12,
///   day 01 to the month's last (February 29 only in a leap year);
/// - `T` or `t`: RFC 3339 reads its letters case-insensitively. A space is
///   refused: the RFC's prose lets an application choose one "for the sake
///   of readability", but it is not in the grammar, and the contract's
///   producers write `T`;
/// - `HH:MM:SS`: hours 00–23, minutes 00–59, seconds 00–59. A leap second
///   (`:60`) is refused: there is no leap-second table here to tell a real
///   one from a typo, and reading it as the next second (as chrono does)
///   would move an event across a window edge (`23:59:60+08:00` would count
///   on the next day);
/// - an optional fraction: `.` and one or more digits, of any length;
/// - the offset: `Z` or `z`, or an ASCII `+` or `-` then `HH:MM` (hours
///   00–23, minutes 00–59; `-00:00` is UTC). Any other sign character,
///   such as U+2212 MINUS SIGN, is refused.
pub fn parse_rfc3339_millis(text: &str) -> Option<EpochMillis> {
    parse(text.as_bytes())
}

/// The value of the two ASCII digits at `b[at..at + 2]`, or `None`.
#[inline]
fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    let tens = b[at].wrapping_sub(b'0');
    let ones = b[at + 1].wrapping_sub(b'0');
    (tens < 10 && ones < 10).then(|| u32::from(tens) * 10 + u32::from(ones))
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 to the given civil date of a four-digit year (Howard
/// Hinnant's algorithm). Counting years from 1 BCE keeps every intermediate
/// non-negative, so the divisions are plain unsigned ones.
#[inline(always)]
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    // Years from March of year 0 (so the leap day ends a year): -1..=9999
    // becomes 399..=10399 after shifting by one 400-year era.
    let y = u64::from(year) + 400 - u64::from(month <= 2);
    let m = u64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * m + 2) / 5 + u64::from(day) - 1;
    let days = y * 365 + y / 4 - y / 100 + y / 400 + day_of_year;
    // 1970-01-01 is day 865_565 of this count (Hinnant's 719_468 plus the
    // one era of 146_097 days added above).
    days as i64 - 865_565
}

thread_local! {
    /// The date this thread parsed last: its `YYYY-MM-` word and `DD` bytes,
    /// and its day number. Events come roughly in time order, so nearly
    /// every one falls on the previous one's date, which is then neither
    /// checked nor converted again. It starts as 0xff bytes, which no text
    /// holds (they are never UTF-8); all zero would match ten NUL bytes.
    static LAST_DATE: Cell<(u64, u16, i64)> = const { Cell::new((u64::MAX, u16::MAX, 0)) };
}

/// [`parse_rfc3339_millis`] on the text's bytes.
fn parse(b: &[u8]) -> Option<EpochMillis> {
    // `YYYY-MM-DDTHH:MM:SS` as two eight-byte words (`YYYY-MM-` and
    // `HH:MM:SS`, little-endian) plus the day and the `T` between them: each
    // word's digits and separators are checked, and its two-digit numbers
    // read, a few instructions for all of them.
    let head: &[u8; 20] = b.first_chunk()?;
    let date = u64::from_le_bytes(*head.first_chunk::<8>()?);
    let day = u16::from_le_bytes([head[8], head[9]]);
    let clock = u64::from_le_bytes(*head[11..].first_chunk::<8>()?);
    const CLOCK_DIGITS: u64 = 0xffff_00ff_ff00_ffff;
    const CLOCK_COLONS: u64 = 0x0000_ff00_00ff_0000;
    if clock & CLOCK_COLONS != 0x0000_3a00_003a_0000
        || !all_digits(clock, CLOCK_DIGITS)
        || !matches!(head[10], b'T' | b't')
    {
        return None;
    }
    let clock = pair_values(clock);
    let hour = byte(clock, 0);
    let minute = byte(clock, 3);
    let second = byte(clock, 6);
    // Seconds stop at 59: a leap second is refused (see
    // `parse_rfc3339_millis`).
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = match LAST_DATE.get() {
        (last, last_day, days) if (last, last_day) == (date, day) => days,
        _ => {
            let days = day_number(date, head)?;
            LAST_DATE.set((date, day, days));
            days
        }
    };
    let (millis, offset_minutes) = match usual_tail(&b[19..]) {
        Some(usual) => usual,
        None => tail(&b[19..])?,
    };
    let seconds =
        days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    Some(seconds * 1000 + i64::from(millis))
}

/// The day number (days since 1970-01-01) of the date `head` starts with,
/// `date` being its first eight bytes; `None` unless it is a valid
/// `YYYY-MM-DD`.
fn day_number(date: u64, head: &[u8; 20]) -> Option<i64> {
    const DATE_DIGITS: u64 = 0x00ff_ff00_ffff_ffff;
    const DATE_DASHES: u64 = 0xff00_00ff_0000_0000;
    if date & DATE_DASHES != 0x2d00_002d_0000_0000 || !all_digits(date, DATE_DIGITS) {
        return None;
    }
    let date = pair_values(date);
    let year = byte(date, 0) * 100 + byte(date, 2);
    let month = byte(date, 5);
    let day = two_digits(head, 8)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// The usual `.fff±HH:MM` after the seconds (`.340+08:00`), checked and
/// read as one word plus a byte: the general [`tail`] counts the fraction's
/// digits in a loop. `None` for anything else, which [`tail`] then reads.
#[inline(always)]
fn usual_tail(rest: &[u8]) -> Option<(u32, i64)> {
    let rest: &[u8; 10] = rest.try_into().ok()?;
    // `ff±HH:MM`: the fraction's last two digits, the sign and the offset.
    let word = u64::from_le_bytes(*rest.last_chunk()?);
    const DIGITS: u64 = 0xffff_00ff_ff00_ffff;
    const COLON: u64 = 0x0000_ff00_0000_0000;
    let tenths = u32::from(rest[1].wrapping_sub(b'0'));
    let sign = byte(word, 2);
    if rest[0] != b'.'
        || tenths > 9
        || !all_digits(word, DIGITS)
        || word & COLON != 0x0000_3a00_0000_0000
        || !(sign == u32::from(b'+') || sign == u32::from(b'-'))
    {
        return None;
    }
    let pairs = pair_values(word);
    let offset = offset_minutes(sign == u32::from(b'-'), byte(pairs, 3), byte(pairs, 6))?;
    Some((tenths * 100 + byte(pairs, 0), offset))
}

/// A `±HH:MM` offset in minutes; `None` past 23 hours or 59 minutes.
#[inline(always)]
fn offset_minutes(negative: bool, hours: u32, minutes: u32) -> Option<i64> {
    if hours > 23 || minutes > 59 {
        return None;
    }
    let total = i64::from(hours * 60 + minutes);
    Some(if negative { -total } else { total })
}

/// Milliseconds and offset (in minutes) from what follows the seconds: an
/// optional fraction of any length, then `Z` or `±HH:MM`.
#[inline(never)]
fn tail(mut rest: &[u8]) -> Option<(u32, i64)> {
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
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            offset_minutes(*sign == b'-', two_digits(rest, 1)?, two_digits(rest, 4)?)?
        }
        _ => return None,
    };
    Some((millis, offset_minutes))
}

/// The festival window: events with `start <= settled_at < end` count.
/// Times are printed in the offset of `start` (Beijing time by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
    /// `start` and `end` as epoch milliseconds, for the per-event checks
    /// (chrono would recompute them from the calendar fields each time).
    start_ms: EpochMillis,
    end_ms: EpochMillis,
}

/// The longest window the engine keeps per-second counts for (31 days).
pub const MAX_WINDOW_SECONDS: i64 = 31 * 86_400;

impl Window {
    /// A window; `None` unless `start < end`, both on whole seconds, and at
    /// most [`MAX_WINDOW_SECONDS`] long.
    pub fn new(start: DateTime<FixedOffset>, end: DateTime<FixedOffset>) -> Option<Self> {
        let length = end.timestamp() - start.timestamp();
        let whole = start.timestamp_subsec_nanos() == 0 && end.timestamp_subsec_nanos() == 0;
        (whole && length > 0 && length <= MAX_WINDOW_SECONDS).then(|| Self::from_bounds(start, end))
    }

    /// 2017-11-11T00:00:00+08:00 to 2017-11-12T00:00:00+08:00.
    pub fn singles_day_2017() -> Self {
        let beijing = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
        let start = beijing
            .with_ymd_and_hms(2017, 11, 11, 0, 0, 0)
            .single()
            .expect("a fixed offset has no gaps");
        Self::from_bounds(start, start + chrono::Duration::days(1))
    }

    fn from_bounds(start: DateTime<FixedOffset>, end: DateTime<FixedOffset>) -> Self {
        Self {
            start,
            end,
            start_ms: start.timestamp_millis(),
            end_ms: end.timestamp_millis(),
        }
    }

    /// Start, as epoch milliseconds.
    pub fn start_millis(&self) -> EpochMillis {
        self.start_ms
    }

    /// End (exclusive), as epoch milliseconds.
    pub fn end_millis(&self) -> EpochMillis {
        self.end_ms
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
pub(crate) mod tests {
    use super::*;
    use chrono::Timelike;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// The contract's timestamp rule, written apart from the parser:
    /// chrono's RFC 3339 parser, less what it takes beyond the rule (a leap
    /// second, which chrono keeps as a nanosecond count past one second; a
    /// separator other than `T` or `t`; any non-ASCII character, such as a
    /// U+2212 minus sign in the offset).
    pub(crate) fn reference_millis(text: &str) -> Option<EpochMillis> {
        let t = DateTime::parse_from_rfc3339(text).ok()?;
        let leap_second = t.nanosecond() >= 1_000_000_000;
        let separator = matches!(text.as_bytes().get(10), Some(b'T' | b't'));
        (text.is_ascii() && separator && !leap_second).then(|| t.timestamp_millis())
    }

    /// Timestamps around every corner of the rule: months 00 and 13, days 00
    /// to 32 (February 29 in leap and common years), hour 24, minute 60,
    /// leap seconds, separators, fractions, offsets out of range, without
    /// a colon, or signed with a non-ASCII minus.
    pub(crate) fn timestamp_like_text() -> BoxedStrategy<String> {
        let year = prop_oneof![
            4 => select(vec!["2017", "2016", "2000", "1900", "2100", "1970", "0000", "9999"])
                .prop_map(str::to_string),
            1 => "[0-9]{4}",
            1 => "[0-9]{3}|[0-9]{5}",
        ];
        let month = prop_oneof![8 => 1u32..=12, 1 => Just(0u32), 1 => Just(13u32)];
        let day = prop_oneof![
            6 => 1u32..=28,
            4 => 29u32..=31,
            1 => Just(0u32),
            1 => Just(32u32),
        ];
        let hour = prop_oneof![8 => 0u32..=23, 1 => Just(24u32)];
        let minute = prop_oneof![8 => 0u32..=59, 1 => Just(60u32)];
        let second = prop_oneof![6 => 0u32..=59, 2 => Just(60u32), 1 => Just(61u32)];
        let separator = select(vec!["T", "T", "T", "t", " ", "_", ""]);
        let fraction = prop_oneof![
            4 => Just(String::new()),
            4 => "\\.[0-9]{1,10}",
            1 => Just(".".to_string()),
        ];
        let sign = select(vec![
            "+", "-", "+", "-", "\u{2212}", "\u{ff0b}", "\u{2013}", "\u{fe63}",
        ]);
        let numeric = (
            sign,
            prop_oneof![8 => 0u32..=23, 1 => 24u32..=99],
            prop_oneof![8 => 0u32..=59, 1 => 60u32..=99],
        )
            .prop_map(|(sign, h, m)| format!("{sign}{h:02}:{m:02}"));
        let offset = prop_oneof![
            6 => numeric,
            3 => select(vec!["Z", "z", "-00:00", "+0800", "+08", "", "Z ", "UTC"])
                .prop_map(str::to_string),
        ];
        (
            (year, month, day),
            (separator, hour, minute, second),
            (fraction, offset),
        )
            .prop_map(
                |((year, month, day), (separator, hour, minute, second), (fraction, offset))| {
                    format!(
                        "{year}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}{fraction}{offset}"
                    )
                },
            )
            .boxed()
    }

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
    fn a_fresh_thread_remembers_no_date() {
        // Ten NUL bytes (a JSON `\u0000` escape decodes to one) read as the
        // date word and day a thread starts with; they are not a date.
        std::thread::spawn(|| {
            assert_eq!(parse_rfc3339_millis("\0\0\0\0\0\0\0\0\0\0T00:00:07Z"), None);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in [
            "2017-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2017-00-01T00:00:00Z",
            "2017-13-01T00:00:00Z",
            "2017-11-00T00:00:00Z",
            "2017-11-31T00:00:00Z",
            "2017-12-32T00:00:00Z",
            "2017-11-11T24:00:00Z",
            "2017-11-11T23:60:00Z",
            "2017-11-11 00:00",
            "2017-11-11T00:00:00",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
        }
        assert!(parse_rfc3339_millis("2016-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339_millis("2000-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn leap_seconds_are_invalid() {
        // One that would roll over into the festival day, and a real one
        // (inserted at the end of 2016, UTC).
        assert_eq!(parse_rfc3339_millis("2017-11-10T23:59:60+08:00"), None);
        assert_eq!(parse_rfc3339_millis("2016-12-31T23:59:60Z"), None);
        assert_eq!(parse_rfc3339_millis("2016-12-31T23:59:60.5Z"), None);
        assert!(parse_rfc3339_millis("2017-11-10T23:59:59.999+08:00").is_some());
    }

    #[test]
    fn offset_signs_must_be_ascii() {
        for sign in ["\u{2212}", "\u{ff0b}", "\u{ff0d}", "\u{2013}", "\u{fe63}"] {
            let text = format!("2017-11-11T00:00:00{sign}08:00");
            assert_eq!(parse_rfc3339_millis(&text), None, "{text}");
        }
        assert_eq!(
            parse_rfc3339_millis("2017-11-11T00:00:00-08:00"),
            Some(1_510_387_200_000)
        );
    }

    #[test]
    fn offsets_must_be_in_range_with_a_colon() {
        for offset in [
            "+24:00", "-24:00", "+23:60", "+0800", "+08", "+8:00", "UTC", "Z ",
        ] {
            let text = format!("2017-11-11T00:00:00{offset}");
            assert_eq!(parse_rfc3339_millis(&text), None, "{text}");
        }
        assert!(parse_rfc3339_millis("2017-11-11T00:00:00+23:59").is_some());
        assert_eq!(
            parse_rfc3339_millis("2017-11-11T00:00:00-00:00"),
            parse_rfc3339_millis("2017-11-11T00:00:00Z")
        );
    }

    #[test]
    fn lowercase_t_and_z_are_rfc_3339_a_space_is_not() {
        let upper = parse_rfc3339_millis("2017-11-11T00:00:00Z");
        assert!(upper.is_some());
        assert_eq!(parse_rfc3339_millis("2017-11-11t00:00:00z"), upper);
        assert_eq!(parse_rfc3339_millis("2017-11-11 00:00:00Z"), None);
        assert_eq!(parse_rfc3339_millis("2017-11-11_00:00:00Z"), None);
    }

    #[test]
    fn day_numbers_match_chrono_for_every_four_digit_year() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for year in 0..=9999u32 {
            for month in 1..=12 {
                for day in [1, days_in_month(year, month)] {
                    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month, day).unwrap();
                    assert_eq!(
                        days_from_civil(year, month, day),
                        (date - epoch).num_days(),
                        "{year}-{month}-{day}"
                    );
                }
            }
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
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn timestamps_follow_the_contract_rule(text in timestamp_like_text()) {
            prop_assert_eq!(parse_rfc3339_millis(&text), reference_millis(&text), "{}", text);
        }

        #[test]
        fn agrees_with_chrono_on_every_valid_time(
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
            prop_assert_eq!(parse_rfc3339_millis(&text), Some(t.timestamp_millis()));
            prop_assert_eq!(reference_millis(&text), Some(t.timestamp_millis()));
        }

        #[test]
        fn follows_the_contract_rule_on_damaged_text(
            secs in -62_000_000_000i64..253_000_000_000,
            millis in 0u32..1000,
            offset_min in -(23 * 60 + 59)..(23 * 60 + 59i32),
            format in 0usize..4,
            damage in proptest::collection::vec(
                (any::<proptest::sample::Index>(), proptest::sample::select(
                    b"0123456789:-+.TtZz /\x00\x7f\x80\xff".to_vec(),
                )),
                0..3,
            ),
        ) {
            // Damage that keeps the text UTF-8 is judged against the
            // reference both ways; any other damage must be refused.
            let offset = FixedOffset::east_opt(offset_min * 60).unwrap();
            let t = offset.timestamp_millis_opt(secs * 1000 + i64::from(millis)).unwrap();
            let format = [SecondsFormat::Secs, SecondsFormat::Millis, SecondsFormat::Micros, SecondsFormat::Nanos][format];
            let mut bytes = t.to_rfc3339_opts(format, offset_min == 0).into_bytes();
            for (at, b) in damage {
                let at = at.index(bytes.len());
                bytes[at] = b;
            }
            let want = std::str::from_utf8(&bytes).ok().and_then(reference_millis);
            prop_assert_eq!(parse(&bytes), want, "{:?}", String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn usual_tail_reads_as_the_general_one(
            millis in 0u32..1000,
            offset in "[+-][0-9]{2}:[0-9]{2}",
            damage in proptest::collection::vec(
                (any::<proptest::sample::Index>(), proptest::sample::select(
                    b"0123456789:+-.Zz /\x00\x7f\x80\xff".to_vec(),
                )),
                0..3,
            ),
            cut in 0usize..12,
        ) {
            // The usual shape, any offset (in range or not), then damaged or
            // cut short (or lengthened) so that the shortcut also declines.
            let mut rest = format!(".{millis:03}{offset}").into_bytes();
            for (at, b) in damage {
                let at = at.index(rest.len());
                rest[at] = b;
            }
            rest.resize(cut.max(8), b'0');
            let usual = usual_tail(&rest);
            if usual.is_some() {
                prop_assert_eq!(usual, tail(&rest), "{:?}", String::from_utf8_lossy(&rest));
            }
            let digits = |r: std::ops::Range<usize>| rest[r].iter().all(u8::is_ascii_digit);
            let shaped = rest.len() == 10
                && rest[0] == b'.'
                && digits(1..4)
                && matches!(rest[4], b'+' | b'-')
                && digits(5..7)
                && rest[7] == b':'
                && digits(8..10)
                && two_digits(&rest, 5).is_some_and(|h| h <= 23)
                && two_digits(&rest, 8).is_some_and(|m| m <= 59);
            prop_assert_eq!(usual.is_some(), shaped, "{:?}", String::from_utf8_lossy(&rest));
        }

        #[test]
        fn remembered_dates_give_what_the_reference_gives(
            texts in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "2017-11-11", "2017-11-11", "2017-11-12", "2016-02-29",
                        "2017-02-29", "2017-11-1x", "2017-11-00",
                    ]),
                    0u32..24,
                    0u32..60,
                    proptest::sample::select(vec![".340+08:00", "Z", ".5-05:30", "+08:00x"]),
                ),
                1..20,
            ),
        ) {
            // Runs of one date (remembered after the first), invalid dates
            // that share a valid one's prefix, and dates that come back.
            for (date, hour, minute, tail) in texts {
                let text = format!("{date}T{hour:02}:{minute:02}:07{tail}");
                prop_assert_eq!(parse_rfc3339_millis(&text), reference_millis(&text), "{}", text);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse_rfc3339_millis(&text);
        }
    }
}
