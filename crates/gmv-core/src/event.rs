//! Decoding one settled-transaction record (JSON, the contract in
//! `../shared/EVENTS.md`) into a validated [`Event`] or a [`Rejection`].
//!
//! This is the first stage of the hot path. Fields are borrowed from the
//! payload (`Cow` only allocates for strings with JSON escapes), the amount is
//! taken as its raw JSON text so it never passes through `f64`, and no
//! allocation happens for a well-formed event.
//!
//! Two readers produce the same raw [`Fields`]: the single-pass scanner in
//! [`crate::scan`] for the usual flat, escape-free record (about three times
//! faster), and `serde_json` for everything the scanner declines. Validation
//! after that is shared, so every rule and rejection reason is the same
//! whichever reader ran; a property test checks that the two agree.

use crate::money::{self, AmountError, Fen};
use crate::reject::{Reason, Rejection};
use crate::scan::{self, Fields};
use crate::time::{parse_rfc3339_millis, EpochMillis};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// Longest `txn_id` / `merchant_id`, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// The record as it is on the wire; every field optional so that a missing
/// one is reported as `missing_field` rather than a parse error.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow, default)]
    txn_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    merchant_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    currency: Option<Text<'a>>,
    #[serde(borrow, default)]
    channel: Option<Text<'a>>,
    #[serde(borrow, default)]
    settled_at: Option<Text<'a>>,
}

/// A JSON string borrowed from the payload when it has no escapes. (serde's
/// own `Cow<str>` always copies when wrapped in `Option`.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// A validated settled transaction, amount already in CNY fen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// Unique per settled transaction; the dedup key.
    pub txn_id: Cow<'a, str>,
    /// The aggregation key.
    pub merchant_id: Cow<'a, str>,
    /// Amount in CNY fen (converted if the event was in another currency).
    pub amount_fen: Fen,
    /// Whether `channel == "mobile"`.
    pub mobile: bool,
    /// Event time.
    pub settled_at: EpochMillis,
    /// A hash of everything but `txn_id`, telling a redelivery (same) from a
    /// conflicting reuse of a `txn_id` (different).
    pub fingerprint: u64,
}

/// Rates that convert foreign currencies to CNY.
#[derive(Debug, Clone, Default)]
pub struct CurrencyTable {
    /// (ISO 4217 code, CNY per one unit). A short list: a linear scan beats hashing.
    rates: Vec<(String, Decimal)>,
}

impl CurrencyTable {
    /// A table from (code, CNY per unit) pairs. `CNY` itself needs no entry.
    pub fn new(rates: impl IntoIterator<Item = (String, Decimal)>) -> Self {
        Self {
            rates: rates.into_iter().collect(),
        }
    }

    /// CNY per unit of `code`; `None` if unknown.
    pub fn rate(&self, code: &str) -> Option<Decimal> {
        self.rates
            .iter()
            .find(|(known, _)| known == code)
            .map(|(_, rate)| *rate)
    }
}

/// Turns raw payloads into validated events.
#[derive(Debug, Clone)]
pub struct Decoder {
    rates: CurrencyTable,
    max_amount_fen: Fen,
    /// The block scan's vector width, detected once here rather than per
    /// record.
    vector: scan::Vector,
}

fn missing(field: &'static str) -> Rejection {
    Rejection::new(Reason::MissingField, field)
}

impl Decoder {
    /// A decoder with a currency table and a per-transaction maximum (in fen).
    pub fn new(rates: CurrencyTable, max_amount_fen: Fen) -> Self {
        Self {
            rates,
            max_amount_fen,
            vector: scan::Vector::detect(),
        }
    }

    /// Decodes and validates one record. Never panics, whatever the bytes.
    ///
    /// A flat, escape-free record (the usual case) is read by the hand-written
    /// scanner in [`crate::scan`]; anything it declines goes through
    /// `serde_json`, so both paths give the same event or the same rejection.
    pub fn decode<'a>(&self, payload: &'a [u8]) -> Result<Event<'a>, Rejection> {
        let mut fields = Fields::default();
        if scan::scan_into(payload, &mut fields, self.vector).is_none() {
            fields = serde_fields(payload)?;
        }
        self.validate(fields)
    }

    /// [`Decoder::decode`] without the fast path: the reference the fast path
    /// is tested against.
    #[cfg(test)]
    fn decode_with_serde<'a>(&self, payload: &'a [u8]) -> Result<Event<'a>, Rejection> {
        self.validate(serde_fields(payload)?)
    }

    fn validate<'a>(&self, wire: Fields<'a>) -> Result<Event<'a>, Rejection> {
        let txn_id = wire.txn_id.ok_or_else(|| missing("txn_id"))?;
        let merchant_id = wire.merchant_id.ok_or_else(|| missing("merchant_id"))?;
        let amount = wire.amount.ok_or_else(|| missing("amount"))?;
        let channel = wire.channel.ok_or_else(|| missing("channel"))?;
        let settled_at_text = wire.settled_at.ok_or_else(|| missing("settled_at"))?;

        check_id(&txn_id, "txn_id must be 1..64 bytes")?;
        check_id(&merchant_id, "merchant_id must be 1..64 bytes")?;

        let units = amount_minor_units(amount).map_err(amount_rejection)?;
        let currency = wire.currency.as_deref().unwrap_or("CNY");
        let amount_fen = if currency == "CNY" {
            units
        } else {
            let rate = self.rates.rate(currency).ok_or(Rejection::new(
                Reason::UnknownCurrency,
                "currency is not in the configured rate table",
            ))?;
            money::convert_to_fen(units, rate).map_err(amount_rejection)?
        };
        if amount_fen > self.max_amount_fen {
            return Err(amount_rejection(AmountError::TooLarge));
        }

        // The fingerprint's input is laid out before the timestamp is
        // parsed, so that its stores have left the store buffer by the time
        // the hash reads them back (a read spanning several pending stores
        // cannot be forwarded and stalls).
        let mut fingerprint_buf = [0; FINGERPRINT_STACK_BYTES];
        let fingerprint = Fingerprint::start(
            &mut fingerprint_buf,
            &merchant_id,
            &channel,
            currency,
            amount_fen,
            units,
        );
        let settled_at = parse_rfc3339_millis(&settled_at_text).ok_or(Rejection::new(
            Reason::InvalidTimestamp,
            "settled_at is not an RFC 3339 timestamp with offset",
        ))?;
        let mobile = channel == "mobile";
        let fingerprint = fingerprint.finish(settled_at);

        Ok(Event {
            txn_id,
            merchant_id,
            amount_fen,
            mobile,
            settled_at,
            fingerprint,
        })
    }
}

/// The general path: `serde_json` reads the record.
fn serde_fields(payload: &[u8]) -> Result<Fields<'_>, Rejection> {
    // serde_json checks the UTF-8 of the strings it reads but not of those
    // it skips (an unknown field's value), and the contract is UTF-8
    // throughout: the whole record is checked here, then read as text
    // (which spares serde_json its own per-string check).
    let text = std::str::from_utf8(payload).map_err(|err| Rejection {
        reason: Reason::Malformed,
        detail: Cow::Owned(format!("record is not UTF-8: {err}")),
    })?;
    // serde would also read a struct from a JSON array; the contract is an object.
    if text.bytes().find(|b| !b.is_ascii_whitespace()) != Some(b'{') {
        return Err(Rejection::new(Reason::Malformed, "expected a JSON object"));
    }
    let wire: WireEvent<'_> = serde_json::from_str(text).map_err(|err| Rejection {
        reason: Reason::Malformed,
        detail: Cow::Owned(err.to_string()),
    })?;
    Ok(Fields {
        txn_id: wire.txn_id.map(|t| t.0),
        merchant_id: wire.merchant_id.map(|t| t.0),
        amount: wire.amount.map(RawValue::get),
        currency: wire.currency.map(|t| t.0),
        channel: wire.channel.map(|t| t.0),
        settled_at: wire.settled_at.map(|t| t.0),
    })
}

/// Longest fingerprint input hashed in one shot from the stack (xxh3's own
/// short-input limit: up to it, the streaming hasher hashes its buffer in one
/// shot too, so both give the same digest).
const FINGERPRINT_STACK_BYTES: usize = 240;

/// A hash of everything but `txn_id`: the byte sequence `merchant_id 0xff
/// channel 0xff currency amount_fen units settled_at` (integers little-endian)
/// under XXH3-64. Hashed in one call from a stack buffer; xxh3's streaming
/// and one-shot forms agree, so the value is the same as feeding the parts
/// to [`Xxh3`] one by one (which a long `channel` still does).
#[cfg(test)]
fn fingerprint(
    merchant_id: &str,
    channel: &str,
    currency: &str,
    amount_fen: Fen,
    units: u64,
    settled_at: EpochMillis,
) -> u64 {
    let mut buf = [0; FINGERPRINT_STACK_BYTES];
    Fingerprint::start(&mut buf, merchant_id, channel, currency, amount_fen, units)
        .finish(settled_at)
}

/// The fingerprint's input (see [`fingerprint`]) being laid out: every part
/// but `settled_at`, which is known last.
struct Fingerprint<'a, 'b> {
    /// The input so far, when all of it fits. (Borrowed from the caller so
    /// that this struct stays small: moving it by value cost a `memcpy`.)
    buf: &'b mut [u8; FINGERPRINT_STACK_BYTES],
    /// Bytes of `buf` written, or `None` if the input is too long for it.
    len: Option<usize>,
    merchant_id: &'a str,
    channel: &'a str,
    currency: &'a str,
    amount_fen: Fen,
    units: u64,
}

impl<'a, 'b> Fingerprint<'a, 'b> {
    #[inline(always)]
    fn start(
        buf: &'b mut [u8; FINGERPRINT_STACK_BYTES],
        merchant_id: &'a str,
        channel: &'a str,
        currency: &'a str,
        amount_fen: Fen,
        units: u64,
    ) -> Self {
        let mut fingerprint = Self {
            buf,
            len: None,
            merchant_id,
            channel,
            currency,
            amount_fen,
            units,
        };
        let numbers = [amount_fen.to_le_bytes(), units.to_le_bytes()];
        let parts = fingerprint.leading_parts(&numbers);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len + size_of::<EpochMillis>() <= FINGERPRINT_STACK_BYTES {
            let mut at = 0;
            for part in parts {
                copy_short(&mut fingerprint.buf[at..at + part.len()], part);
                at += part.len();
            }
            fingerprint.len = Some(len);
        }
        fingerprint
    }

    /// Every part of the input but `settled_at`, in order; `numbers` holds
    /// `amount_fen` and `units` as little-endian bytes.
    #[inline(always)]
    fn leading_parts<'p>(&self, numbers: &'p [[u8; 8]; 2]) -> [&'p [u8]; 7]
    where
        'a: 'p,
    {
        [
            self.merchant_id.as_bytes(),
            &[0xff],
            self.channel.as_bytes(),
            &[0xff],
            self.currency.as_bytes(),
            &numbers[0],
            &numbers[1],
        ]
    }

    #[inline(always)]
    fn finish(self, settled_at: EpochMillis) -> u64 {
        let time = settled_at.to_le_bytes();
        match self.len {
            // `start` only lays the input out when `settled_at` fits after it.
            Some(len) => {
                self.buf[len..len + time.len()].copy_from_slice(&time);
                xxh3_64(&self.buf[..len + time.len()])
            }
            None => {
                let numbers = [self.amount_fen.to_le_bytes(), self.units.to_le_bytes()];
                let mut hasher = Xxh3::new();
                for part in self.leading_parts(&numbers) {
                    hasher.update(part);
                }
                hasher.update(&time);
                hasher.digest()
            }
        }
    }
}

/// `dst.copy_from_slice(src)`, with the usual short parts (an id, a
/// channel, a currency code) copied as two fixed-size moves that overlap in
/// the middle: a copy of unknown length is otherwise a call to `memcpy`,
/// three per record.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let len = src.len();
    match len {
        0 => {}
        1..=3 => {
            // First, middle and last byte: every byte of up to three.
            for at in [0, len / 2, len - 1] {
                dst[at] = src[at];
            }
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[len - 4..].copy_from_slice(&src[len - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[len - 8..].copy_from_slice(&src[len - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

fn check_id(id: &str, detail: &'static str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        Err(Rejection::new(Reason::InvalidField, detail))
    } else {
        Ok(())
    }
}

/// The amount's minor units from its raw JSON text: a string's content or a
/// number's literal text. Both must be the contract's plain decimal (see
/// [`money::parse_minor_units`]), so a JSON number with a sign or an
/// exponent (`-1`, `1e3`) is an invalid amount, as is a string with an
/// escape (no plain decimal needs one) or any other JSON value.
#[inline(always)]
fn amount_minor_units(raw: &str) -> Result<u64, AmountError> {
    // (Stripping the quotes as patterns, not slicing `raw[1..len - 1]`,
    // spares two char-boundary checks, an out-of-line call.)
    let text = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    // The usual amount is read inline; everything else, accepted or
    // refused, is the general path's to judge.
    if let Some(units) = money::plain_minor_units(text) {
        return units;
    }
    money::parse_decimal(text)
}

fn amount_rejection(err: AmountError) -> Rejection {
    let detail = match err {
        AmountError::NotANumber => {
            "amount is not a plain decimal (digits, optionally a point and digits)"
        }
        AmountError::NotPositive => "amount must be greater than zero",
        AmountError::TooPrecise => "amount has more than 2 decimal places",
        AmountError::TooLarge => "amount exceeds the per-transaction maximum",
    };
    Rejection::new(Reason::InvalidAmount, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    const SAMPLE: &str = r#"{"txn_id":"20171111000512340001","merchant_id":"m-000123","amount":"1299.00","currency":"CNY","channel":"mobile","settled_at":"2017-11-11T00:05:12.340+08:00"}"#;

    fn decoder() -> Decoder {
        let rates = CurrencyTable::new([("USD".to_string(), Decimal::from_str("6.6490").unwrap())]);
        Decoder::new(rates, 100_000_000 * 100)
    }

    fn reason(payload: &str) -> Reason {
        decoder().decode(payload.as_bytes()).unwrap_err().reason
    }

    #[test]
    fn contract_example_decodes_without_allocating_strings() {
        let event = decoder().decode(SAMPLE.as_bytes()).unwrap();
        assert!(matches!(event.txn_id, Cow::Borrowed(_)));
        assert!(matches!(event.merchant_id, Cow::Borrowed(_)));
        assert_eq!(event.merchant_id, "m-000123");
        assert_eq!(event.amount_fen, 129_900);
        assert!(event.mobile);
        assert_eq!(event.settled_at % 1000, 340);
    }

    #[test]
    fn amount_may_be_a_json_number_parsed_exactly() {
        let numeric = SAMPLE.replace(r#""1299.00""#, "0.29");
        assert_eq!(decoder().decode(numeric.as_bytes()).unwrap().amount_fen, 29);
    }

    #[test]
    fn currency_defaults_to_cny_and_foreign_is_converted() {
        let no_currency = SAMPLE.replace(r#""currency":"CNY","#, "");
        assert_eq!(
            decoder().decode(no_currency.as_bytes()).unwrap().amount_fen,
            129_900
        );
        let usd = SAMPLE.replace(
            r#""amount":"1299.00","currency":"CNY""#,
            r#""amount":"100.00","currency":"USD""#,
        );
        assert_eq!(decoder().decode(usd.as_bytes()).unwrap().amount_fen, 66_490);
    }

    #[test]
    fn each_bad_input_gets_its_reason() {
        assert_eq!(reason(&SAMPLE[..60]), Reason::Malformed);
        assert_eq!(reason("[]"), Reason::Malformed);
        assert_eq!(
            reason(&SAMPLE.replace(r#""m-000123""#, "123")),
            Reason::Malformed
        );
        assert_eq!(
            reason(&SAMPLE.replace(r#""channel":"mobile","#, "")),
            Reason::MissingField
        );
        assert_eq!(
            reason(&SAMPLE.replace(r#""1299.00""#, r#""-1.00""#)),
            Reason::InvalidAmount
        );
        assert_eq!(
            reason(&SAMPLE.replace(r#""1299.00""#, "0")),
            Reason::InvalidAmount
        );
        assert_eq!(
            reason(&SAMPLE.replace(r#""1299.00""#, r#""1.005""#)),
            Reason::InvalidAmount
        );
        assert_eq!(
            reason(&SAMPLE.replace(r#""1299.00""#, "true")),
            Reason::InvalidAmount
        );
        assert_eq!(
            reason(&SAMPLE.replace(r#""1299.00""#, "1e400")),
            Reason::InvalidAmount
        );
        assert_eq!(
            reason(&SAMPLE.replace(r#""CNY""#, r#""XYZ""#)),
            Reason::UnknownCurrency
        );
        assert_eq!(
            reason(&SAMPLE.replace("+08:00", "")),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            reason(&SAMPLE.replace(r#""m-000123""#, r#""""#)),
            Reason::InvalidField
        );
        let mut not_utf8 = SAMPLE.as_bytes().to_vec();
        not_utf8[30] = 0xff;
        assert_eq!(
            decoder().decode(&not_utf8).unwrap_err().reason,
            Reason::Malformed
        );
    }

    #[test]
    fn fingerprint_tells_redelivery_from_conflict() {
        let d = decoder();
        let a = d.decode(SAMPLE.as_bytes()).unwrap();
        let reordered = r#"{"settled_at":"2017-11-11T00:05:12.340+08:00","channel":"mobile","txn_id":"20171111000512340001","merchant_id":"m-000123","amount":1299.00}"#;
        assert_eq!(
            d.decode(reordered.as_bytes()).unwrap().fingerprint,
            a.fingerprint
        );
        let other = SAMPLE.replace("1299.00", "1299.01");
        assert_ne!(
            d.decode(other.as_bytes()).unwrap().fingerprint,
            a.fingerprint
        );
    }

    #[test]
    fn fingerprint_is_the_streaming_xxh3_of_its_parts() {
        let streaming = |channel: &str| {
            let mut hasher = Xxh3::new();
            hasher.update(b"m-000123");
            hasher.update(&[0xff]);
            hasher.update(channel.as_bytes());
            hasher.update(&[0xff]);
            hasher.update(b"USD");
            hasher.update(&66_490u64.to_le_bytes());
            hasher.update(&10_000u64.to_le_bytes());
            hasher.update(&1_510_329_912_340i64.to_le_bytes());
            hasher.digest()
        };
        for len in [0, 6, 180, 240, 1000] {
            let channel = "c".repeat(len);
            assert_eq!(
                fingerprint(
                    "m-000123",
                    &channel,
                    "USD",
                    66_490,
                    10_000,
                    1_510_329_912_340
                ),
                streaming(&channel),
                "channel of {len} bytes"
            );
        }
    }

    /// Every reader's verdict on `record`: the fast path (each vector
    /// width) and serde, which must agree, as the reason or the event.
    fn every_reader(record: &[u8]) -> Result<Event<'_>, Reason> {
        let serde = decoder().decode_with_serde(record);
        for vector in scan::Vector::available() {
            let d = Decoder {
                vector,
                ..decoder()
            };
            assert_eq!(d.decode(record), serde, "{vector:?}");
        }
        serde.map_err(|rejection| rejection.reason)
    }

    fn with_amount(raw: &str) -> String {
        SAMPLE.replace(r#""1299.00""#, raw)
    }

    fn with_time(text: &str) -> String {
        SAMPLE.replace("2017-11-11T00:05:12.340+08:00", text)
    }

    #[test]
    fn underscores_in_amounts_are_invalid() {
        for amount in ["1_000.00", "1__0", "1_", "1._5"] {
            let record = with_amount(&format!("\"{amount}\""));
            assert_eq!(
                every_reader(record.as_bytes()),
                Err(Reason::InvalidAmount),
                "{amount}"
            );
        }
    }

    #[test]
    fn amount_strings_are_plain_decimals_only() {
        for amount in [
            "-1.00",
            "+1.00",
            "1e3",
            " 1.00",
            "1.00 ",
            ".5",
            "5.",
            "\u{2212}1",
            "\\u0031",
        ] {
            let record = with_amount(&format!("\"{amount}\""));
            assert_eq!(
                every_reader(record.as_bytes()),
                Err(Reason::InvalidAmount),
                "{amount}"
            );
        }
        let zeros = with_amount(r#""0012.50""#);
        assert_eq!(
            every_reader(zeros.as_bytes()).map(|e| e.amount_fen),
            Ok(1250)
        );
        let trailing = with_amount(r#""12.500""#);
        assert_eq!(
            every_reader(trailing.as_bytes()).map(|e| e.amount_fen),
            Ok(1250)
        );
    }

    #[test]
    fn json_number_amounts_with_a_sign_or_exponent_are_invalid() {
        for amount in [
            "-1", "-0", "-12.50", "1e3", "1E3", "1.5e2", "1e-2", "12.5E+1",
        ] {
            let record = with_amount(amount);
            assert_eq!(
                every_reader(record.as_bytes()),
                Err(Reason::InvalidAmount),
                "{amount}"
            );
        }
        // A leading zero is not JSON at all.
        assert_eq!(
            every_reader(with_amount("012.50").as_bytes()),
            Err(Reason::Malformed)
        );
        for (amount, fen) in [("12", 1200), ("0.29", 29), ("12.500", 1250)] {
            let record = with_amount(amount);
            assert_eq!(
                every_reader(record.as_bytes()).map(|e| e.amount_fen),
                Ok(fen)
            );
        }
    }

    #[test]
    fn leap_second_timestamps_are_invalid() {
        let record = with_time("2017-11-10T23:59:60+08:00");
        assert_eq!(
            every_reader(record.as_bytes()),
            Err(Reason::InvalidTimestamp)
        );
    }

    #[test]
    fn non_ascii_offset_signs_are_invalid() {
        let record = with_time("2017-11-11T00:05:12.340\u{2212}08:00");
        assert_eq!(
            every_reader(record.as_bytes()),
            Err(Reason::InvalidTimestamp)
        );
        let escaped = with_time(r"2017-11-11T00:05:12.340\u221208:00");
        assert_eq!(
            every_reader(escaped.as_bytes()),
            Err(Reason::InvalidTimestamp)
        );
    }

    #[test]
    fn invalid_utf8_in_an_unknown_field_is_malformed() {
        for value in [
            &b"\xff"[..],
            b"\xc3",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"caf\xe9",
        ] {
            let mut record = br#"{"note":""#.to_vec();
            record.extend_from_slice(value);
            record.extend_from_slice(b"\",");
            record.extend_from_slice(&SAMPLE.as_bytes()[1..]);
            assert_eq!(every_reader(&record), Err(Reason::Malformed), "{value:?}");
        }
    }

    #[test]
    fn invalid_utf8_in_a_key_or_between_tokens_is_malformed() {
        let known_key = SAMPLE.as_bytes().to_vec();
        let unknown_key = [br#"{"no\xfft":1,"#, &SAMPLE.as_bytes()[1..]].concat();
        let at = |needle: &str| SAMPLE.find(needle).expect("in SAMPLE");
        for (mut record, at) in [
            (known_key.clone(), at("channel") + 3),
            (known_key.clone(), at(r#","channel""#) + 1),
            (known_key, SAMPLE.len() - 1),
            (unknown_key, 0),
        ] {
            if at > 0 {
                record.insert(at, 0x80);
            }
            assert_eq!(every_reader(&record), Err(Reason::Malformed));
        }
    }

    #[test]
    fn copy_short_copies_every_length() {
        let src: Vec<u8> = (1..=40).collect();
        for len in 0..=src.len() {
            let mut dst = vec![0; len];
            copy_short(&mut dst, &src[..len]);
            assert_eq!(dst, &src[..len], "{len} bytes");
        }
    }

    proptest::proptest! {
        #[test]
        fn fingerprint_is_the_streaming_xxh3_of_any_parts(
            merchant_id in "[a-z0-9-]{0,64}",
            channel in "[a-z]{0,20}|[a-z]{150,260}",
            currency in "[A-Z]{0,4}|[A-Z]{0,250}",
            amount_fen: u64,
            units: u64,
            settled_at: i64,
        ) {
            let mut hasher = Xxh3::new();
            hasher.update(merchant_id.as_bytes());
            hasher.update(&[0xff]);
            hasher.update(channel.as_bytes());
            hasher.update(&[0xff]);
            hasher.update(currency.as_bytes());
            hasher.update(&amount_fen.to_le_bytes());
            hasher.update(&units.to_le_bytes());
            hasher.update(&settled_at.to_le_bytes());
            proptest::prop_assert_eq!(
                fingerprint(&merchant_id, &channel, &currency, amount_fen, units, settled_at),
                hasher.digest()
            );
        }
    }

    #[test]
    fn usual_records_take_the_fast_path() {
        let extra = SAMPLE.replace(
            r#""channel""#,
            r#""n":-1.5e3,"s":"x","t":true,"f":false,"z":null,"channel""#,
        );
        let spaced = SAMPLE
            .replace(',', " ,\n\t")
            .replace(r#"":""#, "\" :\r \"")
            .replace('{', "{ ")
            .replace('}', " }\n");
        let reordered = r#"{"settled_at":"2017-11-11T00:05:12.340+08:00","channel":"mobile","txn_id":"t","merchant_id":"m","amount":1299.00}"#;
        let vectors = scan::Vector::available();
        for record in [SAMPLE, &extra, &spaced, reordered, "{}", "{ }"] {
            for &vector in &vectors {
                assert!(scan::scan(record.as_bytes(), vector).is_some(), "{record}");
            }
        }
        for declined in [
            &SAMPLE.replace("m-000123", r"m-\u0030"),
            &SAMPLE.replace(r#""mobile""#, "null"),
            &SAMPLE.replace(r#""channel""#, r#""x":{},"channel""#),
            &SAMPLE.replace(r#""channel""#, r#""txn_id":"again","channel""#),
            &SAMPLE.replace(r#""1299.00""#, "01"),
            &format!(" {SAMPLE}"),
            &format!("{SAMPLE}x"),
        ] {
            for &vector in &vectors {
                assert!(
                    scan::scan(declined.as_bytes(), vector).is_none(),
                    "{declined}"
                );
            }
        }
    }

    mod fast_path_agrees_with_serde {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::{select, Index};

        /// Every vector width's decoder gives what serde gives.
        fn agrees_with_serde(record: &[u8]) -> Result<(), TestCaseError> {
            for vector in scan::Vector::available() {
                let d = Decoder {
                    vector,
                    ..decoder()
                };
                prop_assert_eq!(
                    d.decode(record),
                    d.decode_with_serde(record),
                    "{:?}",
                    vector
                );
            }
            Ok(())
        }

        /// A JSON string literal with `body` inside the quotes, as is.
        fn quoted(body: impl Into<String>) -> String {
            format!("\"{}\"", body.into())
        }

        fn any_json_string() -> impl Strategy<Value = String> {
            "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap())
        }

        fn odd_value() -> impl Strategy<Value = String> {
            select(vec![
                "null",
                "true",
                "false",
                "12",
                "-0",
                "[]",
                "[1,\"a\"]",
                "{}",
                r#"{"a":{"b":null}}"#,
                r#""a\"b""#,
                r#""\u00e9""#,
                r#""""#,
                "tru",
                "nul",
                "1.",
                "01",
                "-",
                "1e",
                ".5",
            ])
            .prop_map(str::to_string)
        }

        fn text_value() -> BoxedStrategy<String> {
            prop_oneof![
                30 => "[a-zA-Z0-9_-]{0,70}".prop_map(quoted),
                2 => any_json_string(),
                1 => odd_value(),
            ]
            .boxed()
        }

        fn amount_value() -> BoxedStrategy<String> {
            let int = prop_oneof![8 => "[1-9][0-9]{0,7}", 1 => "0", 1 => "[0-9]{1,20}"];
            let frac = prop_oneof![6 => "[0-9]{1,2}", 1 => "[0-9]{0,4}"];
            let decimal = (int, proptest::option::of(frac)).prop_map(|(int, frac)| match frac {
                Some(frac) => format!("{int}.{frac}"),
                None => int,
            });
            let number = "-?[0-9]{1,4}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?";
            prop_oneof![
                20 => decimal.clone().prop_map(quoted),
                10 => decimal,
                4 => number,
                2 => number.prop_map(quoted),
                1 => any_json_string(),
                1 => odd_value(),
            ]
            .boxed()
        }

        fn currency_value() -> BoxedStrategy<String> {
            prop_oneof![
                20 => select(vec!["CNY", "CNY", "CNY", "USD", "USD", "XYZ", "", "cny"])
                    .prop_map(quoted),
                1 => odd_value(),
            ]
            .boxed()
        }

        fn channel_value() -> BoxedStrategy<String> {
            prop_oneof![
                20 => select(vec!["mobile", "pc", "offline", "", "Mobile"]).prop_map(quoted),
                1 => Just(r#""mobil\u0065""#.to_string()),
                1 => text_value(),
            ]
            .boxed()
        }

        fn time_value() -> BoxedStrategy<String> {
            let valid = (
                9u32..13,
                0u32..25,
                0u32..61,
                proptest::option::of("[0-9]{1,9}"),
                select(vec![
                    "+08:00", "+08:00", "Z", "-05:30", "z", "", "+24:00", "+0800",
                ]),
            )
                .prop_map(|(day, hour, minute, frac, offset)| {
                    let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
                    quoted(format!(
                        "2017-11-{day:02}T{hour:02}:{minute:02}:{minute:02}{frac}{offset}"
                    ))
                });
            prop_oneof![20 => valid, 1 => text_value()].boxed()
        }

        fn extra_field() -> BoxedStrategy<(String, String)> {
            let key = prop_oneof![
                20 => select(vec!["extra", "pad", "txn", "Amount", "amount ", "", "\u{e9}"]),
                // Unescapes to a known key: serde sees a repeated field.
                1 => Just(r"tx\u006e_id"),
            ]
            .prop_map(quoted);
            let value = prop_oneof![
                4 => any_json_string(),
                2 => "-?[0-9]{1,5}(\\.[0-9]{1,2})?",
                1 => odd_value(),
            ];
            (key, value).boxed()
        }

        /// A record's fields: each known one usually present, sometimes a
        /// repeated key, a few unknown ones, in any order.
        fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
            let entry = |name: &'static str, value: BoxedStrategy<String>| {
                value.prop_map(move |v| (quoted(name), v)).boxed()
            };
            let known = |name, value, p| proptest::option::weighted(p, entry(name, value));
            (
                known("txn_id", text_value(), 0.95),
                known("merchant_id", text_value(), 0.95),
                known("amount", amount_value(), 0.95),
                known("currency", currency_value(), 0.7),
                known("channel", channel_value(), 0.95),
                known("settled_at", time_value(), 0.95),
                proptest::collection::vec(extra_field(), 0..3),
                proptest::option::weighted(
                    0.05,
                    prop_oneof![
                        entry("txn_id", text_value()),
                        entry("amount", amount_value()),
                        entry("settled_at", odd_value().boxed()),
                    ],
                ),
            )
                .prop_map(|(a, b, c, d, e, f, extra, repeated)| {
                    let mut all: Vec<_> = [a, b, c, d, e, f].into_iter().flatten().collect();
                    all.extend(extra);
                    all.extend(repeated);
                    all
                })
                .prop_shuffle()
        }

        fn record() -> BoxedStrategy<Vec<u8>> {
            prop_oneof![spaced_record(), compact_record()].boxed()
        }

        /// A record with whitespace here and there (or none).
        fn spaced_record() -> BoxedStrategy<Vec<u8>> {
            record_with(prop_oneof![
                300 => Just(""),
                40 => Just(" "),
                10 => Just("\n"),
                5 => Just("\t "),
                5 => Just("\r\n"),
                // Not JSON whitespace: serde refuses it.
                1 => Just("\u{c}"),
            ])
        }

        /// A record without whitespace, as producers write them (and the
        /// scanner's quickest path reads them).
        fn compact_record() -> BoxedStrategy<Vec<u8>> {
            record_with(Just(""))
        }

        fn record_with(
            ws: impl Strategy<Value = &'static str> + 'static,
        ) -> BoxedStrategy<Vec<u8>> {
            (fields(), proptest::collection::vec(ws, 16))
                .prop_map(|(fields, ws)| {
                    let mut ws = ws.into_iter().cycle();
                    let mut out = String::from(ws.next().unwrap());
                    out.push('{');
                    for (i, (key, value)) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        for part in [ws.next().unwrap(), key, ws.next().unwrap(), ":"] {
                            out.push_str(part);
                        }
                        out.push_str(ws.next().unwrap());
                        out.push_str(value);
                        out.push_str(ws.next().unwrap());
                    }
                    out.push('}');
                    out.push_str(ws.next().unwrap());
                    out.into_bytes()
                })
                .boxed()
        }

        #[derive(Debug, Clone)]
        enum Mutation {
            Delete(Index),
            Insert(Index, u8),
            Replace(Index, u8),
            Truncate(Index),
        }

        fn mutation() -> impl Strategy<Value = Mutation> {
            let byte = select(b"\"\\,:{}[] \t0.1e-+atnul\x00\x1f\x7f\xc3\xa9\xff".to_vec());
            prop_oneof![
                any::<Index>().prop_map(Mutation::Delete),
                (any::<Index>(), byte.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
                (any::<Index>(), byte).prop_map(|(i, b)| Mutation::Replace(i, b)),
                any::<Index>().prop_map(Mutation::Truncate),
            ]
        }

        fn mutate(mut record: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
            for m in mutations {
                if record.is_empty() {
                    break;
                }
                match *m {
                    Mutation::Delete(i) => {
                        record.remove(i.index(record.len()));
                    }
                    Mutation::Insert(i, b) => record.insert(i.index(record.len() + 1), b),
                    Mutation::Replace(i, b) => {
                        let i = i.index(record.len());
                        record[i] = b;
                    }
                    Mutation::Truncate(i) => record.truncate(i.index(record.len())),
                }
            }
            record
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            #[test]
            fn on_generated_records(record in record()) {
                agrees_with_serde(&record)?;
            }

            #[test]
            fn on_records_of_every_length_around_block_sizes(
                record in record(),
                pad in 0usize..600,
                filler in select(vec!["x", " ", "\u{e9}", "\\\\", "\u{1}"]),
            ) {
                // A leading unknown field of `pad` bytes moves every later
                // byte across the 16- and 64-byte block boundaries, and long
                // records past the block path's limit.
                let Some(rest) = record.iter().position(|&b| b == b'{') else {
                    return Ok(());
                };
                let mut padded = record[..=rest].to_vec();
                padded.extend_from_slice(b"\"pad\":\"");
                padded.extend(std::iter::repeat_n(b'p', pad));
                padded.extend_from_slice(filler.as_bytes());
                padded.extend_from_slice(b"\",");
                padded.extend_from_slice(&record[rest + 1..]);
                agrees_with_serde(&padded)?;
            }

            #[test]
            fn on_mutated_records(
                record in record(),
                mutations in proptest::collection::vec(mutation(), 1..4),
            ) {
                let record = mutate(record, &mutations);
                agrees_with_serde(&record)?;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Every byte the block scan classifies (quote, backslash,
            /// control, whitespace, non-ASCII, a split UTF-8 sequence) and
            /// every structural byte put at every position of a record, by
            /// replacing and by inserting.
            #[test]
            fn with_a_special_byte_at_every_position(record in record()) {
                let specials: [&[u8]; 15] = [
                    b"\"", b"\\", b"\x00", b"\x1f", b"\n", b" ", b"\x7f", b"\x80", b"\xff",
                    "\u{e9}".as_bytes(), b"}", b"{", b",", b":", b"0",
                ];
                for at in 0..=record.len() {
                    for special in specials {
                        let mut inserted = record.clone();
                        inserted.splice(at..at, special.iter().copied());
                        agrees_with_serde(&inserted)?;
                        if at < record.len() {
                            let mut replaced = record.clone();
                            replaced.splice(at..=at, special.iter().copied());
                            agrees_with_serde(&replaced)?;
                        }
                    }
                }
            }
        }
    }

    /// Each input rule of the contract, on whole records, against a reference
    /// written apart from the decoder (`money::tests`, `time::tests`), on
    /// every reader.
    mod contract_rules {
        use super::*;
        use crate::money::tests::{amount_like_text, reference_minor_units};
        use crate::time::tests::{reference_millis, timestamp_like_text};
        use proptest::prelude::*;
        use proptest::sample::{select, Index};
        use std::ops::Range;

        /// The per-transaction maximum of the tests' [`decoder`].
        const MAX_FEN: Fen = 100_000_000 * 100;

        /// [`every_reader`] as a property: the readers agree, and the
        /// verdict is the event's (amount, time) or the reason.
        fn verdict(record: &[u8]) -> Result<Result<(Fen, EpochMillis), Reason>, TestCaseError> {
            let serde = decoder().decode_with_serde(record);
            for vector in scan::Vector::available() {
                let d = Decoder {
                    vector,
                    ..decoder()
                };
                prop_assert_eq!(&d.decode(record), &serde, "{:?}", vector);
            }
            Ok(serde
                .map(|e| (e.amount_fen, e.settled_at))
                .map_err(|r| r.reason))
        }

        fn expected_amount(text: &str) -> Result<Fen, Reason> {
            match reference_minor_units(text) {
                Some(fen) if fen <= MAX_FEN => Ok(fen),
                _ => Err(Reason::InvalidAmount),
            }
        }

        /// Where a corruption goes in a record.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Place {
            UnknownKey,
            UnknownValue,
            KnownKey,
            KnownValue,
            BetweenTokens,
        }

        /// The known fields of a valid record, as (key, JSON value).
        const KNOWN: [(&str, &str); 6] = [
            ("txn_id", r#""20171111000512340001""#),
            ("merchant_id", r#""m-000123""#),
            ("amount", r#""1299.00""#),
            ("currency", r#""CNY""#),
            ("channel", r#""mobile""#),
            ("settled_at", r#""2017-11-11T00:05:12.340+08:00""#),
        ];

        /// A valid record's fields, (key, JSON value, known), in any order,
        /// with one to three unknown string fields (some non-ASCII, some
        /// long enough to leave the block path).
        fn valid_fields() -> impl Strategy<Value = Vec<(String, String, bool)>> {
            let value = prop_oneof![
                4 => "[a-zA-Z0-9 ]{0,12}",
                2 => "\\PC{0,8}",
                1 => "x{500,600}",
            ]
            .prop_map(|v| serde_json::to_string(&v).expect("a string is JSON"));
            proptest::collection::vec(("x_[a-z]{0,6}", value), 1..4)
                .prop_map(|extra| {
                    let mut all: Vec<_> = KNOWN
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string(), true))
                        .collect();
                    all.extend(extra.into_iter().map(|(k, v)| (k, v, false)));
                    all
                })
                .prop_shuffle()
        }

        /// The record, and for each place the positions where an insertion
        /// lands in it (inside a key's or a string value's quotes, or between
        /// two tokens).
        fn layout(
            fields: &[(String, String, bool)],
            ws: &str,
        ) -> (Vec<u8>, Vec<(Place, Range<usize>)>) {
            let mut out = String::from("{");
            let mut places = Vec::new();
            for (i, (key, value, known)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                places.push((Place::BetweenTokens, out.len()..out.len() + 1));
                out.push_str(ws);
                let start = out.len() + 1;
                out.push_str(&format!("\"{key}\""));
                let place = if *known {
                    Place::KnownKey
                } else {
                    Place::UnknownKey
                };
                places.push((place, start..out.len()));
                out.push_str(ws);
                out.push(':');
                places.push((Place::BetweenTokens, out.len()..out.len() + 1));
                out.push_str(ws);
                let start = out.len() + 1;
                out.push_str(value);
                let place = if *known {
                    Place::KnownValue
                } else {
                    Place::UnknownValue
                };
                places.push((place, start..out.len()));
                out.push_str(ws);
            }
            places.push((Place::BetweenTokens, out.len()..out.len() + 1));
            out.push('}');
            (out.into_bytes(), places)
        }

        /// Byte sequences that are not UTF-8: stray continuation bytes,
        /// overlong forms, surrogates, code points past U+10FFFF, bytes
        /// UTF-8 never uses, sequences cut short; and random bytes.
        fn invalid_utf8() -> impl Strategy<Value = Vec<u8>> {
            let known: Vec<&'static [u8]> = vec![
                b"\x80",
                b"\xbf",
                b"\xc0\xaf",
                b"\xc1\xbf",
                b"\xc3",
                b"\xe2\x82",
                b"\xed\xa0\x80",
                b"\xed\xbf\xbf",
                b"\xe0\x80\xaf",
                b"\xf0\x82\x82\xac",
                b"\xf4\x90\x80\x80",
                b"\xf5\x80\x80\x80",
                b"\xf0\x9f\x98",
                b"\xfe",
                b"\xff",
            ];
            prop_oneof![
                3 => select(known).prop_map(<[u8]>::to_vec),
                1 => proptest::collection::vec(any::<u8>(), 1..6),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn amount_strings_follow_the_contract(text in amount_like_text()) {
                let json = serde_json::to_string(&text).expect("a string is JSON");
                let record = with_amount(&json);
                let got = verdict(record.as_bytes())?.map(|(fen, _)| fen);
                prop_assert_eq!(got, expected_amount(&text), "{}", json);
            }

            #[test]
            fn amount_numbers_follow_the_contract(
                text in "[-+]?[0-9]{0,5}(\\.[0-9]{0,3})?([eE][-+]?[0-9]{0,3})?|[0-9._eE+-]{1,8}",
            ) {
                let record = with_amount(&text);
                // Text that is no JSON number makes the record no JSON.
                let want = match serde_json::from_str::<serde::de::IgnoredAny>(&record) {
                    Ok(_) => expected_amount(&text),
                    Err(_) => Err(Reason::Malformed),
                };
                let got = verdict(record.as_bytes())?.map(|(fen, _)| fen);
                prop_assert_eq!(got, want, "{}", text);
            }

            #[test]
            fn timestamps_follow_the_contract(text in timestamp_like_text()) {
                let json = serde_json::to_string(&text).expect("a string is JSON");
                let record = with_time(json.trim_matches('"'));
                let got = verdict(record.as_bytes())?.map(|(_, at)| at);
                prop_assert_eq!(got, reference_millis(&text).ok_or(Reason::InvalidTimestamp), "{}", json);
            }

            #[test]
            fn invalid_utf8_anywhere_is_malformed(
                fields in valid_fields(),
                ws in select(vec!["", "", " ", "\n\t"]),
                place in select(vec![
                    Place::UnknownKey,
                    Place::UnknownValue,
                    Place::KnownKey,
                    Place::KnownValue,
                    Place::BetweenTokens,
                ]),
                which in any::<Index>(),
                at in any::<Index>(),
                bad in invalid_utf8(),
            ) {
                let (clean, places) = layout(&fields, ws);
                prop_assert!(verdict(&clean)?.is_ok(), "{}", String::from_utf8_lossy(&clean));
                let spots: Vec<_> = places.iter().filter(|(p, _)| *p == place).collect();
                let range = &spots[which.index(spots.len())].1;
                let at = range.start + at.index(range.len());
                let mut record = clean;
                record.splice(at..at, bad);
                // Random bytes next to a non-ASCII character can complete it.
                prop_assume!(std::str::from_utf8(&record).is_err());
                for vector in scan::Vector::available() {
                    prop_assert!(scan::scan(&record, vector).is_none(), "{:?}", vector);
                }
                prop_assert_eq!(verdict(&record)?, Err(Reason::Malformed));
            }
        }
    }
}
