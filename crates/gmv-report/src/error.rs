//! What can go wrong making a report, with the file and the problem named,
//! and whose fault it is (the user's input, the machine, or a bug here).

use std::fmt;
use std::path::PathBuf;

/// Which input a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The run report given as the report's input (`gmv run`'s report.json).
    Run,
    /// The previous year's report given with `--compare`.
    Comparison,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Run => "run report",
            Role::Comparison => "comparison report (--compare)",
        })
    }
}

/// Whose fault an error is, so the caller can pick an exit code and a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A file given by the user is missing, broken or of another version: fix the input.
    Input,
    /// The machine refused (permissions, full disk): fix the environment and retry.
    Environment,
    /// A bug in gmv-report.
    Internal,
}

/// A report that parses but whose content does not add up (a time that is not
/// RFC 3339, an amount that is not money, a minute outside the window).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {problem}")]
pub struct ContentError {
    /// Which input it is in.
    pub role: Role,
    /// The JSON path of the value, e.g. `series.per_minute[3].minute`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ContentError {
    /// A problem with `field` of the `role` input.
    pub fn new(role: Role, field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            role,
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A problem met while making an output (a chart, the CSV) from parsed inputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A value in an input is not usable.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Drawing or encoding failed: a bug here, not bad input.
    #[error("internal error while making {what}: {message}")]
    Internal {
        /// What was being made (a chart's name, `merchants.csv`, ...).
        what: &'static str,
        /// The underlying message.
        message: String,
    },
}

/// Why a report could not be made. Every input problem names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The input file does not exist.
    #[error("{role} {}: file not found", path.display())]
    NotFound {
        /// Which input.
        role: Role,
        /// The path given.
        path: PathBuf,
    },
    /// The input file exists but could not be read.
    #[error("{role} {}: cannot read: {source}", path.display())]
    Read {
        /// Which input.
        role: Role,
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON (truncated, empty, a stray character).
    #[error("{role} {}: invalid JSON at line {line}, column {column}: {problem}", path.display())]
    InvalidJson {
        /// Which input.
        role: Role,
        /// The path given.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem (0 for an empty file).
        column: usize,
        /// What the parser found.
        problem: String,
    },
    /// Valid JSON, but not a gmv run report (a field missing or of the wrong type).
    #[error("{role} {}: not a gmv run report: {problem} (line {line}, column {column})", path.display())]
    NotAReport {
        /// Which input.
        role: Role,
        /// The path given.
        path: PathBuf,
        /// 1-based line where the parser gave up.
        line: usize,
        /// 1-based column where the parser gave up.
        column: usize,
        /// What is missing or wrong.
        problem: String,
    },
    /// A report of a layout this version does not read.
    #[error(
        "{role} {}: schema_version {found}, but this gmv-report reads schema_version {expected}; \
         make both reports with the same major version of gmv",
        path.display()
    )]
    SchemaVersion {
        /// Which input.
        role: Role,
        /// The path given.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this crate reads.
        expected: u32,
    },
    /// The report parses, but a value in it is not usable.
    #[error("{} {}: {source}", source.role, path.display())]
    Content {
        /// The file the value is in.
        path: PathBuf,
        /// The value and the problem.
        source: ContentError,
    },
    /// An output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Drawing a chart or encoding an output failed: a bug here, not bad input.
    #[error("internal error while making {what}: {message}")]
    Internal {
        /// What was being made (a chart's name, `merchants.csv`, ...).
        what: &'static str,
        /// The underlying message.
        message: String,
    },
}

impl ReportError {
    /// An [`OutputError`] with its content problem tied to the input file it is in.
    pub fn from_output(
        error: OutputError,
        run: &std::path::Path,
        comparison: Option<&std::path::Path>,
    ) -> Self {
        match error {
            OutputError::Content(source) => Self::from_content(source, run, comparison),
            OutputError::Internal { what, message } => ReportError::Internal { what, message },
        }
    }

    /// A [`ContentError`] tied to the input file it is in.
    pub fn from_content(
        source: ContentError,
        run: &std::path::Path,
        comparison: Option<&std::path::Path>,
    ) -> Self {
        let path = match source.role {
            Role::Run => run,
            Role::Comparison => comparison.unwrap_or(run),
        };
        ReportError::Content {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            ReportError::NotFound { .. }
            | ReportError::InvalidJson { .. }
            | ReportError::NotAReport { .. }
            | ReportError::SchemaVersion { .. }
            | ReportError::Content { .. } => Fault::Input,
            ReportError::Read { .. } | ReportError::Write { .. } => Fault::Environment,
            ReportError::Internal { .. } => Fault::Internal,
        }
    }

    /// The input file the problem is in, if it is in one.
    pub fn input(&self) -> Option<(Role, &std::path::Path)> {
        match self {
            ReportError::NotFound { role, path }
            | ReportError::Read { role, path, .. }
            | ReportError::InvalidJson { role, path, .. }
            | ReportError::NotAReport { role, path, .. }
            | ReportError::SchemaVersion { role, path, .. } => Some((*role, path)),
            ReportError::Content { path, source } => Some((source.role, path)),
            ReportError::Write { .. } | ReportError::Internal { .. } => None,
        }
    }
}
