//! Decoding a chunk and routing each record to the owner of its partition.
//!
//! The partition comes from the decoded `merchant_id` ([`partition_of`] of
//! its hash), the same value the record is counted under, never from a scan
//! of the raw bytes. A record refused while decoding has no trustworthy
//! merchant; it goes to a partition picked from its position, so that it is
//! counted exactly once like any other.

use crate::chunks::Chunk;
use gmv_core::money::Fen;
use gmv_core::partition::{decode, partition_of, Txn};
use gmv_core::reject::{Reason, Rejection};
use gmv_core::time::EpochMillis;
use gmv_core::Settings;
use std::borrow::Cow;

/// UTF-8's byte-order mark, skipped at the very start of an input.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A merchant id: where it is in the chunk, or its unescaped text.
enum MerchantRef {
    Span { start: u32, len: u32 },
    Owned(Box<str>),
}

/// A valid transaction, its fields held without borrowing the chunk.
pub(crate) struct RoutedTxn {
    merchant: MerchantRef,
    merchant_hash: u64,
    key: u128,
    fingerprint: u64,
    fen: Fen,
    settled_at: EpochMillis,
    mobile: bool,
}

impl RoutedTxn {
    /// The redelivery key.
    pub(crate) fn key(&self) -> u128 {
        self.key
    }

    /// The merchant's hash.
    pub(crate) fn merchant_hash(&self) -> u64 {
        self.merchant_hash
    }

    /// The transaction, its merchant id read from `chunk`'s bytes.
    pub(crate) fn txn<'c>(&'c self, chunk: &'c [u8]) -> Txn<'c> {
        let merchant_id = match &self.merchant {
            MerchantRef::Owned(text) => text,
            // The span was cut from this chunk's bytes, around a `&str`.
            MerchantRef::Span { start, len } => {
                let bytes = &chunk[*start as usize..(*start + *len) as usize];
                std::str::from_utf8(bytes).unwrap_or_default()
            }
        };
        Txn {
            merchant_id,
            merchant_hash: self.merchant_hash,
            key: self.key,
            fingerprint: self.fingerprint,
            fen: self.fen,
            mobile: self.mobile,
            settled_at: self.settled_at,
        }
    }
}

/// One record on its way to its partition's owner.
pub(crate) struct Routed {
    /// The partition.
    pub(crate) partition: u32,
    /// Its line in the chunk (0-based).
    pub(crate) line: u32,
    /// The record's bytes in the chunk.
    pub(crate) start: u32,
    pub(crate) len: u32,
    /// What decoding found.
    pub(crate) verdict: Result<RoutedTxn, Rejection>,
}

/// Decodes every record of `chunk`, appending each to the part of its
/// partition's owner (`parts[partition % parts.len()]`); returns the number
/// of lines in the chunk (blank ones included: they keep their numbers).
pub(crate) fn route(
    settings: &Settings,
    partitions: u32,
    chunk: &Chunk,
    parts: &mut [Vec<Routed>],
) -> u32 {
    let bytes = &chunk.bytes.bytes[..];
    let owners = parts.len() as u32;
    let mut truncated = chunk.truncated.iter().peekable();
    let mut line = 0u32;
    let mut at = 0usize;
    while at < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        let line_begin = at;
        let mut start = at;
        let mut stop = end;
        at = end + 1;
        let this_line = line;
        line += 1;
        if this_line == 0 && chunk.starts_input() && bytes[start..stop].starts_with(BOM) {
            start += BOM.len();
        }
        if stop > start && bytes[stop - 1] == b'\r' {
            stop -= 1;
        }
        let record = &bytes[start..stop];
        if record.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        while truncated
            .next_if(|&&(offset, _)| (offset as usize) < line_begin)
            .is_some()
        {}
        let cut = truncated
            .next_if(|&&(offset, _)| offset as usize == line_begin)
            .map(|&(_, full)| full);
        let verdict = match cut {
            Some(full) => Err(Rejection {
                reason: Reason::Oversize,
                detail: Cow::Owned(format!(
                    "record of {full} bytes exceeds engine.max_event_bytes; its first {} bytes are kept",
                    record.len()
                )),
            }),
            None => decode(settings, record).map(|d| RoutedTxn {
                merchant: match &d.event.merchant_id {
                    Cow::Borrowed(id) => MerchantRef::Span {
                        start: (id.as_ptr() as usize - bytes.as_ptr() as usize) as u32,
                        len: id.len() as u32,
                    },
                    Cow::Owned(id) => MerchantRef::Owned(id.as_str().into()),
                },
                merchant_hash: d.merchant_hash,
                key: d.key,
                fingerprint: d.event.fingerprint,
                fen: d.event.amount_fen,
                settled_at: d.event.settled_at,
                mobile: d.event.mobile,
            }),
        };
        let partition = match &verdict {
            Ok(txn) => partition_of(txn.merchant_hash, partitions),
            Err(_) => refused_partition(chunk.index, this_line, partitions),
        };
        parts[(partition % owners) as usize].push(Routed {
            partition,
            line: this_line,
            start: start as u32,
            len: (stop - start) as u32,
            verdict,
        });
    }
    line
}

/// The partition a record refused while decoding is counted in: spread by
/// its position, the same on every run.
fn refused_partition(chunk: u64, line: u32, partitions: u32) -> u32 {
    let mixed = (chunk ^ (u64::from(line) << 17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    partition_of(mixed, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::Buffer;

    fn chunk(index: u64, bytes: &[u8]) -> Chunk {
        Chunk {
            index,
            bytes: Buffer::unpooled(bytes.to_vec()),
            truncated: Vec::new(),
            read_at: 0,
        }
    }

    fn record(txn: &str, merchant: &str) -> String {
        format!(
            r#"{{"txn_id":"{txn}","merchant_id":"{merchant}","amount":"1.00","channel":"mobile","settled_at":"2017-11-11T00:00:01+08:00"}}"#
        )
    }

    #[test]
    fn records_go_by_their_decoded_merchant_and_keep_their_line_numbers() {
        let settings = Settings::defaults();
        let escaped = r#"{"\u0074xn_id":"t2","merchant_id":"m-\u0031","amount":"1.00","channel":"mobile","settled_at":"2017-11-11T00:00:01+08:00"}"#;
        let decoy = r#"{"txn_id":"t3","merchant_id":"m-1","amount":"1.00","channel":"mobile \"txn_id\":\"x\"","settled_at":"2017-11-11T00:00:01+08:00"}"#;
        let input = format!(
            "\u{feff}{}\n\n{escaped}\r\n{decoy}\nnot json\n",
            record("t1", "m-1")
        );
        let c = chunk(0, input.as_bytes());
        let mut parts: Vec<Vec<Routed>> = (0..3).map(|_| Vec::new()).collect();
        assert_eq!(route(&settings, 16, &c, &mut parts), 5);
        let all: Vec<&Routed> = parts.iter().flatten().collect();
        assert_eq!(all.len(), 4, "the blank line is not a record");
        let valid: Vec<&Routed> = all.iter().copied().filter(|r| r.verdict.is_ok()).collect();
        assert_eq!(
            valid.len(),
            3,
            "BOM skipped, escapes decoded, decoy text ignored"
        );
        // All three are merchant m-1: one partition, one owner.
        assert!(valid.iter().all(|r| r.partition == valid[0].partition));
        let lines: Vec<u32> = valid.iter().map(|r| r.line).collect();
        let mut sorted = lines.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 2, 3]);
        let txn = valid.iter().find(|r| r.line == 2).unwrap();
        assert_eq!(
            txn.verdict
                .as_ref()
                .unwrap()
                .txn(&c.bytes.bytes)
                .merchant_id,
            "m-1"
        );
    }
}
