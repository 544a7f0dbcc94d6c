//! `tail` end to end: the real binary follows a server until Ctrl-C, and any other end of the
//! subscription (the server stopping, whatever status it ends with) is an error that says how
//! it ended and where to resume.

use std::process::Stdio;
use std::time::Duration;

use pax_ledger::proto::v1 as pb;
use pb::subscribe_response::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;

use crate::crash::send_signal;
use crate::fake_server::{FakeServer, Script};
use crate::support::*;

/// `tail --addr URL --output json` as a child with piped stdout and stderr.
fn spawn_tail(url: &str) -> Child {
    let mut command = pax_ledger(&["tail", "--addr", url, "--output", "json"]);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.spawn().expect("spawn pax-ledger tail")
}

/// Reads `count` lines of the child's stdout (within the binary timeout).
async fn read_lines(child: &mut Child, count: usize) -> Vec<String> {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    tokio::time::timeout(BINARY_TIMEOUT, async {
        while lines.len() < count {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).await.unwrap() > 0, "stdout ended after {lines:?}");
            lines.push(line);
        }
    })
    .await
    .expect("tail prints the events");
    lines
}

/// Waits for the child to end; its exit status and its stderr.
async fn finish(mut child: Child) -> (std::process::ExitStatus, String) {
    tokio::time::timeout(BINARY_TIMEOUT, async {
        let mut stderr = String::new();
        child.stderr.as_mut().unwrap().read_to_string(&mut stderr).await.unwrap();
        (child.wait().await.unwrap(), stderr)
    })
    .await
    .expect("tail ends once the subscription does")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_fails_when_the_server_stops() {
    let server = TestServer::start().await;
    server.client().await.append(append(vec![member_joined("JP"), member_joined("KR")])).await.unwrap();
    let mut tail = spawn_tail(&server.url);
    let lines = read_lines(&mut tail, 2).await;
    assert!(lines[1].contains("member-KR"), "{lines:?}");
    server.stop().await;
    let (status, stderr) = finish(tail).await;
    assert!(!status.success(), "tail ended with {status} when the server stopped: {stderr}");
    assert!(stderr.contains("error: the server ended the subscription: "), "{stderr}");
    assert!(stderr.contains("resume with tail --from 3"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reports_the_status_a_subscription_ends_with() {
    let event = pb::RecordedEvent {
        position: 7,
        stream: "member-JP".into(),
        event_id: "5a1c0000-0000-4000-8000-000000000007".into(),
        event_type: "member_joined".into(),
        ..Default::default()
    };
    let ends = [
        (Some(tonic::Status::unavailable("the ledger is shutting down")), "UNAVAILABLE: the ledger is shutting down"),
        (None, "OK: the stream ended without an error"),
    ];
    for (end, expected) in ends {
        let script = Script {
            subscription: vec![Message::Event(event.clone()), Message::CaughtUp(pb::CaughtUp { position: 9 })],
            subscription_end: end,
            ..Script::default()
        };
        let fake = FakeServer::start(script).await;
        let mut tail = spawn_tail(&fake.url);
        let lines = read_lines(&mut tail, 1).await;
        assert!(lines[0].contains(r#""position":7"#), "{lines:?}");
        let (status, stderr) = finish(tail).await;
        assert!(!status.success(), "{expected}: tail ended with {status}: {stderr}");
        assert!(stderr.contains(&format!("error: the server ended the subscription: {expected}")), "{stderr}");
        assert!(stderr.contains("events after position 9 were not followed (resume with tail --from 10)"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_tail_quietly() {
    let server = TestServer::start().await;
    server.client().await.append(append(vec![member_joined("JP")])).await.unwrap();
    let mut tail = spawn_tail(&server.url);
    read_lines(&mut tail, 1).await;
    // Following now: nothing more comes until Ctrl-C.
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_signal(tail.id().expect("tail is running") as i32, libc::SIGINT);
    let (status, stderr) = finish(tail).await;
    assert!(status.success(), "Ctrl-C ended tail with {status}: {stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    server.stop().await;
}
