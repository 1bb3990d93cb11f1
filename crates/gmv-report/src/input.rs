//! Reading the inputs: the run report written by `gmv run` and, optionally, a
//! previous year's report to compare with. Each problem is reported with the
//! file, and for JSON the line and column: a missing file, a truncated or
//! otherwise invalid JSON document, JSON that is not a run report, and a
//! report of another `schema_version`.

use crate::error::{ReportError, Role};
use gmv_core::output::{Figures, Report, REPORT_SCHEMA_VERSION};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::Path;

/// The part of a previous report that a comparison needs: its version and
/// the contract figures. Both `gmv run`'s report.json and the report.json
/// written by this crate have them, so this year's output can be next year's
/// `--compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Layout version of the file.
    pub schema_version: u32,
    /// The previous festival's figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Reads a run report (`gmv run`'s report.json).
pub fn read_run(path: &Path) -> Result<Report, ReportError> {
    parse(&read(Role::Run, path)?, Role::Run, path)
}

/// Reads a previous report for `--compare`.
pub fn read_baseline(path: &Path) -> Result<Baseline, ReportError> {
    parse(&read(Role::Comparison, path)?, Role::Comparison, path)
}

fn read(role: Role, path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ReportError::NotFound {
            role,
            path: path.to_path_buf(),
        },
        _ => ReportError::Read {
            role,
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Parses `text` (the content of `path`) as a report of this crate's schema version.
///
/// The version is read first (from the top-level object's raw values, without
/// building the document), so that a report of another layout gets a version
/// error rather than a confusing "missing field".
pub fn parse<T: DeserializeOwned>(text: &str, role: Role, path: &Path) -> Result<T, ReportError> {
    let top: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| json_error(&e, role, path))?;
    let not_a_report = |problem: &str| ReportError::NotAReport {
        role,
        path: path.to_path_buf(),
        line: 1,
        column: 1,
        problem: problem.into(),
    };
    let version = top
        .get("schema_version")
        .ok_or_else(|| not_a_report("no `schema_version` field"))?;
    let found: u32 = serde_json::from_str(version.get())
        .map_err(|_| not_a_report("`schema_version` is not a whole number"))?;
    if found != REPORT_SCHEMA_VERSION {
        return Err(ReportError::SchemaVersion {
            role,
            path: path.to_path_buf(),
            found,
            expected: REPORT_SCHEMA_VERSION,
        });
    }
    serde_json::from_str(text).map_err(|e| json_error(&e, role, path))
}

/// A serde_json error as the report error naming `path`.
fn json_error(error: &serde_json::Error, role: Role, path: &Path) -> ReportError {
    use serde_json::error::Category;
    let (line, column) = (error.line(), error.column());
    // serde_json's message ends with " at line L column C"; the variant prints its own.
    let text = error.to_string();
    let message = text
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&text)
        .to_string();
    let path = path.to_path_buf();
    match error.classify() {
        Category::Eof if line <= 1 && column == 0 => ReportError::InvalidJson {
            role,
            path,
            line,
            column,
            problem: "the file is empty".into(),
        },
        Category::Eof => ReportError::InvalidJson {
            role,
            path,
            line,
            column,
            problem: format!("{message}: the file ends early (truncated?)"),
        },
        Category::Syntax | Category::Io => ReportError::InvalidJson {
            role,
            path,
            line,
            column,
            problem: message,
        },
        Category::Data => ReportError::NotAReport {
            role,
            path,
            line,
            column,
            problem: message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_run(text: &str) -> ReportError {
        match parse::<Report>(text, Role::Run, Path::new("run.json")) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => e,
        }
    }

    #[test]
    fn truncated_json_names_line_and_column_and_says_truncated() {
        let e = parse_run("{\n  \"schema_version\": 1,\n  \"gmv_cny\": \"12");
        assert!(
            matches!(e, ReportError::InvalidJson { line: 3, .. }),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("run report run.json: invalid JSON at line 3, column"),
            "{text}"
        );
        assert!(text.contains("truncated"), "{text}");
    }

    #[test]
    fn empty_file_is_called_empty() {
        let e = parse_run("");
        assert!(e.to_string().contains("the file is empty"), "{e}");
    }

    #[test]
    fn other_json_is_not_a_report() {
        let e = parse_run(r#"{"schema_version": 1, "hello": "world"}"#);
        assert!(matches!(e, ReportError::NotAReport { .. }), "{e:?}");
        assert!(e.to_string().contains("missing field"), "{e}");
        let e = parse_run("[1, 2]");
        assert!(matches!(e, ReportError::NotAReport { .. }), "{e:?}");
        let e = parse_run(r#"{"gmv_cny": "1.00"}"#);
        assert!(e.to_string().contains("no `schema_version`"), "{e}");
        let e = parse_run(r#"{"schema_version": "one"}"#);
        assert!(e.to_string().contains("not a whole number"), "{e}");
    }

    #[test]
    fn another_schema_version_is_refused_before_the_shape_is_checked() {
        let e = parse_run(r#"{"schema_version": 2}"#);
        assert!(
            matches!(
                e,
                ReportError::SchemaVersion {
                    found: 2,
                    expected: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.fault(), crate::Fault::Input);
    }
}
