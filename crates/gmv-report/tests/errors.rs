//! Bad input gives a clear error naming the file and the problem, and no
//! output is written.

mod common;

use gmv_report::{write_report, Fault, ReportError, ReportOptions, Role};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A small valid run report, as JSON text.
fn run_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let run = common::synthetic_run(
            2017,
            gmv_synth::SynthConfig {
                events: 2_000,
                merchants: 200,
                ..Default::default()
            },
        );
        serde_json::to_string_pretty(&run).expect("run serialises")
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp dir is writable");
    path
}

fn attempt(dir: &Path, run: PathBuf, compare: Option<PathBuf>) -> ReportError {
    let opts = ReportOptions {
        run,
        compare,
        out_dir: dir.join("out"),
    };
    let error = write_report(&opts).expect_err("the report must be refused");
    assert!(
        !opts.out_dir.exists(),
        "nothing is written when an input is bad"
    );
    error
}

#[test]
fn missing_run_file_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-such-run.json");
    let e = attempt(dir.path(), path.clone(), None);
    assert!(
        matches!(
            e,
            ReportError::NotFound {
                role: Role::Run,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("run report {}: file not found", path.display())
    );
    assert_eq!(e.fault(), Fault::Input);
}

#[test]
fn missing_comparison_file_is_named_as_the_comparison() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = write(dir.path(), "run.json", run_text());
    let compare = dir.path().join("2016.json");
    let e = attempt(dir.path(), run, Some(compare.clone()));
    assert_eq!(
        e.to_string(),
        format!(
            "comparison report (--compare) {}: file not found",
            compare.display()
        )
    );
}

#[test]
fn truncated_run_gives_line_and_column_and_says_truncated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = run_text();
    let cut = &text[..text.len() / 2];
    let path = write(dir.path(), "run.json", cut);
    let e = attempt(dir.path(), path.clone(), None);
    let ReportError::InvalidJson { line, column, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(*line, cut.lines().count());
    assert!(*column > 0);
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "run report {}: invalid JSON at line {line}, column {column}",
            path.display()
        )),
        "{message}"
    );
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn empty_and_garbled_files_are_invalid_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = write(dir.path(), "empty.json", "");
    let e = attempt(dir.path(), empty, None);
    assert!(e.to_string().ends_with("the file is empty"), "{e}");
    let garbled = write(
        dir.path(),
        "garbled.json",
        "{\n  \"schema_version\": 1,\n  oops\n}",
    );
    let e = attempt(dir.path(), garbled, None);
    assert!(
        matches!(
            e,
            ReportError::InvalidJson {
                line: 3,
                column: 3,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn json_that_is_not_a_run_report_says_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshot_like = write(
        dir.path(),
        "other.json",
        r#"{"schema_version": 1, "seq": 3, "gmv_cny": "1.00"}"#,
    );
    let e = attempt(dir.path(), snapshot_like, None);
    assert!(matches!(e, ReportError::NotAReport { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("not a gmv run report: missing field"),
        "{e}"
    );
    let no_version = write(dir.path(), "alert.json", r#"{"merchant_id": "m-1"}"#);
    let e = attempt(dir.path(), no_version, None);
    assert!(e.to_string().contains("no `schema_version` field"), "{e}");
}

#[test]
fn comparison_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = write(dir.path(), "run.json", run_text());
    let mut old: serde_json::Value = serde_json::from_str(run_text()).expect("JSON");
    old["schema_version"] = 2.into();
    let compare = write(dir.path(), "2016.json", &old.to_string());
    let e = attempt(dir.path(), run, Some(compare.clone()));
    assert!(
        matches!(
            e,
            ReportError::SchemaVersion {
                role: Role::Comparison,
                found: 2,
                expected: 1,
                ..
            }
        ),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "comparison report (--compare) {}: schema_version 2, but this gmv-report reads schema_version 1",
            compare.display()
        )),
        "{message}"
    );
}

#[test]
fn a_bad_value_inside_a_report_is_named_by_its_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut run: serde_json::Value = serde_json::from_str(run_text()).expect("JSON");
    run["series"]["per_minute"][2]["gmv_cny"] = "12.345".into();
    let path = write(dir.path(), "run.json", &run.to_string());
    let e = attempt(dir.path(), path.clone(), None);
    assert!(matches!(e, ReportError::Content { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "run report {}: `series.per_minute[2].gmv_cny`: `12.345` is not a CNY amount: amount has more than 2 decimal places",
            path.display()
        )
    );

    let good = write(dir.path(), "good.json", run_text());
    let mut previous: serde_json::Value = serde_json::from_str(run_text()).expect("JSON");
    previous["window"]["start"] = "last year".into();
    let compare = write(dir.path(), "2016.json", &previous.to_string());
    let e = attempt(dir.path(), good, Some(compare.clone()));
    assert_eq!(
        e.input().map(|(role, path)| (role, path.to_path_buf())),
        Some((Role::Comparison, compare))
    );
    assert!(
        e.to_string()
            .contains("`window.start`: `last year` is not an RFC 3339 time"),
        "{e}"
    );
}

#[test]
fn an_unwritable_output_directory_is_an_environment_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = write(dir.path(), "run.json", run_text());
    let blocker = write(dir.path(), "out", "a file where the directory should be");
    let e = write_report(&ReportOptions {
        run,
        compare: None,
        out_dir: blocker.clone(),
    })
    .expect_err("out is a file");
    assert!(matches!(e, ReportError::Write { .. }), "{e:?}");
    assert_eq!(e.fault(), Fault::Environment);
    assert!(
        e.to_string()
            .starts_with(&format!("cannot write {}", blocker.display())),
        "{e}"
    );
}
