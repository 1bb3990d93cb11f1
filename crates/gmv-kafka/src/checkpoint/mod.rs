//! Where per-partition checkpoints are kept, and how a partition's chain of
//! them is chosen on restore.
//!
//! A partition's checkpoints form a chain: a base (the whole state) followed
//! by deltas (what changed since the previous link), numbered 1, 2, ... (the
//! format is [`gmv_core::state`]'s, the same for every source). Two stores
//! keep such chains:
//! - [`dir`]: a local directory (write, fsync, rename). Processes that may
//!   take over each other's partitions must share it.
//! - [`changelog`]: a compacted Kafka topic, so that a partition's state
//!   moves with the partition to any machine (the Kafka Streams model).
//!
//! Both choose what to resume from the same way ([`select_chain`]): the
//! newest base that verifies and the unbroken run of deltas after it that
//! verify. Every other link past that point (torn, corrupt, or following one
//! that is) is set aside, with a warning naming it, so the partition resumes
//! from the last good state and re-reads the log from that state's offset:
//! never silently wrong totals. A chain written by an earlier gmv-stream in
//! a format this one does not resume is refused whole ([`Chain::refused`]):
//! the partition does not start until someone decides what to do with it.

pub mod changelog;
pub mod dir;

use crate::config::{KafkaConfig, StoreKind};
use crate::KafkaError;
use gmv_core::state::{Checkpoint, StateError};

pub use changelog::ChangelogTopic;
pub use dir::CheckpointDir;

/// The checkpoint store `kafka.checkpoint.store` names.
pub enum CheckpointStore {
    /// A local (or shared) directory.
    Dir(CheckpointDir),
    /// A compacted changelog topic.
    Topic(Box<ChangelogTopic>),
}

/// What loading a partition's chain found: links set aside are named by
/// where they were, for the log.
pub type Loaded = Chain<String>;

/// A link's kind.
pub use gmv_core::state::CheckpointKind as Kind;

impl CheckpointStore {
    /// Opens the store `config.checkpoint` names (its topic must exist).
    pub fn open(config: &KafkaConfig) -> Result<Self, KafkaError> {
        match config.checkpoint.store {
            StoreKind::Dir => Ok(Self::Dir(CheckpointDir::open(&config.checkpoint.dir)?)),
            StoreKind::Topic => Ok(Self::Topic(Box::new(ChangelogTopic::open(config)?))),
        }
    }

    /// Makes `checkpoint` durable as the next link of its partition's chain;
    /// returns its checksum (the next delta's [`Checkpoint::parent`]).
    pub fn save(
        &self,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
    ) -> Result<u64, KafkaError> {
        match self {
            Self::Dir(dir) => dir.save(topic, partition, checkpoint),
            Self::Topic(changelog) => changelog.save(topic, partition, checkpoint),
        }
    }

    /// Loads the chains of `partitions` of `topic`, in that order, given
    /// each partition's committed offset metadata (see
    /// [`Self::commit_metadata`]; empty if none).
    pub fn load(
        &self,
        topic: &str,
        partitions: &[i32],
        metadata: &[String],
    ) -> Result<Vec<Loaded>, KafkaError> {
        match self {
            Self::Dir(dir) => partitions.iter().map(|&p| dir.load(topic, p)).collect(),
            Self::Topic(changelog) => changelog.load(topic, partitions, metadata),
        }
    }

    /// Whether loading uses the committed offsets' metadata.
    pub fn reads_commit_metadata(&self) -> bool {
        matches!(self, Self::Topic(_))
    }

    /// Metadata to commit with `partition`'s offset, for the next load.
    pub fn commit_metadata(&self, topic: &str, partition: i32) -> Option<String> {
        match self {
            Self::Dir(_) => None,
            Self::Topic(changelog) => changelog.commit_metadata(topic, partition),
        }
    }
}

/// A chain chosen by [`select_chain`], links located by `L`.
#[derive(Debug, Default)]
pub struct Chain<L> {
    /// The chain to restore: a base, then deltas. Empty: start from scratch.
    pub chain: Vec<Checkpoint>,
    /// The checksum of the chain's last link, which the next delta extends.
    pub tip: Option<u64>,
    /// Links not to use: where each is, and why.
    pub set_aside: Vec<(L, String)>,
    /// Why the partition's checkpoints cannot be resumed at all (written in
    /// a format this version does not read); nothing is set aside then.
    pub refused: Option<String>,
}

/// What is wrong with a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkProblem {
    /// Torn, corrupt or out of place: set it aside and resume before it.
    Damaged(String),
    /// Sound, but in a format this version does not resume.
    Refused(String),
}

impl From<&str> for LinkProblem {
    fn from(why: &str) -> Self {
        LinkProblem::Damaged(why.to_owned())
    }
}

impl From<String> for LinkProblem {
    fn from(why: String) -> Self {
        LinkProblem::Damaged(why)
    }
}

impl<L> Chain<L> {
    /// The same chain with each set-aside link's location mapped by `f`.
    pub fn map_set_aside<M>(self, mut f: impl FnMut(L) -> M) -> Chain<M> {
        Chain {
            chain: self.chain,
            tip: self.tip,
            set_aside: self
                .set_aside
                .into_iter()
                .map(|(at, why)| (f(at), why))
                .collect(),
            refused: self.refused,
        }
    }
}

/// Chooses the chain to resume from `links` (sorted by sequence number; `at`
/// says where each is): the newest base that `read` verifies, then the
/// unbroken run of deltas after it that verify and each extend the link
/// before them (by its checksum, which `read` returns with the link).
/// Links past the chain's end are set aside, with why; links before the
/// chosen base are not (they are the fallback until the next base prunes
/// them).
pub fn select_chain<L: PartialEq + Clone>(
    links: &[(u64, Kind, L)],
    mut read: impl FnMut(&L, u64) -> Result<(Checkpoint, u64), LinkProblem>,
) -> Chain<L> {
    let refuse = |why: String| Chain {
        chain: Vec::new(),
        tip: None,
        set_aside: Vec::new(),
        refused: Some(why),
    };
    let mut chain = Vec::new();
    let mut tip = None;
    let mut set_aside = Vec::new();
    let bases = links.iter().filter(|l| l.1 == Kind::Base).rev();
    for (seq, _, at) in bases {
        match read(at, *seq) {
            Ok((base, checksum)) => {
                chain.push(base);
                tip = Some(checksum);
                break;
            }
            Err(LinkProblem::Refused(why)) => return refuse(why),
            Err(LinkProblem::Damaged(why)) => set_aside.push((at.clone(), why)),
        }
    }
    if let Some(base_seq) = chain.first().map(|c| c.seq) {
        let after_base = links.iter().filter(|l| l.0 > base_seq);
        for (expected, (seq, kind, at)) in (base_seq + 1..).zip(after_base) {
            if *kind != Kind::Delta || *seq != expected {
                break;
            }
            match read(at, *seq) {
                Ok((delta, _)) if delta.parent != tip => {
                    set_aside.push((
                        at.clone(),
                        "extends a different link than the one before it (two writers: \
                         the partition's previous owner kept writing after it moved)"
                            .into(),
                    ));
                    break;
                }
                Ok((delta, checksum)) => {
                    chain.push(delta);
                    tip = Some(checksum);
                }
                Err(LinkProblem::Refused(why)) => return refuse(why),
                Err(LinkProblem::Damaged(why)) => {
                    set_aside.push((at.clone(), why));
                    break;
                }
            }
        }
    }
    // Links past the chain's end belong to a state we are not resuming.
    let end = chain.last().map_or(0, |c| c.seq);
    for (seq, _, at) in links {
        if *seq > end && !set_aside.iter().any(|(a, _)| a == at) {
            set_aside.push((at.clone(), "follows a link that could not be used".into()));
        }
    }
    Chain {
        chain,
        tip,
        set_aside,
        refused: None,
    }
}

/// Verifies that `bytes` are the link numbered `seq`; returns it and its
/// checksum.
fn decode_link(bytes: &[u8], seq: u64) -> Result<(Checkpoint, u64), LinkProblem> {
    let (checkpoint, checksum) = Checkpoint::decode_with_checksum(bytes).map_err(|e| match e {
        StateError::OldFormat(_) | StateError::UnsupportedVersion(_) => {
            LinkProblem::Refused(e.to_string())
        }
        _ => LinkProblem::Damaged(e.to_string()),
    })?;
    if checkpoint.seq != seq {
        return Err("sequence number differs from its name".into());
    }
    Ok((checkpoint, checksum))
}
