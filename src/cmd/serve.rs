//! `gmv serve --from-kafka`: the scoreboard from the snapshots topic alone,
//! through the same run loop and publisher as a processor (the snapshots
//! topic is its source).

use crate::cli::{set_flag, EngineFlags, Progress, ServeArgs};
use crate::config::{check_kafka_properties, Config, ConfigProblems, PropertyCheck};
use crate::local::Local;
use crate::Ended;
use anyhow::Result;
use figment::Figment;
use gmv_kafka::global::{follow_alerts, SnapshotsSource};
use std::path::Path;
use std::sync::Arc;

/// Runs `gmv serve`.
pub fn execute(args: &ServeArgs, config_file: Option<&Path>) -> Result<Ended> {
    let figment = set_flag(
        Figment::new(),
        "--from-kafka",
        "kafka.brokers",
        Some(&args.from_kafka),
    );
    let figment = set_flag(figment, "--http", "http.bind", args.http.as_ref());
    let mut loaded = Config::load(config_file, &args.connect.over(figment))?;
    let refused = check_kafka_properties(&loaded.config.kafka, PropertyCheck::NamesAndValues);
    if !refused.is_empty() {
        return Err(ConfigProblems::from_errors(refused).into());
    }
    if args.once {
        loaded.config.http = None;
    } else if loaded.config.http.is_none() {
        loaded.config.http = Some(gmv_serve::ServeConfig::default());
    }
    let flags = EngineFlags {
        workers: None,
        publish_interval: None,
        dead_letter: None,
        report: None,
        alerts: None,
        http: None,
        progress: Progress::Never,
    };
    let local = Local::open(&loaded, &flags)?;
    let source = SnapshotsSource {
        config: loaded.config.kafka.clone(),
        settings: Arc::new(loaded.settings.clone()),
        once: args.once,
        cadence: loaded.config.publish.interval / 4,
    };
    if let Some(feed) = local.feed() {
        follow_alerts(&loaded.config.kafka, &local.lifecycle, feed)
            .map_err(crate::local::task_error)?;
    }
    let state = local.state.clone();
    let ended = local.run(
        &loaded,
        &flags,
        Box::new(source),
        Vec::new(),
        crate::local::Output::Nothing,
        false,
    )?;
    if args.once {
        let snapshot = state
            .latest()
            .ok_or_else(|| anyhow::anyhow!("no snapshot was assembled"))?;
        println!("{}", serde_json::to_string_pretty(&*snapshot)?);
    }
    Ok(ended)
}
