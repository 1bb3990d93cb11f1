//! `gmv config`: the merged configuration, as TOML; with `--show-origin`,
//! each value with the layer that set it.

use crate::cli::ConfigArgs;
use crate::config::{self, Config};
use crate::Ended;
use anyhow::{Context, Result};
use figment::Figment;
use std::fmt::Write as _;
use std::path::Path;

/// Prints the configuration `file` and the environment make.
pub fn print(args: &ConfigArgs, file: Option<&Path>) -> Result<Ended> {
    let overrides = Figment::new();
    let loaded = Config::load(file, &overrides)?;
    if args.show_origin {
        let layers = config::layers(file, &overrides)?;
        print!("{}", origins(&loaded.config, &layers)?);
        return Ok(Ended::Done);
    }
    let mut text = toml::to_string_pretty(&loaded.config).context("printing the configuration")?;
    if loaded.config.http.is_none() {
        text += &unset_http()?;
    }
    print!("{text}");
    Ok(Ended::Done)
}

/// `[http]` at its defaults, commented out: printed as a live section it
/// would switch the server on for `gmv run` when fed back as a file.
fn unset_http() -> Result<String> {
    let defaults = toml::to_string_pretty(&gmv_serve::ServeConfig::default())
        .context("printing the [http] defaults")?;
    let mut out = String::from(
        "\n# [http] is not set: `gmv run` serves the live feed only with --http ADDR or this\n\
         # section; `gmv demo` and `gmv serve` use these defaults.\n# [http]\n",
    );
    for line in defaults.lines() {
        let _ = writeln!(out, "# {line}");
    }
    Ok(out)
}

/// Every value as `ORIGIN  key = value`, by key, ORIGIN being `default`,
/// `file PATH`, `environment GMV__...` or `flag --NAME`.
fn origins(config: &Config, layers: &Figment) -> Result<String> {
    let tree = toml::Value::try_from(config).context("printing the configuration")?;
    let data = figment::Provider::data(layers)
        .ok()
        .and_then(|mut profiles| profiles.remove(&figment::Profile::Default))
        .unwrap_or_default();
    let mut rows = Vec::new();
    leaves(&tree, &mut Vec::new(), &mut |path, value| {
        let origin = config::origin_of(layers, &data, path).unwrap_or_else(|| "default".to_owned());
        rows.push((origin, format!("{} = {value}", config::dotted(path))));
    });
    if config.http.is_none() {
        rows.push((
            "unset".to_owned(),
            "http (not served by `gmv run` without --http)".to_owned(),
        ));
    }
    let width = rows.iter().map(|(o, _)| o.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (origin, row) in rows {
        let _ = writeln!(out, "{origin:<width$}  {row}");
    }
    Ok(out)
}

/// Calls `each` with the path and text of every value that is not a table.
fn leaves(value: &toml::Value, path: &mut Vec<String>, each: &mut dyn FnMut(&[String], String)) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                path.push(key.clone());
                leaves(inner, path, each);
                path.pop();
            }
        }
        other => each(path, other.to_string()),
    }
}
