//! The `[kafka]` configuration section: where to read and write, the
//! checkpoint store, and librdkafka properties passed through untouched.

use gmv_core::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,...`); empty means the embedded mock
    /// cluster (`gmv demo` only).
    pub brokers: String,
    /// Consumer group: processes with the same group split the partitions.
    pub group_id: String,
    /// Topic of settled-transaction events.
    pub input_topic: String,
    /// Topic of live snapshots (one record per partition, plus per-minute
    /// per-second counts), read by `gmv serve --from-kafka`.
    pub snapshots_topic: String,
    /// Topic of threshold alerts (key `merchant_id:threshold`).
    pub alerts_topic: String,
    /// Topic of rejected events (original payload, reason in headers).
    pub dead_letter_topic: String,
    /// Create missing topics at start (needs the broker's permission).
    pub create_topics: bool,
    /// Partitions for topics this process creates (input and dead letters;
    /// snapshots and alerts get one, so that their order is total).
    pub partitions: i32,
    /// How long to wait for the cluster at start before giving up.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Stop after every assigned partition has been at its end this long
    /// (unset: run until stopped).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub exit_when_idle: Option<Duration>,
    /// Static group membership: this process's members join as
    /// `{id}-0`, `{id}-1`, ... (librdkafka `group.instance.id`), so a
    /// restarted process with the same id gets its partitions back without
    /// a rebalance if it returns within the session timeout. Unset: dynamic
    /// membership. Give every process its own id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_instance_id: Option<String>,
    /// Checkpoints of per-partition state.
    pub checkpoint: CheckpointConfig,
    /// librdkafka properties for every client (consumers, producers, topic
    /// readers, admin), e.g. security settings.
    pub client: BTreeMap<String, String>,
    /// librdkafka consumer properties, passed through (override ours).
    pub consumer: BTreeMap<String, String>,
    /// librdkafka producer properties, passed through (override ours).
    pub producer: BTreeMap<String, String>,
}

/// `[kafka.checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Where checkpoints are kept.
    pub store: StoreKind,
    /// Directory of per-partition checkpoint chains (`store = "dir"`).
    pub dir: PathBuf,
    /// Compacted changelog topic of checkpoints (`store = "topic"`).
    pub topic: String,
    /// How often each partition's state is made durable (offsets are
    /// committed right after).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Deltas between full (base) checkpoints.
    pub deltas_per_base: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            group_id: "gmv-stream".into(),
            input_topic: "settled-transactions".into(),
            snapshots_topic: "gmv.snapshots".into(),
            alerts_topic: "gmv.alerts".into(),
            dead_letter_topic: "gmv.dead-letter".into(),
            create_topics: true,
            partitions: 4,
            connect_timeout: Duration::from_secs(30),
            exit_when_idle: None,
            group_instance_id: None,
            checkpoint: CheckpointConfig::default(),
            client: BTreeMap::new(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

/// `kafka.checkpoint.store`: where checkpoints are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A local directory: processes that may take over each other's
    /// partitions must share it.
    Dir,
    /// A compacted Kafka topic: state moves with its partition to any
    /// machine (the Kafka Streams changelog model).
    Topic,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::Dir,
            topic: "gmv.changelog".into(),
            dir: PathBuf::from("gmv-state"),
            interval: Duration::from_secs(1),
            deltas_per_base: 30,
        }
    }
}

/// Properties gmv-stream sets itself, so a pass-through table cannot quietly
/// break its guarantees.
const RESERVED_CONSUMER_KEYS: &[(&str, &str)] = &[
    (
        "enable.auto.commit",
        "offsets are committed only after a durable checkpoint",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed only after a durable checkpoint",
    ),
    ("group.id", "set kafka.group_id"),
    (
        "group.instance.id",
        "set kafka.group_instance_id (one id per process)",
    ),
    ("bootstrap.servers", "set kafka.brokers"),
];

impl KafkaConfig {
    /// Checks what serde cannot; every problem names its key (`section.*`).
    pub fn validate(&self, section: &str) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let key = |name: &str| format!("{section}.{name}");
        for (name, value) in [
            ("group_id", &self.group_id),
            ("input_topic", &self.input_topic),
            ("snapshots_topic", &self.snapshots_topic),
            ("alerts_topic", &self.alerts_topic),
            ("dead_letter_topic", &self.dead_letter_topic),
        ] {
            if !valid_name(value) {
                errors.push(ConfigError::new(
                    key(name),
                    format!("`{value}` is not a valid name: 1..249 of [a-zA-Z0-9._-]"),
                ));
            }
        }
        if !(1..=10_000).contains(&self.partitions) {
            errors.push(ConfigError::new(
                key("partitions"),
                "must be between 1 and 10000",
            ));
        }
        if self.connect_timeout.is_zero() {
            errors.push(ConfigError::new(
                key("connect_timeout"),
                "must be more than 0, e.g. \"30s\"",
            ));
        }
        if self.exit_when_idle.is_some_and(|d| d.is_zero()) {
            errors.push(ConfigError::new(
                key("exit_when_idle"),
                "must be more than 0, or unset",
            ));
        }
        if self.checkpoint.interval < Duration::from_millis(50)
            || self.checkpoint.interval > Duration::from_secs(3600)
        {
            errors.push(ConfigError::new(
                key("checkpoint.interval"),
                "must be between 50ms and 1h, e.g. \"1s\"",
            ));
        }
        match self.checkpoint.store {
            StoreKind::Dir if self.checkpoint.dir.as_os_str().is_empty() => {
                errors.push(ConfigError::new(
                    key("checkpoint.dir"),
                    "must be a directory path",
                ));
            }
            StoreKind::Topic if !valid_name(&self.checkpoint.topic) => {
                errors.push(ConfigError::new(
                    key("checkpoint.topic"),
                    format!(
                        "`{}` is not a valid name: 1..249 of [a-zA-Z0-9._-]",
                        self.checkpoint.topic
                    ),
                ));
            }
            StoreKind::Topic
                if [
                    &self.input_topic,
                    &self.snapshots_topic,
                    &self.alerts_topic,
                    &self.dead_letter_topic,
                ]
                .contains(&&self.checkpoint.topic) =>
            {
                errors.push(ConfigError::new(
                    key("checkpoint.topic"),
                    "must be a topic of its own, not one of the input or output topics",
                ));
            }
            _ => {}
        }
        // Every client gets `client`: the consumers' guarantees apply to it.
        for (table, properties) in [("consumer", &self.consumer), ("client", &self.client)] {
            for (name, why) in RESERVED_CONSUMER_KEYS {
                if properties.contains_key(*name) {
                    errors.push(ConfigError::new(
                        format!("{section}.{table}.\"{name}\""),
                        format!("is set by gmv-stream ({why})"),
                    ));
                }
            }
        }
        if self.producer.contains_key("bootstrap.servers") {
            errors.push(ConfigError::new(
                format!("{section}.producer.\"bootstrap.servers\""),
                "is set by gmv-stream (set kafka.brokers)",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn valid_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(KafkaConfig::default().validate("kafka").is_ok());
    }

    #[test]
    fn each_problem_names_its_key() {
        let mut config = KafkaConfig {
            input_topic: "bad topic".into(),
            partitions: 0,
            ..KafkaConfig::default()
        };
        config
            .consumer
            .insert("enable.auto.commit".into(), "true".into());
        let keys: Vec<String> = config
            .validate("kafka")
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            [
                "kafka.input_topic",
                "kafka.partitions",
                "kafka.consumer.\"enable.auto.commit\""
            ]
        );
    }

    #[test]
    fn a_changelog_topic_must_be_valid_and_a_topic_of_its_own() {
        let mut config = KafkaConfig::default();
        config.checkpoint.store = StoreKind::Topic;
        assert!(config.validate("kafka").is_ok());
        for bad in ["", "has space", "gmv.alerts"] {
            config.checkpoint.topic = bad.into();
            let errors = config.validate("kafka").unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].key, "kafka.checkpoint.topic");
        }
        // The directory is not needed then, nor the topic with a directory.
        config.checkpoint.dir = PathBuf::new();
        config.checkpoint.topic = "gmv.changelog".into();
        assert!(config.validate("kafka").is_ok());
        config.checkpoint.store = StoreKind::Dir;
        config.checkpoint.topic = String::new();
        config.checkpoint.dir = PathBuf::from("state");
        assert!(config.validate("kafka").is_ok());
    }

    #[test]
    fn every_client_property_gmv_owns_is_refused_in_the_client_table() {
        let mut config = KafkaConfig::default();
        config.client.insert("group.id".into(), "x".into());
        config
            .client
            .insert("security.protocol".into(), "SASL_SSL".into());
        let errors = config.validate("kafka").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "kafka.client.\"group.id\"");
    }
}
