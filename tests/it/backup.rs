//! Online backup and restore, through the real binary against a running server: a backup taken
//! while appends go on verifies, restores into a directory that passes `verify --data`, and a
//! server started there answers every query as the original did at the backup's position,
//! with the same Merkle root; an incremental backup adds only the new records; a backup of
//! another history, or a damaged segment, is refused and changes nothing.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::audit_service_client::AuditServiceClient;
use pax_ledger::proto::v1::query_service_client::QueryServiceClient;
use serde_json::Value;

use crate::audit_cli::{Run, pax, s};
use crate::support::*;

/// `pax-ledger ARGS --output json` run beside the async test (the server and the load keep
/// going on the runtime meanwhile).
async fn pax_async(args: &[&str]) -> Run {
    let output = run_to_end(pax_ledger(args), b"").await;
    let stdout = text(&output.stdout);
    let lines = stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    Run { ok: output.status.success(), lines, stdout, stderr: text(&output.stderr) }
}

/// The members, projects, export rules, commitments and summits of a ledger that has a bit of
/// everything: the load appends projects and commitments on top.
async fn seed(server: &TestServer) {
    let mut client = server.client().await;
    let members: Vec<_> = ["US", "JP", "KR", "NL", "GB"].iter().map(|c| member_joined(c)).collect();
    client.append(append(members)).await.unwrap();
    let project = id();
    client
        .append(append(vec![
            project_identified(&project, "US", &["JP", "KR"]),
            project_status_changed(&project, pb::ProjectStatus::UnderWay),
            export_rule_changed("us-cn-nvidia-h200", pb::Treatment::AllowedWithLevy, Some(2500)),
            commitment_made(&id(), "NL"),
            summit_convened("2025-12-11", "US", &["US", "JP", "KR"]),
            member_withdrew("GB"),
        ]))
        .await
        .unwrap();
}

/// Appends a project and a commitment per request until told to stop; returns how many events.
fn start_load(server: &TestServer) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let url = server.url.clone();
    let (stop_flag, count) = (stop.clone(), appended.clone());
    let task = tokio::spawn(async move {
        let mut client = pb::ledger_service_client::LedgerServiceClient::connect(url).await.unwrap();
        while !stop_flag.load(Ordering::Relaxed) {
            let events = vec![project_identified(&id(), "JP", &["US"]), commitment_made(&id(), "KR")];
            client.append(append(events)).await.expect("an append of the load");
            count.fetch_add(2, Ordering::Relaxed);
        }
        count.load(Ordering::Relaxed)
    });
    (stop, task)
}

async fn fresh_checkpoint(server: &TestServer) -> u64 {
    let mut audit = AuditServiceClient::new(server.channel().await);
    let request = pb::GetCheckpointRequest { position: None, fresh: true };
    audit.get_checkpoint(request).await.unwrap().into_inner().position
}

/// Every list and the summary, as `consistency` says; page tokens cleared (they name the query).
async fn answers(server: &TestServer, consistency: pb::Consistency) -> Vec<String> {
    let mut query = QueryServiceClient::new(server.channel().await);
    let c = Some(consistency);
    let mut members = query
        .list_members(pb::ListMembersRequest {
            page_size: 1000,
            consistency: c,
            include_withdrawn: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    members.next_page_token.clear();
    let mut projects = query
        .list_projects(pb::ListProjectsRequest { page_size: 1000, consistency: c, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    projects.next_page_token.clear();
    let mut rules = query
        .list_export_rules(pb::ListExportRulesRequest { page_size: 1000, consistency: c, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    rules.next_page_token.clear();
    let mut commitments = query
        .list_commitments(pb::ListCommitmentsRequest { page_size: 1000, consistency: c, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    commitments.next_page_token.clear();
    let mut summits = query
        .list_summits(pb::ListSummitsRequest { page_size: 1000, consistency: c, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    summits.next_page_token.clear();
    let summary = query
        .get_summary(pb::GetSummaryRequest { consistency: c, on: "2026-06-01".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!members.members.is_empty() && !projects.projects.is_empty() && !commitments.commitments.is_empty());
    vec![
        format!("{members:?}"),
        format!("{projects:?}"),
        format!("{rules:?}"),
        format!("{commitments:?}"),
        format!("{summits:?}"),
        format!("{summary:?}"),
    ]
}

fn as_of(position: u64) -> pb::Consistency {
    pb::Consistency { as_of_position: Some(position), ..Default::default() }
}

fn segments(dir: &Path) -> Vec<Value> {
    let manifest: Value = serde_json::from_slice(&fs::read(dir.join("backup.json")).unwrap()).unwrap();
    manifest["segments"].as_array().unwrap().clone()
}

/// Restores `backup` into `data`, checks it with `verify --data`, and starts a server on it.
async fn restore_and_check(backup: &Path, data: &Path, position: u64) -> TestServer {
    let restored =
        pax_async(&["restore", "--from", s(backup), "--data", s(data), "--output", "json"]).await.expect_ok();
    assert_eq!(restored.last()["position"], position, "{}", restored.stdout);
    let verified = pax_async(&["verify", "--data", s(data), "--output", "json"]).await.expect_ok();
    assert_eq!(verified.last()["verdict"], "ok");
    assert_eq!(verified.last()["position"], position);
    TestServer::start_in(data).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_appends_restores_to_the_same_views_and_root_and_increments_add_only_the_new() {
    let original = TestServer::start().await;
    seed(&original).await;
    let (stop, load) = start_load(&original);
    // Let the load get going, with a checkpoint among its records.
    while head_position(&mut original.client().await).await < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    fresh_checkpoint(&original).await;
    let work = tempfile::tempdir().unwrap();
    let backup_dir = work.path().join("backup");

    let first =
        pax_async(&["backup", "--addr", &original.url, "--to", s(&backup_dir), "--output", "json"]).await.expect_ok();
    let first = first.last().clone();
    stop.store(true, Ordering::Relaxed);
    let loaded = load.await.unwrap();
    let position = first["position"].as_u64().unwrap();
    let head = head_position(&mut original.client().await).await;
    assert!(position > 200 && position <= head, "backed up to {position} of {head} ({loaded} appended by the load)");
    assert_eq!(first["added_records"], position);
    assert!(first["added_checkpoints"].as_u64().unwrap() >= 1, "{first}");
    assert_eq!(first["segments"], 1);

    // The backup verifies on its own, and restores to exactly its position.
    let verified =
        pax_async(&["verify", "--backup", s(&backup_dir), "--output", "json"]).await.expect_ok().last().clone();
    assert_eq!((verified["verdict"].as_str(), verified["position"].as_u64()), (Some("ok"), Some(position)));
    let restored = restore_and_check(&backup_dir, &work.path().join("restored"), position).await;
    assert_eq!(restored.ledger.durable_head().position.0, position);
    assert_eq!(restored.ledger.merkle_root(position).unwrap(), original.ledger.merkle_root(position).unwrap());
    let live = pb::Consistency { min_position: position, ..Default::default() };
    assert_eq!(answers(&restored, live).await, answers(&original, as_of(position)).await);
    restored.stop().await;

    // More appends, then an incremental backup: only the new records, in a second segment.
    let mut client = original.client().await;
    for _ in 0..10 {
        client.append(append(vec![commitment_made(&id(), "US")])).await.unwrap();
    }
    let later = head_position(&mut client).await;
    let first_segment = segments(&backup_dir)[0].clone();
    let first_file = backup_dir.join(first_segment["file"].as_str().unwrap());
    let first_bytes = fs::read(&first_file).unwrap();
    let second =
        pax_async(&["backup", "--addr", &original.url, "--to", s(&backup_dir), "--output", "json"]).await.expect_ok();
    let second = second.last().clone();
    assert_eq!(second["added_records"], later - position, "{second}");
    assert_eq!((second["position"].as_u64(), second["segments"].as_u64()), (Some(later), Some(2)));
    let listed = segments(&backup_dir);
    let second_file = backup_dir.join(listed[1]["file"].as_str().unwrap());
    let second_bytes = fs::metadata(&second_file).unwrap().len();
    assert_eq!(second["added_bytes"], second_bytes);
    assert_eq!(fs::read(&first_file).unwrap(), first_bytes, "the first segment is left as it was");
    // By size: the records after `position` only (each record line is a few hundred bytes).
    let per_record = first_bytes.len() as f64 / position as f64;
    let expected = per_record * (later - position) as f64;
    assert!(
        (second_bytes as f64) < 2.0 * expected + 1024.0,
        "the increment holds {second_bytes} bytes for {} records ({per_record:.0} bytes per record in the first)",
        later - position
    );
    let restored = restore_and_check(&backup_dir, &work.path().join("restored-later"), later).await;
    assert_eq!(restored.ledger.merkle_root(later).unwrap(), original.ledger.merkle_root(later).unwrap());
    let live = pb::Consistency { min_position: later, ..Default::default() };
    assert_eq!(answers(&restored, live).await, answers(&original, as_of(later)).await);
    restored.stop().await;

    // Nothing new: no segment.
    let third =
        pax_async(&["backup", "--addr", &original.url, "--to", s(&backup_dir), "--output", "json"]).await.expect_ok();
    assert_eq!(third.last()["added_records"], 0);
    assert_eq!(segments(&backup_dir).len(), 2);
    original.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_another_history_or_a_damaged_segment_is_refused_and_changes_nothing() {
    let one = TestServer::start().await;
    seed(&one).await;
    fresh_checkpoint(&one).await;
    let work = tempfile::tempdir().unwrap();
    let backup_dir = work.path().join("backup");
    pax_async(&["backup", "--addr", &one.url, "--to", s(&backup_dir)]).await.expect_ok();
    let manifest = fs::read(backup_dir.join("backup.json")).unwrap();

    // Another ledger with more records than the backup, but another history.
    let other = TestServer::start().await;
    let mut client = other.client().await;
    for code in ["AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH", "II", "JJ", "KK", "LL", "MM"] {
        client.append(append(vec![member_joined(code)])).await.unwrap();
    }
    let refused = pax_async(&["backup", "--addr", &other.url, "--to", s(&backup_dir)]).await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("FAILED_PRECONDITION") && refused.stderr.contains("another history"),
        "{}",
        refused.stderr
    );
    assert_eq!(fs::read(backup_dir.join("backup.json")).unwrap(), manifest);
    assert_eq!(fs::read_dir(&backup_dir).unwrap().count(), 3, "backup.json, .lock and one segment");

    // One changed character in a record's body: verify and restore refuse, nothing is created.
    let segment = backup_dir.join(segments(&backup_dir)[0]["file"].as_str().unwrap());
    let mut text = fs::read_to_string(&segment).unwrap();
    let body = text.find("\"body\":\"").unwrap() + 8 + 40;
    let flipped = if &text[body..=body] == "0" { "1" } else { "0" };
    text.replace_range(body..=body, flipped);
    fs::write(&segment, text).unwrap();
    pax(&["verify", "--backup", s(&backup_dir), "--output", "json"]).expect_failed("position 1", "");
    let data = work.path().join("restored");
    let run = pax(&["restore", "--from", s(&backup_dir), "--data", s(&data)]);
    assert!(!run.ok && run.stderr.contains("nothing was restored"), "{}", run.stderr);
    assert!(!data.exists());
    one.stop().await;
    other.stop().await;
}
