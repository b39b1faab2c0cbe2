//! The log format switch: human-readable text for terminals and journald (coloured only when
//! stderr is a terminal, so log files get no colour codes), or JSON lines for a log collector.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The environment variable that chooses the log format before anything else is read.
pub const LOG_FORMAT_ENV: &str = "FLASHKART_LOG_FORMAT";

/// How log lines are written to stderr.
///
/// Chosen by `--log-format` or [`LOG_FORMAT_ENV`], not by the config file: logging starts
/// first in `main`, so that loading the configuration can itself be logged (and its errors
/// reported) in the chosen format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing's default format), for terminals and journald.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// the current `span` and every enclosing one in `spans`, for log collectors and `jq`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format `{other}`: expected `text` or `json`")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

impl LogFormat {
    /// The format [`LOG_FORMAT_ENV`] names; text when it is unset. A value that names no
    /// format is returned as the error, so the caller can say so once logging runs.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(LOG_FORMAT_ENV) {
            Ok(value) => value.parse(),
            Err(std::env::VarError::NotPresent) => Ok(Self::Text),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("{LOG_FORMAT_ENV} is not valid UTF-8"))
            }
        }
    }
}

/// The subscriber that writes `format` lines at `filter`'s levels into `writer`; [`init_logging_as`]
/// installs it over stderr, tests hand it a buffer.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Logs to stderr at `RUST_LOG`'s levels (`info` when it is unset), in the format
/// [`LOG_FORMAT_ENV`] names (text when unset; an unknown value is reported and text is used).
pub fn init_logging() {
    match LogFormat::from_env() {
        Ok(format) => init_logging_as(format),
        Err(error) => {
            init_logging_as(LogFormat::Text);
            tracing::warn!(%error, "unknown log format; logging as text");
        }
    }
}

/// Logs to stderr at `RUST_LOG`'s levels (`info` when it is unset) in `format`.
pub fn init_logging_as(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    tracing_subscriber::util::SubscriberInitExt::init(subscriber(
        format,
        filter,
        std::io::stderr,
        ansi,
    ));
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into shared memory, so the test reads what the subscriber wrote.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Buffer {
        type Writer = Self;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(buffer: &Buffer) -> Vec<String> {
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn formats_parse_from_settings() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!(" TEXT ".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn json_lines_carry_level_message_fields_and_span_fields() {
        let buffer = Buffer::default();
        let subscriber = subscriber(
            LogFormat::Json,
            EnvFilter::new("debug"),
            buffer.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("order", trace_id = "0123456789abcdef0123456789abcdef");
            let _entered = span.enter();
            tracing::info!(order_id = "o-1", qty = 3, "order arrived");
            tracing::warn!("a \"quoted\"\nmulti-line message");
            tracing::trace!("filtered out");
        });
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(value["timestamp"].is_string(), "{line}");
            assert!(value["level"].is_string(), "{line}");
            assert!(value["target"].is_string(), "{line}");
            assert!(value["fields"]["message"].is_string(), "{line}");
            assert_eq!(
                value["span"]["trace_id"], "0123456789abcdef0123456789abcdef",
                "{line}"
            );
            assert_eq!(value["spans"][0]["name"], "order", "{line}");
        }
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap_or_default();
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["fields"]["message"], "order arrived");
        assert_eq!(first["fields"]["order_id"], "o-1");
        assert_eq!(first["fields"]["qty"], 3);
        let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap_or_default();
        assert_eq!(second["level"], "WARN");
        assert_eq!(
            second["fields"]["message"],
            "a \"quoted\"\nmulti-line message"
        );
    }

    #[test]
    fn text_lines_are_not_json() {
        let buffer = Buffer::default();
        let subscriber = subscriber(
            LogFormat::Text,
            EnvFilter::new("info"),
            buffer.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(order_id = "o-1", "order arrived");
        });
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("order arrived") && lines[0].contains("order_id=\"o-1\""));
        assert!(serde_json::from_str::<serde_json::Value>(&lines[0]).is_err());
    }
}
