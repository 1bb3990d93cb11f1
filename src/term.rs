//! What a person at a terminal reads: the progress line on stderr, which
//! log lines and error messages never land on (each clears it first; the
//! next progress tick draws it again), and numbers and money written for
//! reading ("¥166,479,927,452.00 (¥166.48 billion)").

use rust_decimal::Decimal;
use std::io::{self, IsTerminal, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Whether logs are JSON lines (`--log-format json`): then what the binary
/// says goes through the log too, so a collector sees only JSON.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Says where things went through the log rather than as plain lines.
pub fn use_json_logs() {
    JSON_LOGS.store(true, Ordering::Relaxed);
}

/// Tells the person running the command something they need to know
/// (where a file went), on stderr whatever the log level.
pub fn say(message: &str) {
    if JSON_LOGS.load(Ordering::Relaxed) {
        tracing::info!("{message}");
    } else {
        end_progress();
        eprintln!("gmv: {message}");
    }
}

/// Whether a progress line is drawn on stderr without its newline.
static PROGRESS_SHOWN: Mutex<bool> = Mutex::new(false);

/// Clears the line the cursor is on.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// Draws `line` as the progress line: in place on a terminal, as a line of
/// its own otherwise (a log file keeps every update readable).
pub fn show_progress(line: &str) {
    let mut shown = PROGRESS_SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = io::stderr().lock();
    if err.is_terminal() {
        let _ = write!(err, "{CLEAR_LINE}{line}");
        *shown = true;
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

/// Ends the progress line where it is, keeping its last figures on screen;
/// anything printed next starts on a line of its own.
pub fn end_progress() {
    let mut shown = PROGRESS_SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    if std::mem::take(&mut *shown) {
        let _ = writeln!(io::stderr());
    }
}

/// stderr for log lines: each clears the progress line before it is
/// written (tracing's formatter writes one event in one call).
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut shown = PROGRESS_SHOWN.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = io::stderr().lock();
        if std::mem::take(&mut *shown) {
            err.write_all(CLEAR_LINE.as_bytes())?;
        }
        err.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    group_integer(&n.to_string())
}

fn group_integer(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A decimal amount with its integer part grouped: `166479927452.00` as
/// `166,479,927,452.00` (the text is kept as given otherwise).
pub fn grouped_amount(amount: &str) -> String {
    let (sign, unsigned) = match amount.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", amount),
    };
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return amount.to_owned();
    }
    match frac {
        Some(frac) => format!("{sign}{}.{frac}", group_integer(int)),
        None => format!("{sign}{}", group_integer(int)),
    }
}

/// An amount in words: `166479927452.00` as `166.48 billion`, `100000000`
/// as `100 million`; below a million, grouped as it is.
pub fn amount_in_words(amount: &str) -> String {
    let Ok(value) = Decimal::from_str(amount) else {
        return amount.to_owned();
    };
    for (scale, word) in [
        (Decimal::from(1_000_000_000_000u64), "trillion"),
        (Decimal::from(1_000_000_000u64), "billion"),
        (Decimal::from(1_000_000u64), "million"),
    ] {
        if value.abs() >= scale {
            let scaled = (value / scale).round_dp(2).normalize();
            return format!("{scaled} {word}");
        }
    }
    grouped_amount(amount)
}

/// A CNY amount with its USD figure:
/// `¥166,479,927,452.00 (¥166.48 billion; US$25.04 billion)`.
pub fn cny_with_usd(cny_amount: &str, usd_amount: &str) -> String {
    let words = amount_in_words(cny_amount);
    let usd = amount_in_words(usd_amount);
    if words.ends_with("illion") {
        format!("¥{} (¥{words}; US${usd})", grouped_amount(cny_amount))
    } else {
        format!("¥{} (US${usd})", grouped_amount(cny_amount))
    }
}

/// A threshold in words only: `¥100 million`.
pub fn cny_words(amount: &str) -> String {
    format!("¥{}", amount_in_words(amount))
}

/// A duration in seconds as `1h02m`, `3m05s` or `42s`.
pub fn short_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped_and_said_in_words() {
        assert_eq!(cny_words("100000000.00"), "¥100 million");
        assert_eq!(cny_words("1000000000.00"), "¥1 billion");
        assert_eq!(cny_words("500000000.00"), "¥500 million");
        assert_eq!(cny_with_usd("1299.00", "195.37"), "¥1,299.00 (US$195.37)");
        assert_eq!(
            cny_with_usd("166479927452.00", "25038581088.78"),
            "¥166,479,927,452.00 (¥166.48 billion; US$25.04 billion)"
        );
        assert_eq!(grouped(1_480_000_000), "1,480,000,000");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped_amount("not money"), "not money");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(42.4), "42s");
        assert_eq!(short_duration(185.0), "3m05s");
        assert_eq!(short_duration(3720.0), "1h02m");
    }
}
