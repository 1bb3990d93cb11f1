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
//!
//! A record is first classified ([`Blocks`]) in 16-byte blocks, or 32-byte
//! ones on a CPU with AVX2 ([`Vector`]: detected once, when the decoder is
//! built; both widths are tested against the bytewise definition): one pass
//! marks every `"`, `\`, control and non-ASCII byte. A record of ASCII only
//! is valid UTF-8 without further checking, and each string's end is then
//! read off that bitmap instead of being searched for. A record with any
//! non-ASCII byte or backslash, or longer than the bitmap, takes the
//! original path ([`std::str::from_utf8`] plus a per-string search), so
//! correctness in those cases never rests on the block scan. The usual
//! compact record (`{"key":"value",...}`, no whitespace, string values) is
//! read off the quote bitmap alone ([`scan_compact`]); any other record the
//! block scan takes goes through the general scanner.

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

/// Scans `payload` as a flat event object into `fields`, which must be
/// empty (all `None`); `None` means "ask `serde_json`", and `fields` then
/// holds whatever was read before the scanner gave up.
///
/// The caller owns `fields` so that the scanner writes each field in place:
/// returning the ~140-byte struct by value cost a `memcpy` per record.
#[inline(always)]
pub(crate) fn scan_into<'a>(
    payload: &'a [u8],
    fields: &mut Fields<'a>,
    vector: Vector,
) -> Option<()> {
    // The bitmap lives here and is lent out: returning it inside an
    // `Option` cost a copy.
    let mut quotes = [0; BLOCK_WORDS];
    match Blocks::classify(payload, &mut quotes, vector) {
        Some(text) => {
            if scan_compact(text, &quotes, fields).is_some() {
                return Some(());
            }
            // The general scanner wants empty fields.
            *fields = Fields::default();
            scan_text(text.as_str(), &Blocks { quotes: &quotes }, fields)
        }
        None => scan_searching(payload, fields),
    }
}

/// The usual record, read off its quote bitmap alone: `{"key":"value",...}`
/// with every value a string and no whitespace, so that the quotes come in
/// fours (key, value) separated by exactly `:` and `,`. `None` for anything
/// else (whitespace, a number, `null`, `{}`, a repeated known field...),
/// which the general scanner then reads.
///
/// The record is one [`Blocks::classify`] accepted (ASCII, no backslash, no
/// control byte in a string), so each pair of quotes encloses a plain
/// string, and what it accepts is exactly what the general scanner accepts
/// on such input, with the same fields.
#[inline(always)]
fn scan_compact<'a>(
    text: Ascii<'a>,
    quotes: &[u64; BLOCK_WORDS],
    fields: &mut Fields<'a>,
) -> Option<()> {
    let bytes = text.as_str().as_bytes();
    if bytes.first() != Some(&b'{') || bytes.last() != Some(&b'}') {
        return None;
    }
    let mut word = 0;
    let mut bits = quotes[0];
    let mut next_quote = || {
        while bits == 0 {
            word += 1;
            bits = *quotes.get(word)?;
        }
        let at = word * WORD_BYTES + bits.trailing_zeros() as usize;
        bits &= bits - 1;
        Some(at)
    };
    // Where the next key's opening quote must be.
    let mut key_open = 1;
    // The key expected next, if the record is in the usual order.
    let mut usual = USUAL_ORDER.iter();
    loop {
        if next_quote()? != key_open {
            return None;
        }
        let key_close = next_quote()?;
        let value_open = next_quote()?;
        let value_close = next_quote()?;
        if value_open != key_close + 2 || bytes.get(key_close + 1) != Some(&b':') {
            return None;
        }
        let value = text.get(value_open + 1, value_close)?;
        let key = match usual.next() {
            Some(expected) if expected.names(bytes, key_open + 1, key_close) => expected.key,
            _ => Key::of(bytes.get(key_open + 1..key_close)?),
        };
        let slot = match key {
            Key::TxnId => &mut fields.txn_id,
            Key::MerchantId => &mut fields.merchant_id,
            Key::Amount => {
                // serde refuses a repeated field; let it say so.
                if fields.amount.is_some() {
                    return None;
                }
                // The raw JSON text, quotes included.
                fields.amount = Some(text.get(value_open, value_close + 1)?);
                &mut None
            }
            Key::Currency => &mut fields.currency,
            Key::Channel => &mut fields.channel,
            Key::SettledAt => &mut fields.settled_at,
            Key::Other => &mut None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(Cow::Borrowed(value));
        match bytes.get(value_close + 1)? {
            b',' => key_open = value_close + 2,
            // The closing brace is the last byte (checked above).
            b'}' if value_close + 2 == bytes.len() => return Some(()),
            _ => return None,
        }
    }
}

/// [`scan_into`] into a fresh [`Fields`].
#[cfg(test)]
pub(crate) fn scan(payload: &[u8], vector: Vector) -> Option<Fields<'_>> {
    let mut fields = Fields::default();
    scan_into(payload, &mut fields, vector).map(|()| fields)
}

/// The path for records the block scan does not take (non-ASCII, escapes,
/// very long): kept out of line so that the usual path stays compact.
#[inline(never)]
fn scan_searching<'a>(payload: &'a [u8], fields: &mut Fields<'a>) -> Option<()> {
    // Whole-record UTF-8 check: serde_json validates every string it reads;
    // outside strings a non-ASCII byte is a syntax error either way.
    let text = std::str::from_utf8(payload).ok()?;
    scan_text(text, &Search, fields)
}

/// How the scanner finds where a string body ends.
trait StringEnds {
    /// The index of the closing quote of the string whose body starts at
    /// `start` in `bytes` (just past its opening quote), or `None` if the
    /// string holds an escape or a control byte, or is not closed.
    fn string_end(&self, bytes: &[u8], start: usize) -> Option<usize>;
}

/// Searches each string eight bytes at a time: for any valid UTF-8 record.
struct Search;

impl StringEnds for Search {
    #[inline(always)]
    fn string_end(&self, bytes: &[u8], start: usize) -> Option<usize> {
        let end = start + string_len(bytes.get(start..)?)?;
        (*bytes.get(end)? == b'"').then_some(end)
    }
}

#[inline(always)]
fn scan_text<'a, E: StringEnds>(text: &'a str, ends: &E, fields: &mut Fields<'a>) -> Option<()> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        ends,
    };
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
    (s.pos == s.bytes.len()).then_some(())
}

/// An object key, as far as the event is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    TxnId,
    MerchantId,
    Amount,
    Currency,
    Channel,
    SettledAt,
    Other,
}

impl Key {
    /// The key named by `name` (a key's body, without quotes).
    #[inline(always)]
    fn of(name: &[u8]) -> Key {
        match name {
            b"txn_id" => Key::TxnId,
            b"merchant_id" => Key::MerchantId,
            b"amount" => Key::Amount,
            b"currency" => Key::Currency,
            b"channel" => Key::Channel,
            b"settled_at" => Key::SettledAt,
            _ => Key::Other,
        }
    }
}

/// The contract's keys in the order producers write them
/// (`../shared/EVENTS.md`): the compact scan checks each key against the
/// one expected in its place first, a test that always goes the same way
/// on the usual record, and matches it against every name (a branch on the
/// key's length, then on its bytes) only if that fails.
const USUAL_ORDER: [KeyWords; 6] = [
    KeyWords::new(Key::TxnId, b"txn_id"),
    KeyWords::new(Key::MerchantId, b"merchant_id"),
    KeyWords::new(Key::Amount, b"amount"),
    KeyWords::new(Key::Currency, b"currency"),
    KeyWords::new(Key::Channel, b"channel"),
    KeyWords::new(Key::SettledAt, b"settled_at"),
];

/// A known key's name as two eight-byte words: its first eight bytes and
/// its last eight (little-endian), each masked to the name's bytes, so that
/// any name of up to 16 bytes is compared with two loads.
struct KeyWords {
    key: Key,
    len: usize,
    first: u64,
    first_mask: u64,
    last: u64,
    last_mask: u64,
}

impl KeyWords {
    const fn new(key: Key, name: &[u8]) -> Self {
        assert!(name.len() <= 16);
        let len = name.len();
        let mut first = 0;
        let mut last = 0;
        let mut i = 0;
        while i < len {
            if i < 8 {
                first |= (name[i] as u64) << (8 * i);
            }
            // Byte `i` is byte `i - (len - 8)` of the last eight.
            if len >= 8 && i >= len - 8 {
                last |= (name[i] as u64) << (8 * (i - (len - 8)));
            }
            i += 1;
        }
        let (first_mask, last_mask) = if len >= 8 {
            (u64::MAX, u64::MAX)
        } else {
            (u64::MAX >> (8 * (8 - len)), 0)
        };
        Self {
            key,
            len,
            first,
            first_mask,
            last,
            last_mask,
        }
    }

    /// Whether `bytes[start..end]` is this name. (False too when the words
    /// around it do not fit in `bytes`: the caller then matches by name.)
    #[inline(always)]
    fn names(&self, bytes: &[u8], start: usize, end: usize) -> bool {
        let word = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|w| w.try_into().ok())
                .map(u64::from_le_bytes)
        };
        // A name shorter than eight bytes has no last word (`last_mask` is
        // zero), wherever the load lands.
        let (Some(first), Some(last)) = (word(start), word(end.saturating_sub(8))) else {
            return false;
        };
        end - start == self.len
            && first & self.first_mask == self.first
            && last & self.last_mask == self.last
    }
}

struct Scanner<'a, 'e, E> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    ends: &'e E,
}

impl<'a, E: StringEnds> Scanner<'a, '_, E> {
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
        let end = self.ends.string_end(self.bytes, start)?;
        self.pos = end + 1;
        // Both ends are ASCII quotes, so this slice is on char boundaries.
        self.text.get(start..end)
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

/// Bytes per bitmap word.
const WORD_BYTES: usize = 64;

/// Bitmap words per record: records up to `BLOCK_WORDS * 64` bytes (far
/// beyond the contract's usual ~150–300) take the block path.
const BLOCK_WORDS: usize = 8;

/// The longest record the block path reads.
pub(crate) const BLOCK_RECORD_BYTES: usize = BLOCK_WORDS * WORD_BYTES;

/// Where the quotes are in a record fit for the block path (all ASCII, no
/// backslash, no control byte inside a string), found in 16- or 32-byte
/// blocks.
///
/// Without backslashes every `"` delimits a string, so the strings are
/// exactly the spans from an odd-numbered quote to the next one, and the
/// end of the string opened at any quote is simply the next quote.
struct Blocks<'q> {
    /// Bit `i % 64` of word `i / 64` is set iff byte `i` is `"`.
    quotes: &'q [u64; BLOCK_WORDS],
}

impl Blocks<'_> {
    /// Classifies `payload`, marking its quotes in `quotes` (all zero on
    /// entry), and returns it as text; `None` if it is longer than the
    /// bitmap, holds any non-ASCII byte or backslash, or a control byte
    /// inside a string: such a record takes the original path.
    #[inline(always)]
    fn classify<'a>(
        payload: &'a [u8],
        quotes: &mut [u64; BLOCK_WORDS],
        vector: Vector,
    ) -> Option<Ascii<'a>> {
        if payload.len() > BLOCK_RECORD_BYTES {
            return None;
        }
        let unusual = match vector {
            Vector::Sse2 => mark_quotes_16(payload, quotes),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a `HasAvx2` is only made by `Vector::detect`, once
            // the CPU said it has AVX2.
            Vector::Avx2(HasAvx2(())) => unsafe { avx2::mark_quotes_32(payload, quotes) },
        };
        // Only records with whitespace between tokens (or worse) get past
        // the first test, so bytewise is fine.
        if unusual && (payload.iter().any(|&b| is_odd(b)) || control_in_string(payload)) {
            return None;
        }
        // SAFETY: every byte of 0x80 or above sets its block's `unusual`
        // mask, and a record with any set bit there gets here only after
        // the bytewise `is_odd` check found none.
        Some(unsafe { Ascii::new(payload) })
    }
}

/// How wide the block scan's vectors are, chosen once (when the decoder is
/// built) from what the CPU has. Both widths mark the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vector {
    /// 16-byte blocks: SSE2 on x86_64 (every such CPU has it), bytewise
    /// elsewhere.
    Sse2,
    /// 32-byte blocks with AVX2: half the loads and mask steps per record.
    #[cfg(target_arch = "x86_64")]
    Avx2(HasAvx2),
}

/// Proof that the CPU has AVX2: its field is private to this module, where
/// only [`Vector::detect`] makes one, after asking the CPU.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HasAvx2(());

impl Vector {
    /// The widest this CPU runs.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            return Vector::Avx2(HasAvx2(()));
        }
        Vector::Sse2
    }

    /// Every width this CPU runs, for tests that check each.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let mut all = vec![Vector::Sse2];
        if Vector::detect() != Vector::Sse2 {
            all.push(Vector::detect());
        }
        all
    }
}

/// Marks the quotes of a record of at most [`BLOCK_RECORD_BYTES`] bytes
/// in 16-byte blocks; whether any byte is in the `unusual` class.
#[inline(always)]
fn mark_quotes_16(payload: &[u8], quotes: &mut [u64; BLOCK_WORDS]) -> bool {
    mark_quotes(payload, quotes, |block: &[u8; 16]| {
        let masks = block_masks(block);
        (u64::from(masks.quote), u64::from(masks.unusual))
    })
}

/// The block scan's loop for one block width `W` (16 or 32), with `masks`
/// giving a block's (quote, unusual) bits, bit `i` for byte `i`. Always
/// inlined, so that in [`avx2::mark_quotes_32`] the AVX2 masks inline too
/// (an intrinsic inlines only into code compiled with its feature).
#[inline(always)]
fn mark_quotes<const W: usize>(
    payload: &[u8],
    quotes: &mut [u64; BLOCK_WORDS],
    masks: impl Fn(&[u8; W]) -> (u64, u64),
) -> bool {
    const { assert!(W == 16 || W == 32) };
    let per_word = WORD_BYTES / W;
    // A word's blocks' quote masks are gathered in a register and stored
    // once per word (or-ing each into memory cost a load and a store).
    let mut word = 0u64;
    let mut unusual = 0u64;
    let mut chunks = payload.chunks_exact(W);
    let mut at = 0;
    for block in chunks.by_ref() {
        let Ok(block) = block.try_into() else {
            break;
        };
        let (quote, odd) = masks(block);
        word |= quote << (at % per_word * W);
        unusual |= odd;
        if at % per_word == per_word - 1 {
            if let Some(slot) = quotes.get_mut(at / per_word) {
                *slot = word;
            }
            word = 0;
        }
        at += 1;
    }
    let tail = chunks.remainder().len();
    if tail > 0 {
        let (quote, odd) = match payload.last_chunk::<W>() {
            // The record's last `W` bytes, of which the first `W - tail`
            // were in the previous block: shifted out. (Copying the tail
            // into a padded block instead costs a `memcpy` call.)
            Some(last) => {
                let (quote, odd) = masks(last);
                (quote >> (W - tail), odd >> (W - tail))
            }
            // A record shorter than one block (never a valid event).
            None => {
                // Spaces are in no class, so nothing past the end is marked.
                let mut last = [b' '; W];
                last[..tail].copy_from_slice(payload);
                masks(&last)
            }
        };
        word |= quote << (at % per_word * W);
        unusual |= odd;
    }
    // The last, partial word (nothing left over at exactly the limit).
    if let Some(last) = quotes.get_mut(at / per_word) {
        *last |= word;
    }
    unusual != 0
}

/// Whether a control byte lies inside a string, the strings being the spans
/// between alternate quotes (true of a record without backslashes). Only
/// records with whitespace between tokens get here, so bytewise is fine.
#[cold]
fn control_in_string(payload: &[u8]) -> bool {
    let mut in_string = false;
    for &b in payload {
        if b == b'"' {
            in_string = !in_string;
        } else if b < 0x20 && in_string {
            return true;
        }
    }
    false
}

impl StringEnds for Blocks<'_> {
    /// The next quote: the string's end (see [`Blocks`]); a record with an
    /// escape or a control byte in a string never gets a [`Blocks`].
    #[inline(always)]
    fn string_end(&self, _bytes: &[u8], start: usize) -> Option<usize> {
        let mut word = start / WORD_BYTES;
        let mut bits = *self.quotes.get(word)? & (u64::MAX << (start % WORD_BYTES));
        while bits == 0 {
            word += 1;
            bits = *self.quotes.get(word)?;
        }
        Some(word * WORD_BYTES + bits.trailing_zeros() as usize)
    }
}

/// A record [`Blocks::classify`] found to be all ASCII. Every byte is a
/// character, so any range of it is text: its slices skip the
/// char-boundary checks of `str::get` (an out-of-line call per field).
#[derive(Clone, Copy)]
struct Ascii<'a>(&'a str);

impl<'a> Ascii<'a> {
    /// `bytes` as text.
    ///
    /// # Safety
    /// Every byte of `bytes` is below 0x80 (as [`Blocks::classify`] finds).
    #[inline(always)]
    unsafe fn new(bytes: &'a [u8]) -> Self {
        debug_assert!(bytes.is_ascii());
        // SAFETY: ASCII is valid UTF-8, and the caller vouches for it.
        Self(unsafe { std::str::from_utf8_unchecked(bytes) })
    }

    #[inline(always)]
    fn as_str(self) -> &'a str {
        self.0
    }

    /// The text of bytes `start..end`.
    #[inline(always)]
    fn get(self, start: usize, end: usize) -> Option<&'a str> {
        let bytes = self.0.as_bytes().get(start..end)?;
        // SAFETY: every byte of an `Ascii` is below 0x80 (see `new`), so
        // any range of it is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    }
}

/// Whether byte `b` keeps a record off the block path: `\` or non-ASCII.
fn is_odd(b: u8) -> bool {
    b == b'\\' || b >= 0x80
}

/// The classes of one 16-byte block, one bit per byte (bit `i` for byte `i`).
#[derive(Debug, PartialEq, Eq)]
struct BlockMasks {
    /// `"`.
    quote: u16,
    /// Below 0x20, `\`, or 0x80 and above: a byte that makes the record
    /// leave the block path ([`is_odd`]) or be checked for a control byte
    /// inside a string. (One mask for both: the usual record has neither.)
    unusual: u16,
}

/// [`BlockMasks`] of one block with SSE2 (baseline on x86_64).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_masks(block: &[u8; 16]) -> BlockMasks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are
    // available on every CPU this code can run on; the unaligned load reads
    // exactly the 16 bytes of `block`.
    let (quote, unusual) = unsafe {
        let x = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        // A signed compare: bytes 0x80 and above are negative, so "below
        // 0x20" marks them as well as the control bytes.
        let low_or_high = _mm_cmplt_epi8(x, _mm_set1_epi8(0x20));
        let unusual = _mm_or_si128(backslash, low_or_high);
        (_mm_movemask_epi8(quote), _mm_movemask_epi8(unusual))
    };
    BlockMasks {
        quote: quote as u16,
        unusual: unusual as u16,
    }
}

/// The block scan in 32-byte blocks, for CPUs with AVX2 ([`Vector::Avx2`]).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BLOCK_RECORD_BYTES, BLOCK_WORDS};
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };

    /// The classes of one 32-byte block, as [`super::BlockMasks`] has them
    /// for 16: bit `i` for byte `i`.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct BlockMasks32 {
        pub(super) quote: u32,
        pub(super) unusual: u32,
    }

    /// [`BlockMasks32`] of one block.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn block_masks_32(block: &[u8; 32]) -> BlockMasks32 {
        // SAFETY: the unaligned load reads exactly the 32 bytes of `block`.
        let x = unsafe { _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()) };
        let quote = _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'"' as i8));
        let backslash = _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'\\' as i8));
        // Signed, as in the SSE2 version: 0x20 > x marks the control bytes
        // and every byte of 0x80 and above (negative).
        let low_or_high = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), x);
        let unusual = _mm256_or_si256(backslash, low_or_high);
        BlockMasks32 {
            quote: _mm256_movemask_epi8(quote) as u32,
            unusual: _mm256_movemask_epi8(unusual) as u32,
        }
    }

    /// [`super::mark_quotes_16`] in 32-byte blocks: the same bits set in
    /// `quotes`, and the same answer.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mark_quotes_32(payload: &[u8], quotes: &mut [u64; BLOCK_WORDS]) -> bool {
        debug_assert!(payload.len() <= BLOCK_RECORD_BYTES);
        super::mark_quotes(payload, quotes, |block: &[u8; 32]| {
            // SAFETY: this function's own precondition.
            let masks = unsafe { block_masks_32(block) };
            (u64::from(masks.quote), u64::from(masks.unusual))
        })
    }
}

/// [`BlockMasks`] of one block, byte by byte: the definition, and the code
/// on targets without a vector version.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn block_masks_scalar(block: &[u8; 16]) -> BlockMasks {
    let mut masks = BlockMasks {
        quote: 0,
        unusual: 0,
    };
    for (i, &b) in block.iter().enumerate() {
        masks.quote |= u16::from(b == b'"') << i;
        masks.unusual |= u16::from(b < 0x20 || is_odd(b)) << i;
    }
    masks
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn block_masks(block: &[u8; 16]) -> BlockMasks {
    block_masks_scalar(block)
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

    /// [`Blocks::classify`] with `vector` takes exactly the records fit for
    /// the block path and marks exactly their quotes.
    fn classify_is_the_definition(bytes: &[u8], vector: Vector) -> Result<(), TestCaseError> {
        let odd = |b: u8| b == b'\\' || b >= 0x80;
        let mut quotes = [0; BLOCK_WORDS];
        let text = Blocks::classify(bytes, &mut quotes, vector);
        let blocks = Blocks { quotes: &quotes };
        let takes = bytes.len() <= BLOCK_RECORD_BYTES
            && !bytes.iter().any(|&b| odd(b))
            && !control_in_string(bytes);
        prop_assert_eq!(text.is_some(), takes, "{:?}", vector);
        if let Some(text) = text {
            prop_assert_eq!(text.as_str().as_bytes(), bytes);
            for i in 0..BLOCK_RECORD_BYTES {
                let marked = blocks.quotes[i / WORD_BYTES] >> (i % WORD_BYTES) & 1 == 1;
                prop_assert_eq!(
                    marked,
                    bytes.get(i) == Some(&b'"'),
                    "byte {} {:?}",
                    i,
                    vector
                );
            }
            // At every string's start (just past an odd-numbered
            // quote), the bitmap finds what the search finds.
            let mut opening = true;
            for (i, &b) in bytes.iter().enumerate() {
                if b != b'"' {
                    continue;
                }
                if opening {
                    prop_assert_eq!(
                        blocks.string_end(bytes, i + 1),
                        Search.string_end(bytes, i + 1),
                        "from {}",
                        i + 1
                    );
                }
                opening = !opening;
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn string_len_finds_the_first_special_byte(
            bytes in proptest::collection::vec(prop_oneof![30 => 0x20u8..0x80, 1 => any::<u8>()], 0..40),
        ) {
            let naive = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(string_len(&bytes), naive);
        }

        #[test]
        fn block_masks_match_the_byte_by_byte_definition(block in any::<[u8; 16]>()) {
            prop_assert_eq!(block_masks(&block), block_masks_scalar(&block));
        }

        #[cfg(target_arch = "x86_64")]
        #[test]
        fn avx2_block_masks_match_the_byte_by_byte_definition(
            halves in any::<([u8; 16], [u8; 16])>(),
        ) {
            if Vector::detect() == Vector::Sse2 {
                return Ok(());
            }
            let mut block = [0; 32];
            block[..16].copy_from_slice(&halves.0);
            block[16..].copy_from_slice(&halves.1);
            // SAFETY: the CPU has AVX2 (checked above).
            let masks = unsafe { avx2::block_masks_32(&block) };
            let (low, high) = (block_masks_scalar(&halves.0), block_masks_scalar(&halves.1));
            prop_assert_eq!(masks.quote, u32::from(low.quote) | u32::from(high.quote) << 16);
            prop_assert_eq!(masks.unusual, u32::from(low.unusual) | u32::from(high.unusual) << 16);
        }

        #[test]
        fn classify_marks_exactly_the_quotes(
            bytes in proptest::collection::vec(
                prop_oneof![40 => 0x20u8..0x80, 4 => Just(b'"'), 1 => 0u8..0x20, 1 => any::<u8>()],
                0..BLOCK_RECORD_BYTES + 40,
            ),
        ) {
            for vector in Vector::available() {
                classify_is_the_definition(&bytes, vector)?;
            }
        }

        #[test]
        fn classify_marks_exactly_the_quotes_around_block_edges(
            unit in proptest::collection::vec(
                prop_oneof![40 => 0x20u8..0x80, 4 => Just(b'"'), 1 => 0u8..0x20, 1 => any::<u8>()],
                1..8,
            ),
            edge in prop_oneof![Just(16usize), Just(32), Just(64), Just(BLOCK_RECORD_BYTES)],
            offset in -3isize..=3,
        ) {
            // Lengths just short of, at and just past each block and word
            // size, where the tail handling changes.
            let len = edge.saturating_add_signed(offset);
            let bytes: Vec<u8> = unit.iter().copied().cycle().take(len).collect();
            for vector in Vector::available() {
                classify_is_the_definition(&bytes, vector)?;
            }
        }

        #[test]
        fn key_words_name_exactly_their_key(
            before in "[a-z\",:{]{0,10}",
            name in prop_oneof![
                proptest::sample::select(vec![
                    "txn_id", "merchant_id", "amount", "currency", "channel", "settled_at",
                ]).prop_map(str::to_string),
                "[a-z_]{0,12}",
                "(txn_id|merchant_id|amount|currency|channel|settled_at)[a-z_]{0,2}",
            ],
            after in "[a-z\",:}]{0,10}",
        ) {
            let record = format!("{before}{name}{after}");
            let (start, end) = (before.len(), before.len() + name.len());
            for expected in &USUAL_ORDER {
                let named = expected.names(record.as_bytes(), start, end);
                let is_it = Key::of(name.as_bytes()) == expected.key;
                if named {
                    prop_assert!(is_it, "{:?}", record);
                }
                // Given room for its loads, the check finds every match.
                if is_it && start + 8 <= record.len() {
                    prop_assert!(named, "{:?}", record);
                }
            }
        }

        #[test]
        fn control_in_string_is_the_byte_by_byte_definition(
            bytes in proptest::collection::vec(
                prop_oneof![8 => 0x20u8..0x80, 2 => Just(b'"'), 1 => 0u8..0x20],
                0..40,
            ),
        ) {
            let expected = bytes.iter().enumerate().any(|(i, &b)| {
                b < 0x20 && bytes[..i].iter().filter(|&&q| q == b'"').count() % 2 == 1
            });
            prop_assert_eq!(control_in_string(&bytes), expected);
        }
    }
}
