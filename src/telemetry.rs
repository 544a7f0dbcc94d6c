//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or as JSON
//! lines (`--log-format json`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per event (`timestamp`, `level`, `target`, `fields`, `spans`).
    Json,
}

/// Installs the global subscriber once, as text; later calls are no-ops (tests call it freely).
pub fn init(default_filter: &str) {
    init_with(default_filter, LogFormat::Text);
}

/// [`init`] in `format`.
pub fn init_with(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
    quiet_engine_panics();
}

/// A panic inside the storage engine is how it meets some damage to its files; the store catches
/// it and reports it as damage (`StoreError::EnginePanic`). Such a panic is logged as one line
/// instead of the default report and backtrace, which would read as a crash of the server.
/// Every other panic is reported as before.
fn quiet_engine_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_engine = info.location().is_some_and(|l| l.file().contains("/sled-"));
            if in_engine {
                let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                tracing::debug!(%location, "the storage engine panicked (caught and reported as damage)");
            } else {
                default(info);
            }
        }));
    });
}
