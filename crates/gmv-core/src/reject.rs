//! Why an event did not count. Every input record is either counted in GMV or
//! rejected with exactly one [`Reason`]; the counters here make the audit line
//! `consumed == counted + rejected` hold at all times.

use serde::ser::SerializeMap;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

/// The reason a record did not count. The names are the contract's
/// (`../shared/EVENTS.md`): dashboards and dead-letter readers match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Same `txn_id` and same content as an event already counted: a redelivery.
    Duplicate,
    /// Same `txn_id` as an event already counted, but different content.
    Conflict,
    /// `settled_at` outside the festival window.
    OutsideWindow,
    /// Not a JSON object of the right shape (truncated, wrong types, not UTF-8).
    Malformed,
    /// A required field is absent.
    MissingField,
    /// `amount` is not a positive decimal with at most 2 places, or too large.
    InvalidAmount,
    /// `currency` is not in the configured rate table.
    UnknownCurrency,
    /// `settled_at` is not an RFC 3339 timestamp with offset.
    InvalidTimestamp,
    /// `txn_id` or `merchant_id` empty or longer than 64 bytes.
    InvalidField,
    /// The record is larger than the configured maximum.
    Oversize,
}

impl Reason {
    /// Every reason, in report order.
    pub const ALL: [Reason; 10] = [
        Reason::Duplicate,
        Reason::Conflict,
        Reason::OutsideWindow,
        Reason::Malformed,
        Reason::MissingField,
        Reason::InvalidAmount,
        Reason::UnknownCurrency,
        Reason::InvalidTimestamp,
        Reason::InvalidField,
        Reason::Oversize,
    ];

    /// The contract name (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Duplicate => "duplicate",
            Reason::Conflict => "conflict",
            Reason::OutsideWindow => "outside_window",
            Reason::Malformed => "malformed",
            Reason::MissingField => "missing_field",
            Reason::InvalidAmount => "invalid_amount",
            Reason::UnknownCurrency => "unknown_currency",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::InvalidField => "invalid_field",
            Reason::Oversize => "oversize",
        }
    }

    /// The reason with this contract name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected record: the reason, and a human-readable detail for the dead
/// letter (e.g. which field, or the JSON parser's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// What exactly, for a person reading the dead letter.
    pub detail: Cow<'static, str>,
}

impl Rejection {
    /// A rejection with a fixed detail (no allocation).
    pub fn new(reason: Reason, detail: &'static str) -> Self {
        Self {
            reason,
            detail: Cow::Borrowed(detail),
        }
    }
}

/// One counter per reason.
#[derive(Debug, Default)]
pub struct RejectCounters {
    counts: [AtomicU64; Reason::ALL.len()],
}

impl RejectCounters {
    /// Adds `n` to a reason's counter.
    pub fn add(&self, reason: Reason, n: u64) {
        self.counts[reason.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn load(&self) -> RejectCounts {
        let mut out = RejectCounts::default();
        for reason in Reason::ALL {
            out.0[reason.index()] = self.counts[reason.index()].load(Ordering::Relaxed);
        }
        out
    }
}

/// Plain per-reason counts; serialises as `{"duplicate": 0, ...}` with every reason present.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RejectCounts([u64; Reason::ALL.len()]);

impl RejectCounts {
    /// The count for one reason.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason.index()]
    }

    /// Adds one to a reason.
    pub fn bump(&mut self, reason: Reason) {
        self.0[reason.index()] += 1;
    }

    /// Sets a reason's count.
    pub fn set(&mut self, reason: Reason, n: u64) {
        self.0[reason.index()] = n;
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another set of counts (merging partitions).
    pub fn merge(&mut self, other: &RejectCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Whether nothing was rejected.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

impl serde::Serialize for RejectCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Reason::ALL.len()))?;
        for reason in Reason::ALL {
            map.serialize_entry(reason.as_str(), &self.get(reason))?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for RejectCounts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let by_name = std::collections::BTreeMap::<String, u64>::deserialize(deserializer)?;
        let mut out = RejectCounts::default();
        for (name, n) in by_name {
            let reason = Reason::from_name(&name).ok_or_else(|| {
                serde::de::Error::custom(format!("unknown rejection reason `{name}`"))
            })?;
            out.set(reason, n);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_serialises_even_when_zero() {
        let mut counts = RejectCounts::default();
        counts.bump(Reason::Conflict);
        let json = serde_json::to_value(counts).unwrap();
        assert_eq!(json.as_object().unwrap().len(), Reason::ALL.len());
        assert_eq!(json["conflict"], 1);
        assert_eq!(json["duplicate"], 0);
        let back: RejectCounts = serde_json::from_value(json).unwrap();
        assert_eq!(back, counts);
    }

    #[test]
    fn names_round_trip() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_name(reason.as_str()), Some(reason));
        }
    }
}
