//! The one configuration tree of the `gmv` binary, layered as Kafka and
//! Arroyo users expect: the embedded `config/default.toml`, then the user's
//! file (`--config`), then `GMV__SECTION__KEY` environment variables, then
//! command-line flags. Every problem is reported at once, each with its key,
//! the layer that set it, what is allowed and an example, and the process
//! exits before doing any work.
//!
//! figment and serde stop at the first error of an extraction, so
//! [`Config::load`] extracts again after setting each bad key aside, until
//! nothing more is wrong; the errors are then put in plain words (no Rust
//! type names), with a "did you mean" for a misspelt key.

use figment::error::{Actual, Kind};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Profile, Provider};
use gmv_core::config::{ConfigError, DedupConfig, EngineConfig, MoneyConfig, WindowConfig};
use gmv_core::Settings;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded defaults; also the documented example of every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The environment variables' prefix, and the separator of their sections.
const ENV_PREFIX: &str = "GMV__";

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// JSON-lines file rejected records are kept in. Unset: beside the
    /// report (`<report>.dead-letters.jsonl`), created only when a record
    /// is rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// One configuration problem: the key, the layer that set it, and what is
/// wrong and allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `engine.workers`.
    pub key: String,
    /// The layer that set the value (`file PATH`, `environment GMV__...`,
    /// `flag --NAME`), when it is not the default.
    pub origin: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl From<ConfigError> for Problem {
    fn from(e: ConfigError) -> Self {
        Self {
            key: e.key,
            origin: None,
            message: e.message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.key)?;
        if let Some(origin) = &self.origin {
            write!(f, " ({origin})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading configuration.
#[derive(Debug)]
pub struct ConfigProblems(pub Vec<Problem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.len() {
            1 => writeln!(f, "invalid configuration:")?,
            n => writeln!(f, "invalid configuration ({n} problems):")?,
        }
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

impl ConfigProblems {
    /// One problem.
    pub fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ConfigError::new(key, message).into()])
    }

    /// Problems found by a validator.
    pub fn from_errors(errors: Vec<ConfigError>) -> Self {
        Self(errors.into_iter().map(Problem::from).collect())
    }
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged tree (printed by `gmv config`).
    pub config: Config,
    /// The engine settings it validates to.
    pub settings: Settings,
}

/// A layer named for the reader: where a value came from.
struct Named<P> {
    name: String,
    source: Option<PathBuf>,
    inner: P,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        match &self.source {
            Some(path) => Metadata::from(self.name.clone(), path.as_path()),
            None => Metadata::named(self.name.clone()),
        }
    }

    fn data(&self) -> figment::Result<figment::value::Map<Profile, Dict>> {
        self.inner.data()
    }
}

/// The layer a command-line flag makes: `key = value`, named after the flag
/// so a problem with it says which flag to fix.
pub fn flag_layer<T: Serialize>(flag: &str, key: &str, value: T) -> impl Provider {
    Named {
        name: match flag {
            "" => "a command-line flag".to_owned(),
            flag => format!("flag {flag}"),
        },
        source: None,
        inner: Serialized::default(key, value),
    }
}

impl Config {
    /// Layers defaults, `file`, the environment and `overrides` (a TOML
    /// fragment built from CLI flags), then validates.
    pub fn load(file: Option<&Path>, overrides: &Figment) -> Result<Loaded, ConfigProblems> {
        let figment = layers(file, overrides)?;
        let (config, mut problems) = extract_all(&figment)?;
        let keys_with_problems: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
        match config.validate() {
            Ok(loaded) if problems.is_empty() => Ok(loaded),
            Ok(_) => Err(ConfigProblems(problems)),
            Err(ConfigProblems(more)) => {
                let data = tagged_data(&figment);
                for problem in more {
                    // A key set aside above is at its default now: what
                    // validation says of it is not news.
                    if keys_with_problems
                        .iter()
                        .any(|k| k.starts_with(&problem.key) || problem.key.starts_with(k.as_str()))
                    {
                        continue;
                    }
                    let origin = origin_of(&figment, &data, &key_segments(&problem.key));
                    problems.push(Problem {
                        origin: origin.filter(|o| o != "default"),
                        ..problem
                    });
                }
                Err(ConfigProblems(problems))
            }
        }
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
        if self
            .dead_letter
            .path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            problems.push(ConfigError::new(
                "dead_letter.path",
                "must be a file path, e.g. \"rejected.jsonl\", or unset",
            ));
        }
        if let Some(http) = &self.http {
            if let Err(mut more) = http.validate("http") {
                problems.append(&mut more);
            }
        }
        if let Err(mut more) = self.kafka.validate("kafka") {
            problems.append(&mut more);
        }
        problems.append(&mut check_kafka_properties(
            &self.kafka,
            PropertyCheck::Names,
        ));
        let settings = Settings::from_config(&self.window, &self.money, &self.dedup, &self.engine);
        match settings {
            Ok(settings) if problems.is_empty() => Ok(Loaded {
                config: self,
                settings,
            }),
            Ok(_) => Err(ConfigProblems::from_errors(problems)),
            Err(mut more) => {
                problems.append(&mut more);
                Err(ConfigProblems::from_errors(problems))
            }
        }
    }
}

/// The layers in order, each named for `gmv config --show-origin` and for
/// problems: `default`, `file PATH`, the environment, `flag --NAME`.
pub fn layers(file: Option<&Path>, overrides: &Figment) -> Result<Figment, ConfigProblems> {
    let mut figment = Figment::from(Named {
        name: "default".into(),
        source: None,
        inner: Toml::string(DEFAULT_TOML),
    });
    if let Some(path) = file {
        let text = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Err(format!(
                "{} is a directory; give a TOML file, e.g. config/rehearsal.toml",
                path.display()
            )),
            Ok(_) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(format!("{}: no such file", path.display()))
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
        .map_err(|message| ConfigProblems::one("--config", message))?;
        // Parsed here rather than by figment, to name the line of a syntax
        // error in the toml crate's own words.
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            return Err(ConfigProblems::one(
                "--config",
                format!(
                    "{} is not valid TOML: {}",
                    path.display(),
                    e.to_string().trim_end().replace('\n', "\n      ")
                ),
            ));
        }
        figment = figment.merge(Named {
            name: format!("file {}", path.display()),
            source: Some(path.to_owned()),
            inner: Toml::string(&text),
        });
    }
    Ok(figment
        .merge(Env::prefixed(ENV_PREFIX).split("__"))
        .merge(overrides.clone()))
}

/// The merged data, each value tagged with its layer.
fn tagged_data(figment: &Figment) -> Dict {
    figment
        .data()
        .ok()
        .and_then(|mut profiles| profiles.remove(&Profile::Default))
        .unwrap_or_default()
}

/// Extracts the configuration, collecting every problem: each bad key is
/// reported, set aside (so its default applies) and the rest extracted
/// again, until the rest extracts.
fn extract_all(figment: &Figment) -> Result<(Config, Vec<Problem>), ConfigProblems> {
    let data = tagged_data(figment);
    if let Err(e) = figment.data() {
        return Err(ConfigProblems(vec![problem_of(figment, &data, &e)]));
    }
    let mut remaining = data.clone();
    let mut problems = Vec::new();
    // Each round removes at least one key, so this ends; the bound is a
    // guard against a problem that names no removable key.
    for _ in 0..256 {
        let attempt = Figment::from(Serialized::defaults(&remaining)).extract::<Config>();
        let error = match attempt {
            Ok(config) => return Ok((config, problems)),
            Err(error) => error,
        };
        let mut removed = false;
        for e in error {
            problems.push(problem_of(figment, &data, &e));
            removed |= remove(&mut remaining, &error_segments(&e));
        }
        if !removed {
            break;
        }
    }
    Err(ConfigProblems(problems))
}

/// The key path a figment error is about (an unknown key's own name
/// included).
fn error_segments(e: &figment::Error) -> Vec<String> {
    let mut path = e.path.clone();
    if let Kind::UnknownField(found, _) = &e.kind {
        if path.last() != Some(found) {
            path.push(found.clone());
        }
    }
    path
}

/// Removes the value at `path` (or the nearest enclosing one that exists);
/// returns whether anything was removed.
fn remove(dict: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => dict.remove(last).is_some(),
        [first, rest @ ..] => match dict.get_mut(first) {
            Some(Value::Dict(_, inner)) => remove(inner, rest) || dict.remove(first).is_some(),
            Some(_) => dict.remove(first).is_some(),
            None => false,
        },
    }
}

/// A dotted key as segments: `kafka.consumer."fetch.wait.max.ms"` and
/// `money.thresholds_cny[1]` both work (the index is dropped).
fn key_segments(key: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in key.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => segments.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    segments.push(current);
    segments
        .into_iter()
        .map(|s| match s.find('[') {
            Some(i) if !s.starts_with('[') => s[..i].to_owned(),
            _ => s,
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// `segments` as a dotted key, quoting any that hold a dot.
pub fn dotted(segments: &[String]) -> String {
    segments
        .iter()
        .map(|s| {
            if s.contains('.') || s.is_empty() {
                format!("\"{s}\"")
            } else {
                s.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Which layer set the value at `segments` (the nearest enclosing value
/// that has a layer), in words: `default`, `file PATH`,
/// `environment GMV__SECTION__KEY`, `flag --NAME`.
pub fn origin_of(figment: &Figment, data: &Dict, segments: &[String]) -> Option<String> {
    // A table's tag is the layer that first made it, not that of each key
    // in it: only a value found at the path itself, or a list or text that
    // encloses it, has an origin.
    let mut dict = data;
    let mut found = None;
    for segment in segments {
        let value = dict.get(segment)?;
        match value {
            Value::Dict(_, inner) => {
                found = Some(value);
                dict = inner;
            }
            _ => {
                found = Some(value);
                break;
            }
        }
    }
    let value = found?;
    let metadata = figment.get_metadata(value.tag())?;
    Some(layer_name(metadata, segments))
}

fn layer_name(metadata: &Metadata, segments: &[String]) -> String {
    if metadata.name.contains("environment") {
        let var: Vec<String> = segments.iter().map(|s| s.to_ascii_uppercase()).collect();
        format!("environment {ENV_PREFIX}{}", var.join("__"))
    } else {
        metadata.name.to_string()
    }
}

fn with_origin(problem: ConfigError, origin: Option<&str>) -> Problem {
    Problem {
        origin: origin.filter(|o| *o != "default").map(str::to_owned),
        ..problem.into()
    }
}

/// One figment error as a problem in plain words.
fn problem_of(figment: &Figment, data: &Dict, e: &figment::Error) -> Problem {
    let segments = error_segments(e);
    let key = if segments.is_empty() {
        "(top level)".to_owned()
    } else {
        shown_key(&segments)
    };
    let origin = origin_of(figment, data, &segments).or_else(|| {
        e.metadata
            .as_ref()
            .map(|m| layer_name(m, &segments))
            .filter(|name| !name.contains("::"))
    });
    let name = segments.last().map(String::as_str).unwrap_or("");
    let message = match &e.kind {
        // TOML reads an unquoted date-time as a date-time, not as text.
        Kind::InvalidType(Actual::Map, expected)
            if expected.contains("string") && is_toml_datetime(data, &segments) =>
        {
            format!(
                "a TOML date-time is not text: put it in quotes, e.g. {}",
                example(&segments, name, expected)
            )
        }
        Kind::UnknownField(found, expected) => unknown_key(
            found,
            expected,
            &segments[..segments.len().saturating_sub(1)],
        ),
        Kind::UnknownVariant(found, expected) => format!(
            "\"{found}\" is not one of {}",
            expected
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            not_a(actual, expected, &example(&segments, name, expected))
        }
        Kind::InvalidLength(n, expected) => {
            format!("has {n} items; expected {}", plain(expected))
        }
        Kind::MissingField(field) => format!("`{field}` is missing"),
        Kind::DuplicateField(field) => format!("`{field}` is given twice"),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "the number is too large".to_owned(),
        Kind::Unsupported(actual) | Kind::UnsupportedKey(actual, _) => {
            format!("{} cannot be used here", actual_words(actual))
        }
        Kind::Message(message) => match example(&segments, name, "") {
            example if example.is_empty() => message.clone(),
            example => format!("{message}, e.g. {example}"),
        },
    };
    with_origin(ConfigError::new(key, message), origin.as_deref())
}

/// `segments` as a key to show: a list item as `key[1]`.
fn shown_key(segments: &[String]) -> String {
    match segments.split_last() {
        Some((last, parent)) if !parent.is_empty() && last.parse::<usize>().is_ok() => {
            format!("{}[{last}]", dotted(parent))
        }
        _ => dotted(segments),
    }
}

/// Whether the value at `segments` is a TOML date-time (figment keeps one
/// as a table with a marker key).
fn is_toml_datetime(data: &Dict, segments: &[String]) -> bool {
    let mut dict = data;
    for (i, segment) in segments.iter().enumerate() {
        match dict.get(segment) {
            Some(Value::Dict(_, inner)) if i + 1 == segments.len() => {
                return inner.keys().any(|k| k.contains("datetime"));
            }
            Some(Value::Dict(_, inner)) => dict = inner,
            _ => return false,
        }
    }
    false
}

/// "`workres` is not a key of [engine]; did you mean `workers`? ...".
fn unknown_key(found: &str, expected: &[&str], section: &[String]) -> String {
    let place = if section.is_empty() {
        "not a section".to_owned()
    } else {
        format!("not a key of [{}]", dotted(section))
    };
    let mut message = format!("`{found}` is {place}");
    if let Some(near) = did_you_mean(found, expected) {
        message += &format!("; did you mean `{near}`?");
    }
    if !expected.is_empty() {
        let kind = if section.is_empty() {
            "sections"
        } else {
            "keys"
        };
        message += &format!(" (the {kind} are {})", expected.join(", "));
    }
    message
}

/// The known name nearest to `found`, if it is near enough to be a typo.
pub fn did_you_mean<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    let found = found.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&found, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a swap of two neighbours counted as one edit
/// (`workres` → `workers`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// "X is not a duration; write it with a unit, e.g. ...".
fn not_a(actual: &Actual, expected: &str, example: &str) -> String {
    let what = plain(expected);
    let mut message = format!("{} is not {what}", actual_words(actual));
    if expected.contains("duration") {
        message += "; write it with a unit";
    } else if matches!(
        actual,
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_)
    ) && what.starts_with("text")
    {
        message += "; put it in quotes";
    }
    if !example.is_empty() {
        message += &format!(", e.g. {example}");
    }
    message
}

/// serde's "expected" in words a reader of the config file knows.
fn plain(expected: &str) -> String {
    let e = expected.trim().trim_matches('`');
    let words = match e {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" => "a whole number (0 or more)",
        "isize" | "i8" | "i16" | "i32" | "i64" | "i128" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "string" | "str" | "char" | "a character" => {
            "text in quotes"
        }
        "a boolean" | "bool" => "true or false",
        "a sequence" | "sequence" => "a list in brackets",
        "socket address" => "an address with a port",
        "option" => "a value",
        _ if e.contains("duration") => "a duration",
        _ if e.starts_with("struct ") || e.contains("map") => "a table of keys",
        _ if e.contains("one of") => return e.replace('`', "\""),
        // Anything else serde says: drop what reads as Rust.
        _ => return e.replace('`', "").replace("alloc::string::", ""),
    };
    words.to_owned()
}

fn actual_words(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        Actual::Bool(b) => b.to_string(),
        Actual::Char(c) => format!("{:?}", c.to_string()),
        Actual::Seq => "a list".to_owned(),
        Actual::Map => "a table".to_owned(),
        Actual::Unit | Actual::Option => "an empty value".to_owned(),
        _ => "this value".to_owned(),
    }
}

/// An example of a good value for the key at `segments`: its default when
/// it has one, otherwise one of the expected kind.
fn example(segments: &[String], name: &str, expected: &str) -> String {
    // A list item: the first item of the default list.
    if let Some((last, parent)) = segments.split_last() {
        if last.parse::<usize>().is_ok() {
            return match default_value(parent) {
                Some(toml::Value::Array(items)) => {
                    items.first().map(|v| v.to_string()).unwrap_or_default()
                }
                _ => String::new(),
            };
        }
    }
    if let Some(value) = default_value(segments) {
        let shown = match &value {
            toml::Value::Table(table) => {
                return table
                    .iter()
                    .next()
                    .map(|(k, v)| format!("[{}] {k} = {v}", dotted(segments)))
                    .unwrap_or_default();
            }
            other => Some(other.to_string()),
        };
        if let Some(shown) = shown {
            if expected.contains("duration") {
                return format!("{shown} or \"2s\"");
            }
            return format!("{name} = {shown}");
        }
    }
    let e = expected.trim_matches('`');
    if e.contains("duration") {
        "\"500ms\" or \"2s\"".to_owned()
    } else if e.starts_with('u') || e.starts_with('i') {
        format!("{name} = 4")
    } else if e.starts_with('f') {
        format!("{name} = 0.5")
    } else if e.contains("string") {
        format!("{name} = \"...\"")
    } else if e.contains("boolean") {
        format!("{name} = true")
    } else {
        String::new()
    }
}

/// The built-in value of a key, with `[http]` at its defaults.
fn default_value(segments: &[String]) -> Option<toml::Value> {
    let config = Config {
        http: Some(gmv_serve::ServeConfig::default()),
        ..Config::default()
    };
    let mut value = toml::Value::try_from(&config).ok()?;
    for segment in segments {
        value = value.as_table()?.get(segment)?.clone();
    }
    Some(value)
}

/// How much of the librdkafka pass-through tables to check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PropertyCheck {
    /// Property names only (no client is made): every command, at start.
    Names,
    /// Names and values, as librdkafka will take them: the commands that
    /// make Kafka clients, before they make one.
    NamesAndValues,
}

/// The properties of `[kafka.client]`, `[kafka.consumer]` and
/// `[kafka.producer]` that librdkafka would refuse, each with its key.
/// Values are only checked when asked: a value may be refused because of
/// how librdkafka was built (SSL), which matters only to a command that
/// connects.
pub fn check_kafka_properties(
    config: &gmv_kafka::KafkaConfig,
    check: PropertyCheck,
) -> Vec<ConfigError> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    let mut problems = Vec::new();
    for (table, properties) in [
        ("client", &config.client),
        ("consumer", &config.consumer),
        ("producer", &config.producer),
    ] {
        for (name, value) in properties {
            let mut one = rdkafka::ClientConfig::new();
            one.set(name, value);
            if let Err(KafkaError::ClientConfig(result, description, _, _)) =
                one.create_native_config()
            {
                if result == RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN
                    || check == PropertyCheck::NamesAndValues
                {
                    problems.push(ConfigError::new(
                        format!("kafka.{table}.\"{name}\""),
                        format!("librdkafka refuses it: {description}"),
                    ));
                }
            }
        }
    }
    problems
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
            let flags = Figment::from(flag_layer("--workers", "engine.workers", 2));
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
            assert!(err.contains("did you mean `workers`?"), "{err}");
            assert!(err.contains("publish.interval"), "{err}");
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
    fn every_problem_is_reported_in_plain_words() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                "[engine]\ntop_n = \"many\"\nworkres = 2\n[publish]\ninterval = 5\n\
                 [kafka]\nconnect_timeout = \"soon\"\n[kafka.checkpoint]\nstore = \"s3\"\n",
            )?;
            jail.set_env("GMV__DEDUP__MAX_IDS", "lots");
            let flags = Figment::from(flag_layer("--workers", "engine.workers", "four"));
            let err = Config::load(Some(Path::new("bad.toml")), &flags)
                .unwrap_err()
                .to_string();
            for needle in [
                "engine.top_n",
                "engine.workres",
                "did you mean `workers`?",
                "publish.interval",
                "5 is not a duration; write it with a unit, e.g. \"500ms\"",
                "kafka.connect_timeout",
                "kafka.checkpoint.store",
                "\"s3\" is not one of \"dir\", \"topic\"",
                "environment GMV__DEDUP__MAX_IDS",
                "dedup.max_ids",
                "flag --workers",
                "file bad.toml",
                "(7 problems)",
            ] {
                assert!(err.contains(needle), "{needle} not in: {err}");
            }
            for rust in ["alloc::", "usize", "&str", "String)", "struct ", "``"] {
                assert!(!err.contains(rust), "{rust} in: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[engine]\nworkers = = 3\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), &no_overrides())
                .unwrap_err()
                .to_string();
            assert!(err.contains("bad.toml is not valid TOML"), "{err}");
            assert!(err.contains("line 2"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_named_and_a_directory_is_called_one() {
        let err = Config::load(Some(Path::new("/nonexistent/gmv.toml")), &no_overrides())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/gmv.toml: no such file"), "{err}");
        let dir = std::env::temp_dir();
        let err = Config::load(Some(&dir), &no_overrides())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
    }

    #[test]
    fn an_unknown_librdkafka_property_is_refused_by_name() {
        let mut config = gmv_kafka::KafkaConfig::default();
        config
            .consumer
            .insert("fetch.wait.max.msec".into(), "10".into());
        config.producer.insert("linger.ms".into(), "soon".into());
        let names = check_kafka_properties(&config, PropertyCheck::Names);
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(names[0].key, "kafka.consumer.\"fetch.wait.max.msec\"");
        let all = check_kafka_properties(&config, PropertyCheck::NamesAndValues);
        assert_eq!(all.len(), 2, "{all:?}");
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        let keys = ["top_n", "max_event_bytes", "workers", "partitions"];
        assert_eq!(did_you_mean("workres", &keys), Some("workers"));
        assert_eq!(did_you_mean("partition", &keys), Some("partitions"));
        assert_eq!(did_you_mean("colour", &keys), None);
    }

    #[test]
    fn keys_are_split_with_quotes_and_indexes() {
        assert_eq!(
            key_segments("kafka.consumer.\"fetch.wait.max.ms\""),
            ["kafka", "consumer", "fetch.wait.max.ms"]
        );
        assert_eq!(
            key_segments("money.thresholds_cny[1]"),
            ["money", "thresholds_cny"]
        );
    }
}
