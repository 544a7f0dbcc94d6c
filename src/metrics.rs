//! Prometheus metrics: `serve --metrics-listen ADDR` serves `GET /metrics` there, on a port of
//! its own (so that the gRPC port's authentication does not apply to scrapers, and a scraper's
//! port need not be the clients'), in the OpenMetrics text format of `prometheus-client`.
//!
//! What is counted where: every gRPC request by service, method and code, and its latency, in
//! a tower layer around the services ([`RequestLayer`], which also opens each request's
//! tracing span: `rpc` with `method`, `principal`, `stream`, `events`, `code` and
//! `latency_ms`, and logs its end at debug level; the code is the `grpc-status` the
//! response's headers carry, OK when they carry none — a unary success — and the latency is to
//! the response's headers, so for `Subscribe` it is the time to open the stream); each durable
//! commit group, its size and its phases, told by the writer through the ledger's
//! [`GroupObserver`] seam; and, read at each scrape, the log's and the views' positions, the
//! latest checkpoint's position and age, the data directory's bytes and the principals. Every
//! name starts with `pax_ledger_`.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ledger::{GroupObserver, GroupSample, Ledger};
use crate::service::status::code_name;

/// A gRPC request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    service: String,
    method: String,
    code: String,
}

/// Latency buckets in seconds: 50 µs to ≈ 3.3 s, doubling.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// The server's metrics (module documentation).
pub struct Metrics {
    registry: Registry,
    data: PathBuf,
    requests: Family<Rpc, Counter>,
    request_seconds: Family<Rpc, Histogram, fn() -> Histogram>,
    groups: Counter,
    events_committed: Counter,
    group_events: Histogram,
    check_seconds: Histogram,
    apply_seconds: Histogram,
    flush_seconds: Histogram,
    fsync_seconds: Histogram,
    log_position: Gauge,
    views_position: Gauge,
    views_lag: Gauge,
    checkpoint_position: Gauge,
    checkpoint_age_seconds: Gauge<f64, AtomicU64>,
    data_bytes: Gauge,
    principals: Gauge,
    subscriptions: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("data", &self.data).finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of a server whose data directory is `data`.
    pub fn new(data: &Path) -> Arc<Self> {
        let mut registry = Registry::with_prefix("pax_ledger");
        let requests = Family::<Rpc, Counter>::default();
        registry.register("requests", "gRPC requests answered, by service, method and status code", requests.clone());
        let request_seconds = Family::<Rpc, Histogram, fn() -> Histogram>::new_with_constructor(seconds_buckets);
        registry.register(
            "request_duration_seconds",
            "Time from a gRPC request to its response's headers, by service, method and status code",
            request_seconds.clone(),
        );
        let groups = Counter::default();
        registry.register(
            "commit_groups",
            "Durable commit groups (one atomic write and one fdatasync each)",
            groups.clone(),
        );
        let events_committed = Counter::default();
        registry.register("events_committed", "Events committed durably", events_committed.clone());
        let group_events = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register("commit_group_events", "Events per durable commit group", group_events.clone());
        let phase = |registry: &mut Registry, name: &str, help: &str| {
            let histogram = seconds_buckets();
            registry.register(name, help, histogram.clone());
            histogram
        };
        let check_seconds = phase(&mut registry, "commit_check_seconds", "Time a commit group spent on its checks");
        let apply_seconds = phase(&mut registry, "commit_apply_seconds", "Time in the storage engine's apply_batch");
        let flush_seconds = phase(&mut registry, "commit_flush_seconds", "Time in the storage engine's flush");
        let fsync_seconds = phase(&mut registry, "commit_fsync_seconds", "Time in the fdatasync of the database file");
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let log_position = gauge(&mut registry, "log_position", "The durable head: the last acknowledged position");
        let views_position = gauge(&mut registry, "views_position", "The position the views reflect");
        let views_lag = gauge(&mut registry, "views_lag_events", "Events acknowledged but not yet in the views");
        let checkpoint_position =
            gauge(&mut registry, "checkpoint_position", "The size of the latest signed checkpoint (0: none)");
        let checkpoint_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "checkpoint_age_seconds",
            "Seconds since the latest signed checkpoint was made (0: none)",
            checkpoint_age_seconds.clone(),
        );
        let data_bytes = gauge(&mut registry, "data_bytes", "Bytes of the files in the data directory");
        let principals = gauge(&mut registry, "principals", "Principals (0 while the ledger is open)");
        let subscriptions = gauge(&mut registry, "subscriptions", "Subscriptions open now (Subscribe streams)");
        Arc::new(Self {
            registry,
            data: data.to_owned(),
            requests,
            request_seconds,
            groups,
            events_committed,
            group_events,
            check_seconds,
            apply_seconds,
            flush_seconds,
            fsync_seconds,
            log_position,
            views_position,
            views_lag,
            checkpoint_position,
            checkpoint_age_seconds,
            data_bytes,
            principals,
            subscriptions,
        })
    }

    /// Counts one answered request to `path` (`/package.Service/Method`) with `code`.
    fn request(&self, path: &str, code: tonic::Code, elapsed: Duration) {
        // Only the served methods get labels of their own: a client cannot grow the families
        // by sending requests to made-up paths.
        let (service, method) = match crate::service::auth::access_of(path) {
            Some(_) => path.trim_start_matches('/').split_once('/').unwrap_or(("", "")),
            None => ("unknown", "unknown"),
        };
        let labels = Rpc { service: service.to_owned(), method: method.to_owned(), code: code_name(code).to_owned() };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// The text of a scrape: the gauges read now from `ledger`, then everything encoded.
    pub fn render(&self, ledger: &Ledger) -> String {
        let head = ledger.durable_head().position.0;
        let views = ledger.views_snapshot().position.0;
        self.log_position.set(i64::try_from(head).unwrap_or(i64::MAX));
        self.views_position.set(i64::try_from(views).unwrap_or(i64::MAX));
        self.views_lag.set(i64::try_from(head.saturating_sub(views)).unwrap_or(i64::MAX));
        match ledger.latest_stored_checkpoint() {
            Ok(Some(checkpoint)) => {
                self.checkpoint_position.set(i64::try_from(checkpoint.checkpoint.position).unwrap_or(i64::MAX));
                let age = chrono::Utc::now() - checkpoint.checkpoint.time;
                self.checkpoint_age_seconds.set(age.num_milliseconds().max(0) as f64 / 1000.0);
            }
            Ok(None) => {}
            // A scrape never fails for it: the ledger's own checks report damage.
            Err(error) => tracing::debug!(%error, "metrics: no checkpoint to report"),
        }
        self.data_bytes.set(i64::try_from(directory_bytes(&self.data)).unwrap_or(i64::MAX));
        self.principals.set(i64::try_from(ledger.access().principals().count()).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

impl GroupObserver for Metrics {
    fn group_committed(&self, sample: &GroupSample) {
        self.groups.inc();
        self.events_committed.inc_by(sample.events);
        self.group_events.observe(sample.events as f64);
        self.check_seconds.observe(sample.check.as_secs_f64());
        self.apply_seconds.observe(sample.commit.apply.as_secs_f64());
        self.flush_seconds.observe(sample.commit.flush.as_secs_f64());
        self.fsync_seconds.observe(sample.commit.sync.as_secs_f64());
    }
}

/// The bytes of the regular files under `dir`, at any depth (unreadable entries count 0).
fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ledger: Arc<Ledger>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (metrics, ledger) = (metrics.clone(), ledger.clone());
            async move {
                let text = tokio::task::spawn_blocking(move || metrics.render(&ledger)).await.unwrap_or_default();
                ([(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Opens a span for every gRPC request, logs its end (debug), and counts it in `metrics` when
/// there are metrics.
#[derive(Clone, Default)]
pub struct RequestLayer {
    metrics: Option<Arc<Metrics>>,
}

impl RequestLayer {
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for RequestLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured { inner, metrics: self.metrics.clone() }
    }
}

/// The service of [`RequestLayer`].
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Option<Arc<Metrics>>,
}

impl<S, B> tower_service::Service<http::Request<B>> for Measured<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let metrics = self.metrics.clone();
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "rpc",
            method = %path,
            principal = tracing::field::Empty,
            stream = tracing::field::Empty,
            events = tracing::field::Empty,
            code = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        // The layers inside (authentication) run now, in the span; the handler in its future.
        let response = span.in_scope(|| self.inner.call(request));
        let done = span.clone();
        let future = async move {
            let result = response.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok()?.parse::<i32>().ok())
                    .map_or(
                        if response.status() == http::StatusCode::OK { tonic::Code::Ok } else { tonic::Code::Unknown },
                        tonic::Code::from,
                    ),
                Err(_) => tonic::Code::Unavailable,
            };
            let elapsed = started.elapsed();
            done.record("code", code_name(code));
            done.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
            tracing::debug!("request answered");
            match metrics {
                Some(metrics) => {
                    metrics.request(&path, code, elapsed);
                    // An open subscription is its response's body: counted until it is dropped.
                    if path == SUBSCRIBE_PATH && code == tonic::Code::Ok {
                        return result.map(|response| {
                            response
                                .map(|body| tonic::body::Body::new(Counted::new(body, metrics.subscriptions.clone())))
                        });
                    }
                    result
                }
                None => result,
            }
        };
        Box::pin(tracing::Instrument::instrument(future, span))
    }
}

const SUBSCRIBE_PATH: &str = "/pax.ledger.v1.LedgerService/Subscribe";

/// A response body counted in `gauge` while it exists.
struct Counted {
    inner: tonic::body::Body,
    gauge: Gauge,
}

impl Counted {
    fn new(inner: tonic::body::Body, gauge: Gauge) -> Self {
        gauge.inc();
        Self { inner, gauge }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
