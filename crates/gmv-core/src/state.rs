//! Engine state as plain data, for checkpoints and for merging partitions.
//!
//! A Kafka source keeps one [`Engine`](crate::Engine) per partition and
//! checkpoints it together with the partition's next offset. This module is
//! the pure half of that: it reads an engine's state out ([`EngineState`],
//! [`DedupState`], [`DedupJournal`]), encodes a [`Checkpoint`] into bytes with
//! a checksum, decodes and verifies them, and rebuilds an engine. Files and
//! topics are the I/O crates' business.
//!
//! A checkpoint is either a *base* (the whole dedup set) or a *delta* (only the
//! ids first seen since the previous checkpoint, in arrival order per shard).
//! Both carry the full aggregate figures, which are small next to the dedup
//! set. Replaying a delta's ids through the dedup set's own insertion rule
//! reproduces its generations exactly, because rotation depends only on each
//! shard's sequence of new ids.

use crate::aggregate::{AggregateState, Crossing, MerchantFigures, MinuteFigures};
use crate::reject::{Reason, RejectCounts};
use crate::time::EpochMillis;
use std::fmt;
use xxhash_rust::xxh3::xxh3_64;

/// The figures of an engine (everything but the dedup set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineState {
    /// Records read.
    pub consumed: u64,
    /// Rejections per reason.
    pub rejected: RejectCounts,
    /// The aggregator's contents.
    pub aggregate: AggregateState,
}

/// One dedup shard: its two generations and when the current one began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupShardState {
    /// The current generation: (key, fingerprint).
    pub current: Vec<(u128, u64)>,
    /// The previous generation.
    pub previous: Vec<(u128, u64)>,
    /// Event time at which the current generation began.
    pub current_since: Option<EpochMillis>,
}

/// The whole dedup set, shard by shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupState {
    /// Every shard, in shard order.
    pub shards: Vec<DedupShardState>,
}

/// Ids first seen since the journal was last taken: per shard, in arrival
/// order, as (key, fingerprint, event time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupJournal {
    /// Every shard, in shard order.
    pub shards: Vec<Vec<(u128, u64, EpochMillis)>>,
}

impl DedupJournal {
    /// Ids in the journal.
    pub fn len(&self) -> usize {
        self.shards.iter().map(Vec::len).sum()
    }

    /// Whether the journal holds no id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a checkpoint carries of the dedup set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupPart {
    /// The whole set.
    Base(DedupState),
    /// New ids since checkpoint `seq - 1`.
    Delta(DedupJournal),
}

/// A partition's state at a point in its log, durable as one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Position in this partition's chain of checkpoints (1, 2, ...).
    pub seq: u64,
    /// Hash of the settings that shape the state (window, thresholds, dedup
    /// bounds): state written under other settings must not be resumed.
    pub settings_hash: u64,
    /// First offset this partition's state covers.
    pub first_offset: i64,
    /// The next offset to read: the state covers exactly the records before it.
    pub next_offset: i64,
    /// For a delta, the checksum of the link it extends: a chain whose links
    /// do not name each other mixes two writers' states (a partition's old
    /// owner that kept writing after the group moved the partition), and is
    /// cut there. `None` for a base, and for deltas of format version 1.
    pub parent: Option<u64>,
    /// The aggregate figures.
    pub engine: EngineState,
    /// The dedup set, whole or as a delta.
    pub dedup: DedupPart,
}

/// Why bytes are not a usable checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not a checkpoint of this format.
    BadMagic,
    /// Written by a format version this build cannot read.
    UnsupportedVersion(u32),
    /// Shorter than its header says: a torn write.
    Truncated,
    /// The checksum does not match the contents.
    ChecksumMismatch,
    /// The checksum matched but the contents do not parse (a bug or a
    /// different encoder).
    Invalid(&'static str),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::BadMagic => f.write_str("not a gmv checkpoint (bad magic bytes)"),
            StateError::UnsupportedVersion(v) => write!(f, "unsupported checkpoint version {v}"),
            StateError::Truncated => f.write_str("truncated (shorter than its header says)"),
            StateError::ChecksumMismatch => f.write_str("checksum mismatch (corrupt contents)"),
            StateError::Invalid(what) => write!(f, "invalid contents: {what}"),
        }
    }
}

impl std::error::Error for StateError {}

const MAGIC: &[u8; 8] = b"GMVCKPT\0";
/// Version 2 added [`Checkpoint::parent`]; version 1 is still read.
const VERSION: u32 = 2;
/// magic, version, payload length, payload checksum.
const HEADER_LEN: usize = 8 + 4 + 8 + 8;

impl Checkpoint {
    /// Encodes with a header (magic, version, length, XXH3 checksum).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_checksum().0
    }

    /// [`Checkpoint::encode`], and the checksum in the header: the link's
    /// identity, which the next delta names as its [`Checkpoint::parent`].
    pub fn encode_with_checksum(&self) -> (Vec<u8>, u64) {
        let mut w = Writer(Vec::with_capacity(HEADER_LEN + self.size_hint()));
        w.0.extend_from_slice(MAGIC);
        w.u32(VERSION);
        w.u64(0); // length, patched below
        w.u64(0); // checksum, patched below
        self.write_payload(&mut w);
        let mut bytes = w.0;
        let payload_len = (bytes.len() - HEADER_LEN) as u64;
        let checksum = xxh3_64(&bytes[HEADER_LEN..]);
        bytes[12..20].copy_from_slice(&payload_len.to_le_bytes());
        bytes[20..28].copy_from_slice(&checksum.to_le_bytes());
        (bytes, checksum)
    }

    /// Decodes and verifies bytes written by [`Checkpoint::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        Self::decode_with_checksum(bytes).map(|(checkpoint, _)| checkpoint)
    }

    /// [`Checkpoint::decode`], and the verified checksum (see
    /// [`Checkpoint::encode_with_checksum`]).
    pub fn decode_with_checksum(bytes: &[u8]) -> Result<(Self, u64), StateError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(StateError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(StateError::Truncated);
        }
        let mut header = Reader(&bytes[MAGIC.len()..HEADER_LEN]);
        let version = header.u32()?;
        if !(1..=VERSION).contains(&version) {
            return Err(StateError::UnsupportedVersion(version));
        }
        let payload_len = header.u64()?;
        let checksum = header.u64()?;
        let payload = &bytes[HEADER_LEN..];
        if (payload.len() as u64) < payload_len {
            return Err(StateError::Truncated);
        }
        if payload.len() as u64 > payload_len {
            return Err(StateError::Invalid("trailing bytes after the payload"));
        }
        if xxh3_64(payload) != checksum {
            return Err(StateError::ChecksumMismatch);
        }
        let mut r = Reader(payload);
        let checkpoint = Self::read_payload(&mut r, version)?;
        if !r.0.is_empty() {
            return Err(StateError::Invalid("payload longer than its fields"));
        }
        Ok((checkpoint, checksum))
    }

    fn size_hint(&self) -> usize {
        let ids = match &self.dedup {
            DedupPart::Base(s) => s
                .shards
                .iter()
                .map(|s| s.current.len() + s.previous.len())
                .sum::<usize>(),
            DedupPart::Delta(j) => j.len(),
        };
        let a = &self.engine.aggregate;
        ids * 32 + a.merchants.len() * 48 + a.per_second.len() * 8 + 1024
    }

    fn write_payload(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.u64(self.settings_hash);
        w.i64(self.first_offset);
        w.i64(self.next_offset);
        match self.parent {
            None => w.u32(0),
            Some(parent) => {
                w.u32(1);
                w.u64(parent);
            }
        }
        w.u64(self.engine.consumed);
        w.u32(Reason::ALL.len() as u32);
        for reason in Reason::ALL {
            w.u64(self.engine.rejected.get(reason));
        }
        let e = &self.engine.aggregate;
        w.i64(e.watermark.unwrap_or(i64::MIN));
        w.len(e.merchants.len());
        for m in &e.merchants {
            w.str(&m.merchant_id);
            w.u64(m.gmv);
            w.u64(m.mobile_gmv);
            w.u64(m.transactions);
        }
        w.len(e.per_second.len());
        for &(second, count) in &e.per_second {
            w.u32(second);
            w.u32(count);
        }
        w.len(e.per_minute.len());
        for m in &e.per_minute {
            w.u32(m.minute as u32);
            w.u64(m.gmv);
            w.u64(m.mobile_gmv);
            w.u64(m.transactions);
        }
        w.len(e.crossings.len());
        for c in &e.crossings {
            w.str(&c.merchant_id);
            w.u64(c.threshold);
            w.u64(c.gmv_at_crossing);
            w.i64(c.settled_at);
        }
        match &self.dedup {
            DedupPart::Base(state) => {
                w.u32(0);
                w.len(state.shards.len());
                for shard in &state.shards {
                    w.i64(shard.current_since.unwrap_or(i64::MIN));
                    for generation in [&shard.current, &shard.previous] {
                        w.len(generation.len());
                        for &(key, fingerprint) in generation {
                            w.u128(key);
                            w.u64(fingerprint);
                        }
                    }
                }
            }
            DedupPart::Delta(journal) => {
                w.u32(1);
                w.len(journal.shards.len());
                for shard in &journal.shards {
                    w.len(shard.len());
                    for &(key, fingerprint, at) in shard {
                        w.u128(key);
                        w.u64(fingerprint);
                        w.i64(at);
                    }
                }
            }
        }
    }

    fn read_payload(r: &mut Reader<'_>, version: u32) -> Result<Self, StateError> {
        let seq = r.u64()?;
        let settings_hash = r.u64()?;
        let first_offset = r.i64()?;
        let next_offset = r.i64()?;
        let parent = match version {
            1 => None,
            _ => match r.u32()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return Err(StateError::Invalid("unknown parent marker")),
            },
        };
        let consumed = r.u64()?;
        let reasons = r.u32()? as usize;
        if reasons != Reason::ALL.len() {
            return Err(StateError::Invalid(
                "rejection reasons differ from this build",
            ));
        }
        let mut rejected = RejectCounts::default();
        for reason in Reason::ALL {
            rejected.set(reason, r.u64()?);
        }
        let watermark = Some(r.i64()?).filter(|&w| w != i64::MIN);
        let merchants = r.list(40, |r| {
            Ok(MerchantFigures {
                merchant_id: r.str()?,
                gmv: r.u64()?,
                mobile_gmv: r.u64()?,
                transactions: r.u64()?,
            })
        })?;
        let per_second = r.list(8, |r| Ok((r.u32()?, r.u32()?)))?;
        let per_minute = r.list(28, |r| {
            Ok(MinuteFigures {
                minute: r.u32()? as usize,
                gmv: r.u64()?,
                mobile_gmv: r.u64()?,
                transactions: r.u64()?,
            })
        })?;
        let crossings = r.list(40, |r| {
            Ok(Crossing {
                merchant_id: r.str()?,
                threshold: r.u64()?,
                gmv_at_crossing: r.u64()?,
                settled_at: r.i64()?,
            })
        })?;
        let dedup = match r.u32()? {
            0 => DedupPart::Base(DedupState {
                shards: r.list(24, |r| {
                    let current_since = Some(r.i64()?).filter(|&t| t != i64::MIN);
                    let current = r.list(24, |r| Ok((r.u128()?, r.u64()?)))?;
                    let previous = r.list(24, |r| Ok((r.u128()?, r.u64()?)))?;
                    Ok(DedupShardState {
                        current,
                        previous,
                        current_since,
                    })
                })?,
            }),
            1 => DedupPart::Delta(DedupJournal {
                shards: r.list(8, |r| r.list(32, |r| Ok((r.u128()?, r.u64()?, r.i64()?))))?,
            }),
            _ => return Err(StateError::Invalid("unknown dedup part")),
        };
        Ok(Self {
            seq,
            settings_hash,
            first_offset,
            next_offset,
            parent,
            engine: EngineState {
                consumed,
                rejected,
                aggregate: AggregateState {
                    merchants,
                    per_second,
                    per_minute,
                    watermark,
                    crossings,
                },
            },
            dedup,
        })
    }
}

/// Little-endian field writer.
struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Bounds-checked little-endian field reader.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(StateError::Invalid("field runs past the end"))?;
        self.0 = rest;
        Ok(*head)
    }
    fn u32(&mut self) -> Result<u32, StateError> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, StateError> {
        self.take().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64, StateError> {
        self.take().map(i64::from_le_bytes)
    }
    fn u128(&mut self) -> Result<u128, StateError> {
        self.take().map(u128::from_le_bytes)
    }
    fn str(&mut self) -> Result<String, StateError> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return Err(StateError::Invalid("string runs past the end"));
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(text.to_vec()).map_err(|_| StateError::Invalid("string is not UTF-8"))
    }
    /// A length-prefixed list; `min_item_bytes` rejects absurd lengths before
    /// allocating for them.
    fn list<T>(
        &mut self,
        min_item_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, StateError>,
    ) -> Result<Vec<T>, StateError> {
        let n = usize::try_from(self.u64()?).map_err(|_| StateError::Invalid("list length"))?;
        if n.saturating_mul(min_item_bytes.min(8)) > self.0.len() {
            return Err(StateError::Invalid("list longer than the payload"));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }
}

/// A stable hash of the settings that shape checkpointed state.
pub fn settings_hash(settings: &crate::Settings) -> u64 {
    let mut text = format!(
        "window={}..{};dedup={}/{:?};",
        settings.window.start_millis(),
        settings.window.end_millis(),
        settings.dedup_max_ids,
        settings.dedup_retention,
    );
    for threshold in &settings.thresholds {
        text.push_str(&format!("t={threshold};"));
    }
    xxh3_64(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(seq: u64, parent: Option<u64>) -> Checkpoint {
        Checkpoint {
            seq,
            settings_hash: 7,
            first_offset: 0,
            next_offset: 42,
            parent,
            engine: EngineState::default(),
            dedup: match parent {
                None => DedupPart::Base(DedupState::default()),
                Some(_) => DedupPart::Delta(DedupJournal::default()),
            },
        }
    }

    #[test]
    fn a_delta_names_its_parent_by_the_parents_checksum() {
        let (base, base_checksum) = checkpoint(1, None).encode_with_checksum();
        let delta = checkpoint(2, Some(base_checksum)).encode();
        let (decoded_base, checksum) = Checkpoint::decode_with_checksum(&base).unwrap();
        assert_eq!(checksum, base_checksum);
        assert_eq!(decoded_base.parent, None);
        assert_eq!(
            Checkpoint::decode(&delta).unwrap().parent,
            Some(base_checksum)
        );
    }

    #[test]
    fn version_1_checkpoints_are_still_read_without_a_parent() {
        // Version 1 is version 2 without the parent marker after next_offset.
        let v2 = checkpoint(3, None).encode();
        let marker_at = HEADER_LEN + 4 * 8;
        assert_eq!(&v2[marker_at..marker_at + 4], &0u32.to_le_bytes());
        let payload: Vec<u8> = [&v2[HEADER_LEN..marker_at], &v2[marker_at + 4..]].concat();
        let mut v1 = MAGIC.to_vec();
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        v1.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
        v1.extend_from_slice(&payload);
        assert_eq!(Checkpoint::decode(&v1), Ok(checkpoint(3, None)));

        let mut v3 = v2.clone();
        v3[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            Checkpoint::decode(&v3),
            Err(StateError::UnsupportedVersion(3))
        );
    }
}
