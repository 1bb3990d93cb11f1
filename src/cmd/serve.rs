//! `gmv serve --from-kafka`: the scoreboard from the snapshots topic alone,
//! through the same run loop and publisher as a processor (the snapshots
//! topic is its source).

use crate::cli::{EngineFlags, Progress, ServeArgs};
use crate::config::Config;
use crate::local::Local;
use crate::Ended;
use anyhow::Result;
use figment::providers::Serialized;
use figment::Figment;
use gmv_kafka::global::{follow_alerts, SnapshotsSource};
use std::path::Path;
use std::sync::Arc;

/// Runs `gmv serve`.
pub fn execute(args: &ServeArgs, config_file: Option<&Path>) -> Result<Ended> {
    let mut figment = Figment::new().merge(Serialized::default("kafka.brokers", &args.from_kafka));
    if let Some(addr) = &args.http {
        figment = figment.merge(Serialized::default("http.bind", addr));
    }
    let mut loaded = Config::load(config_file, &figment)?;
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
            .map_err(|e| anyhow::anyhow!(e))?;
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
