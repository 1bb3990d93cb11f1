//! Dead letters of a split run, written in input order whatever thread
//! refused them.
//!
//! A chunk's records are refused by the owners of their partitions, each in
//! its own time. The ledger keeps each chunk's refusals until every owner
//! has applied its part of the chunk and the chunk before it is written;
//! then it writes them by line, naming each record `NAME:LINE` (its line
//! number in the input, counted from the chunks' line counts, so no thread
//! counts lines up front).

use gmv_core::reject::Rejection;
use gmv_core::sink::{DeadLetter, DeadLetterSink};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

/// A record an owner refused.
pub(crate) struct Refusal {
    /// Its line in its chunk.
    pub(crate) line: u32,
    /// The record as read.
    pub(crate) payload: Vec<u8>,
    /// Why.
    pub(crate) rejection: Rejection,
}

struct Entry {
    lines: Option<u32>,
    parts_left: usize,
    refusals: Vec<Refusal>,
}

struct State {
    next: u64,
    base_line: u64,
    entries: BTreeMap<u64, Entry>,
}

/// The ordered dead-letter writer of one split run.
pub(crate) struct Ledger {
    name: String,
    owners: usize,
    sink: Arc<dyn DeadLetterSink>,
    state: Mutex<State>,
}

impl Ledger {
    /// A ledger for records named `name:LINE`, each chunk applied by
    /// `owners` owners, writing to `sink`.
    pub(crate) fn new(name: &str, owners: usize, sink: Arc<dyn DeadLetterSink>) -> Self {
        Self {
            name: name.to_owned(),
            owners,
            sink,
            state: Mutex::new(State {
                next: 0,
                base_line: 0,
                entries: BTreeMap::new(),
            }),
        }
    }

    /// Chunk `chunk` has `lines` lines (its decoder says so).
    pub(crate) fn lines(&self, chunk: u64, lines: u32) -> io::Result<()> {
        let mut state = self.state.lock();
        self.entry(&mut state, chunk).lines = Some(lines);
        self.write_ready(&mut state)
    }

    /// One owner has applied its part of `chunk`, refusing `refusals`.
    pub(crate) fn part(&self, chunk: u64, mut refusals: Vec<Refusal>) -> io::Result<()> {
        let mut state = self.state.lock();
        let entry = self.entry(&mut state, chunk);
        entry.parts_left -= 1;
        entry.refusals.append(&mut refusals);
        self.write_ready(&mut state)
    }

    fn entry<'s>(&self, state: &'s mut State, chunk: u64) -> &'s mut Entry {
        state.entries.entry(chunk).or_insert_with(|| Entry {
            lines: None,
            parts_left: self.owners,
            refusals: Vec::new(),
        })
    }

    /// Writes every complete chunk that is next in order.
    fn write_ready(&self, state: &mut State) -> io::Result<()> {
        loop {
            let next = state.next;
            let ready = state
                .entries
                .get(&next)
                .is_some_and(|e| e.lines.is_some() && e.parts_left == 0);
            if !ready {
                return Ok(());
            }
            let Some(mut entry) = state.entries.remove(&next) else {
                return Ok(());
            };
            entry.refusals.sort_by_key(|r| r.line);
            for refusal in &entry.refusals {
                let origin = format!(
                    "{}:{}",
                    self.name,
                    state.base_line + u64::from(refusal.line) + 1
                );
                self.sink.keep(DeadLetter {
                    rejection: &refusal.rejection,
                    payload: &refusal.payload,
                    origin: &origin,
                })?;
            }
            state.base_line += u64::from(entry.lines.unwrap_or(0));
            state.next += 1;
        }
    }

    /// Makes what was written durable.
    pub(crate) fn flush(&self) -> io::Result<()> {
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmv_core::reject::Reason;

    #[derive(Default)]
    struct Kept(Mutex<Vec<String>>);

    impl DeadLetterSink for Kept {
        fn keep(&self, letter: DeadLetter<'_>) -> io::Result<()> {
            self.0.lock().push(letter.origin.to_owned());
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn refusal(line: u32) -> Refusal {
        Refusal {
            line,
            payload: b"x".to_vec(),
            rejection: Rejection::new(Reason::Malformed, "x"),
        }
    }

    #[test]
    fn refusals_come_out_in_input_order_with_input_line_numbers() {
        let kept = Arc::new(Kept::default());
        let ledger = Ledger::new("in", 2, kept.clone());
        // Chunk 1 completes before chunk 0: it waits.
        ledger.lines(1, 4).unwrap();
        ledger.part(1, vec![refusal(2)]).unwrap();
        ledger.part(1, vec![refusal(0)]).unwrap();
        assert!(kept.0.lock().is_empty());
        ledger.part(0, vec![refusal(1)]).unwrap();
        ledger.lines(0, 3).unwrap();
        ledger.part(0, vec![]).unwrap();
        assert_eq!(*kept.0.lock(), ["in:2", "in:4", "in:6"]);
    }
}
