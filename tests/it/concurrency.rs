//! Many clients at once, each on its own connection: optimistic concurrency on one stream, races
//! on rules that span streams, and group commit (several requests share one fsync).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_client::LedgerServiceClient;
use tokio::sync::Barrier;
use tonic::Code;

use crate::support::*;

const CLIENTS: usize = 32;

/// Runs `tasks` within `secs` seconds and returns their results in order.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>, secs: u64) -> Vec<T> {
    let all = futures::future::join_all(tasks);
    let results = tokio::time::timeout(Duration::from_secs(secs), all).await.expect("the clients finish in time");
    results.into_iter().map(|r| r.expect("client task")).collect()
}

/// What one racing client saw: its won (revision, position, event id), and how many ABORTED.
struct RaceReport {
    won: Vec<(u64, u64, String)>,
    aborted: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_racing_on_one_stream_with_exact_revisions_win_each_revision_once() {
    const EVENTS: u64 = 200;
    const STREAM: &str = "export-rule-race";
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = export_rule_changed("race", pb::Treatment::Prohibited, None);
    client
        .append(append_expecting(vec![first.clone()], vec![expect_state(STREAM, pb::ExpectedState::NoStream)]))
        .await
        .unwrap();

    let start = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = LedgerServiceClient::new(server.channel().await);
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let mut report = RaceReport { won: Vec::new(), aborted: 0 };
            let read = pb::ReadStreamRequest {
                stream: STREAM.into(),
                direction: pb::ReadDirection::Backward as i32,
                from_revision: None,
                limit: 1,
            };
            start.wait().await;
            let mut known = client.read_stream(read).await.unwrap().into_inner().stream_revision;
            while known + 1 < EVENTS {
                let event = export_rule_changed("race", pb::Treatment::Allowed, None);
                let request = append_expecting(vec![event.clone()], vec![expect_revision(STREAM, known)]);
                match client.append(request).await {
                    Ok(response) => {
                        let appended = &response.into_inner().events[0];
                        assert_eq!(appended.revision, known + 1, "a win lands right after the expected revision");
                        report.won.push((appended.revision, appended.position, event.event_id));
                        known = appended.revision;
                    }
                    Err(status) if status.code() == Code::Aborted => {
                        report.aborted += 1;
                        let actual: u64 = error_info_metadata(&status)["actual_revision"].parse().expect("a revision");
                        assert!(actual > known, "ABORTED for revision {known}, yet the stream is at {actual}");
                        known = actual;
                    }
                    Err(status) => panic!("unexpected {status:?}"),
                }
            }
            report
        }));
    }
    let reports = join_all(tasks, 120).await;

    let mut winners: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    winners.entry(0).or_default().push((1, first.event_id.clone()));
    for report in &reports {
        for (revision, position, event_id) in &report.won {
            winners.entry(*revision).or_default().push((*position, event_id.clone()));
        }
    }
    assert_eq!(winners.keys().copied().collect::<Vec<_>>(), (0..EVENTS).collect::<Vec<_>>());
    for (revision, wins) in &winners {
        assert_eq!(wins.len(), 1, "revision {revision} was won by {} appends: {wins:?}", wins.len());
    }
    let aborted: usize = reports.iter().map(|r| r.aborted).sum();
    assert!(aborted > 0, "32 racing clients never collided");

    let log = read_all(&mut client).await;
    assert_eq!(log.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=EVENTS).collect::<Vec<_>>());
    let stream = read_stream_all(&mut client, STREAM).await.unwrap();
    assert_eq!(stream.len() as u64, EVENTS);
    for event in &stream {
        let (position, event_id) = &winners[&event.revision][0];
        assert_eq!((&event.event_id, event.position), (event_id, *position), "revision {}", event.revision);
    }
    server.stop().await;
}

/// 32 clients append `request(client)` at once; returns each one's result.
async fn race(
    server: &TestServer,
    request: impl Fn(usize) -> pb::AppendRequest,
) -> Vec<Result<pb::AppendResponse, tonic::Status>> {
    let start = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let mut client = LedgerServiceClient::new(server.channel().await);
        let request = request(n);
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            client.append(request).await.map(tonic::Response::into_inner)
        }));
    }
    join_all(tasks, 60).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_racing_to_join_the_same_member_let_exactly_one_in() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (code, expectation, loser_code) in
        [("XX", None, Code::FailedPrecondition), ("XY", Some(pb::ExpectedState::NoStream), Code::Aborted)]
    {
        let events: Vec<_> = (0..CLIENTS).map(|_| member_joined(code)).collect();
        let stream = format!("member-{code}");
        let results = race(&server, |n| {
            let expectations = expectation.map(|e| vec![expect_state(&stream, e)]).unwrap_or_default();
            append_expecting(vec![events[n].clone()], expectations)
        })
        .await;
        let winners: Vec<_> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(n, _)| n).collect();
        assert_eq!(winners.len(), 1, "{code}: {} winners", winners.len());
        for result in &results {
            if let Err(status) = result {
                assert_eq!(status.code(), loser_code, "{code}: {status:?}");
            }
        }
        let joined = read_stream_all(&mut client, &stream).await.unwrap();
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].event_id, events[winners[0]].event_id);
    }
    assert_eq!(head_position(&mut client).await, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commitment_racing_its_members_withdrawal_is_ordered_before_it_or_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    const ROUNDS: usize = CLIENTS / 2;
    let codes: Vec<String> = (0..ROUNDS).map(|n| format!("W{}", char::from(b'A' + n as u8))).collect();
    client.append(append(codes.iter().map(|c| member_joined(c)).collect())).await.unwrap();

    let commitments: Vec<String> = (0..ROUNDS).map(|_| id()).collect();
    let results = race(&server, |n| {
        let round = n / 2;
        if n % 2 == 0 {
            append(vec![member_withdrew(&codes[round])])
        } else {
            append(vec![commitment_made(&commitments[round], &codes[round])])
        }
    })
    .await;
    let mut refused = 0;
    for round in 0..ROUNDS {
        let withdrawal = results[2 * round].as_ref().expect("a withdrawal of a member always succeeds");
        let withdrawn_at = withdrawal.events[0].position;
        let stream = format!("commitment-{}", commitments[round]);
        match &results[2 * round + 1] {
            Ok(made) => {
                assert!(made.events[0].position < withdrawn_at, "a commitment was accepted after its member withdrew")
            }
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert_eq!(read_stream_all(&mut client, &stream).await.unwrap_err().code(), Code::NotFound);
                refused += 1;
            }
        }
    }
    let log = read_all(&mut client).await;
    assert_eq!(log.len(), ROUNDS + 2 * ROUNDS - refused, "the joins, the withdrawals and the accepted commitments");
    assert_eq!(log.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=log.len() as u64).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs_and_every_ack_is_readable() {
    const APPENDS: usize = 20;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let syncs_before = server.ledger.sync_count();

    let start = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let mut client = LedgerServiceClient::new(server.channel().await);
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut acks = Vec::new();
            for _ in 0..APPENDS {
                let event = export_rule_changed(&format!("group-{n}"), pb::Treatment::Allowed, None);
                let response = client.append(append(vec![event.clone()])).await.expect("append").into_inner();
                acks.push((event.event_id, response.events[0].clone()));
            }
            acks
        }));
    }
    let acks: Vec<_> = join_all(tasks, 120).await;
    let syncs = server.ledger.sync_count() - syncs_before;
    let appends = (CLIENTS * APPENDS) as u64;
    assert!(syncs >= 1, "no sync at all");
    assert!(syncs < appends, "{syncs} syncs for {appends} appends: no group commit");

    for (n, client_acks) in acks.iter().enumerate() {
        let revisions: Vec<_> = client_acks.iter().map(|(_, a)| a.revision).collect();
        assert_eq!(revisions, (0..APPENDS as u64).collect::<Vec<_>>(), "client {n}");
        for (event_id, ack) in client_acks {
            assert_eq!(&ack.event_id, event_id);
            let stored =
                client.get_event(pb::GetEventRequest { event_id: event_id.clone() }).await.unwrap().into_inner();
            assert_eq!((stored.position, stored.revision, &stored.stream), (ack.position, ack.revision, &ack.stream));
        }
    }
    let log = read_all(&mut client).await;
    assert_eq!(log.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=appends).collect::<Vec<_>>());
    let acked: HashSet<u64> = acks.iter().flatten().map(|(_, a)| a.position).collect();
    assert_eq!(acked.len() as u64, appends, "two acks share a position");
    server.stop().await;
}
