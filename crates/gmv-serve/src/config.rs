//! The `[http]` section of the configuration: where to listen and the bounds
//! that keep the live feed's memory fixed however many screens connect.
//!
//! The publish cadence itself is not here: it is the publisher's
//! (`[publish] interval`), and every snapshot carries it
//! (`publish_interval_ms`), which is how readers judge staleness.

use gmv_core::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How the HTTP side serves. Every field has a default, so an empty `[http]`
/// section is valid; unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on. Loopback by default: exposing the feed beyond
    /// the machine is a deliberate choice (e.g. `0.0.0.0:8080`).
    pub bind: SocketAddr,
    /// Most concurrent `/api/live` streams; one more gets `503` with
    /// `Retry-After`, so a reconnect storm cannot exhaust memory or sockets.
    pub max_clients: usize,
    /// Alerts kept for `Last-Event-ID` replay. A client away for longer than
    /// this many crossings gets the ones still kept (and the current snapshot,
    /// whose threshold counts are always exact).
    pub alert_replay: usize,
    /// Most recent alerts sent to a client that connects without
    /// `Last-Event-ID`, so a freshly opened screen shows the latest crossings.
    pub recent_alerts: usize,
    /// A comment line is sent after this long without any event, so proxies
    /// and browsers keep an idle stream open.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Largest `n` honoured by `/api/merchants/top` (larger values are capped).
    pub max_top: usize,
    /// `/readyz` fails when the latest snapshot is older than this, or than
    /// three publish intervals if that is longer.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// On shutdown, requests in flight get this long to finish; then the
    /// server returns anyway (a screen that stopped reading would otherwise
    /// hold it open forever).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            max_clients: 10_000,
            alert_replay: 4096,
            recent_alerts: 12,
            keep_alive: Duration::from_secs(15),
            max_top: 1000,
            stale_after: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ServeConfig {
    /// Checks the bounds, returning every problem with its key under `section`
    /// (e.g. `"http"` gives `http.max_clients`).
    pub fn validate(&self, section: &str) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let key = |name: &str| format!("{section}.{name}");
        if self.max_clients == 0 {
            errors.push(ConfigError::new(key("max_clients"), "must be at least 1"));
        }
        if self.alert_replay == 0 {
            errors.push(ConfigError::new(key("alert_replay"), "must be at least 1"));
        }
        if self.recent_alerts > self.alert_replay {
            errors.push(ConfigError::new(
                key("recent_alerts"),
                format!("must be at most alert_replay ({})", self.alert_replay),
            ));
        }
        if self.keep_alive < Duration::from_millis(100) {
            errors.push(ConfigError::new(
                key("keep_alive"),
                "must be at least 100ms",
            ));
        }
        if self.max_top == 0 {
            errors.push(ConfigError::new(key("max_top"), "must be at least 1"));
        }
        if self.stale_after.is_zero() {
            errors.push(ConfigError::new(key("stale_after"), "must be more than 0"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_loopback_defaults() {
        let cfg: ServeConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, ServeConfig::default());
        assert_eq!(cfg.bind.to_string(), "127.0.0.1:8080");
        assert!(cfg.validate("http").is_ok());
    }

    #[test]
    fn durations_read_as_text_and_unknown_keys_are_refused() {
        let cfg: ServeConfig =
            toml::from_str("bind = \"0.0.0.0:9000\"\nkeep_alive = \"2s\"").unwrap();
        assert_eq!(cfg.keep_alive, Duration::from_secs(2));
        assert_eq!(cfg.bind.port(), 9000);
        let err = toml::from_str::<ServeConfig>("bnid = \"0.0.0.0:9000\"").unwrap_err();
        assert!(err.to_string().contains("bnid"), "{err}");
    }

    #[test]
    fn every_bad_bound_is_named_by_key() {
        let cfg = ServeConfig {
            max_clients: 0,
            alert_replay: 0,
            max_top: 0,
            ..ServeConfig::default()
        };
        let keys: Vec<_> = cfg
            .validate("http")
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            [
                "http.max_clients",
                "http.alert_replay",
                "http.recent_alerts",
                "http.max_top"
            ]
        );
    }
}
