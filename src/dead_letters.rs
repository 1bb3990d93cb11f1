//! The dead-letter file of a run over a file or stdin, created only when a
//! first record is rejected: a run with nothing rejected leaves no empty
//! file behind. A file a previous run left at the path is emptied at the
//! start (unless appending), so it never holds another run's letters.

use gmv_core::sink::{DeadLetter, DeadLetterSink};
use gmv_pipeline::sinks::{DeadLetterFile, LinesMode};
use parking_lot::Mutex;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Rejected records, to a file opened at the first one.
pub struct LazyDeadLetters {
    path: PathBuf,
    file: OnceLock<DeadLetterFile>,
    opening: Mutex<()>,
}

impl LazyDeadLetters {
    /// Keeps rejected records in `path`; checks now what can be checked
    /// without creating it (its directory exists, it is not a directory),
    /// and empties a file already there unless `mode` appends.
    pub fn new(path: &Path, mode: LinesMode) -> io::Result<Self> {
        let what = |message: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("dead-letter file {}: {message}", path.display()),
            )
        };
        if path.is_dir() {
            return Err(what("it is a directory".into()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(what(format!("directory {} does not exist", dir.display())));
            }
        }
        if mode == LinesMode::Truncate && path.is_file() {
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|e| what(format!("cannot empty it: {e}")))?;
        }
        Ok(Self {
            path: path.to_owned(),
            file: OnceLock::new(),
            opening: Mutex::new(()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records kept by this run.
    pub fn kept(&self) -> u64 {
        self.file.get().map_or(0, DeadLetterFile::kept)
    }

    fn file(&self) -> io::Result<&DeadLetterFile> {
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let _opening = self.opening.lock();
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        // Emptied at the start already: from here on this run only adds.
        let file = DeadLetterFile::open(&self.path, LinesMode::Append)?;
        tracing::info!(path = %self.path.display(), "keeping rejected records");
        Ok(self.file.get_or_init(|| file))
    }
}

impl DeadLetterSink for LazyDeadLetters {
    fn keep(&self, letter: DeadLetter<'_>) -> io::Result<()> {
        self.file()?.keep(letter)
    }

    fn flush(&self) -> io::Result<()> {
        match self.file.get() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}
