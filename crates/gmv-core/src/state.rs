//! A partition's state as plain data, durable as one unit: the checkpoint
//! format every source uses, with a checksum.
//!
//! A partition is checkpointed as a chain: a *base* (the whole state) and
//! then *deltas*, each carrying only what changed since the link before it
//! (merchants and hours whole, new crossings, the dedup ids first seen) and
//! the counters and log position as they are at its end. Replaying a delta's
//! ids through the dedup set's own insertion rule reproduces its generations
//! exactly, because rotation depends only on each shard's sequence of new
//! ids. Each delta names the checksum of the link it extends, so a chain
//! mixing two writers' links is cut where they diverge.
//!
//! Files and topics are the I/O crates' business; this module encodes,
//! decodes and verifies.

use crate::dedup::JournalEntry;
use crate::partition::{
    Crossing, Hour, MerchantFigures, MinuteCell, MINUTES_PER_HOUR, SECONDS_PER_HOUR,
};
use crate::reject::{Reason, RejectCounts};
use crate::time::EpochMillis;
use std::fmt;
use xxhash_rust::xxh3::xxh3_64;

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

/// The whole dedup set of a partition, shard by shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupState {
    /// Every shard, in shard order.
    pub shards: Vec<DedupShardState>,
}

/// What a checkpoint carries of the dedup set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupPart {
    /// The whole set.
    Base(DedupState),
    /// Ids first seen since the previous link, in arrival order.
    Delta(Vec<JournalEntry>),
}

/// A link's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    /// The whole state.
    Base,
    /// What changed since the link before.
    Delta,
}

impl CheckpointKind {
    /// Its name in file names and record headers.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Base => "base",
            CheckpointKind::Delta => "delta",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "base" => Some(CheckpointKind::Base),
            "delta" => Some(CheckpointKind::Delta),
            _ => None,
        }
    }
}

/// A partition's state at a point in its log, durable as one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Position in this partition's chain of checkpoints (1, 2, ...).
    pub seq: u64,
    /// Base or delta.
    pub kind: CheckpointKind,
    /// Hash of the settings that shape the state (window, thresholds, dedup
    /// bounds): state written under other settings must not be resumed.
    pub settings_hash: u64,
    /// For a delta, the checksum of the link it extends; `None` for a base.
    pub parent: Option<u64>,
    /// First log position the state covers (-1: none).
    pub first_offset: i64,
    /// The next position to read: the state covers exactly the records before it.
    pub next_offset: i64,
    /// Records read.
    pub consumed: u64,
    /// Rejections per reason.
    pub rejected: RejectCounts,
    /// Latest event time counted.
    pub watermark: Option<EpochMillis>,
    /// Merchants: all of them in a base, those changed in a delta.
    pub merchants: Vec<MerchantFigures>,
    /// Hours with sales: all in a base, those changed in a delta.
    pub hours: Vec<(u32, Box<Hour>)>,
    /// Crossings: all in a base, the new ones in a delta.
    pub crossings: Vec<Crossing>,
    /// The dedup set, whole or its new ids.
    pub dedup: DedupPart,
}

/// Why bytes are not a usable checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not a checkpoint of this format.
    BadMagic,
    /// Written by an earlier gmv-stream in a format this one does not resume.
    OldFormat(u32),
    /// Written by a format version newer than this build.
    UnsupportedVersion(u32),
    /// Shorter than its header says: a torn write.
    Truncated,
    /// The checksum does not match the contents.
    ChecksumMismatch,
    /// Written under settings that shape state differently (window,
    /// thresholds, dedup bounds).
    SettingsChanged,
    /// The checksum matched but the contents do not parse (a bug or a
    /// different encoder).
    Invalid(&'static str),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::BadMagic => f.write_str("not a gmv checkpoint (bad magic bytes)"),
            StateError::OldFormat(v) => write!(
                f,
                "written by an earlier gmv-stream in checkpoint format {v}, which this version \
                 (format {VERSION}) does not resume"
            ),
            StateError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "checkpoint format {v} is newer than this gmv-stream (format {VERSION})"
                )
            }
            StateError::Truncated => f.write_str("truncated (shorter than its header says)"),
            StateError::ChecksumMismatch => f.write_str("checksum mismatch (corrupt contents)"),
            StateError::SettingsChanged => {
                f.write_str("written with different window, threshold or dedup settings")
            }
            StateError::Invalid(what) => write!(f, "invalid contents: {what}"),
        }
    }
}

impl std::error::Error for StateError {}

const MAGIC: &[u8; 8] = b"GMVCKPT\0";
/// Version 3: one partition format for every source, deltas carry only what
/// changed. Versions 1 and 2 (one engine per Kafka partition, full figures
/// in every link) are refused with [`StateError::OldFormat`].
pub const VERSION: u32 = 3;
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
        match version {
            1 | 2 => return Err(StateError::OldFormat(version)),
            VERSION => {}
            _ => return Err(StateError::UnsupportedVersion(version)),
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
        let checkpoint = Self::read_payload(&mut r)?;
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
        ids * 32 + self.merchants.len() * 48 + self.hours.len() * HOUR_BYTES + 1024
    }

    fn write_payload(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.u32(match self.kind {
            CheckpointKind::Base => 0,
            CheckpointKind::Delta => 1,
        });
        w.u64(self.settings_hash);
        match self.parent {
            None => w.u32(0),
            Some(parent) => {
                w.u32(1);
                w.u64(parent);
            }
        }
        w.i64(self.first_offset);
        w.i64(self.next_offset);
        w.u64(self.consumed);
        w.u32(Reason::ALL.len() as u32);
        for reason in Reason::ALL {
            w.u64(self.rejected.get(reason));
        }
        w.i64(self.watermark.unwrap_or(i64::MIN));
        w.len(self.merchants.len());
        for m in &self.merchants {
            w.str(&m.merchant_id);
            w.u64(m.gmv);
            w.u64(m.mobile_gmv);
            w.u64(m.transactions);
        }
        w.len(self.hours.len());
        for (hour, cells) in &self.hours {
            w.u32(*hour);
            for &count in &cells.seconds {
                w.u32(count);
            }
            for minute in &cells.minutes {
                w.u64(minute.gmv);
                w.u64(minute.mobile_gmv);
                w.u64(minute.transactions);
            }
        }
        w.len(self.crossings.len());
        for c in &self.crossings {
            w.str(&c.merchant_id);
            w.u64(c.threshold);
            w.u64(c.gmv_at_crossing);
            w.i64(c.settled_at);
            w.i64(c.position);
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
                w.len(journal.len());
                for &(key, fingerprint, at) in journal {
                    w.u128(key);
                    w.u64(fingerprint);
                    w.i64(at);
                }
            }
        }
    }

    fn read_payload(r: &mut Reader<'_>) -> Result<Self, StateError> {
        let seq = r.u64()?;
        let kind = match r.u32()? {
            0 => CheckpointKind::Base,
            1 => CheckpointKind::Delta,
            _ => return Err(StateError::Invalid("unknown checkpoint kind")),
        };
        let settings_hash = r.u64()?;
        let parent = match r.u32()? {
            0 => None,
            1 => Some(r.u64()?),
            _ => return Err(StateError::Invalid("unknown parent marker")),
        };
        let first_offset = r.i64()?;
        let next_offset = r.i64()?;
        let consumed = r.u64()?;
        if r.u32()? as usize != Reason::ALL.len() {
            return Err(StateError::Invalid(
                "rejection reasons differ from this build",
            ));
        }
        let mut rejected = RejectCounts::default();
        for reason in Reason::ALL {
            rejected.set(reason, r.u64()?);
        }
        let watermark = Some(r.i64()?).filter(|&w| w != i64::MIN);
        let merchants = r.list(28, |r| {
            Ok(MerchantFigures {
                merchant_id: r.str()?,
                gmv: r.u64()?,
                mobile_gmv: r.u64()?,
                transactions: r.u64()?,
            })
        })?;
        let hours = r.list(HOUR_BYTES, |r| {
            let hour = r.u32()?;
            let mut cells = Hour::boxed();
            for count in cells.seconds.iter_mut() {
                *count = r.u32()?;
            }
            for minute in cells.minutes.iter_mut() {
                *minute = MinuteCell {
                    gmv: r.u64()?,
                    mobile_gmv: r.u64()?,
                    transactions: r.u64()?,
                };
            }
            Ok((hour, cells))
        })?;
        let crossings = r.list(36, |r| {
            Ok(Crossing {
                merchant_id: r.str()?,
                threshold: r.u64()?,
                gmv_at_crossing: r.u64()?,
                settled_at: r.i64()?,
                position: r.i64()?,
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
            1 => DedupPart::Delta(r.list(32, |r| Ok((r.u128()?, r.u64()?, r.i64()?)))?),
            _ => return Err(StateError::Invalid("unknown dedup part")),
        };
        let matches_kind = matches!(
            (&dedup, kind, parent),
            (DedupPart::Base(_), CheckpointKind::Base, None)
                | (DedupPart::Delta(_), CheckpointKind::Delta, Some(_))
        );
        if !matches_kind {
            return Err(StateError::Invalid(
                "a base has the whole dedup set and no parent; a delta the new ids and a parent",
            ));
        }
        Ok(Self {
            seq,
            kind,
            settings_hash,
            parent,
            first_offset,
            next_offset,
            consumed,
            rejected,
            watermark,
            merchants,
            hours,
            crossings,
            dedup,
        })
    }
}

/// Encoded bytes of one hour: its index, the seconds, the minute cells.
const HOUR_BYTES: usize = 4 + SECONDS_PER_HOUR * 4 + MINUTES_PER_HOUR * 24;

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
        if n.saturating_mul(min_item_bytes.max(1)) > self.0.len() {
            return Err(StateError::Invalid("list longer than the payload"));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }
}

/// A stable hash of the settings that shape a partition's checkpointed
/// state: the window, the thresholds, and its dedup bounds
/// (`dedup_max_ids` is the partition's share).
pub fn settings_hash(settings: &crate::Settings, dedup_max_ids: usize) -> u64 {
    let mut text = format!(
        "window={}..{};dedup={}/{:?};",
        settings.window.start_millis(),
        settings.window.end_millis(),
        dedup_max_ids,
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
        let mut hour = Hour::boxed();
        hour.seconds[7] = 3;
        hour.minutes[0].gmv = 12;
        Checkpoint {
            seq,
            kind: if parent.is_some() {
                CheckpointKind::Delta
            } else {
                CheckpointKind::Base
            },
            settings_hash: 7,
            parent,
            first_offset: 0,
            next_offset: 42,
            consumed: 42,
            rejected: RejectCounts::default(),
            watermark: Some(1_000),
            merchants: vec![MerchantFigures {
                merchant_id: "m-1".into(),
                gmv: 12,
                mobile_gmv: 10,
                transactions: 3,
            }],
            hours: vec![(0, hour)],
            crossings: vec![Crossing {
                merchant_id: "m-1".into(),
                threshold: 10,
                gmv_at_crossing: 12,
                settled_at: 1_000,
                position: 41,
            }],
            dedup: match parent {
                None => DedupPart::Base(DedupState::default()),
                Some(_) => DedupPart::Delta(vec![(5, 6, 7)]),
            },
        }
    }

    #[test]
    fn a_checkpoint_survives_the_round_trip() {
        for link in [checkpoint(1, None), checkpoint(2, Some(99))] {
            assert_eq!(Checkpoint::decode(&link.encode()), Ok(link));
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
    fn damage_is_named() {
        let bytes = checkpoint(1, None).encode();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            Checkpoint::decode(&flipped),
            Err(StateError::ChecksumMismatch)
        );
        assert_eq!(
            Checkpoint::decode(&bytes[..bytes.len() - 3]),
            Err(StateError::Truncated)
        );
        assert_eq!(Checkpoint::decode(b"{}"), Err(StateError::BadMagic));
    }

    #[test]
    fn checkpoints_of_earlier_formats_are_refused_by_name() {
        let mut old = checkpoint(1, None).encode();
        for version in [1u32, 2] {
            old[8..12].copy_from_slice(&version.to_le_bytes());
            let error = Checkpoint::decode(&old).unwrap_err();
            assert_eq!(error, StateError::OldFormat(version));
            assert!(error.to_string().contains("earlier gmv-stream"), "{error}");
        }
        old[8..12].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(
            Checkpoint::decode(&old),
            Err(StateError::UnsupportedVersion(4))
        );
    }
}
