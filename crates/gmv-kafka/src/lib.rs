//! gmv-kafka: the Kafka side of gmv-stream.
//!
//! # Layout
//! - [`config`]: the `[kafka]` section, with librdkafka pass-through tables.
//! - [`source`]: consumer-group ingestion as a source of the run loop. Each
//!   consumer thread is a group member that owns whole partitions; each
//!   partition is a [`gmv_core::Partition`], restored from its checkpoint on
//!   assignment and checkpointed (state + next offset, durably) before its
//!   offset is committed. That is what makes totals exactly-once with
//!   respect to the log.
//! - [`checkpoint`]: the checkpoint stores (a directory, or a compacted
//!   changelog topic), and how a chain is chosen on restore.
//! - [`outputs`]: the producer of dead letters, alerts and snapshots, and the
//!   cluster chores (reach it, create topics, read back announced alerts).
//! - [`snapshots`]: the publisher's sink for the snapshots topic.
//! - [`wire`]: the records of the snapshots topic.
//! - [`global`]: the global view rebuilt from the snapshots topic alone
//!   (`gmv serve --from-kafka`), as another source of the same run loop.
//! - [`generate`]: the synthetic 11.11 stream, produced into a topic.
//! - [`mock`]: librdkafka's in-process mock cluster, the embedded default.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod generate;
pub mod global;
pub mod mock;
pub mod outputs;
pub mod snapshots;
pub mod source;
pub mod wire;

pub use config::KafkaConfig;

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong on the Kafka side, by whose move it is.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The cluster did not answer in time (external: check `kafka.brokers`).
    #[error("cannot reach Kafka at `{brokers}` within {waited:?} (kafka.brokers, kafka.connect_timeout): {source}")]
    Unreachable {
        /// The bootstrap list tried.
        brokers: String,
        /// How long we waited.
        waited: Duration,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A topic does not exist and may not be created (user: create it or
    /// allow `kafka.create_topics`).
    #[error("topic `{topic}` does not exist on `{brokers}`; create it, or set kafka.create_topics = true")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// The cluster.
        brokers: String,
    },
    /// The broker refused to create a topic.
    #[error("could not create topic `{topic}`: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's reason.
        reason: String,
    },
    /// A librdkafka call failed.
    #[error("{what}: {source}")]
    Client {
        /// What we were doing.
        what: &'static str,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Something took longer than `kafka.connect_timeout`.
    #[error("timed out {what}")]
    Timeout {
        /// What we were doing.
        what: String,
    },
    /// The checkpoint directory could not be used (environment: disk, permissions).
    #[error("checkpoint directory `{dir}`: {source}")]
    Checkpoint {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint was written under settings that shape state differently
    /// (user: use a new `kafka.checkpoint.dir` and group, or the old settings).
    #[error("checkpoint of {topic}/{partition} was written with different window, threshold or dedup settings; use a new kafka.checkpoint.dir and kafka.group_id, or the settings it was written with")]
    SettingsChanged {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A partition's checkpoints are in a format this version does not
    /// resume (user: finish with the version that wrote them, or start over
    /// with a new store and group).
    #[error("checkpoint of {topic}/{partition}: {why}; finish the day with the gmv-stream version that wrote it, or start over with a new kafka.checkpoint.dir (or kafka.checkpoint.topic) and kafka.group_id")]
    Refused {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What the checkpoint is.
        why: String,
    },
    /// A thread could not be started (environment: process limits).
    #[error("{what}: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint verified but could not be restored (internal bug).
    #[error("restoring {topic}/{partition}: {reason}")]
    Restore {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        reason: String,
    },
    /// The cluster no longer holds records this run has read: it came back
    /// without its data (a broker on a memory store, a lost disk), the topic
    /// was deleted and made again, or retention removed records before they
    /// were read. Going on would make every total wrong.
    #[error("the cluster no longer has records this run has read: {what}. The broker may have come back without its data, or the topic was deleted and made again, or retention removed records before they were read. Stopping so that no total goes wrong; the checkpoints are kept. To start over on a new log, use a new kafka.group_id and a new checkpoint store")]
    LogLost {
        /// What was found, partition by partition.
        what: String,
    },
    /// Dead letters or alerts could not be delivered (external): the run
    /// stops before checkpointing past them, so a restart re-produces them.
    #[error("{0} dead-letter or alert record(s) could not be delivered; stopping before checkpointing past them")]
    OutputsLost(u64),
}

impl KafkaError {
    /// Whether the error says the cluster is out of reach for now (a broker
    /// restarting, a network partition) rather than that something is wrong:
    /// worth trying again later instead of stopping the run.
    pub fn is_transient(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as Code;
        match self {
            KafkaError::Timeout { .. } => true,
            KafkaError::Unreachable { .. } => true,
            KafkaError::Client { source, .. } => matches!(
                source.rdkafka_error_code(),
                Some(
                    Code::OperationTimedOut
                        | Code::RequestTimedOut
                        | Code::AllBrokersDown
                        | Code::BrokerTransportFailure
                        | Code::NetworkException
                        | Code::LeaderNotAvailable
                        | Code::NotLeaderForPartition
                        | Code::NotCoordinator
                        | Code::CoordinatorNotAvailable
                        | Code::CoordinatorLoadInProgress
                )
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError as RdKafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn an_outage_is_transient_and_a_missing_topic_is_not() {
        let flush = |code| KafkaError::Client {
            what: "waiting for output records to be delivered",
            source: RdKafkaError::Flush(code),
        };
        assert!(flush(Code::OperationTimedOut).is_transient());
        assert!(flush(Code::AllBrokersDown).is_transient());
        assert!(!flush(Code::TopicAuthorizationFailed).is_transient());
        assert!(!KafkaError::MissingTopic {
            topic: "alerts".into(),
            brokers: "b".into(),
        }
        .is_transient());
        assert!(KafkaError::Timeout {
            what: "reading a topic".into()
        }
        .is_transient());
    }
}
