//! JSON-lines files written while a run goes: rejected records (dead
//! letters) and threshold alerts. Each starts empty for a run unless asked
//! to append; a link, a FIFO or a device is written through, never
//! replaced. Rejections and crossings are rare, so one lock around a
//! buffered file is no contention.

use gmv_core::output::{AlertRecord, Snapshot};
use gmv_core::sink::{DeadLetter, DeadLetterRecord, DeadLetterSink, LiveSink};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Whether a lines file starts empty or keeps what an earlier run wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinesMode {
    /// Start empty.
    Truncate,
    /// Add to the end.
    Append,
}

fn open(path: &Path, mode: LinesMode, what: &str) -> io::Result<File> {
    if path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {} is a directory", path.display()),
        ));
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(mode == LinesMode::Truncate)
        .append(mode == LinesMode::Append)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {what} {}: {e}", path.display())))
}

/// Rejected records as JSON lines: `{"reason","detail","origin","payload"}`.
pub struct DeadLetterFile {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    kept: AtomicU64,
}

impl DeadLetterFile {
    /// Opens `path` (see [`LinesMode`]).
    pub fn open(path: &Path, mode: LinesMode) -> io::Result<Self> {
        Ok(Self {
            out: Mutex::new(BufWriter::new(open(path, mode, "dead-letter file")?)),
            path: path.to_owned(),
            kept: AtomicU64::new(0),
        })
    }

    /// Records kept by this run.
    pub fn kept(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn annotate(&self, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("writing dead-letter file {}: {e}", self.path.display()),
        )
    }
}

impl DeadLetterSink for DeadLetterFile {
    fn keep(&self, letter: DeadLetter<'_>) -> io::Result<()> {
        let mut line = serde_json::to_vec(&DeadLetterRecord::new(&letter))?;
        line.push(b'\n');
        self.out
            .lock()
            .write_all(&line)
            .map_err(|e| self.annotate(e))?;
        self.kept.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut out = self.out.lock();
        out.flush().map_err(|e| self.annotate(e))?;
        match out.get_ref().sync_data() {
            // A FIFO or a terminal cannot be synced; nothing is lost by it.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
            other => other.map_err(|e| self.annotate(e)),
        }
    }
}

/// Each threshold alert as a JSON line (the `gmv.alerts` contract).
pub struct AlertFile {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    failed: AtomicU64,
}

impl AlertFile {
    /// Opens `path` (see [`LinesMode`]).
    pub fn open(path: &Path, mode: LinesMode) -> io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            out: Mutex::new(BufWriter::new(open(path, mode, "alerts file")?)),
            path: path.to_owned(),
            failed: AtomicU64::new(0),
        }))
    }

    /// Flushes; reports any write that failed before.
    pub fn finish(&self) -> io::Result<()> {
        let mut out = self.out.lock();
        out.flush()?;
        match self.failed.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(io::Error::other(format!(
                "{n} alert(s) could not be written to {}",
                self.path.display()
            ))),
        }
    }
}

impl LiveSink for AlertFile {
    fn snapshot(&self, _snapshot: &Arc<Snapshot>) {}

    fn alert(&self, alert: &AlertRecord) {
        let written = serde_json::to_vec(alert)
            .map_err(io::Error::from)
            .and_then(|mut line| {
                line.push(b'\n');
                let mut out = self.out.lock();
                out.write_all(&line)?;
                out.flush()
            });
        if written.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
