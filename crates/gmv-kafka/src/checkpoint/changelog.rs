//! Per-partition checkpoints in a compacted Kafka changelog topic, so that a
//! partition's state can move to any machine with the partition (the Kafka
//! Streams model): whoever the group assigns the partition reads its chain
//! back from the topic, wherever it runs.
//!
//! Input partition `p` keeps its chain in changelog partition
//! `p % changelog partitions`. A link (one encoded [`Checkpoint`], checksum
//! and all) is cut into chunks of at most [`CHUNK_BYTES`], because a base can
//! be far larger than a broker accepts in one record. Each chunk is a record
//! keyed `TOPIC/PARTITION/SEQ/CHUNK`, with headers saying the link's kind and
//! how many chunks it has. A save returns only once the broker has
//! acknowledged every chunk (idempotent producer, `acks=all`), which is what
//! makes it durable enough to commit the input offset after.
//!
//! Keys are unique per link, so compaction keeps every link until it is
//! deleted: when a base is written, the links before the previous base get
//! tombstones (null records), as the directory store deletes their files.
//! Links set aside on load (torn, corrupt, or after one that is) are
//! tombstoned too; their records stay readable in the log until compaction.
//!
//! Loading reads the changelog partitions to their end, keeps the latest
//! record per key (as compaction would), and chooses the chain with
//! [`super::select_chain`]. It starts where the partition's oldest kept link
//! begins, which each offset commit records in its metadata
//! ([`ChangelogTopic::commit_metadata`]), so a takeover reads about two full
//! checkpoints whether or not the broker has compacted yet; without that
//! metadata, or if nothing usable is found after it, it reads from the
//! beginning.

use super::{decode_link, select_chain, Kind, Loaded};
use crate::config::KafkaConfig;
use crate::outputs::{client_config, read_to_end, reader_of, topic_partitions};
use crate::KafkaError;
use gmv_core::state::Checkpoint;
use parking_lot::Mutex;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::Offset;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Largest chunk of a link per record: well under the 1 MB record limit of
/// Kafka's (and librdkafka's) defaults, with room for key and headers.
pub const CHUNK_BYTES: usize = 512 * 1024;

const CHUNKS_HEADER: &str = "chunks";
const LINK_HEADER: &str = "link";

/// A link known to be in the changelog (not tombstoned).
#[derive(Debug, Clone, Copy)]
struct LiveLink {
    kind: Kind,
    chunks: u32,
    /// Offset of its first record.
    offset: i64,
}

/// A partition's live links by sequence number.
type LiveLinks = BTreeMap<u64, LiveLink>;

/// Prefix of the offset-commit metadata naming where to start reading.
const METADATA_PREFIX: &str = "gmv-changelog-from=";

/// The changelog topic and its producer.
pub struct ChangelogTopic {
    config: KafkaConfig,
    topic: String,
    partitions: i32,
    producer: FutureProducer,
    /// Links in the topic per input (topic, partition), for pruning.
    live: Mutex<HashMap<(String, i32), LiveLinks>>,
}

/// One chunk record as read back.
struct Chunk {
    bytes: Vec<u8>,
    chunks: u32,
    kind: Option<Kind>,
    offset: i64,
}

/// A link as read back: its chunks by index.
#[derive(Default)]
struct LinkRecords {
    chunks: BTreeMap<u32, Chunk>,
}

impl LinkRecords {
    /// How many chunk keys to cover (one past the highest index read) and
    /// the offset of its first record.
    fn span(&self) -> (u32, i64) {
        let chunks = self.chunks.keys().max().map_or(0, |i| i + 1);
        let first = self.chunks.values().map(|c| c.offset).min().unwrap_or(-1);
        (chunks, first)
    }
}

impl ChangelogTopic {
    /// The changelog `config.checkpoint.topic` (which must exist) and an
    /// idempotent producer for it.
    pub fn open(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let topic = config.checkpoint.topic.clone();
        let partitions =
            topic_partitions(config, &topic)?.ok_or_else(|| KafkaError::MissingTopic {
                topic: topic.clone(),
                brokers: config.brokers.clone(),
            })?;
        let mut cfg = client_config(config);
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            // A checkpoint that cannot be made durable in this time fails
            // (and is retried as a full one) rather than blocking the member.
            .set(
                "message.timeout.ms",
                config.connect_timeout.as_millis().max(1).to_string(),
            );
        for (key, value) in &config.producer {
            cfg.set(key, value);
        }
        let producer = cfg.create().map_err(|source| KafkaError::Client {
            what: "creating the changelog producer",
            source,
        })?;
        Ok(Self {
            config: config.clone(),
            topic,
            partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
            producer,
            live: Mutex::new(HashMap::new()),
        })
    }

    /// The changelog partition holding input `partition`'s chain.
    fn changelog_partition(&self, partition: i32) -> i32 {
        partition.rem_euclid(self.partitions)
    }

    /// Makes `checkpoint` durable as the next link of its partition's chain;
    /// returns its checksum (the next delta's parent).
    pub fn save(
        &self,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
    ) -> Result<u64, KafkaError> {
        let (bytes, checksum) = checkpoint.encode_with_checksum();
        let kind = checkpoint.kind;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let count = chunks.len().to_string();
        let mut pending = Vec::with_capacity(chunks.len());
        for (index, chunk) in chunks.iter().enumerate() {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: CHUNKS_HEADER,
                    value: Some(count.as_str()),
                })
                .insert(Header {
                    key: LINK_HEADER,
                    value: Some(kind.as_str()),
                });
            let key = link_key(topic, partition, checkpoint.seq, index as u32);
            pending.push(self.send(&key, partition, Some(chunk), Some(headers))?);
        }
        let mut first_offset = i64::MAX;
        for delivery in pending {
            match futures::executor::block_on(delivery) {
                Ok(Ok(delivered)) => first_offset = first_offset.min(delivered.offset),
                Ok(Err((source, _))) => {
                    return Err(KafkaError::Client {
                        what: "writing a checkpoint to the changelog topic",
                        source,
                    })
                }
                Err(_) => {
                    return Err(KafkaError::Client {
                        what: "writing a checkpoint to the changelog topic",
                        source: RdKafkaError::Canceled,
                    })
                }
            }
        }
        let mut live = self.live.lock();
        let links = live.entry((topic.to_string(), partition)).or_default();
        let link = LiveLink {
            kind,
            chunks: chunks.len() as u32,
            offset: first_offset,
        };
        links.insert(checkpoint.seq, link);
        if kind == Kind::Base {
            self.prune(topic, partition, links, checkpoint.seq);
        }
        Ok(checksum)
    }

    /// Keeps the newest base (just written), the base before it and that
    /// base's deltas; tombstones older links.
    fn prune(&self, topic: &str, partition: i32, links: &mut LiveLinks, newest_base: u64) {
        let previous_base = links
            .iter()
            .filter(|(seq, link)| link.kind == Kind::Base && **seq < newest_base)
            .map(|(seq, _)| *seq)
            .max();
        let Some(keep_from) = previous_base else {
            return;
        };
        let kept = links.split_off(&keep_from);
        for (seq, link) in std::mem::replace(links, kept) {
            self.tombstone(topic, partition, seq, link.chunks);
        }
    }

    /// The offset-commit metadata for `partition`: where its oldest kept
    /// link starts in the changelog (`None` before its first checkpoint).
    pub fn commit_metadata(&self, topic: &str, partition: i32) -> Option<String> {
        let live = self.live.lock();
        let oldest = live
            .get(&(topic.to_string(), partition))?
            .values()
            .map(|link| link.offset)
            .min()?;
        Some(format!("{METADATA_PREFIX}{oldest}"))
    }

    /// Deletes a link's chunks (best effort: a link left behind is older
    /// than the chain resumed from, or is overwritten by the next link with
    /// its sequence number).
    fn tombstone(&self, topic: &str, partition: i32, seq: u64, chunks: u32) {
        for index in 0..chunks {
            let key = link_key(topic, partition, seq, index);
            if let Err(error) = self.send(&key, partition, None, None) {
                tracing::warn!(%error, key, "could not delete an old checkpoint record");
            }
        }
    }

    fn send(
        &self,
        key: &str,
        partition: i32,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic)
            .key(key)
            .partition(self.changelog_partition(partition));
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                // Backpressure: wait for the queue rather than buffer more.
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(KafkaError::Client {
                        what: "writing a checkpoint to the changelog topic",
                        source,
                    })
                }
            }
        }
    }

    /// Loads the chains of `partitions` of `topic`, in that order;
    /// `metadata` is each partition's committed offset metadata (empty if
    /// none), naming where to start reading.
    pub fn load(
        &self,
        topic: &str,
        partitions: &[i32],
        metadata: &[String],
    ) -> Result<Vec<Loaded>, KafkaError> {
        let hints: Vec<Option<i64>> = partitions
            .iter()
            .enumerate()
            .map(|(i, _)| {
                metadata
                    .get(i)
                    .and_then(|m| m.strip_prefix(METADATA_PREFIX))
                    .and_then(|o| o.parse().ok())
            })
            .collect();
        let mut found = self.read(topic, partitions, &hints)?;
        let mut out = Vec::with_capacity(partitions.len());
        let mut from_start = Vec::new();
        for (i, &partition) in partitions.iter().enumerate() {
            let links = found.remove(&partition).unwrap_or_default();
            let loaded = self.choose(topic, partition, &links);
            if loaded.chain.is_empty() && hints[i].is_some() {
                from_start.push(i);
            }
            out.push(loaded);
        }
        // Nothing usable after the hint (a damaged newest base, say): the
        // whole partition, as if there were no hint.
        if !from_start.is_empty() {
            let retry: Vec<i32> = from_start.iter().map(|&i| partitions[i]).collect();
            tracing::warn!(?retry, "no usable checkpoint after the committed changelog offset; reading the changelog from its beginning");
            let mut found = self.read(topic, &retry, &vec![None; retry.len()])?;
            for i in from_start {
                let partition = partitions[i];
                let links = found.remove(&partition).unwrap_or_default();
                let mut again = self.choose(topic, partition, &links);
                again
                    .set_aside
                    .splice(0..0, std::mem::take(&mut out[i].set_aside));
                out[i] = again;
            }
        }
        Ok(out)
    }

    /// The latest record per key of `partitions`' links, read from each
    /// changelog partition's start hint (the smallest of its input
    /// partitions', or the beginning if one has none).
    fn read(
        &self,
        topic: &str,
        partitions: &[i32],
        hints: &[Option<i64>],
    ) -> Result<HashMap<i32, BTreeMap<u64, LinkRecords>>, KafkaError> {
        let mut starts: BTreeMap<i32, Offset> = BTreeMap::new();
        for (&partition, hint) in partitions.iter().zip(hints) {
            let from = hint.map_or(Offset::Beginning, Offset::Offset);
            starts
                .entry(self.changelog_partition(partition))
                .and_modify(|start| *start = earliest(*start, from))
                .or_insert(from);
        }
        let starts: Vec<(i32, Offset)> = starts.into_iter().collect();
        let mut found: HashMap<i32, BTreeMap<u64, LinkRecords>> = HashMap::new();
        if starts.is_empty() {
            return Ok(found);
        }
        tracing::info!(changelog = %self.topic, ?starts, "reading checkpoints (changelog partition, from)");
        let consumer = reader_of(&self.config, &self.topic, Some(&starts))?;
        read_to_end(&consumer, &self.config, &self.topic, |message| {
            let Some((key_topic, partition, seq, index)) = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(parse_key)
            else {
                return;
            };
            if key_topic != topic || !partitions.contains(&partition) {
                return;
            }
            let links = found.entry(partition).or_default();
            match message.payload() {
                // A tombstone deletes the chunk, as compaction would.
                None => {
                    if let Some(link) = links.get_mut(&seq) {
                        link.chunks.remove(&index);
                        if link.chunks.is_empty() {
                            links.remove(&seq);
                        }
                    }
                }
                Some(bytes) => {
                    let (chunks, kind) = chunk_headers(message);
                    let chunk = Chunk {
                        bytes: bytes.to_vec(),
                        chunks,
                        kind,
                        offset: message.offset(),
                    };
                    links.entry(seq).or_default().chunks.insert(index, chunk);
                }
            }
        })?;
        Ok(found)
    }

    /// Chooses one partition's chain from its links; tombstones the links
    /// set aside and remembers the rest for pruning.
    fn choose(&self, topic: &str, partition: i32, links: &BTreeMap<u64, LinkRecords>) -> Loaded {
        // A link's kind is what its first chunk says; `read` checks the rest.
        let listed: Vec<(u64, Kind, u64)> = links
            .iter()
            .map(|(&seq, link)| {
                let kind = link
                    .chunks
                    .values()
                    .find_map(|c| c.kind)
                    .unwrap_or(Kind::Delta);
                (seq, kind, seq)
            })
            .collect();
        let chain = select_chain(&listed, |&seq, _| {
            let link = links.get(&seq).ok_or("no records")?;
            let bytes = assemble(link)?;
            decode_link(&bytes, seq)
        });
        let loaded = chain.map_set_aside(|seq| {
            let (chunks, first) = links[&seq].span();
            self.tombstone(topic, partition, seq, chunks);
            format!(
                "changelog topic {} partition {}, key {}, offset {first} (tombstoned)",
                self.topic,
                self.changelog_partition(partition),
                link_key(topic, partition, seq, 0),
            )
        });
        let end = loaded.chain.last().map_or(0, |c| c.seq);
        let kept = listed
            .iter()
            .filter(|(seq, _, _)| *seq <= end)
            .map(|&(seq, kind, _)| {
                let (chunks, offset) = links[&seq].span();
                (
                    seq,
                    LiveLink {
                        kind,
                        chunks,
                        offset,
                    },
                )
            })
            .collect();
        self.live
            .lock()
            .insert((topic.to_string(), partition), kept);
        loaded
    }
}

/// The earlier of two start offsets.
fn earliest(a: Offset, b: Offset) -> Offset {
    match (a, b) {
        (Offset::Offset(a), Offset::Offset(b)) => Offset::Offset(a.min(b)),
        _ => Offset::Beginning,
    }
}

/// The key of chunk `index` of link `seq` of `topic`/`partition`.
fn link_key(topic: &str, partition: i32, seq: u64, index: u32) -> String {
    format!("{topic}/{partition}/{seq:012}/{index}")
}

/// `(topic, partition, seq, index)` of a [`link_key`] (topic names cannot
/// contain `/`).
fn parse_key(key: &str) -> Option<(&str, i32, u64, u32)> {
    let mut parts = key.rsplitn(4, '/');
    let index = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    Some((topic, partition, seq, index))
}

/// The chunk count and link kind a record's headers give (0 and `None` if
/// absent: such a link cannot be assembled).
fn chunk_headers(message: &BorrowedMessage<'_>) -> (u32, Option<Kind>) {
    let mut chunks = 0;
    let mut kind = None;
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header.value.and_then(|v| std::str::from_utf8(v).ok());
            match (header.key, value) {
                (CHUNKS_HEADER, Some(v)) => chunks = v.parse().unwrap_or(0),
                (LINK_HEADER, Some(v)) => kind = Kind::parse(v),
                _ => {}
            }
        }
    }
    (chunks, kind)
}

/// A link's bytes from its chunks: chunk 0 says how many there are, and
/// every one of them must be present and agree (the checksum then checks
/// the content).
fn assemble(link: &LinkRecords) -> Result<Vec<u8>, String> {
    let count = link
        .chunks
        .get(&0)
        .ok_or("its first chunk is missing")?
        .chunks;
    if count == 0 {
        return Err("its records lack the chunk headers".into());
    }
    let mut bytes = Vec::new();
    for index in 0..count {
        let chunk = link
            .chunks
            .get(&index)
            .ok_or_else(|| format!("chunk {index} of {count} is missing (torn write)"))?;
        if chunk.chunks != count {
            return Err(format!(
                "chunk {index} belongs to a different write ({} chunks, not {count})",
                chunk.chunks
            ));
        }
        bytes.extend_from_slice(&chunk.bytes);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: &[u8], chunks: u32) -> Chunk {
        Chunk {
            bytes: bytes.to_vec(),
            chunks,
            kind: Some(Kind::Base),
            offset: 0,
        }
    }

    #[test]
    fn keys_round_trip_even_with_dots_and_dashes_in_the_topic() {
        let key = link_key("gmv.settled-txns", 11, 42, 3);
        assert_eq!(key, "gmv.settled-txns/11/000000000042/3");
        assert_eq!(parse_key(&key), Some(("gmv.settled-txns", 11, 42, 3)));
        assert_eq!(parse_key("no-slashes"), None);
        assert_eq!(parse_key("t/x/1/0"), None);
    }

    #[test]
    fn a_link_is_assembled_from_all_its_chunks_in_order() {
        let mut link = LinkRecords::default();
        link.chunks.insert(1, chunk(b"world", 2));
        link.chunks.insert(0, chunk(b"hello ", 2));
        assert_eq!(assemble(&link).unwrap(), b"hello world");
    }

    #[test]
    fn a_torn_or_mixed_link_is_refused_with_the_reason() {
        let mut torn = LinkRecords::default();
        torn.chunks.insert(0, chunk(b"a", 3));
        torn.chunks.insert(2, chunk(b"c", 3));
        assert!(assemble(&torn)
            .unwrap_err()
            .contains("chunk 1 of 3 is missing"));

        let mut mixed = LinkRecords::default();
        mixed.chunks.insert(0, chunk(b"a", 2));
        mixed.chunks.insert(1, chunk(b"b", 3));
        assert!(assemble(&mixed).unwrap_err().contains("different write"));

        let mut headless = LinkRecords::default();
        headless.chunks.insert(0, chunk(b"a", 0));
        assert!(assemble(&headless).unwrap_err().contains("headers"));
    }
}
