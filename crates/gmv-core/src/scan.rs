//! The decoder's fast path: a single-pass scanner for the flat JSON object of
//! the event contract (`../shared/EVENTS.md`), used by [`crate::event`]
//! before `serde_json`.
//!
//! It only ever *accepts* input on which `serde_json` would produce exactly the
//! same fields: a valid UTF-8 object whose keys and string values have no
//! escapes or control characters, whose known fields hold strings (`amount`: a
//! string or a number), each known field at most once, and whose unknown
//! fields hold a string, number, `true`, `false` or `null`. Anything else
//! (escapes, nested values, `null` in a known field, duplicate keys, any
//! syntax error) returns `None`, and the caller decodes the record with
//! `serde_json`, so every rejection and its detail stay serde's. A property
//! test in `event.rs` checks that both paths agree.

use std::borrow::Cow;

/// The raw fields of one record, before validation. `amount` is the value's
/// JSON text (a string with its quotes, or a number literal).
#[derive(Default)]
pub(crate) struct Fields<'a> {
    pub(crate) txn_id: Option<Cow<'a, str>>,
    pub(crate) merchant_id: Option<Cow<'a, str>>,
    pub(crate) amount: Option<&'a str>,
    pub(crate) currency: Option<Cow<'a, str>>,
    pub(crate) channel: Option<Cow<'a, str>>,
    pub(crate) settled_at: Option<Cow<'a, str>>,
}

/// Scans `payload` as a flat event object; `None` means "ask `serde_json`".
pub(crate) fn scan(payload: &[u8]) -> Option<Fields<'_>> {
    // Whole-record UTF-8 check: serde_json validates every string it reads;
    // outside strings a non-ASCII byte is a syntax error either way.
    let text = std::str::from_utf8(payload).ok()?;
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut fields = Fields::default();
    if s.next()? != b'{' {
        return None;
    }
    s.skip_ws();
    if s.peek()? == b'}' {
        s.pos += 1;
    } else {
        loop {
            if s.next()? != b'"' {
                return None;
            }
            let key = s.key()?;
            s.skip_ws();
            if s.next()? != b':' {
                return None;
            }
            s.skip_ws();
            match key {
                Key::TxnId => s.text_field(&mut fields.txn_id)?,
                Key::MerchantId => s.text_field(&mut fields.merchant_id)?,
                Key::Amount => {
                    // serde refuses a repeated field; let it say so.
                    if fields.amount.is_some() {
                        return None;
                    }
                    fields.amount = Some(s.amount()?);
                }
                Key::Currency => s.text_field(&mut fields.currency)?,
                Key::Channel => s.text_field(&mut fields.channel)?,
                Key::SettledAt => s.text_field(&mut fields.settled_at)?,
                Key::Other => s.skip_scalar()?,
            }
            s.skip_ws();
            match s.next()? {
                b',' => s.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    // serde_json allows trailing whitespace and nothing else.
    s.skip_ws();
    (s.pos == s.bytes.len()).then_some(fields)
}

/// An object key, as far as the event is concerned.
#[derive(Clone, Copy)]
enum Key {
    TxnId,
    MerchantId,
    Amount,
    Currency,
    Channel,
    SettledAt,
    Other,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// JSON whitespace, as serde_json defines it.
    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The body of a string whose opening quote was just read, up to and
    /// past the closing quote. `None` on an escape or a control character.
    #[inline(always)]
    fn string_body(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let len = string_len(&self.bytes[start..])?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        // Both ends are ASCII quotes, so this slice is on char boundaries.
        self.text.get(start..start + len)
    }

    /// An object key whose opening quote was just read, up to and past the
    /// closing quote. The known keys are compared whole (with their closing
    /// quote) against constants, so a key that gets past them is no known
    /// key; it is scanned as a string.
    #[inline(always)]
    fn key(&mut self) -> Option<Key> {
        let rest = &self.bytes[self.pos..];
        let known = match rest.first()? {
            b't' if rest.starts_with(b"txn_id\"") => Some((Key::TxnId, 7)),
            b'm' if rest.starts_with(b"merchant_id\"") => Some((Key::MerchantId, 12)),
            b'a' if rest.starts_with(b"amount\"") => Some((Key::Amount, 7)),
            b'c' if rest.starts_with(b"currency\"") => Some((Key::Currency, 9)),
            b'c' if rest.starts_with(b"channel\"") => Some((Key::Channel, 8)),
            b's' if rest.starts_with(b"settled_at\"") => Some((Key::SettledAt, 11)),
            _ => None,
        };
        if let Some((key, len)) = known {
            self.pos += len;
            return Some(key);
        }
        self.string_body().map(|_| Key::Other)
    }

    /// A number literal, exactly serde_json's grammar:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        // A digit straight after a leading zero ("01") is left for the
        // caller's next-token check to refuse, as serde_json refuses it.
        self.text.get(start..self.pos)
    }

    #[inline]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }

    /// A known text field's string value; `None` (ask serde) if the field
    /// was already seen or the value is not a plain string.
    #[inline(always)]
    fn text_field(&mut self, slot: &mut Option<Cow<'a, str>>) -> Option<()> {
        if slot.is_some() || self.next()? != b'"' {
            return None;
        }
        *slot = Some(Cow::Borrowed(self.string_body()?));
        Some(())
    }

    /// `amount`'s raw JSON text: a string (with its quotes) or a number.
    fn amount(&mut self) -> Option<&'a str> {
        let start = self.pos;
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.string_body()?;
                self.text.get(start..self.pos)
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Skips an ignored field's value if it is a scalar.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.string_body().map(drop)
            }
            b'-' | b'0'..=b'9' => self.number().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }
}

/// Where a string body ends: the index of the first `"`, `\` or control
/// character (below 0x20), eight bytes at a time.
#[inline(always)]
fn string_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let found = special_bytes(word);
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    if at == bytes.len() {
        return None;
    }
    let Some(last) = bytes.len().checked_sub(8) else {
        return bytes
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
    };
    // The last 1..=7 bytes: one load of the final eight, ignoring the
    // `at - last` bytes already scanned (they hold no flag, so none of the
    // flags kept can be a borrow's false positive).
    let word = u64::from_le_bytes(bytes[last..].try_into().ok()?);
    let found = special_bytes(word) & (u64::MAX << ((at - last) * 8));
    (found != 0).then(|| last + found.trailing_zeros() as usize / 8)
}

/// The high bit of each byte of `word` (little-endian) that is `"`, `\` or
/// below 0x20. Only the lowest flag is exact: a borrow out of a flagged byte
/// can flag the bytes above it, so callers use `trailing_zeros`.
#[inline]
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (quote | backslash | control) & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn string_len_finds_the_first_special_byte(
            bytes in proptest::collection::vec(prop_oneof![30 => 0x20u8..0x80, 1 => any::<u8>()], 0..40),
        ) {
            let naive = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(string_len(&bytes), naive);
        }
    }
}
