//! Digit tricks on eight ASCII bytes held in one `u64` (little-endian, so
//! byte `k` of the word is byte `k` of the text), shared by the hand-written
//! parsers of timestamps ([`crate::time`]) and amounts ([`crate::money`]):
//! a fixed-shape field is checked and read in a few instructions, with no
//! loop whose exit depends on the data.

/// Whether every byte of `word` selected by `mask` (whole bytes of 0xff)
/// is an ASCII digit: a high nibble of 3 and a low nibble below 10 (adding
/// 6 to a nibble carries out of it exactly when it is 10 or more). No step
/// carries or borrows across bytes, so each byte is judged on its own.
#[inline]
pub(crate) fn all_digits(word: u64, mask: u64) -> bool {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const LOW: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    let high_not_3 = (word & HIGH) ^ 0x3030_3030_3030_3030;
    let low_over_9 = ((word & LOW) + 0x0606_0606_0606_0606) & HIGH;
    (high_not_3 | low_over_9) & mask == 0
}

/// Byte `k` of the result is `10 * digit(k) + digit(k + 1)`: the two-digit
/// number starting at byte `k` of `word`, for every `k` below 7, once
/// [`all_digits`] has vouched for those bytes. (At most 99 per byte, so no
/// byte overflows into the next.)
#[inline]
pub(crate) fn pair_values(word: u64) -> u64 {
    let digits = word & 0x0f0f_0f0f_0f0f_0f0f;
    digits * 10 + (digits >> 8)
}

/// The eight-digit number whose digits (values 0..=9, not ASCII) are the
/// bytes of `digits`, byte 0 the most significant: pairs, then quads, then
/// the whole, one multiply each. Products overflow only above the lane
/// that is kept, hence the wrapping multiplies.
#[inline]
pub(crate) fn eight_digits(digits: u64) -> u64 {
    let pairs = digits.wrapping_mul(10 << 8 | 1) >> 8;
    let quads = (pairs & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 << 16 | 1) >> 16;
    (quads & 0x0000_ffff_0000_ffff).wrapping_mul(10_000 << 32 | 1) >> 32
}

/// Byte `k` of `word`.
#[inline]
pub(crate) fn byte(word: u64, k: u32) -> u32 {
    (word >> (8 * k)) as u32 & 0xff
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn eight_digits_reads_the_number(n in 0u64..100_000_000) {
            let text = format!("{n:08}");
            let word = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
            prop_assert!(all_digits(word, u64::MAX));
            prop_assert_eq!(eight_digits(word & 0x0f0f_0f0f_0f0f_0f0f), n);
        }
    }
}
