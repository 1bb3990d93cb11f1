//! File sinks of the binary: dead letters and alerts as JSON lines. Both
//! write through a buffered, locked file; rejections and crossings are rare,
//! so one lock is no contention.

use gmv_core::output::{AlertRecord, Snapshot};
use gmv_core::sink::{DeadLetter, DeadLetterRecord, DeadLetterSink, LiveSink};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Appends dead letters to a JSON-lines file.
pub struct DeadLetterFile {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    kept: AtomicU64,
}

impl DeadLetterFile {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("dead-letter file {}: {e}", path.display()),
                )
            })?;
        Ok(Self {
            path: path.to_owned(),
            out: Mutex::new(BufWriter::new(file)),
            kept: AtomicU64::new(0),
        })
    }

    /// Records kept by this process.
    pub fn kept(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl DeadLetterSink for DeadLetterFile {
    fn keep(&self, letter: DeadLetter<'_>) -> io::Result<()> {
        let mut line = serde_json::to_vec(&DeadLetterRecord::new(&letter))?;
        line.push(b'\n');
        self.out.lock().write_all(&line)?;
        self.kept.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut out = self.out.lock();
        out.flush()?;
        out.get_ref().sync_data()
    }
}

/// Writes each threshold alert as a JSON line (the `gmv.alerts` contract).
pub struct AlertFile {
    out: Mutex<BufWriter<File>>,
    failed: AtomicU64,
}

impl AlertFile {
    /// Creates (truncating) `path`.
    pub fn create(path: &Path) -> io::Result<Arc<Self>> {
        let file = File::create(path).map_err(|e| {
            io::Error::new(e.kind(), format!("alerts file {}: {e}", path.display()))
        })?;
        Ok(Arc::new(Self {
            out: Mutex::new(BufWriter::new(file)),
            failed: AtomicU64::new(0),
        }))
    }

    /// Flushes to disk; reports any write that failed before.
    pub fn finish(&self) -> io::Result<()> {
        let mut out = self.out.lock();
        out.flush()?;
        match self.failed.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(io::Error::other(format!(
                "{n} alert(s) could not be written"
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
