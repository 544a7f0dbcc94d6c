//! `append` end to end: the real binary reads event lines from a file or stdin and sends them
//! to a real server; what it prints, what it reports on stderr and its exit status.

use std::process::Output;

use serde_json::Value;

use crate::fake_server::{FakeServer, Script};
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

/// The lines of stderr that report a retry.
fn retries(stderr: &str) -> usize {
    stderr.lines().filter(|line| line.contains("retrying in")).count()
}

/// The summary: the last line of stderr.
fn summary(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_finds_the_server_unavailable_is_retried_with_the_same_ids() {
    let unavailable = || tonic::Status::unavailable("the ledger is shutting down");
    let script = Script { append_failures: [unavailable(), unavailable()].into(), ..Script::default() };
    let fake = FakeServer::start(script).await;
    let input = format!("{}\n{}\n", join_line_without_id("JP"), join_line(2, "KR"));
    let mut command = pax_ledger(&["append", "--addr", &fake.url, "--output", "json", "--allow-new-ids"]);
    command.args(["--retries", "2"]);
    let output = run_to_end(command, input.as_bytes()).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(retries(&stderr), 2, "{stderr}");
    assert!(stderr.contains("line 1: UNAVAILABLE: the ledger is shutting down; retrying in 0.25 s"), "{stderr}");
    assert_eq!(summary(&stderr), "appended 2, already present 0, rejected 0, not sent 0");
    let sent = fake.script.lock().unwrap().appends.clone();
    let ids: Vec<&str> = sent.iter().map(|request| request.events[0].event_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "three attempts for line 1, one for line 2");
    assert!(ids[0] == ids[1] && ids[1] == ids[2], "a retry must send the id the first attempt had: {ids:?}");
    assert_eq!(ids[3], fixed_id(2));
    assert_eq!(acknowledged(&output).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stays_unavailable_stops_the_run_with_the_rest_counted_as_not_sent() {
    let unavailable = || tonic::Status::unavailable("the ledger is shutting down");
    let script = Script { append_failures: (0..3).map(|_| unavailable()).collect(), ..Script::default() };
    let fake = FakeServer::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let lines: Vec<String> = (1..=6).map(|n| join_line(n, "JP")).collect();
    std::fs::write(&file, format!("# six events\n{}\n", lines.join("\n"))).unwrap();
    let mut command = pax_ledger(&["append", "--addr", &fake.url, "--file", file.to_str().unwrap()]);
    command.args(["--batch", "2", "--retries", "2"]);
    let output = run_to_end(command, b"").await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(retries(&stderr), 2, "{stderr}");
    assert!(stderr.contains("error: line 2..3: UNAVAILABLE"), "{stderr}");
    assert!(stderr.contains("still unavailable after 2 retries: stopping"), "{stderr}");
    assert_eq!(summary(&stderr), "appended 0, already present 0, rejected 0, not sent 6", "{stderr}");
    assert_eq!(fake.script.lock().unwrap().appends.len(), 3, "nothing is sent after the last retry");
    assert_eq!(text(&output.stdout), "");
}

/// The report that started this: a server stopped (SIGTERM) in the middle of a long append
/// left the client sending line after line into UNAVAILABLE, with no summary. Now the run stops
/// within its retries, says how far it got, and every line is accounted for exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_during_an_append_ends_it_with_a_summary_that_matches_the_log() {
    const LINES: u32 = 20_000;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let lines: Vec<String> = (1..=LINES).map(rule_line).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut command = pax_ledger(&["append", "--addr", &server.url, "--output", "json", "--retries", "2"]);
    command.args(["--file", file.to_str().unwrap()]).stdout(std::process::Stdio::piped());
    command.stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("spawn pax-ledger");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    for _ in 0..20 {
        first.clear();
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut first).await.unwrap();
    }
    let data = server.data.clone();
    let dir_kept = server.stop().await;
    let rest = tokio::time::timeout(BINARY_TIMEOUT, async {
        let mut rest = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut rest).await.unwrap();
        let mut stderr = String::new();
        tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).await.unwrap();
        (rest, stderr, child.wait().await.unwrap())
    })
    .await
    .expect("append ends within its retries once the server is gone");
    let (rest, stderr, status) = rest;
    assert!(!status.success(), "{stderr}");
    let printed = 20 + rest.lines().count();
    let summary = summary(&stderr);
    let counts: Vec<usize> =
        summary.split(", ").map(|part| part.rsplit(' ').next().unwrap().parse().unwrap()).collect();
    let [appended, already, rejected, not_sent] = counts[..] else { panic!("{summary}") };
    assert_eq!((already, rejected), (0, 0), "{stderr}");
    assert_eq!(appended, printed, "{summary}");
    assert_eq!(appended + not_sent, LINES as usize, "{summary}");
    assert!(not_sent > 0, "the server stopped before the end: {summary}");
    assert!(stderr.lines().count() <= 6, "a few lines, not one per line left: {stderr}");

    let server = TestServer::start_in(&data).await;
    assert_eq!(head_position(&mut server.client().await).await, appended as u64, "{summary}");
    server.stop().await;
    drop(dir_kept);
}

/// An export rule change of rule `n`, with a fixed id: no member is needed.
fn rule_line(n: u32) -> String {
    format!(
        r#"{{"event_id": "{}", "type": "export_rule_changed", "data": {{"rule_id": "rule-{n}", "item": "Item", "origin": "US", "destination": "CN", "treatment": "prohibited", "effective_from": "2026-01-01", "authority": "test"}}}}"#,
        fixed_id(n)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_be_reached_sends_nothing_and_fails() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let output = run_to_end(pax_ledger(&["append", "--addr", &url]), join_line(1, "JP").as_bytes()).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.starts_with(&format!("error: cannot connect to the pax-ledger server at {url}")), "{stderr}");
    let expected = "appended 0, already present 0, rejected 0, not sent 0; stdin was not read from line 1 on";
    assert_eq!(summary(&stderr), expected);
}
