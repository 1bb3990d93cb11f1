//! gmv-report: the post-event report. After the festival, analysts,
//! merchants and the press want the day's story; this crate tells it from
//! the final report of a run (`gmv run`'s report.json, which carries the
//! figures, the per-second and per-minute series, every threshold crossing
//! and every merchant), optionally against a previous year's report.
//!
//! It sits after the pipeline (source → decode → aggregate → publish): it
//! reads what a run published and needs nothing of the run's process.
//!
//! # Layout
//! - [`input`]: reading the run report and the comparison report, with errors
//!   that name the file, the line and the problem.
//! - [`model`]: the post-event report as data (`report.json`) and [`build`].
//! - [`mod@headline`]: the paragraph written from the figures.
//! - [`merchants`]: `merchants.csv`, every merchant with its threshold crossings.
//! - [`charts`]: the SVG charts, drawn with `plotters`.
//! - [`html`]: `report.html`, one self-contained page.
//! - [`numbers`]: how figures are written for people.
//! - [`write_report`] ties them together for `gmv report`.
//!
//! ```no_run
//! use gmv_report::{write_report, ReportOptions};
//! let summary = write_report(&ReportOptions {
//!     run: "out/report.json".into(),
//!     compare: Some("2016/report.json".into()),
//!     out_dir: "out/post-event".into(),
//! })?;
//! println!("{}", summary.headline);
//! # Ok::<(), gmv_report::ReportError>(())
//! ```
#![deny(missing_docs)]

pub mod charts;
mod error;
pub mod headline;
pub mod html;
pub mod input;
pub mod merchants;
pub mod model;
pub mod numbers;

pub use error::{ContentError, Fault, OutputError, ReportError, Role};
pub use headline::headline;
pub use html::render_html;
pub use input::{read_baseline, read_run, Baseline};
pub use merchants::merchants_csv;
pub use model::{build, PostEventReport};

use std::path::{Path, PathBuf};

/// What `gmv report` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    /// The run's report.json (written by `gmv run`).
    pub run: PathBuf,
    /// A previous year's report to compare with (a run report, or a report.json written here).
    pub compare: Option<PathBuf>,
    /// Where report.json, merchants.csv and report.html are written (created if missing).
    pub out_dir: PathBuf,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSummary {
    /// The headline paragraph, for the terminal.
    pub headline: String,
    /// The files written: report.json, merchants.csv, report.html.
    pub files: Vec<PathBuf>,
}

/// Reads the run (and the comparison), and writes report.json, merchants.csv
/// and report.html into `out_dir`. Nothing is written unless every input
/// reads and every output is made.
pub fn write_report(opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    let run = read_run(&opts.run)?;
    let previous = opts.compare.as_deref().map(read_baseline).transpose()?;
    let compare = opts.compare.as_deref();
    let report = build(&run, previous.as_ref().map(|b| &b.figures))
        .map_err(|e| ReportError::from_content(e, &opts.run, compare))?;

    let mut json = serde_json::to_string_pretty(&report).map_err(|e| ReportError::Internal {
        what: "report.json",
        message: e.to_string(),
    })?;
    json.push('\n');
    let csv = merchants_csv(&run).map_err(|e| ReportError::from_output(e, &opts.run, compare))?;
    let html =
        render_html(&run, &report).map_err(|e| ReportError::from_output(e, &opts.run, compare))?;

    std::fs::create_dir_all(&opts.out_dir).map_err(|source| ReportError::Write {
        path: opts.out_dir.clone(),
        source,
    })?;
    let files = [
        ("report.json", json.into_bytes()),
        ("merchants.csv", csv),
        ("report.html", html.into_bytes()),
    ]
    .into_iter()
    .map(|(name, bytes)| write_file(&opts.out_dir.join(name), &bytes))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(ReportSummary {
        headline: report.headline,
        files,
    })
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<PathBuf, ReportError> {
    let write_error = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes).map_err(write_error)?;
    std::fs::rename(&temporary, path).map_err(write_error)?;
    Ok(path.to_path_buf())
}

/// Runs of the engine for the unit tests.
#[cfg(test)]
mod test_support {
    use gmv_core::output::Report;
    use gmv_core::partition::{decode, Partition};
    use gmv_core::view::{LiveView, PartitionKey};
    use gmv_core::Settings;
    use std::sync::Arc;

    /// The report of `records` (each valid) through one partition.
    pub fn report_of(records: &[String]) -> Report {
        let settings = Arc::new(Settings::defaults());
        let mut partition = Partition::new(settings.clone(), 1 << 16);
        for (i, record) in records.iter().enumerate() {
            let decoded =
                decode(&settings, record.as_bytes()).unwrap_or_else(|e| panic!("{record}: {e:?}"));
            assert!(
                partition.count(i as i64, Ok(decoded.txn())).is_ok(),
                "{record}"
            );
        }
        let mut view = LiveView::new(settings);
        view.apply(&PartitionKey::split(0), "test", &partition.take_delta());
        view.report()
    }
}
