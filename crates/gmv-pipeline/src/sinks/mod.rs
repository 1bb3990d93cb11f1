//! Files a run writes: dead letters and alerts as JSON lines while it runs,
//! and whole outputs (the report) written safely at the end.

mod lines;
mod output;

pub use lines::{AlertFile, DeadLetterFile, LinesMode};
pub use output::{write_output, OutputError, OutputFile};
