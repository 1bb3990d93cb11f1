//! The `[http]` section of the configuration: where to listen, the bounds
//! that keep the live feed's memory fixed however many screens connect, and
//! what the gala screen celebrates (total-GMV milestones, last year's total).
//!
//! The publish cadence itself is not here: it is the publisher's
//! (`[publish] interval`), and every snapshot carries it
//! (`publish_interval_ms`), which is how readers judge staleness.
//!
//! Money is a decimal string in CNY, as everywhere in the configuration;
//! the page gets the screen's keys as JSON from `GET /api/screen`
//! ([`ServeConfig::screen`]).

use gmv_core::config::ConfigError;
use gmv_core::money::{parse_cny, AmountError};
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
    /// A request's line and headers must all arrive within this: counted
    /// from the connection's start for its first request, from the first
    /// byte for a later one. A client that connects and sends nothing, or
    /// trickles a header a byte at a time (slowloris), is disconnected
    /// rather than holding a socket.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after
    /// this long. An `/api/live` stream is a response in flight, so it is
    /// never cut by this (it sends keep-alive comments of its own).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The screen celebrates each time the total GMV passes a multiple of
    /// this, CNY (default every ¥10B).
    pub milestone_every_cny: String,
    /// Last year's name on the screen, e.g. `"2016"` (quoted: it is a
    /// label). Needed with either baseline figure below.
    pub baseline_label: Option<String>,
    /// Last year's total GMV, CNY, e.g. `"120700000000.00"`: the screen
    /// shows growth on it live and marks the moment it is passed. Unset: no
    /// growth figure.
    pub baseline_gmv_cny: Option<String>,
    /// Last year's mobile share of GMV, a fraction 0..=1 (e.g. `0.82`),
    /// shown beside this year's.
    pub baseline_mobile_share: Option<Fraction>,
}

/// A fraction 0..=1 as written in the configuration (a share, not money).
/// Compared bit for bit, so a configuration stays `Eq`; [`ServeConfig::validate`]
/// refuses anything but a finite value in range.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fraction(pub f64);

impl PartialEq for Fraction {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Fraction {}

/// What the scoreboard page needs from the configuration, as served at
/// `GET /api/screen`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenSettings {
    /// Total-GMV milestone spacing, CNY.
    pub milestone_every_cny: String,
    /// Last year's figures, when configured.
    pub baseline: Option<Baseline>,
}

/// Last year's figures, for growth and "passed last year" on the screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Its name, e.g. `"2016"`.
    pub label: String,
    /// Its total GMV, CNY.
    pub gmv_cny: Option<String>,
    /// Its mobile share, 0..=1.
    pub mobile_share: Option<f64>,
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
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            milestone_every_cny: "10000000000.00".into(),
            baseline_label: None,
            baseline_gmv_cny: None,
            baseline_mobile_share: None,
        }
    }
}

/// Why a configured amount was refused, in the words of a config key.
fn amount_problem(error: AmountError) -> &'static str {
    match error {
        AmountError::NotPositive => "must be more than 0",
        AmountError::TooPrecise => "must have at most 2 decimal places (fen)",
        AmountError::TooLarge => "is too large",
        AmountError::NotANumber => "must be a decimal string of CNY, e.g. \"10000000000.00\"",
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
        // Below the floor, a client on a slow link could not send its
        // headers; above the ceiling, idle sockets pile up as in the
        // slowloris the timeouts are there to stop.
        let defaults = ServeConfig::default();
        let connection_timeouts = [
            (
                "header_read_timeout",
                self.header_read_timeout,
                MAX_HEADER_READ_TIMEOUT,
                defaults.header_read_timeout,
            ),
            (
                "idle_timeout",
                self.idle_timeout,
                MAX_IDLE_TIMEOUT,
                defaults.idle_timeout,
            ),
        ];
        for (name, value, max, example) in connection_timeouts {
            if !(MIN_CONNECTION_TIMEOUT..=max).contains(&value) {
                let shown = humantime_serde::re::humantime::format_duration;
                errors.push(ConfigError::new(
                    key(name),
                    format!(
                        "must be from {} to {}, e.g. \"{}\"",
                        shown(MIN_CONNECTION_TIMEOUT),
                        shown(max),
                        shown(example),
                    ),
                ));
            }
        }
        if let Err(e) = parse_cny(&self.milestone_every_cny) {
            errors.push(ConfigError::new(
                key("milestone_every_cny"),
                amount_problem(e),
            ));
        }
        if let Some(gmv) = &self.baseline_gmv_cny {
            if let Err(e) = parse_cny(gmv) {
                errors.push(ConfigError::new(key("baseline_gmv_cny"), amount_problem(e)));
            }
        }
        if let Some(Fraction(share)) = self.baseline_mobile_share {
            if !(0.0..=1.0).contains(&share) {
                errors.push(ConfigError::new(
                    key("baseline_mobile_share"),
                    "must be a fraction from 0 to 1, e.g. 0.82",
                ));
            }
        }
        let has_figure = self.baseline_gmv_cny.is_some() || self.baseline_mobile_share.is_some();
        match self.baseline_label.as_deref().map(str::trim) {
            None if has_figure => errors.push(ConfigError::new(
                key("baseline_label"),
                "must name last year (e.g. \"2016\") when a baseline figure is set",
            )),
            Some("") => errors.push(ConfigError::new(key("baseline_label"), "must not be empty")),
            Some(label) if label.chars().count() > MAX_LABEL_CHARS => {
                errors.push(ConfigError::new(
                    key("baseline_label"),
                    format!("must be at most {MAX_LABEL_CHARS} characters (it is on the screen)"),
                ))
            }
            Some(_) if !has_figure => errors.push(ConfigError::new(
                key("baseline_label"),
                "names nothing: set baseline_gmv_cny or baseline_mobile_share too",
            )),
            _ => {}
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The screen's keys as the page reads them (`GET /api/screen`); the
    /// baseline only when it names a year.
    pub fn screen(&self) -> ScreenSettings {
        ScreenSettings {
            milestone_every_cny: self.milestone_every_cny.trim().to_owned(),
            baseline: self.baseline_label.as_ref().map(|label| Baseline {
                label: label.trim().to_owned(),
                gmv_cny: self.baseline_gmv_cny.as_ref().map(|g| g.trim().to_owned()),
                mobile_share: self.baseline_mobile_share.map(|f| f.0),
            }),
        }
    }
}

/// Longest `baseline_label`: it sits in a tile beside the growth figure.
const MAX_LABEL_CHARS: usize = 16;

/// Shortest `header_read_timeout` and `idle_timeout`.
const MIN_CONNECTION_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest `header_read_timeout`: a client sends its headers in well under
/// a second; minutes only serve a client that is holding the socket.
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Longest `idle_timeout`.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

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

    #[test]
    fn connection_timeouts_read_as_text_and_default_to_ten_and_sixty_seconds() {
        let defaults = ServeConfig::default();
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.idle_timeout, Duration::from_secs(60));
        let cfg: ServeConfig =
            toml::from_str("header_read_timeout = \"300ms\"\nidle_timeout = \"2m\"").unwrap();
        assert_eq!(cfg.header_read_timeout, Duration::from_millis(300));
        assert_eq!(cfg.idle_timeout, Duration::from_secs(120));
        assert!(cfg.validate("http").is_ok());
        let err = toml::from_str::<ServeConfig>("idle_timeout = 60").unwrap_err();
        assert!(err.to_string().contains("idle_timeout"), "{err}");
    }

    #[test]
    fn zero_tiny_or_absurd_connection_timeouts_are_refused_saying_what_is_allowed() {
        let problems = |header_read_timeout, idle_timeout| -> Vec<(String, String)> {
            let cfg = ServeConfig {
                header_read_timeout,
                idle_timeout,
                ..ServeConfig::default()
            };
            cfg.validate("http")
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.key, e.message))
                .collect()
        };
        let header = |message: &str| ("http.header_read_timeout".to_owned(), message.to_owned());
        let idle = |message: &str| ("http.idle_timeout".to_owned(), message.to_owned());
        let header_range = "must be from 100ms to 5m, e.g. \"10s\"";
        let idle_range = "must be from 100ms to 1h, e.g. \"1m\"";
        assert_eq!(
            problems(Duration::ZERO, Duration::ZERO),
            [header(header_range), idle(idle_range)]
        );
        assert_eq!(
            problems(Duration::from_millis(99), Duration::from_secs(3601)),
            [header(header_range), idle(idle_range)]
        );
        assert_eq!(
            problems(Duration::from_secs(301), Duration::from_secs(60)),
            [header(header_range)]
        );
        assert_eq!(
            problems(Duration::from_secs(10), Duration::from_secs(u64::MAX)),
            [idle(idle_range)]
        );
        for edge in [Duration::from_millis(100), Duration::from_secs(300)] {
            assert_eq!(problems(edge, Duration::from_secs(3600)), []);
        }
    }

    #[test]
    fn screen_keys_default_to_ten_billion_milestones_and_no_baseline() {
        let cfg = ServeConfig::default();
        let screen = cfg.screen();
        assert_eq!(screen.milestone_every_cny, "10000000000.00");
        assert_eq!(screen.baseline, None);
        let json = serde_json::to_value(&screen).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"milestone_every_cny": "10000000000.00", "baseline": null})
        );
    }

    #[test]
    fn last_years_figures_read_from_toml_and_reach_the_screen() {
        let cfg: ServeConfig = toml::from_str(
            "milestone_every_cny = \"5000000000.00\"\n\
             baseline_label = \"2016\"\n\
             baseline_gmv_cny = \"120700000000.00\"\n\
             baseline_mobile_share = 0.82",
        )
        .unwrap();
        assert!(cfg.validate("http").is_ok());
        let screen = cfg.screen();
        assert_eq!(screen.milestone_every_cny, "5000000000.00");
        assert_eq!(
            screen.baseline,
            Some(Baseline {
                label: "2016".into(),
                gmv_cny: Some("120700000000.00".into()),
                mobile_share: Some(0.82),
            })
        );
        assert_eq!(cfg.clone(), cfg, "a configuration equals its copy");
    }

    /// `config/default.toml` documents `[http]` commented out (absent, it is
    /// not served); every key shown there, uncommented, must read back as a
    /// valid section with the values it claims.
    #[test]
    fn the_documented_http_section_is_valid() {
        let default_toml = include_str!("../../../config/default.toml");
        let section = default_toml
            .split("\n# [http]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("config/default.toml documents [http]");
        let keys: String = section
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                line.split_once(" = ")
                    .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .map(|line| line.split("  #").next().unwrap_or(line).trim_end())
            .collect::<Vec<_>>()
            .join("\n");
        let cfg: ServeConfig = toml::from_str(&keys).unwrap_or_else(|e| panic!("{e}\n{keys}"));
        assert!(cfg.validate("http").is_ok());
        assert_eq!(keys.lines().count(), 14, "{keys}");
        let documented = ServeConfig {
            baseline_label: Some("2016".into()),
            baseline_gmv_cny: Some("120700000000.00".into()),
            baseline_mobile_share: Some(Fraction(0.82)),
            ..ServeConfig::default()
        };
        assert_eq!(cfg, documented);
    }

    #[test]
    fn every_bad_screen_key_is_named_by_key() {
        let keys = |cfg: ServeConfig| -> Vec<String> {
            cfg.validate("http")
                .unwrap_err()
                .into_iter()
                .map(|e| e.key)
                .collect()
        };
        let cfg = ServeConfig {
            milestone_every_cny: "0.00".into(),
            baseline_label: None,
            baseline_gmv_cny: Some("1.005".into()),
            baseline_mobile_share: Some(Fraction(1.2)),
            ..ServeConfig::default()
        };
        assert_eq!(
            keys(cfg),
            [
                "http.milestone_every_cny",
                "http.baseline_gmv_cny",
                "http.baseline_mobile_share",
                "http.baseline_label"
            ]
        );
        for bad in [
            "",
            "ten",
            "-5.00",
            "1e9",
            "99999999999999999999999999999999.00",
        ] {
            let cfg = ServeConfig {
                milestone_every_cny: bad.into(),
                ..ServeConfig::default()
            };
            assert_eq!(keys(cfg), ["http.milestone_every_cny"], "{bad:?}");
        }
        for label in ["", "a label far too long for a tile"] {
            let cfg = ServeConfig {
                baseline_label: Some(label.into()),
                baseline_gmv_cny: Some("1.00".into()),
                ..ServeConfig::default()
            };
            assert_eq!(keys(cfg), ["http.baseline_label"], "{label:?}");
        }
        let alone = ServeConfig {
            baseline_label: Some("2016".into()),
            ..ServeConfig::default()
        };
        assert_eq!(keys(alone), ["http.baseline_label"]);
        let nan = ServeConfig {
            baseline_label: Some("2016".into()),
            baseline_mobile_share: Some(Fraction(f64::NAN)),
            ..ServeConfig::default()
        };
        assert_eq!(keys(nan), ["http.baseline_mobile_share"]);
    }
}
