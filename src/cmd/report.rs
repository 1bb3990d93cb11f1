//! `gmv report`: the post-event report (report.json, merchants.csv,
//! report.html) from a run's report.

use crate::cli::{ReportArgs, UsageError};
use crate::Ended;
use anyhow::Result;

/// Writes the post-event report; a run report that cannot be read is the
/// user's input (exit 2), a failure to write is a runtime failure (exit 1).
pub fn execute(args: ReportArgs) -> Result<Ended> {
    let options = gmv_report::ReportOptions {
        run: args.run,
        compare: args.compare,
        out_dir: args.out,
    };
    match gmv_report::write_report(&options) {
        Ok(summary) => {
            println!("{}", summary.headline);
            for file in &summary.files {
                println!("wrote {}", file.display());
            }
            Ok(Ended::Done)
        }
        Err(e) if is_input_problem(&e) => Err(UsageError(format!("report: {e}")).into()),
        Err(e) => Err(anyhow::anyhow!("report: {e}")),
    }
}

/// Whether the run report given is at fault (exit 2): what gmv-report says
/// is input, and also a file that is not UTF-8 or is a directory, which it
/// counts as a failure to read.
fn is_input_problem(e: &gmv_report::ReportError) -> bool {
    match e {
        gmv_report::ReportError::Read { source, .. } => {
            matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::IsADirectory
            )
        }
        e => e.fault() == gmv_report::Fault::Input,
    }
}
