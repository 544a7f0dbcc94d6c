//! OpenTelemetry trace export of the real binary (`serve --otlp-endpoint`): a fake collector (a
//! tonic server of `opentelemetry.proto.collector.trace.v1.TraceService`) receives each
//! request's `rpc` span, and the spans inside it, with the server's resource, sent at the
//! latest when the server stops; without the flag nothing reaches a collector; and a collector
//! where nothing listens costs the requests and the stop nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use pax_ledger::proto::v1 as pb;
use pb::ledger_service_client::LedgerServiceClient;
use pb::query_service_client::QueryServiceClient;

use crate::crash::ServerProcess;
use crate::support::*;

/// A collector that keeps every export it receives.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Starts a collector on 127.0.0.1:0: its URL, and what it receives.
async fn start_collector() -> (String, Collector) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (url, collector)
}

/// A string attribute's value.
fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.as_str()),
        _ => None,
    })
}

/// An append of two members and a summary, on the server at `url`.
async fn some_requests(url: &str) {
    let mut client = LedgerServiceClient::connect(url.to_owned()).await.unwrap();
    client.append(append(vec![member_joined("JP"), member_joined("KR")])).await.unwrap();
    let mut query = QueryServiceClient::connect(url.to_owned()).await.unwrap();
    query.get_summary(pb::GetSummaryRequest::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector_with_the_servers_resource() {
    let (collector_url, collector) = start_collector().await;
    let tmp = tempfile::tempdir().unwrap();
    let stderr = tmp.path().join("stderr");
    let mut command = ServerProcess::serve_command(&tmp.path().join("data"), &[]);
    // RUST_LOG=warn (the tests' default) keeps log lines quiet; spans are exported all the same.
    command.args(["--otlp-endpoint", &collector_url]);
    let server = ServerProcess::start_command(command, &stderr).await;
    some_requests(&server.url).await;
    let pid = server.pid();
    // Exported in batches every few seconds: what the collector holds now, at the latest, was
    // sent by the stop.
    assert!(server.terminate(pid).await.success());

    let received = collector.received.lock().unwrap().clone();
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(!received.is_empty(), "nothing was exported; stderr:\n{log}");
    let mut spans: Vec<&Span> = Vec::new();
    for resource_spans in received.iter().flat_map(|request| &request.resource_spans) {
        let resource = resource_spans.resource.as_ref().expect("a resource");
        assert_eq!(string_attribute(&resource.attributes, "service.name"), Some("pax-ledger"));
        assert_eq!(string_attribute(&resource.attributes, "service.version"), Some(env!("CARGO_PKG_VERSION")));
        spans.extend(resource_spans.scope_spans.iter().flat_map(|scope| &scope.spans));
    }
    let rpc = |method: &str| {
        let path = format!("/pax.ledger.v1.{method}");
        spans
            .iter()
            .copied()
            .find(|span| span.name == "rpc" && string_attribute(&span.attributes, "method") == Some(&path))
            .unwrap_or_else(|| panic!("no rpc span of {path} among {spans:#?}"))
    };
    let appended = rpc("LedgerService/Append");
    assert_eq!(string_attribute(&appended.attributes, "code"), Some("OK"), "{appended:#?}");
    assert_eq!(string_attribute(&appended.attributes, "stream"), Some("(several)"), "{appended:#?}");
    assert!(appended.attributes.iter().any(|kv| kv.key == "latency_ms"), "{appended:#?}");
    assert!(appended.end_time_unix_nano > appended.start_time_unix_nano, "{appended:#?}");
    let summary = rpc("QueryService/GetSummary");
    assert_eq!(string_attribute(&summary.attributes, "code"), Some("OK"), "{summary:#?}");
    // The handler's own span, inside the request's.
    let handler = spans
        .iter()
        .find(|span| span.name == "get_summary")
        .unwrap_or_else(|| panic!("no span of the summary's handler among {spans:#?}"));
    assert_eq!((&handler.trace_id, &handler.parent_span_id), (&summary.trace_id, &summary.span_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_nothing_is_exported() {
    // A collector that would notice any connection, named where OpenTelemetry's own variable
    // would point an exporter: only --otlp-endpoint (or otlp_endpoint) turns export on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let collector_url = format!("http://{}", listener.local_addr().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let stderr = tmp.path().join("stderr");
    let mut command = ServerProcess::serve_command(&tmp.path().join("data"), &[("RUST_LOG", "info")]);
    command.env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url);
    let server = ServerProcess::start_command(command, &stderr).await;
    some_requests(&server.url).await;
    let pid = server.pid();
    assert!(server.terminate(pid).await.success());
    let error = listener.accept().expect_err("nothing connects to the collector");
    assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains("serving"), "{log}");
    assert!(!log.contains("OTLP"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_slows_neither_requests_nor_the_stop() {
    // A port where nothing listens (free a moment ago).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let stderr = tmp.path().join("stderr");
    let mut command = ServerProcess::serve_command(&tmp.path().join("data"), &[("RUST_LOG", "info")]);
    let endpoint = format!("http://127.0.0.1:{port}");
    command.args(["--otlp-endpoint", &endpoint]);
    let server = ServerProcess::start_command(command, &stderr).await;
    let mut client = LedgerServiceClient::connect(server.url.clone()).await.unwrap();
    for round in 0..20u8 {
        let started = Instant::now();
        client.append(append(vec![member_joined(&format!("X{}", char::from(b'A' + round)))])).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "append {round} took {:?}", started.elapsed());
    }
    drop(client);
    let pid = server.pid();
    let stopping = Instant::now();
    // Within ten seconds (ServerProcess::terminate's bound), and exit code 0.
    assert!(server.terminate(pid).await.success());
    let stopped_in = stopping.elapsed();
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains(&format!("tracing: exporting spans to {endpoint} over OTLP")), "{log}");
    // The failure is said once, not once per batch or per span.
    let failures = log.matches("cannot export spans").count();
    assert_eq!(failures, 1, "stopped in {stopped_in:?}:\n{log}");
}
