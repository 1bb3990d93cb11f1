//! Decoding one settled-transaction record (JSON, the contract in
//! `../shared/EVENTS.md`) into a validated [`Event`] or a [`Rejection`].
//!
//! This is the first stage of the hot path. Fields are borrowed from the
//! payload (`Cow` only allocates for strings with JSON escapes), the amount is
//! taken as its raw JSON text so it never passes through `f64`, and no
//! allocation happens for a well-formed event.

use crate::money::{self, AmountError, Fen};
use crate::reject::{Reason, Rejection};
use crate::time::{parse_rfc3339_millis, EpochMillis};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use xxhash_rust::xxh3::Xxh3;

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
        }
    }

    /// Decodes and validates one record. Never panics, whatever the bytes.
    pub fn decode<'a>(&self, payload: &'a [u8]) -> Result<Event<'a>, Rejection> {
        // serde would also read a struct from a JSON array; the contract is an object.
        if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Rejection::new(Reason::Malformed, "expected a JSON object"));
        }
        let wire: WireEvent<'a> = serde_json::from_slice(payload).map_err(|err| Rejection {
            reason: Reason::Malformed,
            detail: Cow::Owned(err.to_string()),
        })?;
        let txn_id = wire.txn_id.map(|t| t.0).ok_or_else(|| missing("txn_id"))?;
        let merchant_id = wire
            .merchant_id
            .map(|t| t.0)
            .ok_or_else(|| missing("merchant_id"))?;
        let amount = wire.amount.ok_or_else(|| missing("amount"))?;
        let channel = wire
            .channel
            .map(|t| t.0)
            .ok_or_else(|| missing("channel"))?;
        let settled_at_text = wire
            .settled_at
            .map(|t| t.0)
            .ok_or_else(|| missing("settled_at"))?;

        check_id(&txn_id, "txn_id must be 1..64 bytes")?;
        check_id(&merchant_id, "merchant_id must be 1..64 bytes")?;

        let units = amount_minor_units(amount.get()).map_err(amount_rejection)?;
        let currency = wire.currency.as_ref().map_or("CNY", |t| &*t.0);
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

        let settled_at = parse_rfc3339_millis(&settled_at_text).ok_or(Rejection::new(
            Reason::InvalidTimestamp,
            "settled_at is not an RFC 3339 timestamp with offset",
        ))?;
        let mobile = channel == "mobile";

        let mut hasher = Xxh3::new();
        hasher.update(merchant_id.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(channel.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(currency.as_bytes());
        hasher.update(&amount_fen.to_le_bytes());
        hasher.update(&units.to_le_bytes());
        hasher.update(&settled_at.to_le_bytes());

        Ok(Event {
            txn_id,
            merchant_id,
            amount_fen,
            mobile,
            settled_at,
            fingerprint: hasher.digest(),
        })
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
/// number's literal text. Strings with escapes are refused (no decimal needs one).
fn amount_minor_units(raw: &str) -> Result<u64, AmountError> {
    let text = match raw.as_bytes() {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => &raw[1..raw.len() - 1],
        [b'"', ..] => return Err(AmountError::NotANumber),
        [b'-' | b'0'..=b'9', ..] => raw,
        _ => return Err(AmountError::NotANumber),
    };
    money::parse_minor_units(text)
}

fn amount_rejection(err: AmountError) -> Rejection {
    let detail = match err {
        AmountError::NotANumber => "amount is not a decimal number or numeric string",
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
}
