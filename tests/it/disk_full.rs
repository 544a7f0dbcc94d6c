//! A full disk, two ways.
//!
//! - As it is met in operation: the ledger keeps `disk_free_min` free, so appends are refused
//!   before the engine meets a full disk (RESOURCE_EXHAUSTED, reason DISK_FULL), health says
//!   NOT_SERVING, nothing acknowledged is lost, and once space returns, health and appends
//!   resume by themselves, without a restart.
//! - When the disk fills under the engine anyway (the check off, as when another process fills
//!   it faster): appends fail with a clear error (UNAVAILABLE, reason STORAGE_IO, the OS's own
//!   words), nothing acknowledged is lost, writes halt and health says so; once there is space
//!   again, the next start serves everything acknowledged and takes appends (sled keeps a
//!   failed write's error until it is reopened).
//!
//! The test mounts a small tmpfs of its own (CI runs as root); elsewhere it is skipped, unless
//! `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use pax_ledger::ledger::LedgerConfig;
use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;

use crate::support::*;

/// The tmpfs's size: a few sled segments.
const SMALL: &str = "size=24m";
/// What it grows to when space "returns".
const LARGE: &str = "size=256m";
/// What the ledger keeps free in the test of the check: a third of the small tmpfs.
const RESERVE: u64 = 8 * 1024 * 1024;
/// Appends of [`BATCH`] events, ~1 KiB each, before the disk must have filled.
const APPENDS_MAX: usize = 2_000;
const BATCH: usize = 50;

type LedgerClient = LedgerServiceClient<tonic::transport::Channel>;

/// A tmpfs mounted at a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", SMALL, "tmpfs"]).arg(dir.path()).status();
        match mounted {
            Ok(status) if status.success() => Some(Self { dir }),
            other => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{test}: cannot mount a tmpfs under CI ({other:?}); run as root"
                );
                eprintln!("SKIPPED {test}: cannot mount a tmpfs ({other:?}); run as root");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn grow(&self) {
        let remount = format!("remount,{LARGE}");
        let status = Command::new("mount").args(["-o", &remount]).arg(self.path()).status().unwrap();
        assert!(status.success(), "remount {remount}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn big_commitment(i: usize) -> pb::ProposedEvent {
    let mut event = commitment_made(&id(), "JP");
    if let Some(pb::event_data::Kind::CommitmentMade(made)) = event.data.as_mut().and_then(|d| d.kind.as_mut()) {
        made.description = format!("commitment {i}: {}", "filler text of a commitment made to fill a disk ".repeat(20));
    }
    event
}

async fn health_of(server: &TestServer) -> i32 {
    let mut health = HealthClient::new(server.channel().await);
    let request = HealthCheckRequest { service: "pax.ledger.v1.LedgerService".into() };
    health.check(request).await.unwrap().into_inner().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_appends_clearly_loses_nothing_and_the_ledger_resumes_with_space() {
    let test = "a_full_disk_fails_appends_clearly_loses_nothing_and_the_ledger_resumes_with_space";
    let Some(tmpfs) = Tmpfs::mount(test) else { return };
    let data: PathBuf = tmpfs.path().join("data");
    let unchecked = LedgerConfig { disk_free_min_bytes: 0, ..LedgerConfig::default() };
    let server = TestServer::start_with(&data, unchecked.clone()).await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let (acknowledged, status) = fill(&mut client).await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("No space left on device"),
        "the error does not say what happened: {:?}",
        status.message()
    );
    assert_eq!(error_info_reason(&status), "STORAGE_IO", "{status:?}");
    // Writes stay halted (nothing is acknowledged on top of a write that failed), and say why.
    let halted = client.append(append(vec![member_joined("KR")])).await.expect_err("writes halted");
    assert_eq!(halted.code(), tonic::Code::Unavailable, "{halted:?}");
    assert_eq!(error_info_reason(&halted), "WRITES_HALTED", "{halted:?}");
    assert!(halted.message().contains("No space left on device"), "{halted:?}");
    let mut health = ServingStatus::Serving as i32;
    for _ in 0..50 {
        health = health_of(&server).await;
        if health == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(health, ServingStatus::NotServing as i32);
    // The engine stops after a write it could not make (sled keeps the error until it is
    // reopened): a read answers what it can, or the same clear UNAVAILABLE, never less data.
    match client.read_all(pb::ReadAllRequest { page_size: 1000, ..Default::default() }).await {
        Ok(page) => assert_eq!(page.into_inner().events.len(), 1000),
        Err(status) => assert_eq!(error_info_reason(&status), "STORAGE_IO", "{status:?}"),
    }
    eprintln!("{} events acknowledged before the disk was full", acknowledged.len() + 1);
    drop(client);
    server.stop().await;

    // Space returns; the next start serves everything acknowledged and takes appends again.
    tmpfs.grow();
    let server = TestServer::start_with(&data, unchecked).await;
    let mut client = server.client().await;
    let served = read_all(&mut client).await;
    for appended in &acknowledged {
        let event = &served[appended.position as usize - 1];
        assert_eq!(event.event_id, appended.event_id, "position {}", appended.position);
    }
    client.append(append(vec![member_joined("KR")])).await.expect("appends resume");
    assert_eq!(health_of(&server).await, ServingStatus::Serving as i32);
    drop(client);
    server.stop().await;
}

/// Appends big batches until one is refused: what was acknowledged, and the refusal.
async fn fill(client: &mut LedgerClient) -> (Vec<pb::AppendedEvent>, tonic::Status) {
    let mut acknowledged: Vec<pb::AppendedEvent> = Vec::new();
    for i in 0..APPENDS_MAX {
        let events = (0..BATCH).map(|k| big_commitment(i * BATCH + k)).collect();
        match client.append(append(events)).await {
            Ok(response) => acknowledged.extend(response.into_inner().events),
            Err(status) => return (acknowledged, status),
        }
    }
    panic!("the disk never filled up: {} events acknowledged", acknowledged.len());
}

/// The health of the ledger service once it is `wanted`, or after 5 s.
async fn health_becomes(server: &TestServer, wanted: ServingStatus) -> i32 {
    let mut health = health_of(server).await;
    for _ in 0..250 {
        if health == wanted as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        health = health_of(server).await;
    }
    health
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_running_out_refuses_appends_before_the_engine_fails_and_they_resume_with_space() {
    let test = "a_disk_running_out_refuses_appends_before_the_engine_fails_and_they_resume_with_space";
    let Some(tmpfs) = Tmpfs::mount(test) else { return };
    let data: PathBuf = tmpfs.path().join("data");
    let config = LedgerConfig { disk_free_min_bytes: RESERVE, ..LedgerConfig::default() };
    let server = TestServer::start_with(&data, config).await;
    let mut client = server.client().await;
    client.append(append(vec![member_joined("JP")])).await.unwrap();
    let (acknowledged, status) = fill(&mut client).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_info_reason(&status), "DISK_FULL", "{status:?}");
    assert!(status.message().contains("bytes free") && status.message().contains("nothing was written"), "{status:?}");
    assert_eq!(health_becomes(&server, ServingStatus::NotServing).await, ServingStatus::NotServing as i32);
    // Not halted: reads serve everything acknowledged, and appends are still judged by the free
    // space (a batch as large as the refused one is refused again).
    let served = read_all(&mut client).await;
    assert_eq!(served.len(), acknowledged.len() + 1, "every acknowledged event is served, and no more");
    for appended in &acknowledged {
        assert_eq!(
            served[appended.position as usize - 1].event_id,
            appended.event_id,
            "position {}",
            appended.position
        );
    }
    let again = (0..BATCH).map(big_commitment).collect();
    let refused = client.append(append(again)).await.expect_err("still no room");
    assert_eq!(error_info_reason(&refused), "DISK_FULL", "{refused:?}");

    // Space returns: health and appends resume by themselves, with no restart.
    tmpfs.grow();
    assert_eq!(health_becomes(&server, ServingStatus::Serving).await, ServingStatus::Serving as i32);
    let resumed = client.append(append(vec![member_joined("KR")])).await.expect("appends resume").into_inner();
    assert_eq!(resumed.events[0].position, acknowledged.len() as u64 + 2, "nothing skipped, nothing lost");
    drop(client);
    let server = server.restart().await;
    let mut client = server.client().await;
    assert_eq!(read_all(&mut client).await.len(), acknowledged.len() + 2);
    drop(client);
    server.stop().await;
}

fn error_info_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
}
