//! The load generator and the history command, end to end: a short `loadgen` run against a
//! real server writes an ack log, and `history --output json` must show every acknowledged
//! event at the acknowledged place. (No timing is asserted: this keeps the tools from rotting.)

use std::collections::HashMap;
use std::process::Command;

use pax_ledger::proto::v1 as pb;

use crate::support::*;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pax-ledger"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_loadgen_acknowledges_is_in_history_at_its_place() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ack_log = dir.path().join("acks.jsonl");
    let url = server.url.clone();
    let log = ack_log.clone();
    let run = tokio::task::spawn_blocking(move || {
        binary()
            .args(["loadgen", "--addr", &url, "--clients", "4", "--batch", "5", "--duration", "1.5"])
            .args(["--streams", "random", "--output", "json", "--ack-log"])
            .arg(&log)
            .output()
            .expect("run loadgen")
    })
    .await
    .unwrap();
    assert!(run.status.success(), "loadgen failed: {}", String::from_utf8_lossy(&run.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("one JSON summary line");
    for key in ["events_per_sec", "requests_per_sec", "p50_ms", "p99_ms", "p999_ms", "acked", "errors"] {
        assert!(summary.get(key).is_some_and(|v| v.is_number()), "summary lacks {key}: {summary}");
    }
    assert_eq!(summary["errors"], 0, "{summary}");
    let acked = summary["acked"].as_u64().unwrap();
    assert!(acked > 0, "{summary}");

    let acks: Vec<serde_json::Value> = std::fs::read_to_string(&ack_log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("an ack-log line is JSON"))
        .collect();
    assert_eq!(acks.len() as u64, acked, "one ack-log line per acknowledged event");

    let url = server.url.clone();
    let history = tokio::task::spawn_blocking(move || {
        binary().args(["history", "--addr", &url, "--output", "json"]).output().expect("run history")
    })
    .await
    .unwrap();
    assert!(history.status.success(), "history failed: {}", String::from_utf8_lossy(&history.stderr));
    let logged: HashMap<String, serde_json::Value> = String::from_utf8(history.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("a history line is JSON");
            (event["event_id"].as_str().unwrap().to_owned(), event)
        })
        .collect();
    for ack in &acks {
        let event =
            logged.get(ack["event_id"].as_str().unwrap()).unwrap_or_else(|| panic!("acknowledged but missing: {ack}"));
        for key in ["position", "stream", "revision"] {
            assert_eq!(event[key], ack[key], "{key} of {ack}");
        }
    }
    // What loadgen prepared (per client: its member's join and its export rule's first change)
    // is in the log too, and positions are dense.
    let mut positions: Vec<u64> = logged.values().map(|e| e["position"].as_u64().unwrap()).collect();
    positions.sort_unstable();
    assert_eq!(positions, (1..=positions.len() as u64).collect::<Vec<_>>());
    assert_eq!(positions.len() as u64, acked + 2 * 4, "the acknowledged events plus two prepared per client");
    server.stop().await;
}

/// With principals, loadgen authenticates like every client command (`--token` here) and leaves
/// the actor to the server, which records the principal; without a credential it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_appends_as_the_principal_of_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bootstrap = run_to_end(pax_ledger(&["principal", "bootstrap", "--data", data.to_str().unwrap()]), b"").await;
    assert!(bootstrap.status.success(), "bootstrap failed: {}", text(&bootstrap.stderr));
    let token = text(&bootstrap.stdout).trim().to_owned();
    let server = TestServer::start_in(&data).await;

    let args = ["loadgen", "--addr", &server.url, "--clients", "2", "--duration", "1", "--output", "json"];
    let refused = run_to_end(pax_ledger(&args), b"").await;
    assert!(!refused.status.success(), "loadgen without a token must be refused");
    assert!(text(&refused.stderr).contains("authentication"), "{}", text(&refused.stderr));

    let run = run_to_end(pax_ledger(&[&args[..], &["--token", &token]].concat()), b"").await;
    assert!(run.status.success(), "loadgen with a token failed: {}", text(&run.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("one JSON summary line");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert!(summary["acked"].as_u64().unwrap() > 0, "{summary}");

    let mut client = server.client().await;
    let mut request = tonic::Request::new(pb::ReadAllRequest { page_size: 1000, ..Default::default() });
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let events = client.read_all(request).await.expect("read as the admin").into_inner().events;
    let actors: std::collections::BTreeSet<_> =
        events.iter().filter_map(|e| e.metadata.as_ref()).map(|m| m.actor.clone()).collect();
    assert!(actors.contains("admin") && !actors.contains("loadgen"), "actors: {actors:?}");
    server.stop().await;
}
