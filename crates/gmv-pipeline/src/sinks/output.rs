//! Writing a whole output (a report) without harming what its path names.
//!
//! - A regular file, or a path that does not exist yet: written to a
//!   temporary file with a unique name in the same directory, made durable,
//!   then renamed over the path, so a reader sees the old file or the new
//!   one, never half of one. A symbolic link is followed: the file it points
//!   to is replaced the same way and the link stays a link.
//! - A FIFO, a character device, a socket, or `-` (stdout): written
//!   straight through, as a stream.
//! - A directory, or a link to nothing: refused.
//!
//! Every error names the path and what was being done, and a failed write
//! leaves no temporary file behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An output that could not be written: which, doing what, and why.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {}: {source}", path.display())]
pub struct OutputError {
    /// The path given.
    pub path: PathBuf,
    /// What was being done ("creating", "writing", "renaming into place").
    pub operation: &'static str,
    /// What the system said.
    #[source]
    pub source: io::Error,
}

enum Target {
    Stdout(BufWriter<io::Stdout>),
    Stream(BufWriter<File>),
    Atomic {
        file: BufWriter<tempfile::NamedTempFile>,
        target: PathBuf,
    },
}

/// An output being written (see the module docs).
pub struct OutputFile {
    path: PathBuf,
    target: Target,
}

impl OutputFile {
    /// Opens `path` for writing as the module docs say.
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        let error = |operation, source| OutputError {
            path: path.to_owned(),
            operation,
            source,
        };
        if path.as_os_str() == "-" {
            return Ok(Self {
                path: path.to_owned(),
                target: Target::Stdout(BufWriter::new(io::stdout())),
            });
        }
        let target = match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(error(
                    "writing",
                    io::Error::new(io::ErrorKind::InvalidInput, "it is a directory"),
                ))
            }
            Ok(meta) if meta.is_file() => {
                fs::canonicalize(path).map_err(|e| error("resolving", e))?
            }
            Ok(_) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| error("opening", e))?;
                return Ok(Self {
                    path: path.to_owned(),
                    target: Target::Stream(BufWriter::new(file)),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(error(
                        "writing",
                        io::Error::new(io::ErrorKind::NotFound, "it is a link to nothing"),
                    ));
                }
                path.to_owned()
            }
            Err(e) => return Err(error("examining", e)),
        };
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| error("creating a temporary file beside", e))?;
        Ok(Self {
            path: path.to_owned(),
            target: Target::Atomic {
                file: BufWriter::new(file),
                target,
            },
        })
    }

    /// The path given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the bytes go.
    pub fn writer(&mut self) -> &mut dyn Write {
        match &mut self.target {
            Target::Stdout(w) => w,
            Target::Stream(w) => w,
            Target::Atomic { file, .. } => file,
        }
    }

    /// An error of this output.
    pub fn error(&self, operation: &'static str, source: io::Error) -> OutputError {
        OutputError {
            path: self.path.clone(),
            operation,
            source,
        }
    }

    /// Finishes the output: flushed, and for a file made durable and put in
    /// place.
    pub fn commit(self) -> Result<(), OutputError> {
        let path = self.path;
        let error = |operation, source| OutputError {
            path: path.clone(),
            operation,
            source,
        };
        match self.target {
            Target::Stdout(mut w) => w.flush().map_err(|e| error("writing", e)),
            Target::Stream(mut w) => w.flush().map_err(|e| error("writing", e)),
            Target::Atomic { file, target } => {
                let file = file
                    .into_inner()
                    .map_err(|e| error("writing", e.into_error()))?;
                file.as_file().sync_all().map_err(|e| error("writing", e))?;
                file.persist(&target)
                    .map_err(|e| error("renaming into place", e.error))?;
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    // The rename is durable once the directory is.
                    if let Ok(dir) = File::open(dir) {
                        let _ = dir.sync_all();
                    }
                }
                Ok(())
            }
        }
    }
}

/// Writes a whole output to `path` with `write` (see the module docs).
pub fn write_output(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), OutputError> {
    let mut out = OutputFile::create(path)?;
    if let Err(e) = write(out.writer()) {
        return Err(out.error("writing", e));
    }
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileTypeExt};

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_regular_file_is_replaced_whole_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        fs::write(&path, "old").unwrap();
        write_output(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names_in(dir.path()), ["report.json"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        fs::write(&path, "old").unwrap();
        let error = write_output(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device",
            ))
        })
        .unwrap_err();
        assert!(error.to_string().contains("report.json"), "{error}");
        assert!(error.to_string().starts_with("writing"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names_in(dir.path()), ["report.json"]);
    }

    #[test]
    fn a_symlink_is_followed_and_stays_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        fs::write(&real, "old").unwrap();
        symlink(&real, &link).unwrap();
        write_output(&link, |w| w.write_all(b"new")).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn names_sharing_a_prefix_do_not_share_a_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let a = OutputFile::create(&dir.path().join("report.a.json")).unwrap();
        let b = OutputFile::create(&dir.path().join("report.a.json.tmp")).unwrap();
        a.commit().unwrap();
        b.commit().unwrap();
        assert_eq!(names_in(dir.path()), ["report.a.json", "report.a.json.tmp"]);
    }

    #[test]
    fn a_fifo_is_written_straight_through() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
        };
        write_output(&fifo, |w| w.write_all(b"through")).unwrap();
        assert_eq!(reader.join().unwrap(), "through");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn a_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let error = OutputFile::create(dir.path()).err().unwrap().to_string();
        assert!(error.contains("is a directory"), "{error}");
    }
}
