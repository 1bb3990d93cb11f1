//! The one configuration tree of the `gmv` binary, layered as Kafka and
//! Arroyo users expect: the embedded `config/default.toml`, then the user's
//! file (`--config`), then `GMV__SECTION__KEY` environment variables, then
//! command-line flags. Every problem is reported with its key and what is
//! allowed, and the process exits before doing any work.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use gmv_core::config::{ConfigError, DedupConfig, EngineConfig, MoneyConfig, WindowConfig};
use gmv_core::Settings;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded defaults; also the documented example of every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Everything `gmv` can be configured with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which event times count.
    pub window: WindowConfig,
    /// Thresholds, currency rates, limits.
    pub money: MoneyConfig,
    /// The redelivery set's bounds.
    pub dedup: DedupConfig,
    /// Processing knobs.
    pub engine: EngineConfig,
    /// The snapshot publisher.
    pub publish: PublishConfig,
    /// Where rejected records are kept.
    pub dead_letter: DeadLetterConfig,
    /// The HTTP live feed and scoreboard; served only when this section (or `--http`) is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<gmv_serve::ServeConfig>,
    /// Kafka input and outputs (`gmv run --kafka`, `gmv demo`, `gmv serve --from-kafka`).
    pub kafka: gmv_kafka::KafkaConfig,
}

/// `[publish]`: the live snapshot cadence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Time between live snapshots, e.g. `"500ms"`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
        }
    }
}

/// `[dead_letter]`: the file sink for rejected records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// JSON-lines file rejected records are appended to.
    pub path: PathBuf,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("gmv-dead-letters.jsonl"),
        }
    }
}

/// Every problem found while loading configuration.
#[derive(Debug)]
pub struct ConfigProblems(pub Vec<ConfigError>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged tree (printed by `gmv config`).
    pub config: Config,
    /// The engine settings it validates to.
    pub settings: Settings,
}

impl Config {
    /// Layers defaults, `file`, the environment and `overrides` (a TOML
    /// fragment built from CLI flags), then validates.
    pub fn load(file: Option<&Path>, overrides: &Figment) -> Result<Loaded, ConfigProblems> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigProblems(vec![ConfigError::new(
                    "--config",
                    format!("{}: no such file", path.display()),
                )]));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(Env::prefixed("GMV__").split("__"))
            .merge(overrides.clone());
        let config: Config = figment.extract().map_err(|errors| {
            ConfigProblems(
                errors
                    .into_iter()
                    .map(|e| {
                        let key = if e.path.is_empty() {
                            "(top level)".to_string()
                        } else {
                            e.path.join(".")
                        };
                        let source = e
                            .metadata
                            .as_ref()
                            .map(|m| format!(" (from {})", m.name))
                            .unwrap_or_default();
                        ConfigError::new(key, format!("{}{source}", e.kind))
                    })
                    .collect(),
            )
        })?;
        config.validate()
    }

    /// Checks what serde cannot and resolves the engine settings.
    pub fn validate(self) -> Result<Loaded, ConfigProblems> {
        let mut problems = Vec::new();
        if self.publish.interval < Duration::from_millis(10)
            || self.publish.interval > Duration::from_secs(3600)
        {
            problems.push(ConfigError::new(
                "publish.interval",
                "must be between 10ms and 1h, e.g. \"500ms\"",
            ));
        }
        if self.dead_letter.path.as_os_str().is_empty() {
            problems.push(ConfigError::new("dead_letter.path", "must be a file path"));
        }
        if let Some(http) = &self.http {
            if let Err(mut more) = http.validate("http") {
                problems.append(&mut more);
            }
        }
        if let Err(mut more) = self.kafka.validate("kafka") {
            problems.append(&mut more);
        }
        let settings = Settings::from_config(&self.window, &self.money, &self.dedup, &self.engine);
        match settings {
            Ok(settings) if problems.is_empty() => Ok(Loaded {
                config: self,
                settings,
            }),
            Ok(_) => Err(ConfigProblems(problems)),
            Err(mut more) => {
                problems.append(&mut more);
                Err(ConfigProblems(problems))
            }
        }
    }
}

#[cfg(test)]
// figment's Jail fixes the closures' error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn no_overrides() -> Figment {
        Figment::new()
    }

    #[test]
    fn embedded_defaults_equal_the_code_defaults() {
        figment::Jail::expect_with(|_| {
            let loaded = Config::load(None, &no_overrides()).map_err(|e| e.to_string())?;
            assert_eq!(loaded.config, Config::default());
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gmv.toml", "[engine]\ntop_n = 5\nworkers = 3\n")?;
            jail.set_env("GMV__ENGINE__TOP_N", "7");
            let flags = Figment::from(figment::providers::Serialized::default("engine.workers", 2));
            let loaded =
                Config::load(Some(Path::new("gmv.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(loaded.config.engine.top_n, 7);
            assert_eq!(loaded.config.engine.workers, 2);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                "[engine]\nworkres = 3\n[publish]\ninterval = \"1ms\"\n",
            )?;
            let err = Config::load(Some(Path::new("bad.toml")), &no_overrides())
                .unwrap_err()
                .to_string();
            assert!(err.contains("engine"), "{err}");
            assert!(err.contains("workres"), "{err}");
            jail.create_file(
                "bad2.toml",
                "[publish]\ninterval = \"1ms\"\n[money]\nusd_per_cny = \"x\"\n",
            )?;
            let err = Config::load(Some(Path::new("bad2.toml")), &no_overrides())
                .unwrap_err()
                .to_string();
            assert!(err.contains("publish.interval"), "{err}");
            assert!(err.contains("money.usd_per_cny"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let err = Config::load(Some(Path::new("/nonexistent/gmv.toml")), &no_overrides())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/gmv.toml"), "{err}");
    }
}
