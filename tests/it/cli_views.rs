//! The read-side commands end to end: the real binary runs `demo` against a real server, then
//! `members`, `export-rules`, `summary`, `status` and `rebuild` must print what the demo loaded,
//! each JSON line carrying the position it reflects.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Runs `pax-ledger ARGS --addr URL` to its end.
async fn run(server: &TestServer, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pax-ledger"));
    command.args(args).args(["--addr", &server.url]);
    tokio::task::spawn_blocking(move || command.output().expect("run pax-ledger")).await.unwrap()
}

/// Runs a command that must succeed and returns its JSON lines.
async fn json_lines(server: &TestServer, args: &[&str]) -> Vec<Value> {
    let output = run(server, args).await;
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))).collect()
}

/// Runs a command that must print exactly one JSON line.
async fn json_line(server: &TestServer, args: &[&str]) -> Value {
    let mut lines = json_lines(server, args).await;
    assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    lines.remove(0)
}

/// A server with the demo loaded, and the position the demo reported.
async fn demo_server() -> (TestServer, u64) {
    let server = TestServer::start().await;
    let report = json_line(&server, &["demo", "--output", "json"]).await;
    assert_eq!((report["appended"].as_u64(), report["rejected"].as_u64()), (Some(19), Some(0)), "{report}");
    let position = report["position"].as_u64().unwrap();
    (server, position)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_twice_changes_nothing() {
    let (server, position) = demo_server().await;
    assert_eq!(position, 19, "15 facts and 4 illustrative projects on an empty ledger");
    let again = json_line(&server, &["demo", "--output", "json"]).await;
    assert_eq!(again["appended"], 0, "{again}");
    assert_eq!(again["already_present"], 19, "{again}");
    assert_eq!(again["position"], position, "{again}");
    assert_eq!(head_position(&mut server.client().await).await, position);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_after_the_demo_are_nine_members_and_four_guests() {
    let (server, position) = demo_server().await;
    let at = position.to_string();
    let members =
        json_lines(&server, &["members", "--include-withdrawn", "--min-position", &at, "--output", "json"]).await;
    let codes = |role: &str| -> Vec<&str> {
        let mut codes: Vec<&str> =
            members.iter().filter(|m| m["role"] == role).map(|m| m["code"].as_str().unwrap()).collect();
        codes.sort_unstable();
        codes
    };
    assert_eq!(codes("member"), ["AE", "AU", "GB", "IL", "JP", "KR", "NL", "SG", "US"]);
    assert_eq!(codes("guest"), ["CA", "EU", "OECD", "TW"]);
    assert_eq!(members.len(), 13);
    for member in &members {
        assert_eq!(member["position"], position, "{member}");
        assert_eq!(member["withdrawn"], false, "{member}");
        assert_eq!(member["joined_at"], "2025-12-11T00:00:00Z", "{member}");
        assert_eq!(member["role_history"], serde_json::json!([member["role"]]), "{member}");
    }
    let eu = members.iter().find(|m| m["code"] == "EU").unwrap();
    assert_eq!((&eu["kind"], &eu["name"]), (&Value::from("organization"), &Value::from("European Union")));

    let table = run(&server, &["members", "--include-withdrawn", "--min-position", &at]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("CODE  ROLE"), "{table}");
    assert_eq!(table.lines().last(), Some("(13 members at position 19)"), "{table}");

    let japan = json_line(&server, &["members", "JP", "--output", "json"]).await;
    assert_eq!((&japan["code"], &japan["position"]), (&Value::from("JP"), &Value::from(position)));
    assert_eq!(japan["changes"][0]["type"], "member_joined", "{japan}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rules_show_the_h200_levy() {
    let (server, position) = demo_server().await;
    let at = position.to_string();
    let rules = json_lines(&server, &["export-rules", "--min-position", &at, "--output", "json"]).await;
    assert_eq!(rules.len(), 1, "{rules:?}");
    let expected = serde_json::json!({
        "position": position, "rule_id": "us-cn-nvidia-h200", "item": "Nvidia H200", "origin": "US",
        "destination": "CN", "treatment": "allowed_with_levy", "levy_bps": 2500, "effective_from": "2025-12-14",
        "authority": "President of the United States", "changes": 1,
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&rules[0][key], value, "{key} of {}", rules[0]);
    }
    let rule = json_line(&server, &["export-rules", "us-cn-nvidia-h200", "--output", "json"]).await;
    assert_eq!(rule["timeline"][0]["levy_bps"], 2500, "{rule}");
    let before = json_lines(&server, &["export-rules", "--effective-on", "2025-12-13", "--output", "json"]).await;
    assert!(before.is_empty(), "not in force before 2025-12-14: {before:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_counts_the_demo() {
    let (server, position) = demo_server().await;
    let summary = json_line(&server, &["summary", "--min-position", &position.to_string(), "--output", "json"]).await;
    assert_eq!(summary["position"], position);
    assert_eq!(summary["members_by_role"]["member"], 9, "{summary}");
    assert_eq!(summary["members_by_role"]["guest"], 4, "{summary}");
    assert_eq!(summary["members_withdrawn"], 0, "{summary}");
    for pillar in ["semiconductors", "critical_minerals", "energy", "ai_compute"] {
        assert_eq!(summary["projects_by_pillar"][pillar], 1, "{pillar}: {summary}");
    }
    assert_eq!(summary["projects_by_status"]["identified"], 4, "{summary}");
    assert_eq!(summary["export_rules_by_treatment"]["allowed_with_levy"], 1, "{summary}");
    assert_eq!(summary["summits"], 1, "{summary}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_reproduces_the_view_digest_of_status() {
    let (server, position) = demo_server().await;
    // The views follow the log within milliseconds: compare digests at the same position.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = json_line(&server, &["status", "--output", "json"]).await;
        if status["position"] == position || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["position"], position, "{status}");
    assert_eq!((&status["log_position"], &status["lag"]), (&Value::from(position), &Value::from(0)), "{status}");
    let digest = status["view_digest"].as_str().unwrap_or_default();
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{status}");
    assert_eq!(status["records"], 19, "13 participants, 4 projects, 1 rule, 1 summit: {status}");

    let rebuilt = json_line(&server, &["rebuild", "--output", "json"]).await;
    assert_eq!(rebuilt["view_digest"], digest, "{rebuilt}");
    assert_eq!(rebuilt["position"], position, "{rebuilt}");
    assert_eq!(rebuilt["events"], position, "{rebuilt}");
    for key in ["records", "seconds", "events_per_sec"] {
        assert!(rebuilt[key].is_number(), "{key}: {rebuilt}");
    }
    let after = json_line(&server, &["status", "--output", "json"]).await;
    assert_eq!(after["view_digest"], digest, "{after}");
    assert_eq!(after["last_rebuild"]["view_digest"], digest, "{after}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_reads_the_past() {
    let (server, position) = demo_server().await;
    let at = position.to_string();
    let before_the_first =
        json_lines(&server, &["members", "--as-of", "0", "--min-position", &at, "--output", "json"]).await;
    assert!(before_the_first.is_empty(), "{before_the_first:?}");
    // Positions 1 to 3 are the US, Japan and South Korea joining.
    let three = json_lines(&server, &["members", "--as-of", "3", "--output", "json"]).await;
    let codes: Vec<&str> = three.iter().map(|m| m["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["JP", "KR", "US"]);
    assert!(three.iter().all(|m| m["position"] == 3), "{three:?}");
    let long_ago = json_lines(&server, &["members", "--as-of", "2025-01-01T00:00:00Z", "--output", "json"]).await;
    assert!(long_ago.is_empty(), "the demo was recorded after 2025-01-01: {long_ago:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_arguments_are_rejected_with_a_clear_message() {
    let server = TestServer::start().await;
    let check = |output: Output, expected: &[&str]| {
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).unwrap();
        for part in expected {
            assert!(stderr.contains(part), "{part:?} not in {stderr:?}");
        }
    };
    check(run(&server, &["members", "--as-of", "yesterday"]).await, &["--as-of", "log position", "RFC 3339"]);
    check(run(&server, &["export-rules", "--effective-on", "2025-12-32"]).await, &["--effective-on", "YYYY-MM-DD"]);
    check(run(&server, &["members", "--as-of", "99"]).await, &["OUT_OF_RANGE"]);
    check(run(&server, &["members", "XX"]).await, &["NOT_FOUND"]);
    server.stop().await;
}
