//! `append` end to end: the real binary reads event lines from a file or stdin and sends them
//! to a real server; what it prints, what it reports on stderr and its exit status.

use std::process::Output;

use serde_json::Value;

use crate::support::*;

/// An event line: member `code` joins, under a fixed event id made from `n`.
fn join_line(n: u32, code: &str) -> String {
    format!(
        r#"{{"event_id": "{}", "type": "member_joined", "data": {{"code": "{code}", "name": "Participant {code}", "kind": "state", "role": "member"}}}}"#,
        fixed_id(n)
    )
}

fn fixed_id(n: u32) -> String {
    format!("5a1c0000-0000-4000-8000-{n:012x}")
}

/// `append --addr URL --output json EXTRA…` with `input` on stdin.
async fn append_stdin(server: &TestServer, extra: &[&str], input: &[u8]) -> Output {
    let mut args = vec!["append", "--addr", &server.url, "--output", "json"];
    args.extend_from_slice(extra);
    run_to_end(pax_ledger(&args), input).await
}

/// The JSON lines of stdout.
fn acknowledged(output: &Output) -> Vec<Value> {
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

fn streams(output: &Output) -> Vec<String> {
    acknowledged(output).iter().map(|line| line["stream"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_is_reported_and_the_others_are_appended() {
    let server = TestServer::start().await;
    let mut input = Vec::new();
    input.extend_from_slice(format!("{}\n", join_line(1, "JP")).as_bytes());
    input.extend_from_slice(b"{\"type\": \"member_joined\", \"data\": {\"name\": \"Cura\xE7ao\"}}\n");
    input.extend_from_slice(format!("{}\n{}\n", join_line(3, "KR"), join_line(4, "SG")).as_bytes());
    let output = append_stdin(&server, &[], &input).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("line 2: not UTF-8"), "{stderr}");
    assert_eq!(streams(&output), ["member-JP", "member-KR", "member-SG"], "{stderr}");
    assert_eq!(head_position(&mut server.client().await).await, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_starts_with_a_byte_order_mark_is_read() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, format!("\u{FEFF}{}\r\n{}\r\n", join_line(1, "JP"), join_line(2, "KR"))).unwrap();
    let output = append_stdin(&server, &["--file", file.to_str().unwrap()], b"").await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(streams(&output), ["member-JP", "member-KR"], "{stderr}");
    server.stop().await;
}

/// An event line without `event_id`: member `code` joins.
fn join_line_without_id(code: &str) -> String {
    format!(
        r#"{{"type": "member_joined", "data": {{"code": "{code}", "name": "Participant {code}", "kind": "state", "role": "member"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_without_event_id_is_refused_unless_new_ids_are_allowed() {
    let server = TestServer::start().await;
    let input = format!("{}\n{}\n{}\n", join_line(1, "JP"), join_line_without_id("KR"), join_line(3, "SG"));
    let output = append_stdin(&server, &[], input.as_bytes()).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("line 2: event_id: is missing") && stderr.contains("--allow-new-ids"), "{stderr}");
    assert_eq!(streams(&output), ["member-JP", "member-SG"], "{stderr}");

    // Sent again: the lines with ids are found committed, the one without is still refused.
    let again = append_stdin(&server, &[], input.as_bytes()).await;
    assert!(!again.status.success());
    assert_eq!(streams(&again), ["member-JP", "member-SG"], "{}", text(&again.stderr));
    assert_eq!(head_position(&mut server.client().await).await, 2, "a retry duplicated an event");

    let allowed = append_stdin(&server, &["--allow-new-ids"], input.as_bytes()).await;
    let stderr = text(&allowed.stderr);
    assert!(allowed.status.success(), "{stderr}");
    let lines = acknowledged(&allowed);
    assert_eq!(streams(&allowed), ["member-JP", "member-KR", "member-SG"], "{stderr}");
    let generated = uuid::Uuid::try_parse(lines[1]["event_id"].as_str().unwrap()).unwrap();
    assert_eq!(generated.get_version_num(), 7, "{generated}");
    assert_eq!(head_position(&mut server.client().await).await, 3);
    server.stop().await;
}

/// The example files are what the README loads: every line has a fixed id, so they append
/// without `--allow-new-ids`, and appending them again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_files_append_and_append_again_as_no_change() {
    let server = TestServer::start().await;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut positions = Vec::new();
    for round in 0..2 {
        for file in ["pax-silica.jsonl", "pax-silica-demo.jsonl"] {
            let path = format!("{examples}/{file}");
            let output = append_stdin(&server, &["--file", &path], b"").await;
            let stderr = text(&output.stderr);
            assert!(output.status.success(), "round {round}, {file}: {stderr}");
            let placed: Vec<u64> = acknowledged(&output).iter().map(|l| l["position"].as_u64().unwrap()).collect();
            if round == 0 {
                positions.push(placed);
            } else {
                assert!(positions.contains(&placed), "{file} moved on the second round: {placed:?}");
            }
        }
    }
    assert_eq!(positions.concat(), (1..=19).collect::<Vec<u64>>());
    assert_eq!(head_position(&mut server.client().await).await, 19);
    server.stop().await;
}
