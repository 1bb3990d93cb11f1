//! Exact money. Inside the engine every amount is an integer number of fen
//! (CNY minor units, 1/100 yuan) in a `u64`; `rust_decimal` is used only at
//! the edges: converting a foreign currency at a configured rate, and
//! printing decimal strings.
//!
//! An amount's text is the contract's plain decimal (`../shared/EVENTS.md`),
//! `[0-9]+(\.[0-9]+)?` and nothing else, read into hundredths with integer
//! arithmetic. Nothing here ever goes through `f64`.

use crate::swar::{all_digits, byte, eight_digits, pair_values};
use rust_decimal::prelude::*;
use rust_decimal::RoundingStrategy;

/// An amount in fen (1/100 CNY).
pub type Fen = u64;

/// Why an amount's text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a plain decimal `[0-9]+(\.[0-9]+)?`: letters, empty, a sign, an
    /// exponent, an underscore, whitespace, a point without digits on both
    /// sides, a JSON value of another type...
    #[error("amount is not a plain decimal")]
    NotANumber,
    /// Zero. (A negative amount has a sign, which no plain decimal has:
    /// [`AmountError::NotANumber`].)
    #[error("amount must be greater than zero")]
    NotPositive,
    /// More than two decimal places of value (e.g. `1.005`).
    #[error("amount has more than 2 decimal places")]
    TooPrecise,
    /// Larger than the configured per-transaction maximum.
    #[error("amount exceeds the per-transaction maximum")]
    TooLarge,
}

/// The longest integer part the fast path takes: 15 digits keeps `digits * 100`
/// far inside `u64`, and anything longer is handed to `rust_decimal`.
const FAST_MAX_INT_DIGITS: usize = 15;

/// Parses an amount's text (a JSON string's content or a JSON number's text)
/// into minor units (hundredths) without rounding.
///
/// The text must be a plain decimal, `[0-9]+(\.[0-9]+)?`: no sign (so a
/// negative amount is not a number here, rather than a non-positive one), no
/// exponent, no underscore or whitespace, no point without digits on both
/// sides. Leading zeros (`0012.50`) match that and are read as their value;
/// so are trailing zeros (`12.500` is 12.50). The value must then be above
/// zero with at most two decimal places.
///
/// The usual `digits[.d[d]]` text takes an integer fast path, the rest
/// (leading or trailing zeros past two places, long numbers, everything
/// refused) the general one, and the two agree on every input the fast path
/// accepts (a property test checks this).
pub fn parse_minor_units(text: &str) -> Result<u64, AmountError> {
    plain_minor_units(text).unwrap_or_else(|| parse_decimal(text))
}

/// [`parse_minor_units`] on the text its fast path takes (plain
/// `digits[.d[d]]`), `None` for the rest; for a caller that checks more
/// before the general path. Always inlined: returned through memory, its
/// 16-byte result was written in parts and read back whole, a stalled
/// store-to-load forward per record.
#[inline(always)]
pub(crate) fn plain_minor_units(text: &str) -> Option<Result<u64, AmountError>> {
    match parse_plain(text.as_bytes())? {
        0 => Some(Err(AmountError::NotPositive)),
        units => Some(Ok(units)),
    }
}

/// The fast path: `^[0-9]{1,15}(\.[0-9]{1,2})?$`.
#[inline(always)]
fn parse_plain(bytes: &[u8]) -> Option<u64> {
    parse_cents(bytes).or_else(|| parse_plain_digits(bytes))
}

/// The usual amount, `^[0-9]{1,5}\.[0-9]{2}$` (`1299.00`), checked and read
/// as one eight-byte word: the digit loop of [`parse_plain_digits`] exits
/// at a different count from one record to the next, a mispredicted branch
/// per amount.
#[inline(always)]
fn parse_cents(bytes: &[u8]) -> Option<u64> {
    let len = bytes.len();
    if !(4..=8).contains(&len) {
        return None;
    }
    // Two four-byte loads that overlap (on the same bytes) cover the text,
    // then it is moved to the top of the word: the point at byte 5, the
    // cents at 6 and 7, the integer digits just below the point.
    let first = u32::from_le_bytes(*bytes.first_chunk()?);
    let last = u32::from_le_bytes(*bytes.last_chunk()?);
    let word = (u64::from(first) | u64::from(last) << (8 * (len - 4))) << (8 * (8 - len));
    let int_mask = (u64::MAX << (8 * (8 - len))) & 0x0000_00ff_ffff_ffff;
    const CENTS: u64 = 0xffff_0000_0000_0000;
    if byte(word, 5) != u32::from(b'.') || !all_digits(word, int_mask | CENTS) {
        return None;
    }
    let digits = word & 0x0f0f_0f0f_0f0f_0f0f;
    // The integer digits moved up to end at byte 7, the point and cents shifted out.
    let int = eight_digits((digits & int_mask) << 24);
    let cents = u64::from(byte(pair_values(digits), 6));
    Some(int * 100 + cents)
}

/// `^[0-9]{1,15}(\.[0-9]{1,2})?$`, in one pass.
#[inline(never)]
fn parse_plain_digits(bytes: &[u8]) -> Option<u64> {
    let mut units: u64 = 0;
    let mut rest = bytes;
    while let [digit @ b'0'..=b'9', tail @ ..] = rest {
        if bytes.len() - tail.len() > FAST_MAX_INT_DIGITS {
            return None;
        }
        units = units * 10 + u64::from(digit - b'0');
        rest = tail;
    }
    if rest.len() == bytes.len() {
        return None;
    }
    let hundredths = match *rest {
        [] => 0,
        [b'.', tenths @ b'0'..=b'9'] => u64::from(tenths - b'0') * 10,
        [b'.', tenths @ b'0'..=b'9', cents @ b'0'..=b'9'] => {
            u64::from(tenths - b'0') * 10 + u64::from(cents - b'0')
        }
        _ => return None,
    };
    Some(units * 100 + hundredths)
}

/// The general path, for text the fast path declines: the whole grammar
/// checked first, then the value read with checked integer arithmetic, so
/// that any number of leading or trailing zeros is exact and an overlong
/// number is refused, not wrapped.
#[inline(never)]
pub(crate) fn parse_decimal(text: &str) -> Result<u64, AmountError> {
    let (int, frac) = match text.split_once('.') {
        // A point needs digits after it (and before it: checked below).
        Some((_, "")) => return Err(AmountError::NotANumber),
        Some(parts) => parts,
        None => (text, ""),
    };
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    // (A second point is not a digit.)
    if int.is_empty() || !all_digits(int) || !all_digits(frac) {
        return Err(AmountError::NotANumber);
    }
    // Leading zeros of the integer part and trailing zeros of the
    // fraction carry no value.
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    if int.is_empty() && frac.is_empty() {
        return Err(AmountError::NotPositive);
    }
    if frac.len() > 2 {
        return Err(AmountError::TooPrecise);
    }
    let hundredths = frac.bytes().chain(std::iter::repeat(b'0')).take(2);
    int.bytes()
        .chain(hundredths)
        .try_fold(0u64, |units, digit| {
            units.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or(AmountError::TooLarge)
}

/// Converts an exact decimal into hundredths, refusing anything that would
/// need rounding.
pub fn decimal_to_minor_units(value: Decimal) -> Result<u64, AmountError> {
    if value <= Decimal::ZERO {
        return Err(AmountError::NotPositive);
    }
    let value = value.normalize();
    if value.scale() > 2 {
        return Err(AmountError::TooPrecise);
    }
    let hundredths = value
        .checked_mul(Decimal::ONE_HUNDRED)
        .ok_or(AmountError::TooLarge)?;
    hundredths.to_u64().ok_or(AmountError::TooLarge)
}

/// Converts foreign minor units to fen at `cny_per_unit`, rounding half to
/// even (banker's rounding) to the nearest fen, so that conversion errors do
/// not drift in one direction over millions of events.
pub fn convert_to_fen(minor_units: u64, cny_per_unit: Decimal) -> Result<Fen, AmountError> {
    let amount = Decimal::from_i128_with_scale(i128::from(minor_units), 2);
    let cny = amount
        .checked_mul(cny_per_unit)
        .ok_or(AmountError::TooLarge)?
        .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    // A tiny foreign amount can round to zero fen: refused as not positive.
    decimal_to_minor_units(cny)
}

/// Fen as an exact `Decimal` in yuan (`12345` → `123.45`).
pub fn fen_to_decimal(fen: Fen) -> Decimal {
    Decimal::from_i128_with_scale(i128::from(fen), 2)
}

/// Fen as the contract's money string: yuan with exactly two places.
pub fn format_fen(fen: Fen) -> String {
    let mut text = String::with_capacity(24);
    push_fen(&mut text, fen);
    text
}

/// Appends `fen` as yuan with exactly two places.
pub fn push_fen(out: &mut String, fen: Fen) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "{}.{:02}", fen / 100, fen % 100);
}

/// Parses a configured yuan amount (e.g. a threshold `"100000000.00"`) into fen.
pub fn parse_cny(text: &str) -> Result<Fen, AmountError> {
    parse_minor_units(text.trim())
}

/// Converts a CNY total in fen to another currency's minor units at
/// `units_per_cny`, rounding half to even. Used for the USD headline figure.
pub fn convert_from_fen(fen: Fen, units_per_cny: Decimal) -> Decimal {
    fen_to_decimal(fen)
        .checked_mul(units_per_cny)
        .unwrap_or(Decimal::MAX)
        .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// Formats a decimal amount with exactly two places (`25.3` → `"25.30"`).
pub fn format_decimal_2dp(value: Decimal) -> String {
    let mut value = value.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    value.rescale(2);
    value.to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    /// The contract's amount rule, written apart from the parser: a state
    /// machine for `[0-9]+(\.[0-9]+)?` over characters, then the value from
    /// `rust_decimal` (exact for texts of up to 28 digits), above zero with
    /// at most two places. `None` for every text the contract refuses.
    pub(crate) fn reference_minor_units(text: &str) -> Option<u64> {
        #[derive(Clone, Copy)]
        enum State {
            Start,
            Int,
            Point,
            Frac,
        }
        let mut state = State::Start;
        for c in text.chars() {
            state = match (state, c) {
                (State::Start | State::Int, '0'..='9') => State::Int,
                (State::Int, '.') => State::Point,
                (State::Point | State::Frac, '0'..='9') => State::Frac,
                _ => return None,
            };
        }
        if !matches!(state, State::Int | State::Frac) {
            return None;
        }
        let value = Decimal::from_str_exact(text).ok()?.normalize();
        if value <= Decimal::ZERO || value.scale() > 2 {
            return None;
        }
        value.checked_mul(Decimal::ONE_HUNDRED)?.to_u64()
    }

    /// Texts around the amount rule: digits and points, with underscores,
    /// signs, exponents, whitespace and non-ASCII digits and signs mixed in.
    pub(crate) fn amount_like_text() -> BoxedStrategy<String> {
        prop_oneof![
            4 => "[0-9]{1,6}(\\.[0-9]{1,4})?",
            2 => "0{0,4}[0-9]{1,4}\\.?[0-9]{0,4}0{0,4}",
            3 => "[0-9_]{1,6}(\\.[0-9_]{0,3})?",
            3 => "[-+]?[0-9]{0,4}\\.?[0-9]{0,3}([eE][-+]?[0-9]{0,2})?",
            3 => "[0-9._+eE -]{0,10}",
            2 => "[0-9. \t\u{2212}\u{ff10}-\u{ff19}\u{0660}-\u{0669}\u{e9}\u{a0}]{0,8}",
            1 => "\\PC{0,10}",
        ]
        .boxed()
    }

    #[test]
    fn plain_amounts_become_fen() {
        assert_eq!(parse_minor_units("1299.00"), Ok(129_900));
        assert_eq!(parse_minor_units("1299.5"), Ok(129_950));
        assert_eq!(parse_minor_units("0.01"), Ok(1));
        assert_eq!(parse_minor_units("7"), Ok(700));
    }

    #[test]
    fn trailing_zeros_beyond_two_places_are_exact_and_accepted() {
        assert_eq!(parse_minor_units("12.500"), Ok(1250));
        assert_eq!(
            parse_minor_units("1.50000000000000000000000000000000000000"),
            Ok(150)
        );
    }

    #[test]
    fn leading_zeros_are_read_as_their_value() {
        assert_eq!(parse_minor_units("0012.50"), Ok(1250));
        assert_eq!(parse_minor_units("00.01"), Ok(1));
        assert_eq!(
            parse_minor_units("0000000000000000000000000000000000000001.5"),
            Ok(150)
        );
        assert_eq!(parse_minor_units("0000"), Err(AmountError::NotPositive));
    }

    #[test]
    fn three_decimal_places_of_value_are_refused() {
        assert_eq!(parse_minor_units("1.005"), Err(AmountError::TooPrecise));
        assert_eq!(parse_minor_units("12.345"), Err(AmountError::TooPrecise));
        assert_eq!(parse_minor_units("0.0010"), Err(AmountError::TooPrecise));
    }

    #[test]
    fn underscores_in_amounts_are_invalid() {
        for text in ["1_000.00", "1__0", "1_", "1._5", "_1", "1.5_", "1_0.5_0"] {
            assert_eq!(
                parse_minor_units(text),
                Err(AmountError::NotANumber),
                "{text}"
            );
        }
    }

    #[test]
    fn signs_exponents_and_whitespace_are_invalid() {
        for text in [
            "-5.00",
            "-0",
            "+5",
            "1e3",
            "1E3",
            "1.2e2",
            "1e-3",
            " 1",
            "1 ",
            "1\t",
            "\u{a0}1",
            "0x10",
            "\u{2212}5",
            "\u{ff11}",
            "\u{0661}",
            "NaN",
            "inf",
        ] {
            assert_eq!(
                parse_minor_units(text),
                Err(AmountError::NotANumber),
                "{text:?}"
            );
        }
    }

    #[test]
    fn points_need_digits_on_both_sides() {
        for text in [".5", "5.", ".", "1..2", "1.2.3", "1.2."] {
            assert_eq!(
                parse_minor_units(text),
                Err(AmountError::NotANumber),
                "{text}"
            );
        }
    }

    #[test]
    fn zero_and_garbage_are_refused() {
        assert_eq!(parse_minor_units("0.00"), Err(AmountError::NotPositive));
        assert_eq!(parse_minor_units(""), Err(AmountError::NotANumber));
        assert_eq!(parse_minor_units("12,00"), Err(AmountError::NotANumber));
        assert_eq!(parse_minor_units("1.2.3"), Err(AmountError::NotANumber));
        assert_eq!(parse_minor_units("true"), Err(AmountError::NotANumber));
        assert_eq!(parse_minor_units("NaN"), Err(AmountError::NotANumber));
    }

    #[test]
    fn huge_numbers_are_refused_not_wrapped() {
        assert_eq!(
            parse_minor_units("99999999999999999999999999999999999999"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            parse_minor_units("184467440737095516.16"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(parse_minor_units("184467440737095516.15"), Ok(u64::MAX));
    }

    #[test]
    fn conversion_rounds_half_to_even() {
        let half = Decimal::from_str("0.5").unwrap();
        assert_eq!(convert_to_fen(1, half), Err(AmountError::NotPositive)); // 0.005 → 0.00
        assert_eq!(convert_to_fen(3, half), Ok(2)); // 0.015 → 0.02
        assert_eq!(convert_to_fen(5, half), Ok(2)); // 0.025 → 0.02
        let usd = Decimal::from_str("6.6490").unwrap();
        assert_eq!(convert_to_fen(10_000, usd), Ok(66_490));
    }

    #[test]
    fn money_strings_have_two_places() {
        assert_eq!(format_fen(0), "0.00");
        assert_eq!(format_fen(5), "0.05");
        assert_eq!(format_fen(16_820_000_000_000), "168200000000.00");
        let usd = convert_from_fen(16_820_000_000_000, Decimal::from_str("0.1504").unwrap());
        assert_eq!(format_decimal_2dp(usd), "25297280000.00");
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_the_general_path(int in "[0-9]{1,15}", frac in proptest::option::of("[0-9]{1,2}")) {
            let text = match &frac { Some(f) => format!("{int}.{f}"), None => int.clone() };
            prop_assert_eq!(parse_minor_units(&text), parse_decimal(&text));
        }

        #[test]
        fn fast_path_declines_what_it_does_not_own(text in "[0-9.]{0,20}") {
            // Exactly `[0-9]{1,15}(\.[0-9]{1,2})?` is taken; the rest goes to the general path.
            let plain = text.split_once('.').map_or(
                (1..=FAST_MAX_INT_DIGITS).contains(&text.len()),
                |(int, frac)| {
                    (1..=FAST_MAX_INT_DIGITS).contains(&int.len())
                        && (1..=2).contains(&frac.len())
                        && !frac.contains('.')
                },
            );
            prop_assert_eq!(parse_plain(text.as_bytes()).is_some(), plain);
            if plain {
                prop_assert_eq!(parse_minor_units(&text), parse_decimal(&text));
            }
        }

        #[test]
        fn usual_shape_reads_as_the_digit_loop(
            text in "[0-9]{0,7}\\.[0-9]{0,3}|[0-9.]{0,9}|[0-9]{1,5}\\.[0-9]{2}",
        ) {
            let usual = parse_cents(text.as_bytes());
            if usual.is_some() {
                prop_assert_eq!(usual, parse_plain_digits(text.as_bytes()));
            }
            let shape = text.len() <= 8
                && text.split_once('.').is_some_and(|(int, cents)| {
                    !int.is_empty() && cents.len() == 2 && !cents.contains('.')
                });
            prop_assert_eq!(usual.is_some(), shape, "{}", text);
        }

        #[test]
        fn format_then_parse_round_trips(fen in 1u64..=1_000_000_000_000_000) {
            prop_assert_eq!(parse_minor_units(&format_fen(fen)), Ok(fen));
        }

        #[test]
        fn amounts_follow_the_contract_rule(text in amount_like_text()) {
            prop_assert_eq!(parse_minor_units(&text).ok(), reference_minor_units(&text), "{:?}", text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse_minor_units(&text);
        }
    }
}
