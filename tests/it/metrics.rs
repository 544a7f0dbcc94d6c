//! The Prometheus endpoint of the real binary (`serve --metrics-listen`, here through its
//! environment variable): scraped before and after a known number of appends, its counters
//! move by exactly that number.

use std::io::{Read, Write};

use pax_ledger::proto::v1 as pb;
use pb::ledger_service_client::LedgerServiceClient;

use crate::crash::ServerProcess;
use crate::support::*;

/// A port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One scrape: the content type and the text.
async fn scrape(port: u16) -> (String, String) {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the metrics port");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let content_type = head
            .lines()
            .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
            .unwrap_or_default();
        (content_type, body.to_owned())
    })
    .await
    .unwrap()
}

/// The value of the sample `series` (the name and labels exactly as written), 0 if absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

const APPENDS_OK: &str =
    r#"pax_ledger_requests_total{service="pax.ledger.v1.LedgerService",method="Append",code="OK"}"#;
const APPENDS_INVALID: &str =
    r#"pax_ledger_requests_total{service="pax.ledger.v1.LedgerService",method="Append",code="INVALID_ARGUMENT"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_move_the_counters_by_exactly_their_number() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_listen = format!("127.0.0.1:{port}");
    let command =
        ServerProcess::serve_command(&tmp.path().join("data"), &[("PAX_LEDGER_METRICS_LISTEN", &metrics_listen)]);
    let server = ServerProcess::start_command(command, &tmp.path().join("stderr")).await;
    let mut client = LedgerServiceClient::connect(server.url.clone()).await.unwrap();
    client.append(append(vec![member_joined("JP")])).await.unwrap();

    let (content_type, before) = scrape(port).await;
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(before.trim_end().ends_with("# EOF"), "{before}");
    const N: u32 = 7;
    for i in 0..N {
        let code = format!("A{}", char::from(b'A' + i as u8));
        client.append(append(vec![member_joined(&code)])).await.unwrap();
    }
    let refused = client.append(append(vec![member_joined("lower")])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let (_, after) = scrape(port).await;

    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(moved(APPENDS_OK), f64::from(N), "{after}");
    assert_eq!(moved(APPENDS_INVALID), 1.0, "{after}");
    assert_eq!(moved("pax_ledger_events_committed_total"), f64::from(N));
    // Each acknowledged append waited for a group's fdatasync; groups may hold several.
    let groups = moved("pax_ledger_commit_groups_total");
    assert!((1.0..=f64::from(N)).contains(&groups), "{groups} groups");
    assert_eq!(moved("pax_ledger_commit_fsync_seconds_count"), groups);
    assert_eq!(moved("pax_ledger_commit_group_events_sum"), f64::from(N));
    assert_eq!(value(&after, "pax_ledger_log_position"), f64::from(N + 1));
    assert!(value(&after, "pax_ledger_data_bytes") > 0.0);
    // A made-up path gets no labels of its own.
    assert!(!after.contains("method=\"Nope\""));

    // An open subscription is counted until it is closed.
    assert_eq!(value(&after, "pax_ledger_subscriptions"), 0.0);
    let mut subscription =
        client.subscribe(pb::SubscribeRequest { from_position: 1, ..Default::default() }).await.unwrap().into_inner();
    subscription.message().await.unwrap().expect("a first event");
    assert_eq!(value(&scrape(port).await.1, "pax_ledger_subscriptions"), 1.0);
    drop(subscription);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while value(&scrape(port).await.1, "pax_ledger_subscriptions") != 0.0 {
        assert!(std::time::Instant::now() < deadline, "the closed subscription is still counted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_each_request_has_its_span() {
    let tmp = tempfile::tempdir().unwrap();
    let stderr = tmp.path().join("stderr");
    let command = ServerProcess::serve_command(
        &tmp.path().join("data"),
        &[("PAX_LEDGER_LOG_FORMAT", "json"), ("RUST_LOG", "info,pax_ledger::metrics=debug")],
    );
    let server = ServerProcess::start_command(command, &stderr).await;
    let mut client = LedgerServiceClient::connect(server.url.clone()).await.unwrap();
    client.append(append(vec![member_joined("JP"), member_joined("KR")])).await.unwrap();
    drop(client);
    let pid = server.pid();
    assert!(server.terminate(pid).await.success());
    let text = std::fs::read_to_string(&stderr).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    let opened = lines.iter().find(|l| l["fields"]["message"] == "ledger opened").expect("the open is logged");
    assert_eq!(opened["level"], "INFO");
    assert!(opened["timestamp"].is_string() && opened["target"].is_string(), "{opened}");
    let answered = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "request answered" && l["span"]["method"] == "/pax.ledger.v1.LedgerService/Append"
        })
        .unwrap_or_else(|| panic!("the append's end is logged in its span: {text}"));
    let span = &answered["span"];
    assert_eq!((span["name"].as_str(), span["code"].as_str()), (Some("rpc"), Some("OK")), "{answered}");
    assert_eq!(span["events"], 2, "{answered}");
    assert_eq!(span["stream"], "(several)", "{answered}");
    assert!(span["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{answered}");
}
