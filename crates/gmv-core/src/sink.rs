//! The seams between the engine and the outside: where rejected records go
//! (dead letters) and where live snapshots and alerts go (the HTTP feed, a
//! Kafka topic). Implementations live in the I/O crates; this crate only
//! names the interfaces and the dead-letter record's JSON shape.

use crate::output::{AlertRecord, Snapshot};
use crate::reject::Rejection;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A rejected record on its way to a dead-letter sink.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Why it was rejected.
    pub rejection: &'a Rejection,
    /// The record exactly as received.
    pub payload: &'a [u8],
    /// Where it came from, e.g. `events.jsonl:1234` or `settled-transactions/3@9876`.
    pub origin: &'a str,
}

/// Keeps rejected records. Implementations must not lose a record they
/// accepted without returning an error; the caller decides whether an error
/// stops processing.
pub trait DeadLetterSink: Send + Sync {
    /// Keeps one rejected record.
    fn keep(&self, letter: DeadLetter<'_>) -> std::io::Result<()>;
    /// Makes everything kept so far durable.
    fn flush(&self) -> std::io::Result<()>;
}

/// The JSON-lines form of a dead letter (file sinks, and the Kafka header's
/// companion). The payload is kept as text when it is UTF-8, otherwise as
/// lower-case hex in `payload_hex`, so no byte is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// The rejection reason's contract name.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// Where the record came from.
    pub origin: String,
    /// The payload, if it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload as hex, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
}

impl DeadLetterRecord {
    /// The record for a dead letter.
    pub fn new(letter: &DeadLetter<'_>) -> Self {
        let (payload, payload_hex) = match std::str::from_utf8(letter.payload) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (
                None,
                Some(letter.payload.iter().map(|b| format!("{b:02x}")).collect()),
            ),
        };
        Self {
            reason: letter.rejection.reason.as_str().to_owned(),
            detail: letter.rejection.detail.to_string(),
            origin: letter.origin.to_owned(),
            payload,
            payload_hex,
        }
    }

    /// The original payload bytes.
    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        match (&self.payload, &self.payload_hex) {
            (Some(text), _) => Some(text.as_bytes().to_vec()),
            (None, Some(hex)) => (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect(),
            (None, None) => None,
        }
    }
}

/// Receives what the snapshot publisher emits at each tick.
pub trait LiveSink: Send + Sync {
    /// The latest snapshot. Called once per publish tick.
    fn snapshot(&self, snapshot: &Arc<Snapshot>);
    /// A threshold alert; each (merchant, threshold) is passed exactly once.
    fn alert(&self, alert: &AlertRecord);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Reason;

    #[test]
    fn non_utf8_payloads_survive_the_round_trip() {
        let rejection = Rejection::new(Reason::Malformed, "bad bytes");
        let payload = [b'{', 0xff, 0x00, b'}'];
        let record = DeadLetterRecord::new(&DeadLetter {
            rejection: &rejection,
            payload: &payload,
            origin: "x:1",
        });
        assert_eq!(record.payload, None);
        let json = serde_json::to_string(&record).unwrap();
        let back: DeadLetterRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.payload_bytes().unwrap(), payload);
    }
}
