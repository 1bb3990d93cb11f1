//! The embedded default: librdkafka's mock cluster, in process, speaking the
//! real Kafka protocol over loopback. `gmv demo` runs the whole Kafka path on
//! it with nothing installed.
//!
//! Its limits shape how it is used (BROKERS.md): it keeps only the last
//! ~5 MiB per partition, so the demo consumes while it produces; the first
//! group join takes ~3 s.

use crate::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// A running mock cluster; stops when dropped.
pub struct EmbeddedCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedCluster {
    /// Starts a one-broker cluster.
    pub fn start() -> Result<Self, KafkaError> {
        let cluster = MockCluster::new(1).map_err(|source| KafkaError::Client {
            what: "starting the embedded mock cluster",
            source,
        })?;
        Ok(Self { cluster })
    }

    /// Its bootstrap address (`127.0.0.1:PORT`).
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        self.cluster
            .create_topic(topic, partitions, 1)
            .map_err(|source| KafkaError::Client {
                what: "creating a topic on the mock cluster",
                source,
            })
    }
}
