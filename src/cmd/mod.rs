//! One module per command: each loads its configuration, builds its source
//! and sinks, and runs them (most through [`crate::local::Local`]).

pub mod config;
pub mod demo;
pub mod generate;
pub mod report;
pub mod run;
pub mod serve;
