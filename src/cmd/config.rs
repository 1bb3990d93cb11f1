//! `gmv config`: the merged configuration, as TOML.

use crate::config::Config;
use crate::Ended;
use anyhow::{Context, Result};
use figment::Figment;
use std::path::Path;

/// Prints the configuration `file` and the environment make.
pub fn print(file: Option<&Path>) -> Result<Ended> {
    let loaded = Config::load(file, &Figment::new())?;
    print!(
        "{}",
        toml::to_string_pretty(&loaded.config).context("printing the configuration")?
    );
    Ok(Ended::Done)
}
