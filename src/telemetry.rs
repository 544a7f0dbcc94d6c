//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or as JSON
//! lines (`--log-format json`); and, with `serve --otlp-endpoint URL`, the server's spans (each
//! request's `rpc` span and the spans inside it) exported over OTLP/gRPC by a batch exporter.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per event (`timestamp`, `level`, `target`, `fields`, `spans`).
    Json,
}

/// The service name every exported span's resource carries (with `service.version`).
pub const SERVICE_NAME: &str = "pax-ledger";

/// How long one export may take (a collector that does not answer), and how long a stop waits
/// for the last spans to be sent: together well within the ten seconds a stop may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(4);

/// Spans waiting to be exported; beyond, new spans are dropped (requests never wait for them).
const QUEUE_MAX: usize = 4096;

/// Installs the global subscriber once, as text; later calls are no-ops (tests call it freely).
pub fn init(default_filter: &str) {
    init_with(default_filter, LogFormat::Text);
}

/// [`init`] in `format`.
pub fn init_with(default_filter: &str, format: LogFormat) {
    install(default_filter, format, None);
}

/// [`init_with`], and the server's spans exported over OTLP/gRPC to `endpoint` (a URL such as
/// `http://localhost:4317`) by a batch exporter: a bounded queue filled as spans end and sent
/// from a thread of its own, so that a slow or unreachable collector costs a request nothing
/// (its spans are dropped once the queue is full; failures are logged once, then at most once a
/// minute). Only the project's own spans are exported (those of the libraries it uses, such
/// as the exporter's own connection, are not). [`SpanExport::shutdown`] sends what is queued.
pub fn init_exporting(
    default_filter: &str,
    format: LogFormat,
    endpoint: &str,
) -> Result<SpanExport, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let batch = BatchConfigBuilder::default().with_max_queue_size(QUEUE_MAX).build();
    let processor = BatchSpanProcessor::builder(Reported::new(exporter, endpoint)).with_batch_config(batch).build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
    install(default_filter, format, Some(provider.tracer(SERVICE_NAME)));
    tracing::info!("tracing: exporting spans to {endpoint} over OTLP");
    Ok(SpanExport { provider })
}

/// The span exporter of [`init_exporting`].
pub struct SpanExport {
    provider: SdkTracerProvider,
}

impl SpanExport {
    /// Sends the spans still queued (waiting at most a few seconds for the collector) and stops
    /// the exporter. Call it once the server has stopped.
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The exporter's connection lives on this runtime: wait for it without blocking it.
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT)).await;
        match stopped {
            Ok(Ok(())) => tracing::debug!("tracing: the last spans were exported"),
            Ok(Err(error)) => tracing::warn!(%error, "tracing: the last spans may not have been exported"),
            Err(error) => tracing::warn!(%error, "tracing: the exporter did not stop cleanly"),
        }
    }
}

/// The global subscriber: the log lines, filtered by `RUST_LOG` (else `default_filter`), and the
/// spans' export when there is one, filtered on its own (the project's spans and events at level
/// info and above, whatever `RUST_LOG` keeps of the log).
fn install(default_filter: &str, format: LogFormat, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = match tracer {
        None => tracing_subscriber::registry().with(filter).with(log_lines(format)).try_init(),
        Some(tracer) => {
            // Not the libraries' spans: the exporter's own connection (tonic, hyper, h2) must not
            // be traced into the spans it sends.
            let own = Targets::new().with_target(env!("CARGO_CRATE_NAME"), LevelFilter::INFO);
            let export = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(own);
            tracing_subscriber::registry().with(export).with(log_lines(format).with_filter(filter)).try_init()
        }
    };
    quiet_engine_panics();
}

/// The log lines on stderr, in `format`.
fn log_lines<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
    }
}

/// An exporter that says when exporting fails — once, then at most once a minute while it
/// goes on failing, with the number of failed batches — and when it works again.
#[derive(Debug)]
struct Reported<E> {
    inner: E,
    endpoint: String,
    failing: Mutex<Option<Failing>>,
}

#[derive(Debug)]
struct Failing {
    since_logged: Instant,
    unlogged: u64,
}

const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

impl<E> Reported<E> {
    fn new(inner: E, endpoint: &str) -> Self {
        Self { inner, endpoint: endpoint.to_owned(), failing: Mutex::new(None) }
    }

    fn note(&self, result: &OTelSdkResult) {
        let mut failing = self.failing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match (result, failing.as_mut()) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => {
                *failing = None;
                tracing::info!(endpoint = %self.endpoint, "tracing: spans are exported again");
            }
            (Err(error), None) => {
                *failing = Some(Failing { since_logged: Instant::now(), unlogged: 0 });
                tracing::warn!(endpoint = %self.endpoint, %error, "tracing: cannot export spans (their batches are dropped; requests go on)");
            }
            (Err(error), Some(state)) if state.since_logged.elapsed() >= FAILURE_LOG_EVERY => {
                let failed_batches = state.unlogged + 1;
                *state = Failing { since_logged: Instant::now(), unlogged: 0 };
                tracing::warn!(endpoint = %self.endpoint, %error, failed_batches, "tracing: still cannot export spans");
            }
            (Err(_), Some(state)) => state.unlogged += 1,
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.note(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
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
