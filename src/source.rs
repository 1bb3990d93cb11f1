//! Sources: where records come from before the workers decode them. Each
//! fills recycled [`Batch`]es, so reading allocates nothing in the steady
//! state: a file or stdin of newline-delimited JSON ([`LineSource`]), or the
//! synthetic 11.11 stream, optionally paced ([`SynthSource`]).

use gmv_synth::{Generator, SynthConfig};
use std::io::{self, BufRead, BufReader, Read};
use std::time::{Duration, Instant};

/// Records per batch: big enough to amortise channel hand-offs and counter
/// flushes, small enough to keep the latency of a batch in milliseconds.
pub const BATCH_RECORDS: usize = 4096;
/// Bytes per batch before it is handed on, whatever the record count.
const BATCH_BYTES: usize = 1 << 20;

/// A run of records, stored back to back in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    /// End offset of each record in `data`.
    ends: Vec<usize>,
    /// Position (1-based line or record number) of each record in its source.
    positions: Vec<u64>,
    /// Indices of records cut short because they exceeded the hold limit,
    /// with their full length.
    pub truncated: Vec<(usize, u64)>,
    /// When the batch started filling: the start of its records' latency.
    pub started: Option<Instant>,
}

impl Batch {
    /// An empty batch with room for a typical load.
    pub fn with_capacity() -> Self {
        Self {
            data: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            ends: Vec::with_capacity(BATCH_RECORDS),
            positions: Vec::with_capacity(BATCH_RECORDS),
            ..Self::default()
        }
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.truncated.clear();
        self.positions.clear();
        self.started = None;
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The records with their positions, in order.
    pub fn records(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.ends
            .iter()
            .zip(&self.positions)
            .map(move |(&end, &position)| {
                let record = &self.data[start..end];
                start = end;
                (position, record)
            })
    }

    /// The full length of record `index` if it was cut short on reading.
    pub fn truncated_length(&self, index: usize) -> Option<u64> {
        self.truncated
            .iter()
            .find(|(at, _)| *at == index)
            .map(|(_, length)| *length)
    }

    /// Appends one record found at `position` of its source.
    pub fn push(&mut self, record: &[u8], position: u64) {
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len());
        self.positions.push(position);
    }

    /// Whether the batch should be handed on.
    pub fn is_full(&self) -> bool {
        self.ends.len() >= BATCH_RECORDS || self.data.len() >= BATCH_BYTES
    }
}

/// Something that fills batches.
pub trait Source: Send {
    /// A short name for record origins (`events.jsonl`, `stdin`, `synth`).
    fn name(&self) -> &str;
    /// Fills `batch` (which is empty); returns `false` once the source is exhausted.
    fn fill(&mut self, batch: &mut Batch) -> io::Result<bool>;
}

/// Newline-delimited records from a reader. A trailing `\r` is stripped and
/// blank lines are skipped here, while the line is still in cache: the
/// worker then reaches each record's bytes only through the engine, which
/// prefetches them a few records ahead. A record longer than `hold_limit`
/// keeps only its first `hold_limit` bytes (it is oversize and rejected
/// anyway) so one endless line cannot exhaust memory.
pub struct LineSource {
    name: String,
    reader: BufReader<Box<dyn Read + Send>>,
    hold_limit: usize,
    next_position: u64,
}

impl LineSource {
    /// Reads `reader`, naming its records `name:LINE`.
    pub fn new(name: impl Into<String>, reader: Box<dyn Read + Send>, hold_limit: usize) -> Self {
        Self {
            name: name.into(),
            reader: BufReader::with_capacity(1 << 20, reader),
            hold_limit,
            next_position: 1,
        }
    }

    /// Appends the next line's bytes to `data`; returns the line's full
    /// length, or `None` at end of input.
    fn read_line(&mut self, data: &mut Vec<u8>) -> io::Result<Option<u64>> {
        let mut length = 0u64;
        let mut saw_any = false;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(saw_any.then_some(length));
            }
            saw_any = true;
            let (chunk, ends_line) = match memchr::memchr(b'\n', buf) {
                Some(at) => (at, true),
                None => (buf.len(), false),
            };
            let room = self.hold_limit.saturating_sub(length as usize);
            data.extend_from_slice(&buf[..chunk.min(room)]);
            length += chunk as u64;
            self.reader.consume(chunk + usize::from(ends_line));
            if ends_line {
                return Ok(Some(length));
            }
        }
    }
}

impl Source for LineSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn fill(&mut self, batch: &mut Batch) -> io::Result<bool> {
        while !batch.is_full() {
            let start = batch.data.len();
            let Some(length) = self.read_line(&mut batch.data)? else {
                return Ok(false);
            };
            if batch.started.is_none() {
                batch.started = Some(Instant::now());
            }
            let position = self.next_position;
            self.next_position += 1;
            if batch.data[start..].ends_with(b"\r") {
                batch.data.pop();
            }
            if is_blank(&batch.data[start..]) {
                batch.data.truncate(start);
                continue;
            }
            if length > self.hold_limit as u64 {
                batch.truncated.push((batch.ends.len(), length));
            }
            batch.ends.push(batch.data.len());
            batch.positions.push(position);
        }
        Ok(true)
    }
}

/// Blank lines (only whitespace) separate nothing and are not records.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The synthetic stream, as fast as possible or paced at `rate` records/s.
pub struct SynthSource {
    generator: Generator,
    rate: Option<u64>,
    begun: Option<Instant>,
    produced: u64,
}

impl SynthSource {
    /// Generates per `config`; `rate` of `None` or 0 means unpaced.
    pub fn new(config: SynthConfig, rate: Option<u64>) -> Self {
        Self {
            generator: Generator::new(config),
            rate: rate.filter(|&r| r > 0),
            begun: None,
            produced: 0,
        }
    }
}

impl Source for SynthSource {
    fn name(&self) -> &str {
        "synth"
    }

    fn fill(&mut self, batch: &mut Batch) -> io::Result<bool> {
        let begun = *self.begun.get_or_insert_with(Instant::now);
        // Paced batches stay ~10 ms long so latency reflects the pace, not the batching.
        let limit = match self.rate {
            Some(rate) => (rate / 100).clamp(1, BATCH_RECORDS as u64) as usize,
            None => BATCH_RECORDS,
        };
        if let Some(rate) = self.rate {
            let due = begun + Duration::from_secs_f64(self.produced as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        batch.started = Some(Instant::now());
        while batch.len() < limit {
            let Some(record) = self.generator.next() else {
                return Ok(false);
            };
            self.produced += 1;
            batch.push(&record.payload, self.produced);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &'static [u8], hold_limit: usize) -> Vec<(Vec<u8>, Option<u64>)> {
        let mut source = LineSource::new("t", Box::new(input), hold_limit);
        let mut out = Vec::new();
        loop {
            let mut batch = Batch::with_capacity();
            let more = source.fill(&mut batch).unwrap();
            for (i, (_, record)) in batch.records().enumerate() {
                let cut = batch.truncated_length(i);
                out.push((record.to_vec(), cut));
            }
            if !more {
                return out;
            }
        }
    }

    #[test]
    fn lines_split_on_newlines_with_or_without_a_final_one() {
        let got = lines(b"a\n\nbc\r\nd", 100);
        let records: Vec<&[u8]> = got.iter().map(|(r, _)| r.as_slice()).collect();
        assert_eq!(records, [&b"a"[..], b"bc", b"d"]);
        assert_eq!(lines(b"a\n", 100).len(), 1);
        assert!(lines(b"", 100).is_empty());
    }

    /// The one batch a short input fills (it must end within it).
    fn only_batch(input: &'static [u8], hold_limit: usize) -> Batch {
        let mut source = LineSource::new("t", Box::new(input), hold_limit);
        let mut batch = Batch::with_capacity();
        assert!(!source.fill(&mut batch).unwrap());
        batch
    }

    #[test]
    fn blank_lines_are_skipped_but_keep_their_line_numbers() {
        let batch = only_batch(b"x\n \t\r\n\r\ny\r\n \n", 100);
        let records: Vec<(u64, &[u8])> = batch.records().collect();
        assert_eq!(records, [(1, &b"x"[..]), (4, b"y")]);
    }

    #[test]
    fn a_blank_line_past_the_hold_limit_is_skipped_with_its_truncation() {
        let batch = only_batch(b"      \nok\n", 4);
        let records: Vec<(u64, &[u8])> = batch.records().collect();
        assert_eq!(records, [(2, &b"ok"[..])]);
        assert_eq!(batch.truncated_length(0), None);
    }

    #[test]
    fn blank_means_only_whitespace() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t"));
        assert!(!is_blank(b" x"));
        assert!(!is_blank(b"{}"));
    }

    #[test]
    fn an_endless_line_is_held_only_up_to_the_limit() {
        let got = lines(b"0123456789\nok\n", 4);
        assert_eq!(got[0], (b"0123".to_vec(), Some(10)));
        assert_eq!(got[1], (b"ok".to_vec(), None));
    }

    #[test]
    fn synth_source_yields_exactly_the_configured_count() {
        let config = SynthConfig {
            events: 10_000,
            ..SynthConfig::default()
        };
        let mut source = SynthSource::new(config, None);
        let mut total = 0;
        loop {
            let mut batch = Batch::with_capacity();
            let more = source.fill(&mut batch).unwrap();
            total += batch.len();
            if !more {
                break;
            }
        }
        assert_eq!(total, 10_000);
    }
}
